import os
import subprocess
import sys

import ase.io
import pytest

import ase_mlcalc
from ase_mlcalc.cli import main


def test_console_script_and_module_run():
    """The installed ``ase-mlcalc`` script (beside this interpreter) and ``python -m ase_mlcalc.cli``."""
    script = os.path.join(os.path.dirname(sys.executable), "ase-mlcalc")
    assert os.path.exists(script), f"no console script at {script}: is the package installed?"
    out = subprocess.run([script, "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert all(cmd in out.stdout for cmd in ("train", "eval", "compare", "md", "phonons"))
    out = subprocess.run([sys.executable, "-m", "ase_mlcalc.cli", "eval", "missing.pt", "x.xyz"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.strip().startswith("ase-mlcalc: error:") and "Traceback" not in out.stderr


TINY = {"lj": ["--cutoff", "4.5", "--max-iter", "30"],
        "gap": ["--cutoff", "4.5", "--n-max", "3", "--l-max", "3", "--n-sparse", "20"],
        "bpnn": ["--cutoff", "4.5", "--n-radial", "4", "--n-angular-eta", "1", "--hidden", "8", "--epochs", "2",
                 "--lbfgs-steps", "0"]}


def _rmse_row(out, name):
    row = next(line for line in out.splitlines() if line.split() and line.split()[0] == name)
    return float(row.split()[2])


@pytest.mark.parametrize("family", list(TINY))
def test_train_then_eval_one_reporting_path(family, tmp_path, mo_frames, capsys):
    """Every family: the table, the model file, the parity plot next to it unless --plot ''; eval of the
    saved model prints the same test error as train did."""
    train, test = tmp_path / "train.extxyz", tmp_path / "test.extxyz"
    ase.io.write(train, mo_frames[:8])
    ase.io.write(test, mo_frames[8:12])
    model = tmp_path / f"{family}.pt"
    args = ["train", family, "--train", str(train), "--test", str(test), "-o", str(model), "--no-progress"]
    assert main(args + TINY[family] + ["--plot", ""]) == 0
    out = capsys.readouterr().out
    assert "E RMSE" in out and not list(tmp_path.glob("*.png"))
    assert main(args + TINY[family]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / f"{family}.png").stat().st_size > 1000
    assert main(["eval", str(model), str(test)]) == 0
    assert _rmse_row(capsys.readouterr().out, str(test)) == _rmse_row(out, "test")
    assert ase_mlcalc.load(model).model.metadata["fit"]["wall_time_s"] > 0


def test_compare_table(tmp_path, mo_frames, capsys):
    import json

    from ase_mlcalc.training import evaluate

    train, test = tmp_path / "train.extxyz", tmp_path / "test.extxyz"
    ase.io.write(train, mo_frames[:6])
    ase.io.write(test, mo_frames[6:9])
    opts = {"lj": {"cutoff": 4.5, "max_iter": 20}, "gap": {"cutoff": 4.5, "n_max": 3, "l_max": 3, "n_sparse": 20},
            "bpnn": {"cutoff": 4.5, "n_radial": 4, "n_angular_eta": 1, "hidden": [8], "epochs": 2,
                     "lbfgs_steps": 0}}
    (tmp_path / "opts.json").write_text(json.dumps(opts))
    assert main(["compare", "--train", str(train), "--test", str(test), "--options", str(tmp_path / "opts.json"),
                 "-o", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 1000
    for family in opts:
        row = next(line.split() for line in out.splitlines() if line.startswith(family + " "))
        metrics = evaluate(ase_mlcalc.load(tmp_path / "cmp" / f"{family}.pt"), ase.io.read(test, ":"))[0]
        assert float(row[1]) == pytest.approx(metrics["energy_rmse"], abs=1e-3)
        fit_s, peak_mb, us_per_atom = map(float, row[5:8])
        assert fit_s > 0 and 100 < peak_mb < 20000 and us_per_atom > 0


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
