"""Energy + forces per atom of one QUIP/GAP XML potential: ase_mlcalc (``ase_mlcalc.load("gap.xml")``) vs quippy
(``Potential(param_filename=...)``), in the same run, one thread each.

Usage: python benchmarks/bench_quip.py [--xml gap.xml] [--n-sparse 500] [--repeat 15] [--workdir DIR]

Without --xml, gap_fit fits the potential first (10-20 s, one thread): SOAP cutoff 5.2 Å, n_max 8, l_max 8,
atom_sigma 0.5, zeta 4, delta 1, ``--n-sparse`` CUR sparse points, on 12 frames of the shipped mlearn
Mo training set (examples/data/Mo_train.extxyz.xz). The cell is bcc Mo 4x4x4 (128 atoms), rattled;
every call moves the atoms (a new structure, no cached results). Calls of the two calculators
alternate (the machine's load hits both alike); the table gives medians.
Needs quippy-ase (gap_fit and quippy).
"""

import os

for _v in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from ase.build import bulk  # noqa: E402

import ase_mlcalc  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "data")


def fit_with_gap_fit(workdir, n_sparse, n_frames=12):
    """gap_fit on ``n_frames`` frames spread over Mo_train; returns (xml path, wall time s)."""
    import ase.io

    frames = ase.io.read(os.path.join(DATA, "Mo_train.extxyz.xz"), ":")
    pick = [frames[i] for i in np.linspace(0, len(frames) - 1, n_frames).astype(int)]
    ase.io.write(os.path.join(workdir, "train.extxyz"), pick, format="extxyz")
    gap = (f"soap cutoff=5.2 cutoff_transition_width=0.5 n_max=8 l_max=8 atom_sigma=0.5 covariance_type=dot_product "
           f"zeta=4 delta=1.0 n_sparse={n_sparse} sparse_method=cur_points")
    cmd = ["gap_fit", "atoms_filename=train.extxyz", f"gap={{{gap}}}", "default_sigma={0.005 0.05 0.05 0.0}",
           "e0_method=average", "force_parameter_name=forces", "sparse_jitter=1e-8", "sparse_separate_file=T",
           "do_copy_at_file=F", "rnd_seed=5", "gap_file=gap.xml"]
    print("gap_fit " + " ".join(c if " " not in c else f"'{c}'" for c in cmd[1:]))
    t = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return os.path.join(workdir, "gap.xml"), time.perf_counter() - t


def one_call(calc, atoms, k):
    a = atoms.copy()
    a.positions[k % len(a)] += 1e-4 * (1 + k % 7)  # a new structure every call
    a.calc = calc
    t = time.perf_counter()
    e = a.get_potential_energy()
    f = a.get_forces()
    return time.perf_counter() - t, e, f


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--xml", help="a gap_fit XML (default: fit one with gap_fit)")
    p.add_argument("--n-sparse", type=int, default=500)
    p.add_argument("--repeat", type=int, default=15, help="timed calls of each calculator")
    p.add_argument("--workdir", help="where gap_fit writes its files (default: a temporary directory, removed)")
    args = p.parse_args()
    torch.set_num_threads(1)
    from quippy.potential import Potential

    tmp = None
    if args.xml:
        xml, t_fit = os.path.abspath(args.xml), float("nan")
    else:
        workdir = args.workdir or (tmp := tempfile.mkdtemp(prefix="bench_quip_"))
        os.makedirs(workdir, exist_ok=True)
        xml, t_fit = fit_with_gap_fit(workdir, args.n_sparse)
        print(f"gap_fit: {t_fit:.1f} s -> {xml}")
    try:
        t = time.perf_counter()
        ours = ase_mlcalc.load(xml)
        t_ours = time.perf_counter() - t
        t = time.perf_counter()
        quippy = Potential(param_filename=xml)
        t_quippy = time.perf_counter() - t
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    (term,) = ours.model.terms
    d = term.descriptor
    print(f"model: soap n_max={d.n_max} l_max={d.l_max} cutoff={d.cutoff} n_sparse={term.n_sparse} "
          f"features={d.n_features}; file read: ours {t_ours:.2f} s, quippy {t_quippy:.2f} s")

    atoms = bulk("Mo", "bcc", a=3.16, cubic=True).repeat((4, 4, 4))
    atoms.rattle(0.05, seed=3)
    n = len(atoms)
    calcs = {"quippy": quippy, "ase_mlcalc": ours}
    first = {name: one_call(c, atoms, 0) for name, c in calcs.items()}  # warm-up (numba cache, set-up)
    times = {name: [] for name in calcs}
    for k in range(1, args.repeat + 1):
        for name, c in calcs.items():
            times[name].append(one_call(c, atoms, k)[0])
    med = {name: statistics.median(ts) for name, ts in times.items()}
    print(f"energy+forces, bcc Mo {n} atoms, one thread, median of {args.repeat} (min in brackets):")
    for name in calcs:
        print(f"  {name:<11} {1e3 * med[name]:8.1f} ms/call ({1e3 * min(times[name]):.1f})  "
              f"{1e3 * med[name] / n:7.3f} ms/atom")
    _, eq, fq = first["quippy"]
    _, eo, fo = first["ase_mlcalc"]
    print(f"  ase_mlcalc / quippy speed-up: {med['quippy'] / med['ase_mlcalc']:.1f}x (goal >= 10x)")
    print(f"  agreement: |dE|/|E| = {abs(eo - eq) / abs(eq):.1e}, "
          f"max|dF|/max|F| = {np.abs(fo - fq).max() / np.abs(fq).max():.1e}")


if __name__ == "__main__":
    main()
