"""NVE molecular dynamics of fcc argon with ase_mlcalc's Lennard-Jones calculator.

4000 atoms, 1 ps of velocity Verlet (5 fs steps) from 60 K, driven by ASE's
own VelocityVerlet. Prints the total-energy drift per atom per ps and the
throughput in atom-steps per second.

Usage: python examples/lj_argon_md.py [--repeat 10] [--steps 200]
"""

import argparse
import time

import numpy as np
from ase import units
from ase.build import bulk
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from ase.md.verlet import VelocityVerlet

from ase_mlcalc import LennardJones


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=10, help="cubic fcc cells per side (4 atoms each); 10 -> 4000 atoms")
    p.add_argument("--steps", type=int, default=200, help="MD steps of 5 fs (200 -> 1 ps)")
    p.add_argument("--temperature", type=float, default=60.0, help="initial temperature, K")
    args = p.parse_args()

    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(args.repeat)
    thermalize_momenta(atoms, temperature_K=args.temperature, rng=np.random.default_rng(42))
    Stationary(atoms)
    # Argon: epsilon 10.4 meV, sigma 3.4 Å; smooth cutoff for good energy conservation.
    atoms.calc = LennardJones(epsilon=0.0104, sigma=3.4, rc=8.5, smooth=True)
    dt = 5 * units.fs
    dyn = VelocityVerlet(atoms, timestep=dt)
    energies = []
    dyn.attach(lambda: energies.append(atoms.get_total_energy()), interval=10)
    dyn.run(1)  # compile kernels, build the first neighbor list
    t0 = time.perf_counter()
    dyn.run(args.steps)
    elapsed = time.perf_counter() - t0
    n = len(atoms)
    t_ps = args.steps * dt / (1000 * units.fs)
    e = np.array(energies[1:]) / n
    drift = np.polyfit(np.linspace(0, t_ps, len(e)), e, 1)[0]
    print(f"atoms: {n}, steps: {args.steps} x 5 fs = {t_ps:.2f} ps, final T = {atoms.get_temperature():.1f} K")
    print(f"total energy drift: {drift * 1e3:+.4f} meV/atom/ps (fluctuation {np.ptp(e) * 1e3:.4f} meV/atom)")
    print(f"neighbor-list builds: {atoms.calc._nl.n_builds}")
    print(f"throughput: {n * args.steps / elapsed:,.0f} atom-steps/s ({1e3 * elapsed / args.steps:.2f} ms/step)")


if __name__ == "__main__":
    main()
