"""Base class of all potentials: a torch module from an AtomicGraph to atomic energies."""

from __future__ import annotations

import numpy as np
import torch
from ase.data import atomic_numbers, chemical_symbols

_FAMILIES: dict[str, tuple[type, type]] = {}


def register_family(name, model_cls, calculator_cls):
    """Register a potential family so that :func:`ase_mlcalc.load` can rebuild it.

    ``model_cls`` must implement ``from_hyperparameters(dict)``;
    ``calculator_cls`` must accept ``model=`` as a keyword.
    """
    _FAMILIES[name] = (model_cls, calculator_cls)
    model_cls.family = name


def get_family(name):
    """(model class, calculator class) registered under ``name``; KeyError if none."""
    return _FAMILIES[name]


def families():
    return sorted(_FAMILIES)


def as_atomic_numbers(species):
    """Atomic numbers (tuple of int) from symbols or numbers; ValueError for unknown symbols."""
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
        raise ValueError(f"species listed twice: {species}")
    return tuple(out)


class AtomisticModel(torch.nn.Module):
    """A potential: ``atomic_energies(graph) -> (n_atoms,)`` tensor in eV.

    Subclasses implement :meth:`atomic_energies` (without the per-species
    reference energy ``e0``, which :meth:`forward` adds) and
    :meth:`hyperparameters` / :meth:`from_hyperparameters` (JSON-able dict
    that rebuilds an untrained module of the right shapes; the trained values
    travel in the state dict).

    Attributes
    ----------
    species : tuple of int, atomic numbers the model knows, in channel order
    cutoff : float, Å
    e0 : (n_species,) float64 buffer, eV, reference energy per species
    full_list : bool (class attribute), see below
    """

    family = "base"
    #: whether atomic_energies needs both (i, j) and (j, i) edges; pair
    #: potentials set False and get a half list (half the edges)
    full_list = True

    def __init__(self, species, cutoff):
        super().__init__()
        self.species = as_atomic_numbers(species)
        cutoff = float(cutoff)
        if not (np.isfinite(cutoff) and cutoff > 0):
            raise ValueError(f"cutoff must be a positive number of Å, got {cutoff}")
        self.cutoff = cutoff
        self.register_buffer("e0", torch.zeros(len(self.species), dtype=torch.float64))

    @property
    def symbols(self):
        return [chemical_symbols[z] for z in self.species]

    def atomic_energies(self, graph):  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, graph):
        """Atomic energies including ``e0`` (n_atoms,), eV."""
        eps = self.atomic_energies(graph)
        return eps + self.e0.to(eps.dtype)[graph.tensor("species_index")]

    def extra_results(self, graph, energies):
        """Further per-structure results (e.g. uncertainties) as numpy arrays; none by default."""
        return {}

    def hyperparameters(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def from_hyperparameters(cls, hp):
        return cls(**hp)
