"""LAMMPS ``pair_style mlcalc``: per-step cost against ase_mlcalc's ASE calculator and LAMMPS's lj/cut, strong
scaling 1 -> 2 MPI ranks, peak memory per rank of large runs; all in one run, medians and ratios.

    NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/bench_lammps.py all [--quick] [--no-memory]

Every case runs in its own process (``mpiexec -n N python bench_lammps.py lammps CASE`` for LAMMPS, through the
``lammps`` module; ``python bench_lammps.py ase CASE`` for ASE). A case times velocity-Verlet NVE steps after a
warm-up: ``samples`` samples of ``chunk`` steps each (``run chunk pre no post no``); the table gives the median
per-step wall time of rank 0, and for the plugin the seconds per step spent in the Python bridge (model +
autograd + the copies in and out) on rank 0, the rest being LAMMPS and the plugin's C++ (edges, force scatter,
communication). Peak memory (VmHWM of /proc/self/status) is reported per rank. ``uptime`` is printed before and
after: the machine may be shared, and the 1 -> 2 rank scaling is only meaningful on an idle machine.

Models (fitted by ``prepare`` on mlearn Mo frames, cached in --dir): ``gap``, SOAP n_max=6, l_max=6, cutoff
5.2 Å, 500 sparse points (the examples/lammps recipe); ``bpnn``, the default ACSF (cutoff 5 Å) and two hidden
layers of 64; ``lj``, Ar, rc 8.5 Å (against ``lj/cut 8.5`` with ``pair_modify shift yes``). LAMMPS runs with
``neighbor 1.0 bin`` and ``neigh_modify every 1 delay 0 check yes``, ASE with the calculator's default 0.5 Å
Verlet skin. One thread per rank throughout.

The per-rank cost model and its extrapolation to 10^6 atoms on 1000 ranks are in benchmarks/RESULTS_lammps.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "examples" / "data" / "Mo_train.extxyz.xz"

# case: (model, lattice, a, repeat, mass, element, steps per sample, samples)
CASES = {
    "gap_128": ("gap", "bcc", 3.16, 4, 95.95, "Mo", 5, 5),
    "gap_2000": ("gap", "bcc", 3.16, 10, 95.95, "Mo", 2, 9),
    "bpnn_2000": ("bpnn", "bcc", 3.16, 10, 95.95, "Mo", 2, 9),
    "gap_8192": ("gap", "bcc", 3.16, 16, 95.95, "Mo", 1, 5),
    "lj_256": ("lj", "fcc", 5.26, 4, 39.948, "Ar", 20, 5),
    "lj_32000": ("lj", "fcc", 5.26, 20, 39.948, "Ar", 2, 5),
    "ljnative_32000": ("native", "fcc", 5.26, 20, 39.948, "Ar", 10, 5),
    # memory: a few steps of big systems on 2 ranks
    "lj_1000188": ("lj", "fcc", 5.26, 63, 39.948, "Ar", 1, 2),
    "gap_100000": ("gap", "bcc", 3.16, 37, 95.95, "Mo", 1, 2),  # 2 * 37^3 = 101306 atoms
}


def prepare(d):
    """Fit and save the benchmark models into ``d`` (once)."""
    import ase.io

    from ase_mlcalc import LennardJones
    from ase_mlcalc.training import fit_bpnn, fit_gap

    d.mkdir(parents=True, exist_ok=True)
    if not (d / "gap.pt").exists():
        frames = ase.io.read(DATA, ":40")
        fit_gap(frames, n_max=6, l_max=6, n_sparse=500, progress=False).save(d / "gap.pt")
        fit_bpnn(frames, epochs=2, lbfgs_steps=0, progress=False).save(d / "bpnn.pt")
        LennardJones(species=["Ar"], epsilon=0.0104, sigma=3.4, rc=8.5).save(d / "lj.pt")


def _emit(row):
    """Write one rank's result to $BENCH_LAMMPS_OUT/<rank>.json (the parent collects them), else print it."""
    out = os.environ.get("BENCH_LAMMPS_OUT")
    if out:
        Path(out, f"{row['rank']}.json").write_text(json.dumps(row))
    else:
        print(json.dumps(row), flush=True)


