"""SOAP power spectrum (smooth overlap of atomic positions), as GAP/QUIP computes it.

Sources
-------
* A. P. Bartók, R. Kondor, G. Csányi, "On representing chemical
  environments", Phys. Rev. B 87, 184115 (2013) -- the power spectrum.
* GAP (libAtoms/GAP, ``descriptors.f95``: ``soap_initialise``,
  ``soap_calc``) -- the radial basis, normalisations and feature order
  reproduced here, so that values equal quippy's ``soap`` descriptor
  (``quippy.descriptors.Descriptor("soap ...")``, without its trailing
  ``covariance_sigma0`` entry).
* F. Musil et al., "Efficient implementation of atom-density
  representations", J. Chem. Phys. 154, 114109 (2021), and F. Bigi et al.,
  "Fast evaluation of spherical harmonics with sphericart", J. Chem. Phys.
  159, 064802 (2023) -- Cartesian recurrences for real spherical harmonics.

Definition
----------
The density around atom i is a sum of Gaussians of width ``atom_sigma``
(alpha = 1 / (2 atom_sigma^2)) on the neighbours j (r_ij < cutoff), each
weighted by the cosine cutoff ``f_c(r)`` (1 below ``cutoff -
cutoff_transition_width``, ``(cos(pi (r - cutoff + w) / w) + 1) / 2`` in the
transition region), one density per species channel, plus a Gaussian of
weight ``central_weight`` on the centre itself (in its own species channel,
or in all of them with ``central_reference_all_species``). Expanded in
real spherical harmonics Y_lm and GAP's radial basis, its coefficients are

    c_{s n l m} = sum_{j of species s} f_c(r_ij) g_{nl}(r_ij) Y_lm(r_ij / |r_ij|)
    g_{nl}(r)   = sum_a exp(-alpha (r^2 + r_a^2)) i_l(2 alpha r r_a) T_{an}

with i_l the modified spherical Bessel function of the first kind.

Radial basis (GAP's, not dscribe's GTOs): Gaussians of width atom_sigma
centred at r_a = (a - 1) * r_b / n_max, a = 1..n_max, where
r_b = cutoff + atom_sigma * sqrt(2 * 10 * ln 10) (GAP's
``basis_error_exponent = 10``); with S the overlap matrix of these Gaussians
(weight r^2 on [0, inf)), L its lower Cholesky factor and C_ab =
exp(-alpha (r_a - r_b)^2), ``T = C^{-1} L``.

Power spectrum, one entry per unique pair of channels (s n) >= (s' n')
(channel index k = s * n_max + n, pairs ordered k outer, k' <= k inner) and
per l (innermost):

    p_{k k' l} = w_{kk'} / sqrt(2 l + 1) * sum_m c_{k l m} c_{k' l m},
    w = sqrt(2) off the diagonal, 1 on it,

``n_features = K (K + 1) / 2 * (l_max + 1)`` with K = n_species * n_max,
divided by its Euclidean norm when ``normalise``.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange
from scipy.special import erf, factorial

from .base import Descriptor
from .cutoffs import cosine_cutoff

_SQRT2 = math.sqrt(2.0)
_SERIES_X = 1.0  # below this argument i_l(x) is summed as a power series (the recurrence loses digits)
_MAX_L = 20
_MAX_N = 30


# ----------------------------------------------------------------------------- per-edge terms

@numba.njit(cache=True)
def _real_sph(x, y, z, l_max, F, Q, cs, sn, Y, dY, grad):
    """Real spherical harmonics Y[l*l + l + m] of the unit vector (x, y, z) and,
    with ``grad``, their Cartesian gradients dY[lm, :] (of the harmonic polynomials
    r^l Y_lm, evaluated at r = 1). Bigi et al. (2023) recurrences."""
    cs[0] = 1.0
    sn[0] = 0.0
    for m in range(1, l_max + 1):
        cs[m] = x * cs[m - 1] - y * sn[m - 1]
        sn[m] = x * sn[m - 1] + y * cs[m - 1]
    r2 = x * x + y * y + z * z
    Q[0, 0] = 1.0
    for l in range(1, l_max + 1):
        Q[l, l] = -(2 * l - 1) * Q[l - 1, l - 1]
        Q[l, l - 1] = -z * Q[l, l]
        for m in range(l - 2, -1, -1):
            Q[l, m] = ((2 * l - 1) * z * Q[l - 1, m] - r2 * (l + m - 1) * Q[l - 2, m]) / (l - m)
    for l in range(l_max + 1):
        c0 = l * l + l
        Y[c0] = F[l, 0] * Q[l, 0] / _SQRT2
        for m in range(1, l + 1):
            Y[c0 + m] = F[l, m] * Q[l, m] * cs[m]
            Y[c0 - m] = F[l, m] * Q[l, m] * sn[m]
        if grad:
            # dQ_l^m/dx = x Q_{l-1}^{m+1}, dQ/dy = y Q_{l-1}^{m+1}, dQ/dz = (l+m) Q_{l-1}^m
            for m in range(0, l + 1):
                qp = Q[l - 1, m + 1] if m + 1 <= l - 1 else 0.0
                qz = (l + m) * Q[l - 1, m] if m <= l - 1 else 0.0
                dqx = x * qp
                dqy = y * qp
                if m == 0:
                    f = F[l, 0] / _SQRT2
                    dY[c0, 0] = f * dqx
                    dY[c0, 1] = f * dqy
                    dY[c0, 2] = f * qz
                else:
                    f = F[l, m]
                    q = Q[l, m]
                    dY[c0 + m, 0] = f * (dqx * cs[m] + q * m * cs[m - 1])
                    dY[c0 + m, 1] = f * (dqy * cs[m] - q * m * sn[m - 1])
                    dY[c0 + m, 2] = f * qz * cs[m]
                    dY[c0 - m, 0] = f * (dqx * sn[m] + q * m * sn[m - 1])
                    dY[c0 - m, 1] = f * (dqy * sn[m] + q * m * cs[m - 1])
                    dY[c0 - m, 2] = f * qz * sn[m]


@numba.njit(cache=True)
def _gauss_bessel(r, ra, alpha, l_top, f):
    """f[l] = exp(-alpha (r^2 + ra^2)) i_l(2 alpha r ra), l = 0..l_top (GAP's recurrence)."""
    xb = 2.0 * alpha * r * ra
    if xb == 0.0:
        f[:] = 0.0
        f[0] = math.exp(-alpha * (r * r + ra * ra))
    elif xb < _SERIES_X:
        e = math.exp(-alpha * (r * r + ra * ra))
        h = 0.5 * xb * xb
        lead = e
        for l in range(l_top + 1):
            if l > 0:
                lead *= xb / (2 * l + 1)  # x^l / (2l+1)!!
            term = 1.0
            s = 1.0
            for k in range(1, 30):
                term *= h / (k * (2 * l + 2 * k + 1))
                s += term
                if term < 1e-17 * s:
                    break
            f[l] = lead * s
    else:
        exp_p = math.exp(-alpha * (r + ra) ** 2)
        exp_m = math.exp(-alpha * (r - ra) ** 2)
        fm = 0.5 * (exp_m + exp_p) / xb  # "l = -1"
        f[0] = 0.5 * (exp_m - exp_p) / xb
        if l_top >= 1:
            f[1] = fm - f[0] / xb
        for l in range(2, l_top + 1):
            f[l] = f[l - 2] - (2 * l - 1) * f[l - 1] / xb


@numba.njit(cache=True)
def _edge_terms(d, r_basis, T, alpha, cutoff, width, l_max, F,
                fb, Q, cs, sn, R, dR, Y, dY, u, grad):
    """Radial R[l, n] = f_c g_nl(r) (and dR = d/dr), angular Y[lm] of the
    direction u and dY[lm, :] = dY/d(edge vector), for one edge vector d.
    Returns r."""
    n_max = r_basis.shape[0]
    r = math.sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2])
    u[0] = d[0] / r
    u[1] = d[1] / r
    u[2] = d[2] / r
    fc, dfc = cosine_cutoff(r, cutoff, width)
    l_top = l_max + 1 if grad else l_max
    for a in range(n_max):
        _gauss_bessel(r, r_basis[a], alpha, l_top, fb[a])
    for l in range(l_max + 1):
        for n in range(n_max):
            g = 0.0
            dg = 0.0
            for a in range(n_max):
                g += fb[a, l] * T[a, n]
                if grad:
                    # d/dr [e i_l(x)] = -2 alpha r e i_l + e (l/r i_l + 2 alpha ra i_{l+1})
                    dg += (fb[a, l] * (l / r - 2.0 * alpha * r)
                           + 2.0 * alpha * r_basis[a] * fb[a, l + 1]) * T[a, n]
            R[l, n] = fc * g
            if grad:
                dR[l, n] = fc * dg + dfc * g
    _real_sph(u[0], u[1], u[2], l_max, F, Q, cs, sn, Y, dY, grad)
    if grad:
        # Y(u) with u = d / r:  dY/dd = (grad Y(u) - l Y(u) u) / r  (Y homogeneous of degree l)
        for l in range(l_max + 1):
            for lm in range(l * l, (l + 1) * (l + 1)):
                for k in range(3):
                    dY[lm, k] = (dY[lm, k] - l * Y[lm] * u[k]) / r
    return r


