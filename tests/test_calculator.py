"""The one calculator's conventions: ASE's parameters/set/todict, declared outputs and dtypes, arrays
that callers may keep, and model files of ase_mlcalc 0.1."""

import json
import os

import ase.io
import numpy as np
import pytest
import torch
from ase.build import bulk

import ase_mlcalc
from ase_mlcalc import GAP, LennardJones, MLCalculator
from ase_mlcalc.graph import build_graph
from ase_mlcalc.neighbors import NeighborListCache
from ase_mlcalc.testing import labelled_frames
from ase_mlcalc.training import fit_bpnn, fit_gap

DATA = os.path.join(os.path.dirname(__file__), "data")


def toy_frames(n=4, seed=0):
    return labelled_frames(n, seed=seed)


@pytest.fixture(scope="module")
def gap():
    return fit_gap(toy_frames(), cutoff=4.5, n_max=3, l_max=3, n_sparse=10, progress=False)


def argon():
    a = bulk("Ar", "fcc", a=5.3, cubic=True) * (2, 1, 1)
    a.rattle(0.1, seed=7)
    return a


def test_set_applies_and_resets_or_raises():
    calc = LennardJones(epsilon=0.0104, sigma=3.4, rc=6.0)
    a = argon()
    a.calc = calc
    e = a.get_potential_energy()
    assert calc.set(epsilon=0.0208) == {"epsilon": 0.0208}
    assert calc.results == {}  # reset
    e0 = float(calc.model.e0[0])
    assert a.get_potential_energy() == pytest.approx(2 * (e - e0) + e0, rel=1e-12)
    assert calc.set(epsilon=0.0208) == {}  # no change, nothing reset
    calc.set(skin=0.0, min_distance=0.5)
    assert calc.parameters["skin"] == 0.0 and calc._nl.skin == 0.0
    with pytest.raises(TypeError, match="skim"):
        calc.set(skim=0.3)
    with pytest.raises(ValueError, match="sigma"):
        calc.set(sigma=-1.0)
    assert calc.parameters["sigma"] == 3.4  # a refused change leaves the calculator as it was
    assert LennardJones(**calc.todict()).todict() == calc.todict()


def test_parameters_are_json_and_name_the_model_file(gap, tmp_path):
    assert "model" not in gap.parameters  # fitted in memory: no file yet
    gap.save(tmp_path / "g.pt")
    assert gap.parameters["model"] == str(tmp_path / "g.pt")
    json.dumps(gap.todict())
    again = MLCalculator(**gap.todict())
    assert type(again) is MLCalculator and again.model.family == "gap"
    a = argon()
    a.calc = gap
    b = a.copy()
    b.calc = again
    assert a.get_potential_energy() == b.get_potential_energy()
    # ASE's trajectory writer stores calc.todict(): it must accept it
    with ase.io.Trajectory(tmp_path / "t.traj", "w") as traj:
        traj.write(a)


def test_outputs_are_computed_only_when_asked(gap):
    a = argon()
    a.calc = gap
    a.get_forces()
    assert "energy_uncertainty" not in gap.results
    sigma = gap.get_property("energy_uncertainty", a)
    assert sigma > 0 and gap.results["energies_uncertainty"].shape == (len(a),)
    always = GAP(model=gap.model, uncertainty=True)
    b = a.copy()
    b.calc = always
    b.get_potential_energy()
    assert always.results["energy_uncertainty"] == sigma
    with pytest.raises(ValueError, match="uncertainty"):
        always.set(uncertainty="yes")
    lj = LennardJones(epsilon=0.0104, sigma=3.4)
    assert "energy_uncertainty" not in lj.implemented_properties
    with pytest.raises(ValueError, match="cannot compute energy_uncertainty"):
        lj.model.energies_and_outputs(build_graph(a, lj.model.cutoff, lj.model.species), ("energy_uncertainty",))


