"""ase_mlcalc: machine-learned interatomic potentials as ASE calculators.

Families: sparse Gaussian process on SOAP (``GAP``), Behler-Parrinello networks
on ACSF (``BPNN``), Lennard-Jones (fitted baseline), all run by the one
calculator :class:`MLCalculator`. Fit with :mod:`ase_mlcalc.training`
(``fit_gap``, ``fit_bpnn``, ``fit_lennard_jones``); every calculator saves
with ``calc.save(path)`` and :func:`load` returns a ready calculator for any
saved model.
"""

from . import _openmp  # noqa: F401  (first: before torch and numba start OpenMP)
from .calculator import MLCalculator
from .errors import InvalidStructureError, ModelFileError, TrainingDataError, UnknownElementError
from .io import load, load_model, save_model
from .models.bpnn import BPNN, BPNNModel
from .models.committee import Committee, CommitteeModel
from .models.lennard_jones import LennardJones, LennardJonesModel
from .models.sparse_gp import GAP, SparseGPModel
from .neighbors import NeighborListCache, neighbor_list, primitive_neighbor_list

__version__ = "0.2.0.dev0"

__all__ = [
    "MLCalculator", "LennardJones", "LennardJonesModel", "GAP", "SparseGPModel", "BPNN", "BPNNModel",
    "Committee", "CommitteeModel",
    "fit_gap", "fit_bpnn", "fit_lennard_jones", "train_bpnn",
    "load", "load_model", "save_model",
    "neighbor_list", "primitive_neighbor_list", "NeighborListCache",
    "InvalidStructureError", "ModelFileError", "TrainingDataError", "UnknownElementError",
]


def __getattr__(name):  # the fits live in ase_mlcalc.training (imported on first use: torch.optim, scipy)
    if name in ("fit_gap", "fit_bpnn", "fit_lennard_jones", "train_bpnn"):
        from . import training

        return getattr(training, name)
    raise AttributeError(f"module 'ase_mlcalc' has no attribute {name!r}")
