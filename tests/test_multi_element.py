"""Multi-element recipes: distance_2b kernel and its derivatives, per-group and per-frame sigmas, e0 from
isolated atoms, species-order independence, bounded-memory fitting, stress in the fit."""

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from ase_mlcalc.interop.gap_strings import gap_terms
from ase_mlcalc.models.sparse_gp import PairTerm, SparseGPModel
from ase_mlcalc.testing import labelled_frames
from ase_mlcalc.training import fit_bpnn, fit_gap, fit_lennard_jones
from ase_mlcalc.training import sparse_gp as gp_fit
from ase_mlcalc.training.data import reference_energies

SPECIES = ["Ar", "Kr", "Xe"]
SMALL_SOAP = dict(cutoff=4.8, n_max=3, l_max=3, n_sparse=12, progress=False)
PAIR = dict(cutoff=5.0, delta=0.1, theta=0.5, n_sparse=8)


def energies(calc, frames):
    out = []
    for a in frames:
        b = a.copy()
        b.calc = calc
        out.append(b.get_potential_energy())
    return np.array(out)


def stress_error(calc, frames):
    """RMS error of the stress components (eV/Å³) of ``calc`` on labelled frames."""
    errs = []
    for a in frames:
        b = a.copy()
        b.calc = calc
        errs.append(b.get_stress() - a.get_stress())
    return np.sqrt(np.mean(np.square(errs)))


def test_distance_2b_kernel_rows_match_finite_differences():
    """PairTerm.design: the per-edge kernel gradients t are the derivatives of the energy row."""
    term = PairTerm((18, 36), cutoff=5.0, cutoff_transition_width=1.0, delta=0.3, theta=0.7, f0=0.05, n_sparse=6)
    rng = np.random.default_rng(0)
    term.set_sparse(rng.uniform(3.0, 4.9, 6), np.array([0, 1, 2, 0, 1, 2]))
    atoms = labelled_frames(1, ["Ar", "Kr"], seed=3)[0]
    from ase_mlcalc.graph import build_graph

    g = build_graph(atoms, 5.0, (18, 36))
    D = g.edge_vectors.detach().numpy().copy()
    args = (g.centers, g.neighbors, g.species_index, len(atoms))
    row, blocks = term.design(D, *args)
    t = np.concatenate([b[2] for b in blocks])
    h = 1e-6
    for e in rng.choice(len(D), 8, replace=False):
        for c in range(3):
            Dp, Dm = D.copy(), D.copy()
            Dp[e, c] += h
            Dm[e, c] -= h
            fd = (term.design(Dp, *args)[0] - term.design(Dm, *args)[0]) / (2 * h)
            np.testing.assert_allclose(t[e, c], fd, rtol=1e-6, atol=1e-9)
    # the energy row is the per-atom kernel of the torch path, summed over atoms
    K = term.kernel_from_features(term.features(g), g.center_species).detach().numpy()
    np.testing.assert_allclose(K.sum(0), row, rtol=1e-12)


def test_gap_string_is_read_as_gap_fit_reads_it():
    terms = gap_terms("distance_2b cutoff=5.0 covariance_type=ard_se delta=0.5 theta_uniform=1.0 n_sparse=12 "
                      "sparse_method=uniform add_species=T : soap cutoff=4.5 n_max=4 l_max=4 atom_sigma=0.5 "
                      "covariance_type=dot_product zeta=4 delta=0.2 n_sparse=25 sparse_method=cur_points")
    assert terms[0] == dict(kind="distance_2b", cutoff=5.0, delta=0.5, theta=1.0, n_sparse=12, sparse_method="uniform")
    assert terms[1]["kind"] == "soap" and terms[1]["sparse_method"] == "cur" and terms[1]["zeta"] == 4.0
    for bad, name in (("angle_3b cutoff=3", "angle_3b"), ("soap cutoff=4 covariance_type=ard_se", "covariance_type"),
                      ("distance_2b cutoff=4 Z1=18", "Z1"), ("soap cutoff=4 add_species=F", "add_species")):
        with pytest.raises(ValueError, match=name):
            gap_terms(bad)


def test_config_type_sigma_and_frame_sigmas_weight_the_frames():
    """A frame whose group has a tiny sigma is fitted almost exactly; the same tiny sigma given as
    the frame's own energy_sigma (absolute) does the same."""
    frames = labelled_frames(8, ["Ar", "Kr"], seed=50)
    for k, a in enumerate(frames):
        a.info["config_type"] = "special" if k == 3 else "bulk"
    kw = dict(SMALL_SOAP, n_sparse=6, default_sigma=(0.02, 0.2))
    plain = fit_gap(frames, **kw)
    tight = fit_gap(frames, config_type_sigma={"special": (1e-5, 0.2, 0.05)}, **kw)
    ref = np.array([a.get_potential_energy() for a in frames])
    err_plain = np.abs(energies(plain, frames) - ref)
    err_tight = np.abs(energies(tight, frames) - ref)
    assert err_tight[3] < 0.01 * err_plain[3]
    assert err_tight[3] < 1e-4
    frames[3].info["energy_sigma"] = 1e-5 * np.sqrt(len(frames[3]))  # the same, absolute
    again = fit_gap(frames, **kw)
    np.testing.assert_allclose(energies(again, frames), energies(tight, frames), rtol=1e-10)
    sig = gp_fit.frame_sigmas(frames, (0.02, 0.2), "special:0.5:0.6:0.7:0")
    assert sig[3, 0] == frames[3].info["energy_sigma"] and sig[3, 1] == 0.6
    n = len(frames[0])
    np.testing.assert_allclose(sig[0], [0.02 * n ** 0.5, 0.2, 0.05 * n ** 0.5])  # per atom: sqrt(N)


