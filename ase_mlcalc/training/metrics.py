"""Predictions on labelled frames and their errors: the one evaluate -> table -> parity plot path of every family."""

from __future__ import annotations

import numpy as np
import torch

from ..graph import batch_graphs, forces_and_virial
from .data import frame_graphs, reference_values


def as_model(model_or_calc):
    """The torch model of a calculator (``calc.model``), or the model itself."""
    return getattr(model_or_calc, "model", model_or_calc)


def predict(model, graphs, batch_size=32, compute_forces=True):
    """Model energies (n_frames,) and forces (total atoms, 3) for a list of graphs, in batches.

    Returns numpy float64 arrays; forces is None when ``compute_forces`` is False.
    """
    model = as_model(model)
    energies, forces = [], []
    for start in range(0, len(graphs), batch_size):
        g = batch_graphs(graphs[start:start + batch_size])
        eps = model(g)
        e = torch.zeros(g.n_structures, dtype=eps.dtype, device=eps.device).index_add(0, g.tensor("batch"), eps)
        if compute_forces:
            f, _, _ = forces_and_virial(g, e.sum())
            forces.append(f.detach().cpu().to(torch.float64).numpy())
        energies.append(e.detach().cpu().to(torch.float64).numpy())
    if not graphs:
        return np.zeros(0), (np.zeros((0, 3)) if compute_forces else None)
    return np.concatenate(energies), (np.concatenate(forces) if compute_forces else None)


def error_metrics(pred_energy, pred_forces, ref):
    """RMSE and MAE of energies (meV/atom) and force components (eV/Å).

    Returns a dict: ``n_frames``, ``energy_rmse``, ``energy_mae`` (meV/atom),
    and where forces exist ``force_rmse``, ``force_mae`` (eV/Å).
    """
    de = (pred_energy - ref["energy"]) / ref["n_atoms"] * 1000.0
    out = {"n_frames": len(de), "energy_rmse": float(np.sqrt(np.mean(de ** 2))), "energy_mae": float(np.mean(np.abs(de)))}
    if pred_forces is not None and ref["forces"] is not None:
        df = pred_forces - ref["forces"]
        out.update(force_rmse=float(np.sqrt(np.mean(df ** 2))), force_mae=float(np.mean(np.abs(df))))
    return out


def group_metrics(predictions, frames, key="config_type"):
    """:func:`error_metrics` per group of frames (``atoms.info[key]``; frames without it: "-").

    ``predictions``: the second value :func:`evaluate` returns for ``frames``. Returns a dict group ->
    metrics, groups in order of first appearance.
    """
    groups = [str(a.info.get(key, "-")) for a in frames]
    ref, e, f = predictions["reference"], predictions["energy"], predictions["forces"]
    offsets = np.cumsum([0] + [len(a) for a in frames])
    out = {}
    for g in dict.fromkeys(groups):
        k = np.array([x == g for x in groups])
        atoms = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in np.flatnonzero(k)])
        sub = {"energy": ref["energy"][k], "n_atoms": ref["n_atoms"][k],
               "forces": None if ref["forces"] is None else ref["forces"][atoms]}
        out[g] = error_metrics(e[k], None if f is None else f[atoms], sub)
    return out


def evaluate(model, frames, batch_size=32):
    """Errors of a model (or calculator) on labelled ``frames``; returns (metrics dict, predictions dict).

    Predictions: ``energy`` (n_frames,) eV, ``forces`` (total atoms, 3) eV/Å, ``reference`` (see
    :func:`~ase_mlcalc.training.data.reference_values`).
    """
    model = as_model(model)
    ref = reference_values(frames, require_forces=False)
    graphs = frame_graphs(frames, model.cutoff, model.species, device=model.e0.device, dtype=model.e0.dtype,
                          full_list=model.full_list)
    e, f = predict(model, graphs, batch_size=batch_size)
    return error_metrics(e, f, ref), {"energy": e, "forces": f, "reference": ref}


