"""Numba descriptors (SOAP power spectrum, ACSF) with a torch autograd bridge."""

from .base import Descriptor  # noqa: F401
from .acsf import ACSF  # noqa: F401
