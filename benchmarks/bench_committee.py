"""Committee cost: energy + forces + forces_uncertainty of a BPNN committee, one thread.

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python benchmarks/bench_committee.py [--members 4] [--repeat 3]

108-atom rattled fcc Cu, untrained members (cutoff 4.5 Å, 12 radial and 2 angular ACSF exponents, [32, 32]).
Prints medians (µs/atom) of ``Committee`` with ``uncertainty=True``, of one member alone, and of the earlier
force-spread pass (backward through the stacked member energies: K^2 descriptor backward passes), measured in
the same run, with their ratios.
"""

import argparse
import time

import numpy as np
import torch
from ase.build import bulk

from ase_mlcalc.graph import forces_and_virial
from ase_mlcalc.models.bpnn import BPNN, BPNNModel
from ase_mlcalc.models.committee import Committee, CommitteeModel


def median_us_per_atom(fn, atoms, repeat):
    fn(atoms)  # warm-up (numba compilation, caches)
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn(atoms)
        ts.append(time.perf_counter() - t)
    return 1e6 * float(np.median(ts)) / len(atoms)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=4)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    torch.manual_seed(0)
    members = [BPNNModel([29], cutoff=4.5, acsf_defaults=dict(n_radial=12, n_angular_eta=2), hidden=(32, 32))
               for _ in range(args.members)]
    model = CommitteeModel(members)
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * 3
    atoms.rattle(0.05, seed=1)

    def committee(a):
        calc = Committee(model, uncertainty=True)
        calc.calculate(a.copy(), ["energy", "forces", "forces_uncertainty"])
        return calc.results["forces_uncertainty"]

    def single(a):
        BPNN(members[0]).calculate(a.copy(), ["energy", "forces"])

    def stacked(a):  # the earlier pass: backward through torch.stack of all members, once per member
        from ase_mlcalc.graph import build_graph

        g = build_graph(a, model.cutoff, model.species)
        g.edge_vectors.requires_grad_(True)
        eps = model.member_energies(g)
        forces = torch.stack([forces_and_virial(g, eps[k].sum(), create_graph=False, retain_graph=True)[0]
                              for k in range(len(members))])
        forces_and_virial(g, eps.mean(0).sum(), create_graph=False)  # the calculator's mean forces
        return (forces.var(0).mean(1).sqrt()).numpy()

    np.testing.assert_allclose(committee(atoms), stacked(atoms), rtol=1e-10)
    t_c, t_1, t_s = (median_us_per_atom(f, atoms, args.repeat) for f in (committee, single, stacked))
    print(f"{len(atoms)} atoms, {args.members} members, one thread, median of {args.repeat} (µs/atom)")
    print(f"  committee E+F+forces_uncertainty   {t_c:8.0f}   ({t_c / t_1:.1f} x one member)")
    print(f"  one member E+F                     {t_1:8.0f}")
    print(f"  earlier stacked force-spread pass  {t_s:8.0f}   ({t_s / t_c:.2f} x the committee now)")


if __name__ == "__main__":
    main()
