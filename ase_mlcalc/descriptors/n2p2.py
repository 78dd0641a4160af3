"""n2p2 / RuNNer atom-centred symmetry functions: types 2, 3 and 9 with n2p2's nine cutoff functions.

Definitions as in the n2p2 documentation (https://compphysvienna.github.io/n2p2/), page
"Symmetry function types" (``api/symmetry_function_types.html``: the doc comments of
``nnp::SymFncExpRad``, ``nnp::SymFncExpAngn``, ``nnp::SymFncExpAngw``) and the keyword
``symfunction_short`` (``topics/keywords.html#symfunction-short``)::

    type 2 (SymFncExpRad, radial):
        G_i = sum_{j != i, Z_j = e1} exp(-eta (r_ij - rs)^2) fc(r_ij)
    type 3 (SymFncExpAngn, angular "narrow"; Behler & Parrinello, PRL 98, 146401 (2007)):
        G_i = 2^(1-zeta) sum_{j<k, {Z_j, Z_k} = {e1, e2}} (1 + lambda cos theta_ijk)^zeta
              exp(-eta [(r_ij - rs)^2 + (r_ik - rs)^2 + (r_jk - rs)^2]) fc(r_ij) fc(r_ik) fc(r_jk)
    type 9 (SymFncExpAngw, angular "wide"; Behler, J. Chem. Phys. 134, 074106 (2011)):
        G_i = 2^(1-zeta) sum_{j<k, {Z_j, Z_k} = {e1, e2}} (1 + lambda cos theta_ijk)^zeta
              exp(-eta [(r_ij - rs)^2 + (r_ik - rs)^2]) fc(r_ij) fc(r_ik)

with ``cos theta_ijk = r_ij . r_ik / (r_ij r_ik)``; the pair sum runs over unordered pairs of
neighbour images (periodic images of i itself included) and, as in n2p2's code, a term is 0
where ``1 + lambda cos theta <= 0``. Every function has its own neighbour element(s), eta, rs,
lambda, zeta and radius rc; the cutoff function type and the inner-cutoff fraction alpha are
global (n2p2's ``cutoff_type <type> [<alpha>]``, see
:func:`~ase_mlcalc.descriptors.cutoffs.n2p2_cutoff` and
https://compphysvienna.github.io/n2p2/api/cutoff_functions.html).

Order of an element's functions (not documented by n2p2; its ``Element::sortSymmetryFunctions``
with the classes' ``operator<``): type, rc, eta, rs, zeta, lambda, e1, e2 (elements by atomic
number, e1 <= e2). This is the order of ``scaling.data`` rows and of the networks' inputs
(:func:`sort_key`).

Feature layout ("per-centre-element, padded"): centre element s has its own list of F_s
functions; ``n_features = max_s F_s``; column k of an atom of element s holds the k-th function of
element s, columns k >= F_s of that atom are 0. (ase_mlcalc's :class:`~ase_mlcalc.descriptors.ACSF`
is the special case of types 2 and 3 with rs = 0 in the angular terms, CT_COS, alpha = 0, one list
for all elements.)

Units: Å (eta in Å^-2, rs and rc in Å); the values are dimensionless.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from ..species import as_atomic_numbers, symbols
from .acsf import _pow
from .base import Descriptor
from .cutoffs import N2P2_CUTOFF_TYPES, n2p2_cutoff

#: implemented n2p2 symmetry function types
SF_TYPES = (2, 3, 9)

# ----------------------------------------------------------------------------- kernels


@numba.njit(cache=True)
def n2p2_cutoff_values(r, rc, ctype, alpha):
    """:func:`~ase_mlcalc.descriptors.cutoffs.n2p2_cutoff` on an array ``r`` (n,) float64:
    ``(fc (n,), dfc/dr (n,))``, 0 for r >= rc."""
    f = np.zeros(r.size)
    df = np.zeros(r.size)
    for k in range(r.size):
        f[k], df[k] = n2p2_cutoff(r[k], rc, ctype, alpha)
    return f, df


@numba.njit(cache=True, inline="always")
def _powm1(base, zeta, zint):
    """base ** (zeta - 1) for base > 0; exponentiation by squaring when zeta is a small positive integer."""
    return _pow(base, zeta - 1.0, zint - 1 if zint >= 1 else -1)



@numba.njit(cache=True, parallel=True)
def _sf_kernel(D, neighbors, offsets, sidx, ctype, alpha, rcs,
               rad_off, rad_e1, rad_eta, rad_rs, rad_rci, rad_col,
               ang_off, ang_e1, ang_e2, ang_eta, ang_rs, ang_rci, ang_lam, ang_zeta, ang_zint, ang_wide, ang_col,
               ang_pnorm, ang_rmax, mode, grad_q, q, jac, out):
    """mode 0: values into q (N, F); 1: values and Jacobian into jac (E, F, 3);
    2: values and vjp into out (E, 3) with grad_q (N, F).

    Functions of centre species c: radial ``rad_off[c]:rad_off[c+1]``, angular
    ``ang_off[c]:ang_off[c+1]``; ``*_rci`` index into the unique cutoff radii
    ``rcs``; ``*_col`` is the output column; ``ang_wide`` 1 for type 9; ``ang_pnorm`` = 2^(1 - zeta);
    ``ang_zint`` the integer zeta (or -1); ``ang_rmax[c]`` the largest angular rc of species c.
    One cutoff evaluation per neighbour and distinct rc; angular terms over unordered neighbour pairs.
    """
    n_atoms = offsets.size - 1
    n_rc = rcs.size
    for i in prange(n_atoms):
        c = sidx[i]
        s = offsets[i]
        n = offsets[i + 1] - s
        r = np.empty(n)
        ft = np.zeros((n, n_rc))
        dft = np.zeros((n, n_rc))
        f3 = np.zeros(n_rc)
        df3 = np.zeros(n_rc)
        for a in range(n):
            e = s + a
            rr = math.sqrt(D[e, 0] ** 2 + D[e, 1] ** 2 + D[e, 2] ** 2)
            r[a] = rr
            for m in range(n_rc):
                if rr < rcs[m]:
                    ft[a, m], dft[a, m] = n2p2_cutoff(rr, rcs[m], ctype, alpha)
        # ---- radial, type 2
        for a in range(n):
            e = s + a
            b = sidx[neighbors[e]]
            for f in range(rad_off[c], rad_off[c + 1]):
                if rad_e1[f] != b:
                    continue
                m = rad_rci[f]
                if r[a] >= rcs[m]:
                    continue
                x = r[a] - rad_rs[f]
                g = math.exp(-rad_eta[f] * x * x)
                col = rad_col[f]
                q[i, col] += g * ft[a, m]
                if mode != 0:
                    dg = g * (dft[a, m] - 2.0 * rad_eta[f] * x * ft[a, m]) / r[a]
                    if mode == 1:
                        for k in range(3):
                            jac[e, col, k] += dg * D[e, k]
                    else:
                        w = grad_q[i, col] * dg
                        for k in range(3):
                            out[e, k] += w * D[e, k]
        # ---- angular, types 3 and 9
        fa0 = ang_off[c]
        fa1 = ang_off[c + 1]
        if fa1 == fa0:
            continue
        rmax = ang_rmax[c]
        for a1 in range(n):
            r1 = r[a1]
            if r1 >= rmax:
                continue
            e1 = s + a1
            b1 = sidx[neighbors[e1]]
            for a2 in range(a1 + 1, n):
                r2 = r[a2]
                if r2 >= rmax:
                    continue
                e2 = s + a2
                b2 = sidx[neighbors[e2]]
                w0 = D[e2, 0] - D[e1, 0]
                w1 = D[e2, 1] - D[e1, 1]
                w2 = D[e2, 2] - D[e1, 2]
                r3 = math.sqrt(w0 * w0 + w1 * w1 + w2 * w2)
                for m in range(n_rc):
                    if r3 < rcs[m]:
                        f3[m], df3[m] = n2p2_cutoff(r3, rcs[m], ctype, alpha)
                    else:
                        f3[m] = 0.0
                        df3[m] = 0.0
                cos = (D[e1, 0] * D[e2, 0] + D[e1, 1] * D[e2, 1] + D[e1, 2] * D[e2, 2]) / (r1 * r2)
                Auu = 0.0  # vjp coefficients: out[e1] += Auu u + Auv v - Aw w, out[e2] += Auv u + Avv v + Aw w
                Auv = 0.0
                Avv = 0.0
                Aw = 0.0
                for f in range(fa0, fa1):
                    ea = ang_e1[f]
                    eb = ang_e2[f]
                    if not ((ea == b1 and eb == b2) or (ea == b2 and eb == b1)):
                        continue
                    m = ang_rci[f]
                    rc = rcs[m]
                    if r1 >= rc or r2 >= rc:
                        continue
                    wide = ang_wide[f]
                    if wide == 0 and r3 >= rc:
                        continue
                    pl = 1.0 + ang_lam[f] * cos
                    if pl <= 0.0:
                        continue
                    zeta = ang_zeta[f]
                    eta = ang_eta[f]
                    rs = ang_rs[f]
                    x1 = r1 - rs
                    x2 = r2 - rs
                    x3 = r3 - rs
                    if wide == 0:
                        S = x1 * x1 + x2 * x2 + x3 * x3
                        C = ft[a1, m] * ft[a2, m] * f3[m]
                    else:
                        S = x1 * x1 + x2 * x2
                        C = ft[a1, m] * ft[a2, m]
                    PE = ang_pnorm[f] * _powm1(pl, zeta, ang_zint[f]) * math.exp(-eta * S)
                    col = ang_col[f]
                    q[i, col] += PE * pl * C
                    if mode == 0:
                        continue
                    # T = PE pl C with u = D[e1], v = D[e2], w = v - u: dT/du = cuu u + cuv v - cw w,
                    # dT/dv = cuv u + cvv v + cw w (through cos, S = sum of (r - rs)^2 and C)
                    kc = PE * zeta * ang_lam[f] * C  # times dcos
                    kS = -eta * PE * pl * C  # times dS
                    kC = PE * pl  # times dC
                    if wide == 0:
                        dC1 = dft[a1, m] * ft[a2, m] * f3[m]
                        dC2 = ft[a1, m] * dft[a2, m] * f3[m]
                        dC3 = ft[a1, m] * ft[a2, m] * df3[m]
                        cw = kS * 2.0 * x3 / r3 + kC * dC3 / r3
                    else:
                        dC1 = dft[a1, m] * ft[a2, m]
                        dC2 = ft[a1, m] * dft[a2, m]
                        cw = 0.0
                    cuu = -kc * cos / (r1 * r1) + kS * 2.0 * x1 / r1 + kC * dC1 / r1
                    cuv = kc / (r1 * r2)
                    cvv = -kc * cos / (r2 * r2) + kS * 2.0 * x2 / r2 + kC * dC2 / r2
                    if mode == 1:
                        for k in range(3):
                            u_k = D[e1, k]
                            v_k = D[e2, k]
                            w_k = v_k - u_k
                            jac[e1, col, k] += cuu * u_k + cuv * v_k - cw * w_k
                            jac[e2, col, k] += cuv * u_k + cvv * v_k + cw * w_k
                    else:
                        g = grad_q[i, col]
                        Auu += g * cuu
                        Auv += g * cuv
                        Avv += g * cvv
                        Aw += g * cw
                if mode == 2:
                    for k in range(3):
                        u_k = D[e1, k]
                        v_k = D[e2, k]
                        w_k = v_k - u_k
                        out[e1, k] += Auu * u_k + Auv * v_k - Aw * w_k
                        out[e2, k] += Auv * u_k + Avv * v_k + Aw * w_k


# ----------------------------------------------------------------------------- class


def sort_key(sf):
    """n2p2's order of the symmetry functions of one centre element: a sortable tuple for one
    function dict (elements as atomic numbers, e1 <= e2).

    Not documented by n2p2; from its ``Element::sortSymmetryFunctions`` and the ``operator<`` of
    ``SymFncExpRad`` / ``SymFncExpAngn`` / ``SymFncExpAngw``: type, (cutoff type and alpha: global),
    rc, eta, rs, [zeta, lambda], e1, [e2]. Compare values in the same length unit (the file's).
    """
    if sf["type"] == 2:
        return (2, sf["rc"], sf["eta"], sf["rs"], 0.0, 0.0, sf["e1"], 0)
    return (sf["type"], sf["rc"], sf["eta"], sf["rs"], sf["zeta"], sf["lambda"], sf["e1"], sf["e2"])


def _atomic_number(x):
    return as_atomic_numbers([x])[0]


class N2P2SymmetryFunctions(Descriptor):
    """n2p2 symmetry functions (types 2, 3, 9), one list per centre element (module docstring:
    formulas, sources, column layout).

    Parameters
    ----------
    species : element symbols or atomic numbers (channel order of the model)
    functions : iterable of dicts, one per symmetry function, lengths in Å:
        ``{"center": el, "type": 2, "e1": el, "eta": Å^-2, "rs": Å, "rc": Å}`` or
        ``{"center": el, "type": 3 | 9, "e1": el, "e2": el, "eta": Å^-2, "lambda": ±1,
        "zeta": >= 0, "rc": Å, "rs": Å (default 0)}``; ``el`` a symbol or atomic number; the two
        neighbour elements of an angular function may come in either order
    cutoff_type : int 0..8, n2p2's ``cutoff_type`` (default 1, CT_COS; see
        :func:`~ase_mlcalc.descriptors.cutoffs.n2p2_cutoff`)
    cutoff_alpha : float in [0, 1), inner cutoff rci = alpha rc (default 0)
    sort : bool, sort each element's list in n2p2's order (default True). With
        ``sort=False`` the given order is the column order.

    Attributes
    ----------
    functions : tuple of per-species lists of dicts (column order), atomic numbers for elements
    n_functions : tuple of int, F_s per species
    n_features : max_s F_s
    cutoff : Å, the largest rc
    feature_names : per species, F_s names (column order)

    Kernels: see :class:`~ase_mlcalc.descriptors.base.Descriptor`; ``values`` (N, n_features),
    ``values_and_jacobian`` adds (E, n_features, 3) in Å^-1, ``vjp`` (E, 3).

    Raises
    ------
    ValueError for an unsupported type or cutoff type, bad parameters, an element
    outside ``species``, or a species without any function.
    """

    def __init__(self, species, functions, cutoff_type=1, cutoff_alpha=0.0, sort=True):
        self._set_species(species)
        cutoff_type = int(cutoff_type)
        if cutoff_type not in N2P2_CUTOFF_TYPES:
            raise ValueError(f"unsupported n2p2 cutoff_type {cutoff_type}; known: {N2P2_CUTOFF_TYPES}")
        cutoff_alpha = float(cutoff_alpha)
        if not 0.0 <= cutoff_alpha < 1.0:
            raise ValueError(f"cutoff alpha must satisfy 0 <= alpha < 1, got {cutoff_alpha}")
        self.cutoff_type = cutoff_type
        self.cutoff_alpha = cutoff_alpha
        per = {z: [] for z in self.species}
        for raw in functions:
            sf = self._check(dict(raw))
            per[sf["center"]].append(sf)
        for z in self.species:
            if not per[z]:
                raise ValueError(f"no symmetry function for centre element {symbols([z])[0]}")
            if sort:
                per[z].sort(key=sort_key)
        self.functions = tuple(per[z] for z in self.species)
        self.n_functions = tuple(len(x) for x in self.functions)
        self.n_features = max(self.n_functions)
        self.cutoff = max(sf["rc"] for fs in self.functions for sf in fs)
        self._tables()

    def _check(self, sf):
        t = sf.get("type")
        if t not in SF_TYPES:
            raise ValueError(f"symmetry function type {t!r} not supported (supported: 2, 3, 9)")
        need = ("center", "e1", "eta", "rc") + (("rs",) if t == 2 else ("e2", "lambda", "zeta"))
        missing = [k for k in need if k not in sf]
        if missing:
            raise ValueError(f"type {t} symmetry function {sf} lacks {', '.join(missing)}")
        out = {"type": int(t), "center": _atomic_number(sf["center"]), "e1": _atomic_number(sf["e1"])}
        for key in ("center", "e1"):
            if out[key] not in self.species:
                raise ValueError(f"symmetry function element {sf[key]!r} is not among the species {self.species}")
        out["eta"] = float(sf["eta"])
        out["rs"] = float(sf.get("rs", 0.0))  # optional for the angular types
        out["rc"] = float(sf["rc"])
        if not (np.isfinite(out["rc"]) and out["rc"] > 0):
            raise ValueError(f"symmetry function cutoff must be positive, got {sf['rc']!r}")
        if not (np.isfinite(out["eta"]) and out["eta"] >= 0 and np.isfinite(out["rs"])):
            raise ValueError(f"symmetry function eta must be >= 0 and rs finite: {sf}")
        if t in (3, 9):
            e2 = _atomic_number(sf["e2"])
            if e2 not in self.species:
                raise ValueError(f"symmetry function element {sf['e2']!r} is not among the species {self.species}")
            e1 = out["e1"]
            out["e1"], out["e2"] = min(e1, e2), max(e1, e2)  # n2p2 swaps so that e1 <= e2
            out["lambda"] = float(sf["lambda"])
            out["zeta"] = float(sf["zeta"])
            if not (np.isfinite(out["lambda"]) and np.isfinite(out["zeta"]) and out["zeta"] >= 0):
                raise ValueError(f"angular symmetry function needs finite lambda and zeta >= 0: {sf}")
        return out

    def _tables(self):
        S = len(self.species)
        zidx = {z: k for k, z in enumerate(self.species)}
        rcs = sorted({sf["rc"] for fs in self.functions for sf in fs})
        self._rcs = np.array(rcs, dtype=np.float64)
        rc_index = {rc: k for k, rc in enumerate(rcs)}
        rad = {k: [] for k in ("e1", "eta", "rs", "rci", "col")}
        ang = {k: [] for k in ("e1", "e2", "eta", "rs", "rci", "lam", "zeta", "zint", "wide", "col", "pnorm")}
        rad_off, ang_off, ang_rmax = [0], [0], []
        for c in range(S):
            rmax = 0.0
            for col, sf in enumerate(self.functions[c]):
                if sf["type"] == 2:
                    for key, val in (("e1", zidx[sf["e1"]]), ("eta", sf["eta"]), ("rs", sf["rs"]),
                                     ("rci", rc_index[sf["rc"]]), ("col", col)):
                        rad[key].append(val)
                else:
                    z = sf["zeta"]
                    zint = round(z) if z == round(z) and 1 <= z <= 1024 else -1
                    for key, val in (("e1", zidx[sf["e1"]]), ("e2", zidx[sf["e2"]]), ("eta", sf["eta"]),
                                     ("rs", sf["rs"]), ("rci", rc_index[sf["rc"]]), ("lam", sf["lambda"]),
                                     ("zeta", z), ("zint", zint), ("wide", 1 if sf["type"] == 9 else 0),
                                     ("col", col), ("pnorm", 2.0 ** (1.0 - z))):
                        ang[key].append(val)
                    rmax = max(rmax, sf["rc"])
            rad_off.append(len(rad["col"]))
            ang_off.append(len(ang["col"]))
            ang_rmax.append(rmax)
        ints = ("e1", "e2", "rci", "zint", "wide", "col")
        self._rad = {k: np.array(v, dtype=np.int64 if k in ints else np.float64) for k, v in rad.items()}
        self._ang = {k: np.array(v, dtype=np.int64 if k in ints else np.float64) for k, v in ang.items()}
        self._rad_off = np.array(rad_off, dtype=np.int64)
        self._ang_off = np.array(ang_off, dtype=np.int64)
        self._ang_rmax = np.array(ang_rmax, dtype=np.float64)

    # -- description ----------------------------------------------------------------------------

    def parameters(self):
        """JSON-able dict; ``N2P2SymmetryFunctions(**d)`` rebuilds the descriptor (same column order)."""
        return {"species": list(self.species), "functions": [dict(sf) for fs in self.functions for sf in fs],
                "cutoff_type": self.cutoff_type, "cutoff_alpha": self.cutoff_alpha, "sort": False}

    @property
    def feature_names(self):
        """Per species: list of F_s names (column order)."""
        from ase.data import chemical_symbols as cs

        out = []
        for fs in self.functions:
            names = []
            for sf in fs:
                if sf["type"] == 2:
                    names.append(f"{cs[sf['center']]} G2[{cs[sf['e1']]}](eta={sf['eta']:.6g},rs={sf['rs']:.6g},"
                                 f"rc={sf['rc']:.6g})")
                else:
                    names.append(f"{cs[sf['center']]} G{sf['type']}[{cs[sf['e1']]}{cs[sf['e2']]}]"
                                 f"(eta={sf['eta']:.6g},lambda={sf['lambda']:+g},zeta={sf['zeta']:g},"
                                 f"rs={sf['rs']:.6g},rc={sf['rc']:.6g})")
            out.append(names)
        return out

    def __repr__(self):
        return (f"N2P2SymmetryFunctions(species={list(self.species)}, n_functions={list(self.n_functions)}, "
                f"cutoff={self.cutoff:.6g}, cutoff_type={self.cutoff_type}, cutoff_alpha={self.cutoff_alpha})")

    # -- kernels --------------------------------------------------------------------------------

    def _run(self, edge_vectors, centers, neighbors, species_index, n_atoms, mode, grad_q=None):
        """The kernel call (see :meth:`Descriptor._run`); in ``q`` (N, F), columns >= F_s of an atom of
        species s are 0."""
        n_atoms = int(n_atoms)
        D, neighbors, sidx, offsets = self._kernel_inputs(edge_vectors, centers, neighbors, species_index, n_atoms)
        q, jac, out, grad_q = self._outputs(n_atoms, len(D), mode, grad_q)
        R, A = self._rad, self._ang
        _sf_kernel(D, neighbors, offsets, sidx, self.cutoff_type, self.cutoff_alpha, self._rcs,
                   self._rad_off, R["e1"], R["eta"], R["rs"], R["rci"], R["col"],
                   self._ang_off, A["e1"], A["e2"], A["eta"], A["rs"], A["rci"], A["lam"], A["zeta"], A["zint"],
                   A["wide"], A["col"], A["pnorm"], self._ang_rmax, mode, grad_q, q, jac, out)
        return q, jac, out
