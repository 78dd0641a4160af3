"""On-the-fly learning during ASE molecular dynamics: uncertainty-triggered reference calculations.

After every ``check_every`` MD steps the model's per-atom uncertainty is compared with a threshold: for a
GAP the predictive std of each atomic energy (``energies_uncertainty``, eV), for a committee the spread
of each atom's force (``forces_uncertainty``, eV/Å, as DP-GEN's model deviation; the members' atomic
energies are not determined one by one -- they split a frame's energy among its atoms differently, and
disagree by 13-18 meV/atom on Cu frames whose energy they all predict to 1 meV/atom).
Above it, the reference calculator (any ASE calculator: DFT,
EMT, ...) labels the current frame; the frame joins the training set, the most uncertain atomic
environments join the sparse set (a GAP) and the model is updated; MD continues from the same
positions and velocities with the new model. As FLARE's on-the-fly learning (Vandermause et al.,
npj Comput. Mater. 6, 20 (2020); sparse-GP version, Nat. Commun. 13, 5183 (2022)).

* GAP: the update adds the new frame's kernel rows and the new sparse points' columns to the fit
  held by :class:`~ase_mlcalc.training.sparse_gp.GAPUpdater` (no refit of what it holds).
* BPNN committee: the update is a few warm-started epochs of every member on all frames.

Every labelled frame is appended to an extxyz file as it arrives (with the step, the prediction
before the call and the atoms that became sparse points), so nothing is lost if the run stops;
:meth:`OnTheFly.resume` rebuilds the same model from that file.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

#: default fit settings of the initial model (small, fast SOAP; gap_fit's names)
GAP_DEFAULTS = dict(cutoff=4.5, cutoff_transition_width=0.5, n_max=6, l_max=4, atom_sigma=0.5, zeta=4, delta=1.0,
                    n_sparse=20, default_sigma=(0.002, 0.05, 0.05))
BPNN_DEFAULTS = dict(cutoff=4.5, n_radial=12, n_angular_eta=2, hidden=(32, 32), epochs=300, lbfgs_steps=200,
                     committee=4, validation_fraction=0.0)


class OnTheFlyError(RuntimeError):
    """The loop stopped: the reference calculation failed (the message names the step; every frame
    computed before it is in the data file)."""


@dataclass
class Call:
    """One reference calculation: MD step, largest predicted per-atom uncertainty (eV or eV/Å) and the errors of the
    model's prediction before the call against the reference (energy per atom, eV; force RMSE, eV/Å)."""

    step: int
    max_uncertainty: float
    energy_error: float
    force_rmse: float
    n_new_sparse: int
    time_reference_s: float
    time_update_s: float


@dataclass
class OnTheFlyResult:
    """What :meth:`OnTheFly.run` did: every check (step, largest per-atom std, eV), every reference call,
    the threshold (eV/atom) and the wall time split into reference / model update / MD (s)."""

    steps: int
    threshold: float
    unit: str = "meV/atom"  # of the uncertainties (x 1000): meV/atom for a GAP, meV/Å for a committee
    checks: list = field(default_factory=list)
    calls: list = field(default_factory=list)
    time_reference_s: float = 0.0
    time_update_s: float = 0.0
    time_total_s: float = 0.0

    @property
    def time_md_s(self):
        return self.time_total_s - self.time_reference_s - self.time_update_s

    def summary(self):
        return (f"{self.steps} MD steps, {len(self.calls)} reference calls (threshold {self.threshold * 1e3:.2f} "
                f"{self.unit}); wall time {self.time_total_s:.1f} s: reference {self.time_reference_s:.1f} s, "
                f"model updates {self.time_update_s:.1f} s, MD {self.time_md_s:.1f} s")


def _int_list(value):
    """Atom indices from an info value as extxyz reads it back ("3,7,12", an int, or an int array)."""
    if isinstance(value, str):
        return [int(x) for x in value.replace(",", " ").split()]
    return [int(x) for x in np.atleast_1d(value)]


