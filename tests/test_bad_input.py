"""Bad input gets an exception that names the problem (and the CLI one line and exit status 2); nothing silent."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

import ase_mlcalc
from ase_mlcalc import (InvalidStructureError, LennardJones, ModelFileError, TrainingDataError,
                        UnknownElementError)
from ase_mlcalc.cli import main
from ase_mlcalc.descriptors import ACSF, SOAP
from ase_mlcalc.testing import labelled_frames
from ase_mlcalc.training import fit_bpnn, fit_gap, fit_lennard_jones

SMALL_GAP = dict(cutoff=4.5, n_max=3, l_max=3, n_sparse=10, progress=False)
SMALL_BPNN = dict(cutoff=4.5, n_radial=3, n_angular_eta=0, hidden=(4,), epochs=1, lbfgs_steps=0, progress=False)
SMALL_LJ = dict(cutoff=4.5, max_iter=2)
FITS = {"lj": (fit_lennard_jones, SMALL_LJ), "gap": (fit_gap, SMALL_GAP), "bpnn": (fit_bpnn, SMALL_BPNN)}


def frames(n=3, seed=0):
    return labelled_frames(n, seed=seed, repeat=(1, 1, 1))


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "lj.pt"
    LennardJones(epsilon=0.0104, sigma=3.4, rc=6.0).save(path)
    return path


# --------------------------------------------------------------------------- model files

def test_text_file_is_not_a_model_file(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("epsilon = 0.0104\nsigma = 3.4\n")
    with pytest.raises(ModelFileError, match="not a readable ase_mlcalc model file"):
        ase_mlcalc.load(path)


def test_corrupted_tensor_bytes_fail_the_checksum(saved_model, tmp_path):
    payload = torch.load(saved_model, weights_only=True)
    payload["state_dict"]["log_epsilon"].view(-1)[0] += 100.0  # flipped bits in one tensor
    torch.save(payload, tmp_path / "corrupt.pt")
    with pytest.raises(ModelFileError, match="checksum"):
        ase_mlcalc.load(tmp_path / "corrupt.pt")


def test_foreign_units_and_missing_file(saved_model, tmp_path):
    from ase_mlcalc.io import _checksum

    payload = torch.load(saved_model, weights_only=True)
    payload["units"] = {"energy": "Hartree", "length": "Bohr"}
    payload["sha256"] = _checksum(payload)
    torch.save(payload, tmp_path / "hartree.pt")
    with pytest.raises(ModelFileError, match="Hartree"):
        ase_mlcalc.load(tmp_path / "hartree.pt")
    with pytest.raises(FileNotFoundError, match="no model file"):
        ase_mlcalc.load(tmp_path / "missing.pt")


# --------------------------------------------------------------------------- training data and settings

@pytest.mark.parametrize("family", list(FITS))
def test_empty_training_set(family):
    fit, kw = FITS[family]
    with pytest.raises(TrainingDataError, match="no training frames"):
        fit([], **kw)


@pytest.mark.parametrize("family", list(FITS))
def test_overlapping_atoms_in_a_training_frame(family):
    fit, kw = FITS[family]
    data = frames(3)
    data[1].positions[2] = data[1].positions[0]  # two atoms on one site
    with pytest.raises(InvalidStructureError, match="frame 1.*overlapping"):
        fit(data, **kw)


@pytest.mark.parametrize("settings, name", [
    (dict(n_sparse=0), "n_sparse"), (dict(n_sparse=-5), "n_sparse"),
    (dict(default_sigma=(0.0, 0.05)), "default_sigma"), (dict(default_sigma=(0.01, -0.05)), "default_sigma"),
    (dict(zeta=0), "zeta"), (dict(delta=-1.0), "delta"), (dict(n_max=0), "n_max"),
    (dict(cutoff=-1.0), "cutoff"), (dict(sparse_method="kmeans"), "sparse_method")])
def test_gap_settings_out_of_range_are_named_before_any_work(settings, name):
    with pytest.raises(ValueError, match=name):
        fit_gap(None, **{**SMALL_GAP, **settings})  # the settings fail before the (missing) frames are read


@pytest.mark.parametrize("family, settings, name", [
    ("bpnn", dict(epochs=-1), "epochs"), ("bpnn", dict(lr=0.0), "lr"), ("bpnn", dict(batch_size=0), "batch_size"),
    ("bpnn", dict(validation_fraction=1.5), "validation_fraction"), ("bpnn", dict(hidden=(0,)), "hidden"),
    ("bpnn", dict(activation="relu6"), "activation"), ("lj", dict(force_sigma=0), "force_sigma"),
    ("lj", dict(cutoff=0), "cutoff")])
def test_other_settings_out_of_range_are_named(family, settings, name):
    fit, kw = FITS[family]
    with pytest.raises(ValueError, match=name):
        fit(None, **{**kw, **settings})


def test_frames_without_forces_or_energy_are_named():
    data = frames(3)
    data[2].calc = SinglePointCalculator(data[2], energy=-1.0)
    with pytest.raises(TrainingDataError, match="frame 2.*forces"):
        fit_gap(data, **SMALL_GAP)
    data[2].calc = None
    with pytest.raises(TrainingDataError, match="frame 2.*energy"):
        fit_bpnn(data, **SMALL_BPNN)


# --------------------------------------------------------------------------- descriptors and calculators

@pytest.mark.parametrize("descriptor", [SOAP(["Ar"], cutoff=4.0, n_max=3, l_max=3),
                                        ACSF.default(["Ar"], cutoff=4.0, n_radial=3, n_angular_eta=1)])
def test_descriptors_refuse_overlapping_atoms(descriptor):
    a = bulk("Ar", "fcc", a=5.3, cubic=True)
    a.positions[1] = a.positions[0] + 1e-4
    with pytest.raises(InvalidStructureError, match="overlapping"):
        descriptor.compute(a)
    a.positions[1, 0] = np.nan
    with pytest.raises(InvalidStructureError, match="NaN"):
        descriptor.compute(a)


def test_calculator_errors(saved_model):
    calc = ase_mlcalc.load(saved_model)
    a = bulk("Ar", "fcc", a=5.3) * 2
    a.calc = LennardJones(species=["Ar"], epsilon=0.0104, sigma=3.4)
    b = a.copy()
    b.numbers[0] = 36
    b.calc = a.calc
    with pytest.raises(UnknownElementError, match="Kr"):
        b.get_potential_energy()
    b = a.copy()
    b.set_cell(np.zeros((3, 3)))
    b.calc = calc
    with pytest.raises(InvalidStructureError, match="zero-volume"):
        b.get_potential_energy()
    with pytest.raises(TypeError, match="skim"):
        LennardJones(epsilon=0.0104, sigma=3.4, skim=0.3)
    with pytest.raises(TypeError, match="uncertainty"):
        ase_mlcalc.load(saved_model, uncertainty=True)  # an LJ has no such option
    with pytest.raises(ValueError, match="skin"):
        calc.set(skin=-1)
    assert calc.parameters["skin"] == 0.5  # a refused change leaves the calculator as it was


def test_empty_atoms_give_zero_energy():
    calc = LennardJones(species=["Ar", "Kr"], epsilon=0.0104, sigma=3.4)
    atoms = Atoms()
    atoms.calc = calc
    assert atoms.get_potential_energy() == 0.0
    assert atoms.get_forces().shape == (0, 3)


# --------------------------------------------------------------------------- command line

def _cli_error(capsys, argv):
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys, saved_model):
    import ase.io

    train = tmp_path / "train.extxyz"
    ase.io.write(train, frames(3))
    assert "n_sparse" in _cli_error(capsys, ["train", "gap", "--train", str(train), "-o", str(tmp_path / "g.pt"),
                                              "--n-sparse", "0", "--no-progress"])
    assert "default_sigma" in _cli_error(capsys, ["train", "gap", "--train", str(train), "-o",
                                                   str(tmp_path / "g.pt"), "--default-sigma", "0", "0.1"])
    junk = tmp_path / "junk.pt"
    junk.write_text("not a model")
    assert "not a readable ase_mlcalc model file" in _cli_error(capsys, ["eval", str(junk), str(train)])
    assert "no structure file" in _cli_error(capsys, ["eval", str(saved_model), str(tmp_path / "none.extxyz")])
    empty = tmp_path / "empty.extxyz"
    empty.write_text("")
    assert "no training frames" in _cli_error(capsys, ["train", "lj", "--train", str(empty), "-o",
                                                        str(tmp_path / "lj.pt")])
    overlap = frames(2)
    overlap[1].positions[1] = overlap[1].positions[0]
    ase.io.write(tmp_path / "overlap.extxyz", overlap)
    assert "frame 1" in _cli_error(capsys, ["train", "bpnn", "--train", str(tmp_path / "overlap.extxyz"), "-o",
                                             str(tmp_path / "nn.pt"), "--epochs", "1", "--no-progress"])