# ----------------------------------------------------------------------------- per-atom pieces

@numba.njit(cache=True)
def _coefficients(i, lo, hi, edge_vectors, neighbors, species_index, r_basis, T, center_coef,
                  alpha, cutoff, width, l_max, F, central_all, c, Rb, dRb, Yb, dYb, ub, grad):
    """Density coefficients c[k, lm] of atom i (edges lo:hi). Per-edge radial and
    angular terms are kept in Rb, dRb, Yb, dYb, ub (index e - lo) when ``grad``."""
    n_max = r_basis.shape[0]
    LM = (l_max + 1) ** 2
    K = c.shape[0]
    n_sp = K // n_max
    fb = np.empty((n_max, l_max + 2))
    Q = np.zeros((l_max + 2, l_max + 2))
    cs = np.empty(l_max + 1)
    sn = np.empty(l_max + 1)
    R = np.empty((l_max + 1, n_max))
    dR = np.empty((l_max + 1, n_max))
    Y = np.empty(LM)
    dY = np.empty((LM, 3))
    u = np.empty(3)
    c[:, :] = 0.0
    y00 = 1.0 / math.sqrt(4.0 * math.pi)
    si = species_index[i]
    for s in range(n_sp):
        if central_all or s == si:
            for n in range(n_max):
                c[s * n_max + n, 0] += center_coef[n] * y00
    for e in range(lo, hi):
        _edge_terms(edge_vectors[e], r_basis, T, alpha, cutoff, width, l_max, F,
                    fb, Q, cs, sn, R, dR, Y, dY, u, grad)
        k0 = species_index[neighbors[e]] * n_max
        for l in range(l_max + 1):
            for n in range(n_max):
                rv = R[l, n]
                for lm in range(l * l, (l + 1) * (l + 1)):
                    c[k0 + n, lm] += rv * Y[lm]
        if grad:
            j = e - lo
            Rb[j] = R
            dRb[j] = dR
            Yb[j] = Y
            dYb[j] = dY
            ub[j] = u


