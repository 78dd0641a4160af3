"""GAP on the mlearn Mo data: training wall time, test errors and energy+forces time per atom,
ase_mlcalc vs quippy's GAP (gap_fit on the same file, same hyper-parameters) in the same run.

Usage: python benchmarks/bench_gap.py [--n-sparse 1000] [--quippy-model gap.xml] [--no-quippy]
quippy is skipped when quippy-ase is not installed. gap_fit training takes several minutes;
pass --quippy-model to reuse a trained potential.
"""

import argparse
import os
import shutil
import subprocess
import sys
import time

import numpy as np
from ase.build import bulk

sys.path.insert(0, os.path.dirname(__file__))
from _timing import median_time  # noqa: E402

from ase_mlcalc.models.sparse_gp import DEFAULTS, GAP
from ase_mlcalc.training import fit_gap  # noqa: E402
from ase_mlcalc.training import read_frames  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "data")


def errors(calc, frames):
    de, df = [], []
    for a in frames:
        b = a.copy()
        b.calc = calc
        de.append((b.get_potential_energy() - a.get_potential_energy()) / len(a))
        df.append(b.get_forces() - a.get_forces())
    return 1e3 * np.sqrt(np.mean(np.square(de))), np.sqrt(np.mean(np.square(np.concatenate(df))))


def energy_forces_time(calc, atoms, repeat):
    a = atoms.copy()
    a.calc = calc
    rng = np.random.default_rng(0)

    def step():
        a.positions += rng.normal(scale=1e-3, size=a.positions.shape)
        a.get_forces()

    return median_time(step, repeat=repeat, warmup=2) / len(a)


def train_quippy(train_path, n_sparse, workdir):
    d = DEFAULTS
    gap = (f"soap cutoff={d['cutoff']} cutoff_transition_width={d['cutoff_transition_width']} n_max={d['n_max']} "
           f"l_max={d['l_max']} atom_sigma={d['atom_sigma']} zeta={d['zeta']} delta={d['delta']} "
           f"n_sparse={n_sparse} sparse_method=cur_points covariance_type=dot_product")
    out = os.path.join(workdir, "gap.xml")
    cmd = ["gap_fit", f"at_file={train_path}", f"gap={{{gap}}}",
           "default_sigma={%g %g %g 0.0}" % tuple(d["default_sigma"]), "e0_method=average",
           f"sparse_jitter={d['sparse_jitter']}", "energy_parameter_name=energy", "force_parameter_name=forces",
           f"gp_file={out}"]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=workdir)
    return out, time.perf_counter() - t


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-sparse", type=int, default=1000)
    p.add_argument("--quippy-model", help="reuse this gap_fit XML instead of training")
    p.add_argument("--no-quippy", action="store_true")
    p.add_argument("--repeat", type=int, default=10)
    args = p.parse_args()

    train = read_frames(os.path.join(DATA, "Mo_train.extxyz.xz"))
    test = read_frames(os.path.join(DATA, "Mo_test.extxyz.xz"))
    cell = bulk("Mo", "bcc", a=3.16, cubic=True).repeat(4)
    cell.rattle(0.05, seed=1)
    rows = {}

    t = time.perf_counter()
    ours = fit_gap(train, n_sparse=args.n_sparse, progress=False)
    t_fit = time.perf_counter() - t
    rows["ase_mlcalc"] = (t_fit, *errors(ours, test), energy_forces_time(ours, cell, args.repeat))
    always = GAP(model=ours.model, uncertainty=True)  # uncertainties at every call
    rows["ase_mlcalc +uncertainty"] = (float("nan"), *rows["ase_mlcalc"][1:3],
                                       energy_forces_time(always, cell, args.repeat))

    have_quippy = not args.no_quippy and shutil.which("gap_fit") is not None
    if have_quippy:
        try:
            from quippy.potential import Potential
        except ImportError:
            have_quippy = False
    if have_quippy:
        if args.quippy_model:
            xml, t_q = os.path.abspath(args.quippy_model), float("nan")
        else:
            # gap_fit writes gap.xml plus gap.xml.sparseX.* files that the XML names: keep them together.
            workdir = os.path.abspath("quippy_gap")
            os.makedirs(workdir, exist_ok=True)
            import ase.io

            src = os.path.join(workdir, "train.extxyz")
            ase.io.write(src, train)
            xml, t_q = train_quippy(src, args.n_sparse, workdir)
            print(f"quippy model written to {xml}")
        cwd = os.getcwd()
        os.chdir(os.path.dirname(xml))  # the sparseX files are found relative to the working directory
        try:
            pot = Potential(param_filename=os.path.basename(xml))
        finally:
            os.chdir(cwd)
        rows["quippy"] = (t_q, *errors(pot, test), energy_forces_time(pot, cell, args.repeat))

    print(f"GAP, mlearn Mo, n_sparse {args.n_sparse}, SOAP n_max 8 l_max 8 cutoff 5.2 Å; "
          f"energy+forces on 128-atom bcc Mo, median of {args.repeat}")
    print(f"{'tool':<26}{'train (s)':>10}{'E RMSE':>10}{'F RMSE':>10}{'E+F µs/atom':>13}{'quippy/tool':>13}")
    print(f"{'':<26}{'':>10}{'meV/atom':>10}{'eV/Å':>10}")
    q = rows.get("quippy", (None, None, None, None))[3]
    for name, (tf, e, f, tt) in rows.items():
        ratio = f"{q / tt:>13.2f}" if q else f"{'-':>13}"
        print(f"{name:<26}{tf:>10.1f}{e:>10.3f}{f:>10.4f}{1e6 * tt:>13.1f}{ratio}")


if __name__ == "__main__":
    main()
