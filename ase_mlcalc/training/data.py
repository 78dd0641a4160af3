"""Training data: labelled frames, their reference values, composition, per-species reference energies, graphs."""

from __future__ import annotations

import os

import numpy as np
import torch
from ase import Atoms
from ase.data import chemical_symbols

from ..errors import InvalidStructureError, TrainingDataError, UnknownElementError
from ..graph import build_graph
from ..species import species_of  # noqa: F401  (part of this module's API)


def read_frames(source, index=":"):
    """A list of :class:`ase.Atoms` from a file path (any format ase.io reads) or a list of Atoms.

    Raises
    ------
    FileNotFoundError
        No file at the path.
    ValueError
        A file that ase.io cannot read (an empty file gives no frames).
    TypeError
        ``source`` holds something other than Atoms.
    """
    if isinstance(source, (str, os.PathLike)):
        import ase.io

        from ase.io.formats import UnknownFileTypeError

        if not os.path.exists(source):
            raise FileNotFoundError(f"no structure file at {os.fspath(source)}")
        if os.path.getsize(source) == 0:
            return []
        try:
            frames = ase.io.read(source, index=index)
        except UnknownFileTypeError as err:
            raise ValueError(f"cannot read {os.fspath(source)}: {err}") from None
        return frames if isinstance(frames, list) else [frames]
    if isinstance(source, Atoms):
        return [source]
    frames = list(source)
    for k, a in enumerate(frames):
        if not isinstance(a, Atoms):
            raise TypeError(f"frames must be ase.Atoms; item {k} is a {type(a).__name__}")
    return frames


def load_frames(source, what="training"):
    """:func:`read_frames`, refusing an empty set with a :class:`TrainingDataError` naming ``what``."""
    frames = read_frames(source)
    if not frames:
        where = f" in {os.fspath(source)}" if isinstance(source, (str, os.PathLike)) else ""
        raise TrainingDataError(f"no {what} frames{where}: the set is empty")
    return frames


def frame_label(k, atoms):
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
            raise TrainingDataError(f"{frame_label(k, atoms)} has no reference energy")
        energies.append(float(results.get("energy", results.get("free_energy"))))
        f = results.get("forces")
        if f is None and "forces" in atoms.arrays:
            f = atoms.arrays["forces"]
        if f is None:
            if require_forces:
                raise TrainingDataError(f"{frame_label(k, atoms)} has no reference forces")
        else:
            f = np.asarray(f, dtype=np.float64)
            if f.shape != (len(atoms), 3) or not np.all(np.isfinite(f)):
                raise TrainingDataError(f"{frame_label(k, atoms)} has malformed or non-finite forces")
            forces.append(f)
        s = results.get("stress")
        if s is not None and atoms.pbc.all():
            any_stress = True
            s = np.asarray(s, dtype=np.float64)
            stresses.append(s if s.shape == (6,) else s.reshape(3, 3)[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]])
        else:
            stresses.append(np.full(6, np.nan))
        n_atoms.append(len(atoms))
    if not np.all(np.isfinite(energies)):
        bad = int(np.flatnonzero(~np.isfinite(energies))[0])
        raise TrainingDataError(f"{frame_label(bad, frames[bad])} has a NaN or infinite reference energy")
    return {
        "energy": np.array(energies),
        "n_atoms": np.array(n_atoms),
        "forces": np.concatenate(forces) if len(forces) == len(frames) and forces else None,
        "stress": np.array(stresses) if any_stress else None,
    }


def composition_matrix(frames, species):
    """(n_frames, n_species) counts of each species per frame.

    Raises TrainingDataError for an element outside ``species``.
    """
    pos = {z: k for k, z in enumerate(species)}
    C = np.zeros((len(frames), len(species)))
    for f, atoms in enumerate(frames):
        for z in atoms.numbers:
            if int(z) not in pos:
                raise TrainingDataError(
                    f"{frame_label(f, atoms)} contains {chemical_symbols[z]}, not among the species "
                    f"{[chemical_symbols[s] for s in species]}")
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
    """One AtomicGraph per frame (neighbor list at ``cutoff``; half list if not ``full_list``).

    Raises InvalidStructureError or UnknownElementError naming the frame.
    """
    graphs = []
    for k, a in enumerate(frames):
        try:
            graphs.append(build_graph(a, cutoff, species, device, dtype, full_list=full_list))
        except (InvalidStructureError, UnknownElementError) as err:
            raise type(err)(f"{frame_label(k, a)}: {err}") from None
    return graphs