def test_dtypes_declared_by_the_model(gap):
    with pytest.raises(ValueError, match="float32"):
        GAP(model=gap.model, dtype=torch.float32)
    nn = fit_bpnn(toy_frames(), cutoff=4.5, n_radial=4, n_angular_eta=1, hidden=(8,), epochs=2, lbfgs_steps=0,
                  progress=False)
    a = argon()
    a.calc = nn
    e64, f64 = a.get_potential_energy(), a.get_forces()
    nn.set(dtype="float32")
    assert nn.parameters["dtype"] == "float32" and a.calc.results == {}
    e32, f32 = a.get_potential_energy(), a.get_forces()
    assert isinstance(e32, float) and f32.dtype == np.float64
    assert e32 == pytest.approx(e64, rel=1e-6) and e32 != e64
    np.testing.assert_allclose(f32, f64, atol=1e-5 * np.abs(f64).max())
    lj = LennardJones(epsilon=0.0104, sigma=3.4, dtype=torch.float32)
    b = argon()
    b.calc = lj
    ref = argon()
    ref.calc = LennardJones(epsilon=0.0104, sigma=3.4)
    np.testing.assert_allclose(b.get_forces(), ref.get_forces(), atol=1e-6)


def test_graph_arrays_are_the_callers():
    """Two graphs built from one Verlet cache do not share memory (the cache's buffers are reused)."""
    cache = NeighborListCache(5.0, skin=0.5)
    a = argon()
    g1 = build_graph(a, 5.0, [18], cache=cache)
    keep = (g1.centers.copy(), g1.edge_vectors.detach().clone())
    b = a.copy()
    b.positions += 0.05
    g2 = build_graph(b, 5.0, [18], cache=cache)
    assert cache.n_builds == 1  # the second call reused the list
    np.testing.assert_array_equal(g1.centers, keep[0])
    torch.testing.assert_close(g1.edge_vectors.detach(), keep[1], rtol=0, atol=0)
    assert not np.shares_memory(g1.edge_vectors.detach().numpy(), g2.edge_vectors.detach().numpy())
    i, j, D, _, _ = cache.get(b.positions, b.cell.array, b.pbc, b.numbers)
    i2, *_ = cache.get(b.positions, b.cell.array, b.pbc, b.numbers)
    assert not np.shares_memory(i, i2)


@pytest.mark.parametrize("family", ["lj", "gap", "bpnn"])
def test_files_of_ase_mlcalc_0_1_still_load(family):
    """Models written by ase_mlcalc 0.1 (format version 1) predict what 0.1 predicted (reference in the json)."""
    ref = json.load(open(os.path.join(DATA, "v1_reference.json")))[family]
    a = ase.io.read(os.path.join(DATA, "v1_probe.extxyz"))
    a.calc = ase_mlcalc.load(os.path.join(DATA, f"v1_{family}.pt"))
    assert a.get_potential_energy() == pytest.approx(ref["energy"], rel=1e-13, abs=1e-12)
    np.testing.assert_allclose(a.get_forces(), ref["forces"], rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(a.get_stress(), ref["stress"], rtol=1e-11, atol=1e-14)
    if family == "gap":
        assert a.calc.get_property("energy_uncertainty", a) == pytest.approx(ref["energy_uncertainty"], rel=1e-10)


def test_gap_without_variance_stores_no_factors(tmp_path):
    calc = fit_gap(toy_frames(), cutoff=4.5, n_max=3, l_max=3, n_sparse=10, progress=False, compute_variance=False)
    assert calc.model.kmm_factor.shape == (0, 0) and calc.model.outputs == {}
    assert "energy_uncertainty" not in calc.implemented_properties
    calc.save(tmp_path / "g.pt")
    loaded = ase_mlcalc.load(tmp_path / "g.pt")
    a = argon()
    a.calc, b = calc, a.copy()
    b.calc = loaded
    assert a.get_potential_energy() == b.get_potential_energy()


def test_import_sets_a_passive_openmp_wait_policy_unless_one_is_given():
    """Spinning OpenMP threads of torch and numba cost 13x on a loaded machine (ase_mlcalc/_openmp.py)."""
    import subprocess
    import sys

    code = "import os, ase_mlcalc, torch; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "PASSIVE"
    out = subprocess.run([sys.executable, "-c", code], env=dict(env, OMP_WAIT_POLICY="ACTIVE"),
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ACTIVE"
