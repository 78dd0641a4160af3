"""Harmonic phonons by finite displacements with :class:`ase.phonons.Phonons`: :func:`phonons`, :class:`PhononResult`."""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass

import numpy as np
from ase import units

from .common import check_atoms, get_calculator, interaction_cutoff

#: Phonon frequency units: factor from eV (hbar omega) to the unit.
FREQUENCY_UNITS = {
    "THz": 1.0 / (units._hplanck / units._e) / 1e12,  # E / h in 10^12 Hz (not angular)
    "meV": 1000.0,
    "cm-1": 1.0 / (units._hplanck * units._c / units._e) / 100.0,
}


@dataclass
class PhononResult:
    """Outcome of :func:`phonons` (harmonic, finite displacements with :class:`ase.phonons.Phonons`).

    Attributes
    ----------
    unit : frequency unit ("THz" = 10^12 Hz, ordinary not angular frequency; "meV"; "cm-1")
    path : ase.dft.kpoints.BandPath of the band structure
    x : (n_q,) path coordinate: length along the path in reciprocal space, 1/Å including the
        2 pi (ASE's ``get_linear_kpoint_axis``), so a sound velocity is 2 pi f / x
    X : special-point coordinates, labels : their names
    bands : (n_q, 3 n_atoms) frequencies along the path; imaginary modes as negative numbers
    dos_frequencies : (n_grid,) and dos : (n_grid,) states per unit frequency, integrating to 3 n_atoms
    gamma : (3 n_atoms,) frequencies at Gamma, ascending
    supercell : (3,) ints; delta : Å displacement
    """

    unit: str
    path: object
    x: np.ndarray
    X: np.ndarray
    labels: list
    bands: np.ndarray
    dos_frequencies: np.ndarray
    dos: np.ndarray
    gamma: np.ndarray
    supercell: tuple
    delta: float

    @property
    def min_frequency(self):
        """Lowest frequency on the path and the DOS grid (negative: imaginary modes, a dynamical instability)."""
        return float(self.bands.min())

    def summary(self):
        n_modes = self.bands.shape[1]
        lines = [f"phonons: supercell {'x'.join(map(str, self.supercell))}, displacement {self.delta} Å, "
                 f"path {self.path.path}, {n_modes} branches",
                 f"Gamma ({self.unit}): " + " ".join(f"{f:.4f}" for f in self.gamma),
                 f"max frequency {self.bands.max():.4f} {self.unit}, min {self.bands.min():.4f} {self.unit}"]
        if self.bands.min() < -1e-2 * self.bands.max():
            lines.append("WARNING: imaginary modes (shown negative): the structure is not at a stable minimum")
        for lab, xx in zip(self.labels, self.X):
            k = int(np.argmin(np.abs(self.x - xx)))
            lines.append(f"  {lab:>2}: " + " ".join(f"{f:.4f}" for f in self.bands[k]))
        return "\n".join(lines)


def _auto_supercell(atoms, calc, default=4):
    cutoff = interaction_cutoff(calc)
    if cutoff is None:
        return (default,) * 3
    # Heights of the cell perpendicular to each pair of cell vectors.
    cell = atoms.cell.array
    vol = abs(np.linalg.det(cell))
    heights = [vol / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3])) for i in range(3)]
    # Many-body models couple atoms up to twice the cutoff; a supercell that
    # wide keeps displaced-atom images from interfering.
    # Even repetitions make the zone-boundary points with coordinates 1/2 (X, L, H, N, ...)
    # commensurate with the supercell, so they are exact rather than interpolated.
    return tuple(2 * max(1, math.ceil(cutoff / h)) for h in heights)