@numba.njit(cache=True)
def _power(c, l_max, pair_a, pair_b, p):
    """Power spectrum p[f], f = pair * (l_max + 1) + l, of coefficients c[k, lm]; returns |p|."""
    L1 = l_max + 1
    for q in range(pair_a.shape[0]):
        ka = pair_a[q]
        kb = pair_b[q]
        w = 1.0 if ka == kb else _SQRT2
        for l in range(L1):
            s = 0.0
            for lm in range(l * l, (l + 1) * (l + 1)):
                s += c[ka, lm] * c[kb, lm]
            p[q * L1 + l] = s * w / math.sqrt(2.0 * l + 1.0)
    nrm = 0.0
    for f in range(p.shape[0]):
        nrm += p[f] * p[f]
    return math.sqrt(nrm)


# ----------------------------------------------------------------------------- kernels

@numba.njit(cache=True, parallel=True)
def _values_kernel(edge_vectors, neighbors, species_index, offsets, r_basis, T, center_coef,
                   alpha, cutoff, width, l_max, F, central_all, pair_a, pair_b, K, normalise):
    n_atoms = offsets.shape[0] - 1
    LM = (l_max + 1) ** 2
    nf = pair_a.shape[0] * (l_max + 1)
    out = np.zeros((n_atoms, nf))
    no3 = np.empty((1, 1, 1))  # per-edge buffers, unused without gradients
    no2 = np.empty((1, 1))
    for i in prange(n_atoms):
        c = np.empty((K, LM))
        _coefficients(i, offsets[i], offsets[i + 1], edge_vectors, neighbors, species_index,
                      r_basis, T, center_coef, alpha, cutoff, width, l_max, F, central_all, c,
                      no3, no3, no2, no3, no2, False)
        p = out[i]
        nrm = _power(c, l_max, pair_a, pair_b, p)
        if normalise:
            if nrm > 0.0:
                for f in range(nf):
                    p[f] /= nrm
    return out


