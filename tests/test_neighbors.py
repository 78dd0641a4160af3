import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, fcc111, molecule
from ase.neighborlist import neighbor_list as ase_neighbor_list

from ase_mlcalc.neighbors import NeighborListCache, neighbor_list, pair_list


def as_set(i, j, S):
    return set(zip(i.tolist(), j.tolist(), *S.T.tolist()))


def random_atoms(rng):
    n = int(rng.integers(1, 40))
    cell = np.diag(rng.uniform(1.0, 7.0, 3)) + rng.uniform(-2.5, 2.5, (3, 3)) * rng.integers(0, 2)
    pbc = rng.integers(0, 2, 3).astype(bool)
    pos = rng.uniform(-0.3, 1.3, (n, 3)) @ cell
    if not pbc.any() and rng.random() < 0.5:
        cell = np.zeros((3, 3))
    return Atoms(numbers=rng.integers(1, 4, n), positions=pos, cell=cell, pbc=pbc)


def test_matches_ase_on_random_cells(rng):
    checked = 0
    while checked < 150:
        atoms = random_atoms(rng)
        if atoms.pbc.any() and abs(np.linalg.det(atoms.cell.array)) < 0.3:
            continue
        cutoff = rng.uniform(0.3, 8.0)  # often larger than the cell
        i, j, S, D, d = neighbor_list("ijSDd", atoms, cutoff)
        i2, j2, S2, D2, d2 = ase_neighbor_list("ijSDd", atoms, cutoff)
        assert len(i) == len(i2)
        assert as_set(i, j, S) == as_set(i2, j2, S2)
        assert np.all(np.diff(i) >= 0)
        o1 = np.lexsort((S[:, 2], S[:, 1], S[:, 0], j, i))
        o2 = np.lexsort((S2[:, 2], S2[:, 1], S2[:, 0], j2, i2))
        np.testing.assert_allclose(D[o1], D2[o2], atol=1e-12)
        np.testing.assert_allclose(d[o1], d2[o2], atol=1e-12)
        checked += 1


def test_dtypes_and_shapes_like_ase():
    atoms = bulk("Cu", "fcc", a=3.6) * (2, 2, 2)
    ours = neighbor_list("ijSDd", atoms, 3.0)
    theirs = ase_neighbor_list("ijSDd", atoms, 3.0)
    for a, b in zip(ours, theirs):
        assert a.dtype.kind == b.dtype.kind and a.shape == b.shape
    assert neighbor_list("i", atoms, 3.0).shape == theirs[0].shape


@pytest.mark.parametrize("self_interaction", [False, True])
def test_per_atom_radii_element_pairs_and_self_interaction(self_interaction, rng):
    atoms = bulk("NaCl", "rocksalt", a=5.6) * (2, 1, 2)
    atoms.rattle(0.1, seed=3)
    radii = rng.uniform(0.8, 2.5, len(atoms))
    pair = {("Na", "Cl"): 3.2, ("Na", "Na"): 4.1, (17, 17): 2.5}
    for cutoff in [radii, pair, 3.3]:
        a = as_set(*neighbor_list("ijS", atoms, cutoff, self_interaction=self_interaction))
        b = as_set(*ase_neighbor_list("ijS", atoms, cutoff, self_interaction=self_interaction))
        assert a == b


@pytest.mark.parametrize("atoms, cutoff", [
    (Atoms("H", positions=[[0, 0, 0]]), 3.0),                               # single atom, no cell
    (Atoms("H", positions=[[0, 0, 0]], cell=[1.1, 1.2, 1.3], pbc=True), 5.0),  # many images of itself
    (Atoms("H2", positions=[[0, 0, 0], [10, 0, 0]]), 2.0),                    # no neighbours
    (molecule("C6H6"), 2.0),                                                 # molecule, no cell
    (fcc111("Al", (2, 2, 3), vacuum=5.0), 6.0),                              # slab, mixed pbc
])
def test_special_systems(atoms, cutoff):
    a = as_set(*neighbor_list("ijS", atoms, cutoff))
    b = as_set(*ase_neighbor_list("ijS", atoms, cutoff))
    assert a == b


def test_half_list_holds_each_pair_once(rng):
    atoms = bulk("Si", "diamond", a=5.43)
    atoms.cell[0] += [0.4, 0.1, 0.0]
    atoms.rattle(0.05, seed=1)
    full = pair_list(atoms.positions, atoms.cell.array, atoms.pbc, 6.0)
    half = pair_list(atoms.positions, atoms.cell.array, atoms.pbc, 6.0, bothways=False)
    assert 2 * len(half[0]) == len(full[0])
    hi, hj, hS = half
    doubled = as_set(np.r_[hi, hj], np.r_[hj, hi], np.r_[hS, -hS])
    assert doubled == as_set(*full)


def test_bad_input_errors():
    atoms = bulk("Cu") * 2
    with pytest.raises(ValueError, match="cutoff"):
        neighbor_list("ij", atoms, 0.0)
    bad = atoms.copy()
    bad.positions[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        neighbor_list("ij", bad, 3.0)
    flat = Atoms("Cu2", positions=[[0, 0, 0], [1, 1, 0]], cell=[[3, 0, 0], [0, 3, 0], [3, 3, 0]], pbc=True)
    with pytest.raises(ValueError, match="zero-volume"):
        neighbor_list("ij", flat, 3.0)
    with pytest.raises(ValueError, match="quantity"):
        neighbor_list("ijx", atoms, 3.0)


def test_verlet_cache_rebuilds_only_when_needed(rng):
    atoms = bulk("Ar", "fcc", a=5.26) * (3, 3, 3)
    cache = NeighborListCache(cutoff=8.0, skin=1.0)

    def check():
        i, j, D, keep, d_min = cache.get(atoms.positions, atoms.cell.array, atoms.pbc, atoms.numbers)
        S = cache.shifts[keep]
        ref = neighbor_list("ijSD", atoms, 8.0)
        assert as_set(i, j, S) == as_set(*ref[:3])
        np.testing.assert_allclose(D, atoms.positions[j] - atoms.positions[i] + S @ atoms.cell.array, atol=1e-12)
        assert d_min == pytest.approx(np.linalg.norm(ref[3], axis=1).min(), abs=1e-12)

    check()
    assert cache.n_builds == 1
    for _ in range(5):  # total displacement stays below skin/2
        atoms.positions += rng.normal(scale=0.03, size=atoms.positions.shape).clip(-0.09, 0.09)
        check()
    assert cache.n_builds == 1
    atoms.positions[0] += [0.6, 0, 0]  # one atom moves more than skin/2
    check()
    assert cache.n_builds == 2
    atoms.set_cell(atoms.cell * 1.01, scale_atoms=True)  # cell change
    check()
    assert cache.n_builds == 3
    atoms.numbers[0] = 36  # species change
    check()
    assert cache.n_builds == 4


def test_large_system_matches_ase():
    """A 2048-atom cell (the O(N) path with many bins) gives ASE's list."""
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True) * (8, 8, 8)
    atoms.rattle(0.05, seed=2)
    i, j, S = neighbor_list("ijS", atoms, 6.0)
    i2, j2, S2 = ase_neighbor_list("ijS", atoms, 6.0)
    assert as_set(i, j, S) == as_set(i2, j2, S2)
