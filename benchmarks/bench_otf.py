"""On-the-fly learning of fcc Cu (108 atoms) with EMT as the reference: 10 ps of Langevin MD at 1000 K with a
melt-and-recrystallise segment, for a GAP (from the perfect crystal alone) and for a BPNN committee (from it
and four rattled copies; at most one call every 25 steps: each of its updates retrains four networks).

Schedule (2 fs steps): 2 ps at 1000 K, 3 ps at 2000 K (the EMT crystal melts), 5 ps back at 1000 K (the
liquid is quenched; in 5 ps 108 atoms partly recrystallise). Reported per model: reference calls (goal
<= 60), the final model's force RMSE against EMT on held-out frames (goal <= 0.05 eV/Å), and the wall time
split into reference / model update / MD. The held-out frames come from an independent EMT MD run with the
same schedule (another seed), 10 from each segment.

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python benchmarks/bench_otf.py [--models gap bpnn] [--dir DIR]
"""

import argparse
import json
import os
import time

import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from ase_mlcalc.active import OnTheFly, plot_on_the_fly
from ase_mlcalc.training import evaluate
from ase_mlcalc.workflows.md import make_dynamics

SCHEDULE = [(1000.0, 1000), (2000.0, 1500), (1000.0, 2500)]  # (K, steps of 2 fs)


def cell():
    return bulk("Cu", "fcc", a=3.61, cubic=True) * 3


def held_out(seed=777, per_segment=10):
    """EMT MD with the same schedule: labelled frames from each segment."""
    atoms, frames = cell(), []
    for temperature, steps in SCHEDULE:
        dyn = make_dynamics(atoms, EMT(), "langevin", temperature, 2.0, seed=seed)
        every = steps // per_segment

        def grab():
            if dyn.nsteps:
                b = atoms.copy()
                b.calc = EMT()
                b.calc = SinglePointCalculator(b, energy=b.get_potential_energy(), forces=b.get_forces())
                frames.append(b)

        dyn.attach(grab, interval=every)
        dyn.run(steps)
        seed += 1
    return frames


def force_rmse(calc, frames):
    return evaluate(calc, frames)[0]["force_rmse"]


def initial_frames(model):
    """The GAP starts from the perfect crystal alone; a committee also gets four rattled copies (0.1 Å): the
    spread of networks fitted to one frame of identical environments says nothing about forces."""
    frames = [cell()]
    if model == "bpnn":
        for k in range(4):
            a = cell()
            a.rattle(0.1, seed=k)
            frames.append(a)
    return frames


def run(model, workdir, options):
    atoms = cell()
    t0 = time.perf_counter()
    otf = OnTheFly(model, EMT(), initial_frames=initial_frames(model), seed=0, progress=False,
                   data=os.path.join(workdir, f"cu_{model}.extxyz"), **options)
    t_init = time.perf_counter() - t0
    results, step = [], 0
    for temperature, steps in SCHEDULE:
        r = otf.run(atoms, "langevin", temperature_K=temperature, timestep_fs=2.0, steps=steps, seed=step,
                    start_step=step, log=os.path.join(workdir, f"cu_{model}.log"))
        results.append(r)
        step += steps
        print(f"  {model}: {temperature:.0f} K, {steps} steps: {r.summary()}", flush=True)
    otf.calculator.save(os.path.join(workdir, f"cu_{model}.pt"))
    merged = results[0]
    for r in results[1:]:
        merged.checks += r.checks
        merged.calls += r.calls
        merged.time_reference_s += r.time_reference_s
        merged.time_update_s += r.time_update_s
        merged.time_total_s += r.time_total_s
    merged.steps = step
    plot_on_the_fly(merged, os.path.join(workdir, f"cu_{model}.png"), title=f"Cu 108 atoms, EMT, {model}")
    return otf, merged, t_init


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["gap", "bpnn"], choices=["gap", "bpnn"])
    p.add_argument("--dir", default="bench_otf_work")
    p.add_argument("--threshold-factor", type=float, help="OnTheFly's (default: its own, 2.5 GAP, 4 committee)")
    args = p.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    test = held_out()
    print(f"held-out EMT frames: {len(test)}; their force RMS {np.sqrt(np.mean([np.mean(a.get_forces() ** 2) for a in test])):.3f} eV/Å")
    rows = {}
    options = {"gap": {"threshold_factor": args.threshold_factor},
               "bpnn": {"update_epochs": 30, "threshold_factor": args.threshold_factor, "min_steps_between_calls": 25}}
    for model in args.models:
        otf, res, t_init = run(model, args.dir, options[model])
        rmse = force_rmse(otf.calculator, test)
        by_segment = [force_rmse(otf.calculator, test[k * 10:(k + 1) * 10]) for k in range(len(SCHEDULE))]
        rows[model] = {"calls": len(res.calls), "force_rmse": rmse, "force_rmse_by_segment": by_segment,
                       "time_reference_s": res.time_reference_s, "time_update_s": res.time_update_s,
                       "time_md_s": res.time_md_s, "time_initial_fit_s": t_init, "threshold": res.threshold,
                       "frames": len(otf.frames),
                       "n_sparse": getattr(otf.calculator.model, "n_sparse", None)}
        print(json.dumps({model: rows[model]}), flush=True)
    print(f"\n{'model':<8}{'calls':>7}{'F RMSE':>10}{'by segment (1000/2000/1000 K)':>32}{'reference':>11}"
          f"{'update':>9}{'MD':>9}")
    for m, r in rows.items():
        seg = " / ".join(f"{x:.3f}" for x in r["force_rmse_by_segment"])
        print(f"{m:<8}{r['calls']:>7d}{r['force_rmse']:>10.4f}{seg:>32}{r['time_reference_s']:>10.1f}s"
              f"{r['time_update_s']:>8.1f}s{r['time_md_s']:>8.1f}s")


if __name__ == "__main__":
    main()
