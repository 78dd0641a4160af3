"""Command line: ``ase-mlcalc train FAMILY | eval | compare | md | relax | eos | elastic | phonons | learn |
calibrate | lammps``.

Bad input (a missing or corrupt file, an unknown element, a setting out of
range, ...) prints one line naming the problem and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys

from . import active, lammps, simulate, train

__all__ = ["build_parser", "main"]


def build_parser():
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="ase-mlcalc",
        description="Machine-learned interatomic potentials as ASE calculators: train, evaluate, simulate.")
    parser.add_argument("--version", action="version", version=f"ase_mlcalc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    train.add_train(sub)
    train.add_eval(sub)
    train.add_compare(sub)
    for add in simulate.COMMANDS:
        add(sub)
    active.add_learn(sub)
    active.add_calibrate(sub)
    lammps.add_lammps(sub)
    return parser


def main(argv=None):
    """Run the command line; returns the exit status (0, or 2 after a one-line error message)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (ValueError, OSError, TypeError, FloatingPointError) as err:  # ase_mlcalc's errors are ValueErrors
        print(f"ase-mlcalc: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ase-mlcalc: interrupted", file=sys.stderr)
        return 130
    return 0
