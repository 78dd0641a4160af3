"""Training data: labelled frames, their reference values, composition, per-species reference energies, graphs."""

from __future__ import annotations

import os

import numpy as np
import torch
from ase import Atoms
from ase.data import chemical_symbols

from ..errors import InvalidStructureError, TrainingDataError, UnknownElementError
from ..graph import build_graph
from ..neighbors import pair_list
from ..species import as_atomic_numbers, species_of, symbols  # noqa: F401  (species_of: part of this API)


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


E0_METHODS = ("auto", "isolated", "average", "least_squares")


def isolated_atom_energies(frames, cutoff):
    """{atomic number: energy (eV)} of the one-atom frames with no neighbour within ``cutoff`` (gap_fit's
    ``e0_method=isolated``). Raises TrainingDataError for two such frames of one element that disagree."""
    found = {}
    for k, atoms in enumerate(frames):
        if len(atoms) != 1 or len(pair_list(atoms.positions, atoms.cell.array, atoms.pbc, cutoff)[0]):
            continue
        z, e = int(atoms.numbers[0]), float(atoms.get_potential_energy())
        if z in found and abs(found[z] - e) > 1e-6:
            raise TrainingDataError(f"two isolated {symbols([z])[0]} atoms with different energies "
                                    f"({found[z]} and {e} eV): which one is e0?")
        found[z] = e
    return found


def reference_energies(frames, species, energies, cutoff, e0=None, e0_method="auto"):
    """Per-species reference energies e0 (eV, in ``species`` order) for the fit.

    ``e0`` (a number, or a dict element symbol/number -> eV) fixes them; otherwise ``e0_method``:
    "isolated" (isolated-atom frames, gap_fit's default; every element needs one), "average" (the
    mean energy per atom, the same for every element, as gap_fit), "least_squares" (total energies
    regressed on composition) or "auto" (isolated where the frames have them, least squares for the rest).
    """
    n = len(species)
    if e0 is not None:
        if np.isscalar(e0):
            return np.full(n, float(e0))
        given = {as_atomic_numbers([z])[0]: float(v) for z, v in dict(e0).items()}
        missing = [s for s, z in zip(symbols(species), species) if z not in given]
        if missing:
            raise ValueError(f"e0 lacks the element(s) {', '.join(missing)}")
        return np.array([given[z] for z in species])
    from .settings import check_choice

    check_choice("e0_method", e0_method, E0_METHODS)
    C = composition_matrix(frames, species)
    if e0_method == "average":
        return np.full(n, float(np.mean(energies / C.sum(1))))
    isolated = isolated_atom_energies(frames, cutoff) if e0_method in ("isolated", "auto") else {}
    if e0_method == "isolated":
        missing = [s for s, z in zip(symbols(species), species) if z not in isolated]
        if missing:
            raise TrainingDataError(f"e0_method='isolated' needs an isolated-atom frame of {', '.join(missing)}")
    fixed = np.array([z in isolated for z in species])
    out = np.array([isolated.get(z, 0.0) for z in species])
    if not fixed.all():
        rest = energies - C[:, fixed] @ out[fixed]
        from scipy.linalg import lstsq

        out[~fixed] = lstsq(C[:, ~fixed], rest)[0]
    return out


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
