"""Elastic constants of bcc Mo with a GAP (stress-strain central differences after a full relaxation).

Prints the 6x6 C_ij, C11/C12/C44, the bulk modulus and the Zener anisotropy 2 C44 / (C11 - C12).

Usage: python examples/mo_elastic.py [--model FILE] [--strain 1e-3]
"""

import argparse

from mo_gap import add_model_arguments, bcc_mo, mo_calculator

from ase_mlcalc.workflows import elastic_constants, relax


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(p)
    p.add_argument("--strain", type=float, default=1e-3)
    args = p.parse_args()
    calc = mo_calculator(args)

    atoms = bcc_mo(cubic=True)
    print(relax(atoms, calc, fmax=1e-4).summary())
    res = elastic_constants(atoms, calc, strain=args.strain)
    print(res.summary())
    c = res.cubic
    print(f"Zener anisotropy 2 C44/(C11 - C12) = {2 * c['C44'] / (c['C11'] - c['C12']):.3f}; "
          f"B = (C11 + 2 C12)/3 = {(c['C11'] + 2 * c['C12']) / 3:.1f} GPa")


if __name__ == "__main__":
    main()
