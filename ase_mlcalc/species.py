"""Chemical species: element symbols <-> atomic numbers, and indices into a model's species list.

Models and descriptors keep their species as a tuple of atomic numbers (the
channel order); atoms are mapped to indices into that tuple.
"""

from __future__ import annotations

import numpy as np
from ase.data import atomic_numbers, chemical_symbols

from .errors import UnknownElementError

__all__ = ["as_atomic_numbers", "species_index", "symbols", "species_of"]


def as_atomic_numbers(species):
    """Atomic numbers (tuple of int) from element symbols or numbers, in the given order.

    Raises
    ------
    ValueError
        An unknown symbol, an invalid atomic number, or an element listed twice.
    """
    if isinstance(species, (str, bytes)):
        raise ValueError(f"species must be a list of elements, e.g. ['{species}'], not the string {species!r}")
    out = []
    for s in species:
        if isinstance(s, str):
            if s not in atomic_numbers:
                raise ValueError(f"unknown element symbol {s!r}")
            out.append(atomic_numbers[s])
        else:
            z = int(s)
            if not 0 < z < len(chemical_symbols):
                raise ValueError(f"invalid atomic number {z}")
            out.append(z)
    if len(set(out)) != len(out):
        raise ValueError(f"species listed twice: {list(species)}")
    return tuple(out)


def symbols(species):
    """Element symbols (list of str) of atomic numbers."""
    return [chemical_symbols[int(z)] for z in species]


def species_of(frames):
    """Sorted tuple of the atomic numbers present in a list of :class:`ase.Atoms`."""
    return tuple(sorted({int(z) for a in frames for z in a.numbers}))


def species_index(numbers, species):
    """Indices into ``species`` (atomic numbers) of each of ``numbers``: (n,) int64 array.

    Raises
    ------
    UnknownElementError
        An element is not among ``species``; the message names it and the known ones.
    """
    numbers = np.asarray(numbers, dtype=np.int64)
    species = np.asarray(species, dtype=np.int64)
    lookup = np.full(max(int(species.max(initial=0)), int(numbers.max(initial=0))) + 1, -1, np.int64)
    lookup[species] = np.arange(len(species))
    idx = lookup[numbers] if numbers.size else np.zeros(0, np.int64)
    if (idx < 0).any():
        unknown = sorted({chemical_symbols[z] for z in numbers[idx < 0]})
        raise UnknownElementError(
            f"element(s) {', '.join(unknown)} not known to this model (species: {', '.join(symbols(species))})")
    return idx
