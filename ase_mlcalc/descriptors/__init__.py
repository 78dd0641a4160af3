"""Numba descriptors (SOAP power spectrum, ACSF, n2p2 symmetry functions) with a torch autograd bridge."""

from .acsf import ACSF  # noqa: F401
from .base import Descriptor  # noqa: F401
from .n2p2 import N2P2SymmetryFunctions  # noqa: F401
from .soap import SOAP  # noqa: F401
