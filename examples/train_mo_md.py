"""Main job: fit a potential to the shipped mlearn Mo DFT data, report its errors, run MD with it.

Trains (or, with --model, loads) a potential, prints the train/test error
table, writes a parity plot, then runs NVE velocity-Verlet MD on a 128-atom
bcc Mo supercell with ASE (ase_mlcalc.workflows.run_md) and prints the energy
drift, the speed and, for a GAP, the predicted uncertainty of the last frame.

Usage: python examples/train_mo_md.py [--family gap|lj|bpnn] [--model FILE] [--steps 200]
"""

import argparse
import os
import time

from ase.build import bulk

import ase_mlcalc
from ase_mlcalc.training import fit_bpnn, fit_gap, fit_lennard_jones, read_frames, report
from ase_mlcalc.workflows import run_md

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
FITS = {"gap": fit_gap,  # the mlearn GAP recipe (SOAP 5.2 Å, n_max 8, l_max 8, zeta 4, 2000 sparse points)
        "lj": fit_lennard_jones, "bpnn": fit_bpnn}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", default="gap", choices=list(FITS))
    p.add_argument("--model", help="load this model file instead of training")
    p.add_argument("--out", default="mo_model.pt", help="where to write the trained model")
    p.add_argument("--steps", type=int, default=200, help="MD steps of 2 fs")
    p.add_argument("--temperature", type=float, default=300.0)
    args = p.parse_args()

    if args.model:
        calc = ase_mlcalc.load(args.model)
    else:
        train = read_frames(os.path.join(DATA, "Mo_train.extxyz.xz"))
        test = read_frames(os.path.join(DATA, "Mo_test.extxyz.xz"))
        calc = FITS[args.family](train, test)
        print(f"trained {args.family} on {len(train)} frames in {calc.model.fit_info['wall_time_s']:.1f} s")
        report(calc, {"train": train, "test": test}, plot=os.path.splitext(args.out)[0] + "_parity.png")
        calc.save(args.out)
        print(f"model written to {args.out}")

    atoms = bulk("Mo", "bcc", a=3.16, cubic=True).repeat(4)
    t = time.perf_counter()
    md = run_md(atoms, calc, "nve", temperature_K=args.temperature, timestep_fs=2.0, steps=args.steps,
                interval=10, seed=0, progress=False)
    dt = time.perf_counter() - t
    print(md.summary())
    print(f"{1e3 * dt / max(args.steps, 1):.2f} ms per MD step ({len(atoms)} atoms)")
    if "energy_uncertainty" in calc.implemented_properties:
        sigma = calc.get_property("energy_uncertainty", atoms)
        print(f"GP uncertainty of the last frame: {1e3 * sigma / len(atoms):.3f} meV/atom (predictive std)")


if __name__ == "__main__":
    main()
