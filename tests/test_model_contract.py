"""The model contract (ase_mlcalc.testing) for every family, one and two species, CPU and CUDA.

A new family joins by adding one entry to CASES (how to build a small
calculator of it from the toy data) -- every check then runs on it.
"""

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

from ase_mlcalc import LennardJones, testing
from ase_mlcalc.training import fit_bpnn, fit_gap

REFERENCE = {  # a two-species LJ labels the toy data
    "epsilon": {"Ar": 0.0104, "Kr": 0.014}, "sigma": {"Ar": 3.4, "Kr": 3.65}, "rc": 6.0}


def crystal(species, n_cells=(2, 2, 1), seed=0, rattle=0.15):
    a = bulk("Ar", "fcc", a=5.3, cubic=True) * n_cells
    rng = np.random.default_rng(seed)
    if len(species) > 1:
        a.numbers[rng.permutation(len(a))[: len(a) // 2]] = 36
    a.rattle(rattle, seed=seed)
    a.set_cell(a.cell.array @ (np.eye(3) + 0.02 * rng.normal(size=(3, 3))), scale_atoms=True)  # triclinic
    return a


def molecule(species):
    a = crystal(species, seed=3)[[0, 1, 2, 3, 5]]
    a.pbc = False
    a.cell = np.zeros((3, 3))
    a.center()
    return a


def labelled(species, n, seed):
    ref = LennardJones(species=["Ar", "Kr"], **REFERENCE)
    frames = []
    for k in range(n):
        a = crystal(species, seed=seed + k)
        a.calc = ref
        a.calc = SinglePointCalculator(a, energy=a.get_potential_energy(), forces=a.get_forces(),
                                       stress=a.get_stress())
        frames.append(a)
    return frames


def make_lj(species):
    return LennardJones(species=species, epsilon={s: REFERENCE["epsilon"][s] for s in species},
                        sigma={s: REFERENCE["sigma"][s] for s in species}, rc=4.8, e0=[-0.1 * (k + 1)
                                                                                        for k in range(len(species))])


def make_gap(species):
    return fit_gap(labelled(species, 4, 10), species=species, cutoff=4.8, n_max=3, l_max=3, n_sparse=15,
                   progress=False)


def make_bpnn(species):
    return fit_bpnn(labelled(species, 4, 20), species=species, cutoff=4.8, n_radial=4, n_angular_eta=1,
                    hidden=(8,), epochs=3, lbfgs_steps=0, progress=False)


#: family -> (constructor, whether an isolated atom has exactly its e0 by construction).
#: GAP's SOAP describes an atom without neighbours by its central Gaussian (as quippy does), so
#: its energy is e0 plus a kernel term: not e0.
CASES = {"lj": (make_lj, True), "gap": (make_gap, False), "bpnn": (make_bpnn, True)}
SPECIES = {"one": ["Ar"], "two": ["Ar", "Kr"]}
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
    calc = fitted(family, n_species)
    if device != "cpu":
        calc.save(tmp_path / "m.pt")
        from ase_mlcalc import load

        calc = load(tmp_path / "m.pt", device=device) if family != "lj" else \
            LennardJones(**{**calc.todict(), "device": device})
    species = SPECIES[n_species]
    testing.run_all(calc, crystal(species, seed=42), molecule(species), str(tmp_path),
                    isolated_atom=CASES[family][1])


@pytest.mark.parametrize("family", list(CASES))
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
