"""Cutoff functions shared by the descriptors and pair potentials (numba, inlined into their kernels).

Every function returns the value and its derivative with respect to its
distance argument, so that kernels can differentiate through it.
"""

from __future__ import annotations

import math

import numba


@numba.njit(cache=True, inline="always")
def cosine_cutoff(r, rc, width):
    """Cosine switch-off: ``(f_c(r), df_c/dr)``.

    ``f_c = 1`` for ``r <= rc - width``, ``(cos(pi (r - rc + width) / width) + 1) / 2``
    between ``rc - width`` and ``rc``, 0 beyond ``rc``; ``width = 0`` is a step.
    With ``width = rc`` it is Behler's ``(cos(pi r / rc) + 1) / 2`` on the whole
    range (J. Behler, J. Chem. Phys. 134, 074106 (2011), eq. 4; ACSF); with a
    transition width it is GAP's SOAP cutoff (``cutoff_transition_width``,
    libAtoms/GAP descriptors.f95, ``coordination_function``).
    """
    if r >= rc:
        return 0.0, 0.0
    if width <= 0.0 or r <= rc - width:
        return 1.0, 0.0
    t = math.pi * (r - rc + width) / width
    return 0.5 * (math.cos(t) + 1.0), -0.5 * math.pi / width * math.sin(t)


@numba.njit(cache=True, inline="always")
def ase_smooth_cutoff(r2, ro2, rc2):
    """ASE's (jax-md's) smooth cutoff of :class:`ase.calculators.lj.LennardJones` in terms of
    ``r2 = r^2``: ``(f, df/d(r^2))``, 1 below ``ro``, 0 beyond ``rc``::

        f = (rc^2 - r^2)^2 (rc^2 + 2 r^2 - 3 ro^2) / (rc^2 - ro^2)^3
    """
    if r2 >= rc2:
        return 0.0, 0.0
    if r2 <= ro2:
        return 1.0, 0.0
    den = (rc2 - ro2) ** 3
    return (rc2 - r2) ** 2 * (rc2 + 2.0 * r2 - 3.0 * ro2) / den, 6.0 * (rc2 - r2) * (ro2 - r2) / den
