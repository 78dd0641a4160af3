"""Equation of state E(V) fitted with :class:`ase.eos.EquationOfState`: :func:`equation_of_state`, :class:`EOSResult`."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from ase import units

from .common import check_atoms, cubic_lattice_constant, get_calculator
from .relax import relax


@dataclass
class EOSResult:
    """Outcome of :func:`equation_of_state`.

    Attributes
    ----------
    volumes : (n,) Å³ of the whole cell; energies : (n,) eV of the whole cell
    v0 : Å³, volume at the minimum of the fit; e0 : eV, energy there
    bulk_modulus : GPa; bulk_modulus_derivative : B' = dB/dP (dimensionless; None for "sj"/"taylor"/"p3")
    lattice_constant : Å, cubic lattice parameter at v0 for sc/fcc/bcc cells, else None (the
        conventional a for a primitive fcc/bcc cell; for a supercell, the supercell's own)
    cell0 : (3, 3) Å, the input cell scaled isotropically to v0
    n_atoms : int; eos : str, ASE's EOS name; rms_residual : eV/atom, RMS misfit of the fit
    curve_volumes, curve_energies : (200,) the fitted E(V) for plotting
    """

    volumes: np.ndarray
    energies: np.ndarray
    v0: float
    e0: float
    bulk_modulus: float
    bulk_modulus_derivative: float | None
    lattice_constant: float | None
    cell0: np.ndarray
    n_atoms: int
    eos: str
    rms_residual: float
    curve_volumes: np.ndarray = field(repr=False)
    curve_energies: np.ndarray = field(repr=False)

    def summary(self):
        n = self.n_atoms
        lines = [f"equation of state ({self.eos}) from {len(self.volumes)} volumes "
                 f"{self.volumes.min() / n:.3f}-{self.volumes.max() / n:.3f} Å^3/atom",
                 f"V0 = {self.v0 / n:.4f} Å^3/atom, E0 = {self.e0 / n:.6f} eV/atom, B = {self.bulk_modulus:.2f} GPa"
                 + (f", B' = {self.bulk_modulus_derivative:.2f}" if self.bulk_modulus_derivative is not None else ""),
                 f"fit RMS residual: {self.rms_residual * 1e3:.4f} meV/atom"]
        if self.lattice_constant is not None:
            lines.append(f"cubic lattice parameter of this cell at V0: a0 = {self.lattice_constant:.5f} Å")
        return "\n".join(lines)


def equation_of_state(atoms, calc=None, max_strain=0.03, n_points=11, eos="birchmurnaghan", *,
                      relax_positions=False, fmax=1e-3):
    """Energy-volume curve under isotropic scaling of the cell, fitted with :class:`ase.eos.EquationOfState`.

    The cell is scaled by ``1 + s`` for ``n_points`` linear strains ``s`` evenly
    spaced in [-max_strain, +max_strain] (fractional coordinates kept, or
    positions relaxed at each volume with ``relax_positions``). Start from a
    relaxed structure so that the minimum lies inside the sampled range.

    Parameters
    ----------
    atoms : ase.Atoms, 3D-periodic (not modified)
    calc : ASE calculator, model file path, or None for ``atoms.calc``
    max_strain : largest linear strain (0.03: volumes within about ±9%)
    n_points : number of volumes (>= 5)
    eos : ASE name: "birchmurnaghan" (default), "murnaghan", "birch", "vinet",
        "pouriertarantola", "anton-schmidt", "sj", "taylor", "p3"
    relax_positions : relax internal positions at fixed cell for every volume (BFGS to ``fmax``)

    Returns
    -------
    EOSResult; bulk modulus in GPa (eV/Å³ divided by :data:`ase.units.GPa`).

    Raises
    ------
    ValueError: non-periodic structure, bad parameters, or a fitted minimum outside the sampled volumes.

    Source: F. Birch, Phys. Rev. 71, 809 (1947) for the Birch-Murnaghan form; ASE's fit.
    """
    from ase.eos import EquationOfState, eos_names

    check_atoms(atoms, need_pbc=True)
    if eos not in eos_names:
        raise ValueError(f"unknown eos {eos!r}; choose from {eos_names}")
    if int(n_points) < 5:
        raise ValueError(f"n_points must be >= 5, got {n_points}")
    if not 0 < max_strain < 0.3:
        raise ValueError(f"max_strain must be in (0, 0.3), got {max_strain}")
    calc = get_calculator(calc, atoms)
    work = atoms.copy()
    work.calc = calc
    cell_ref = atoms.cell.array.copy()
    v_ref = atoms.get_volume()
    volumes, energies = [], []
    for s in np.linspace(-max_strain, max_strain, int(n_points)):
        work.set_cell(cell_ref * (1 + s), scale_atoms=True)
        if relax_positions:
            relax(work, calc, fmax=fmax, cell=False)
        volumes.append(work.get_volume())
        energies.append(work.get_potential_energy())
    volumes, energies = np.array(volumes), np.array(energies)
    fit = EquationOfState(volumes, energies, eos=eos)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            v0, e0, B = fit.fit(warn=False)
        except RuntimeError as err:  # scipy's curve_fit found no optimum
            raise ValueError(f"the {eos} fit failed ({err}): is the minimum inside the sampled volumes? "
                             "Relax the structure first or widen max_strain") from None
    if not (volumes.min() <= v0 <= volumes.max()) or not np.isfinite(v0):
        raise ValueError(f"the fitted minimum V0={v0:.3f} Å^3 lies outside the sampled volumes "
                         f"{volumes.min():.3f}-{volumes.max():.3f} Å^3: relax the structure first or widen max_strain")
    cv = np.linspace(volumes.min(), volumes.max(), 200)
    if eos == "sj":
        ce = fit.fit0(cv ** (-1 / 3))
        pred = fit.fit0(volumes ** (-1 / 3))
        bp = None
    else:
        ce = fit.func(cv, *fit.eos_parameters)
        pred = fit.func(volumes, *fit.eos_parameters)
        bp = float(fit.eos_parameters[2]) if eos not in ("taylor", "p3") else None
    scale = (v0 / v_ref) ** (1 / 3)
    a_ref = cubic_lattice_constant(atoms.cell)
    n = len(atoms)
    return EOSResult(volumes=volumes, energies=energies, v0=float(v0), e0=float(e0), bulk_modulus=float(B / units.GPa),
                     bulk_modulus_derivative=bp, lattice_constant=None if a_ref is None else a_ref * scale,
                     cell0=cell_ref * scale, n_atoms=n, eos=eos,
                     rms_residual=float(np.sqrt(np.mean((pred - energies) ** 2)) / n),
                     curve_volumes=cv, curve_energies=np.asarray(ce))