def test_e0_methods():
    frames = labelled_frames(4, ["Ar", "Kr"], seed=60)
    iso = []
    for sym, e in (("Ar", -0.5), ("Kr", -0.75)):
        a = Atoms(sym, positions=[[0, 0, 0]])
        a.calc = SinglePointCalculator(a, energy=e, forces=np.zeros((1, 3)))
        iso.append(a)
    E = np.array([a.get_potential_energy() for a in frames])
    species = (18, 36)
    got = reference_energies(frames + iso, species, np.r_[E, -0.5, -0.75], 5.0)  # auto: isolated
    np.testing.assert_allclose(got, [-0.5, -0.75])
    got = reference_energies(frames + iso[:1], species, np.r_[E, -0.5], 5.0)  # Kr by least squares
    assert got[0] == -0.5 and np.isfinite(got[1]) and got[1] != -0.75
    avg = reference_energies(frames, species, E, 5.0, e0_method="average")
    np.testing.assert_allclose(avg, np.mean(E / len(frames[0])))
    with pytest.raises(Exception, match="isolated-atom frame of Kr"):
        reference_energies(frames + iso[:1], species, np.r_[E, -0.5], 5.0, e0_method="isolated")
    np.testing.assert_allclose(reference_energies(frames, species, E, 5.0, e0={"Kr": 1.0, "Ar": 2.0}),
                               [2.0, 1.0])
    # with the isolated atoms in the fit, the GAP's prediction for them is close to their e0
    calc = fit_gap(frames + iso, distance_2b=PAIR, **SMALL_SOAP)
    assert calc.model.fit_info["e0"] == {"Ar": -0.5, "Kr": -0.75}
    np.testing.assert_allclose(energies(calc, iso), [-0.5, -0.75], atol=0.02)


@pytest.mark.parametrize("family", ["gap", "bpnn", "lj"])
def test_species_order_does_not_change_the_predictions(family):
    frames = labelled_frames(4, SPECIES, seed=70)
    probe = labelled_frames(2, SPECIES, seed=80)
    fits = {"gap": lambda sp: fit_gap(frames, species=sp, distance_2b=PAIR, **SMALL_SOAP),
            "bpnn": lambda sp: fit_bpnn(frames, species=sp, cutoff=4.8, n_radial=4, n_angular_eta=1, hidden=(8,),
                                        epochs=3, lbfgs_steps=0, progress=False, batch_size=4),
            "lj": lambda sp: fit_lennard_jones(frames, species=sp, cutoff=4.8, max_iter=30)}
    a = energies(fits[family](["Ar", "Kr", "Xe"]), probe)
    b = energies(fits[family](["Xe", "Ar", "Kr"]), probe)
    np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-8)


def test_blocked_qr_equals_one_qr(monkeypatch):
    """Reducing the kernel rows in blocks of structures gives the one-shot least-squares solution."""
    frames = labelled_frames(6, ["Ar", "Kr"], seed=90)
    kw = dict(distance_2b=PAIR, **SMALL_SOAP)
    monkeypatch.setattr(gp_fit, "BLOCK_ROWS_PER_SPARSE", 10 ** 6)
    one = fit_gap(frames, **kw)
    monkeypatch.setattr(gp_fit, "BLOCK_ROWS_PER_SPARSE", 0)  # a QR after every structure
    blocked = fit_gap(frames, **kw)
    assert blocked.model.fit_info["qr_block_bytes"] < one.model.fit_info["qr_block_bytes"] / 2
    np.testing.assert_allclose(blocked.model.alpha.numpy(), one.model.alpha.numpy(), rtol=1e-7,
                               atol=1e-9 * np.abs(one.model.alpha.numpy()).max())
    np.testing.assert_allclose(energies(blocked, frames), energies(one, frames), rtol=1e-11)


def test_stress_enters_the_fit():
    frames = _strained_frames(6, 100)
    no_stress = [a.copy() for a in frames]
    for a, b in zip(no_stress, frames):
        a.calc = SinglePointCalculator(a, energy=b.get_potential_energy(), forces=b.get_forces())
    kw = dict(distance_2b=PAIR, **SMALL_SOAP)
    with_v, without_v = fit_gap(frames, **kw), fit_gap(no_stress, **kw)
    assert with_v.model.fit_info["n_observations"] == without_v.model.fit_info["n_observations"] + 6 * len(frames)
    assert stress_error(with_v, frames) < 0.7 * stress_error(without_v, frames)