def _peak_rss_mib():
    """Peak resident memory of this process (VmHWM), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_lammps(case, d):
    """One LAMMPS case on the ranks of this mpiexec; every rank prints one JSON line."""
    from ase_mlcalc.lammps import bridge, lammps_with_plugin

    model, lat, a, rep, mass, _el, chunk, samples = CASES[case]
    lmp = lammps_with_plugin(cmdargs=["-nocite", "-log", "none", "-screen", "none"], build=False)
    me = lmp.extract_setting("world_rank")
    pair = {"native": "pair_style lj/cut 8.5\npair_coeff * * 0.0104 3.4\npair_modify shift yes",
            "lj": f"pair_style mlcalc {d}/lj.pt\npair_coeff * * Ar"}.get(
                model, f"pair_style mlcalc {d}/{model}.pt\npair_coeff * * Mo")
    t0 = time.perf_counter()
    lmp.commands_string(f"""
units metal
atom_style atomic
lattice {lat} {a}
region box block 0 {rep} 0 {rep} 0 {rep}
create_box 1 box
create_atoms 1 box
mass 1 {mass}
displace_atoms all random 0.05 0.05 0.05 4321 units box
velocity all create 300 4928459 loop geom
{pair}
neighbor 1.0 bin
neigh_modify every 1 delay 0 check yes
fix integrate all nve
timestep 0.001
thermo 1000
run 1
""")
    setup_s = time.perf_counter() - t0
    for inst in bridge.INSTANCES:  # count only the timed steps
        inst.timings.update(calls=0, compute_s=0.0, model_s=0.0)
    times, cpu = [], []
    for _ in range(samples):
        t0, c0 = time.perf_counter(), time.process_time()
        lmp.command(f"run {chunk} pre no post no")
        times.append((time.perf_counter() - t0) / chunk)
        cpu.append((time.process_time() - c0) / chunk)
    row = {"case": case, "engine": "lammps", "rank": me, "nprocs": lmp.extract_setting("world_size"),
           "natoms": lmp.get_natoms(), "nlocal": lmp.extract_setting("nlocal"), "nghost": lmp.extract_setting("nghost"),
           "median_s": float(np.median(times)), "samples_s": times, "cpu_s": float(np.median(cpu)),
           "setup_s": setup_s}
    for inst in bridge.INSTANCES:
        t = inst.timings
        row.update(bridge_s=t["compute_s"] / max(t["calls"], 1), model_s=t["model_s"] / max(t["calls"], 1),
                   edges=t["edges"])
    lmp.close()
    row["peak_rss_mib"] = _peak_rss_mib()
    _emit(row)


def run_ase(case, d):
    """The same structure and steps with ase_mlcalc's calculator and ASE's VelocityVerlet (one process)."""
    from ase import units
    from ase.build import bulk
    from ase.md.velocitydistribution import thermalize_momenta
    from ase.md.verlet import VelocityVerlet

    import ase_mlcalc

    model, lat, a, rep, mass, el, chunk, samples = CASES[case]
    atoms = bulk(el, lat, a=a, cubic=True).repeat(rep)
    atoms.positions += np.random.default_rng(0).uniform(-0.05, 0.05, atoms.positions.shape)
    atoms.set_masses([mass] * len(atoms))
    atoms.calc = ase_mlcalc.load(d / f"{model}.pt")
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(1))
    dyn = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    dyn.run(2)
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        dyn.run(chunk)
        times.append((time.perf_counter() - t0) / chunk)
    _emit({"case": case, "engine": "ase", "rank": 0, "nprocs": 1, "natoms": len(atoms),
           "median_s": float(np.median(times)), "samples_s": times, "peak_rss_mib": _peak_rss_mib()})


def _uptime():
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def _launch(engine, case, n, d, env):
    import tempfile

    cmd = [sys.executable, str(Path(__file__).resolve()), engine, case, "--dir", str(d)]
    if engine == "lammps":
        cmd = [str(Path(sys.executable).parent / "mpiexec"), "-n", str(n)] + cmd
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = subprocess.run(cmd, check=False, capture_output=True, text=True, env=dict(env, BENCH_LAMMPS_OUT=tmp))
        wall = time.perf_counter() - t0
        rows = sorted((json.loads(f.read_text()) for f in Path(tmp).glob("*.json")), key=lambda r: r["rank"])
    if res.returncode != 0 or not rows:
        print(f"{engine} {case} n={n} failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}", file=sys.stderr)
        return None
    return {"rows": rows, "process_s": wall, **rows[0]}


def run_all(d, quick=False, memory=True):
    """Run every case, print the table and the ratios, write ``d/bench_lammps.json``; returns the results dict."""
    from ase_mlcalc.lammps import build_plugin

    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    env.pop("ASE_MLCALC_NUM_THREADS", None)
    prepare(d)
    build_plugin()
    plan = [("ase", "gap_2000", 1), ("lammps", "gap_2000", 1), ("ase", "bpnn_2000", 1), ("lammps", "bpnn_2000", 1),
            ("ase", "lj_32000", 1), ("lammps", "lj_32000", 1), ("lammps", "ljnative_32000", 1),
            ("lammps", "lj_256", 1), ("lammps", "gap_128", 1),
            ("lammps", "lj_32000", 2), ("lammps", "ljnative_32000", 2),
            ("lammps", "gap_8192", 1), ("lammps", "gap_8192", 2)]
    if quick:
        plan = plan[:4]
    if memory and not quick:
        plan += [("lammps", "lj_1000188", 2), ("lammps", "gap_100000", 2)]
    out = {"uptime_before": _uptime(), "results": {}}
    print(out["uptime_before"], flush=True)
    for engine, case, n in plan:
        r = _launch(engine, case, n, d, env)
        if r is None:
            continue
        out["results"][f"{engine}/{case}/{n}"] = r
        extra = ""
        if "bridge_s" in r:
            extra = f"  bridge {r['bridge_s'] * 1e3:8.2f} ms (model+grad {r['model_s'] * 1e3:8.2f})"
        ghosts = f" ghost/local {r['nghost'] / max(r['nlocal'], 1):4.2f}" if "nghost" in r else ""
        rss = " / ".join(f"{x['peak_rss_mib']:.0f}" for x in r["rows"])
        if "cpu_s" in r:
            cpu = " / ".join(f"{x['cpu_s'] * 1e3:.1f}" for x in r["rows"])
            extra += f"  cpu/rank {cpu} ms"
        print(f"{case:15s} {engine:6s} {n} rank(s) {r['natoms']:8d} atoms: {r['median_s'] * 1e3:9.2f} ms/step{extra}"
              f"{ghosts}  peak RSS/rank {rss} MiB", flush=True)
    out["uptime_after"] = _uptime()
    print(out["uptime_after"])
    res = out["results"]

    def ratio(a, b):
        return res[a]["median_s"] / res[b]["median_s"] if a in res and b in res else float("nan")

    ratios = {
        "gap_2000 plugin / ASE (1 rank)": ratio("lammps/gap_2000/1", "ase/gap_2000/1"),
        "bpnn_2000 plugin / ASE (1 rank)": ratio("lammps/bpnn_2000/1", "ase/bpnn_2000/1"),
        "lj_32000 plugin / lj/cut (1 rank)": ratio("lammps/lj_32000/1", "lammps/ljnative_32000/1"),
        "lj_32000 plugin / ASE (1 rank)": ratio("lammps/lj_32000/1", "ase/lj_32000/1"),
        "lj_32000 plugin speed-up 1 -> 2 ranks": ratio("lammps/lj_32000/1", "lammps/lj_32000/2"),
        "lj_32000 lj/cut speed-up 1 -> 2 ranks": ratio("lammps/ljnative_32000/1", "lammps/ljnative_32000/2"),
        "gap_8192 plugin speed-up 1 -> 2 ranks": ratio("lammps/gap_8192/1", "lammps/gap_8192/2"),
    }
    if "lammps/gap_128/1" in res and "lammps/gap_8192/1" in res:
        per_atom = {k: res[f"lammps/{k}/1"]["median_s"] / res[f"lammps/{k}/1"]["natoms"] for k in ("gap_128", "gap_8192")}
        ratios["GAP per-atom cost, 128 atoms (many ghosts) / 8192 atoms"] = per_atom["gap_128"] / per_atom["gap_8192"]
    out["ratios"] = ratios
    for k, v in ratios.items():
        print(f"{k:58s} {v:6.3f}")
    (d / "bench_lammps.json").write_text(json.dumps(out, indent=1))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=["all", "prepare", "lammps", "ase"])
    p.add_argument("case", nargs="?", choices=sorted(CASES))
    p.add_argument("--dir", default="bench_lammps_work", help="models and results (default ./bench_lammps_work)")
    p.add_argument("--quick", action="store_true", help="only the GAP and BPNN overhead cases")
    p.add_argument("--no-memory", action="store_true", help="skip the 1M-atom LJ and 100k-atom GAP runs")
    a = p.parse_args()
    d = Path(a.dir).resolve()
    if a.what == "all":
        run_all(d, a.quick, memory=not a.no_memory)
    elif a.what == "prepare":
        prepare(d)
    elif a.what == "lammps":
        run_lammps(a.case, d)
    else:
        run_ase(a.case, d)


if __name__ == "__main__":
    main()
