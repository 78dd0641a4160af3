"""Relaxation of positions and cell with ASE's optimizers and FrechetCellFilter: :func:`relax`, :class:`RelaxResult`."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from ase import units

from .common import check_atoms, cubic_lattice_constant, get_calculator, optimizer_class


@dataclass
class RelaxResult:
    """Outcome of :func:`relax`.

    Attributes
    ----------
    atoms : the relaxed ase.Atoms (the same object that was passed in)
    converged : bool; n_steps : int, optimizer steps taken
    energy : eV; max_force : eV/Å, largest atomic force
    stress : (6,) GPa Voigt (xx, yy, zz, yz, xz, xy), None for non-periodic structures
    volume : Å³ (None if non-periodic); lattice_constant : Å, cubic lattice parameter of the cell
        (conventional a for a primitive fcc/bcc cell; a supercell's own), None if not cubic
    """

    atoms: object
    converged: bool
    n_steps: int
    energy: float
    max_force: float
    stress: np.ndarray | None
    volume: float | None
    lattice_constant: float | None

    def summary(self):
        a = self.atoms
        lines = [f"relaxation {'converged' if self.converged else 'NOT converged'} in {self.n_steps} steps",
                 f"energy: {self.energy:.6f} eV ({self.energy / len(a):.6f} eV/atom), "
                 f"max force {self.max_force:.2e} eV/Å"]
        if self.stress is not None:
            lengths = a.cell.cellpar()
            lines.append("cell: a b c = " + " ".join(f"{x:.5f}" for x in lengths[:3]) + " Å, angles = "
                         + " ".join(f"{x:.3f}" for x in lengths[3:]) + " deg")
            lines.append(f"volume: {self.volume:.4f} Å^3 ({self.volume / len(a):.4f} Å^3/atom)")
            lines.append("stress (GPa, xx yy zz yz xz xy): " + " ".join(f"{s:+.4f}" for s in self.stress))
            if self.lattice_constant is not None:
                lines.append(f"cubic lattice parameter of this cell: a = {self.lattice_constant:.5f} Å")
        return "\n".join(lines)


def relax(atoms, calc=None, fmax=0.01, cell=True, optimizer="BFGS", steps=1000, *, pressure_GPa=0.0,
          hydrostatic=False, trajectory=None, logfile=None):
    """Relax atomic positions and (optionally) the cell to a force/stress minimum.

    Parameters
    ----------
    atoms : ase.Atoms, relaxed in place
    calc : ASE calculator, model file path, or None for ``atoms.calc``
    fmax : eV/Å, convergence on forces; with ``cell`` the filter's cell
        "forces" (stress times volume, eV) are held to the same number
    cell : also relax the cell with :class:`ase.filters.FrechetCellFilter`
        (needs a 3D-periodic cell); False relaxes positions only
    optimizer : "BFGS" (default), "FIRE", "LBFGS", "BFGSLineSearch", "MDMin" or an ASE optimizer class
    steps : maximum optimizer steps
    pressure_GPa : external hydrostatic pressure (GPa) for the cell relaxation
    hydrostatic : keep the cell shape, relax the volume only
    trajectory, logfile : passed to the optimizer (paths; logfile "-" is stdout; None: quiet)

    Returns
    -------
    RelaxResult; a run that hits ``steps`` first returns ``converged=False`` with a warning.

    Raises
    ------
    ValueError: ``cell=True`` for a structure that is not 3D-periodic; bad fmax/steps.
    """
    from ase.filters import FrechetCellFilter

    check_atoms(atoms, need_pbc=cell)
    if not fmax > 0:
        raise ValueError(f"fmax must be > 0 eV/Å, got {fmax}")
    if int(steps) < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    atoms.calc = get_calculator(calc, atoms)
    opt_cls = optimizer_class(optimizer)
    target = FrechetCellFilter(atoms, hydrostatic_strain=hydrostatic, scalar_pressure=pressure_GPa * units.GPa) \
        if cell else atoms
    opt = opt_cls(target, logfile=logfile, trajectory=trajectory)
    try:
        converged = bool(opt.run(fmax=fmax, steps=int(steps)))
    finally:
        if hasattr(opt, "close"):
            opt.close()
    if not converged:
        warnings.warn(f"relaxation did not reach fmax={fmax} eV/Å in {steps} steps", RuntimeWarning, stacklevel=2)
    periodic = atoms.pbc.all()
    return RelaxResult(
        atoms=atoms, converged=converged, n_steps=int(opt.nsteps), energy=float(atoms.get_potential_energy()),
        max_force=float(np.linalg.norm(atoms.get_forces(), axis=1).max()),
        stress=atoms.get_stress(voigt=True) / units.GPa if periodic else None,
        volume=float(atoms.get_volume()) if periodic else None,
        lattice_constant=cubic_lattice_constant(atoms.cell) if periodic else None)
