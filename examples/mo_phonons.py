"""Phonons of bcc Mo with a GAP: bands along Gamma-H-N-Gamma-P-H|P-N and the DOS; writes mo_phonons.png.

Frequencies in THz (ordinary frequency). The supercell defaults to twice the
model cutoff in every direction (even repetitions: 6x6x6 primitive cells for a 5.2 Å GAP).

Usage: python examples/mo_phonons.py [--model FILE] [--supercell 6 6 6]
"""

import argparse

from mo_gap import add_model_arguments, bcc_mo, mo_calculator

from ase_mlcalc.workflows import phonons, plot_phonons, relax


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(p)
    p.add_argument("--supercell", type=int, nargs=3, default=None)
    args = p.parse_args()
    calc = mo_calculator(args)

    atoms = bcc_mo()
    relax(atoms, calc, fmax=1e-4)
    res = phonons(atoms, calc, supercell=args.supercell)
    print(res.summary())
    plot_phonons(res, "mo_phonons.png", title="bcc Mo (GAP)")
    print("wrote mo_phonons.png")


if __name__ == "__main__":
    main()
