"""Speed of the BPNN calculator: energy+forces per atom and MD throughput.

    PYTHONPATH=. python benchmarks/bench_bpnn.py [--model MODEL.pt] [--threads 1] [--repeats 7]

For 128- and 2000-atom bcc Mo cells (rattled) it prints the median wall time
of one energy+forces evaluation (µs/atom) on the CPU and, when available,
CUDA; then velocity-Verlet MD throughput (atom-steps/s, neighbor-list skin
0.5 Å). Without ``--model`` a BPNN with the default ACSF (40 features) and
[64, 64] tanh networks and random weights is timed (speed does not depend on
the weights). If ``torchani`` imports, its ANI-1x model (ANI-1x AEV of 384
features, 8 networks) is timed on a C/H/N/O cell of the same atom counts
for comparison; otherwise that part is skipped.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch
from ase import units
from ase.build import bulk
from ase.calculators.calculator import all_changes
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.md.verlet import VelocityVerlet

import ase_mlcalc
from ase_mlcalc.models.bpnn import BPNN, BPNNModel


def cell(n_atoms, seed=0):
    reps = {128: (4, 4, 4), 2000: (10, 10, 10)}[n_atoms]
    atoms = bulk("Mo", "bcc", a=3.16, cubic=True) * reps
    atoms.rattle(0.05, seed=seed)
    return atoms


def time_calc(calc, atoms, repeats):
    atoms = atoms.copy()
    atoms.calc = calc
    times = []
    for k in range(repeats + 1):
        atoms.positions[0, 0] += 1e-4  # force a recalculation (neighbor list reused within the skin)
        t = time.perf_counter()
        calc.calculate(atoms, ["energy", "forces"], all_changes)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:])  # first call: warm-up (numba / CUDA init)


def md_rate(calc, atoms, steps):
    atoms = atoms.copy()
    atoms.calc = calc
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    dyn = VelocityVerlet(atoms, 2.0 * units.fs)
    dyn.run(2)
    t = time.perf_counter()
    dyn.run(steps)
    return len(atoms) * steps / (time.perf_counter() - t)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="trained BPNN model file (default: random weights, default architecture)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--md-steps", type=int, default=20)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch threads {torch.get_num_threads()}, NUMBA_NUM_THREADS={os.environ.get('NUMBA_NUM_THREADS', 'default')}")
    if args.model:
        model = ase_mlcalc.load_model(args.model)
    else:
        torch.manual_seed(0)
        model = BPNNModel(["Mo"], 5.0)
    print(f"model: {model.descriptor}, hidden {model.hidden}, {model.activation}")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for dev in devices:
        calc = BPNN(model, device=dev)
        for n in (128, 2000):
            t = time_calc(calc, cell(n), args.repeats)
            rate = md_rate(calc, cell(n), args.md_steps if n == 128 else max(3, args.md_steps // 4))
            print(f"BPNN {dev:4s} {n:5d} atoms: energy+forces median {t * 1e3:8.2f} ms "
                  f"= {t / n * 1e6:7.2f} µs/atom; MD {rate:9.0f} atom-steps/s")
    try:
        import torchani
    except ImportError:
        print("torchani not importable: ANI comparison skipped")
        return
    for dev in devices:
        ani = torchani.models.ANI1x(periodic_table_index=True).to(dev).double()
        for n in (128, 2000):
            atoms = cell(n)
            atoms.numbers[:] = np.random.default_rng(0).choice([1, 6, 7, 8], size=n)
            calc = ani.ase()
            t = time_calc(calc, atoms, args.repeats)
            print(f"ANI-1x {dev:4s} {n:5d} atoms: energy+forces median {t * 1e3:8.2f} ms = {t / n * 1e6:7.2f} µs/atom")


if __name__ == "__main__":
    main()
