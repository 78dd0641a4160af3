"""On-the-fly learning (EMT as the reference: fast, deterministic), incremental GP updates, committees,
calibration."""

import copy

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

import ase_mlcalc
from ase_mlcalc.active import OnTheFly, OnTheFlyError, calibrate
from ase_mlcalc.models.committee import CommitteeModel
from ase_mlcalc.testing import labelled_frames
from ase_mlcalc.training import evaluate, fit_bpnn, fit_gap
from ase_mlcalc.training.data import reference_values
from ase_mlcalc.training.sparse_gp import GAPUpdater, frame_edges, frame_sigmas, solve
from ase_mlcalc.workflows.md import make_dynamics


def cu(size=2):
    return bulk("Cu", "fcc", a=3.61, cubic=True) * size


def emt_md_frames(n, seed, temperature=800, every=30):
    """Independent EMT MD frames of 32-atom fcc Cu (labelled)."""
    atoms, out = cu(), []

    def grab():
        b = atoms.copy()
        b.calc = EMT()
        b.calc = SinglePointCalculator(b, energy=b.get_potential_energy(), forces=b.get_forces())
        out.append(b)

    dyn = make_dynamics(atoms, EMT(), "langevin", temperature, 2.0, seed=seed)
    dyn.attach(grab, interval=every)
    dyn.run(every * n)
    return out[1:]


def force_rmse(calc, frames):
    return evaluate(calc, frames)[0]["force_rmse"]


@pytest.fixture(scope="module")
def cu_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("otf")
    otf = OnTheFly("gap", EMT(), initial_frames=[cu()], seed=0, data=d / "cu.extxyz", progress=False)
    atoms = cu()
    result = otf.run(atoms, "langevin", temperature_K=800, timestep_fs=2, steps=1000, log=d / "cu.log")
    return otf, result, d


def test_on_the_fly_gap_learns_cu_with_few_reference_calls(cu_run):
    """From one frame, 1000 steps at 800 K: at most 50 reference calls (28 when this test was written),
    and a model whose forces on 30 independent EMT MD frames are within 0.06 eV/Å (0.040; the same
    GAP fitted offline to 25 well-spread frames: 0.042)."""
    otf, result, d = cu_run
    assert 1 <= len(result.calls) <= 50
    assert force_rmse(otf.calculator, emt_md_frames(30, seed=123)) < 0.06
    # every call is on disk and in the log; the errors before the calls fall as the model learns
    import ase.io

    on_disk = ase.io.read(d / "cu.extxyz", ":")
    assert len(on_disk) == 1 + len(result.calls) == len(otf.frames)
    assert len((d / "cu.log").read_text().splitlines()) == len(result.calls)
    assert np.mean([c.force_rmse for c in result.calls[-5:]]) < np.mean([c.force_rmse for c in result.calls[:5]])


def test_threshold_zero_calls_at_every_check_and_huge_never(tmp_path):
    for threshold, calls in ((1e-12, 10), (1e3, 0)):
        otf = OnTheFly("gap", EMT(), initial_frames=[cu()], threshold=threshold, check_every=2, seed=0,
                       data=tmp_path / f"t{calls}.extxyz", progress=False, fit_options=dict(n_sparse=10))
        result = otf.run(cu(), "langevin", temperature_K=600, timestep_fs=2, steps=20)
        assert len(result.calls) == calls
        assert [c.step for c in result.calls] == list(range(2, 21, 2))[:calls]


def test_resume_rebuilds_the_same_model(cu_run, tmp_path):
    otf, result, d = cu_run
    again, atoms = OnTheFly.resume(d / "cu.extxyz", EMT())
    assert again.n_calls == len(result.calls) and atoms.info["otf_step"] == result.calls[-1].step
    for name, value in otf.calculator.model.state_dict().items():
        np.testing.assert_array_equal(again.calculator.model.state_dict()[name], value, err_msg=name)
    assert np.any(atoms.get_momenta())  # the MD can go on from the last recorded frame