def phonons(atoms, calc=None, supercell=None, delta=0.01, path=None, npoints=200, dos_kpts=(20, 20, 20), *,
            unit="THz", acoustic_sum_rule=True, dos_width=None, dos_points=500, cache_dir=None):
    """Harmonic phonon band structure and density of states by finite displacements (:class:`ase.phonons.Phonons`).

    Parameters
    ----------
    atoms : ase.Atoms, the (primitive) unit cell, 3D-periodic and relaxed (not modified)
    calc : ASE calculator, model file path, or None for ``atoms.calc``
    supercell : (n1, n2, n3) repetitions for the force constants; default: the smallest even
        repetitions making each height of the supercell at least twice the model cutoff
        (4x4x4 for calculators without one)
    delta : Å, displacement amplitude (±delta per Cartesian direction)
    path : special-point path string (e.g. "GXWKGLUWLK,UX") or None for ASE's standard
        path of the lattice (``atoms.cell.bandpath()``, W. Setyawan & S. Curtarolo,
        Comput. Mater. Sci. 49, 299 (2010)); npoints : q-points along it
    dos_kpts : Monkhorst-Pack q-mesh for the DOS
    unit : "THz" (default), "meV" or "cm-1"
    acoustic_sum_rule : impose it (and the force-constant index symmetry) as ASE's ``read(acoustic=True)``;
        False leaves the raw force constants, e.g. to check the calculator's translational invariance
    dos_width : Gaussian broadening of the DOS in ``unit`` (default 1/100 of the frequency range)
    cache_dir : where ASE's Phonons keeps its displacement cache (default: a temporary directory,
        removed afterwards); a reused directory resumes an interrupted run

    Returns
    -------
    PhononResult (frequencies in ``unit``; imaginary frequencies negative).

    Raises
    ------
    ValueError: non-periodic structure, unknown unit, bad supercell or delta.
    """
    from ase.phonons import Phonons

    check_atoms(atoms, need_pbc=True)
    if unit not in FREQUENCY_UNITS:
        raise ValueError(f"unit must be one of {list(FREQUENCY_UNITS)}, got {unit!r}")
    if not 0 < delta < 0.2:
        raise ValueError(f"delta must be in (0, 0.2) Å, got {delta}")
    calc = get_calculator(calc, atoms)
    supercell = _auto_supercell(atoms, calc) if supercell is None else tuple(int(n) for n in supercell)
    if len(supercell) != 3 or min(supercell) < 1:
        raise ValueError(f"supercell must be three positive integers, got {supercell}")
    factor = FREQUENCY_UNITS[unit]
    prim = atoms.copy()
    prim.calc = None
    bandpath = prim.cell.bandpath(path, npoints=npoints)
    with tempfile.TemporaryDirectory(prefix="ase_mlcalc_phonons_") as tmp:
        name = os.path.join(cache_dir or tmp, "phonon")
        ph = Phonons(prim, calc, supercell=supercell, delta=delta, name=name)
        ph.run()
        ph.read(acoustic=bool(acoustic_sum_rule), symmetrize=3 if acoustic_sum_rule else 0)
    bands = ph.band_structure(bandpath.kpts, verbose=False) * factor
    gamma = np.sort(ph.band_structure(np.zeros((1, 3)), verbose=False)[0] * factor)
    from ase.dft.kpoints import monkhorst_pack

    grid = ph.band_structure(monkhorst_pack(dos_kpts), verbose=False).ravel() * factor
    lo, hi = min(grid.min(), 0.0), grid.max()
    width = dos_width or (hi - lo) / 100
    freqs = np.linspace(lo - 5 * width, hi + 5 * width, dos_points)
    # Gaussian-broadened histogram normalised to 3 n_atoms modes per cell.
    dos = np.zeros_like(freqs)
    for chunk in np.array_split(grid, max(1, len(grid) // 20000)):
        dos += np.exp(-0.5 * ((freqs[:, None] - chunk[None, :]) / width) ** 2).sum(axis=1)
    dos *= 3 * len(atoms) / len(grid) / (width * np.sqrt(2 * np.pi))
    x, X, labels = bandpath.get_linear_kpoint_axis()
    # A path break ("...K,UX") puts two labels at one coordinate: show them as "K|U".
    merged_X, merged_labels = [], []
    for xx, lab in zip(X, labels):
        if merged_X and abs(xx - merged_X[-1]) < 1e-10:
            merged_labels[-1] += "|" + lab
        else:
            merged_X.append(xx)
            merged_labels.append(lab)
    X, labels = np.array(merged_X), merged_labels
    return PhononResult(unit=unit, path=bandpath, x=x, X=X, labels=list(labels), bands=bands, dos_frequencies=freqs,
                        dos=dos, gamma=gamma, supercell=supercell, delta=float(delta))