@numba.njit(cache=True)
def _atom_forward_grad(i, lo, hi, edge_vectors, neighbors, species_index, r_basis, T, center_coef,
                       alpha, cutoff, width, l_max, F, central_all, pair_a, pair_b, K):
    """Coefficients, per-edge terms and raw power spectrum of atom i (for gradients)."""
    n_max = r_basis.shape[0]
    LM = (l_max + 1) ** 2
    ne = hi - lo
    c = np.empty((K, LM))
    Rb = np.empty((ne, l_max + 1, n_max))
    dRb = np.empty((ne, l_max + 1, n_max))
    Yb = np.empty((ne, LM))
    dYb = np.empty((ne, LM, 3))
    ub = np.empty((ne, 3))
    _coefficients(i, lo, hi, edge_vectors, neighbors, species_index, r_basis, T, center_coef,
                  alpha, cutoff, width, l_max, F, central_all, c, Rb, dRb, Yb, dYb, ub, True)
    p = np.empty(pair_a.shape[0] * (l_max + 1))
    nrm = _power(c, l_max, pair_a, pair_b, p)
    return c, Rb, dRb, Yb, dYb, ub, p, nrm


@numba.njit(cache=True, parallel=True)
def _jacobian_kernel(edge_vectors, neighbors, species_index, offsets, r_basis, T, center_coef,
                     alpha, cutoff, width, l_max, F, central_all, pair_a, pair_b, K, normalise):
    n_atoms = offsets.shape[0] - 1
    n_max = r_basis.shape[0]
    L1 = l_max + 1
    n_pairs = pair_a.shape[0]
    nf = n_pairs * L1
    q_out = np.zeros((n_atoms, nf))
    jac = np.empty((edge_vectors.shape[0], nf, 3))  # every entry is written below
    tlpo = np.empty(L1)
    for l in range(L1):
        tlpo[l] = 1.0 / math.sqrt(2.0 * l + 1.0)
    for i in prange(n_atoms):
        lo = offsets[i]
        hi = offsets[i + 1]
        c, Rb, dRb, Yb, dYb, ub, p, nrm = _atom_forward_grad(
            i, lo, hi, edge_vectors, neighbors, species_index, r_basis, T, center_coef,
            alpha, cutoff, width, l_max, F, central_all, pair_a, pair_b, K)
        scale = 1.0
        if normalise:
            scale = 1.0 / nrm if nrm > 0.0 else 0.0
        for f in range(nf):
            q_out[i, f] = p[f] * scale
        cT = np.ascontiguousarray(c.T)  # (LM, K)
        D = np.empty((n_max, L1, 3, K))
        for e in range(lo, hi):
            j = e - lo
            s = species_index[neighbors[e]]
            # D[a, l, :, k] = sum_m d c[s a, lm]/d r_e * c[k, lm]
            D[:] = 0.0
            for l in range(L1):
                for a in range(n_max):
                    dr = dRb[j, l, a]
                    rv = Rb[j, l, a]
                    for lm in range(l * l, (l + 1) * (l + 1)):
                        y = Yb[j, lm]
                        for x in range(3):
                            dcx = dr * ub[j, x] * y + rv * dYb[j, lm, x]
                            for k in range(K):
                                D[a, l, x, k] += dcx * cT[lm, k]
            J = jac[e]
            for qq in range(n_pairs):
                ka = pair_a[qq]
                kb = pair_b[qq]
                w = 1.0 if ka == kb else _SQRT2
                ina = ka // n_max == s
                inb = kb // n_max == s
                for l in range(L1):
                    f = qq * L1 + l
                    for x in range(3):
                        v = 0.0
                        if ina:
                            v += D[ka % n_max, l, x, kb]
                        if inb:
                            v += D[kb % n_max, l, x, ka]
                        J[f, x] = v * w * tlpo[l]
            if normalise:
                for x in range(3):
                    qdp = 0.0
                    for f in range(nf):
                        qdp += q_out[i, f] * J[f, x]
                    for f in range(nf):
                        J[f, x] = (J[f, x] - q_out[i, f] * qdp) * scale
    return q_out, jac