def test_incremental_gp_update_equals_a_fit_from_scratch():
    frames = labelled_frames(6, ["Ar", "Kr"], seed=11)
    calc = fit_gap(frames[:3], cutoff=4.8, n_max=3, l_max=3, n_sparse=6, progress=False,
                   distance_2b=dict(cutoff=5.0, delta=0.1, theta=0.5, n_sparse=4))
    up = GAPUpdater(calc.model, frames[:3])
    np.testing.assert_allclose(up.model.alpha.numpy(), calc.model.alpha.numpy(), rtol=0, atol=0)
    up.add_frames(frames[3:5])
    D, i, j, sidx = frame_edges(0, frames[5], up.model.cutoff, up.model.species)
    x, z = up.model.terms[1].candidates(D, i, j, sidx, len(frames[5]))
    up.add_sparse_points(1, x[:3], z[:3])
    up.add_frames(frames[5:])
    scratch = copy.deepcopy(up.model)
    solve(scratch, frames, reference_values(frames), frame_sigmas(frames, (0.01, 0.05, 0.05)), up.e0)
    a, b = up.model.alpha.numpy(), scratch.alpha.numpy()
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-8 * np.abs(b).max())
    probe = labelled_frames(1, ["Ar", "Kr"], seed=99)[0]
    got, want = probe.copy(), probe.copy()
    got.calc, want.calc = ase_mlcalc.GAP(up.model), ase_mlcalc.GAP(scratch)
    np.testing.assert_allclose(got.get_forces(), want.get_forces(), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(got.calc.get_property("energies_uncertainty", got),
                               want.calc.get_property("energies_uncertainty", want), rtol=1e-8)


def test_a_failing_reference_stops_the_loop_and_keeps_the_frames(tmp_path):
    class FailsLater(EMT):
        calls = 0

        def calculate(self, *args, **kwargs):
            type(self).calls += 1
            if type(self).calls > 3:
                raise RuntimeError("SCF did not converge")
            super().calculate(*args, **kwargs)

    otf = OnTheFly("gap", FailsLater(), initial_frames=[cu()], threshold=1e-12, seed=0,
                   data=tmp_path / "d.extxyz", progress=False, fit_options=dict(n_sparse=10))
    with pytest.raises(OnTheFlyError, match="step 3.*SCF did not converge"):
        otf.run(cu(), "langevin", temperature_K=600, timestep_fs=2, steps=10)
    import ase.io

    assert len(ase.io.read(tmp_path / "d.extxyz", ":")) == 3  # the initial frame and the calls at steps 1, 2


def test_committee_mean_and_spread(tmp_path):
    frames = labelled_frames(4, ["Ar", "Kr"], seed=21)
    kw = dict(cutoff=4.8, n_radial=4, n_angular_eta=1, hidden=(8,), epochs=3, lbfgs_steps=0, progress=False)
    calc = fit_bpnn(frames, committee=3, **kw)
    members = calc.model.members
    a = frames[0].copy()
    a.calc = calc
    each = []
    for m in members:
        b = frames[0].copy()
        b.calc = ase_mlcalc.BPNN(copy.deepcopy(m))
        each.append((b.get_potential_energy(), b.get_forces(), b.get_potential_energies()))
    assert a.get_potential_energy() == pytest.approx(np.mean([e[0] for e in each]), rel=1e-12)
    np.testing.assert_allclose(a.get_forces(), np.mean([e[1] for e in each], 0), rtol=1e-10, atol=1e-12)
    std = calc.get_property("energies_uncertainty", a)
    np.testing.assert_allclose(std, np.std([e[2] for e in each], 0, ddof=1), rtol=1e-10)
    assert calc.get_property("energy_uncertainty", a) > 0
    f_std = calc.get_property("forces_uncertainty", a)
    assert f_std.shape == (len(a),) and np.all(f_std > 0)
    same = ase_mlcalc.Committee(CommitteeModel([copy.deepcopy(members[0]) for _ in range(3)]))
    b = frames[0].copy()
    b.calc = same
    assert np.all(same.get_property("energies_uncertainty", b) == 0)
    assert same.get_property("energy_uncertainty", b) == 0
    calc.save(tmp_path / "c.pt")
    loaded = ase_mlcalc.load(tmp_path / "c.pt")
    c = frames[0].copy()
    c.calc = loaded
    assert c.get_potential_energy() == a.get_potential_energy()
    np.testing.assert_array_equal(c.get_forces(), a.get_forces())
    np.testing.assert_array_equal(loaded.get_property("energies_uncertainty", c), std)


def test_on_the_fly_with_a_committee(tmp_path):
    otf = OnTheFly("bpnn", EMT(), initial_frames=[cu(), *emt_md_frames(2, seed=5)], threshold=1e-9, seed=0,
                   data=tmp_path / "c.extxyz", progress=False, update_epochs=3,
                   fit_options=dict(n_radial=4, n_angular_eta=1, hidden=(8,), epochs=5, lbfgs_steps=0, committee=2))
    before = copy.deepcopy(otf.calculator.model.state_dict())
    result = otf.run(cu(), "langevin", temperature_K=600, timestep_fs=2, steps=2)
    assert len(result.calls) == 2 and len(otf.frames) == 5
    after = otf.calculator.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the members were trained further


def test_on_the_fly_updates_a_given_committee_of_its_own_size(tmp_path):
    frames = emt_md_frames(3, seed=7)
    calc = fit_bpnn(frames, committee=3, cutoff=4.5, n_radial=4, n_angular_eta=1, hidden=(8,), epochs=3,
                    lbfgs_steps=0, progress=False)
    otf = OnTheFly(calc, EMT(), initial_frames=frames, threshold=1e-9, data=tmp_path / "g.extxyz", progress=False,
                   update_epochs=2)
    otf.update(emt_md_frames(1, seed=8)[0])
    assert len(otf.calculator.model.members) == 3 and len(otf.frames) == 4


def test_calibration_report_and_scale(tmp_path):
    frames = labelled_frames(8, ["Ar", "Kr"], seed=31)
    calc = fit_gap(frames[:5], cutoff=4.8, n_max=3, l_max=3, n_sparse=10, progress=False)
    report = calibrate(calc, frames[5:])
    energy = report.sets[0]
    assert energy.std.shape == (3,) and np.all(energy.std > 0)
    assert 0 <= energy.within(1) <= energy.within(2) <= 1
    a = frames[6].copy()
    a.calc = calc
    s0 = calc.get_property("energy_uncertainty", a)
    report = calibrate(calc, frames[5:], set_scale=True)
    calc.reset()
    assert calc.get_property("energy_uncertainty", a) == pytest.approx(s0 * report.scale_applied, rel=1e-12)
    assert calibrate(calc, frames[5:]).sets[0].scale == pytest.approx(1.0, rel=1e-9)  # now calibrated
    report.plot(tmp_path / "cal.png")
    assert (tmp_path / "cal.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="no energy_uncertainty"):
        calibrate(ase_mlcalc.LennardJones(epsilon=0.01, sigma=3.4), frames)


def test_cli_learn_and_calibrate(tmp_path, monkeypatch, capsys):
    import ase.io

    from ase_mlcalc.cli import main

    monkeypatch.chdir(tmp_path)
    ase.io.write("cu.extxyz", cu())
    assert main(["learn", "cu.extxyz", "--reference", "emt", "-T", "600", "--timestep", "2", "--steps", "40",
                 "-o", "cu.pt", "--no-progress", "--fit-options", '{"n_sparse": 10}']) == 0
    out = capsys.readouterr().out
    assert "reference calls" in out and (tmp_path / "cu_otf.png").stat().st_size > 1000
    n = len(ase.io.read("cu_otf.extxyz", ":"))
    assert main(["learn", "cu.extxyz", "--reference", "emt", "--resume", "-T", "600", "--timestep", "2",
                 "--steps", "20", "-o", "cu2.pt", "--no-progress", "--plot", ""]) == 0
    assert "resumed from cu_otf.extxyz" in capsys.readouterr().out
    assert len(ase.io.read("cu_otf.extxyz", ":")) >= n
    ase.io.write("held_out.extxyz", emt_md_frames(4, seed=9))
    assert main(["calibrate", "cu2.pt", "held_out.extxyz", "--set-scale", "cal.pt"]) == 0
    assert "Spearman" in capsys.readouterr().out
    assert float(ase_mlcalc.load("cal.pt").model.uncertainty_scale) != 1.0
    assert main(["learn", "cu.extxyz", "--reference", "nosuchcode", "-o", "x.pt"]) == 2
    assert "nosuchcode" in capsys.readouterr().err


def test_min_steps_between_calls(tmp_path):
    otf = OnTheFly("gap", EMT(), initial_frames=[cu()], threshold=1e-12, min_steps_between_calls=5, seed=0,
                   data=tmp_path / "m.extxyz", progress=False, fit_options=dict(n_sparse=10))
    result = otf.run(cu(), "langevin", temperature_K=600, timestep_fs=2, steps=20)
    assert [c.step for c in result.calls] == [1, 6, 11, 16]
