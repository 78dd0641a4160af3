"""ase_mlcalc: machine-learned interatomic potentials as ASE calculators.

Families: sparse Gaussian process on SOAP (``GAP``), Behler-Parrinello networks
on ACSF (``BPNN``), Lennard-Jones (fitted baseline). Every calculator saves with
``calc.save(path)``; :func:`load` returns a ready calculator for any saved model.
"""

from .calculator import MLCalculator
from .errors import InvalidStructureError, ModelFileError, TrainingDataError, UnknownElementError
from .io import load, load_model, save_model
from .models.bpnn import BPNN, BPNNModel, train_bpnn
from .models.lennard_jones import LennardJones, LennardJonesModel
from .models.sparse_gp import GAP, SparseGPModel
from .neighbors import NeighborListCache, neighbor_list, primitive_neighbor_list

__version__ = "0.1.0"

__all__ = [
    "MLCalculator", "LennardJones", "LennardJonesModel", "GAP", "SparseGPModel", "BPNN", "BPNNModel", "train_bpnn",
    "load", "load_model", "save_model",
    "neighbor_list", "primitive_neighbor_list", "NeighborListCache",
    "InvalidStructureError", "ModelFileError", "TrainingDataError", "UnknownElementError",
]
