"""Base class of all potentials: a torch module from an AtomicGraph to atomic energies, and the family registry.

A model declares what the one calculator (:class:`ase_mlcalc.MLCalculator`)
may ask of it: the torch dtypes it computes correctly in (``dtypes``), the
results beyond energy, forces and stress that it can compute on request
(``outputs``), and the calculator options it understands (``options``).
"""

from __future__ import annotations

import numpy as np
import torch

from ..species import as_atomic_numbers, symbols  # noqa: F401  (as_atomic_numbers: public here since 0.1)

_FAMILIES: dict[str, tuple[type, type]] = {}


def register_family(name, model_cls, calculator_cls):
    """Register a potential family so that :func:`ase_mlcalc.load` can rebuild it.

    ``model_cls`` must implement ``from_hyperparameters(dict)``;
    ``calculator_cls`` (an :class:`~ase_mlcalc.MLCalculator` constructor) must accept ``model=``.
    """
    _FAMILIES[name] = (model_cls, calculator_cls)
    model_cls.family = name


def get_family(name):
    """(model class, calculator class) registered under ``name``; KeyError if none."""
    return _FAMILIES[name]


def families():
    """Names of the registered families, sorted."""
    return sorted(_FAMILIES)


class AtomisticModel(torch.nn.Module):
    """A potential: ``atomic_energies(graph) -> (n_centers,)`` tensor in eV.

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
    full_list : bool (class attribute): whether atomic_energies needs both
        (i, j) and (j, i) edges; pair potentials set False and get a half list
        from the calculator (they must also accept a full list, as in LAMMPS)
    dtypes : tuple of torch dtypes the model computes correctly in (float64 first)
    outputs : dict, name -> description of each extra result that
        :meth:`energies_and_outputs` can compute (e.g. uncertainties)
    options : dict, name -> (default, description) of calculator options the model understands
    """

    family = "base"
    full_list = True
    dtypes = (torch.float64,)
    outputs: dict = {}
    options: dict = {}

    def __init__(self, species, cutoff):
        super().__init__()
        self.species = as_atomic_numbers(species)
        if not self.species:
            raise ValueError("a model needs at least one species")
        cutoff = float(cutoff)
        if not (np.isfinite(cutoff) and cutoff > 0):
            raise ValueError(f"cutoff must be a positive number of Å, got {cutoff}")
        self.cutoff = cutoff
        self.register_buffer("e0", torch.zeros(len(self.species), dtype=torch.float64))

    @property
    def symbols(self):
        return symbols(self.species)

    def atomic_energies(self, graph):  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, graph):
        """Atomic energies including ``e0`` of the graph's centre atoms, (n_centers,) eV."""
        eps = self.atomic_energies(graph)
        return eps + self.e0.to(eps.dtype)[graph.center_species]

    def energies_and_outputs(self, graph, outputs=()):
        """Atomic energies (as :meth:`forward`) and the requested extra ``outputs``.

        Returns ``(energies tensor (n_centers,), {name: numpy array or float})``;
        families that declare ``outputs`` override this to share work between
        the two (e.g. the GP computes its kernel once).

        Raises
        ------
        ValueError
            An output the model does not declare.
        """
        self.check_outputs(outputs)
        return self(graph), {}

    def check_outputs(self, outputs):
        unknown = [o for o in outputs if o not in self.outputs]
        if unknown:
            raise ValueError(f"a {self.family} model cannot compute {', '.join(unknown)} "
                             f"(it offers: {', '.join(self.outputs) or 'nothing beyond energy, forces and stress'})")

    def outputs_for_options(self, options):
        """Extra outputs to compute at every call given the calculator ``options`` (none by default)."""
        return ()

    def hyperparameters(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def from_hyperparameters(cls, hp):
        return cls(**hp)
