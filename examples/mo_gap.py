"""Shared by the Mo workflow examples: a small Mo GAP, trained on the shipped mlearn data or loaded.

``mo_calculator(args)`` loads ``args.model`` if given; otherwise it fits
``fit_gap(frames, n_sparse=300, l_max=6)`` (the rest: the mlearn GAP recipe)
to examples/data/Mo_train.extxyz.xz -- about a minute -- prints the test-set
errors and saves the model to ``args.out`` so the next example can reuse it
with ``--model``.
"""

import os
import time

from ase.build import bulk

import ase_mlcalc
from ase_mlcalc.training import fit_gap, read_frames, report

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")


def add_model_arguments(parser):
    parser.add_argument("--model", help="model file to load (any family) instead of training the small Mo GAP")
    parser.add_argument("--out", default="mo_gap_small.pt",
                        help="where to save the trained GAP (default mo_gap_small.pt)")
    parser.add_argument("--n-sparse", type=int, default=300, help="sparse points of the GAP fit (default 300)")
    parser.add_argument("--l-max", type=int, default=6, help="SOAP l_max of the GAP fit (default 6)")


def mo_calculator(args):
    """An ASE calculator for Mo: loaded from args.model, or a GAP trained now (and saved to args.out)."""
    if args.model:
        print(f"loading {args.model}")
        return ase_mlcalc.load(args.model)
    train = read_frames(os.path.join(DATA, "Mo_train.extxyz.xz"))
    test = read_frames(os.path.join(DATA, "Mo_test.extxyz.xz"))
    t = time.perf_counter()
    calc = fit_gap(train, n_sparse=args.n_sparse, l_max=args.l_max, progress=False)
    print(f"fitted a GAP (n_sparse={args.n_sparse}, l_max={args.l_max}) to {len(train)} Mo frames "
          f"in {time.perf_counter() - t:.0f} s")
    report(calc, {"train": train, "test": test})
    calc.save(args.out)
    print(f"model saved to {args.out} (reuse it with --model {args.out})")
    return calc


def bcc_mo(a=3.16, cubic=False):
    """bcc Mo: the one-atom primitive cell (default) or the two-atom cubic cell."""
    return bulk("Mo", "bcc", a=a, cubic=cubic)
