"""Train (or load) the Mo GAP on the shipped mlearn data, then run 300 K Langevin MD with ASE.

128-atom bcc Mo supercell, 1 ps of Langevin dynamics (2 fs steps, ASE's
Langevin). Prints the test-set errors of the model, the time per MD step,
and the mean predicted energy uncertainty (GP standard deviation) along
the trajectory.

Usage: python examples/mo_gap_md.py [--model mo_gap.pt] [--n-sparse 2000] [--steps 500]
The model is trained if the --model file does not exist, and saved there.
"""

import argparse
import os
import time

import numpy as np
from ase import units
from ase.build import bulk
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary, thermalize_momenta

import ase_mlcalc
from ase_mlcalc.models.sparse_gp import fit_gap
from ase_mlcalc.training import read_frames, report

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="mo_gap.pt", help="model file: loaded if present, else trained and saved")
    p.add_argument("--n-sparse", type=int, default=2000, help="sparse points when training (recipe: 2000)")
    p.add_argument("--steps", type=int, default=500, help="MD steps of 2 fs (500 -> 1 ps)")
    p.add_argument("--temperature", type=float, default=300.0, help="K")
    args = p.parse_args()

    if os.path.exists(args.model):
        calc = ase_mlcalc.load(args.model)
        print(f"loaded {args.model}")
    else:
        train = read_frames(os.path.join(DATA, "Mo_train.extxyz.xz"))
        test = read_frames(os.path.join(DATA, "Mo_test.extxyz.xz"))
        t = time.perf_counter()
        calc = fit_gap(train, n_sparse=args.n_sparse)  # mlearn recipe: SOAP 5.2 Å, n_max 8, l_max 8, zeta 4
        print(f"trained on {len(train)} frames in {time.perf_counter() - t:.0f} s")
        report(calc.model, train, test)
        calc.save(args.model)
        print(f"model written to {args.model}")

    atoms = bulk("Mo", "bcc", a=3.16, cubic=True).repeat(4)  # 128 atoms
    thermalize_momenta(atoms, temperature_K=args.temperature, rng=np.random.default_rng(1))
    Stationary(atoms)
    atoms.calc = calc
    # fixcm=False: ASE's fixcm=True does not sample NVT exactly (deprecated since ASE 3.28).
    dyn = Langevin(atoms, timestep=2 * units.fs, temperature_K=args.temperature, friction=0.01 / units.fs,
                   fixcm=False, rng=np.random.default_rng(2))
    sigma, temps = [], []

    def observe():
        sigma.append(calc.results["energy_uncertainty"] / len(atoms))
        temps.append(atoms.get_temperature())

    dyn.attach(observe, interval=5)
    dyn.run(1)  # compile kernels, first neighbor list
    t = time.perf_counter()
    dyn.run(args.steps)
    dt = time.perf_counter() - t
    print(f"Langevin MD at {args.temperature:.0f} K, {len(atoms)} atoms, {args.steps} x 2 fs: "
          f"{1e3 * dt / args.steps:.1f} ms/step ({1e6 * dt / args.steps / len(atoms):.0f} µs/atom/step)")
    print(f"mean temperature over the second half: {np.mean(temps[len(temps) // 2:]):.0f} K")
    print(f"mean predicted energy uncertainty: {1e3 * np.mean(sigma):.3f} meV/atom "
          f"(max {1e3 * np.max(sigma):.3f}); per-atom std of the last step: "
          f"{1e3 * calc.results['energies_uncertainty'].mean():.2f} meV")


if __name__ == "__main__":
    main()
