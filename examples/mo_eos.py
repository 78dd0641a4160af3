"""Equation of state of bcc Mo with a GAP: Birch-Murnaghan fit, V0, B, a0; writes mo_eos.png.

Usage: python examples/mo_eos.py [--model FILE] [--strain 0.03] [--points 11]
"""

import argparse

from mo_gap import add_model_arguments, bcc_mo, mo_calculator

from ase_mlcalc.workflows import equation_of_state, plot_eos, relax


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(p)
    p.add_argument("--strain", type=float, default=0.03, help="largest linear strain (default 0.03)")
    p.add_argument("--points", type=int, default=11)
    args = p.parse_args()
    calc = mo_calculator(args)

    atoms = bcc_mo(cubic=True)
    relax(atoms, calc, fmax=1e-4)
    res = equation_of_state(atoms, calc, max_strain=args.strain, n_points=args.points)
    print(res.summary())
    plot_eos(res, "mo_eos.png", title="bcc Mo (GAP)")
    print("wrote mo_eos.png")


if __name__ == "__main__":
    main()
