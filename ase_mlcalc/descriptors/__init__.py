"""Numba descriptors (SOAP power spectrum, ACSF) with a torch autograd bridge."""

from .acsf import ACSF  # noqa: F401
from .base import Descriptor  # noqa: F401
from .soap import SOAP  # noqa: F401
