"""Workflows (MD, relax, EOS, elastic constants, phonons) and their CLI subcommands.

Reference values come from outside the code under test: Lennard-Jones lattice
sums written out here with numpy (energy and Born elastic constants of a
Bravais lattice), the infinite-range LJ fcc result (Kittel, Introduction to
Solid State Physics, ch. 3: lattice sums A12 = 12.13188, A6 = 14.45392),
exact relations (acoustic sum rule, Cauchy relation of pair potentials and
its pressure correction, sound velocities from C_ij) and finite differences
of the energy.
"""

import itertools
import math

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from test_sparse_gp import SOAP_ARGS, lj_frames

import ase_mlcalc
from ase_mlcalc import LennardJones
from ase_mlcalc import workflows as wf
from ase_mlcalc.cli import main
from ase_mlcalc.training import fit_gap

torch.set_num_threads(1)

EPS, SIG, RC = 0.0104, 3.4, 8.7  # argon-like LJ, eV and Å; rc ~2.56 sigma, between neighbour shells 5 and 6


def lj():
    return LennardJones(epsilon=EPS, sigma=SIG, rc=RC)


def fcc_neighbours(a, rmax):
    """Lattice vectors (n, 3) of fcc with cubic constant a, 0 < |R| < rmax."""
    A = 0.5 * a * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]])
    n = int(np.ceil(rmax / (0.5 * a))) + 1
    R = np.array(list(itertools.product(range(-n, n + 1), repeat=3))) @ A
    r = np.linalg.norm(R, axis=1)
    return R[(r > 0) & (r < rmax)]


def lj_phi(r, d=0):
    """LJ pair energy (d=0, shifted by phi(RC)), first (d=1) or second (d=2) derivative."""
    x6 = (SIG / r) ** 6
    if d == 0:
        c6 = (SIG / RC) ** 6
        return 4 * EPS * (x6 * x6 - x6) - 4 * EPS * (c6 * c6 - c6)
    if d == 1:
        return 4 * EPS * (-12 * x6 * x6 + 6 * x6) / r
    return 4 * EPS * (156 * x6 * x6 - 42 * x6) / r ** 2


def lattice_sum_a0():
    """Minimum of the truncated, shifted LJ fcc lattice energy per atom (Å)."""
    from scipy.optimize import minimize_scalar

    e = lambda a: 0.5 * lj_phi(np.linalg.norm(fcc_neighbours(a, RC), axis=1)).sum()  # noqa: E731
    return minimize_scalar(e, bounds=(5.15, 5.35), method="bounded", options={"xatol": 1e-9}).x


def born_elastic_constants(a):
    """C11, C12, C44 (GPa) of the LJ fcc lattice from the Born lattice sum (zero stress, Bravais lattice).

    C_ijkl = 1/(2V) sum_R (phi'' - phi'/r) R_i R_j R_k R_l / r^2, V = a^3/4 per atom.
    """
    R = fcc_neighbours(a, RC)
    r = np.linalg.norm(R, axis=1)
    w = (lj_phi(r, 2) - lj_phi(r, 1) / r) / r ** 2 / (2 * a ** 3 / 4)
    c = lambda i, j, k, l: np.sum(w * R[:, i] * R[:, j] * R[:, k] * R[:, l]) / units.GPa  # noqa: E731, E741
    return c(0, 0, 0, 0), c(0, 0, 1, 1), c(1, 2, 1, 2)


@pytest.fixture(scope="module")
def relaxed_ar():
    atoms = bulk("Ar", "fcc", a=5.4)
    res = wf.relax(atoms, lj(), fmax=1e-6)
    assert res.converged
    return atoms


@pytest.fixture(scope="module")
def small_gap():
    """A small GAP fitted to LJ-labelled argon frames (tests/test_sparse_gp.py's generator)."""
    return fit_gap(lj_frames(8, seed=1), n_sparse=60, zeta=4, delta=0.05, default_sigma=(0.0005, 0.002, 0.01),
                   progress=False, **SOAP_ARGS)


def test_lj_shells_are_clear_of_the_cutoff():
    # The analytic checks below assume no neighbour shell sits at the cutoff within the strains used.
    a0 = lattice_sum_a0()
    shells = np.unique(np.round(np.linalg.norm(fcc_neighbours(a0, 2 * RC), axis=1), 6))
    assert np.min(np.abs(shells / RC - 1)) > 0.03


# --------------------------------------------------------------------------- MD

