"""Potential families: torch modules from an AtomicGraph to atomic energies, and their fits."""

from .base import AtomisticModel, families, get_family, register_family  # noqa: F401
