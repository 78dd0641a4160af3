"""What users do with a trained potential: MD, relaxation, equation of state, elastic constants, phonons.

Each function takes an :class:`ase.Atoms` and an ASE calculator, or the path
of a saved model file of any family (read with :func:`ase_mlcalc.load`), or
``None`` to use the calculator already attached to the atoms. The physics is
ASE's own machinery (:mod:`ase.md`, :mod:`ase.optimize` with
:class:`ase.filters.FrechetCellFilter`, :mod:`ase.eos`, :mod:`ase.phonons`);
this module adds defaults, checks, result objects in stated units and plots.

Units: energies eV, lengths Å, volumes Å³, time fs, temperature K, stress and
elastic moduli GPa (converted with :data:`ase.units.GPa`), phonon frequencies
in THz unless asked otherwise ("THz", "meV" or "cm-1").

:func:`run_md` and :func:`relax` change the given atoms in place (as ASE's
dynamics do); :func:`equation_of_state`, :func:`elastic_constants` and
:func:`phonons` work on copies and leave the input untouched.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from dataclasses import dataclass, field

import numpy as np
from ase import units

__all__ = [
    "run_md", "MDResult", "relax", "RelaxResult", "equation_of_state", "EOSResult", "elastic_constants",
    "ElasticResult", "strain_matrix", "phonons", "PhononResult", "plot_md", "plot_eos", "plot_phonons", "get_calculator",
    "FREQUENCY_UNITS",
]

#: Phonon frequency units: factor from eV (hbar omega) to the unit.
FREQUENCY_UNITS = {
    "THz": 1.0 / (units._hplanck / units._e) / 1e12,  # E / h in 10^12 Hz (not angular)
    "meV": 1000.0,
    "cm-1": 1.0 / (units._hplanck * units._c / units._e) / 100.0,
}


# --------------------------------------------------------------------------- helpers

def get_calculator(calc, atoms=None):
    """An ASE calculator from a calculator, a model file path (any family) or None (``atoms.calc``).

    Raises
    ------
    ValueError: no calculator given and none attached to ``atoms``.
    FileNotFoundError, ase_mlcalc.ModelFileError: unreadable model file.
    """
    if isinstance(calc, (str, os.PathLike)):
        from .io import load

        return load(calc)
    if calc is None:
        calc = getattr(atoms, "calc", None)
        if calc is None:
            raise ValueError("no calculator: pass an ASE calculator or a model file path, or attach one to atoms")
    return calc


def _check_atoms(atoms, need_pbc=False):
    from ase import Atoms

    if not isinstance(atoms, Atoms):
        raise TypeError(f"expected an ase.Atoms, got {type(atoms).__name__}")
    if len(atoms) == 0:
        raise ValueError("the structure has no atoms")
    if need_pbc and not atoms.pbc.all():
        raise ValueError("this workflow needs a crystal: a cell periodic in all three directions (atoms.pbc all True)")
    if need_pbc and abs(atoms.get_volume()) < 1e-8:
        raise ValueError("the periodic cell has zero volume")


def _interaction_cutoff(calc):
    """The model's cutoff radius (Å) if the calculator exposes one (ase_mlcalc models do), else None."""
    model = getattr(calc, "model", None)
    cutoff = getattr(model, "cutoff", None)
    return float(cutoff) if cutoff else None


def _cubic_lattice_constant(cell):
    """Conventional lattice constant (Å) of a cubic (sc/fcc/bcc) cell, else None.

    For a supercell this is the supercell's own lattice parameter (ASE's
    Bravais-lattice recognition sees the given cell only).
    """
    try:
        lat = cell.get_bravais_lattice()
    except (ValueError, RuntimeError):
        return None
    if lat.name in ("CUB", "FCC", "BCC"):
        return float(lat.a)
    return None


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _optimizer_class(optimizer):
    from ase import optimize

    if not isinstance(optimizer, str):
        return optimizer
    names = {"bfgs": optimize.BFGS, "fire": optimize.FIRE, "lbfgs": optimize.LBFGS,
             "bfgslinesearch": optimize.BFGSLineSearch, "mdmin": optimize.MDMin}
    try:
        return names[optimizer.lower()]
    except KeyError:
        raise ValueError(f"unknown optimizer {optimizer!r}; "
                         "choose from BFGS, FIRE, LBFGS, BFGSLineSearch, MDMin") from None


# --------------------------------------------------------------------------- molecular dynamics

