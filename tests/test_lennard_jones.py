import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from ase.calculators.lj import LennardJones as AseLJ
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from ase.md.verlet import VelocityVerlet

import ase_mlcalc
from ase_mlcalc import InvalidStructureError, LennardJones, ModelFileError, UnknownElementError
from ase_mlcalc.training import fit_lennard_jones

EPS, SIG, RC = 0.0104, 3.4, 8.5


def argon(rep=(2, 2, 2), rattle=0.1, seed=1):
    atoms = bulk("Ar", "fcc", a=5.26) * rep
    atoms.rattle(rattle, seed=seed)
    return atoms


def results(calc, atoms):
    atoms = atoms.copy()
    atoms.calc = calc
    out = {"energy": atoms.get_potential_energy(), "energies": atoms.get_potential_energies(),
           "forces": atoms.get_forces()}
    if atoms.pbc.all():
        out["stress"] = atoms.get_stress()
        out["stresses"] = atoms.get_stresses()
    return out


def triclinic():
    atoms = argon((3, 2, 2))
    atoms.set_cell(atoms.cell.array + [[0, 0, 0], [1.2, 0, 0], [0.5, -0.7, 0]], scale_atoms=True)
    return atoms


def cluster():
    """Non-periodic Ar cluster."""
    atoms = argon((2, 2, 2))[:13]
    atoms.pbc = False
    return atoms


@pytest.mark.parametrize("smooth", [False, True])
@pytest.mark.parametrize("make", [argon, triclinic, cluster])
def test_equals_ase_lennard_jones(make, smooth):
    atoms = make()
    ours = results(LennardJones(epsilon=EPS, sigma=SIG, rc=RC, smooth=smooth), atoms)
    ref = results(AseLJ(epsilon=EPS, sigma=SIG, rc=RC, smooth=smooth), atoms)
    for key, val in ref.items():
        np.testing.assert_allclose(ours[key], val, rtol=0, atol=1e-10, err_msg=key)
        assert np.asarray(ours[key]).dtype == np.float64




def test_smooth_cutoff_forces_and_stress_match_finite_differences():
    """(the contract suite checks the shifted form; ASE's smooth cutoff has its own derivative)"""
    atoms = triclinic()
    atoms.calc = LennardJones(epsilon=EPS, sigma=SIG, rc=RC, smooth=True)
    np.testing.assert_allclose(atoms.get_forces(), calculate_numerical_forces(atoms, eps=1e-5), atol=1e-8)
    np.testing.assert_allclose(atoms.get_stress(), calculate_numerical_stress(atoms, eps=1e-6), atol=1e-9)






def test_two_species_lorentz_berthelot_and_pair_tables():
    rng = np.random.default_rng(3)
    atoms = Atoms("Ar3Kr3", positions=rng.uniform(0, 6, (6, 3)))
    while atoms.get_all_distances(mic=False)[np.triu_indices(6, 1)].min() < 2.8:
        atoms.positions = rng.uniform(0, 7, (6, 3))
    eps = {"Ar": 0.0104, "Kr": 0.014}
    sig = {"Ar": 3.4, "Kr": 3.65}
    pair_eps = {**eps, ("Ar", "Kr"): 0.02}

    def direct(e_ab):
        e = 0.0
        for a in range(6):
            for b in range(a + 1, 6):
                sa, sb = atoms.get_chemical_symbols()[a], atoms.get_chemical_symbols()[b]
                ee = e_ab if sa != sb else eps[sa]
                ss = 0.5 * (sig[sa] + sig[sb])
                r = atoms.get_distance(a, b)
                phi = lambda x: 4 * ee * ((ss / x) ** 12 - (ss / x) ** 6)  # noqa: E731
                if r < 9.0:
                    e += phi(r) - phi(9.0)
        return e

    calc = LennardJones(epsilon=eps, sigma=sig, species=["Ar", "Kr"], rc=9.0)
    assert results(calc, atoms)["energy"] == pytest.approx(direct(np.sqrt(0.0104 * 0.014)), rel=1e-12)
    calc = LennardJones(epsilon=pair_eps, sigma=sig, species=["Ar", "Kr"], rc=9.0)
    assert results(calc, atoms)["energy"] == pytest.approx(direct(0.02), rel=1e-12)


def test_nve_energy_conservation():
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True) * (3, 3, 3)
    thermalize_momenta(atoms, temperature_K=80, rng=np.random.default_rng(1))
    Stationary(atoms)
    atoms.calc = LennardJones(epsilon=EPS, sigma=SIG, rc=RC, smooth=True)
    dyn = VelocityVerlet(atoms, timestep=5 * units.fs)
    e = []
    dyn.attach(lambda: e.append(atoms.get_total_energy()), interval=10)
    dyn.run(200)  # 1 ps
    drift = abs(e[-1] - e[0]) / len(atoms)  # eV/atom over 1 ps
    fluct = np.ptp(e) / len(atoms)
    assert drift < 1e-5 and fluct < 1e-4, (drift, fluct)
    assert atoms.get_temperature() > 20  # it really moved


