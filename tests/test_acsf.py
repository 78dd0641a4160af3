"""ACSF: values against a direct numpy transcription of Behler's formulas,
Jacobian and VJP against central finite differences, invariances, errors."""

import itertools

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from ase_mlcalc import UnknownElementError
from ase_mlcalc.descriptors import ACSF
from ase_mlcalc.graph import build_graph


def slow_acsf(desc, atoms):
    """Behler (2011) G2/G4 straight from the formulas, all pairs and images by brute force."""
    rc = desc.cutoff
    pos = atoms.positions
    cell = atoms.cell.array
    n = len(atoms)
    reps = [range(-3, 4) if p else range(1) for p in atoms.pbc]
    images = [np.array(s) @ cell for s in itertools.product(*reps)]
    species = list(desc.species)
    S = len(species)
    K = desc.n_radial
    M = desc.n_angular
    pairs = {}
    p = 0
    for b, c in itertools.combinations_with_replacement(range(S), 2):
        pairs[(b, c)] = pairs[(c, b)] = p
        p += 1

    def fc(r):
        return 0.5 * (np.cos(np.pi * r / rc) + 1) if r < rc else 0.0

    q = np.zeros((n, desc.n_features))
    for i in range(n):
        nb = []  # (vector, species index)
        for j in range(n):
            for sh in images:
                v = pos[j] + sh - pos[i]
                d = np.linalg.norm(v)
                if 1e-8 < d < rc:
                    nb.append((v, species.index(atoms.numbers[j])))
        for v, b in nb:
            r = np.linalg.norm(v)
            for k in range(K):
                q[i, b * K + k] += np.exp(-desc.radial_eta[k] * (r - desc.radial_rs[k]) ** 2) * fc(r)
        for (u, b), (v, c) in itertools.combinations(nb, 2):
            r1, r2, r3 = np.linalg.norm(u), np.linalg.norm(v), np.linalg.norm(v - u)
            cos = u @ v / (r1 * r2)
            p = pairs[(b, c)]
            m = 0
            for eta in desc.angular_eta:
                for z in desc.zeta:
                    for lm in desc.lambda_:
                        q[i, S * K + p * M + m] += (2 ** (1 - z) * max(1 + lm * cos, 0) ** z
                                                    * np.exp(-eta * (r1 ** 2 + r2 ** 2 + r3 ** 2))
                                                    * fc(r1) * fc(r2) * fc(r3))
                        m += 1
    return q


def small_desc(species=("Mo",), cutoff=4.0):
    return ACSF(species, cutoff, radial_eta=[0.5, 2.0, 1.0], radial_rs=[0.0, 2.5, 3.2],
                angular_eta=[0.01, 0.2], zeta=[1.0, 2.0, 5.5], lambda_=[1.0, -1.0])


def rattled_bcc(seed=0, n=1, a=3.16):
    atoms = bulk("Mo", "bcc", a=a, cubic=True) * (n, n, n)
    atoms.rattle(0.15, seed=seed)
    return atoms


def binary_cluster(seed=1):
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0, 4.5, size=(7, 3))
    atoms = Atoms("MoMoNbMoNbNbMo", positions=pos, cell=[6.0, 6.5, 7.0], pbc=[True, False, True])
    atoms.cell[1, 0] = 0.8  # triclinic
    return atoms


@pytest.mark.parametrize("case", ["bcc", "binary"])
def test_values_match_formulas(case):
    if case == "bcc":
        atoms, desc = rattled_bcc(), small_desc()
    else:
        atoms, desc = binary_cluster(), small_desc(("Mo", "Nb"), cutoff=3.5)
    q = desc.compute(atoms)
    ref = slow_acsf(desc, atoms)
    assert q.shape == (len(atoms), desc.n_features)
    assert np.abs(ref).max() > 0.1 and np.abs(ref[:, desc.n_radial * len(desc.species):]).max() > 1e-3
    np.testing.assert_allclose(q, ref, rtol=1e-10, atol=1e-12)


def _fd_jacobian(desc, D, i, j, s, n, h=1e-5):
    E = len(D)
    num = np.zeros((E, desc.n_features, 3))
    for e in range(E):
        for c in range(3):
            Dp, Dm = D.copy(), D.copy()
            Dp[e, c] += h
            Dm[e, c] -= h
            dq = (desc.values(Dp, i, j, s, n) - desc.values(Dm, i, j, s, n)) / (2 * h)
            num[e, :, c] = dq[i[e]]
            others = np.delete(np.arange(n), i[e])
            assert np.abs(dq[others]).max() < 1e-9  # q_i depends only on edges centred on i
    return num


