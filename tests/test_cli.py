import subprocess
import sys

import ase.io
import numpy as np
import pytest

import ase_mlcalc
from ase_mlcalc.cli import main


def test_help_runs_as_console_script():
    out = subprocess.run([sys.executable, "-m", "ase_mlcalc.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "train" in out.stdout and "eval" in out.stdout


def test_train_lj_then_eval(tmp_path, mo_frames, capsys):
    train, test = tmp_path / "train.extxyz", tmp_path / "test.extxyz"
    ase.io.write(train, mo_frames[:8])
    ase.io.write(test, mo_frames[8:12])
    model = tmp_path / "lj.pt"
    assert main(["train", "lj", "--train", str(train), "--test", str(test), "-o", str(model),
                 "--cutoff", "4.5", "--max-iter", "30"]) == 0
    out = capsys.readouterr().out
    assert "E RMSE" in out and "test" in out
    assert (tmp_path / "lj.png").stat().st_size > 1000
    calc = ase_mlcalc.load(model)
    atoms = mo_frames[9].copy()
    atoms.calc = calc
    assert np.isfinite(atoms.get_potential_energy())
    assert main(["eval", str(model), str(test)]) == 0
    out = capsys.readouterr().out
    assert str(test) in out and "meV/atom" in out


def test_errors_are_reported_not_raised(tmp_path, capsys):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"xx")
    assert main(["eval", str(junk), str(tmp_path / "none.extxyz")]) == 2
    assert "error" in capsys.readouterr().err


def test_ase_plugin_lists_the_calculator():
    plugins = pytest.importorskip("ase._4.plugins")
    names = {p.name for p in plugins.plugins.calculators}
    assert "ase_mlcalc.LennardJones" in names
    plugin = next(p for p in plugins.plugins.calculators if p.name == "ase_mlcalc.LennardJones")
    assert plugin.implementation is ase_mlcalc.LennardJones
