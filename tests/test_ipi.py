"""i-PI path-integral MD with ase_mlcalc clients (examples/ipi/pimd_mo.py): bcc Mo, 4 beads served by two client
processes in parallel through one unix socket; i-PI's conserved quantity must stay put."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

if "ipi" in os.environ.get("ASE_MLCALC_REQUIRE", "").split(","):  # CI sets ASE_MLCALC_REQUIRE=lammps,ipi
    import ipi  # noqa: F401  -- an ImportError here fails the run instead of skipping
else:
    pytest.importorskip("ipi", reason="i-PI is not installed (pip install ipi)")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "ipi" / "pimd_mo.py"
MO_TRAIN = Path(__file__).resolve().parent.parent / "examples" / "data" / "Mo_train.extxyz.xz"


def test_pimd_mo_two_clients_conserves_energy(tmp_path):
    import ase.io

    from ase_mlcalc.training import fit_gap

    model = tmp_path / "gap.pt"
    fit_gap(ase.io.read(MO_TRAIN, ":8"), n_sparse=40, n_max=4, l_max=4, progress=False).save(model)
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    res = subprocess.run([sys.executable, str(EXAMPLE), "--model", str(model), "--workdir", str(tmp_path / "run"),
                          "--beads", "4", "--clients", "2", "--steps", "40", "--json", str(tmp_path / "s.json")],
                         capture_output=True, text=True, env=env, timeout=300, check=False)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["steps"] == 40 and s["beads"] == 4 and s["natoms"] == 16
    # both clients computed beads (i-PI hands each bead to a free client): at least 4 beads x 40 steps
    assert len(s["calls"]) == 2 and min(s["calls"]) > 0 and sum(s["calls"]) >= 4 * 40
    # the ring-polymer Hamiltonian (i-PI's conserved quantity) drifts far less than the potential energy moves
    assert s["potential_fluctuation"] > 5e-3  # eV/atom: the system did move
    assert s["drift"] < 5e-4, f"conserved quantity drifted by {s['drift'] * 1e3:.3f} meV/atom"
    assert s["drift"] < 0.05 * s["potential_fluctuation"]
    assert 50 < s["temperature"] < 600
