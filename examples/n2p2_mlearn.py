"""Load the published mlearn neural network potentials (n2p2 files, examples/data/nnp/{Mo,Li}) and
print their test-set errors next to the paper's, and the energy+forces time per atom.

Zuo et al., J. Phys. Chem. A 124, 731 (2020) report test-set energy RMSEs of 5.67 (Mo) and 0.98 (Li)
meV/atom for these NNPs. The files are n2p2 / RuNNer files in Bohr and Hartree, the defaults of
``ase_mlcalc.load`` for an n2p2 directory; the model is a BPNN (family "bpnn") and runs like any other.

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python examples/n2p2_mlearn.py [--train]

Errors: energy per atom (RMSE, MAE, meV/atom) and force components (RMSE, MAE, eV/Å) against the DFT
labels of examples/data/{Mo,Li}_test.extxyz.xz (and the training sets with ``--train``), and the wall
time of that evaluation (after a warm-up call). Time: median
wall time of one energy+forces call per atom, on the largest test frame and on a rattled 432-atom bcc
supercell (positions perturbed by 1e-4 Å each call, neighbour list with the calculator's 0.5 Å skin),
after one warm-up call that also compiles the numba kernels.
"""

import argparse
import os
import time

import torch
from ase.build import bulk

import ase_mlcalc
from ase_mlcalc.training import evaluate, read_frames
from ase_mlcalc.training.metrics import energy_forces_time

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
PAPER = {"Mo": 5.67, "Li": 0.98}  # test-set energy RMSE of the NNPs, meV/atom (Zuo et al. 2020, Table 2)
LATTICE = {"Mo": 3.16, "Li": 3.44}  # Å, bcc


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", action="store_true", help="also evaluate on the training sets")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for el in ("Mo", "Li"):
        t = time.perf_counter()
        calc = ase_mlcalc.load(os.path.join(DATA, "nnp", el))  # Bohr and Hartree files (the defaults)
        t_load = time.perf_counter() - t
        m = calc.model
        print(f"{el}: {m.descriptor!r}; networks {[m.descriptor.n_functions[0]] + m.hidden + [1]} "
              f"{''.join(m.activation)}; read in {t_load:.2f} s")
        sets = ["test"] + (["train"] if args.train else [])
        warm = read_frames(os.path.join(DATA, f"{el}_test.extxyz.xz"))[0]
        warm.calc = calc
        warm.get_forces()  # compiles the numba kernels (cached on disk after the first run)
        for name in sets:
            frames = read_frames(os.path.join(DATA, f"{el}_{name}.extxyz.xz"))
            t = time.perf_counter()
            metrics, _ = evaluate(calc, frames)
            rows.append((el, name, metrics, time.perf_counter() - t))
        test = read_frames(os.path.join(DATA, f"{el}_test.extxyz.xz"))
        largest = max(test, key=len)
        big = bulk(el, "bcc", a=LATTICE[el], cubic=True).repeat(6)
        big.rattle(0.05, seed=1)
        rows[-len(sets)][2]["us_per_atom"] = (len(largest), energy_forces_time(calc, largest),
                                              len(big), energy_forces_time(calc, big))
    print()
    print(f"{'set':<10}{'frames':>7}{'E RMSE':>9}{'E MAE':>9}{'F RMSE':>9}{'F MAE':>9}{'paper E':>9}"
          f"{'eval':>7}   energy+forces µs/atom")
    print(f"{'':<10}{'':>7}{'meV/at':>9}{'meV/at':>9}{'eV/Å':>9}{'eV/Å':>9}{'RMSE':>9}{'s':>7}")
    for el, name, m, wall in rows:
        paper = f"{PAPER[el]:9.2f}" if name == "test" else f"{'':>9}"
        timing = ""
        if "us_per_atom" in m:
            n1, t1, n2, t2 = m["us_per_atom"]
            timing = f"   {t1:6.0f} ({n1} atoms), {t2:6.0f} ({n2} atoms)"
        print(f"{el + ' ' + name:<10}{m['n_frames']:>7d}{m['energy_rmse']:>9.3f}{m['energy_mae']:>9.3f}"
              f"{m['force_rmse']:>9.4f}{m['force_mae']:>9.4f}{paper}{wall:>7.1f}{timing}")
    print(f"\n(one thread: torch {torch.get_num_threads()}, NUMBA_NUM_THREADS="
          f"{os.environ.get('NUMBA_NUM_THREADS', 'all cores')})")


if __name__ == "__main__":
    main()
