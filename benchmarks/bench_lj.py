"""Lennard-Jones MD step time: ase_mlcalc vs ASE's LennardJones and asap3 (when installed), same run.

Usage: python benchmarks/bench_lj.py [--sizes 4000 32000] [--steps 10]
fcc argon (epsilon 0.0104 eV, sigma 3.4 Å, rc 8.5 Å), velocity Verlet 5 fs at
50 K. Prints the median time per MD step (energy + forces + integration), the
time per atom and the ratios to ours.
"""

import argparse
import time

import numpy as np
from ase import units
from ase.build import bulk
from ase.calculators.lj import LennardJones as AseLJ
from ase.md.velocitydistribution import thermalize_momenta
from ase.md.verlet import VelocityVerlet

from ase_mlcalc import LennardJones

EPS, SIG, RC = 0.0104, 3.4, 8.5


def argon(n_target):
    k = max(1, round((n_target / 4) ** (1 / 3)))
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True) * (k, k, k)
    thermalize_momenta(atoms, temperature_K=50, rng=np.random.default_rng(0))
    return atoms


def calculators():
    out = {"ase_mlcalc": lambda: LennardJones(epsilon=EPS, sigma=SIG, rc=RC),
           "ase": lambda: AseLJ(epsilon=EPS, sigma=SIG, rc=RC)}
    try:
        from asap3 import LennardJones as AsapLJ

        out["asap3"] = lambda: AsapLJ([18], [EPS], [SIG], rCut=RC, modified=True)
    except ImportError:
        pass
    return out


def step_time(atoms, make_calc, steps):
    atoms = atoms.copy()
    atoms.calc = make_calc()
    dyn = VelocityVerlet(atoms, timestep=5 * units.fs)
    dyn.run(2)  # warm-up: JIT, first neighbor list
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        dyn.run(1)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[4000, 32000])
    p.add_argument("--steps", type=int, default=10)
    args = p.parse_args()
    calcs = calculators()
    print(f"LJ argon MD step (energy+forces+Verlet), rc {RC} Å; median of {args.steps} steps")
    print(f"{'atoms':>8} " + " ".join(f"{k + ' (s)':>16}" for k in calcs) + "   µs/atom (ours)   ratios (tool / ase_mlcalc)")
    for n in args.sizes:
        atoms = argon(n)
        t = {k: step_time(atoms, c, args.steps if k != "ase" else max(2, args.steps // 5)) for k, c in calcs.items()}
        ratios = "  ".join(f"{k}/ours={t[k] / t['ase_mlcalc']:.2f}" for k in calcs if k != "ase_mlcalc")
        print(f"{len(atoms):>8} " + " ".join(f"{t[k]:>16.4f}" for k in calcs)
              + f"   {1e6 * t['ase_mlcalc'] / len(atoms):>10.2f}        " + ratios)


if __name__ == "__main__":
    main()