def energy_forces_time(calc, atoms, repeat=5):
    """Median wall time (µs per atom) of one energy+forces call of ``calc`` on ``atoms`` (slightly rattled
    before every call so nothing is cached; one warm-up call first)."""
    import statistics
    import time

    a = atoms.copy()
    a.calc = calc
    rng = np.random.default_rng(0)
    a.get_forces()  # compile / warm up
    times = []
    for _ in range(repeat):
        a.positions += rng.normal(scale=1e-4, size=a.positions.shape)
        t = time.perf_counter()
        a.get_forces()
        times.append(time.perf_counter() - t)
    return 1e6 * statistics.median(times) / len(a)


def format_error_table(rows):
    """Plain-text table: ``rows`` maps a set name (train/test/...) to :func:`error_metrics` dicts."""
    width = max([8] + [len(str(name)) + 2 for name in rows])
    head = f"{'set':<{width}}{'frames':>8}{'E RMSE':>12}{'E MAE':>12}{'F RMSE':>12}{'F MAE':>12}"
    units = f"{'':<{width}}{'':>8}{'meV/atom':>12}{'meV/atom':>12}{'eV/Å':>12}{'eV/Å':>12}"
    lines = [head, units]
    for name, m in rows.items():
        fr = f"{m['force_rmse']:>12.4f}{m['force_mae']:>12.4f}" if "force_rmse" in m else f"{'-':>12}{'-':>12}"
        lines.append(f"{name:<{width}}{m['n_frames']:>8d}{m['energy_rmse']:>12.3f}{m['energy_mae']:>12.3f}{fr}")
    return "\n".join(lines)


def parity_plot(predictions, path, title=None):
    """PNG parity plot (energy per atom and force components) for sets {name: predictions from evaluate()}."""
    from ..plotting import pyplot, save_figure

    fig, axes = pyplot().subplots(1, 2, figsize=(10, 4.5))
    for name, p in predictions.items():
        ref = p["reference"]
        axes[0].scatter(ref["energy"] / ref["n_atoms"], p["energy"] / ref["n_atoms"], s=8, label=name, alpha=0.7)
        if p["forces"] is not None and ref["forces"] is not None:
            axes[1].scatter(ref["forces"].ravel(), p["forces"].ravel(), s=2, label=name, alpha=0.4)
    for ax, what in zip(axes, ["energy (eV/atom)", "force component (eV/Å)"]):
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
        lo, hi = min(x0, y0), max(x1, y1)
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        ax.set_xlabel(f"DFT {what}")
        ax.set_ylabel(f"model {what}")
        ax.legend()
    save_figure(fig, path, title)


def report(model, sets, plot=None, title=None, printer=print, by_group=None):
    """Error table of a model (or calculator) on named sets of labelled frames, and a parity plot.

    Parameters
    ----------
    model : AtomisticModel or a calculator holding one
    sets : dict, set name -> list of labelled ase.Atoms (empty or None sets are skipped)
    plot : PNG path of the parity plot, or None / "" for none
    title : plot title (default: the family name)
    printer : where the table goes (``print`` by default; None for nowhere)
    by_group : an ``atoms.info`` key (e.g. "config_type"): also a table per group of each set

    Returns
    -------
    dict, set name -> :func:`error_metrics` dict
    """
    model = as_model(model)
    rows, preds = {}, {}
    for name, frames in sets.items():
        if frames:
            rows[name], preds[name] = evaluate(model, frames)
    if printer is not None:
        printer(format_error_table(rows))
        if by_group:
            for name, frames in sets.items():
                if frames:
                    printer(f"{name} by {by_group}:")
                    printer(format_error_table(group_metrics(preds[name], frames, by_group)))
    if plot:
        parity_plot(preds, plot, title=title or f"{model.family} model")
        if printer is not None:
            printer(f"parity plot written to {plot}")
    return rows


def finish_fit(calc, sets, fit_info, t_start):
    """The common end of every fit: ``calc.metrics`` (set name -> error metrics of the non-empty
    ``sets``) and ``calc.model.fit_info`` (``fit_info`` plus ``wall_time_s``); returns ``calc``."""
    import time

    fit_info = dict(fit_info)
    fit_info.setdefault("history", [])
    fit_info["wall_time_s"] = time.perf_counter() - t_start
    calc.model.fit_info = fit_info
    calc.metrics = report(calc.model, sets, printer=None)
    return calc
