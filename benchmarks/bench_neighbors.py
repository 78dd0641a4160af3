"""Neighbor-list time: ase_mlcalc vs ASE, vesin and matscipy (when installed), same run.

Usage: python benchmarks/bench_neighbors.py [--sizes 500 4000 32000] [--cutoff 5.0]
Prints medians (s) and the ratio of each tool's time to ours (>1: we are faster).
"""

import argparse
import os
import sys

from ase.build import bulk
from ase.neighborlist import neighbor_list as ase_nl

sys.path.insert(0, os.path.dirname(__file__))
from _timing import median_time  # noqa: E402

from ase_mlcalc.neighbors import neighbor_list  # noqa: E402


def system(n_target):
    """Rattled fcc Cu supercell with about n_target atoms (4 atoms per cubic cell)."""
    k = max(1, round((n_target / 4) ** (1 / 3)))
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (k, k, k)
    atoms.rattle(0.05, seed=0)
    return atoms


def tools(cutoff):
    out = {"ase_mlcalc": lambda a: neighbor_list("ijS", a, cutoff),
           "ase": lambda a: ase_nl("ijS", a, cutoff)}
    try:
        from vesin import NeighborList

        calc = NeighborList(cutoff=cutoff, full_list=True)
        out["vesin"] = lambda a: calc.compute(a.positions, a.cell.array, bool(a.pbc.all()), quantities="ijS")
    except ImportError:
        pass
    try:
        from matscipy.neighbours import neighbour_list

        out["matscipy"] = lambda a: neighbour_list("ijS", a, cutoff)
    except ImportError:
        pass
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[500, 4000, 32000])
    p.add_argument("--cutoff", type=float, default=5.0)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    ts = tools(args.cutoff)
    print(f"neighbor list, full, fcc Cu, cutoff {args.cutoff} Å; median of {args.repeat} runs")
    print(f"{'atoms':>8} {'pairs':>10} " + " ".join(f"{k:>12}" for k in ts) + "   ratios (tool / ase_mlcalc)")
    for n in args.sizes:
        atoms = system(n)
        npairs = len(neighbor_list("i", atoms, args.cutoff))
        t = {k: median_time(lambda f=f: f(atoms), repeat=args.repeat if k != "ase" or n < 20000 else 1)
             for k, f in ts.items()}
        ratios = "  ".join(f"{k}/ours={t[k] / t['ase_mlcalc']:.2f}" for k in ts if k != "ase_mlcalc")
        print(f"{len(atoms):>8} {npairs:>10} " + " ".join(f"{t[k]:>11.4f}s" for k in ts) + "   " + ratios)


if __name__ == "__main__":
    main()