class _AntiFriction(Calculator):
    """A non-conservative calculator: LJ forces plus c * momentum (negative control for the drift check)."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, inner, rate_per_fs):
        super().__init__()
        self.inner, self.c = inner, rate_per_fs / units.fs

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        a = self.atoms.copy()
        a.calc = self.inner
        self.results = {"energy": a.get_potential_energy(), "forces": a.get_forces() + self.c * a.get_momenta()}


# Stated bound: |drift| of the NVE total energy below 0.03 meV/atom/ps, i.e. less than 1% of
# kT (3.4 meV at 40 K) per picosecond, at a 5 fs step for argon.
DRIFT_BOUND = 3e-5  # eV/atom/ps


def _nve_drift(calc, atoms, steps=200, seed=3):
    res = wf.run_md(atoms, calc, "nve", temperature_K=40, timestep_fs=5.0, steps=steps, progress=False, seed=seed)
    assert res.time_fs[-1] == pytest.approx(5.0 * steps)
    assert res.temperature.mean() > 5  # the atoms really move
    return res.energy_drift()


def test_nve_energy_drift_lj_and_negative_control():
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat((2, 2, 2))
    assert abs(_nve_drift(lj(), atoms)) < DRIFT_BOUND
    # Forces with a small non-conservative part (heating at a rate of 2e-4/fs times twice the
    # kinetic energy, ~1 meV/atom/ps here): the same check must see the energy go.
    broken = bulk("Ar", "fcc", a=5.26, cubic=True).repeat((2, 2, 2))
    assert _nve_drift(_AntiFriction(lj(), 2e-4), broken) > 10 * DRIFT_BOUND


def test_nve_energy_drift_gap(small_gap):
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True) * (2, 2, 1)
    drift = _nve_drift(small_gap, atoms, steps=150)
    assert abs(drift) < DRIFT_BOUND, drift


def test_langevin_reaches_target_and_files_are_written(tmp_path):
    import ase.io

    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat((3, 3, 3))  # 108 atoms, start at rest (0 K)
    traj, log = tmp_path / "md.traj", tmp_path / "md.log"
    res = wf.run_md(atoms, lj(), "langevin", temperature_K=50, timestep_fs=5.0, steps=400, friction_per_fs=0.02,
                    interval=10, trajectory=traj, logfile=log, progress=False, seed=1, initialize_velocities=False)
    assert res.temperature[0] == 0
    # Second half (1 ps) mean: the thermostat's target within the canonical fluctuation
    # (std of the instantaneous T is sqrt(2/(3N)) T ~ 8%; averaged over ~20 samples).
    assert np.mean(res.temperature[len(res.temperature) // 2:]) == pytest.approx(50, rel=0.1)
    assert len(ase.io.read(traj, ":")) == 41
    assert len(log.read_text().splitlines()) == 42  # header + 41 lines
    wf.plot_md(res, tmp_path / "md.png")
    assert (tmp_path / "md.png").stat().st_size > 1000


def test_md_rejects_bad_input():
    atoms = bulk("Ar", "fcc", a=5.26)
    with pytest.raises(ValueError, match="ensemble"):
        wf.run_md(atoms, lj(), "npt")
    with pytest.raises(ValueError, match="timestep"):
        wf.run_md(atoms, lj(), timestep_fs=0)
    with pytest.raises(ValueError, match="no calculator"):
        wf.run_md(bulk("Ar", "fcc", a=5.26), None, steps=1)


# --------------------------------------------------------------------------- relax and EOS

def test_relaxed_lattice_constant_matches_eos_and_lattice_sum(relaxed_ar, tmp_path):
    a_relax = relaxed_ar.cell.get_bravais_lattice().a
    a_sum = lattice_sum_a0()
    assert a_relax == pytest.approx(a_sum, rel=2e-5)
    assert np.abs(relaxed_ar.get_stress()).max() / units.GPa < 1e-4
    eos = wf.equation_of_state(relaxed_ar, lj(), max_strain=0.015, n_points=9)
    assert eos.lattice_constant == pytest.approx(a_sum, rel=1e-4)
    assert eos.v0 == pytest.approx(a_sum ** 3 / 4, rel=3e-4)
    # Bulk modulus of the EOS against the Born elastic constants: B = (C11 + 2 C12) / 3.
    c11, c12, _ = born_elastic_constants(a_sum)
    assert eos.bulk_modulus == pytest.approx((c11 + 2 * c12) / 3, rel=0.01)
    # Infinite-range LJ fcc: nearest-neighbour distance sigma (2 A12/A6)^(1/6); the
    # truncation at 2.56 sigma drops part of the attractive tail (a few tenths of a percent).
    a_inf = math.sqrt(2) * SIG * (2 * 12.13188 / 14.45392) ** (1 / 6)
    assert a_relax == pytest.approx(a_inf, rel=0.01)
    wf.plot_eos(eos, tmp_path / "eos.png")
    assert (tmp_path / "eos.png").stat().st_size > 1000


def test_relax_positions_only_and_eos_guards():
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True)
    atoms.rattle(0.05, seed=2)
    cell = atoms.cell.array.copy()
    res = wf.relax(atoms, lj(), fmax=1e-4, cell=False)
    assert res.converged and res.max_force < 1e-4
    np.testing.assert_array_equal(atoms.cell.array, cell)
    with pytest.raises(ValueError, match="sampled volumes"):
        wf.equation_of_state(bulk("Ar", "fcc", a=4.9), lj(), max_strain=0.02)
    with pytest.raises(ValueError, match="periodic"):
        wf.equation_of_state(Atoms("Ar2", positions=[[0, 0, 0], [0, 0, 3.8]]), lj())


# --------------------------------------------------------------------------- elastic constants

def test_lj_elastic_constants_match_born_lattice_sums_and_cauchy(relaxed_ar):
    res = wf.elastic_constants(relaxed_ar, lj(), strain=1e-3)
    c11, c12, c44 = born_elastic_constants(lattice_sum_a0())
    assert res.cubic["C11"] == pytest.approx(c11, rel=2e-3)
    assert res.cubic["C12"] == pytest.approx(c12, rel=2e-3)
    assert res.cubic["C44"] == pytest.approx(c44, rel=2e-3)
    # Cauchy relation of central pair potentials at zero stress (every atom an inversion centre).
    assert res.cubic["C12"] == pytest.approx(res.cubic["C44"], rel=1e-3)
    assert res.asymmetry < 1e-3 * c11 and res.stable
    assert res.bulk_modulus == pytest.approx((c11 + 2 * c12) / 3, rel=2e-3)


def test_stress_strain_coefficients_under_pressure_break_cauchy_by_2p(relaxed_ar):
    # Under hydrostatic pressure P the stress-strain coefficients of a pair potential obey
    # B12 - B44 = 2P (Wallace, Thermodynamics of Crystals (1972), B_ijkl = C_ijkl + stress terms;
    # C_ijkl of a pair potential has full Cauchy symmetry).
    atoms = relaxed_ar.copy()
    atoms.set_cell(atoms.cell * 0.98, scale_atoms=True)
    atoms.calc = lj()
    P = -np.mean(atoms.get_stress()[:3]) / units.GPa
    assert P > 0.1
    res = wf.elastic_constants(atoms, lj(), strain=1e-3)
    assert res.cubic["C12"] - res.cubic["C44"] == pytest.approx(2 * P, rel=2e-3)


def test_gap_elastic_constants_match_energy_second_derivatives(small_gap):
    atoms = bulk("Ar", "fcc", a=5.26)
    wf.relax(atoms, small_gap, fmax=1e-5)
    res = wf.elastic_constants(atoms, small_gap, strain=1e-3)
    # C_ij = (1/V) d^2E / d eps_i d eps_j at zero stress, by central differences of the energy.
    h = 5e-4
    cell0, V = atoms.cell.array.copy(), atoms.get_volume()

    def energy(eps):
        a = atoms.copy()
        a.calc = small_gap
        a.set_cell(cell0 @ (np.eye(3) + eps), scale_atoms=True)
        return a.get_potential_energy()

    for i, j in [(0, 0), (0, 1), (3, 3), (0, 3)]:
        ei, ej = wf.strain_matrix(i, h), wf.strain_matrix(j, h)
        d2 = (energy(ei + ej) - energy(ei - ej) - energy(ej - ei) + energy(-ei - ej)) / (4 * h * h)
        assert res.C[i, j] == pytest.approx(d2 / V / units.GPa, abs=1e-3 * res.C[0, 0]), (i, j)
    assert res.cubic is not None and res.stable


# --------------------------------------------------------------------------- phonons

def test_acoustic_sum_rule_at_gamma_without_imposing_it(relaxed_ar, small_gap, tmp_path):
    for calc in (lj(), small_gap):
        res = wf.phonons(relaxed_ar, calc, supercell=(4, 4, 4), acoustic_sum_rule=False, npoints=60,
                         dos_kpts=(6, 6, 6))
        assert np.abs(res.gamma).max() < 2e-3 * res.bands.max(), res.gamma
        assert res.bands.shape == (60, 3)
    wf.plot_phonons(res, tmp_path / "ph.png")
    assert (tmp_path / "ph.png").stat().st_size > 1000


def test_acoustic_branches_give_the_sound_velocities_of_the_elastic_constants(relaxed_ar):
    # Long-wavelength limit along Gamma-X ([100] for ASE's fcc cell): v_L = sqrt(C11/rho),
    # v_T = sqrt(C44/rho). Supercell 6x6x6 spans more than twice the LJ cutoff.
    el = wf.elastic_constants(relaxed_ar, lj())
    ph = wf.phonons(relaxed_ar, lj(), supercell=(6, 6, 6), path="GX", npoints=400, dos_kpts=(4, 4, 4))
    rho = relaxed_ar.get_masses().sum() * units._amu / (relaxed_ar.get_volume() * 1e-30)  # kg/m^3
    k = 2
    # x is the wavevector length (2 pi / wavelength, 1/Å), bands the ordinary frequency (THz): v = 2 pi f / k.
    slope = 2 * np.pi * ph.bands[k] * 1e12 / (ph.x[k] * 1e10)  # m/s
    assert slope[2] == pytest.approx(math.sqrt(el.cubic["C11"] * 1e9 / rho), rel=5e-3)
    assert slope[0] == pytest.approx(math.sqrt(el.cubic["C44"] * 1e9 / rho), rel=5e-3)
    assert ph.dos.sum() * (ph.dos_frequencies[1] - ph.dos_frequencies[0]) == pytest.approx(3, rel=1e-3)


# --------------------------------------------------------------------------- CLI

@pytest.fixture
def cli_files(tmp_path, monkeypatch):
    import ase.io

    monkeypatch.chdir(tmp_path)
    LennardJones(epsilon=EPS, sigma=SIG, rc=6.0, smooth=True).save(tmp_path / "lj.pt")
    ase.io.write(tmp_path / "ar.extxyz", bulk("Ar", "fcc", a=5.3))
    return tmp_path


def test_cli_md(cli_files, capsys):
    assert main(["md", "ar.extxyz", "lj.pt", "--repeat", "2", "2", "2", "--steps", "20", "--timestep", "5",
                 "-T", "30", "--no-progress", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert "NVE MD: 8 atoms" in out and "drift" in out
    assert (cli_files / "ar_md.png").stat().st_size > 1000 and (cli_files / "ar_md.traj").exists()


def _printed(pattern, out):
    import re

    m = re.search(pattern + r" = ([-+0-9.]+)", out)
    assert m, (pattern, out)
    return float(m.group(1))


def test_cli_relax(cli_files, capsys):
    import ase.io

    assert main(["relax", "ar.extxyz", "lj.pt", "--fmax", "1e-4", "-q"]) == 0
    out = capsys.readouterr().out
    assert "relaxation converged" in out
    relaxed = ase.io.read(cli_files / "ar_relaxed.extxyz")
    a = relaxed.cell.get_bravais_lattice().a
    assert abs(a - 5.3) > 0.01  # it moved
    assert _printed("lattice parameter of this cell: a", out) == pytest.approx(a, abs=1e-4)
    assert np.abs(relaxed.get_forces()).max() < 1e-4  # the file keeps the calculator's results
    assert np.abs(relaxed.get_stress()).max() < 1e-4


def test_cli_eos(cli_files, capsys):
    assert main(["eos", "ar.extxyz", "lj.pt", "--points", "7", "--plot", "eos.png"]) == 0
    out = capsys.readouterr().out
    # The EOS minimum is the relaxed lattice parameter.
    atoms = bulk("Ar", "fcc", a=5.3)
    wf.relax(atoms, ase_mlcalc.load(cli_files / "lj.pt"), fmax=1e-6)
    assert _printed("a0", out) == pytest.approx(atoms.cell.get_bravais_lattice().a, rel=2e-4)
    assert _printed("B", out) > 0
    assert (cli_files / "eos.png").stat().st_size > 1000


def test_cli_elastic(cli_files, capsys):
    assert main(["elastic", "ar.extxyz", "lj.pt"]) == 0
    out = capsys.readouterr().out
    assert "relaxed first" in out and "C11 = " in out and "mechanically stable" in out


def test_cli_phonons(cli_files, capsys):
    assert main(["phonons", "ar.extxyz", "lj.pt", "--supercell", "3", "3", "3", "--npoints", "40",
                 "--dos-kpts", "4", "4", "4", "--unit", "meV"]) == 0
    out = capsys.readouterr().out
    assert "Gamma (meV)" in out
    assert (cli_files / "ar_phonons.png").stat().st_size > 1000


def test_cli_reports_errors(cli_files, capsys):
    import ase.io

    ase.io.write(cli_files / "molecule.xyz", Atoms("Ar2", positions=[[0, 0, 0], [0, 0, 3.8]]))
    assert main(["eos", "molecule.xyz", "lj.pt"]) == 2
    assert "periodic" in capsys.readouterr().err
    assert main(["relax", "ar.extxyz", "missing.pt"]) == 2
    assert "no model file" in capsys.readouterr().err
