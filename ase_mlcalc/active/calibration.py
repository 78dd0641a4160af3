"""Can the predicted uncertainty be trusted? Predicted std against actual errors on held-out frames.

For total energies (every model with ``energy_uncertainty``: GAP, committees) and, where the model
has ``forces_uncertainty`` (committees), for each atom's force. Reported: the Spearman rank
correlation of std and |error| (does the std rank the errors?), the fractions of errors inside +/-1
and +/-2 predicted std (0.683 and 0.954 for well-scaled Gaussian errors), and the scale s that makes
the std best fit the errors in the Gaussian maximum-likelihood sense, s^2 = mean((error / std)^2)
(e.g. Tran et al., Mach. Learn.: Sci. Technol. 1, 025006 (2020); Kuleshov et al., ICML (2018) for
calibration curves). :func:`calibrate` can store s in the model (``uncertainty_scale``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class CalibrationSet:
    """Predicted std and actual errors of one quantity: ``std`` (n,), ``error`` (n,) (same unit)."""

    name: str
    unit: str
    std: np.ndarray
    error: np.ndarray

    @property
    def spearman(self):
        from scipy.stats import spearmanr

        if len(self.std) < 3:
            return float("nan")
        return float(spearmanr(self.std, np.abs(self.error)).statistic)

    def within(self, k):
        """Fraction of the errors with |error| <= k std."""
        return float(np.mean(np.abs(self.error) <= k * self.std))

    @property
    def scale(self):
        """The maximum-likelihood scale s of the std: s^2 = mean((error / std)^2)."""
        return float(np.sqrt(np.mean((self.error / np.maximum(self.std, 1e-300)) ** 2)))

    def coverage_curve(self, levels=None):
        """(expected, observed) coverage of central Gaussian intervals at the given probabilities."""
        from scipy.stats import norm

        levels = np.linspace(0.05, 0.95, 19) if levels is None else np.asarray(levels)
        z = norm.ppf(0.5 + levels / 2)
        return levels, np.array([self.within(k) for k in z])


@dataclass
class CalibrationReport:
    """The calibration of a model's uncertainties on labelled frames (see the module docstring)."""

    sets: list = field(default_factory=list)
    scale_applied: float | None = None

    def summary(self):
        lines = [f"{'quantity':<22}{'n':>7}{'Spearman':>10}{'in 1 std':>10}{'in 2 std':>10}{'scale s':>10}",
                 f"{'':<22}{'':>7}{'':>10}{'(0.683)':>10}{'(0.954)':>10}{'':>10}"]
        for s in self.sets:
            lines.append(f"{s.name + ' (' + s.unit + ')':<22}{len(s.std):>7d}{s.spearman:>10.3f}{s.within(1):>10.3f}"
                         f"{s.within(2):>10.3f}{s.scale:>10.3f}")
        if self.scale_applied is not None:
            lines.append(f"uncertainty_scale set to {self.scale_applied:.4g} (from the total energies)")
        return "\n".join(lines)

    def plot(self, path, title=None):
        """PNG: |error| against predicted std (log-log, with the 1 and 2 std lines), and the coverage curve."""
        from ..plotting import pyplot, save_figure

        plt = pyplot()
        fig, axes = plt.subplots(len(self.sets), 2, figsize=(10, 4.2 * len(self.sets)), squeeze=False)
        for (ax1, ax2), s in zip(axes, self.sets):
            ax1.loglog(s.std, np.abs(s.error), ".", ms=4, alpha=0.6)
            lo, hi = max(min(s.std.min(), np.abs(s.error).min()), 1e-12), max(s.std.max(), np.abs(s.error).max())
            x = np.geomspace(lo, hi, 10)
            ax1.loglog(x, x, "k--", lw=0.8, label="1 std")
            ax1.loglog(x, 2 * x, "k:", lw=0.8, label="2 std")
            ax1.set_xlabel(f"predicted std of {s.name} ({s.unit})")
            ax1.set_ylabel(f"|error| ({s.unit})")
            ax1.set_title(f"Spearman {s.spearman:.2f}")
            ax1.legend()
            exp, obs = s.coverage_curve()
            ax2.plot(exp, obs, "o-", label="observed")
            ax2.plot([0, 1], [0, 1], "k--", lw=0.8, label="ideal")
            ax2.set_xlabel("expected coverage (Gaussian)")
            ax2.set_ylabel("observed fraction within")
            ax2.set_title(f"{s.name}: scale s = {s.scale:.3g}")
            ax2.legend()
        save_figure(fig, path, title)


def calibrate(calc, frames, *, set_scale=False):
    """Predicted std against actual errors of ``calc`` on labelled ``frames`` (held out from its training).

    Parameters
    ----------
    calc : an ase_mlcalc calculator whose model has ``energy_uncertainty`` (GAP, committee)
    frames : labelled ase.Atoms (energy; forces for the force check)
    set_scale : store the energy scale s in the model (``model.uncertainty_scale``, multiplying what it
        had), so that its std become calibrated; save the model afterwards

    Returns
    -------
    CalibrationReport (``summary()``, ``plot(path)``)

    Raises
    ------
    ValueError
        The model has no uncertainty outputs, or there are no frames.
    """
    from ..training.data import load_frames

    model = calc.model
    if "energy_uncertainty" not in model.outputs:
        raise ValueError(f"a {model.family} model has no energy_uncertainty to calibrate "
                         "(a GAP fitted without its variance, or a single network)")
    frames = load_frames(frames, what="calibration")
    e_std, e_err, f_std, f_err = [], [], [], []
    for a in frames:
        b = a.copy()
        b.calc = calc
        e_err.append(b.get_potential_energy() - a.get_potential_energy())
        e_std.append(calc.get_property("energy_uncertainty", b))
        if "forces_uncertainty" in model.outputs:
            f_std.append(calc.get_property("forces_uncertainty", b))
            f_err.append(np.linalg.norm(b.get_forces() - a.get_forces(), axis=1) / np.sqrt(3.0))
    report = CalibrationReport([CalibrationSet("energy", "eV", np.array(e_std), np.array(e_err))])
    if f_std:
        # per atom: the committee's component std (RMS over x, y, z) against the component-RMS error
        report.sets.append(CalibrationSet("force per atom", "eV/Å", np.concatenate(f_std), np.concatenate(f_err)))
    if set_scale:
        import torch

        s = report.sets[0].scale
        with torch.no_grad():
            model.uncertainty_scale.mul_(s)
        report.scale_applied = float(model.uncertainty_scale)
    return report