@dataclass
class MDResult:
    """Time series of a :func:`run_md` run, sampled every ``interval`` steps (step 0 included).

    Attributes
    ----------
    time_fs : (n_samples,) fs
    potential_energy, kinetic_energy, total_energy : (n_samples,) eV, whole system
    temperature : (n_samples,) K (from the kinetic energy, 3N degrees of freedom as ASE)
    n_atoms : int; ensemble : str; timestep_fs : float; temperature_K : float (target/initial)
    """

    time_fs: np.ndarray
    potential_energy: np.ndarray
    kinetic_energy: np.ndarray
    total_energy: np.ndarray
    temperature: np.ndarray
    n_atoms: int
    ensemble: str
    timestep_fs: float
    temperature_K: float

    def energy_drift(self):
        """Slope of a linear fit of total energy per atom against time: eV/atom/ps (meaningful for NVE)."""
        if len(self.time_fs) < 2:
            return float("nan")
        return float(np.polyfit(self.time_fs / 1000.0, self.total_energy / self.n_atoms, 1)[0])

    def summary(self):
        t_ps = self.time_fs[-1] / 1000.0
        lines = [f"{self.ensemble.upper()} MD: {self.n_atoms} atoms, {t_ps:.3f} ps in steps of {self.timestep_fs:g} fs",
                 f"temperature: start {self.temperature[0]:.1f} K, end {self.temperature[-1]:.1f} K, "
                 f"mean (second half) {np.mean(self.temperature[len(self.temperature) // 2:]):.1f} K",
                 f"potential energy: mean {np.mean(self.potential_energy) / self.n_atoms:.5f} eV/atom"]
        if self.ensemble == "nve":
            lines.append(f"total energy drift: {self.energy_drift() * 1e3:+.4f} meV/atom/ps, fluctuation "
                         f"(peak to peak) {np.ptp(self.total_energy) / self.n_atoms * 1e3:.4f} meV/atom")
        return "\n".join(lines)


