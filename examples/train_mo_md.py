"""Main job: fit a potential to the shipped mlearn Mo DFT data, report errors, run MD with it.

Trains (or, with --model, loads) a potential, prints the train/test error
table, writes a parity plot, then runs NVE velocity-Verlet MD on a bcc Mo
supercell with ASE and prints the energy drift and the speed.

Usage: python examples/train_mo_md.py [--family gap|lj] [--model FILE] [--steps 200]
"""

import argparse
import os
import time

import numpy as np
from ase import units
from ase.build import bulk
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from ase.md.verlet import VelocityVerlet

import ase_mlcalc
from ase_mlcalc.training import read_frames, report

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")


def train(family, out):
    train_frames = read_frames(os.path.join(DATA, "Mo_train.extxyz.xz"))
    test_frames = read_frames(os.path.join(DATA, "Mo_test.extxyz.xz"))
    t = time.perf_counter()
    if family == "gap":
        from ase_mlcalc.models.sparse_gp import fit_gap

        calc = fit_gap(train_frames)  # the mlearn GAP recipe (SOAP 5.2 Å, n_max 8, l_max 8, zeta 4, 2000 sparse)
    elif family == "lj":
        from ase_mlcalc.models.lennard_jones import fit_lennard_jones

        calc = fit_lennard_jones(train_frames, cutoff=5.0)
    else:
        raise SystemExit(f"unknown family {family!r}")
    print(f"trained {family} on {len(train_frames)} frames in {time.perf_counter() - t:.1f} s")
    report(calc.model, train_frames, test_frames, plot=os.path.splitext(out)[0] + "_parity.png")
    calc.save(out)
    print(f"model written to {out}")
    return calc


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", default="gap", choices=["gap", "lj"])
    p.add_argument("--model", help="load this model file instead of training")
    p.add_argument("--out", default="mo_model.pt", help="where to write the trained model")
    p.add_argument("--steps", type=int, default=200, help="MD steps of 2 fs")
    p.add_argument("--temperature", type=float, default=300.0)
    args = p.parse_args()

    calc = ase_mlcalc.load(args.model) if args.model else train(args.family, args.out)
    atoms = bulk("Mo", "bcc", a=3.16, cubic=True).repeat(4)
    thermalize_momenta(atoms, temperature_K=args.temperature, rng=np.random.default_rng(0))
    Stationary(atoms)
    atoms.calc = calc
    dyn = VelocityVerlet(atoms, timestep=2 * units.fs)
    e = []
    dyn.attach(lambda: e.append(atoms.get_total_energy() / len(atoms)), interval=10)
    dyn.run(1)
    t = time.perf_counter()
    dyn.run(args.steps)
    dt = time.perf_counter() - t
    print(f"NVE MD, {len(atoms)} atoms, {args.steps} x 2 fs: final T {atoms.get_temperature():.0f} K, "
          f"energy fluctuation {np.ptp(e[1:]) * 1e3:.3f} meV/atom, {1e3 * dt / args.steps:.2f} ms/step")


if __name__ == "__main__":
    main()