def test_uniform_selection_spreads_over_the_range():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(3.0, 0.05, 500), rng.uniform(3.5, 5.0, 20)])
    sel = gp_fit.uniform_selection(x, 10, rng)
    assert len(sel) == 10 and len(set(sel)) == 10 and np.all(np.diff(sel) > 0)
    assert x[sel].max() - x[sel].min() > 1.5  # random picks would sit near 3.0
    assert len(gp_fit.uniform_selection(np.array([1.0, 1.0, 2.0]), 5, rng)) == 2  # duplicates dropped


def test_multi_term_model_file_round_trip(tmp_path):
    import ase_mlcalc

    frames = labelled_frames(3, ["Ar", "Kr"], seed=110)
    calc = fit_gap(frames, distance_2b=PAIR, **SMALL_SOAP)
    calc.save(tmp_path / "g.pt")
    loaded = ase_mlcalc.load(tmp_path / "g.pt")
    assert [t.kind for t in loaded.model.terms] == ["distance_2b", "soap"]
    np.testing.assert_array_equal(energies(loaded, frames), energies(calc, frames))
    assert isinstance(loaded.model, SparseGPModel)


def _strained_frames(n, seed):
    from ase_mlcalc import LennardJones
    from ase_mlcalc.testing import TOY_LJ

    frames = labelled_frames(n, ["Ar", "Kr"], seed=seed, rattle=0.05)
    lj = LennardJones(species=list(TOY_LJ["epsilon"]), **TOY_LJ, rc=6.0)
    for k, a in enumerate(frames):  # strained cells: the stress carries information
        a.set_cell(a.cell * (0.96 + 0.015 * k), scale_atoms=True)
        a.calc = lj
        a.calc = SinglePointCalculator(a, energy=a.get_potential_energy(), forces=a.get_forces(),
                                       stress=a.get_stress())
    return frames


def test_bpnn_fits_virials_and_takes_e0_from_isolated_atoms():
    frames = _strained_frames(6, 120)
    iso = []
    for sym, e in (("Ar", -0.5), ("Kr", -0.75)):
        a = Atoms(sym, positions=[[0, 0, 0]])
        a.calc = SinglePointCalculator(a, energy=e, forces=np.zeros((1, 3)))
        iso.append(a)
    kw = dict(cutoff=4.8, n_radial=4, n_angular_eta=1, hidden=(8,), epochs=40, lbfgs_steps=40, batch_size=8,
              validation_fraction=0.0, progress=False, seed=3)
    with_v = fit_bpnn(frames + iso, virial_weight=1.0, **kw)
    without = fit_bpnn(frames + iso, virial_weight=0.0, **kw)
    assert with_v.model.fit_info["n_virial_frames"] == 6
    assert "train_virial_rmse" in with_v.model.fit_info["history"][-1]
    assert with_v.model.fit_info["e0"] == {"Ar": -0.5, "Kr": -0.75}

    assert stress_error(with_v, frames) < 0.7 * stress_error(without, frames)
    np.testing.assert_allclose(energies(with_v, iso), [-0.5, -0.75], rtol=0, atol=1e-12)


def test_frame_weights_by_config_type():
    from ase_mlcalc.training.bpnn import _frame_weights

    frames = labelled_frames(4, ["Ar"], seed=130)
    for k, a in enumerate(frames):
        a.info["config_type"] = "surface" if k == 0 else "bulk"
    w = _frame_weights(frames, {"surface": 4.0})
    np.testing.assert_allclose(w, np.array([4.0, 1, 1, 1]) / 1.75)
    np.testing.assert_allclose(_frame_weights(frames, [4.0, 1, 1, 1]), w)
    with pytest.raises(ValueError, match="frame_weights"):
        _frame_weights(frames, {"surface": -1.0})


def test_errors_by_config_type_add_up():
    from ase_mlcalc.training import evaluate, group_metrics

    frames = labelled_frames(6, ["Ar", "Kr"], seed=140)
    for k, a in enumerate(frames):
        a.info["config_type"] = "odd" if k % 2 else "even"
    calc = fit_lennard_jones(frames, cutoff=4.8, max_iter=5)
    overall, preds = evaluate(calc, frames)
    groups = group_metrics(preds, frames)
    assert list(groups) == ["even", "odd"] and all(g["n_frames"] == 3 for g in groups.values())
    mse = np.mean([g["energy_rmse"] ** 2 for g in groups.values()])  # equal group sizes and atom counts
    assert overall["energy_rmse"] == pytest.approx(np.sqrt(mse), rel=1e-12)
    assert overall["force_rmse"] == pytest.approx(np.sqrt(np.mean([g["force_rmse"] ** 2 for g in groups.values()])),
                                                  rel=1e-12)