def test_bad_input_raises_clear_errors():
    calc = LennardJones(epsilon=EPS, sigma=SIG, rc=RC, species=["Ar"])
    kr = argon()
    kr.numbers[0] = 36
    kr.calc = calc
    with pytest.raises(UnknownElementError, match="Kr"):
        kr.get_potential_energy()
    nan = argon()
    nan.positions[2, 0] = np.nan
    nan.calc = calc
    with pytest.raises(InvalidStructureError, match="NaN"):
        nan.get_potential_energy()
    overlap = argon()
    overlap.positions[1] = overlap.positions[0]
    overlap.calc = calc
    with pytest.raises(InvalidStructureError, match="overlapping"):
        overlap.get_forces()
    flat = argon()
    flat.cell[2] = flat.cell[0] + flat.cell[1]
    flat.calc = calc
    with pytest.raises(InvalidStructureError, match="zero-volume"):
        flat.get_potential_energy()
    for bad in ({"rc": 0.0}, {"rc": -1.0}, {"epsilon": -0.1}, {"sigma": 0.0}):
        with pytest.raises(ValueError):
            LennardJones(**{"epsilon": EPS, "sigma": SIG, **bad})


def test_no_stress_for_non_periodic():
    from ase.calculators.calculator import PropertyNotImplementedError

    atoms = Atoms("Ar2", positions=[[0, 0, 0], [3.8, 0, 0]])
    atoms.calc = LennardJones(epsilon=EPS, sigma=SIG, rc=RC)
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_stress()


def test_save_load_bit_identical_and_corrupt_files(tmp_path):
    calc = LennardJones(epsilon={"Ar": EPS, "Kr": 0.014}, sigma={"Ar": SIG, "Kr": 3.65}, species=["Ar", "Kr"], rc=RC)
    atoms = argon()
    atoms.numbers[::3] = 36
    path = tmp_path / "lj.pt"
    calc.save(path)
    loaded = ase_mlcalc.load(path)
    assert isinstance(loaded, LennardJones)
    a, b = results(calc, atoms), results(loaded, atoms)
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ModelFileError):
        ase_mlcalc.load(tmp_path / "junk.pt")
    truncated = tmp_path / "cut.pt"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ModelFileError):
        ase_mlcalc.load(truncated)
    payload = torch.load(path, weights_only=True)
    payload["version"] = 99
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(ModelFileError, match="version"):
        ase_mlcalc.load(tmp_path / "future.pt")
    payload["version"], payload["family"] = 1, "nonsense"
    torch.save(payload, tmp_path / "fam.pt")
    with pytest.raises(ModelFileError, match="family"):
        ase_mlcalc.load(tmp_path / "fam.pt")
    with pytest.raises(FileNotFoundError):
        ase_mlcalc.load(tmp_path / "missing.pt")


def lj_frames(calc, n=6, e0=-3.0):
    """Frames labelled by a known LJ potential plus a per-atom reference energy."""
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = []
    for k in range(n):
        atoms = bulk("Ar", "fcc", a=5.1 + 0.1 * k) * (2, 2, 2)
        atoms.numbers[::2] = 36
        atoms.rattle(0.15, seed=k)
        atoms.calc = calc
        e, f = atoms.get_potential_energy() + e0 * len(atoms), atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=e, forces=f)
        frames.append(atoms)
    return frames


def test_fit_recovers_generating_potential():
    true = LennardJones(epsilon={"Ar": 0.0104, "Kr": 0.014, ("Ar", "Kr"): 0.0125},
                        sigma={"Ar": 3.4, "Kr": 3.65}, species=["Ar", "Kr"], rc=7.0)
    fitted = fit_lennard_jones(lj_frames(true), species=["Ar", "Kr"], cutoff=7.0)
    np.testing.assert_allclose(fitted.epsilon, true.epsilon, rtol=1e-4)
    np.testing.assert_allclose(fitted.sigma, true.sigma, rtol=1e-5)
    np.testing.assert_allclose(fitted.model.e0.numpy(), -3.0, atol=1e-5)


def test_fit_rejects_frames_without_forces():
    from ase.calculators.singlepoint import SinglePointCalculator

    from ase_mlcalc import TrainingDataError

    frames = lj_frames(LennardJones(epsilon=EPS, sigma=SIG, rc=RC), n=2)
    frames[1].calc = SinglePointCalculator(frames[1], energy=-1.0)
    with pytest.raises(TrainingDataError, match="frame 1.*forces"):
        fit_lennard_jones(frames)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_cuda_matches_cpu():
    atoms = triclinic()
    cpu = results(LennardJones(epsilon=EPS, sigma=SIG, rc=RC), atoms)
    gpu = results(LennardJones(epsilon=EPS, sigma=SIG, rc=RC, device="cuda"), atoms)
    for key in cpu:
        np.testing.assert_allclose(gpu[key], cpu[key], atol=1e-10)
