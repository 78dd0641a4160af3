"""Atom-centred symmetry functions (ACSF): radial G2 and angular G4.

Source: J. Behler, "Atom-centered symmetry functions for constructing
high-dimensional neural network potentials", J. Chem. Phys. 134, 074106 (2011),
eqs. (4), (7) and (13)::

    fc(r)  = 0.5 (cos(pi r / rc) + 1)                        for r < rc, else 0
    G2_i   = sum_j  exp(-eta (r_ij - rs)^2) fc(r_ij)
    G4_i   = 2^(1-zeta) sum_{j<k} (1 + lambda cos theta_ijk)^zeta
                 exp(-eta (r_ij^2 + r_ik^2 + r_jk^2)) fc(r_ij) fc(r_ik) fc(r_jk)

with ``cos theta_ijk = r_ij . r_ik / (r_ij r_ik)`` and ``r_jk = r_ik - r_ij``.
The angular sum runs over unordered neighbour pairs (j < k), i.e. half of
Behler's double sum over j != k (a constant factor 2 only).

Features are resolved by the species of the neighbours (not of the centre
atom: a Behler-Parrinello model has one network per centre element):

* radial block, ``n_species * n_radial`` columns: column
  ``b * n_radial + k`` is G2 with ``(radial_eta[k], radial_rs[k])`` summed
  over neighbours of species ``b``;
* angular block, ``n_pairs * n_angular`` columns with
  ``n_pairs = n_species (n_species + 1) / 2`` (unordered species pairs
  b <= c, in the order (0,0), (0,1), ..., (1,1), ...) and
  ``n_angular = len(angular_eta) * len(zeta) * len(lambda_)`` (product grid,
  eta slowest, lambda fastest).

Units: distances Å, eta Å^-2, rs Å; the features are dimensionless.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from .base import Descriptor
from .cutoffs import cosine_cutoff

# ----------------------------------------------------------------------------- kernels


@numba.njit(cache=True, inline="always")
def _pow(x, z, zint):
    """x ** z for x >= 0; exponentiation by squaring when z is a (small) integer."""
    if zint >= 0:
        result = 1.0
        n = zint
        while n > 0:
            if n & 1:
                result *= x
            x *= x
            n >>= 1
        return result
    return x ** z


@numba.njit(cache=True, parallel=True)
def _acsf_kernel(D, neighbors, offsets, sidx, rc, rad_eta, rad_rs, ang_eta, zeta, lam, pair_idx,
                 n_species, mode, grad_q, q, jac, out):
    """mode 0: values into q; 1: values into q and Jacobian into jac (E, F, 3);
    2: values into q and vjp into out (E, 3) with grad_q (N, F)."""
    n_atoms = offsets.size - 1
    K = rad_eta.size
    nz = zeta.size
    nl = lam.size
    M = ang_eta.size * nz * nl
    ang0 = n_species * K
    # 2^(1 - zeta) and integer exponents zeta - 1 (-1: not an integer)
    pref = np.empty(nz)
    zm1 = np.empty(nz, np.int64)
    for iz in range(nz):
        pref[iz] = 2.0 ** (1.0 - zeta[iz])
        zm1[iz] = int(zeta[iz]) - 1 if zeta[iz] == int(zeta[iz]) and zeta[iz] <= 64 else -1
    for i in prange(n_atoms):
        s = offsets[i]
        t = offsets[i + 1]
        n = t - s
        r = np.empty(n)
        f = np.empty(n)
        df = np.empty(n)
        dcu = np.empty(3)
        dcv = np.empty(3)
        dCu = np.empty(3)
        dCv = np.empty(3)
        dBu = np.empty(3)
        dBv = np.empty(3)
        A_zl = np.empty(nz * nl)  # A(cos) and its (zeta - 1) power per (zeta, lambda): independent of eta
        P_zl = np.empty(nz * nl)
        for a in range(n):
            e = s + a
            rr = math.sqrt(D[e, 0] ** 2 + D[e, 1] ** 2 + D[e, 2] ** 2)
            r[a] = rr
            f[a], df[a] = cosine_cutoff(rr, rc, rc)
        # radial G2
        for a in range(n):
            e = s + a
            b = sidx[neighbors[e]]
            for k in range(K):
                x = r[a] - rad_rs[k]
                g = math.exp(-rad_eta[k] * x * x)
                col = b * K + k
                q[i, col] += g * f[a]
                if mode != 0:
                    dg = g * (df[a] - 2.0 * rad_eta[k] * x * f[a]) / r[a]
                    if mode == 1:
                        for c in range(3):
                            jac[e, col, c] += dg * D[e, c]
                    else:
                        w = grad_q[i, col] * dg
                        for c in range(3):
                            out[e, c] += w * D[e, c]
        if M == 0:
            continue
        # angular G4 over unordered pairs of neighbours; T = A(cos) B(r^2) C(fc)
        for a1 in range(n):
            e1 = s + a1
            b1 = sidx[neighbors[e1]]
            r1 = r[a1]
            for a2 in range(a1 + 1, n):
                e2 = s + a2
                w0 = D[e2, 0] - D[e1, 0]
                w1 = D[e2, 1] - D[e1, 1]
                w2 = D[e2, 2] - D[e1, 2]
                r3sq = w0 * w0 + w1 * w1 + w2 * w2
                if r3sq >= rc * rc:
                    continue
                r3 = math.sqrt(r3sq)
                r2 = r[a2]
                f3, df3 = cosine_cutoff(r3, rc, rc)
                C = f[a1] * f[a2] * f3
                dot = D[e1, 0] * D[e2, 0] + D[e1, 1] * D[e2, 1] + D[e1, 2] * D[e2, 2]
                cos = dot / (r1 * r2)
                rsq = r1 * r1 + r2 * r2 + r3sq
                p = pair_idx[b1, sidx[neighbors[e2]]]
                base_col = ang0 + p * M
                if mode != 0:
                    # u = D[e1], v = D[e2], w = v - u
                    for c in range(3):
                        u_c = D[e1, c]
                        v_c = D[e2, c]
                        w_c = D[e2, c] - D[e1, c]
                        dcu[c] = v_c / (r1 * r2) - cos * u_c / (r1 * r1)
                        dcv[c] = u_c / (r1 * r2) - cos * v_c / (r2 * r2)
                        d3 = f[a1] * f[a2] * df3 * w_c / r3
                        dCu[c] = df[a1] * f[a2] * f3 * u_c / r1 - d3
                        dCv[c] = f[a1] * df[a2] * f3 * v_c / r2 + d3
                        dBu[c] = u_c - w_c  # d(rsq)/du / 2
                        dBv[c] = v_c + w_c
                for iz in range(nz):
                    for il in range(nl):
                        base = 1.0 + lam[il] * cos
                        if base < 0.0:
                            base = 0.0
                        pz1 = pref[iz] * _pow(base, zeta[iz] - 1.0, zm1[iz])
                        P_zl[iz * nl + il] = pz1
                        A_zl[iz * nl + il] = pz1 * base
                # dT = alpha dcos + beta d(rsq)/2 + gamma dC
                sa = 0.0
                sb = 0.0
                sg = 0.0
                m = 0
                for ie in range(ang_eta.size):
                    eta = ang_eta[ie]
                    B = math.exp(-eta * rsq)
                    BC = B * C
                    for iz in range(nz):
                        z = zeta[iz]
                        for il in range(nl):
                            lm = lam[il]
                            pz1 = P_zl[iz * nl + il]
                            A = A_zl[iz * nl + il]
                            col = base_col + m
                            m += 1
                            q[i, col] += A * BC
                            if mode == 1:
                                alpha = z * lm * pz1 * BC
                                beta = -2.0 * eta * A * BC
                                gamma = A * B
                                for c in range(3):
                                    jac[e1, col, c] += alpha * dcu[c] + beta * dBu[c] + gamma * dCu[c]
                                    jac[e2, col, c] += alpha * dcv[c] + beta * dBv[c] + gamma * dCv[c]
                            elif mode == 2:
                                gq = grad_q[i, col]
                                sa += gq * z * lm * pz1 * BC
                                sb += gq * -2.0 * eta * A * BC
                                sg += gq * A * B
                if mode == 2:
                    for c in range(3):
                        out[e1, c] += sa * dcu[c] + sb * dBu[c] + sg * dCu[c]
                        out[e2, c] += sa * dcv[c] + sb * dBv[c] + sg * dCv[c]


# ----------------------------------------------------------------------------- class


def _as_1d(x, name):
    arr = np.atleast_1d(np.asarray(x, dtype=np.float64)).ravel()
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite numbers, got {arr.tolist()}")
    return np.ascontiguousarray(arr)


class ACSF(Descriptor):
    """Behler's radial G2 and angular G4 symmetry functions per neighbour species.

    Parameters
    ----------
    species : sequence of element symbols or atomic numbers the descriptor will see
    cutoff : float, Å, radius ``rc`` of the cosine cutoff (> 0)
    radial_eta : (n_radial,) Å^-2, widths of the G2 Gaussians (>= 0)
    radial_rs : (n_radial,) Å, their centres (same length as ``radial_eta``)
    angular_eta : (n_eta,) Å^-2, G4 exponents (>= 0); empty for no angular terms
    zeta : (n_zeta,) G4 angular exponents (>= 1)
    lambda_ : (n_lambda,) each +1 or -1

    Attributes
    ----------
    n_features : int, ``n_species * n_radial + n_pairs * n_eta * n_zeta * n_lambda``
    feature_names : list of str, one per column

    Raises
    ------
    ValueError
        Non-positive or non-finite cutoff, mismatched or invalid parameter
        arrays, unknown element symbols.
    UnknownElementError
        (from :meth:`compute` or the graph builders) for a structure holding an
        element not in ``species``.

    See :meth:`default` for a parameter set that works out of the box.
    """

    def __init__(self, species, cutoff, radial_eta, radial_rs, angular_eta=(), zeta=(1.0,), lambda_=(1.0, -1.0)):
        self._set_species(species)
        cutoff = float(cutoff)
        if not (np.isfinite(cutoff) and cutoff > 0):
            raise ValueError(f"cutoff must be a positive number of Å, got {cutoff}")
        self.cutoff = cutoff
        self.radial_eta = _as_1d(radial_eta, "radial_eta")
        self.radial_rs = _as_1d(radial_rs, "radial_rs")
        if self.radial_eta.shape != self.radial_rs.shape:
            raise ValueError(f"radial_eta ({self.radial_eta.size}) and radial_rs ({self.radial_rs.size}) "
                             "must have the same length")
        if (self.radial_eta < 0).any():
            raise ValueError("radial_eta must be >= 0")
        self.angular_eta = _as_1d(angular_eta, "angular_eta") if len(np.atleast_1d(angular_eta)) else np.zeros(0)
        self.zeta = _as_1d(zeta, "zeta")
        self.lambda_ = _as_1d(lambda_, "lambda_")
        if (self.angular_eta < 0).any():
            raise ValueError("angular_eta must be >= 0")
        if self.angular_eta.size and (self.zeta.size == 0 or self.lambda_.size == 0):
            raise ValueError("angular terms need at least one zeta and one lambda")
        if (self.zeta < 1).any():
            raise ValueError(f"zeta must be >= 1, got {self.zeta.tolist()}")
        if not np.all(np.isin(self.lambda_, (-1.0, 1.0))):
            raise ValueError(f"lambda_ values must be +1 or -1, got {self.lambda_.tolist()}")
        S = len(self.species)
        self.pair_index = np.zeros((S, S), np.int64)
        p = 0
        for b in range(S):
            for c in range(b, S):
                self.pair_index[b, c] = self.pair_index[c, b] = p
                p += 1
        self.n_pairs = p
        self.n_radial = self.radial_eta.size
        self.n_angular = self.angular_eta.size * self.zeta.size * self.lambda_.size if self.angular_eta.size else 0
        self.n_features = S * self.n_radial + self.n_pairs * self.n_angular
        if self.n_features == 0:
            raise ValueError("ACSF without any radial or angular function")

    # -- parameters ---------------------------------------------------------------------------

    @classmethod
    def default(cls, species, cutoff=5.0, n_radial=16, r_min=1.5, n_angular_eta=3, zeta=(1.0, 2.0, 4.0, 16.0),
                lambda_=(1.0, -1.0)):
        """A general-purpose parameter set.

        Radial: ``n_radial`` shifted Gaussians with centres ``rs`` on an
        equally spaced grid from ``r_min`` to ``cutoff`` (spacing ``dr``) and
        width ``eta = 1 / (2 dr^2)`` (neighbouring Gaussians cross at half
        height), the "shifted" scheme of Gastegger et al., J. Chem. Phys. 148,
        241709 (2018) / n2p2. Angular: G4 with ``rs = 0``, ``n_angular_eta``
        exponents ``eta = c / cutoff^2`` for ``c`` log-spaced in [0.25, 4]
        (for rc = 5 Å: 0.01 to 0.16 Å^-2), and the ``zeta`` x ``lambda_``
        grid (Behler 2011 uses zeta in {1, 2, 4, 16, ...}, lambda = +/-1).

        Parameters
        ----------
        species : elements (symbols or atomic numbers)
        cutoff : float, Å
        n_radial : int >= 1
        r_min : float, Å, centre of the first radial Gaussian (0 <= r_min < cutoff)
        n_angular_eta : int >= 0 (0: radial functions only)
        zeta, lambda_ : angular grids

        Returns
        -------
        ACSF with ``n_species * n_radial + n_pairs * n_angular_eta * len(zeta) * len(lambda_)`` features
        (40 for one element with the defaults).

        Several elements: radial functions per neighbour element, angular ones per unordered pair of
        neighbour elements (n_pairs = S (S + 1) / 2), the element resolution of Behler's G2/G4 in
        n2p2 and RuNNer. With the defaults that is 40, 104, 192 and 304 features for 1, 2, 3 and 4
        elements: the same order as TorchANI's ANI-1x AEV for H, C, N, O (16 radial shifts per element
        and 4 radial x 8 angular sections per element pair: 384 features; Smith et al., Chem. Sci. 8,
        3192 (2017)). n2p2 and RuNNer have no default: their users list functions by hand, typically
        6-12 radial per element and a few angular per element pair. For 5 or more elements lower
        ``n_angular_eta`` (or give ``zeta=(1.0, 4.0)``): the angular block grows as S^2.

        Raises
        ------
        ValueError for a non-positive cutoff, ``n_radial < 1`` or ``r_min`` outside [0, cutoff).
        """
        cutoff = float(cutoff)
        if not (np.isfinite(cutoff) and cutoff > 0):
            raise ValueError(f"cutoff must be a positive number of Å, got {cutoff}")
        n_radial = int(n_radial)
        if n_radial < 1:
            raise ValueError(f"n_radial must be >= 1, got {n_radial}")
        if not 0 <= r_min < cutoff:
            raise ValueError(f"r_min must lie in [0, cutoff), got {r_min}")
        if n_radial == 1:
            rs = np.array([0.0])
            eta = np.array([1.0 / cutoff ** 2])
        else:
            rs = np.linspace(r_min, cutoff, n_radial)
            dr = rs[1] - rs[0]
            eta = np.full(n_radial, 0.5 / dr ** 2)
        n_angular_eta = int(n_angular_eta)
        if n_angular_eta < 0:
            raise ValueError("n_angular_eta must be >= 0")
        if n_angular_eta == 1:
            ang = np.array([1.0 / cutoff ** 2])
        else:
            ang = np.geomspace(0.25, 4.0, n_angular_eta) / cutoff ** 2 if n_angular_eta else np.zeros(0)
        return cls(species, cutoff, eta, rs, ang, zeta, lambda_)

    def parameters(self):
        """JSON-able dict; ``ACSF(**d)`` rebuilds the descriptor."""
        return {"species": list(self.species), "cutoff": self.cutoff,
                "radial_eta": self.radial_eta.tolist(), "radial_rs": self.radial_rs.tolist(),
                "angular_eta": self.angular_eta.tolist(), "zeta": self.zeta.tolist(),
                "lambda_": self.lambda_.tolist()}

    @property
    def feature_names(self):
        """One name per column, independent of the species order (pairs written by atomic number)."""
        from ase.data import chemical_symbols as cs

        names = []
        for b in range(len(self.species)):
            for eta, rs in zip(self.radial_eta, self.radial_rs):
                names.append(f"G2[{cs[self.species[b]]}](eta={eta:.4g},rs={rs:.4g})")
        for b in range(len(self.species)):
            for c in range(b, len(self.species)):
                for eta in self.angular_eta:
                    for z in self.zeta:
                        for lm in self.lambda_:
                            pair = "".join(cs[z] for z in sorted((self.species[b], self.species[c])))
                            names.append(f"G4[{pair}]"
                                         f"(eta={eta:.4g},zeta={z:.4g},lambda={lm:+.0f})")
        return names

    def __repr__(self):
        return (f"ACSF(species={list(self.species)}, cutoff={self.cutoff}, n_radial={self.n_radial}, "
                f"n_angular={self.n_angular}, n_features={self.n_features})")

    # -- kernels --------------------------------------------------------------------------------

    def _run(self, edge_vectors, centers, neighbors, species_index, n_atoms, mode, grad_q=None):
        n_atoms = int(n_atoms)
        D, neighbors, sidx, offsets = self._kernel_inputs(edge_vectors, centers, neighbors, species_index, n_atoms)
        q, jac, out, grad_q = self._outputs(n_atoms, len(D), mode, grad_q)
        _acsf_kernel(D, neighbors, offsets, sidx, self.cutoff, self.radial_eta, self.radial_rs,
                     self.angular_eta, self.zeta, self.lambda_, self.pair_index, len(self.species),
                     mode, grad_q, q, jac, out)
        return q, jac, out
