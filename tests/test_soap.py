"""SOAP power spectrum: reference values (quippy), derivatives, torch bridge, invariances, errors."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, make_supercell

from ase_mlcalc.descriptors import SOAP
from ase_mlcalc.errors import UnknownElementError
from ase_mlcalc.graph import build_graph

HYPERS = dict(cutoff=4.0, cutoff_transition_width=0.5, n_max=4, l_max=3, atom_sigma=0.5)


def si8(rattle=0.1, seed=1):
    a = bulk("Si", "diamond", 5.43, cubic=True)
    a.rattle(rattle, seed=seed)
    return a


def sic(rattle=0.1, seed=2):
    a = bulk("SiC", "zincblende", 4.36, cubic=True)
    a.rattle(rattle, seed=seed)
    return a


def inp(rattle=0.15, seed=3):
    a = bulk("InP", "zincblende", 5.87, cubic=True)
    a.rattle(rattle, seed=seed)
    a.set_cell(a.cell.array @ [[1.0, 0.03, 0.0], [0.0, 1.0, -0.02], [0.01, 0.0, 1.0]], scale_atoms=True)
    return a


def acetylacetone():
    """A C5H8O2 molecule from the acac DFT set (MIT licence, BOTNet-datasets; tests/data)."""
    import os

    import ase.io

    return ase.io.read(os.path.join(os.path.dirname(__file__), "data", "acac_frame.xyz"))


SYSTEMS = {"si": si8, "sic": sic, "inp": inp, "acac": acetylacetone}


def quippy_soap(atoms, species, **h):
    from quippy.descriptors import Descriptor as QuippyDescriptor

    zs = " ".join(str(z) for z in species)
    args = (f"soap cutoff={h['cutoff']} cutoff_transition_width={h['cutoff_transition_width']} "
            f"n_max={h['n_max']} l_max={h['l_max']} atom_sigma={h['atom_sigma']} "
            f"n_species={len(species)} species_Z={{{zs}}}")
    for key in ("central_weight", "central_reference_all_species"):
        if key in h:
            args += f" {key}={'T' if h[key] is True else 'F' if h[key] is False else h[key]}"
    out = QuippyDescriptor(args).calc(atoms)
    return out["data"][:, :-1]  # the last entry is GAP's covariance_sigma0


@pytest.mark.parametrize("system, species, hypers", [
    ("si", [14], dict(HYPERS)),
    ("si", [14], dict(cutoff=5.0, cutoff_transition_width=0.5, n_max=8, l_max=6, atom_sigma=0.5)),
    ("si", [14], dict(cutoff=3.5, cutoff_transition_width=1.0, n_max=5, l_max=4, atom_sigma=0.4)),
    ("sic", [14, 6], dict(HYPERS)),
    ("sic", [6, 14], dict(cutoff=4.5, cutoff_transition_width=0.3, n_max=3, l_max=5, atom_sigma=0.6)),
    ("sic", [14, 6], dict(HYPERS, central_weight=0.7, central_reference_all_species=True)),
    ("si", [14], dict(HYPERS, central_weight=0.0)),
    ("inp", [49, 15], dict(cutoff=5.2, cutoff_transition_width=0.5, n_max=6, l_max=4, atom_sigma=0.5)),
    ("inp", [15, 49], dict(cutoff=5.2, cutoff_transition_width=0.5, n_max=6, l_max=4, atom_sigma=0.5)),
    ("acac", [1, 6, 8], dict(cutoff=4.0, cutoff_transition_width=0.5, n_max=4, l_max=4, atom_sigma=0.5)),
    ("acac", [8, 1, 6], dict(cutoff=4.0, cutoff_transition_width=0.5, n_max=4, l_max=4, atom_sigma=0.5)),
])
def test_values_equal_quippy(system, species, hypers):
    pytest.importorskip("quippy", reason="quippy-ase (QUIP's soap descriptor) is not installed")
    atoms = SYSTEMS[system]()
    ours = SOAP(species, **hypers).compute(atoms)
    ref = quippy_soap(atoms, species, **hypers)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-10 * np.abs(ref).max())


def test_n_features_and_unit_norm():
    s = SOAP(["Si", "C"], **HYPERS)
    K = 2 * HYPERS["n_max"]
    assert s.n_features == K * (K + 1) // 2 * (HYPERS["l_max"] + 1)
    q = s.compute(sic())
    assert q.shape == (8, s.n_features)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, rtol=1e-12)
    raw = SOAP(["Si", "C"], normalise=False, **HYPERS).compute(sic())
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), q, rtol=1e-10, atol=1e-14)


def test_multi_species_channels():
    """Si and C environments land in different channels; swapping the
    elements permutes the features instead of leaving them unchanged."""
    s = SOAP(["Si", "C"], **HYPERS)
    a = sic()
    b = a.copy()
    b.numbers = np.where(a.numbers == 14, 6, 14)
    qa, qb = s.compute(a), s.compute(b)
    assert not np.allclose(qa, qb, atol=1e-3)
    s_swapped = SOAP(["C", "Si"], **HYPERS)
    np.testing.assert_allclose(s_swapped.compute(b), qa, rtol=1e-10, atol=1e-13)
    # pure Si: everything in the (Si, Si) block, which equals the one-species SOAP
    one = SOAP(["Si"], **HYPERS)
    pure = a.copy()
    pure.numbers[:] = 14
    two = s.compute(pure)
    np.testing.assert_allclose(two[:, :one.n_features], one.compute(pure), rtol=1e-10, atol=1e-13)
    assert np.all(two[:, one.n_features:] == 0.0)


def _edges(s, atoms):
    D, i, j, sidx = s.edges(atoms)
    return D, i, j, sidx, len(atoms)


def _fd_jacobian(s, D, i, j, sidx, n, h=1e-5):
    """Central finite differences of q[centers[e]] w.r.t. edge_vectors[e]."""
    jac = np.zeros((len(D), s.n_features, 3))
    for e in range(len(D)):
        for k in range(3):
            Dp, Dm = D.copy(), D.copy()
            Dp[e, k] += h
            Dm[e, k] -= h
            jac[e, :, k] = (s.values(Dp, i, j, sidx, n)[i[e]] - s.values(Dm, i, j, sidx, n)[i[e]]) / (2 * h)
    return jac


@pytest.mark.parametrize("normalise", [True, False])
def test_jacobian_and_vjp_vs_finite_differences(normalise):
    s = SOAP(["Si", "C"], cutoff=3.2, cutoff_transition_width=0.8, n_max=3, l_max=3,
             atom_sigma=0.5, normalise=normalise)
    a = sic(rattle=0.15)[:4]
    a.pbc = False
    D, i, j, sidx, n = _edges(s, a)
    assert len(D) > 4
    q, jac = s.values_and_jacobian(D, i, j, sidx, n)
    np.testing.assert_allclose(q, s.values(D, i, j, sidx, n), rtol=1e-12, atol=1e-14)
    fd = _fd_jacobian(s, D, i, j, sidx, n)
    scale = np.abs(fd).max()
    np.testing.assert_allclose(jac, fd, atol=1e-6 * scale)
    g = np.random.default_rng(0).normal(size=q.shape)
    vjp = s.vjp(D, i, j, sidx, n, g)
    np.testing.assert_allclose(vjp, np.einsum("ef,efk->ek", g[i], jac), rtol=1e-9, atol=1e-12 * scale)
    np.testing.assert_allclose(vjp, np.einsum("ef,efk->ek", g[i], fd), atol=1e-6 * np.abs(vjp).max())


def test_jacobian_contracted_equals_vjp_periodic():
    s = SOAP(["Si"], **HYPERS)
    D, i, j, sidx, n = _edges(s, si8())
    q, jac = s.values_and_jacobian(D, i, j, sidx, n)
    g = np.random.default_rng(1).normal(size=q.shape)
    np.testing.assert_allclose(s.vjp(D, i, j, sidx, n, g), np.einsum("ef,efk->ek", g[i], jac),
                               rtol=1e-9, atol=1e-12)


def test_torch_bridge_vjp_and_double_backward():
    s = SOAP(["Si", "C"], **HYPERS)
    atoms = sic()
    graph = build_graph(atoms, s.cutoff, s.species)
    r = graph.edge_vectors
    q = s.torch(graph)
    g = torch.randn(q.shape, dtype=q.dtype, generator=torch.Generator().manual_seed(0))
    (dr,) = torch.autograd.grad((q * g).sum(), r)
    D = r.detach().numpy()
    expect = s.vjp(D, graph.centers, graph.neighbors, graph.species_index, graph.n_atoms, g.numpy())
    np.testing.assert_allclose(dr.numpy(), expect, rtol=1e-10, atol=1e-13)

    # force-like loss: E = sum(w * q), F ~ dE/dr; d(|dE/dr|^2)/dw needs the Jacobian path
    w = torch.randn(s.n_features, dtype=torch.float64, requires_grad=True,
                    generator=torch.Generator().manual_seed(1))
    qj = s.torch(graph, jacobian=True)
    np.testing.assert_allclose(qj.detach().numpy(), q.detach().numpy(), rtol=1e-12)
    (dEdr,) = torch.autograd.grad((qj * w).sum(), r, create_graph=True)
    (dw,) = torch.autograd.grad((dEdr ** 2).sum(), w)
    # analytic: dEdr[e] = J[e]^T w  =>  d/dw sum |dEdr|^2 = 2 sum_e J[e] (J[e]^T w)
    _, jac = s.values_and_jacobian(D, graph.centers, graph.neighbors, graph.species_index, graph.n_atoms)
    J = torch.as_tensor(jac)
    expect_dw = 2 * torch.einsum("efk,ek->f", J, torch.einsum("efk,f->ek", J, w.detach()))
    np.testing.assert_allclose(dw.numpy(), expect_dw.numpy(), rtol=1e-9, atol=1e-12)


def _rotation(seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


def test_rotation_translation_permutation_invariance():
    s = SOAP(["Si", "C"], **HYPERS)
    a = sic()
    q = s.compute(a)
    b = a.copy()
    R = _rotation(3)
    b.set_cell(a.cell.array @ R.T, scale_atoms=False)
    b.positions = a.positions @ R.T + np.array([0.3, -1.7, 2.2])
    np.testing.assert_allclose(s.compute(b), q, rtol=1e-9, atol=1e-12)
    perm = np.random.default_rng(4).permutation(len(a))
    np.testing.assert_allclose(s.compute(a[perm]), q[perm], rtol=1e-10, atol=1e-13)
    # a reflection (improper rotation) leaves the power spectrum unchanged too
    m = a.copy()
    m.set_cell(a.cell.array * [-1, 1, 1], scale_atoms=False)
    m.positions = a.positions * [-1, 1, 1]
    np.testing.assert_allclose(s.compute(m), q, rtol=1e-9, atol=1e-12)
    # but a distortion changes it
    c = a.copy()
    c.positions[0] += [0.2, 0.0, 0.0]
    assert not np.allclose(s.compute(c)[0], q[0], atol=1e-4)


def test_periodic_images_and_supercell():
    s = SOAP(["Si"], cutoff=5.0, cutoff_transition_width=0.5, n_max=4, l_max=4, atom_sigma=0.5)
    prim = bulk("Si", "diamond", 5.43)  # 2 atoms, cell smaller than the cutoff
    prim.positions[1] += [0.05, -0.03, 0.02]
    q = s.compute(prim)
    wrapped = prim.copy()
    wrapped.positions += 7.3 * prim.cell[0] - 3 * prim.cell[2] + [0.1, 0.2, 0.3]
    q_wrapped = s.compute(wrapped)
    wrapped.wrap()
    np.testing.assert_allclose(s.compute(wrapped), q_wrapped, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(q_wrapped, q, rtol=1e-10, atol=1e-13)
    sc = make_supercell(prim, [[2, 0, 0], [0, 2, 0], [0, 0, 3]])
    np.testing.assert_allclose(s.compute(sc), np.tile(q, (12, 1)), rtol=1e-10, atol=1e-13)


def test_isolated_atom_and_empty_neighbourhood():
    s = SOAP(["Si", "C"], **HYPERS)
    a = Atoms("SiC", positions=[[0, 0, 0], [10, 0, 0]])  # farther apart than the cutoff
    q = s.compute(a)
    assert np.all(np.isfinite(q))
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0)
    assert not np.allclose(q[0], q[1])  # the centre sits in its own species channel
    D, i, j, sidx, n = _edges(s, a)
    assert len(D) == 0
    q2, jac = s.values_and_jacobian(D, i, j, sidx, n)
    assert jac.shape == (0, s.n_features, 3) and np.all(np.isfinite(q2))
    assert s.vjp(D, i, j, sidx, n, np.ones_like(q2)).shape == (0, 3)
    single = SOAP(["Si"], **HYPERS).compute(Atoms("Si"))
    assert single.shape == (1, SOAP(["Si"], **HYPERS).n_features) and np.all(np.isfinite(single))
    # no centre weight and no neighbours: zero vector, not NaN
    z = SOAP(["Si"], central_weight=0.0, **HYPERS)
    assert np.all(z.compute(Atoms("Si")) == 0.0)
    D, i, j, sidx, n = _edges(z, Atoms("Si2", positions=[[0, 0, 0], [0, 0, 20]]))
    assert np.all(np.isfinite(z.values_and_jacobian(D, i, j, sidx, n)[0]))


@pytest.mark.parametrize("kwargs, match", [
    (dict(l_max=-1), "l_max"),
    (dict(l_max=21), "l_max"),
    (dict(l_max=2.5), "l_max"),
    (dict(n_max=0), "n_max"),
    (dict(n_max=31), "n_max"),
    (dict(cutoff=0.0), "cutoff"),
    (dict(cutoff=-1.0), "cutoff"),
    (dict(atom_sigma=0.0), "atom_sigma"),
    (dict(atom_sigma=-0.3), "atom_sigma"),
    (dict(cutoff_transition_width=-0.1), "cutoff_transition_width"),
    (dict(cutoff=4.0, cutoff_transition_width=4.0), "cutoff_transition_width"),
    (dict(central_weight=-1.0), "central_weight"),
])
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SOAP(["Si"], **kwargs)


def test_bad_species_and_unknown_element():
    with pytest.raises(ValueError, match="species"):
        SOAP([])
    with pytest.raises(ValueError, match="Xx"):
        SOAP(["Xx"])
    with pytest.raises(UnknownElementError, match="C"):
        SOAP(["Si"], **HYPERS).compute(sic())
    assert issubclass(UnknownElementError, ValueError)


def test_edges_beyond_cutoff_contribute_nothing():
    s = SOAP(["Si"], **HYPERS)
    D, i, j, sidx, n = _edges(s, si8())
    far = np.array([[0.0, 0.0, s.cutoff + 0.3]])
    D2 = np.concatenate([D[i == 0], far, D[i != 0]])
    i2 = np.concatenate([i[i == 0], [0], i[i != 0]])
    j2 = np.concatenate([j[i == 0], [1], j[i != 0]])
    np.testing.assert_allclose(s.values(D2, i2, j2, sidx, n), s.values(D, i, j, sidx, n), rtol=1e-12)


def test_zero_transition_width_is_a_step():
    s = SOAP(["Si"], cutoff=3.0, cutoff_transition_width=0.0, n_max=3, l_max=2, atom_sigma=0.5)
    inside = s.compute(Atoms("Si2", positions=[[0, 0, 0], [0, 0, 2.999]]))
    outside = s.compute(Atoms("Si2", positions=[[0, 0, 0], [0, 0, 3.001]]))
    alone = s.compute(Atoms("Si"))
    np.testing.assert_allclose(outside[0], alone[0])
    assert not np.allclose(inside[0], alone[0], atol=1e-3)