@pytest.mark.parametrize("case", ["bcc", "binary"])
def test_jacobian_and_vjp_vs_finite_differences(case):
    if case == "bcc":
        atoms, desc = rattled_bcc(seed=3), small_desc(cutoff=3.4)
    else:
        atoms, desc = binary_cluster(2), small_desc(("Mo", "Nb"), cutoff=3.5)
    D, i, j, s = desc.edges(atoms)
    n = len(atoms)
    q, jac = desc.values_and_jacobian(D, i, j, s, n)
    np.testing.assert_allclose(q, desc.values(D, i, j, s, n), rtol=0, atol=1e-14)
    num = _fd_jacobian(desc, D, i, j, s, n)
    assert np.abs(num).max() > 0.1
    np.testing.assert_allclose(jac, num, rtol=1e-6, atol=1e-7)
    g = np.random.default_rng(0).normal(size=q.shape)
    np.testing.assert_allclose(desc.vjp(D, i, j, s, n, g), np.einsum("ef,efk->ek", g[i], jac),
                               rtol=1e-10, atol=1e-12)


def test_torch_bridge_gradients_agree():
    atoms, desc = rattled_bcc(seed=5), small_desc(cutoff=3.6)
    graph = build_graph(atoms, desc.cutoff + 0.5, [42])  # edges beyond the descriptor cutoff are dropped
    w = torch.randn(desc.n_features, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    grads = []
    for jacobian in (False, True):
        q = desc.torch(graph, jacobian=jacobian)
        (g,) = torch.autograd.grad(torch.tanh(q @ w).sum(), graph.edge_vectors)
        grads.append(g)
    np.testing.assert_allclose(q.detach().numpy(), desc.compute(atoms), atol=1e-13)
    assert grads[0].abs().max() > 1e-3
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-12)


def test_invariances():
    desc = ACSF.default(["Mo", "Nb"], cutoff=4.0, n_radial=5)
    atoms = rattled_bcc(seed=7, n=2)
    atoms.numbers[[1, 3, 8]] = 41
    q = desc.compute(atoms)
    assert np.abs(q).max() > 0.1
    # translation (with wrapping)
    t = atoms.copy()
    t.positions += [0.3, -1.7, 2.2]
    t.wrap()
    np.testing.assert_allclose(desc.compute(t), q, atol=1e-10)
    # rotation of positions and cell together
    rng = np.random.default_rng(1)
    R, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    r = atoms.copy()
    r.set_cell(atoms.cell.array @ R.T, scale_atoms=False)
    r.positions = atoms.positions @ R.T
    np.testing.assert_allclose(desc.compute(r), q, atol=1e-10)
    # permutation of atoms permutes the rows
    perm = rng.permutation(len(atoms))
    np.testing.assert_allclose(desc.compute(atoms[perm]), q[perm], atol=1e-10)
    # a different structure gives different descriptors
    other = rattled_bcc(seed=8, n=2)
    other.numbers[[1, 3, 8]] = 41
    assert np.abs(desc.compute(other) - q).max() > 1e-3


def test_cutoff_smoothness_and_isolated_atom():
    desc = small_desc(cutoff=3.0)
    dimer = Atoms("Mo2", positions=[[0, 0, 0], [0, 0, 2.999999]])
    assert np.abs(desc.compute(dimer)).max() < 1e-9
    single = Atoms("Mo", positions=[[0, 0, 0]])
    np.testing.assert_array_equal(desc.compute(single), np.zeros((1, desc.n_features)))


def test_default_parameters_and_errors():
    d = ACSF.default(["Mo"], cutoff=5.0, n_radial=8, n_angular_eta=2, zeta=(1, 4), lambda_=(1, -1))
    assert d.n_features == 8 + 2 * 2 * 2 == len(d.feature_names)
    assert np.all(np.diff(d.radial_rs) > 0) and d.radial_rs[-1] == 5.0
    d2 = ACSF.default(["Mo", "Nb", "Ta"], cutoff=4.0, n_radial=4, n_angular_eta=1, zeta=(1,), lambda_=(1,))
    assert d2.n_features == 3 * 4 + 6 * 1
    rebuilt = ACSF(**d.parameters())
    atoms = rattled_bcc()
    np.testing.assert_array_equal(rebuilt.compute(atoms), d.compute(atoms))
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="cutoff"):
            ACSF.default(["Mo"], cutoff=bad)
        with pytest.raises(ValueError, match="cutoff"):
            ACSF(["Mo"], bad, [1.0], [0.0])
    with pytest.raises(ValueError, match="unknown element"):
        ACSF.default(["Xx"], 5.0)
    with pytest.raises(ValueError, match="zeta"):
        ACSF(["Mo"], 5.0, [1.0], [0.0], [0.1], zeta=[0.5])
    with pytest.raises(ValueError, match="lambda"):
        ACSF(["Mo"], 5.0, [1.0], [0.0], [0.1], lambda_=[0.5])
    with pytest.raises(ValueError, match="same length"):
        ACSF(["Mo"], 5.0, [1.0, 2.0], [0.0])
    with pytest.raises(UnknownElementError, match="Nb"):
        d.compute(Atoms("MoNb", positions=[[0, 0, 0], [0, 0, 2.5]]))
