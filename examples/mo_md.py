"""Molecular dynamics of bcc Mo with a GAP: NVT Langevin at 300 K to equilibrate, then NVE.

Writes mo_md.traj (ASE trajectory), mo_md.log (MDLogger) and mo_md.png
(energies and temperature against time), and prints the NVE energy drift.

Usage: python examples/mo_md.py [--model FILE] [--steps 1000] [--temperature 300]
"""

import argparse

import numpy as np
from mo_gap import add_model_arguments, bcc_mo, mo_calculator

from ase_mlcalc.workflows import MDResult, plot_md, relax, run_md


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(p)
    p.add_argument("--steps", type=int, default=1000, help="steps of each stage (2 fs; default 1000 = 2 ps)")
    p.add_argument("--temperature", type=float, default=300.0, help="K (default 300)")
    p.add_argument("--repeat", type=int, default=3, help="cubic cells per side (2 atoms each; default 3 -> 54 atoms)")
    args = p.parse_args()
    calc = mo_calculator(args)

    cell = bcc_mo(cubic=True)
    relax(cell, calc, fmax=1e-3)  # zero-pressure lattice constant of this model
    atoms = cell.repeat(args.repeat)
    nvt = run_md(atoms, calc, "langevin", temperature_K=args.temperature, timestep_fs=2.0, steps=args.steps,
                 friction_per_fs=0.02, seed=0)
    print(nvt.summary())
    nve = run_md(atoms, calc, "nve", temperature_K=args.temperature, timestep_fs=2.0, steps=args.steps,
                 trajectory="mo_md.traj", logfile="mo_md.log")
    print(nve.summary())
    # One plot of both stages (NVE times shifted after the NVT stage).
    both = MDResult(*(np.concatenate([getattr(nvt, f), getattr(nve, f) + (nvt.time_fs[-1] if f == "time_fs" else 0)])
                      for f in ("time_fs", "potential_energy", "kinetic_energy", "total_energy", "temperature")),
                    n_atoms=nve.n_atoms, ensemble="langevin", timestep_fs=2.0, temperature_K=args.temperature)
    plot_md(both, "mo_md.png", title=f"bcc Mo, {len(atoms)} atoms: Langevin then NVE "
                                     f"(NVE drift {nve.energy_drift() * 1e3:+.2g} meV/atom/ps)")
    print("wrote mo_md.traj, mo_md.log, mo_md.png")


if __name__ == "__main__":
    main()
