"""Relax bcc Mo (positions and cell, FrechetCellFilter) with a GAP, starting from a strained, rattled cell.

Prints the relaxed lattice constant, energy and stress; writes mo_relaxed.extxyz.

Usage: python examples/mo_relax.py [--model FILE]
"""

import argparse

import ase.io
import numpy as np
from mo_gap import add_model_arguments, bcc_mo, mo_calculator

from ase_mlcalc.workflows import relax


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(p)
    p.add_argument("--fmax", type=float, default=1e-3, help="eV/Å (default 1e-3)")
    args = p.parse_args()
    calc = mo_calculator(args)

    atoms = bcc_mo(a=3.25, cubic=True).repeat(2)  # 16 atoms, 3% too large
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + [[0.01, 0.005, 0], [0.005, -0.01, 0], [0, 0, 0]]), scale_atoms=True)
    atoms.rattle(0.05, seed=1)
    res = relax(atoms, calc, fmax=args.fmax, logfile="-")
    print(res.summary())
    a = np.cbrt(res.volume / len(atoms) * 2)
    print(f"bcc lattice constant from the relaxed volume: {a:.4f} Å (cell lengths / 2: "
          + " ".join(f"{x / 2:.4f}" for x in atoms.cell.lengths()) + ")")
    ase.io.write("mo_relaxed.extxyz", atoms)
    print("wrote mo_relaxed.extxyz")


if __name__ == "__main__":
    main()
