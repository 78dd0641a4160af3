"""What every workflow shares: the calculator argument, input checks, cubic lattice constants, optimizers."""

from __future__ import annotations

import os


def get_calculator(calc, atoms=None):
    """An ASE calculator from a calculator, a model file path (any family) or None (``atoms.calc``).

    Raises
    ------
    ValueError: no calculator given and none attached to ``atoms``.
    FileNotFoundError, ase_mlcalc.ModelFileError: unreadable model file.
    """
    if isinstance(calc, (str, os.PathLike)):
        from ..io import load

        return load(calc)
    if calc is None:
        calc = getattr(atoms, "calc", None)
        if calc is None:
            raise ValueError("no calculator: pass an ASE calculator or a model file path, or attach one to atoms")
    return calc


def check_atoms(atoms, need_pbc=False):
    from ase import Atoms

    if not isinstance(atoms, Atoms):
        raise TypeError(f"expected an ase.Atoms, got {type(atoms).__name__}")
    if len(atoms) == 0:
        raise ValueError("the structure has no atoms")
    if need_pbc and not atoms.pbc.all():
        raise ValueError("this workflow needs a crystal: a cell periodic in all three directions (atoms.pbc all True)")
    if need_pbc and abs(atoms.get_volume()) < 1e-8:
        raise ValueError("the periodic cell has zero volume")


def interaction_cutoff(calc):
    """The model's cutoff radius (Å) if the calculator exposes one (ase_mlcalc models do), else None."""
    model = getattr(calc, "model", None)
    cutoff = getattr(model, "cutoff", None)
    return float(cutoff) if cutoff else None


def cubic_lattice_constant(cell):
    """Conventional lattice constant (Å) of a cubic (sc/fcc/bcc) cell, else None.

    For a supercell this is the supercell's own lattice parameter (ASE's
    Bravais-lattice recognition sees the given cell only).
    """
    try:
        lat = cell.get_bravais_lattice()
    except (ValueError, RuntimeError):
        return None
    if lat.name in ("CUB", "FCC", "BCC"):
        return float(lat.a)
    return None


def optimizer_class(optimizer):
    from ase import optimize

    if not isinstance(optimizer, str):
        return optimizer
    names = {"bfgs": optimize.BFGS, "fire": optimize.FIRE, "lbfgs": optimize.LBFGS,
             "bfgslinesearch": optimize.BFGSLineSearch, "mdmin": optimize.MDMin}
    try:
        return names[optimizer.lower()]
    except KeyError:
        raise ValueError(f"unknown optimizer {optimizer!r}; "
                         "choose from BFGS, FIRE, LBFGS, BFGSLineSearch, MDMin") from None