@numba.njit(cache=True, parallel=True)
def _vjp_kernel(edge_vectors, neighbors, species_index, offsets, r_basis, T, center_coef,
                alpha, cutoff, width, l_max, F, central_all, pair_a, pair_b, K, normalise, grad_q):
    n_atoms = offsets.shape[0] - 1
    n_max = r_basis.shape[0]
    L1 = l_max + 1
    LM = L1 * L1
    n_pairs = pair_a.shape[0]
    nf = n_pairs * L1
    out = np.zeros((edge_vectors.shape[0], 3))
    for i in prange(n_atoms):
        lo = offsets[i]
        hi = offsets[i + 1]
        if hi == lo:
            continue
        c, Rb, dRb, Yb, dYb, ub, p, nrm = _atom_forward_grad(
            i, lo, hi, edge_vectors, neighbors, species_index, r_basis, T, center_coef,
            alpha, cutoff, width, l_max, F, central_all, pair_a, pair_b, K)
        # gp = dL/dp (through the normalisation q = p / |p|)
        gp = np.empty(nf)
        if normalise:
            if nrm == 0.0:
                continue
            qg = 0.0
            for f in range(nf):
                qg += p[f] * grad_q[i, f]
            qg /= nrm * nrm
            for f in range(nf):
                gp[f] = (grad_q[i, f] - p[f] * qg) / nrm
        else:
            for f in range(nf):
                gp[f] = grad_q[i, f]
        # H[l, k, k'] symmetric with dL/dc[k, lm] = sum_k' H[l, k, k'] c[k', lm]
        H = np.zeros((L1, K, K))
        for qq in range(n_pairs):
            ka = pair_a[qq]
            kb = pair_b[qq]
            for l in range(L1):
                h = gp[qq * L1 + l] / math.sqrt(2.0 * l + 1.0)
                if ka == kb:
                    H[l, ka, ka] += 2.0 * h
                else:
                    h *= _SQRT2
                    H[l, ka, kb] += h
                    H[l, kb, ka] += h
        Gc = np.zeros((K, LM))
        for l in range(L1):
            for ka in range(K):
                for kb in range(K):
                    hv = H[l, ka, kb]
                    if hv != 0.0:
                        for lm in range(l * l, (l + 1) * (l + 1)):
                            Gc[ka, lm] += hv * c[kb, lm]
        for e in range(lo, hi):
            j = e - lo
            k0 = species_index[neighbors[e]] * n_max
            gx = 0.0
            gy = 0.0
            gz = 0.0
            radial = 0.0
            for l in range(L1):
                for lm in range(l * l, (l + 1) * (l + 1)):
                    t_r = 0.0
                    t_d = 0.0
                    for a in range(n_max):
                        g = Gc[k0 + a, lm]
                        t_r += g * Rb[j, l, a]
                        t_d += g * dRb[j, l, a]
                    radial += t_d * Yb[j, lm]
                    gx += t_r * dYb[j, lm, 0]
                    gy += t_r * dYb[j, lm, 1]
                    gz += t_r * dYb[j, lm, 2]
            out[e, 0] = gx + radial * ub[j, 0]
            out[e, 1] = gy + radial * ub[j, 1]
            out[e, 2] = gz + radial * ub[j, 2]
    return out


# ----------------------------------------------------------------------------- basis set-up

