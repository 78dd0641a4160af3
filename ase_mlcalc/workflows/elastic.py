"""Elastic constants from stress-strain central differences: :func:`elastic_constants`, :class:`ElasticResult`."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from ase import units
from ase.stress import voigt_6_to_full_3x3_strain

from .common import check_atoms, cubic_lattice_constant, get_calculator
from .relax import relax


@dataclass
class ElasticResult:
    """Outcome of :func:`elastic_constants`.

    Attributes
    ----------
    C : (6, 6) GPa, Voigt order xx, yy, zz, yz, xz, xy (engineering shear strains), symmetrised
    C_raw : (6, 6) GPa, column j from the ±strain stresses of Voigt strain j, before symmetrising
    asymmetry : GPa, max |C_raw - C_raw^T| / 2 (a consistency check: should be small)
    residual_stress : (6,) GPa, stress of the reference structure (should be ~0)
    bulk_modulus_voigt, bulk_modulus_reuss, shear_modulus_voigt, shear_modulus_reuss : GPa
    cubic : dict with C11, C12, C44 (GPa) averaged over the cubic-equivalent entries when the cell
        is cubic (sc/fcc/bcc) and the axes are the cubic axes, else None
    stable : bool, all eigenvalues of C positive (Born stability)
    """

    C: np.ndarray
    C_raw: np.ndarray
    asymmetry: float
    residual_stress: np.ndarray
    bulk_modulus_voigt: float
    bulk_modulus_reuss: float
    shear_modulus_voigt: float
    shear_modulus_reuss: float
    cubic: dict | None
    stable: bool

    @property
    def bulk_modulus(self):
        """Voigt-Reuss-Hill average bulk modulus, GPa."""
        return 0.5 * (self.bulk_modulus_voigt + self.bulk_modulus_reuss)

    @property
    def shear_modulus(self):
        """Voigt-Reuss-Hill average shear modulus, GPa."""
        return 0.5 * (self.shear_modulus_voigt + self.shear_modulus_reuss)

    def summary(self):
        lines = ["elastic constants C_ij (GPa), Voigt order xx yy zz yz xz xy:"]
        lines += ["  " + " ".join(f"{x:9.2f}" for x in row) for row in self.C]
        if self.cubic:
            lines.append("cubic: C11 = {C11:.2f}, C12 = {C12:.2f}, C44 = {C44:.2f} GPa".format(**self.cubic))
        lines.append(f"bulk modulus (VRH) {self.bulk_modulus:.2f} GPa, "
                     f"shear modulus (VRH) {self.shear_modulus:.2f} GPa")
        lines.append(f"asymmetry of C_raw {self.asymmetry:.3g} GPa; residual stress of the reference "
                     f"{np.abs(self.residual_stress).max():.3g} GPa; "
                     f"mechanically {'stable' if self.stable else 'UNSTABLE'}")
        return "\n".join(lines)


def strain_matrix(voigt_index, amount):
    """(3, 3) symmetric small-strain tensor of one Voigt component (engineering shear: eps_ab = amount / 2),
    by :func:`ase.stress.voigt_6_to_full_3x3_strain`."""
    voigt = np.zeros(6)
    voigt[voigt_index] = amount
    return voigt_6_to_full_3x3_strain(voigt) - np.eye(3)  # ASE's returns the deformation I + eps


def elastic_constants(atoms, calc=None, strain=1e-3, *, relax_positions="auto", fmax=1e-4, relax_steps=500):
    """Elastic constants from stress-strain central differences on the six Voigt strains.

    For each Voigt strain j the cell is deformed by ``(I + eps)`` with eps_j = ±``strain``
    (engineering shear for j = 4..6) and ``C[:, j] = (sigma(+) - sigma(-)) / (2 strain)``,
    with ASE's stress sigma = (1/V) dE/deps. At zero stress these are the elastic
    constants C_ij = (1/V) d^2E/deps_i deps_j; with residual stress p they differ from
    the energy's second derivatives by terms of order p (reported as ``residual_stress``),
    so pass a relaxed structure (``relax(atoms, calc, fmax=1e-4)``).

    Parameters
    ----------
    atoms : ase.Atoms, 3D-periodic, ideally relaxed (not modified)
    calc : ASE calculator, model file path, or None for ``atoms.calc``
    strain : strain amplitude (1e-3 default; truncation error O(strain^2), noise O(1/strain))
    relax_positions : relax internal coordinates at fixed strained cell (needed for lattices with
        a basis whose atoms are not inversion centres, e.g. diamond, hcp). "auto" relaxes when a
        strained structure has forces above ``fmax``; True always; False never (clamped-ion constants).
    fmax : eV/Å, force tolerance of those relaxations; relax_steps : their step limit

    Returns
    -------
    ElasticResult (GPa).

    Raises
    ------
    ValueError: non-periodic structure or strain outside (0, 0.05].

    Sources: Voigt/Reuss/Hill averages, R. Hill, Proc. Phys. Soc. A 65, 349 (1952);
    Born stability, F. Mouhat & F.-X. Coudert, Phys. Rev. B 90, 224104 (2014).
    """
    check_atoms(atoms, need_pbc=True)
    if not 0 < strain <= 0.05:
        raise ValueError(f"strain must be in (0, 0.05], got {strain}")
    if relax_positions not in ("auto", True, False):
        raise ValueError(f"relax_positions must be 'auto', True or False, got {relax_positions!r}")
    calc = get_calculator(calc, atoms)
    ref = atoms.copy()
    ref.calc = calc
    cell0 = ref.cell.array.copy()
    stress0 = ref.get_stress(voigt=True)
    C_raw = np.zeros((6, 6))
    for j in range(6):
        sig = []
        for sign in (1.0, -1.0):
            work = ref.copy()
            work.calc = calc
            work.set_cell(cell0 @ (np.eye(3) + strain_matrix(j, sign * strain)), scale_atoms=True)
            if relax_positions is True or (relax_positions == "auto" and len(work) > 1
                                           and np.linalg.norm(work.get_forces(), axis=1).max() > fmax):
                relax(work, calc, fmax=fmax, cell=False, steps=relax_steps)
            sig.append(work.get_stress(voigt=True))
        C_raw[:, j] = (sig[0] - sig[1]) / (2 * strain) / units.GPa
    C = 0.5 * (C_raw + C_raw.T)
    S = np.linalg.inv(C)
    KV = (C[0, 0] + C[1, 1] + C[2, 2] + 2 * (C[0, 1] + C[1, 2] + C[0, 2])) / 9
    GV = (C[0, 0] + C[1, 1] + C[2, 2] - C[0, 1] - C[1, 2] - C[0, 2] + 3 * (C[3, 3] + C[4, 4] + C[5, 5])) / 15
    KR = 1 / (S[0, 0] + S[1, 1] + S[2, 2] + 2 * (S[0, 1] + S[1, 2] + S[0, 2]))
    GR = 15 / (4 * (S[0, 0] + S[1, 1] + S[2, 2]) - 4 * (S[0, 1] + S[1, 2] + S[0, 2])
               + 3 * (S[3, 3] + S[4, 4] + S[5, 5]))
    cubic = None
    if cubic_lattice_constant(atoms.cell) is not None:
        c = {"C11": float(np.mean(np.diag(C)[:3])), "C12": float(np.mean([C[0, 1], C[0, 2], C[1, 2]])),
             "C44": float(np.mean(np.diag(C)[3:]))}
        ideal = np.zeros((6, 6))
        ideal[:3, :3] = c["C12"]
        ideal[np.arange(3), np.arange(3)] = c["C11"]
        ideal[np.arange(3, 6), np.arange(3, 6)] = c["C44"]
        if np.abs(C - ideal).max() <= 0.02 * np.abs(C).max() + 1e-6:
            cubic = c
        else:
            warnings.warn("cubic cell, but C does not have the cubic form in these axes (rotated cell?): "
                          "no C11/C12/C44 reported", RuntimeWarning, stacklevel=2)
    return ElasticResult(C=C, C_raw=C_raw, asymmetry=float(np.abs(C_raw - C_raw.T).max() / 2),
                         residual_stress=stress0 / units.GPa, bulk_modulus_voigt=float(KV),
                         bulk_modulus_reuss=float(KR),
                         shear_modulus_voigt=float(GV), shear_modulus_reuss=float(GR), cubic=cubic,
                         stable=bool(np.linalg.eigvalsh(C).min() > 0))
