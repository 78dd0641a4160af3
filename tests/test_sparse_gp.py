import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

import ase_mlcalc
from ase_mlcalc import LennardJones, ModelFileError, TrainingDataError, UnknownElementError
from ase_mlcalc import GAP
from ase_mlcalc.training import fit_gap

SOAP_ARGS = dict(cutoff=6.0, cutoff_transition_width=1.0, n_max=6, l_max=4, atom_sigma=0.7)
TRUE_LJ = dict(epsilon=0.0104, sigma=3.4, rc=6.0, smooth=True, ro=4.5)


def lj_frames(n, seed, rattle=0.15, scale=(0.97, 1.05)):
    """Ar structures labelled by a known smooth LJ potential."""
    rng = np.random.default_rng(seed)
    calc = LennardJones(**TRUE_LJ)
    frames = []
    for _ in range(n):
        atoms = bulk("Ar", "fcc", a=5.26 * rng.uniform(*scale), cubic=True) * (2, 2, 1)
        atoms.rattle(rattle, seed=int(rng.integers(1 << 30)))
        atoms.calc = calc
        e, f = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=e, forces=f)
        frames.append(atoms)
    return frames


@pytest.fixture(scope="module")
def trained():
    train = lj_frames(12, seed=1)
    calc = fit_gap(train, n_sparse=100, zeta=4, delta=0.05, default_sigma=(0.0005, 0.002, 0.01), progress=False,
                   **SOAP_ARGS)
    return calc, train


def test_fit_recovers_generating_potential(trained):
    calc, train = trained
    test = lj_frames(6, seed=99)
    de, df, fstd, espread = [], [], [], []
    for atoms in test:
        ref_e, ref_f = atoms.get_potential_energy(), atoms.get_forces()
        a = atoms.copy()
        a.calc = calc
        de.append((a.get_potential_energy() - ref_e) / len(a))
        df.append(a.get_forces() - ref_f)
        fstd.append(ref_f)
        espread.append(ref_e / len(a))
    e_rmse = np.sqrt(np.mean(np.square(de)))
    f_rmse = np.sqrt(np.mean(np.square(df)))
    # Stated tolerance: errors below 10% of the spread of the reference values.
    assert f_rmse < 0.1 * np.std(np.concatenate(fstd)), f_rmse
    assert e_rmse < 0.1 * np.std(espread) + 1e-4, e_rmse






def test_uncertainty_grows_away_from_training_data(trained):
    calc, train = trained
    near = lj_frames(1, seed=11)[0]
    far = bulk("Ar", "fcc", a=5.26 * 0.86, cubic=True) * (2, 2, 1)  # strongly compressed: unseen environments
    far.rattle(0.15, seed=3)
    out = {}
    for name, atoms in (("train", train[0]), ("near", near), ("far", far)):
        atoms = atoms.copy()
        atoms.calc = calc
        out[name] = (calc.get_property("energy_uncertainty", atoms), calc.get_property("energies_uncertainty", atoms))
        assert out[name][1].shape == (len(atoms),) and np.all(out[name][1] >= 0)
    assert out["far"][0] > 5 * out["near"][0]
    assert out["far"][1].mean() > 5 * out["train"][1].mean()


def test_save_load_bit_identical_and_errors(trained, tmp_path):
    calc, _ = trained
    path = tmp_path / "gap.pt"
    calc.save(path)
    loaded = ase_mlcalc.load(path)
    assert isinstance(loaded, GAP)
    atoms = lj_frames(1, seed=5)[0]
    a, b = atoms.copy(), atoms.copy()
    a.calc, b.calc = calc, loaded
    assert a.get_potential_energy() == b.get_potential_energy()
    assert np.array_equal(a.get_forces(), b.get_forces())
    assert np.array_equal(a.get_stress(), b.get_stress())
    assert a.calc.get_property("energy_uncertainty", a) == b.calc.get_property("energy_uncertainty", b)
    from ase_mlcalc.io import _checksum

    payload = torch.load(path, weights_only=True)
    payload["hyperparameters"]["terms"][0]["n_max"] = 5  # parameters no longer fit the stored arrays
    payload["sha256"] = _checksum(payload)  # (a consistent file: the checksum holds, the shapes do not)
    torch.save(payload, tmp_path / "mismatch.pt")
    with pytest.raises(ModelFileError, match="do not fit"):
        ase_mlcalc.load(tmp_path / "mismatch.pt")
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ModelFileError):
        ase_mlcalc.load(path)


def test_bad_training_data_and_unknown_species(trained):
    calc, _ = trained
    frames = lj_frames(3, seed=4)
    frames[2].calc = SinglePointCalculator(frames[2], energy=-1.0)
    with pytest.raises(TrainingDataError, match="frame 2.*forces"):
        fit_gap(frames, n_sparse=10, progress=False, **SOAP_ARGS)
    kr = lj_frames(1, seed=6)[0]
    kr.numbers[0] = 36
    with pytest.raises(TrainingDataError, match="Kr"):
        fit_gap([kr], species=["Ar"], n_sparse=5, progress=False, **SOAP_ARGS)
    kr.calc = calc
    with pytest.raises(UnknownElementError, match="Kr"):
        kr.get_potential_energy()


def test_cli_train_gap_and_eval(tmp_path, capsys):
    import ase.io

    from ase_mlcalc.cli import main

    ase.io.write(tmp_path / "train.extxyz", lj_frames(6, seed=21))
    ase.io.write(tmp_path / "test.extxyz", lj_frames(2, seed=22))
    model = tmp_path / "gap.pt"
    args = ["train", "gap", "--train", str(tmp_path / "train.extxyz"), "--test", str(tmp_path / "test.extxyz"),
            "-o", str(model), "--cutoff", "6.0", "--cutoff-transition-width", "1.0", "--n-max", "3", "--l-max", "2",
            "--atom-sigma", "0.7", "--n-sparse", "20", "--zeta", "2", "--delta", "0.05",
            "--default-sigma", "0.001", "0.005"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "sparse points" in out and "test" in out
    assert isinstance(ase_mlcalc.load(model), GAP)
    assert main(["eval", str(model), str(tmp_path / "test.extxyz")]) == 0
