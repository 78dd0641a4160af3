"""SOAP power spectrum timings: ase_mlcalc vs dscribe, featomic and quippy.

    PYTHONPATH=. python benchmarks/bench_soap.py [--repeats 7]

Systems: 128-atom bcc Mo (4x4x4 conventional cells) and 216-atom diamond Si
(3x3x3), slightly rattled; cutoff 5 Å, cutoff_transition_width 0.5 Å,
n_max 8, l_max 6, atom_sigma 0.5 Å. Every timing includes the tool's own
neighbour search. Reported: median wall time in ms per atom for

* values: descriptors only;
* values+grad: descriptors and what a force calculation needs -- for
  ase_mlcalc the VJP backward (values, then ``vjp`` with a random dE/dq,
  as the torch bridge does) and the full Jacobian (``values_and_jacobian``);
  for the references their gradient output (dscribe only offers numerical
  derivatives for periodic systems, so it is left out there).

Radial bases differ (ase_mlcalc and quippy: GAP's; dscribe, featomic: GTOs),
as do feature counts (featomic keeps both (n, n') orders). Tools that are not
installed are skipped. Threads: numba uses NUMBA_NUM_THREADS (default: all
cores), featomic its rayon pool (all cores), quippy OpenMP, dscribe one.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from ase.build import bulk

from ase_mlcalc.descriptors import SOAP

HYPERS = dict(cutoff=5.0, cutoff_transition_width=0.5, n_max=8, l_max=6, atom_sigma=0.5)


def systems():
    mo = bulk("Mo", "bcc", 3.147, cubic=True).repeat((4, 4, 4))
    si = bulk("Si", "diamond", 5.431, cubic=True).repeat((3, 3, 3))
    for k, a in enumerate((mo, si)):
        a.rattle(0.02, seed=k)
    return {"bcc Mo (128)": mo, "diamond Si (216)": si}


def median_ms(fn, repeats):
    fn()  # warm-up (JIT compilation, caches)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def ours(atoms):
    s = SOAP([int(atoms.numbers[0])], **HYPERS)
    g = np.random.default_rng(0).normal(size=(len(atoms), s.n_features))

    def values():
        s.compute(atoms)

    def vjp():
        D, i, j, sidx = s.edges(atoms)
        s.values(D, i, j, sidx, len(atoms))
        s.vjp(D, i, j, sidx, len(atoms), g)

    def jacobian():
        D, i, j, sidx = s.edges(atoms)
        s.values_and_jacobian(D, i, j, sidx, len(atoms))

    return {"ase_mlcalc": (values, vjp), "ase_mlcalc (Jacobian)": (None, jacobian)}


def dscribe_tool(atoms):
    from dscribe.descriptors import SOAP as DSOAP

    from ase.data import chemical_symbols
    d = DSOAP(species=[chemical_symbols[atoms.numbers[0]]], r_cut=HYPERS["cutoff"],
              n_max=HYPERS["n_max"], l_max=HYPERS["l_max"], sigma=HYPERS["atom_sigma"],
              periodic=True)
    return {"dscribe": (lambda: d.create(atoms), None)}


def featomic_tool(atoms):
    from featomic import SoapPowerSpectrum

    calc = SoapPowerSpectrum(
        cutoff={"radius": HYPERS["cutoff"],
                "smoothing": {"type": "ShiftedCosine", "width": HYPERS["cutoff_transition_width"]}},
        density={"type": "Gaussian", "width": HYPERS["atom_sigma"]},
        basis={"type": "TensorProduct", "max_angular": HYPERS["l_max"],
               "radial": {"type": "Gto", "max_radial": HYPERS["n_max"] - 1}},
    )
    return {"featomic": (lambda: calc.compute(atoms),
                         lambda: calc.compute(atoms, gradients=["positions"]))}


def quippy_tool(atoms):
    from quippy.descriptors import Descriptor

    z = int(atoms.numbers[0])
    d = Descriptor("soap cutoff={cutoff} cutoff_transition_width={cutoff_transition_width} "
                   "n_max={n_max} l_max={l_max} atom_sigma={atom_sigma} ".format(**HYPERS)
                   + f"n_species=1 species_Z={{{z}}}")
    return {"quippy": (lambda: d.calc(atoms), lambda: d.calc(atoms, grad=True))}


def numba_threads():
    import numba

    return numba.get_num_threads()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for every tool (numba, featomic's rayon, OpenMP); default: theirs")
    args = ap.parse_args()
    if args.threads:
        import numba

        numba.set_num_threads(args.threads)
        for var in ("RAYON_NUM_THREADS", "OMP_NUM_THREADS"):  # read when the tools start their pools
            os.environ[var] = str(args.threads)
    rows = []
    skipped = set()
    for sname, atoms in systems().items():
        n = len(atoms)
        tools = dict(ours(atoms))
        for factory in (featomic_tool, dscribe_tool, quippy_tool):
            try:
                tools.update(factory(atoms))
            except ImportError as exc:
                skipped.add(f"{factory.__name__.replace('_tool', '')} ({exc.name} not installed)")
        for tname, (values, grads) in tools.items():
            tv = median_ms(values, args.repeats) / n if values else float("nan")
            tg = median_ms(grads, args.repeats) / n if grads else float("nan")
            rows.append((sname, tname, tv, tg))

    ref = {(s, "values"): v for s, t, v, g in rows if t == "ase_mlcalc"}
    ref.update({(s, "grad"): g for s, t, v, g in rows if t == "ase_mlcalc"})
    print(f"SOAP n_max={HYPERS['n_max']} l_max={HYPERS['l_max']} cutoff={HYPERS['cutoff']} Å "
          f"atom_sigma={HYPERS['atom_sigma']} Å; median of {args.repeats}; ms/atom; "
          f"ratio = tool / ase_mlcalc (VJP); cpus={os.cpu_count()}, "
          f"numba threads={numba_threads()}")
    head = f"{'system':<18} {'tool':<22} {'values':>9} {'ratio':>7} {'values+grad':>12} {'ratio':>7}"
    print(head)
    print("-" * len(head))

    def fmt(x, w):
        return f"{'n/a':>{w}}" if np.isnan(x) else f"{x:>{w}.3f}"

    def ratio(x, r):
        return f"{'':>7}" if np.isnan(x) else f"{x / r:>7.2f}"

    for sname, tname, tv, tg in rows:
        print(f"{sname:<18} {tname:<22} {fmt(tv, 9)} {ratio(tv, ref[sname, 'values'])} "
              f"{fmt(tg, 12)} {ratio(tg, ref[sname, 'grad'])}")
    for s in sorted(skipped):
        print(f"skipped: {s}")
    print("dscribe: analytical derivatives are not available for periodic systems (values only)")


if __name__ == "__main__":
    main()
