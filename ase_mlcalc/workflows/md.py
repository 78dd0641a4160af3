"""Molecular dynamics with ASE's integrators (NVE velocity Verlet, NVT Langevin): :func:`run_md`, :class:`MDResult`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import units

from .common import check_atoms, get_calculator


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


def make_dynamics(atoms, calc=None, ensemble="nve", temperature_K=300.0, timestep_fs=1.0, *, friction_per_fs=0.01,
                  seed=None, initialize_velocities=True):
    """An ASE dynamics object for ``atoms`` (the calculator attached): NVE velocity Verlet or NVT Langevin.

    Maxwell-Boltzmann velocities at ``temperature_K`` (centre of mass at rest) when the atoms have no
    momenta and ``initialize_velocities``; ``seed`` seeds them and the Langevin noise. Parameters as
    :func:`run_md`. Raises ValueError for an unknown ensemble or out-of-range settings.
    """
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import Stationary, thermalize_momenta
    from ase.md.verlet import VelocityVerlet

    check_atoms(atoms)
    ensemble = str(ensemble).lower()
    if ensemble not in ("nve", "langevin"):
        raise ValueError(f"ensemble must be 'nve' or 'langevin', got {ensemble!r}")
    if not timestep_fs > 0:
        raise ValueError(f"timestep_fs must be > 0, got {timestep_fs}")
    if not temperature_K >= 0:
        raise ValueError(f"temperature_K must be >= 0, got {temperature_K}")
    atoms.calc = get_calculator(calc, atoms)
    rng = np.random.default_rng(seed)
    if initialize_velocities and not np.any(atoms.get_momenta()) and temperature_K > 0:
        thermalize_momenta(atoms, temperature_K=temperature_K, rng=rng)
        Stationary(atoms)
    dt = timestep_fs * units.fs
    if ensemble == "nve":
        return VelocityVerlet(atoms, timestep=dt)
    if not friction_per_fs > 0:
        raise ValueError(f"friction_per_fs must be > 0, got {friction_per_fs}")
    # fixcm=False: ASE's fixcm=True does not sample NVT exactly (deprecated in ASE 3.28).
    return Langevin(atoms, timestep=dt, temperature_K=temperature_K, friction=friction_per_fs / units.fs,
                    fixcm=False, rng=rng)


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
    from tqdm.auto import tqdm

    if int(interval) < 1:
        raise ValueError(f"interval must be >= 1, got {interval}")
    if int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps}")
    steps, interval = int(steps), int(interval)
    dyn = make_dynamics(atoms, calc, ensemble, temperature_K, timestep_fs, friction_per_fs=friction_per_fs,
                        seed=seed, initialize_velocities=initialize_velocities)
    ensemble = str(ensemble).lower()

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