def run_md(atoms, calc=None, ensemble="nve", temperature_K=300.0, timestep_fs=1.0, steps=1000, *,
           friction_per_fs=0.01, interval=10, trajectory=None, trajectory_interval=None, logfile=None,
           progress=True, seed=None, initialize_velocities=True):
    """Molecular dynamics with ASE: NVE velocity Verlet or NVT Langevin.

    Parameters
    ----------
    atoms : ase.Atoms, changed in place (positions, momenta; the calculator is attached)
    calc : ASE calculator, model file path, or None for ``atoms.calc``
    ensemble : "nve" (:class:`ase.md.verlet.VelocityVerlet`) or "langevin"
        (:class:`ase.md.langevin.Langevin`, NVT at ``temperature_K``)
    temperature_K : K; Maxwell-Boltzmann initial velocities (when the atoms have
        no momenta and ``initialize_velocities``) and the Langevin target. In NVE
        a crystal started at T equilibrates near T/2 (equipartition).
    timestep_fs : fs; steps : int, number of MD steps
    friction_per_fs : Langevin friction, 1/fs (0.01/fs: velocity relaxation in ~100 fs)
    interval : sample energies/temperature (and write log lines) every this many steps
    trajectory : path of an :class:`ase.io.Trajectory` to write (every ``trajectory_interval``
        steps, default ``interval``), or None
    logfile : path (or "-" for stdout) of an :class:`ase.md.MDLogger` log, or None
    progress : tqdm progress bar
    seed : seed of the initial velocities and the Langevin noise

    Returns
    -------
    MDResult with time (fs), potential/kinetic/total energy (eV) and temperature (K) arrays.

    Raises
    ------
    ValueError: unknown ensemble, non-positive timestep, negative steps or temperature.
    """
    from ase.io import Trajectory
    from ase.md import MDLogger
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import Stationary, thermalize_momenta
    from ase.md.verlet import VelocityVerlet
    from tqdm.auto import tqdm

    _check_atoms(atoms)
    ensemble = str(ensemble).lower()
    if ensemble not in ("nve", "langevin"):
        raise ValueError(f"ensemble must be 'nve' or 'langevin', got {ensemble!r}")
    if not timestep_fs > 0:
        raise ValueError(f"timestep_fs must be > 0, got {timestep_fs}")
    if int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps}")
    if not temperature_K >= 0:
        raise ValueError(f"temperature_K must be >= 0, got {temperature_K}")
    if int(interval) < 1:
        raise ValueError(f"interval must be >= 1, got {interval}")
    steps, interval = int(steps), int(interval)
    atoms.calc = get_calculator(calc, atoms)
    rng = np.random.default_rng(seed)
    if initialize_velocities and not np.any(atoms.get_momenta()) and temperature_K > 0:
        thermalize_momenta(atoms, temperature_K=temperature_K, rng=rng)
        Stationary(atoms)
    dt = timestep_fs * units.fs
    if ensemble == "nve":
        dyn = VelocityVerlet(atoms, timestep=dt)
    else:
        if not friction_per_fs > 0:
            raise ValueError(f"friction_per_fs must be > 0, got {friction_per_fs}")
        # fixcm=False: ASE's fixcm=True does not sample NVT exactly (deprecated in ASE 3.28).
        dyn = Langevin(atoms, timestep=dt, temperature_K=temperature_K, friction=friction_per_fs / units.fs,
                       fixcm=False, rng=rng)

    rows = []

    def sample():
        epot, ekin = atoms.get_potential_energy(), atoms.get_kinetic_energy()
        rows.append((dyn.nsteps * timestep_fs, epot, ekin, epot + ekin, atoms.get_temperature()))

    closers = []
    bar = tqdm(total=steps, disable=not progress, unit="step", desc=f"MD {ensemble}")
    closers.append(bar)
    try:
        dyn.attach(sample, interval=interval)
        if trajectory:
            traj = Trajectory(trajectory, "w", atoms)
            closers.append(traj)
            dyn.attach(traj.write, interval=int(trajectory_interval or interval))
        if logfile:
            logger = MDLogger(dyn, atoms, logfile, header=True, peratom=True, mode="w")
            closers.append(logger)
            dyn.attach(logger, interval=interval)
        every = max(1, steps // 200)

        def advance():
            bar.update(dyn.nsteps - bar.n)  # tqdm throttles the redraws itself

        dyn.attach(advance, interval=every)
        dyn.run(steps)
        if dyn.nsteps % interval:  # always sample the final state
            sample()
    finally:
        for c in closers:
            c.close()
    a = np.array(rows)
    return MDResult(time_fs=a[:, 0], potential_energy=a[:, 1], kinetic_energy=a[:, 2], total_energy=a[:, 3],
                    temperature=a[:, 4], n_atoms=len(atoms), ensemble=ensemble, timestep_fs=float(timestep_fs),
                    temperature_K=float(temperature_K))


def plot_md(result, path, title=None):
    """PNG of an MD run: energies per atom (top) and temperature (bottom) against time in ps."""
    plt = _pyplot()
    t = result.time_fs / 1000.0
    n = result.n_atoms
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    ax1.plot(t, result.potential_energy / n, label="potential")
    ax1.plot(t, result.total_energy / n, label="total")
    ax1.set_ylabel("energy (eV/atom)")
    ax1.legend()
    if result.ensemble == "nve":
        ax1.set_title(f"NVE: drift {result.energy_drift() * 1e3:+.3g} meV/atom/ps")
    ax2.plot(t, result.temperature, color="C3")
    if result.ensemble == "langevin":
        ax2.axhline(result.temperature_K, color="k", ls="--", lw=0.8, label="target")
        ax2.legend()
    ax2.set_xlabel("time (ps)")
    ax2.set_ylabel("temperature (K)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------- relaxation

@dataclass
class RelaxResult:
    """Outcome of :func:`relax`.

    Attributes
    ----------
    atoms : the relaxed ase.Atoms (the same object that was passed in)
    converged : bool; n_steps : int, optimizer steps taken
    energy : eV; max_force : eV/Å, largest atomic force
    stress : (6,) GPa Voigt (xx, yy, zz, yz, xz, xy), None for non-periodic structures
    volume : Å³ (None if non-periodic); lattice_constant : Å, cubic lattice parameter of the cell
        (conventional a for a primitive fcc/bcc cell; a supercell's own), None if not cubic
    """

    atoms: object
    converged: bool
    n_steps: int
    energy: float
    max_force: float
    stress: np.ndarray | None
    volume: float | None
    lattice_constant: float | None

    def summary(self):
        a = self.atoms
        lines = [f"relaxation {'converged' if self.converged else 'NOT converged'} in {self.n_steps} steps",
                 f"energy: {self.energy:.6f} eV ({self.energy / len(a):.6f} eV/atom), "
                 f"max force {self.max_force:.2e} eV/Å"]
        if self.stress is not None:
            lengths = a.cell.cellpar()
            lines.append("cell: a b c = " + " ".join(f"{x:.5f}" for x in lengths[:3]) + " Å, angles = "
                         + " ".join(f"{x:.3f}" for x in lengths[3:]) + " deg")
            lines.append(f"volume: {self.volume:.4f} Å^3 ({self.volume / len(a):.4f} Å^3/atom)")
            lines.append("stress (GPa, xx yy zz yz xz xy): " + " ".join(f"{s:+.4f}" for s in self.stress))
            if self.lattice_constant is not None:
                lines.append(f"cubic lattice parameter of this cell: a = {self.lattice_constant:.5f} Å")
        return "\n".join(lines)


def relax(atoms, calc=None, fmax=0.01, cell=True, optimizer="BFGS", steps=1000, *, pressure_GPa=0.0,
          hydrostatic=False, trajectory=None, logfile=None):
    """Relax atomic positions and (optionally) the cell to a force/stress minimum.

    Parameters
    ----------
    atoms : ase.Atoms, relaxed in place
    calc : ASE calculator, model file path, or None for ``atoms.calc``
    fmax : eV/Å, convergence on forces; with ``cell`` the filter's cell
        "forces" (stress times volume, eV) are held to the same number
    cell : also relax the cell with :class:`ase.filters.FrechetCellFilter`
        (needs a 3D-periodic cell); False relaxes positions only
    optimizer : "BFGS" (default), "FIRE", "LBFGS", "BFGSLineSearch", "MDMin" or an ASE optimizer class
    steps : maximum optimizer steps
    pressure_GPa : external hydrostatic pressure (GPa) for the cell relaxation
    hydrostatic : keep the cell shape, relax the volume only
    trajectory, logfile : passed to the optimizer (paths; logfile "-" is stdout; None: quiet)

    Returns
    -------
    RelaxResult; a run that hits ``steps`` first returns ``converged=False`` with a warning.

    Raises
    ------
    ValueError: ``cell=True`` for a structure that is not 3D-periodic; bad fmax/steps.
    """
    from ase.filters import FrechetCellFilter

    _check_atoms(atoms, need_pbc=cell)
    if not fmax > 0:
        raise ValueError(f"fmax must be > 0 eV/Å, got {fmax}")
    if int(steps) < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    atoms.calc = get_calculator(calc, atoms)
    opt_cls = _optimizer_class(optimizer)
    target = FrechetCellFilter(atoms, hydrostatic_strain=hydrostatic, scalar_pressure=pressure_GPa * units.GPa) \
        if cell else atoms
    opt = opt_cls(target, logfile=logfile, trajectory=trajectory)
    try:
        converged = bool(opt.run(fmax=fmax, steps=int(steps)))
    finally:
        if hasattr(opt, "close"):
            opt.close()
    if not converged:
        warnings.warn(f"relaxation did not reach fmax={fmax} eV/Å in {steps} steps", RuntimeWarning, stacklevel=2)
    periodic = atoms.pbc.all()
    return RelaxResult(
        atoms=atoms, converged=converged, n_steps=int(opt.nsteps), energy=float(atoms.get_potential_energy()),
        max_force=float(np.linalg.norm(atoms.get_forces(), axis=1).max()),
        stress=atoms.get_stress(voigt=True) / units.GPa if periodic else None,
        volume=float(atoms.get_volume()) if periodic else None,
        lattice_constant=_cubic_lattice_constant(atoms.cell) if periodic else None)


# --------------------------------------------------------------------------- equation of state

@dataclass
class EOSResult:
    """Outcome of :func:`equation_of_state`.

    Attributes
    ----------
    volumes : (n,) Å³ of the whole cell; energies : (n,) eV of the whole cell
    v0 : Å³, volume at the minimum of the fit; e0 : eV, energy there
    bulk_modulus : GPa; bulk_modulus_derivative : B' = dB/dP (dimensionless; None for "sj"/"taylor"/"p3")
    lattice_constant : Å, cubic lattice parameter at v0 for sc/fcc/bcc cells, else None (the
        conventional a for a primitive fcc/bcc cell; for a supercell, the supercell's own)
    cell0 : (3, 3) Å, the input cell scaled isotropically to v0
    n_atoms : int; eos : str, ASE's EOS name; rms_residual : eV/atom, RMS misfit of the fit
    curve_volumes, curve_energies : (200,) the fitted E(V) for plotting
    """

    volumes: np.ndarray
    energies: np.ndarray
    v0: float
    e0: float
    bulk_modulus: float
    bulk_modulus_derivative: float | None
    lattice_constant: float | None
    cell0: np.ndarray
    n_atoms: int
    eos: str
    rms_residual: float
    curve_volumes: np.ndarray = field(repr=False)
    curve_energies: np.ndarray = field(repr=False)

    def summary(self):
        n = self.n_atoms
        lines = [f"equation of state ({self.eos}) from {len(self.volumes)} volumes "
                 f"{self.volumes.min() / n:.3f}-{self.volumes.max() / n:.3f} Å^3/atom",
                 f"V0 = {self.v0 / n:.4f} Å^3/atom, E0 = {self.e0 / n:.6f} eV/atom, B = {self.bulk_modulus:.2f} GPa"
                 + (f", B' = {self.bulk_modulus_derivative:.2f}" if self.bulk_modulus_derivative is not None else ""),
                 f"fit RMS residual: {self.rms_residual * 1e3:.4f} meV/atom"]
        if self.lattice_constant is not None:
            lines.append(f"cubic lattice parameter of this cell at V0: a0 = {self.lattice_constant:.5f} Å")
        return "\n".join(lines)


def equation_of_state(atoms, calc=None, max_strain=0.03, n_points=11, eos="birchmurnaghan", *,
                      relax_positions=False, fmax=1e-3):
    """Energy-volume curve under isotropic scaling of the cell, fitted with :class:`ase.eos.EquationOfState`.

    The cell is scaled by ``1 + s`` for ``n_points`` linear strains ``s`` evenly
    spaced in [-max_strain, +max_strain] (fractional coordinates kept, or
    positions relaxed at each volume with ``relax_positions``). Start from a
    relaxed structure so that the minimum lies inside the sampled range.

    Parameters
    ----------
    atoms : ase.Atoms, 3D-periodic (not modified)
    calc : ASE calculator, model file path, or None for ``atoms.calc``
    max_strain : largest linear strain (0.03: volumes within about ±9%)
    n_points : number of volumes (>= 5)
    eos : ASE name: "birchmurnaghan" (default), "murnaghan", "birch", "vinet",
        "pouriertarantola", "anton-schmidt", "sj", "taylor", "p3"
    relax_positions : relax internal positions at fixed cell for every volume (BFGS to ``fmax``)

    Returns
    -------
    EOSResult; bulk modulus in GPa (eV/Å³ divided by :data:`ase.units.GPa`).

    Raises
    ------
    ValueError: non-periodic structure, bad parameters, or a fitted minimum outside the sampled volumes.

    Source: F. Birch, Phys. Rev. 71, 809 (1947) for the Birch-Murnaghan form; ASE's fit.
    """
    from ase.eos import EquationOfState, eos_names

    _check_atoms(atoms, need_pbc=True)
    if eos not in eos_names:
        raise ValueError(f"unknown eos {eos!r}; choose from {eos_names}")
    if int(n_points) < 5:
        raise ValueError(f"n_points must be >= 5, got {n_points}")
    if not 0 < max_strain < 0.3:
        raise ValueError(f"max_strain must be in (0, 0.3), got {max_strain}")
    calc = get_calculator(calc, atoms)
    work = atoms.copy()
    work.calc = calc
    cell_ref = atoms.cell.array.copy()
    v_ref = atoms.get_volume()
    volumes, energies = [], []
    for s in np.linspace(-max_strain, max_strain, int(n_points)):
        work.set_cell(cell_ref * (1 + s), scale_atoms=True)
        if relax_positions:
            relax(work, calc, fmax=fmax, cell=False)
        volumes.append(work.get_volume())
        energies.append(work.get_potential_energy())
    volumes, energies = np.array(volumes), np.array(energies)
    fit = EquationOfState(volumes, energies, eos=eos)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            v0, e0, B = fit.fit(warn=False)
        except RuntimeError as err:  # scipy's curve_fit found no optimum
            raise ValueError(f"the {eos} fit failed ({err}): is the minimum inside the sampled volumes? "
                             "Relax the structure first or widen max_strain") from None
    if not (volumes.min() <= v0 <= volumes.max()) or not np.isfinite(v0):
        raise ValueError(f"the fitted minimum V0={v0:.3f} Å^3 lies outside the sampled volumes "
                         f"{volumes.min():.3f}-{volumes.max():.3f} Å^3: relax the structure first or widen max_strain")
    cv = np.linspace(volumes.min(), volumes.max(), 200)
    if eos == "sj":
        ce = fit.fit0(cv ** (-1 / 3))
        pred = fit.fit0(volumes ** (-1 / 3))
        bp = None
    else:
        ce = fit.func(cv, *fit.eos_parameters)
        pred = fit.func(volumes, *fit.eos_parameters)
        bp = float(fit.eos_parameters[2]) if eos not in ("taylor", "p3") else None
    scale = (v0 / v_ref) ** (1 / 3)
    a_ref = _cubic_lattice_constant(atoms.cell)
    n = len(atoms)
    return EOSResult(volumes=volumes, energies=energies, v0=float(v0), e0=float(e0), bulk_modulus=float(B / units.GPa),
                     bulk_modulus_derivative=bp, lattice_constant=None if a_ref is None else a_ref * scale,
                     cell0=cell_ref * scale, n_atoms=n, eos=eos,
                     rms_residual=float(np.sqrt(np.mean((pred - energies) ** 2)) / n),
                     curve_volumes=cv, curve_energies=np.asarray(ce))


def plot_eos(result, path, title=None):
    """PNG of an EOS: computed energies per atom (points) and the fitted curve against volume per atom."""
    plt = _pyplot()
    n = result.n_atoms
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot(result.curve_volumes / n, result.curve_energies / n, "-", label=f"{result.eos} fit")
    ax.plot(result.volumes / n, result.energies / n, "o", label="calculated")
    ax.axvline(result.v0 / n, color="k", ls=":", lw=0.8)
    text = f"V0 = {result.v0 / n:.3f} Å³/atom\nB = {result.bulk_modulus:.1f} GPa"
    if result.lattice_constant is not None:
        text += f"\na0 = {result.lattice_constant:.4f} Å"
    ax.text(0.5, 0.95, text, transform=ax.transAxes, ha="center", va="top")
    ax.set_xlabel("volume (Å³/atom)")
    ax.set_ylabel("energy (eV/atom)")
    ax.legend(loc="lower right")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------- elastic constants

_VOIGT_PAIRS = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]


@dataclass
class ElasticResult:
    """Outcome of :func:`elastic_constants`.

    Attributes
    ----------
    C : (6, 6) GPa, Voigt order xx, yy, zz, yz, xz, xy (engineering shear strains), symmetrised
    C_raw : (6, 6) GPa, column j from the ±strain stresses of Voigt strain j, before symmetrising
    asymmetry : GPa, max |C_raw - C_raw^T| / 2 (a consistency check: should be small)
    residual_stress : (6,) GPa, stress of the reference structure (should be ~0)
    bulk_modulus_voigt, bulk_modulus_reuss, shear_modulus_voigt, shear_modulus_reuss : GPa
    cubic : dict with C11, C12, C44 (GPa) averaged over the cubic-equivalent entries when the cell
        is cubic (sc/fcc/bcc) and the axes are the cubic axes, else None
    stable : bool, all eigenvalues of C positive (Born stability)
    """

    C: np.ndarray
    C_raw: np.ndarray
    asymmetry: float
    residual_stress: np.ndarray
    bulk_modulus_voigt: float
    bulk_modulus_reuss: float
    shear_modulus_voigt: float
    shear_modulus_reuss: float
    cubic: dict | None
    stable: bool

    @property
    def bulk_modulus(self):
        """Voigt-Reuss-Hill average bulk modulus, GPa."""
        return 0.5 * (self.bulk_modulus_voigt + self.bulk_modulus_reuss)

    @property
    def shear_modulus(self):
        """Voigt-Reuss-Hill average shear modulus, GPa."""
        return 0.5 * (self.shear_modulus_voigt + self.shear_modulus_reuss)

    def summary(self):
        lines = ["elastic constants C_ij (GPa), Voigt order xx yy zz yz xz xy:"]
        lines += ["  " + " ".join(f"{x:9.2f}" for x in row) for row in self.C]
        if self.cubic:
            lines.append("cubic: C11 = {C11:.2f}, C12 = {C12:.2f}, C44 = {C44:.2f} GPa".format(**self.cubic))
        lines.append(f"bulk modulus (VRH) {self.bulk_modulus:.2f} GPa, "
                     f"shear modulus (VRH) {self.shear_modulus:.2f} GPa")
        lines.append(f"asymmetry of C_raw {self.asymmetry:.3g} GPa; residual stress of the reference "
                     f"{np.abs(self.residual_stress).max():.3g} GPa; "
                     f"mechanically {'stable' if self.stable else 'UNSTABLE'}")
        return "\n".join(lines)


def strain_matrix(voigt_index, amount):
    """(3, 3) symmetric small-strain tensor of one Voigt component (engineering shear: eps_ab = amount / 2)."""
    a, b = _VOIGT_PAIRS[voigt_index]
    eps = np.zeros((3, 3))
    if a == b:
        eps[a, a] = amount
    else:
        eps[a, b] = eps[b, a] = amount / 2
    return eps


def elastic_constants(atoms, calc=None, strain=1e-3, *, relax_positions="auto", fmax=1e-4, relax_steps=500):
    """Elastic constants from stress-strain central differences on the six Voigt strains.

    For each Voigt strain j the cell is deformed by ``(I + eps)`` with eps_j = ±``strain``
    (engineering shear for j = 4..6) and ``C[:, j] = (sigma(+) - sigma(-)) / (2 strain)``,
    with ASE's stress sigma = (1/V) dE/deps. At zero stress these are the elastic
    constants C_ij = (1/V) d^2E/deps_i deps_j; with residual stress p they differ from
    the energy's second derivatives by terms of order p (reported as ``residual_stress``),
    so pass a relaxed structure (``relax(atoms, calc, fmax=1e-4)``).

    Parameters
    ----------
    atoms : ase.Atoms, 3D-periodic, ideally relaxed (not modified)
    calc : ASE calculator, model file path, or None for ``atoms.calc``
    strain : strain amplitude (1e-3 default; truncation error O(strain^2), noise O(1/strain))
    relax_positions : relax internal coordinates at fixed strained cell (needed for lattices with
        a basis whose atoms are not inversion centres, e.g. diamond, hcp). "auto" relaxes when a
        strained structure has forces above ``fmax``; True always; False never (clamped-ion constants).
    fmax : eV/Å, force tolerance of those relaxations; relax_steps : their step limit

    Returns
    -------
    ElasticResult (GPa).

    Raises
    ------
    ValueError: non-periodic structure or strain outside (0, 0.05].

    Sources: Voigt/Reuss/Hill averages, R. Hill, Proc. Phys. Soc. A 65, 349 (1952);
    Born stability, F. Mouhat & F.-X. Coudert, Phys. Rev. B 90, 224104 (2014).
    """
    _check_atoms(atoms, need_pbc=True)
    if not 0 < strain <= 0.05:
        raise ValueError(f"strain must be in (0, 0.05], got {strain}")
    if relax_positions not in ("auto", True, False):
        raise ValueError(f"relax_positions must be 'auto', True or False, got {relax_positions!r}")
    calc = get_calculator(calc, atoms)
    ref = atoms.copy()
    ref.calc = calc
    cell0 = ref.cell.array.copy()
    stress0 = ref.get_stress(voigt=True)
    C_raw = np.zeros((6, 6))
    for j in range(6):
        sig = []
        for sign in (1.0, -1.0):
            work = ref.copy()
            work.calc = calc
            work.set_cell(cell0 @ (np.eye(3) + strain_matrix(j, sign * strain)), scale_atoms=True)
            if relax_positions is True or (relax_positions == "auto" and len(work) > 1
                                           and np.linalg.norm(work.get_forces(), axis=1).max() > fmax):
                relax(work, calc, fmax=fmax, cell=False, steps=relax_steps)
            sig.append(work.get_stress(voigt=True))
        C_raw[:, j] = (sig[0] - sig[1]) / (2 * strain) / units.GPa
    C = 0.5 * (C_raw + C_raw.T)
    S = np.linalg.inv(C)
    KV = (C[0, 0] + C[1, 1] + C[2, 2] + 2 * (C[0, 1] + C[1, 2] + C[0, 2])) / 9
    GV = (C[0, 0] + C[1, 1] + C[2, 2] - C[0, 1] - C[1, 2] - C[0, 2] + 3 * (C[3, 3] + C[4, 4] + C[5, 5])) / 15
    KR = 1 / (S[0, 0] + S[1, 1] + S[2, 2] + 2 * (S[0, 1] + S[1, 2] + S[0, 2]))
    GR = 15 / (4 * (S[0, 0] + S[1, 1] + S[2, 2]) - 4 * (S[0, 1] + S[1, 2] + S[0, 2])
               + 3 * (S[3, 3] + S[4, 4] + S[5, 5]))
    cubic = None
    if _cubic_lattice_constant(atoms.cell) is not None:
        c = {"C11": float(np.mean(np.diag(C)[:3])), "C12": float(np.mean([C[0, 1], C[0, 2], C[1, 2]])),
             "C44": float(np.mean(np.diag(C)[3:]))}
        ideal = np.zeros((6, 6))
        ideal[:3, :3] = c["C12"]
        ideal[np.arange(3), np.arange(3)] = c["C11"]
        ideal[np.arange(3, 6), np.arange(3, 6)] = c["C44"]
        if np.abs(C - ideal).max() <= 0.02 * np.abs(C).max() + 1e-6:
            cubic = c
        else:
            warnings.warn("cubic cell, but C does not have the cubic form in these axes (rotated cell?): "
                          "no C11/C12/C44 reported", RuntimeWarning, stacklevel=2)
    return ElasticResult(C=C, C_raw=C_raw, asymmetry=float(np.abs(C_raw - C_raw.T).max() / 2),
                         residual_stress=stress0 / units.GPa, bulk_modulus_voigt=float(KV),
                         bulk_modulus_reuss=float(KR),
                         shear_modulus_voigt=float(GV), shear_modulus_reuss=float(GR), cubic=cubic,
                         stable=bool(np.linalg.eigvalsh(C).min() > 0))


# --------------------------------------------------------------------------- phonons

@dataclass
class PhononResult:
    """Outcome of :func:`phonons` (harmonic, finite displacements with :class:`ase.phonons.Phonons`).

    Attributes
    ----------
    unit : frequency unit ("THz" = 10^12 Hz, ordinary not angular frequency; "meV"; "cm-1")
    path : ase.dft.kpoints.BandPath of the band structure
    x : (n_q,) path coordinate: length along the path in reciprocal space, 1/Å including the
        2 pi (ASE's ``get_linear_kpoint_axis``), so a sound velocity is 2 pi f / x
    X : special-point coordinates, labels : their names
    bands : (n_q, 3 n_atoms) frequencies along the path; imaginary modes as negative numbers
    dos_frequencies : (n_grid,) and dos : (n_grid,) states per unit frequency, integrating to 3 n_atoms
    gamma : (3 n_atoms,) frequencies at Gamma, ascending
    supercell : (3,) ints; delta : Å displacement
    """

    unit: str
    path: object
    x: np.ndarray
    X: np.ndarray
    labels: list
    bands: np.ndarray
    dos_frequencies: np.ndarray
    dos: np.ndarray
    gamma: np.ndarray
    supercell: tuple
    delta: float

    @property
    def min_frequency(self):
        """Lowest frequency on the path and the DOS grid (negative: imaginary modes, a dynamical instability)."""
        return float(self.bands.min())

    def summary(self):
        n_modes = self.bands.shape[1]
        lines = [f"phonons: supercell {'x'.join(map(str, self.supercell))}, displacement {self.delta} Å, "
                 f"path {self.path.path}, {n_modes} branches",
                 f"Gamma ({self.unit}): " + " ".join(f"{f:.4f}" for f in self.gamma),
                 f"max frequency {self.bands.max():.4f} {self.unit}, min {self.bands.min():.4f} {self.unit}"]
        if self.bands.min() < -1e-2 * self.bands.max():
            lines.append("WARNING: imaginary modes (shown negative): the structure is not at a stable minimum")
        for lab, xx in zip(self.labels, self.X):
            k = int(np.argmin(np.abs(self.x - xx)))
            lines.append(f"  {lab:>2}: " + " ".join(f"{f:.4f}" for f in self.bands[k]))
        return "\n".join(lines)


def _auto_supercell(atoms, calc, default=4):
    cutoff = _interaction_cutoff(calc)
    if cutoff is None:
        return (default,) * 3
    # Heights of the cell perpendicular to each pair of cell vectors.
    cell = atoms.cell.array
    vol = abs(np.linalg.det(cell))
    heights = [vol / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3])) for i in range(3)]
    # Many-body models couple atoms up to twice the cutoff; a supercell that
    # wide keeps displaced-atom images from interfering.
    # Even repetitions make the zone-boundary points with coordinates 1/2 (X, L, H, N, ...)
    # commensurate with the supercell, so they are exact rather than interpolated.
    return tuple(2 * max(1, math.ceil(cutoff / h)) for h in heights)


