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
    if width >= rc:  # Behler's form over the whole range (ACSF's inner triplet loops: no division)
        a = math.pi / rc
        return 0.5 * (math.cos(a * r) + 1.0), -0.5 * a * math.sin(a * r)
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


#: n2p2's cutoff function types (``cutoff_type`` keyword): number -> name of ``CutoffFunction::CutoffType``
N2P2_CUTOFF_TYPES = {0: "CT_HARD", 1: "CT_COS", 2: "CT_TANHU", 3: "CT_TANH", 4: "CT_EXP",
                     5: "CT_POLY1", 6: "CT_POLY2", 7: "CT_POLY3", 8: "CT_POLY4"}

_E = math.e
_COTH3_1 = ((math.e + 1.0 / math.e) / (math.e - 1.0 / math.e)) ** 3  # coth(1)^3: CT_TANH(0) = 1


@numba.njit(cache=True, inline="always")
def n2p2_cutoff(r, rc, ctype, alpha):
    """n2p2's cutoff functions: ``(f_c(r), df_c/dr)`` for cutoff type ``ctype`` (0..8), radius ``rc``
    and inner cutoff ``r_ci = alpha rc`` (0 <= alpha < 1).

    Source: n2p2 documentation, "Cutoff functions" (https://compphysvienna.github.io/n2p2/api/cutoff_functions.html,
    the doc comment of ``CutoffFunction::CutoffType``) and the ``cutoff_type`` keyword
    (https://compphysvienna.github.io/n2p2/topics/keywords.html#cutoff-type)::

        f_c(r) = 1 for r < r_ci,   f(x) for r_ci <= r < rc with x = (r - r_ci) / (rc - r_ci),   0 for r >= rc

        0 CT_HARD   f(x) = 1
        1 CT_COS    f(x) = (cos(pi x) + 1) / 2
        2 CT_TANHU  f_c(r) = tanh^3(1 - r/rc)                       (alpha not used; f_c(0) = 0.44)
        3 CT_TANH   f_c(r) = coth^3(1) tanh^3(1 - r/rc), f_c(0) = 1  (alpha not used)
        4 CT_EXP    f(x) = exp(1 - 1/(1 - x^2))
        5 CT_POLY1  f(x) = (2x - 3) x^2 + 1
        6 CT_POLY2  f(x) = ((15 - 6x) x - 10) x^3 + 1
        7 CT_POLY3  f(x) = (x (x (20x - 70) + 84) - 35) x^4 + 1
        8 CT_POLY4  f(x) = (x (x ((315 - 70x) x - 540) + 420) - 126) x^5 + 1

    CT_COS equals :func:`cosine_cutoff` ``(r, rc, width=(1 - alpha) rc)`` (up to rounding; with
    alpha = 0 it is Behler's cosine cutoff of :class:`~ase_mlcalc.descriptors.ACSF`). Lengths in any
    unit (the derivative is per that unit). An unknown ``ctype`` behaves as CT_POLY4: callers check it.
    """
    if r >= rc:
        return 0.0, 0.0
    if ctype == 2 or ctype == 3:
        t = math.tanh(1.0 - r / rc)
        t2 = t * t
        pre = _COTH3_1 if ctype == 3 else 1.0
        return pre * t * t2, pre * 3.0 * t2 * (t2 - 1.0) / rc
    rci = alpha * rc
    if r < rci or ctype == 0:
        return 1.0, 0.0
    iw = 1.0 / (rc - rci)
    x = (r - rci) * iw
    if ctype == 1:
        return 0.5 * (math.cos(math.pi * x) + 1.0), -0.5 * math.pi * iw * math.sin(math.pi * x)
    if ctype == 4:
        t = 1.0 / (x * x - 1.0)
        ex = math.exp(t)
        return _E * ex, -2.0 * _E * x * t * t * ex * iw
    if ctype == 5:
        return (2.0 * x - 3.0) * x * x + 1.0, x * (6.0 * x - 6.0) * iw
    if ctype == 6:
        return ((15.0 - 6.0 * x) * x - 10.0) * x * x * x + 1.0, x * x * ((60.0 - 30.0 * x) * x - 30.0) * iw
    x2 = x * x
    if ctype == 7:
        return ((x * (x * (20.0 * x - 70.0) + 84.0) - 35.0) * x2 * x2 + 1.0,
                x2 * x * (x * (x * (140.0 * x - 420.0) + 420.0) - 140.0) * iw)
    x4 = x2 * x2
    return ((x * (x * ((315.0 - 70.0 * x) * x - 540.0) + 420.0) - 126.0) * x * x4 + 1.0,
            x4 * (x * (x * ((2520.0 - 630.0 * x) * x - 3780.0) + 2520.0) - 630.0) * iw)