def _label(atoms, reference, step):
    """A copy of ``atoms`` with the reference's energy, forces (and stress when 3D-periodic)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    a = atoms.copy()
    a.calc = reference
    try:
        results = {"energy": a.get_potential_energy(), "forces": a.get_forces()}
        if a.pbc.all():
            results["stress"] = a.get_stress()
    except Exception as err:  # a DFT code that fails: stop with its message
        raise OnTheFlyError(f"the reference calculation failed at MD step {step} "
                            f"({type(err).__name__}: {err})") from err
    a.calc = SinglePointCalculator(a, **results)
    return a


class OnTheFly:
    """Uncertainty-triggered learning of a GAP (or a BPNN committee) during ASE MD.

    Parameters
    ----------
    model : "gap" (default: a new SOAP GAP fitted to ``initial_frames``), "bpnn" (a new committee of
        Behler-Parrinello networks), or an existing calculator / model file of either family (a GAP
        then needs the labelled frames it was fitted to as ``initial_frames``)
    reference : the ASE calculator that labels frames (any: DFT, EMT, ...)
    threshold : largest per-atom uncertainty tolerated before a reference call (GAP: energy std, eV;
        committee: force spread, eV/Å); default None: ``threshold_factor`` times the model's noise level
        ``noise_level``. Relative is the default because the accuracy asked of the model sets what
        counts as uncertain: the GP's predictive std of an atomic energy does not fall far below its
        noise level (fcc Cu with EMT at 800 K, default settings: ~2 sigma_E in a seen phase), so a few
        times it marks environments the data do not cover, and a new sigma needs no new threshold.
        The factor is not universal: the per-atom std also grows with the SOAP's resolution (n_max 8,
        l_max 6, cutoff 5 Å gives 2-4 times larger per-atom std than the defaults, with smaller errors),
        so check the first checks (``result.checks``) when changing the descriptor. (Two alternatives
        measured and dropped: re-evaluating the level on the growing training set lowers it with every
        call until the loop calls at every step; scaling the std online by the errors of the total
        energy at the calls raised them 4x, as the total-energy std underestimates those errors, with
        the same result.)
    noise_level : the expected error the threshold is relative to: default None, a GAP's energy sigma
        per atom (its ``default_sigma[0]``, eV), or for a committee 0.05 eV/Å (GAP's default force sigma)
    threshold_factor : see ``threshold``; default None: 2.5 for a GAP (on 108-atom Cu with EMT, 10 ps
        with a melt, 3 gives 27 calls and a 0.052 eV/Å force RMSE, 2.5 gives 36 and 0.045, 2 gives 60 and
        0.041), 4 for a committee (0.2 eV/Å with the default noise level: DP-GEN's usual upper trust
        levels are 0.15-0.30 eV/Å; at 2.5 a 4-member committee of small networks on Cu stays above it)
    check_every : MD steps between uncertainty checks (each costs about as much as a force call)
    max_new_sparse_per_call : most environments (atoms) a call adds to the GAP's sparse set: those with
        the largest uncertainty above ``sparse_threshold_factor`` times the threshold (at least the
        largest one; FLARE's ``update_threshold``)
    sparse_threshold_factor : see ``max_new_sparse_per_call`` (default 0.5)
    min_steps_between_calls : MD steps the model takes on its own after a call before the next one
        can happen (FLARE's ``min_steps_with_model``; default 0)
    initial_frames : starting structures (labelled by the reference when they have no energy)
    data : extxyz file that every labelled frame is appended to (and that :meth:`resume` reads)
    fit_options : settings of the initial fit (:func:`~ase_mlcalc.training.fit_gap` /
        :func:`~ase_mlcalc.training.fit_bpnn` keywords; defaults :data:`GAP_DEFAULTS`, :data:`BPNN_DEFAULTS`)
    update_epochs : Adam epochs of each committee member per update (BPNN)
    seed : seeds the fits and (with ``run(seed=...)``) the dynamics
    progress : tqdm progress bars

    Attributes
    ----------
    calculator : the current model's calculator (an ordinary ase_mlcalc calculator: ``save`` it)
    frames : the labelled training frames
    """

    def __init__(self, model="gap", reference=None, *, threshold=None, threshold_factor=None, check_every=1,
                 max_new_sparse_per_call=10, sparse_threshold_factor=0.5, min_steps_between_calls=0,
                 noise_level=None, initial_frames=None,
                 data="otf_data.extxyz", fit_options=None, update_epochs=30, seed=0, progress=True, _replay=None):
        from ..training.settings import check_positive, check_positive_int

        if reference is None:
            raise ValueError("OnTheFly needs a reference calculator (an ASE calculator: DFT, EMT, ...)")
        self.reference = reference
        self.threshold_value = None if threshold is None else check_positive("threshold", threshold)
        self.threshold_factor_given = None if threshold_factor is None else check_positive("threshold_factor",
                                                                                         threshold_factor)
        self.check_every = check_positive_int("check_every", check_every)
        self.max_new_sparse = check_positive_int("max_new_sparse_per_call", max_new_sparse_per_call)
        self.sparse_threshold_factor = check_positive("sparse_threshold_factor", sparse_threshold_factor)
        from ..training.settings import check_int

        self.min_steps_between_calls = check_int("min_steps_between_calls", min_steps_between_calls, 0)
        self.update_epochs = check_positive_int("update_epochs", update_epochs)
        self.noise_level = None if noise_level is None else check_positive("noise_level", noise_level)
        self.seed = int(seed)
        self.progress = progress
        self.data = None if data is None else os.fspath(data)
        self.n_calls = 0
        self.updater = None
        if not initial_frames:
            raise ValueError("OnTheFly needs initial_frames (one structure is enough)")
        frames = []
        for a in initial_frames:
            if a.calc is not None and "energy" in getattr(a.calc, "results", {}):
                frames.append(a)
            else:
                frames.append(_label(a, reference, step=-1))
        for a in frames:
            a.info["otf_step"] = -1
        if _replay is None:  # a new run: the data file starts with the initial frames
            frames = self._append(frames, new_file=True)
        self.frames = frames
        self.kind, self.fit_options = self._start(model, dict(fit_options or {}))

    # -- the model ---------------------------------------------------------------------------------

    def _start(self, model, options):
        from .. import load
        from ..models.committee import CommitteeModel
        from ..models.sparse_gp import SparseGPModel
        from ..training import fit_bpnn, fit_gap
        from ..training.sparse_gp import GAPUpdater

        if isinstance(model, (str, os.PathLike)) and str(model) not in ("gap", "bpnn"):
            model = load(model)
        if model == "gap":
            options = {**GAP_DEFAULTS, **options}
            calc = fit_gap(self.frames, seed=self.seed, progress=False, **options)
            model = calc
        elif model == "bpnn":
            options = {**BPNN_DEFAULTS, **options}
            model = fit_bpnn(self.frames, seed=self.seed, progress=False, **options)
        m = getattr(model, "model", model)
        if isinstance(m, SparseGPModel):
            sigma = options.get("default_sigma", GAP_DEFAULTS["default_sigma"])
            self.updater = GAPUpdater(m, self.frames, default_sigma=sigma,
                                      config_type_sigma=options.get("config_type_sigma"),
                                      sparse_jitter=options.get("sparse_jitter", 1e-10))
            self.soap_term = next((k for k, t in enumerate(m.terms) if t.kind == "soap"), None)
            self._set_calculator(self.updater.model)
            self.noise = self.noise_level or float(np.atleast_1d(sigma)[0])
            self.measure = "energies_uncertainty"
            self.threshold_factor = self.threshold_factor_given or 2.5
            return "gap", options
        if isinstance(m, CommitteeModel):
            self._set_calculator(m)
            self.noise = self.noise_level or 0.05
            self.measure = "forces_uncertainty"
            self.threshold_factor = self.threshold_factor_given or 4.0
            return "committee", {**BPNN_DEFAULTS, **options, "committee": len(m.members)}  # the model's size
        raise ValueError(f"on-the-fly learning needs a GAP or a committee model, got a {m.family} model")

    def _set_calculator(self, model):
        from ..io import get_family

        _, calc_cls = get_family(model.family)
        # checking after every step: the force calls compute the uncertainties too (no extra pass)
        self.calculator = calc_cls(model=model, uncertainty=self.check_every == 1)

    @property
    def threshold(self):
        """The per-atom uncertainty above which the reference is called (eV for a GAP, eV/Å for a committee)."""
        return self.threshold_value if self.threshold_value is not None else self.threshold_factor * self.noise

    def uncertainties(self, atoms):
        """Per-atom uncertainty (n_atoms,) of the current model for ``atoms``: a GAP's energy std (eV), a
        committee's force spread (eV/Å) (from the last force call where that was of the current model)."""
        if atoms.calc is not self.calculator:
            atoms = atoms.copy()
            atoms.calc = self.calculator
        return np.asarray(self.calculator.get_property(self.measure, atoms))

    def update(self, frame, sparse_atoms=()):
        """Add a labelled frame (and, for a GAP, the environments of ``sparse_atoms`` as sparse points)
        and update the model; returns the number of sparse points added."""
        self.frames.append(frame)
        if self.kind == "gap":
            self.updater.add_frames([frame], solve=False)
            n_new = 0
            if self.soap_term is not None and len(sparse_atoms):
                from ..training.sparse_gp import frame_edges

                term = self.updater.model.terms[self.soap_term]
                D, i, j, sidx = frame_edges(0, frame, self.updater.model.cutoff, self.updater.model.species)
                x, z = term.candidates(D, i, j, sidx, len(frame))
                idx = np.asarray(sparse_atoms, dtype=np.int64)
                self.updater.add_sparse_points(self.soap_term, x[idx], z[idx], solve=False)
                n_new = len(idx)
            self._set_calculator(self.updater.solve())
            return n_new
        from ..training import fit_bpnn

        opts = {k: v for k, v in self.fit_options.items() if k not in ("epochs", "lbfgs_steps")}
        calc = fit_bpnn(self.frames, seed=self.seed + 1000 * len(self.frames), progress=False,
                        initial_model=self.calculator.model, epochs=self.update_epochs, lbfgs_steps=0,
                        **opts)
        self._set_calculator(calc.model)
        return 0

    def _append(self, frames, new_file=False):
        """Append labelled frames to the data file; returns them as read back (the model is trained on
        exactly what the file holds, so that :meth:`resume` rebuilds the same model)."""
        if self.data is None:
            return list(frames)
        import ase.io

        if new_file and os.path.exists(self.data):
            os.remove(self.data)
        n_before = 0 if new_file else len(ase.io.read(self.data, ":", parallel=False)) if os.path.exists(self.data) \
            else 0
        for a in frames:
            ase.io.write(self.data, a, format="extxyz", append=True, parallel=False)
        return ase.io.read(self.data, f"{n_before}:", parallel=False)

    # -- the loop ----------------------------------------------------------------------------------

    def run(self, atoms, dynamics="langevin", temperature_K=300.0, timestep_fs=1.0, steps=1000, *,
            friction_per_fs=0.01, seed=None, log=None, start_step=0):
        """Run ``steps`` of MD on ``atoms`` (in place) with on-the-fly learning.

        Parameters
        ----------
        atoms : ase.Atoms (its momenta are kept; Maxwell-Boltzmann at ``temperature_K`` if it has none)
        dynamics : "langevin" (NVT) or "nve"
        temperature_K, timestep_fs, friction_per_fs, seed : as :func:`ase_mlcalc.workflows.run_md`
        log : path of a text log of every reference call (appended), or None
        start_step : the step number of the first step (to continue a run)

        Returns
        -------
        OnTheFlyResult

        Raises
        ------
        OnTheFlyError
            The reference calculation failed (the frames before it are in the data file).
        """
        from tqdm.auto import tqdm

        from ..workflows.md import make_dynamics

        seed = self.seed if seed is None else seed
        dyn = make_dynamics(atoms, self.calculator, dynamics, temperature_K, timestep_fs,
                            friction_per_fs=friction_per_fs, seed=seed)
        unit = "meV/atom" if self.measure == "energies_uncertainty" else "meV/Å"
        result = OnTheFlyResult(steps=int(steps), threshold=self.threshold, unit=unit)
        logfh = open(log, "a") if log else None
        t_start = time.perf_counter()
        bar = tqdm(total=int(steps), disable=not self.progress, desc="on-the-fly MD", unit="step")
        last_call = [-10 ** 9]

        def check():
            step = start_step + dyn.nsteps
            bar.update(dyn.nsteps - bar.n)
            if dyn.nsteps == 0:
                return
            sigma = self.uncertainties(atoms)
            result.checks.append((step, float(sigma.max())))
            threshold = self.threshold
            if sigma.max() <= threshold or step - last_call[0] < self.min_steps_between_calls:
                return
            last_call[0] = step
            predicted = (atoms.get_potential_energy(), atoms.get_forces().copy())
            sigma_total = self.calculator.get_property("energy_uncertainty", atoms)
            t0 = time.perf_counter()
            frame = _label(atoms, self.reference, step)
            t1 = time.perf_counter()
            order = np.argsort(-sigma)
            sparse = order[: self.max_new_sparse]
            sparse = sparse[sigma[sparse] > self.sparse_threshold_factor * threshold]
            frame.info.update(otf_step=step, otf_max_uncertainty=float(sigma.max()),
                              otf_predicted_energy=float(predicted[0]), otf_energy_uncertainty=float(sigma_total))
            if self.kind == "gap" and len(sparse):
                frame.info["otf_sparse_atoms"] = ",".join(map(str, sparse))
            frame = self._append([frame])[0]  # on disk before the update: nothing is lost if it fails
            n_new = self.update(frame, sparse if self.kind == "gap" else ())
            atoms.calc = self.calculator
            t2 = time.perf_counter()
            self.n_calls += 1
            e_ref = frame.get_potential_energy()
            call = Call(step=step, max_uncertainty=float(sigma.max()),
                        energy_error=(predicted[0] - e_ref) / len(atoms),
                        force_rmse=float(np.sqrt(np.mean((predicted[1] - frame.get_forces()) ** 2))),
                        n_new_sparse=int(n_new), time_reference_s=t1 - t0, time_update_s=t2 - t1)
            result.calls.append(call)
            result.time_reference_s += t1 - t0
            result.time_update_s += t2 - t1
            if logfh:
                logfh.write(f"step {step:8d}  max uncertainty {call.max_uncertainty * 1e3:9.3f} {unit}  threshold "
                            f"{threshold * 1e3:8.3f}  dE {call.energy_error * 1e3:+9.3f} meV/atom  F RMSE "
                            f"{call.force_rmse:.4f} eV/Å  +{n_new} sparse  frames {len(self.frames)}  "
                            f"reference {call.time_reference_s:.2f} s  update {call.time_update_s:.2f} s\n")
                logfh.flush()

        try:
            dyn.attach(check, interval=self.check_every)
            dyn.run(int(steps))
        finally:
            bar.close()
            if logfh:
                logfh.close()
        result.time_total_s = time.perf_counter() - t_start
        result.threshold = self.threshold
        return result

    # -- resuming ----------------------------------------------------------------------------------

    @classmethod
    def resume(cls, data, reference, model="gap", **kwargs):
        """Rebuild the learner from the data file of an earlier run: its initial frames give the same
        initial model, and every recorded call is replayed (frame and sparse points), so the model equals
        the one the run had after its last call. Returns ``(otf, atoms)``: ``atoms`` is the last recorded
        frame (positions and momenta) to continue the MD from (``otf.run(atoms, start_step=...)``,
        ``atoms.info["otf_step"]``). New frames are appended to the same file."""
        import ase.io

        frames = ase.io.read(os.fspath(data), ":", parallel=False)
        initial = [a for a in frames if int(a.info.get("otf_step", -1)) < 0]
        calls = [a for a in frames if int(a.info.get("otf_step", -1)) >= 0]
        otf = cls(model, reference, initial_frames=initial, data=data, _replay=True, **kwargs)
        for frame in calls:
            sparse = _int_list(frame.info.get("otf_sparse_atoms", ""))
            otf.update(frame, sparse)
            otf.n_calls += 1
        last = (calls or initial)[-1].copy()
        last.calc = otf.calculator
        return otf, last


def plot_on_the_fly(result, path, title=None):
    """PNG: the largest per-atom std at each check against the MD step, with the threshold and the reference
    calls (top); the error of the prediction before each call against the reference (bottom)."""
    from ..plotting import pyplot, save_figure

    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    if result.checks:
        steps, sig = np.array(result.checks).T
        ax1.semilogy(steps, sig * 1e3, lw=0.8, label="largest per-atom uncertainty")
    ax1.axhline(result.threshold * 1e3, color="k", ls="--", lw=0.8, label="threshold")
    if result.calls:
        cs = np.array([c.step for c in result.calls])
        ax1.semilogy(cs, [c.max_uncertainty * 1e3 for c in result.calls], "rv", ms=5, label="reference call")
        ax2.plot(cs, [abs(c.energy_error) * 1e3 for c in result.calls], "o", label="|energy error| (meV/atom)")
        ax2.plot(cs, [c.force_rmse * 1e3 for c in result.calls], "s", label="force RMSE (meV/Å)")
        ax2.set_yscale("log")
    ax1.set_ylabel(f"uncertainty ({result.unit})")
    ax1.legend(fontsize=8)
    ax2.set_xlabel("MD step")
    ax2.set_ylabel("error before the call")
    ax2.legend(fontsize=8)
    save_figure(fig, path, title)