def phonons(atoms, calc=None, supercell=None, delta=0.01, path=None, npoints=200, dos_kpts=(20, 20, 20), *,
            unit="THz", acoustic_sum_rule=True, dos_width=None, dos_points=500, cache_dir=None):
    """Harmonic phonon band structure and density of states by finite displacements (:class:`ase.phonons.Phonons`).

    Parameters
    ----------
    atoms : ase.Atoms, the (primitive) unit cell, 3D-periodic and relaxed (not modified)
    calc : ASE calculator, model file path, or None for ``atoms.calc``
    supercell : (n1, n2, n3) repetitions for the force constants; default: the smallest even
        repetitions making each height of the supercell at least twice the model cutoff
        (4x4x4 for calculators without one)
    delta : Å, displacement amplitude (±delta per Cartesian direction)
    path : special-point path string (e.g. "GXWKGLUWLK,UX") or None for ASE's standard
        path of the lattice (``atoms.cell.bandpath()``, W. Setyawan & S. Curtarolo,
        Comput. Mater. Sci. 49, 299 (2010)); npoints : q-points along it
    dos_kpts : Monkhorst-Pack q-mesh for the DOS
    unit : "THz" (default), "meV" or "cm-1"
    acoustic_sum_rule : impose it (and the force-constant index symmetry) as ASE's ``read(acoustic=True)``;
        False leaves the raw force constants, e.g. to check the calculator's translational invariance
    dos_width : Gaussian broadening of the DOS in ``unit`` (default 1/100 of the frequency range)
    cache_dir : where ASE's Phonons keeps its displacement cache (default: a temporary directory,
        removed afterwards); a reused directory resumes an interrupted run

    Returns
    -------
    PhononResult (frequencies in ``unit``; imaginary frequencies negative).

    Raises
    ------
    ValueError: non-periodic structure, unknown unit, bad supercell or delta.
    """
    from ase.phonons import Phonons

    _check_atoms(atoms, need_pbc=True)
    if unit not in FREQUENCY_UNITS:
        raise ValueError(f"unit must be one of {list(FREQUENCY_UNITS)}, got {unit!r}")
    if not 0 < delta < 0.2:
        raise ValueError(f"delta must be in (0, 0.2) Å, got {delta}")
    calc = get_calculator(calc, atoms)
    supercell = _auto_supercell(atoms, calc) if supercell is None else tuple(int(n) for n in supercell)
    if len(supercell) != 3 or min(supercell) < 1:
        raise ValueError(f"supercell must be three positive integers, got {supercell}")
    factor = FREQUENCY_UNITS[unit]
    prim = atoms.copy()
    prim.calc = None
    bandpath = prim.cell.bandpath(path, npoints=npoints)
    with tempfile.TemporaryDirectory(prefix="ase_mlcalc_phonons_") as tmp:
        name = os.path.join(cache_dir or tmp, "phonon")
        ph = Phonons(prim, calc, supercell=supercell, delta=delta, name=name)
        ph.run()
        ph.read(acoustic=bool(acoustic_sum_rule), symmetrize=3 if acoustic_sum_rule else 0)
    bands = ph.band_structure(bandpath.kpts, verbose=False) * factor
    gamma = np.sort(ph.band_structure(np.zeros((1, 3)), verbose=False)[0] * factor)
    from ase.dft.kpoints import monkhorst_pack

    grid = ph.band_structure(monkhorst_pack(dos_kpts), verbose=False).ravel() * factor
    lo, hi = min(grid.min(), 0.0), grid.max()
    width = dos_width or (hi - lo) / 100
    freqs = np.linspace(lo - 5 * width, hi + 5 * width, dos_points)
    # Gaussian-broadened histogram normalised to 3 n_atoms modes per cell.
    dos = np.zeros_like(freqs)
    for chunk in np.array_split(grid, max(1, len(grid) // 20000)):
        dos += np.exp(-0.5 * ((freqs[:, None] - chunk[None, :]) / width) ** 2).sum(axis=1)
    dos *= 3 * len(atoms) / len(grid) / (width * np.sqrt(2 * np.pi))
    x, X, labels = bandpath.get_linear_kpoint_axis()
    # A path break ("...K,UX") puts two labels at one coordinate: show them as "K|U".
    merged_X, merged_labels = [], []
    for xx, lab in zip(X, labels):
        if merged_X and abs(xx - merged_X[-1]) < 1e-10:
            merged_labels[-1] += "|" + lab
        else:
            merged_X.append(xx)
            merged_labels.append(lab)
    X, labels = np.array(merged_X), merged_labels
    return PhononResult(unit=unit, path=bandpath, x=x, X=X, labels=list(labels), bands=bands, dos_frequencies=freqs,
                        dos=dos, gamma=gamma, supercell=supercell, delta=float(delta))


def plot_phonons(result, path, title=None):
    """PNG of phonon bands along the path (left) and the DOS (right), frequencies in ``result.unit``."""
    plt = _pyplot()
    fig, (ax, axd) = plt.subplots(1, 2, figsize=(9, 4.5), sharey=True, gridspec_kw={"width_ratios": [3, 1]})
    ax.plot(result.x, result.bands, color="C0", lw=1)
    for xx in result.X:
        ax.axvline(xx, color="k", lw=0.5)
    ax.axhline(0, color="k", lw=0.5, ls=":")
    ax.set_xticks(result.X)
    ax.set_xticklabels([lab.replace("G", "Γ") for lab in result.labels])
    ax.set_xlim(result.x[0], result.x[-1])
    ax.set_ylabel(f"frequency ({result.unit})")
    axd.plot(result.dos, result.dos_frequencies, color="C1")
    axd.fill_betweenx(result.dos_frequencies, 0, result.dos, color="C1", alpha=0.3)
    axd.set_xlabel(f"DOS (states/{result.unit})")
    axd.set_xlim(left=0)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
