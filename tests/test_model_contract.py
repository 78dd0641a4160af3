"""The model contract (ase_mlcalc.testing) for every family, one and two species, CPU and CUDA.

A new family joins by adding one entry to CASES (how to build a small
calculator of it from the toy data) -- every check then runs on it.
"""

import numpy as np
import pytest
import torch

from ase_mlcalc import LennardJones, testing
from ase_mlcalc.training import fit_bpnn, fit_gap

def crystal(species, n_cells=(2, 2, 1), seed=0, rattle=0.15):
    a = testing.labelled_frames(1, species, seed=seed, repeat=n_cells, rattle=rattle)[0]
    a.calc = None
    rng = np.random.default_rng(seed)
    a.set_cell(a.cell.array @ (np.eye(3) + 0.02 * rng.normal(size=(3, 3))), scale_atoms=True)  # triclinic
    return a


def molecule(species):
    a = crystal(species, seed=3)[[0, 1, 2, 3, 5]]
    a.pbc = False
    a.cell = np.zeros((3, 3))
    a.center()
    return a


def labelled(species, n, seed):
    return testing.labelled_frames(n, species, seed=seed, repeat=(2, 2, 1))


def make_lj(species):
    toy = testing.TOY_LJ
    return LennardJones(species=species, epsilon={s: toy["epsilon"][s] for s in species},
                        sigma={s: toy["sigma"][s] for s in species}, rc=4.8,
                        e0=[-0.1 * (k + 1) for k in range(len(species))])


def make_gap(species):
    return fit_gap(labelled(species, 4, 10), species=species, cutoff=4.8, n_max=3, l_max=3, n_sparse=15,
                   progress=False)


def make_gap_2b(species):
    """distance_2b + SOAP, GAP's multi-term recipe."""
    return fit_gap(labelled(species, 4, 30), species=species, cutoff=4.8, n_max=3, l_max=3, n_sparse=15,
                   distance_2b=dict(cutoff=5.0, delta=0.1, theta=0.5, n_sparse=8), progress=False)


def make_gap_2b_only(species):
    """A pair-term GP alone: an atom without neighbours has exactly its e0."""
    return fit_gap(labelled(species, 4, 40), species=species, progress=False,
                   terms=[dict(kind="distance_2b", cutoff=5.0, delta=0.1, theta=0.5, n_sparse=8)])


def make_bpnn(species):
    return fit_bpnn(labelled(species, 4, 20), species=species, cutoff=4.8, n_radial=4, n_angular_eta=1,
                    hidden=(8,), epochs=3, lbfgs_steps=0, progress=False)


def make_n2p2(species):
    """An imported n2p2 potential (a BPNN): synthetic files (tests/n2p2_reference.py) with types 2, 3
    and 9, two radii, rs != 0, non-integer zeta, random weights, written in Å and eV."""
    import tempfile

    from n2p2_reference import write_synthetic_nnp

    from ase_mlcalc import load

    with tempfile.TemporaryDirectory() as d:
        write_synthetic_nnp(d, np.random.default_rng(7), elements=species, rc=(4.0, 4.8), smin=-1.0, smax=1.0)
        return load(d, format_options={"length_unit": "angstrom", "energy_unit": "eV"})


#: family -> (constructor, whether an isolated atom has exactly its e0 by construction).
#: GAP's SOAP describes an atom without neighbours by its central Gaussian (as quippy does), so
#: its energy is e0 plus a kernel term: not e0. n2p2 potentials have no isolated-atom baseline
#: (isolated_atom_e0=False): e0 + scale NN(scaling(0)), checked in tests/test_n2p2.py.
CASES = {"lj": (make_lj, True), "gap": (make_gap, False), "gap_2b_soap": (make_gap_2b, False),
         "gap_2b": (make_gap_2b_only, True), "bpnn": (make_bpnn, True), "n2p2": (make_n2p2, False)}
SPECIES = {"one": ["Ar"], "two": ["Ar", "Kr"], "three": ["Kr", "Ar", "Xe"]}
#: (family, species) cases left out: the code paths they run are those of the family's other cases
COVERED = {("lj", "three"), ("gap", "three"), ("gap_2b_soap", "one"), ("gap_2b", "two"), ("gap_2b", "three"),
           ("n2p2", "one"), ("n2p2", "three")}
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]


@pytest.fixture(scope="module")
def fitted():
    cache = {}

    def get(family, n_species):
        if (family, n_species) not in cache:
            cache[family, n_species] = CASES[family][0](SPECIES[n_species])
        return cache[family, n_species]

    return get


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n_species", list(SPECIES))
@pytest.mark.parametrize("family", list(CASES))
def test_model_contract(family, n_species, device, fitted, tmp_path):
    if (family, n_species) in COVERED:
        pytest.skip("covered by the family's other cases (CI time)")
    calc = fitted(family, n_species)
    if device != "cpu":
        calc.save(tmp_path / "m.pt")
        from ase_mlcalc import load

        calc = load(tmp_path / "m.pt", device=device) if family != "lj" else \
            LennardJones(**{**calc.todict(), "device": device})
    species = SPECIES[n_species]
    testing.run_all(calc, crystal(species, seed=42), molecule(species), str(tmp_path),
                    isolated_atom=CASES[family][1])


@pytest.mark.parametrize("family", ["lj", "gap", "bpnn", "n2p2"])
def test_contract_checks_can_fail(family, fitted, tmp_path):
    """The checks catch a broken calculator: forces with the wrong sign fail the finite-difference check,
    and an energy that depends on absolute positions fails translation invariance."""
    calc = fitted(family, "one")
    atoms = crystal(["Ar"], seed=42)

    class WrongForces(type(calc)):
        def calculate(self, *args, **kwargs):
            super().calculate(*args, **kwargs)
            self.results["forces"] = -self.results["forces"]

    class NotTranslationInvariant(type(calc)):
        def calculate(self, *args, **kwargs):
            super().calculate(*args, **kwargs)
            self.results["energy"] += 1e-3 * self.atoms.positions[0, 0]

    for broken, check in ((WrongForces, testing.check_forces_finite_differences),
                          (NotTranslationInvariant, testing.check_invariances)):
        bad = broken(model=calc.model) if family != "lj" else broken(**calc.todict())
        with pytest.raises(AssertionError):
            check(bad, atoms)
