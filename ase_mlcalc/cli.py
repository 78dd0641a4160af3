"""Command-line interface: ``ase-mlcalc train FAMILY ... | eval MODEL FILE``."""

from __future__ import annotations

import argparse
import importlib
import sys

# Families that can be trained from the command line: name -> module with
# add_train_arguments(parser) and train_from_args(args).
TRAINERS = {
    "lj": "ase_mlcalc.models.lennard_jones",
    "gap": "ase_mlcalc.models.sparse_gp",
}


def _add_eval(sub):
    p = sub.add_parser("eval", help="error table of a saved model on a labelled structure file")
    p.add_argument("model", help="model file written by 'ase-mlcalc train' or calc.save()")
    p.add_argument("files", nargs="+", help="structure files with reference energy/forces (any ase.io format)")
    p.add_argument("--index", default=":", help="ase.io index of frames to read (default ':')")
    p.add_argument("--plot", help="write a parity plot (PNG) to this path")
    p.set_defaults(func=_eval)


def _eval(args):
    from .io import load_model
    from .training import evaluate, format_error_table, parity_plot, read_frames

    model = load_model(args.model)
    rows, preds = {}, {}
    for path in args.files:
        frames = read_frames(path, args.index)
        rows[path], preds[path] = evaluate(model, frames)
    print(format_error_table(rows))
    if args.plot:
        parity_plot(preds, args.plot, title=args.model)
        print(f"parity plot written to {args.plot}")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="ase-mlcalc",
        description="Machine-learned interatomic potentials as ASE calculators: train, evaluate, simulate.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"ase_mlcalc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="fit a potential to labelled structures")
    fam = train.add_subparsers(dest="family", required=True)
    for name, module in TRAINERS.items():
        mod = importlib.import_module(module)
        p = fam.add_parser(name, help=(mod.__doc__ or "").strip().splitlines()[0])
        p.add_argument("--train", required=True, help="training structures with energy and forces (any ase.io format)")
        p.add_argument("--test", help="test structures for the error table")
        p.add_argument("-o", "--output", required=True, help="model file to write")
        p.add_argument("--plot", help="parity plot PNG (default: OUTPUT with .png)")
        mod.add_train_arguments(p)
        p.set_defaults(func=mod.train_from_args)
    _add_eval(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"ase-mlcalc: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