def gap_radial_basis(n_max, cutoff, atom_sigma, basis_error_exponent=10.0):
    """GAP's radial basis: centres ``r_basis`` (n_max,) Å, transform ``T``
    (n_max, n_max) and lower Cholesky factor ``L`` of the overlap matrix
    (see the module docstring; ``soap_initialise`` in GAP's descriptors.f95).

    Raises ValueError when the overlap matrix is not positive definite
    (n_max too large for this cutoff / atom_sigma).
    """
    alpha = 0.5 / atom_sigma ** 2
    r_cut_basis = cutoff + atom_sigma * math.sqrt(2.0 * basis_error_exponent * math.log(10.0))
    r = np.arange(n_max) * (r_cut_basis / n_max)
    ri, rj = r[None, :], r[:, None]
    cov = np.exp(-alpha * (ri - rj) ** 2)
    s = ri + rj
    overlap = (np.exp(-alpha * (ri ** 2 + rj ** 2)) * math.sqrt(2.0) * alpha ** 1.5 * s
               + alpha * np.exp(-0.5 * alpha * (ri - rj) ** 2) * math.sqrt(math.pi)
               * (1.0 + alpha * s ** 2) * (1.0 + erf(math.sqrt(alpha / 2.0) * s)))
    overlap /= math.sqrt(128.0 * alpha ** 5)
    try:
        L = np.linalg.cholesky(overlap)
        T = np.linalg.solve(cov, L)
    except np.linalg.LinAlgError as exc:
        raise ValueError(f"SOAP radial basis is singular for n_max={n_max}, cutoff={cutoff}, "
                         f"atom_sigma={atom_sigma}: lower n_max or raise atom_sigma") from exc
    if not np.all(np.isfinite(T)):
        raise ValueError(f"SOAP radial basis is singular for n_max={n_max}, cutoff={cutoff}, "
                         f"atom_sigma={atom_sigma}: lower n_max or raise atom_sigma")
    return r, np.ascontiguousarray(T), np.ascontiguousarray(L)


def _sph_prefactors(l_max):
    """F[l, m] = (-1)^m sqrt((2l+1)/(2 pi) (l-m)!/(l+m)!) of the real spherical harmonics."""
    F = np.zeros((l_max + 1, l_max + 1))
    for l in range(l_max + 1):
        for m in range(l + 1):
            F[l, m] = (-1) ** m * math.sqrt((2 * l + 1) / (2 * math.pi)
                                            * factorial(l - m, exact=True) / factorial(l + m, exact=True))
    return F


