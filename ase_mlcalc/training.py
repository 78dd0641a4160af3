"""Training data and metrics shared by every family: frames, graphs, reference values, error tables, parity plots."""

from __future__ import annotations

import os

import numpy as np
import torch
from ase.data import chemical_symbols

from .errors import TrainingDataError
from .graph import batch_graphs, build_graph, forces_and_virial


def read_frames(source, index=":"):
    """A list of :class:`ase.Atoms` from a file path (any format ase.io reads) or a list of Atoms."""
    if isinstance(source, (str, os.PathLike)):
        import ase.io

        frames = ase.io.read(source, index=index)
        return frames if isinstance(frames, list) else [frames]
    return list(source)


def _frame_label(k, atoms):
    return f"frame {k} ({atoms.get_chemical_formula()})"


def reference_values(frames, require_forces=True):
    """Reference energies and forces of labelled frames.

    Returns
    -------
    dict with ``energy`` (n_frames,) eV, ``n_atoms`` (n_frames,) int,
    ``forces`` (total atoms, 3) eV/Å or None, ``stress`` (n_frames, 6) eV/Å³
    with NaN rows where a frame has none, or None if no frame has one.

    Raises
    ------
    TrainingDataError
        A frame without an energy, or (``require_forces``) without forces;
        the message names the frame.
    """
    energies, forces, stresses, n_atoms = [], [], [], []
    any_stress = False
    for k, atoms in enumerate(frames):
        calc = atoms.calc
        results = getattr(calc, "results", {}) if calc is not None else {}
        if "energy" not in results and "free_energy" not in results:
            raise TrainingDataError(f"{_frame_label(k, atoms)} has no reference energy")
        energies.append(float(results.get("energy", results.get("free_energy"))))
        f = results.get("forces")
        if f is None and "forces" in atoms.arrays:
            f = atoms.arrays["forces"]
        if f is None:
            if require_forces:
                raise TrainingDataError(f"{_frame_label(k, atoms)} has no reference forces")
        else:
            f = np.asarray(f, dtype=np.float64)
            if f.shape != (len(atoms), 3) or not np.all(np.isfinite(f)):
                raise TrainingDataError(f"{_frame_label(k, atoms)} has malformed or non-finite forces")
            forces.append(f)
        s = results.get("stress")
        if s is not None and atoms.pbc.all():
            any_stress = True
            s = np.asarray(s, dtype=np.float64)
            stresses.append(s if s.shape == (6,) else np.asarray(s).reshape(3, 3)[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]])
        else:
            stresses.append(np.full(6, np.nan))
        n_atoms.append(len(atoms))
    if not np.all(np.isfinite(energies)):
        raise TrainingDataError("some reference energies are NaN or infinite")
    return {
        "energy": np.array(energies),
        "n_atoms": np.array(n_atoms),
        "forces": np.concatenate(forces) if len(forces) == len(frames) and forces else None,
        "stress": np.array(stresses) if any_stress else None,
    }


def species_of(frames):
    """Sorted tuple of the atomic numbers present in ``frames``."""
    return tuple(sorted({int(z) for a in frames for z in a.numbers}))


def composition_matrix(frames, species):
    """(n_frames, n_species) counts of each species per frame."""
    pos = {z: k for k, z in enumerate(species)}
    C = np.zeros((len(frames), len(species)))
    for f, atoms in enumerate(frames):
        for z in atoms.numbers:
            if int(z) not in pos:
                raise TrainingDataError(
                    f"{_frame_label(f, atoms)} contains {chemical_symbols[z]}, not among the species {species}")
            C[f, pos[int(z)]] += 1
    return C


def fit_e0(frames, species, energies):
    """Per-species reference energies (eV) by least squares of total energies on composition.

    With a single species this is the mean energy per atom. Uses
    :func:`scipy.linalg.lstsq`.
    """
    from scipy.linalg import lstsq

    C = composition_matrix(frames, species)
    e0, *_ = lstsq(C, energies)
    return e0


def frame_graphs(frames, cutoff, species, device="cpu", dtype=torch.float64, full_list=True):
    """One AtomicGraph per frame (neighbor list at ``cutoff``; half list if not ``full_list``)."""
    return [build_graph(a, cutoff, species, device, dtype, full_list=full_list) for a in frames]


def predict(model, graphs, batch_size=32, compute_forces=True):
    """Model energies (n_frames,) and forces (total atoms, 3) for a list of graphs, in batches.

    Returns numpy float64 arrays; forces is None when ``compute_forces`` is False.
    """
    energies, forces = [], []
    for start in range(0, len(graphs), batch_size):
        g = batch_graphs(graphs[start:start + batch_size])
        eps = model(g)
        e = torch.zeros(g.n_structures, dtype=eps.dtype, device=eps.device).index_add(0, g.tensor("batch"), eps)
        if compute_forces:
            f, _, _ = forces_and_virial(g, e.sum())
            forces.append(f.detach().cpu().numpy())
        energies.append(e.detach().cpu().numpy())
    return np.concatenate(energies), (np.concatenate(forces) if compute_forces else None)


def error_metrics(pred_energy, pred_forces, ref):
    """RMSE and MAE of energies (meV/atom) and force components (eV/Å)."""
    de = (pred_energy - ref["energy"]) / ref["n_atoms"] * 1000.0
    out = {"n_frames": len(de), "energy_rmse": float(np.sqrt(np.mean(de ** 2))), "energy_mae": float(np.mean(np.abs(de)))}
    if pred_forces is not None and ref["forces"] is not None:
        df = pred_forces - ref["forces"]
        out.update(force_rmse=float(np.sqrt(np.mean(df ** 2))), force_mae=float(np.mean(np.abs(df))))
    return out


def evaluate(model, frames, batch_size=32):
    """Errors of ``model`` on labelled ``frames``; returns (metrics dict, predictions dict)."""
    ref = reference_values(frames, require_forces=False)
    graphs = frame_graphs(frames, model.cutoff, model.species, device=model.e0.device, full_list=model.full_list)
    e, f = predict(model, graphs, batch_size=batch_size)
    return error_metrics(e, f, ref), {"energy": e, "forces": f, "reference": ref}


def format_error_table(rows):
    """Plain-text table: ``rows`` maps a set name (train/test) to error_metrics dicts."""
    head = f"{'set':<8}{'frames':>8}{'E RMSE':>12}{'E MAE':>12}{'F RMSE':>12}{'F MAE':>12}"
    units = f"{'':<8}{'':>8}{'meV/atom':>12}{'meV/atom':>12}{'eV/Å':>12}{'eV/Å':>12}"
    lines = [head, units]
    for name, m in rows.items():
        fr = f"{m['force_rmse']:>12.4f}{m['force_mae']:>12.4f}" if "force_rmse" in m else f"{'-':>12}{'-':>12}"
        lines.append(f"{name:<8}{m['n_frames']:>8d}{m['energy_rmse']:>12.3f}{m['energy_mae']:>12.3f}{fr}")
    return "\n".join(lines)


def parity_plot(predictions, path, title=None):
    """PNG parity plot (energy per atom and force components) for sets {name: predictions from evaluate()}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
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
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(model, train_frames, test_frames=None, plot=None):
    """Print the train/test error table of ``model`` and write a parity plot; returns the metrics dict."""
    rows, preds = {}, {}
    rows["train"], preds["train"] = evaluate(model, train_frames)
    if test_frames:
        rows["test"], preds["test"] = evaluate(model, test_frames)
    print(format_error_table(rows))
    if plot:
        parity_plot(preds, plot, title=f"{model.family} model")
        print(f"parity plot written to {plot}")
    return rows
