"""Multi-element benchmark (issue 12): GAP (SOAP, distance_2b + SOAP), BPNN and LJ on real DFT sets,
against quippy's gap_fit with the same hyper-parameters on the same files in the same run; the
memory/speed of a GAP fit with the CLI defaults on the full InP set; MD stability.

Data (paths are arguments; nothing is copied into the project):

* ``--acac DIR``: acetylacetone (BOTNet-datasets ``dataset_acac``): ``train_300K.xyz``,
  ``test_MD_300K.xyz``, ``isolated_atoms.xyz``. 10 % of train_300K is held out for validation
  (the split fit_bpnn draws with ``seed=0``; every model trains on the same 450 frames).
* ``--inp FILE``: FitSNAP's InP_JPCA2020 set as extxyz (GPL-2.0: used by path). 20 % of every
  config_type is held out for validation (seeded; frames of one ``dup_cluster`` stay together).

Parts (each reruns on its own; ``all`` runs them in order)::

    python benchmarks/bench_multi.py acac        --acac DIR            --out OUT
    python benchmarks/bench_multi.py inp         --inp FILE            --out OUT
    python benchmarks/bench_multi.py inp-memory  --inp FILE            --out OUT
    python benchmarks/bench_multi.py md          --acac DIR --inp FILE --out OUT
    python benchmarks/bench_multi.py reeval      --inp FILE            --out OUT
    python benchmarks/bench_multi.py all         --acac DIR --inp FILE --out OUT
    python benchmarks/bench_multi.py report                            --out OUT

Every fit runs in its own process under ``/usr/bin/time -v`` (peak RSS, wall time), single-threaded
(OMP/OPENBLAS/MKL/NUMBA threads 1) and under ``nice -n 5``. Results go to ``OUT/results.json`` (one
entry per job; a job already there is skipped unless ``--force NAME``), models and logs to ``OUT/``;
``report`` prints the markdown tables of benchmarks/RESULTS_multi.md from it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

import numpy as np

HERE = os.path.abspath(__file__)
THREAD_ENV = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")}

# --------------------------------------------------------------------------- recipes
# gap_fit strings: the same text goes to fit_gap(gap=...) and to gap_fit's gap={...}.
ACAC_SOAP = ("soap cutoff=5.0 cutoff_transition_width=0.5 n_max=8 l_max=6 atom_sigma=0.5 zeta=4 delta=1.0 "
             "n_sparse=800 covariance_type=dot_product sparse_method=cur_points")
ACAC_2B = ("distance_2b cutoff=5.0 cutoff_transition_width=0.5 covariance_type=ard_se delta=1.0 "
           "theta_uniform=1.0 n_sparse=20 sparse_method=uniform")
INP_SOAP = ("soap cutoff=5.0 cutoff_transition_width=0.5 n_max=8 l_max=6 atom_sigma=0.5 zeta=4 delta=1.0 "
            "n_sparse=1500 covariance_type=dot_product sparse_method=cur_points")
INP_2B = ("distance_2b cutoff=5.0 cutoff_transition_width=0.5 covariance_type=ard_se delta=1.0 "
          "theta_uniform=1.0 n_sparse=20 sparse_method=uniform")
GAP_RECIPES = {
    # AcAc: energies of a 15-atom molecule, per-atom sigmas (sigma_per_atom): 1 meV/atom ~ 3.9 meV/molecule
    "acac_soap": dict(gap=ACAC_SOAP, default_sigma=(0.001, 0.03, 0.03)),
    "acac_2b_soap": dict(gap=f"{ACAC_2B} : {ACAC_SOAP}", default_sigma=(0.001, 0.03, 0.03)),
    # ours only: the same terms with tighter sigmas (the fits above sit at train F RMSE ~ sigma_F)
    "acac_2b_soap_tight": dict(gap=f"{ACAC_2B} : {ACAC_SOAP}", default_sigma=(0.0005, 0.01, 0.01)),
    # InP: virials from the stress (automatic); larger sigmas for the high-energy Shear and EOS groups
    "inp_soap": dict(gap=INP_SOAP, default_sigma=(0.002, 0.05, 0.02),
                     config_type_sigma={"Shear": (0.05, 0.5, 0.5), "EOS": (0.02, 0.1, 0.1)}),
    "inp_2b_soap": dict(gap=f"{INP_2B} : {INP_SOAP}", default_sigma=(0.002, 0.05, 0.02),
                        config_type_sigma={"Shear": (0.05, 0.5, 0.5), "EOS": (0.02, 0.1, 0.1)}),
}
BPNN_RECIPES = {
    # ACSF defaults (16 radial per element, angular per element pair), cutoff 5 Å, 64x64 tanh
    "acac": dict(epochs=2000, lbfgs_steps=1000, patience=150),  # the package defaults (~0.2 s per epoch)
    # InP: ~67k training atoms (a pilot: descriptor cache + 3 epochs + 20 L-BFGS iterations in 140 s, 11.4 GB);
    # ~4.4 s per Adam epoch on one core: epochs cut so that the fit stays within ~40 min
    "inp": dict(epochs=300, lbfgs_steps=300, patience=60, lr_patience=15),
}
LJ_RECIPE = dict(cutoff=5.0, energy_sigma=0.01, force_sigma=0.1)


# --------------------------------------------------------------------------- data
def read(path):
    import ase.io

    frames = ase.io.read(path, ":")
    return frames if isinstance(frames, list) else [frames]


def write(path, frames):
    import ase.io

    os.makedirs(os.path.dirname(path), exist_ok=True)
    ase.io.write(path, frames, format="extxyz")


def acac_e0(acac_dir):
    """{symbol: eV} of the isolated H, C, O atoms."""
    return {a.get_chemical_symbols()[0]: float(a.get_potential_energy())
            for a in read(os.path.join(acac_dir, "isolated_atoms.xyz"))}


def bpnn_split(n, fraction=0.1, seed=0):
    """(train, validation) indices exactly as fit_bpnn draws them (torch.randperm with ``seed``)."""
    import torch

    gen = torch.Generator().manual_seed(int(seed))
    n_val = int(round(fraction * n))
    perm = torch.randperm(n, generator=gen).tolist()
    return sorted(perm[n_val:]), sorted(perm[:n_val])


def group_split(frames, fraction=0.2, seed=0, key="config_type"):
    """(train, validation) indices: ``fraction`` of the frames of every ``atoms.info[key]`` group held out
    (seeded), whole ``dup_cluster``s (info key >= 0) on one side."""
    rng = np.random.default_rng(seed)
    groups = {}
    for k, a in enumerate(frames):
        groups.setdefault(str(a.info.get(key, "-")), []).append(k)
    val = []
    for g in sorted(groups):
        units = {}
        for k in groups[g]:
            c = int(frames[k].info.get("dup_cluster", -1))
            units.setdefault(("c", c) if c >= 0 else ("f", k), []).append(k)
        units = list(units.values())
        order = rng.permutation(len(units))
        target, taken = int(round(fraction * len(groups[g]))), []
        for u in order:
            if len(taken) >= target:
                break
            taken += units[u]
        val += taken
    val = sorted(val)
    held = set(val)
    return [k for k in range(len(frames)) if k not in held], val


def stratified_subset(frames, n, seed=0, key="config_type"):
    """About ``n`` frames, the same share of every group (at least one frame each), seeded."""
    rng = np.random.default_rng(seed)
    groups = {}
    for k, a in enumerate(frames):
        groups.setdefault(str(a.info.get(key, "-")), []).append(k)
    pick = []
    for g in sorted(groups):
        m = max(1, int(round(n * len(groups[g]) / len(frames))))
        pick += list(rng.choice(groups[g], size=min(m, len(groups[g])), replace=False))
    return sorted(int(k) for k in pick)


def min_distance(frames):
    """Shortest interatomic distance (Å) over the frames (minimum image for periodic cells)."""
    from ase.neighborlist import neighbor_list

    best = np.inf
    for a in frames:
        if len(a) < 2:
            continue
        d = neighbor_list("d", a, 3.0) if a.pbc.any() else a.get_all_distances()[np.triu_indices(len(a), 1)]
        if len(d):
            best = min(best, float(np.min(d)))
    return best


def prepare_data(args):
    """Write the splits as extxyz under OUT/data (outside the project) and return their paths + facts."""
    data = os.path.join(args.out, "data")
    meta_path = os.path.join(data, "meta.json")
    meta = json.load(open(meta_path)) if os.path.exists(meta_path) else {}
    if getattr(args, "acac", None) and "acac" not in meta:
        train = read(os.path.join(args.acac, "train_300K.xyz"))
        tr, va = bpnn_split(len(train))
        paths = {"train_full": os.path.join(args.acac, "train_300K.xyz"),
                 "train": os.path.join(data, "acac_train.xyz"), "validation": os.path.join(data, "acac_val.xyz"),
                 "test": os.path.join(args.acac, "test_MD_300K.xyz")}
        write(paths["train"], [train[k] for k in tr])
        write(paths["validation"], [train[k] for k in va])
        meta["acac"] = {"paths": paths, "e0": acac_e0(args.acac), "n_train": len(tr), "n_validation": len(va),
                        "min_distance": min_distance(train)}
    if getattr(args, "inp", None) and "inp" not in meta:
        frames = read(args.inp)
        tr, va = group_split(frames)
        train = [frames[k] for k in tr]
        sub = stratified_subset(train, args.anchor_frames)
        paths = {"full": os.path.abspath(args.inp), "train": os.path.join(data, "inp_train.xyz"),
                 "validation": os.path.join(data, "inp_val.xyz"), "subset": os.path.join(data, "inp_subset.xyz")}
        write(paths["train"], train)
        write(paths["validation"], [frames[k] for k in va])
        write(paths["subset"], [train[k] for k in sub])
        # e0 per species by least squares on composition of the training part (no isolated atoms in the
        # data): fixed and given to fit_gap and gap_fit alike, so that both fit the same targets
        from ase_mlcalc.species import species_of, symbols
        from ase_mlcalc.training.data import reference_energies

        species = species_of(train)
        e0 = reference_energies(train, species, np.array([a.get_potential_energy() for a in train]), 5.0,
                                e0_method="least_squares")
        meta["inp"] = {"paths": paths, "e0": dict(zip(symbols(species), map(float, e0))),
                       "n_train": len(tr), "n_validation": len(va), "n_subset": len(sub),
                       "atoms_train": sum(len(a) for a in train), "atoms_validation": sum(len(frames[k]) for k in va),
                       "atoms_subset": sum(len(train[k]) for k in sub), "atoms_full": sum(len(a) for a in frames),
                       "min_distance": min_distance(train)}
    os.makedirs(data, exist_ok=True)
    json.dump(meta, open(meta_path, "w"), indent=1)
    return meta


# --------------------------------------------------------------------------- measured processes
def parse_time_v(text):
    """Peak RSS (GB) and elapsed wall time (s) from /usr/bin/time -v output."""
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", text)
    out = {}
    if rss:
        out["peak_rss_gb"] = int(rss.group(1)) / 1024 ** 2
    if wall:
        h, m, s = wall.groups()
        out["process_wall_s"] = int(h or 0) * 3600 + int(m) * 60 + float(s)
    return out


def measured(cmd, log, cwd=None):
    """Run ``cmd`` (list) single-threaded under nice and /usr/bin/time -v; returns the time -v facts."""
    env = dict(os.environ, **THREAD_ENV)
    full = ["/usr/bin/time", "-v", "nice", "-n", "5", *cmd]
    t0 = time.perf_counter()
    with open(log, "w") as f:
        f.write(f"# {shlex.join(cmd)}\n# uptime before: {uptime()}\n")
        f.flush()
        rc = subprocess.run(full, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=cwd).returncode
        f.write(f"\n# uptime after: {uptime()}\n")
    text = open(log).read()
    out = parse_time_v(text)
    out.update(rc=rc, wall_s_outer=time.perf_counter() - t0, command=shlex.join(cmd), log=log)
    if rc:
        print(f"  !! exit status {rc}, see {log}")
    return out


def uptime():
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


class Results:
    def __init__(self, out, force=()):
        self.path = os.path.join(out, "results.json")
        self.data = json.load(open(self.path)) if os.path.exists(self.path) else {}
        self.force = set(force or ())

    def done(self, name):
        return name in self.data and name not in self.force and self.data[name].get("rc", 0) == 0

    def put(self, name, entry):
        if os.path.exists(self.path):  # another part may have run alongside: merge, do not overwrite
            self.data = json.load(open(self.path))
        self.data[name] = entry
        tmp = self.path + ".tmp"
        json.dump(self.data, open(tmp, "w"), indent=1, default=float)
        os.replace(tmp, self.path)


def run_job(res, out, name, spec):
    """One fit/evaluation/MD job in a child process (``_job``), measured; result merged into results.json."""
    if res.done(name):
        print(f"[{name}] done already (results.json)")
        return res.data[name]
    jobs = os.path.join(out, "jobs")
    os.makedirs(jobs, exist_ok=True)
    spec = dict(spec, name=name, out=out, result=os.path.join(jobs, f"{name}.json"))
    spec_path = os.path.join(jobs, f"{name}.spec.json")
    json.dump(spec, open(spec_path, "w"), indent=1)
    if os.path.exists(spec["result"]):
        os.remove(spec["result"])
    print(f"[{name}] running ({spec['kind']}) ...", flush=True)
    facts = measured([sys.executable, HERE, "_job", spec_path], os.path.join(jobs, f"{name}.log"))
    entry = json.load(open(spec["result"])) if os.path.exists(spec["result"]) else {}
    entry.update(facts, spec={k: v for k, v in spec.items() if k not in ("out", "result")})
    res.put(name, entry)
    print(f"[{name}] rc {facts['rc']}, {facts.get('process_wall_s', float('nan')):.0f} s, "
          f"peak {facts.get('peak_rss_gb', float('nan')):.2f} GB", flush=True)
    return entry


# --------------------------------------------------------------------------- gap_fit
def gap_fit_command(train_path, recipe, e0, xml):
    r = GAP_RECIPES[recipe]
    sig = tuple(r["default_sigma"]) + (0.0,) * (4 - len(r["default_sigma"]))
    cmd = ["gap_fit", f"at_file={train_path}", f"gap={{{r['gap']}}}", "default_sigma={%g %g %g %g}" % sig,
           "e0={" + ":".join(f"{s}:{v!r}" for s, v in e0.items()) + "}", "sparse_jitter=1e-10",
           "energy_parameter_name=energy", "force_parameter_name=forces", "stress_parameter_name=stress",
           "config_type_parameter_name=config_type", "do_copy_at_file=F", "sparse_separate_file=T",
           f"gp_file={os.path.basename(xml)}"]
    if r.get("config_type_sigma"):
        cmd.append("config_type_sigma={" + ":".join(f"{t}:{e:g}:{f:g}:{v:g}:0.0" for t, (e, f, v) in
                                                     r["config_type_sigma"].items()) + "}")
    return cmd


#: side of the vacuum box given to cell-less (molecular) frames for gap_fit, Å
BOX = 50.0


def gap_fit_input(train_path, work):
    """The training file gap_fit reads. gap_fit (QUIP's xyz reader) silently finds no target energies in
    frames without a Lattice (it reports "Number of target energies ... found: 0" and fits forces only):
    cell-less molecules get a BOX Å cubic cell (pbc stays F F F; the molecule is far smaller than BOX - cutoff)."""
    frames = read(train_path)
    if all(a.cell.rank == 3 for a in frames):
        return train_path
    for a in frames:
        if a.cell.rank < 3:
            a.cell = [BOX, BOX, BOX]
    boxed = os.path.join(work, "train_boxed.xyz")
    write(boxed, frames)
    return boxed


def gap_fit_targets(log):
    """{"energy": n, "forces": n, "virial": n} target counts gap_fit reports in its log."""
    text = open(log).read()
    return {k: int(v) for k, v in re.findall(r"Number of target (energies|forces|virials) \(property name: \w+\) "
                                             r"found: (\d+)", text)}


def run_gap_fit(res, out, name, train_path, recipe, e0, eval_sets):
    """gap_fit (measured process) then a separate evaluation of its XML with quippy."""
    if shutil.which("gap_fit") is None:
        print(f"[{name}] gap_fit not installed: skipped")
        return None
    work = os.path.join(out, "gap_fit", name)
    os.makedirs(work, exist_ok=True)
    xml = os.path.join(work, "gap.xml")
    if not res.done(name):
        print(f"[{name}] running gap_fit ...", flush=True)
        source = gap_fit_input(train_path, work)
        facts = measured(gap_fit_command(source, recipe, e0, xml), os.path.join(work, "gap_fit.log"), cwd=work)
        facts["fit_wall_s"] = facts.get("process_wall_s")
        facts["targets"] = gap_fit_targets(facts["log"])
        if not facts["targets"].get("energies"):
            print(f"  !! gap_fit found no target energies in {source}")
        res.put(name, dict(facts, recipe=recipe, train=train_path, xml=xml))
        print(f"[{name}] rc {facts['rc']}, {facts.get('process_wall_s', float('nan')):.0f} s, "
              f"peak {facts.get('peak_rss_gb', float('nan')):.2f} GB", flush=True)
    if res.data[name].get("rc"):
        return res.data[name]
    ev = run_job(res, out, f"{name}_eval", {"kind": "quippy_eval", "xml": xml, "eval": eval_sets})
    entry = dict(res.data[name], eval=ev.get("eval"), eval_wall_s=ev.get("process_wall_s"))
    res.put(name, entry)
    return entry


# --------------------------------------------------------------------------- parts
def part_acac(args, res, meta):
    m = meta["acac"]
    p, e0 = m["paths"], m["e0"]
    ev = {"validation": p["validation"], "test": p["test"]}
    for recipe in ("acac_soap", "acac_2b_soap"):
        run_job(res, args.out, f"gap_{recipe}", {"kind": "gap", "train": p["train"], "recipe": recipe, "e0": e0,
                                                 "eval": ev, "model": os.path.join(args.out, f"gap_{recipe}.pt")})
        run_gap_fit(res, args.out, f"gapfit_{recipe}", p["train"], recipe, e0, ev)
    for recipe in ("acac_2b_soap_tight",):  # a variant of ours (no gap_fit anchor)
        run_job(res, args.out, f"gap_{recipe}", {"kind": "gap", "train": p["train"], "recipe": recipe, "e0": e0,
                                                 "eval": ev, "model": os.path.join(args.out, f"gap_{recipe}.pt")})
    run_job(res, args.out, "lj_acac", {"kind": "lj", "train": p["train"], "eval": ev,
                                       "model": os.path.join(args.out, "lj_acac.pt")})
    # fit_bpnn holds out its own 10 % (the same frames as acac_val.xyz: bpnn_split reproduces its draw)
    run_job(res, args.out, "bpnn_acac", {"kind": "bpnn", "train": p["train_full"], "recipe": "acac", "e0": e0,
                                         "eval": ev, "model": os.path.join(args.out, "bpnn_acac.pt")})


def part_inp(args, res, meta):
    m = meta["inp"]
    p, e0 = m["paths"], m["e0"]
    ev = {"validation": p["validation"]}
    # anchor: ours and gap_fit on the same stratified subset, both recipes
    for recipe in ("inp_soap", "inp_2b_soap"):
        run_job(res, args.out, f"gap_{recipe}_subset", {"kind": "gap", "train": p["subset"], "recipe": recipe,
                                                        "e0": e0, "eval": ev,
                                                        "model": os.path.join(args.out, f"gap_{recipe}_subset.pt")})
        if recipe in args.inp_anchor_recipes:
            run_gap_fit(res, args.out, f"gapfit_{recipe}_subset", p["subset"], recipe, e0, ev)
    # ours on the whole training part (80 %): gap_fit's K_NM and descriptor derivatives would not fit
    for recipe in args.inp_full_recipes:
        run_job(res, args.out, f"gap_{recipe}", {"kind": "gap", "train": p["train"], "recipe": recipe, "e0": e0,
                                                 "eval": ev, "model": os.path.join(args.out, f"gap_{recipe}.pt")})
    run_job(res, args.out, "lj_inp", {"kind": "lj", "train": p["train"], "eval": ev,
                                      "model": os.path.join(args.out, "lj_inp.pt")})
    run_job(res, args.out, "bpnn_inp", {"kind": "bpnn", "train": p["train"], "recipe": "inp", "eval": ev,
                                        "model": os.path.join(args.out, "bpnn_inp.pt")})


def part_inp_memory(args, res, meta):
    """The CLI defaults on the full InP_train (93k atoms), exactly as a user types it."""
    name = "inp_memory_cli_default"
    if res.done(name):
        print(f"[{name}] done already")
        return
    exe = shutil.which("ase-mlcalc") or os.path.join(os.path.dirname(sys.executable), "ase-mlcalc")
    model = os.path.join(args.out, "inp_gap_default.pt")
    print(f"[{name}] running ...", flush=True)
    facts = measured([exe, "train", "gap", "--train", meta["inp"]["paths"]["full"], "-o", model, "--plot", ""],
                     os.path.join(args.out, "inp_memory.log"), cwd=args.out)
    text = open(facts["log"]).read()
    fit = re.search(r"fitted (\d+) sparse points to (\d+) observations in ([\d.]+) s \(descriptors ([\d.]+) s, "
                    r"kernel rows ([\d.]+) s, solve ([\d.]+) s\)", text)
    if fit:
        facts.update(n_sparse=int(fit.group(1)), n_observations=int(fit.group(2)), fit_s=float(fit.group(3)),
                     descriptors_s=float(fit.group(4)), kernel_rows_s=float(fit.group(5)), solve_s=float(fit.group(6)))
    n = meta["inp"]["atoms_full"]
    facts["n_atoms"] = n
    facts["s_per_1000_atoms"] = facts.get("fit_s", facts.get("process_wall_s", np.nan)) / n * 1000
    train = re.search(r"^train\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", text, re.M)
    if train:
        facts["train_errors"] = dict(zip(("n_frames", "energy_rmse", "energy_mae", "force_rmse", "force_mae"),
                                         [int(train.group(1))] + [float(x) for x in train.groups()[1:]]))
    res.put(name, facts)
    print(f"[{name}] rc {facts['rc']}, peak {facts.get('peak_rss_gb', np.nan):.2f} GB, "
          f"{facts['s_per_1000_atoms']:.1f} s per 1000 atoms", flush=True)


def part_md(args, res, meta):
    if "acac" in meta:
        gap = args.acac_md_gap or best_gap(res, "acac")
        if gap:
            run_job(res, args.out, "md_acac_gap", md_spec("acac", res.data[gap]["spec"]["model"], meta))
        if res.done("bpnn_acac") and not args.no_bpnn_md:
            run_job(res, args.out, "md_acac_bpnn", md_spec("acac", res.data["bpnn_acac"]["spec"]["model"], meta))
    if "inp" in meta:
        gap = args.inp_md_gap or best_gap(res, "inp")
        if gap:
            run_job(res, args.out, "md_inp_gap", md_spec("inp", res.data[gap]["spec"]["model"], meta))


def part_reeval(args, res, meta):
    """Evaluate the saved InP models (ours and gap_fit's) again as ``NAME_reeval``, e.g. after a change to
    what an evaluation reports; ``report`` prefers these evaluations."""
    for name, v in list(res.data.items()):
        if "inp" not in name or name.endswith(("_reeval", "_eval")) or v.get("rc") or not v.get("eval"):
            continue
        if v.get("xml"):
            spec = {"kind": "quippy_eval", "xml": v["xml"], "eval": {"validation": meta["inp"]["paths"]["validation"]}}
        elif v.get("spec", {}).get("kind") in ("gap", "lj", "bpnn"):
            spec = {"kind": "eval", "model": v["spec"]["model"], "eval": v["spec"]["eval"]}
        else:
            continue
        run_job(res, args.out, f"{name}_reeval", spec)


def best_gap(res, dataset):
    """The GAP of ``dataset`` with the lowest validation force RMSE (full training part preferred)."""
    cands = [k for k, v in res.data.items() if k.startswith(f"gap_{dataset}") and v.get("rc") == 0
             and "subset" not in k and v.get("eval")]
    if not cands:
        return None
    return min(cands, key=lambda k: res.data[k]["eval"]["validation"]["all"]["force_rmse"])


def md_spec(dataset, model, meta):
    m = meta[dataset]
    if dataset == "acac":
        return {"kind": "md", "model": model, "structure": "acac", "source": m["paths"]["test"],
                "temperature_K": 300.0, "nvt_ps": 20.0, "nvt_dt_fs": 0.5, "nve_ps": 2.0, "nve_dt_fs": 0.5,
                "interval": 20, "min_allowed": 0.6 * m["min_distance"], "train_min_distance": m["min_distance"],
                "train": m["paths"]["train"]}
    return {"kind": "md", "model": model, "structure": "inp", "temperature_K": 600.0, "nvt_ps": 10.0,
            "nvt_dt_fs": 2.0, "nve_ps": 2.0, "nve_dt_fs": 2.0, "interval": 10,
            "min_allowed": 0.6 * m["min_distance"], "train_min_distance": m["min_distance"],
            "train": m["paths"]["train"]}


# --------------------------------------------------------------------------- child jobs
def errors_by_group(pred, frames):
    from ase_mlcalc.training import error_metrics, group_metrics, reference_values

    out = {"all": error_metrics(pred["energy"], pred["forces"], pred["reference"])}
    groups = group_metrics(pred, frames)
    if len(groups) > 1:
        out["groups"] = groups
    bad = [k for k, a in enumerate(frames) if a.info.get("source_file") in OUTLIER_FRAMES]
    if bad:  # the same metrics over the other frames
        keep = [k for k in range(len(frames)) if k not in bad]
        start = np.concatenate([[0], np.cumsum([len(a) for a in frames])])
        rows = np.concatenate([np.arange(start[k], start[k + 1]) for k in keep])
        out["without_outliers"] = error_metrics(pred["energy"][keep], pred["forces"][rows],
                                                reference_values([frames[k] for k in keep]))
        out["outliers"] = [frames[k].info["source_file"] for k in bad]
    return out


def evaluate_sets(calc_or_model, sets):
    """{set: {"all": metrics, "groups": {config_type: metrics}}} with our batched evaluate."""
    from ase_mlcalc.training import evaluate

    out = {}
    for name, path in sets.items():
        frames = read(path)
        _, pred = evaluate(calc_or_model, frames)
        out[name] = errors_by_group(pred, frames)
    return out


def job_gap(spec):
    from ase_mlcalc.training import fit_gap

    r = GAP_RECIPES[spec["recipe"]]
    calc = fit_gap(spec["train"], gap=r["gap"], default_sigma=r["default_sigma"],
                   config_type_sigma=r.get("config_type_sigma"), e0=spec.get("e0"), progress=False)
    info = {k: v for k, v in calc.model.fit_info.items() if k != "history"}
    calc.save(spec["model"])
    return {"fit_info": info, "fit_wall_s": info["wall_time_s"], "train": calc.metrics["train"],
            "eval": evaluate_sets(calc, spec["eval"])}


def job_lj(spec):
    from ase_mlcalc.training import fit_lennard_jones

    calc = fit_lennard_jones(spec["train"], **LJ_RECIPE)
    calc.save(spec["model"])
    info = {k: v for k, v in calc.model.fit_info.items() if k != "history"}
    return {"fit_info": info, "fit_wall_s": info["wall_time_s"], "train": calc.metrics["train"],
            "epsilon": np.asarray(calc.epsilon).tolist(), "sigma": np.asarray(calc.sigma).tolist(),
            "eval": evaluate_sets(calc, spec["eval"])}


def job_bpnn(spec):
    import torch

    from ase_mlcalc.training import fit_bpnn

    torch.set_num_threads(1)
    kw = dict(BPNN_RECIPES[spec["recipe"]])
    calc = fit_bpnn(spec["train"], e0=spec.get("e0"), checkpoint=spec["model"] + ".ckpt", progress=False,
                    verbose=True, **kw)
    calc.save(spec["model"])
    info = {k: v for k, v in calc.model.fit_info.items() if k != "history"}
    hist = calc.model.fit_info["history"]
    return {"fit_info": info, "fit_wall_s": info["wall_time_s"], "settings": kw, "metrics": calc.metrics,
            "train": calc.metrics["train"], "last_history": hist[-3:], "eval": evaluate_sets(calc, spec["eval"])}


def job_eval(spec):
    """Evaluate a saved model again (``reeval``: after a change to what an evaluation reports)."""
    from ase_mlcalc import load

    return {"eval": evaluate_sets(load(spec["model"]), spec["eval"])}


def job_quippy_eval(spec):
    from quippy.potential import Potential

    from ase_mlcalc.training import reference_values

    cwd = os.getcwd()
    os.chdir(os.path.dirname(spec["xml"]))  # sparseX files are found relative to the working directory
    try:
        pot = Potential(param_filename=os.path.basename(spec["xml"]))
    finally:
        os.chdir(cwd)
    out = {}
    t0 = time.perf_counter()
    for name, path in spec["eval"].items():
        frames = read(path)
        e, f = [], []
        for a in frames:
            b = a.copy()
            b.calc = pot
            e.append(b.get_potential_energy())
            f.append(b.get_forces())
        pred = {"energy": np.array(e), "forces": np.concatenate(f), "reference": reference_values(frames)}
        out[name] = errors_by_group(pred, frames)
    return {"eval": out, "eval_s": time.perf_counter() - t0}


def md_structure(spec):
    if spec["structure"] == "acac":
        a = read(spec["source"])[0]
        a.calc = None
        return a
    from ase.build import bulk

    return bulk("InP", "zincblende", a=5.87, cubic=True) * 3


def job_md(spec):
    from ase_mlcalc import load
    from ase_mlcalc.workflows import make_dynamics

    atoms = md_structure(spec)
    calc = load(spec["model"])
    n = len(atoms)
    iu = np.triu_indices(n, 1)

    def dmin():
        return float(atoms.get_all_distances(mic=atoms.pbc.any())[iu].min())

    out = {"n_atoms": n, "model": spec["model"], "min_allowed": spec["min_allowed"],
           "train_min_distance": spec["train_min_distance"]}
    if spec.get("train"):  # DFT energies per atom of the training frames with the MD cell's composition
        comp = np.bincount(atoms.numbers) / n
        e_ref = [a.get_potential_energy() / len(a) for a in read(spec["train"])
                 if len(np.bincount(a.numbers)) == len(comp) and np.allclose(np.bincount(a.numbers) / len(a), comp)]
        if e_ref:
            out.update(train_epot_min=float(np.min(e_ref)), train_epot_mean=float(np.mean(e_ref)),
                       train_same_composition_frames=len(e_ref))
    for phase, ensemble, ps, dt in (("nvt", "langevin", spec["nvt_ps"], spec["nvt_dt_fs"]),
                                    ("nve", "nve", spec["nve_ps"], spec["nve_dt_fs"])):
        dyn = make_dynamics(atoms, calc, ensemble, temperature_K=spec["temperature_K"], timestep_fs=dt, seed=1,
                            initialize_velocities=(phase == "nvt"))
        steps = int(round(ps * 1000 / dt))
        rows = []

        def sample():
            epot, ekin = atoms.get_potential_energy(), atoms.get_kinetic_energy()
            rows.append((dyn.nsteps * dt, epot, ekin, atoms.get_temperature(), dmin()))
            if dyn.nsteps % max(1, steps // 10) < spec["interval"]:
                print(f"{phase} step {dyn.nsteps}/{steps}: T {rows[-1][3]:.0f} K, Epot {epot / n:.5f} eV/atom, "
                      f"min distance {rows[-1][4]:.3f} Å, {time.perf_counter() - t0:.0f} s", flush=True)

        t0 = time.perf_counter()
        dyn.attach(sample, interval=spec["interval"])
        ok = True
        try:
            dyn.run(steps)
        except Exception as err:  # noqa: BLE001 - a blow-up (e.g. overlapping atoms) is a result here
            ok = False
            out[f"{phase}_error"] = f"{type(err).__name__}: {err}"
        wall = time.perf_counter() - t0
        a = np.array(rows)
        res = {"steps": steps, "timestep_fs": dt, "ps": ps, "wall_s": wall, "ms_per_step": 1e3 * wall / max(steps, 1),
               "completed": ok, "n_samples": len(a), "min_distance": float(a[:, 4].min()),
               "stable": bool(ok and a[:, 4].min() > spec["min_allowed"]),
               "T_mean_second_half": float(a[len(a) // 2:, 3].mean()), "T_std": float(a[len(a) // 2:, 3].std()),
               "epot_mean_second_half": float(a[len(a) // 2:, 1].mean() / n), "epot_min": float(a[:, 1].min() / n)}
        bad = np.flatnonzero(a[:, 4] <= spec["min_allowed"])
        res["first_too_close_fs"] = float(a[bad[0], 0]) if len(bad) else None
        if phase == "nve":
            etot = (a[:, 1] + a[:, 2]) / n
            res["drift_meV_atom_ps"] = 1e3 * float(np.polyfit(a[:, 0] / 1000.0, etot, 1)[0])
            res["fluctuation_meV_atom"] = 1e3 * float(np.ptp(etot))
        out[phase] = res
        if not ok:
            break
    return out


def child(spec_path):
    spec = json.load(open(spec_path))
    kind = spec["kind"]
    fn = {"gap": job_gap, "lj": job_lj, "bpnn": job_bpnn, "quippy_eval": job_quippy_eval, "md": job_md,
          "eval": job_eval}[kind]
    t0 = time.perf_counter()
    result = fn(spec)
    result["job_s"] = time.perf_counter() - t0
    json.dump(result, open(spec["result"], "w"), indent=1, default=float)


# --------------------------------------------------------------------------- report
def fmt(x, nd=1):
    return "–" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{nd}f}"


#: InP validation groups also left out in a second column: aP's validation part holds the one frame of the set
#: 0.71 eV/atom above the others of its group (aP/aP_0_C3vfar_tdC_sc3k2cl_d0lda2, the only "C3vfar" frame
#: of the set; max force 1.6 eV/Å), with no
#: similar frame in training
OUTLIER_GROUPS = ("aP",)
#: that frame (its ``source_file``): every InP evaluation also gives its errors without it
OUTLIER_FRAMES = ("aP/aP_0_C3vfar_tdC_sc3k2cl_d0lda2.json",)


def without_groups(groups, atoms_per_group, leave_out):
    """Energy (meV/atom) and force (eV/Å) RMSE over all groups but ``leave_out``, exact from per-group RMSEs
    (energies: per frame; forces: per component, 3 per atom)."""
    keep = [g for g in groups if g not in leave_out]
    n = sum(groups[g]["n_frames"] for g in keep)
    se = sum(groups[g]["n_frames"] * groups[g]["energy_rmse"] ** 2 for g in keep)
    nf = sum(3 * atoms_per_group[g] for g in keep)
    sf = sum(3 * atoms_per_group[g] * groups[g]["force_rmse"] ** 2 for g in keep)
    return float(np.sqrt(se / n)), float(np.sqrt(sf / nf))


#: eV/atom: an MD whose potential energy falls further below the lowest DFT energy of training frames of its
#: composition has left the data for a hole of the model (thermal fluctuations of Epot are ~10 meV/atom here)
EPOT_TOLERANCE = 0.05


def epot_check(v):
    if v.get("train_epot_min") is None or v["nvt"].get("epot_min") is None:
        return "–"
    below = v["train_epot_min"] - v["nvt"]["epot_min"]
    return "yes" if below <= EPOT_TOLERANCE else f"NO ({1e3 * below:.0f} meV/atom below)"


def report(out):
    res = Results(out).data
    meta = json.load(open(os.path.join(out, "data", "meta.json")))
    lines = []

    def table(header, rows):
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        lines.extend("| " + " | ".join(r) + " |" for r in rows)
        lines.append("")

    def fit_cols(v):
        return [fmt(v.get("fit_wall_s"), 0), fmt(v.get("process_wall_s"), 0), fmt(v.get("peak_rss_gb"), 2)]

    names = {"gap_acac_soap": "GAP SOAP (ours)", "gapfit_acac_soap": "gap_fit SOAP",
             "gap_acac_2b_soap": "GAP 2b+SOAP (ours)", "gapfit_acac_2b_soap": "gap_fit 2b+SOAP",
             "gap_acac_2b_soap_tight": "GAP 2b+SOAP, sigma 0.5 meV/atom, 10 meV/Å (ours)",
             "bpnn_acac": "BPNN", "lj_acac": "LJ"}
    if "acac" in meta:
        rows = []
        for k, label in names.items():
            v = res.get(k)
            if not v or not v.get("eval"):
                continue
            cells = [label]
            for s in ("validation", "test"):
                a = v["eval"][s]["all"]
                cells += [fmt(a["energy_rmse"] * 15, 1), fmt(a["energy_rmse"], 2), fmt(1e3 * a["force_rmse"], 1)]
            rows.append(cells + fit_cols(v))
        lines.append(f"AcAc ({meta['acac']['n_train']} training frames, {meta['acac']['n_validation']} validation, "
                     "650 test):")
        table(["model", "val E (meV/mol)", "val E (meV/atom)", "val F (meV/Å)", "test E (meV/mol)",
               "test E (meV/atom)", "test F (meV/Å)", "fit (s)", "process (s)", "peak RSS (GB)"], rows)
    if "inp" in meta:
        labels = {"gap_inp_soap_subset": "GAP SOAP (ours), subset", "gapfit_inp_soap_subset": "gap_fit SOAP, subset",
                  "gap_inp_2b_soap_subset": "GAP 2b+SOAP (ours), subset",
                  "gapfit_inp_2b_soap_subset": "gap_fit 2b+SOAP, subset",
                  "gap_inp_soap": "GAP SOAP (ours), 80 %", "gap_inp_2b_soap": "GAP 2b+SOAP (ours), 80 %",
                  "bpnn_inp": "BPNN, 80 %", "lj_inp": "LJ, 80 %"}
        rows, group_rows = [], {}
        atoms_per_group = {}
        for a in read(meta["inp"]["paths"]["validation"]):
            atoms_per_group[a.info["config_type"]] = atoms_per_group.get(a.info["config_type"], 0) + len(a)
        for k, label in labels.items():
            v = res.get(k)
            if not v or not v.get("eval"):
                continue
            val = (res.get(f"{k}_reeval") or {}).get("eval", v["eval"])["validation"]
            a = val["all"]
            e_x, f_x = without_groups(val["groups"], atoms_per_group, OUTLIER_GROUPS)
            w = val.get("without_outliers", {})
            rows.append([label, fmt(a["energy_rmse"], 1), fmt(1e3 * a["force_rmse"], 1),
                         fmt(w.get("energy_rmse"), 2), fmt(1e3 * w["force_rmse"] if w else None, 1),
                         fmt(e_x, 1), fmt(1e3 * f_x, 1)] + fit_cols(v))
            for g, m in val.get("groups", {}).items():
                group_rows.setdefault(g, {})[label] = (m["energy_rmse"], 1e3 * m["force_rmse"], m["n_frames"])
        m = meta["inp"]
        lines.append(f"InP validation ({m['n_validation']} frames, {m['atoms_validation']} atoms; training "
                     f"{m['n_train']} frames / {m['atoms_train']} atoms, subset {m['n_subset']} / "
                     f"{m['atoms_subset']}):")
        table(["model", "E (meV/atom)", "F (meV/Å)", "E without the outlier frame", "F without it",
               f"E without {'+'.join(OUTLIER_GROUPS)}",
               f"F without {'+'.join(OUTLIER_GROUPS)}", "fit (s)", "process (s)", "peak RSS (GB)"], rows)
        cols = [label for label in labels.values() if any(label in d for d in group_rows.values())]
        grow = []
        for g, d in group_rows.items():
            n = next(iter(d.values()))[2]
            grow.append([g, str(n)] + [f"{fmt(d[c][0], 1)} / {fmt(d[c][1], 0)}" if c in d else "–" for c in cols])
        lines.append("InP validation per config_type, E (meV/atom) / F (meV/Å):")
        table(["group", "frames"] + cols, grow)
    v = res.get("inp_memory_cli_default")
    if v:
        lines.append(f"CLI defaults on the full InP_train ({v.get('n_atoms')} atoms): peak RSS "
                     f"{fmt(v.get('peak_rss_gb'), 2)} GB, fit {fmt(v.get('fit_s'), 0)} s (descriptors "
                     f"{fmt(v.get('descriptors_s'), 0)}, kernel rows {fmt(v.get('kernel_rows_s'), 0)}, solve "
                     f"{fmt(v.get('solve_s'), 0)}), process {fmt(v.get('process_wall_s'), 0)} s, "
                     f"{fmt(v.get('s_per_1000_atoms'), 1)} s per 1000 atoms; train errors {v.get('train_errors')}")
        lines.append("")
    rows = []
    for k in ("md_acac_gap", "md_acac_bpnn", "md_inp_gap"):
        v = res.get(k)
        if not v or "nvt" not in v:
            continue
        nvt, nve = v["nvt"], v.get("nve", {})
        rows.append([k, os.path.basename(v["model"]), str(v["n_atoms"]),
                     f"{nvt['ps']:g} ps / {nvt['timestep_fs']:g} fs", fmt(nvt["T_mean_second_half"], 0),
                     f"{nvt['min_distance']:.3f} (limit {v['min_allowed']:.3f})",
                     "yes" if nvt["stable"] and nve.get("stable", False) else "NO",
                     f"{nve.get('ps', 0):g} ps / {nve.get('timestep_fs', 0):g} fs",
                     fmt(nve.get("drift_meV_atom_ps"), 4), fmt(nve.get("fluctuation_meV_atom"), 3),
                     fmt(nvt.get("epot_mean_second_half"), 3), fmt(nvt.get("epot_min"), 3),
                     f"{fmt(v.get('train_epot_min'), 3)} / {fmt(v.get('train_epot_mean'), 3)}",
                     epot_check(v), fmt(nvt["ms_per_step"], 1)])
    if rows:
        lines.append("MD:")
        table(["run", "model", "atoms", "NVT", "T mean (K)", "min distance (Å)", "no pair < 0.6 x data min", "NVE",
               "drift (meV/atom/ps)", "p-p (meV/atom)", "NVT Epot mean (eV/atom)", "NVT Epot min",
               "DFT training min / mean", f"Epot >= DFT min - {EPOT_TOLERANCE * 1e3:g} meV/atom", "ms/step"], rows)
    print("\n".join(lines))


# --------------------------------------------------------------------------- main
def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_job"]:
        return child(argv[1])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("part", choices=["acac", "inp", "inp-memory", "md", "reeval", "all", "report"])
    p.add_argument("--acac", help="directory with train_300K.xyz, test_MD_300K.xyz, isolated_atoms.xyz")
    p.add_argument("--inp", help="InP_train.xyz (FitSNAP InP_JPCA2020 as extxyz)")
    p.add_argument("--out", default="bench_multi_out", help="output directory (default ./bench_multi_out)")
    p.add_argument("--anchor-frames", type=int, default=60,
                   help="InP subset for the gap_fit anchor, frames stratified by config_type (default 60, ~3.9k "
                        "atoms: gap_fit needs ~2 MB per atom for the descriptor derivatives it holds)")
    p.add_argument("--inp-anchor-recipes", nargs="*", default=["inp_2b_soap"], choices=["inp_soap", "inp_2b_soap"],
                   help="recipes gap_fit fits on the InP subset (default inp_2b_soap; ours fits both there)")
    p.add_argument("--inp-full-recipes", nargs="*", default=["inp_2b_soap"], choices=["inp_soap", "inp_2b_soap"],
                   help="GAP recipes fitted on the whole 80 %% training part (default inp_2b_soap)")
    p.add_argument("--acac-md-gap", help="results.json name of the AcAc GAP for MD (default: best validation F)")
    p.add_argument("--inp-md-gap", help="results.json name of the InP GAP for MD (default: best validation F)")
    p.add_argument("--no-bpnn-md", action="store_true", help="skip the AcAc BPNN MD run")
    p.add_argument("--force", nargs="*", default=[], help="rerun these jobs (results.json names)")
    args = p.parse_args(argv)
    args.out = os.path.abspath(args.out)
    os.makedirs(args.out, exist_ok=True)
    if args.part == "report":
        return report(args.out)
    need = {"acac": ["acac"], "inp": ["inp"], "inp-memory": ["inp"], "md": [], "reeval": ["inp"],
            "all": ["acac", "inp"]}[args.part]
    for k in need:
        if not getattr(args, k):
            p.error(f"{args.part} needs --{k}")
    meta = prepare_data(args)
    res = Results(args.out, args.force)
    print(f"uptime: {uptime()}")
    if args.part in ("acac", "all"):
        part_acac(args, res, meta)
    if args.part in ("inp", "all"):
        part_inp(args, res, meta)
    if args.part in ("inp-memory", "all"):
        part_inp_memory(args, res, meta)
    if args.part in ("md", "all"):
        part_md(args, res, meta)
    if args.part == "reeval":
        part_reeval(args, res, meta)
    report(args.out)


if __name__ == "__main__":
    main()