def _check_int(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"SOAP {name} must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"SOAP {name} must be in [{lo}, {hi}], got {value}")
    return int(value)


class SOAP(Descriptor):
    """SOAP power spectrum of each atom, equal to GAP/quippy's ``soap`` descriptor.

    Parameters (names and defaults as GAP's)
    ----------------------------------------
    species : sequence of element symbols or atomic numbers (channel order)
    cutoff : float, Å, > 0
    cutoff_transition_width : float, Å, in [0, cutoff): width of the cosine
        switch-off below the cutoff
    n_max : int in [1, 30], number of radial basis functions
    l_max : int in [0, 20], spherical-harmonics band limit
    atom_sigma : float, Å, > 0: width of the atomic Gaussians
    normalise : bool, divide each atom's vector by its norm
    central_weight : float >= 0, weight of the centre's own Gaussian
    central_reference_all_species : bool or None; put the centre's Gaussian in
        every species channel. None = GAP's default (True for one species,
        False otherwise).

    Attributes
    ----------
    n_features : K (K + 1) / 2 * (l_max + 1), K = len(species) * n_max
    r_basis, transform : the radial basis (see :func:`gap_radial_basis`)

    Values are dimensionless (normalised) or in GAP's units (unnormalised);
    gradients are per Å. Kernels take center-sorted full-neighbour-list edges
    (see :class:`~ase_mlcalc.descriptors.base.Descriptor`).

    Raises
    ------
    ValueError
        on parameters out of range; UnknownElementError (a ValueError) from
        :meth:`compute` for elements not in ``species``.
    """

    def __init__(self, species, cutoff=5.0, cutoff_transition_width=0.5, n_max=8, l_max=6,
                 atom_sigma=0.5, normalise=True, central_weight=1.0,
                 central_reference_all_species=None):
        self._set_species(species)
        self.n_max = _check_int("n_max", n_max, 1, _MAX_N)
        self.l_max = _check_int("l_max", l_max, 0, _MAX_L)
        cutoff = float(cutoff)
        atom_sigma = float(atom_sigma)
        width = float(cutoff_transition_width)
        central_weight = float(central_weight)
        if not (np.isfinite(cutoff) and cutoff > 0):
            raise ValueError(f"SOAP cutoff must be a positive number of Å, got {cutoff}")
        if not (np.isfinite(atom_sigma) and atom_sigma > 0):
            raise ValueError(f"SOAP atom_sigma must be a positive number of Å, got {atom_sigma}")
        if not (np.isfinite(width) and 0.0 <= width < cutoff):
            raise ValueError(f"SOAP cutoff_transition_width must be in [0, cutoff={cutoff}), got {width}")
        if not (np.isfinite(central_weight) and central_weight >= 0):
            raise ValueError(f"SOAP central_weight must be >= 0, got {central_weight}")
        self.cutoff = cutoff
        self.cutoff_transition_width = width
        self.atom_sigma = atom_sigma
        self.normalise = bool(normalise)
        self.central_weight = central_weight
        if central_reference_all_species is None:
            central_reference_all_species = len(self.species) == 1
        self.central_reference_all_species = bool(central_reference_all_species)

        self.alpha = 0.5 / atom_sigma ** 2
        self.r_basis, self.transform, L = gap_radial_basis(self.n_max, cutoff, atom_sigma)
        # the centre: a Gaussian at r = 0 has g_n = (e_1 C^-1 L)_n = L[0, n] (l = 0 only)
        self._center_coef = np.ascontiguousarray(central_weight * L[0])
        self._F = _sph_prefactors(self.l_max)
        self.n_channels = len(self.species) * self.n_max
        K = self.n_channels
        a, b = np.tril_indices(K)  # row-major: k outer, k' <= k inner, as GAP
        self._pair_a = a.astype(np.int64)
        self._pair_b = b.astype(np.int64)
        self.n_features = len(a) * (self.l_max + 1)

    def __repr__(self):
        from ase.data import chemical_symbols
        sp = [chemical_symbols[z] for z in self.species]
        return (f"SOAP(species={sp}, cutoff={self.cutoff}, cutoff_transition_width="
                f"{self.cutoff_transition_width}, n_max={self.n_max}, l_max={self.l_max}, "
                f"atom_sigma={self.atom_sigma}, normalise={self.normalise})")

    def _args(self, edge_vectors, centers, neighbors, species_index, n_atoms):
        return (*self._kernel_inputs(edge_vectors, centers, neighbors, species_index, n_atoms), self.r_basis, self.transform, self._center_coef,
                self.alpha, self.cutoff, self.cutoff_transition_width, self.l_max, self._F,
                self.central_reference_all_species, self._pair_a, self._pair_b,
                self.n_channels, self.normalise)

    def values(self, edge_vectors, centers, neighbors, species_index, n_atoms):
        """(n_atoms, n_features) float64 descriptors."""
        return _values_kernel(*self._args(edge_vectors, centers, neighbors, species_index, n_atoms))

    def values_and_jacobian(self, edge_vectors, centers, neighbors, species_index, n_atoms):
        """``(q (n_atoms, n_features), jacobian (n_edges, n_features, 3))``,
        ``jacobian[e] = d q[centers[e]] / d edge_vectors[e]`` (1/Å)."""
        return _jacobian_kernel(*self._args(edge_vectors, centers, neighbors, species_index, n_atoms))

    def vjp(self, edge_vectors, centers, neighbors, species_index, n_atoms, grad_q):
        """(n_edges, 3): ``sum_f grad_q[centers[e], f] * jacobian[e, f, :]`` without the Jacobian."""
        g = self._grad_q(grad_q, n_atoms)
        return _vjp_kernel(*self._args(edge_vectors, centers, neighbors, species_index, n_atoms), g)
