"""Sparse Gaussian process (GAP-style) potential: a sum of GP terms on descriptors, as a torch module.

Model (Bartók et al., PRL 104, 136403 (2010); Bartók & Csányi, IJQC 115, 1051
(2015), "Gaussian approximation potentials: a brief tutorial introduction"):

    epsilon_i = sum_t sum_{m in t} alpha_m k_t(x_i, x_m),

a sum of independent GPs ("terms", each with its own descriptor, kernel,
delta and sparse points), as gap_fit's ``gap={soap ... : distance_2b ...}``.
The SOAP term: k(q, q') = delta^2 (q . q')^zeta on normalised SOAP vectors,
for centres of the same species as the sparse point (one GP per species).
E = sum_i epsilon_i + sum_i e0[Z_i].

The fit (:func:`ase_mlcalc.training.fit_gap`) is gap_fit's sparse GP (the
"deterministic training conditional"): with K_NM the covariances between the
observations (total energies, force components, virials) and all sparse
points, Lambda the diagonal of expected errors and K_MM = U^T U (block
diagonal over terms),

    alpha = (K_MM + K_MN Lambda^-1 K_NM)^-1 K_MN Lambda^-1 y.

Predictive variance of an atomic energy (DTC; Quiñonero-Candela & Rasmussen,
JMLR 6, 1939 (2005)):

    var(epsilon_*) = k_** - k_*M K_MM^-1 k_M* + k_*M Sigma k_M*,
    Sigma = (K_MM + K_MN Lambda^-1 K_NM)^-1,

evaluated with the triangular factors K_MM = U^T U and Sigma^-1 = R^T R
stored in the model (k K_MM^-1 k = |U^-T k|^2, k Sigma k = |R^-T k|^2: no
explicit inverses, no loss of positivity). ``energies_novelty`` is the first
two terms divided by k_**: the share of an atomic energy's prior variance
that the sparse set does not cover, 0 for a sparse point's own environment,
1 for one unlike all of them (FLARE's normalised local-energy variance,
Vandermause et al., Nat. Commun. 13, 5183 (2022)). Results ``energies_uncertainty``
(per-atom std, eV) and ``energy_uncertainty`` (std of the total energy: the
sparse-subspace part s^T Sigma s with s = sum_i k_M(q_i) exactly, plus the
per-atom Nyström residuals k_ii - k_iM K_MM^-1 k_Mi taken as independent) are
computed when the calculator asks for them (``uncertainty=True``, or
``calc.get_property("energy_uncertainty", atoms)``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..calculator import MLCalculator
from ..descriptors.soap import SOAP
from .base import AtomisticModel, register_family

#: GAP recipe of the mlearn benchmark (Zuo et al., J. Phys. Chem. A 124, 731 (2020)) for Mo.
DEFAULTS = dict(cutoff=5.2, cutoff_transition_width=0.5, n_max=8, l_max=8, atom_sigma=0.5,
                zeta=4, delta=1.0, n_sparse=2000, default_sigma=(0.01, 0.05, 0.05), sparse_jitter=1e-10)


def _check_positive_int(name, value):
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_positive(name, value):
    value = float(value)
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


def _check_nonnegative(name, value):
    value = float(value)
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def pair_index(n_species):
    """(n, n) int64 table of unordered species pairs a <= b, numbered (0,0), (0,1), ..., (1,1), ...
    (the order of gap_fit's ``add_species`` expansion of a pair descriptor)."""
    table = np.zeros((n_species, n_species), np.int64)
    p = 0
    for a in range(n_species):
        for b in range(a, n_species):
            table[a, b] = table[b, a] = p
            p += 1
    return table


def _pow(x, zeta):
    return x ** int(zeta) if float(zeta).is_integer() else x ** zeta


class SoapTerm(torch.nn.Module):
    """GP term on normalised SOAP power spectra (gap_fit's ``soap ... covariance_type=dot_product``).

    k(q, q') = delta^2 (q . q' + sigma0^2)^zeta between atoms of the same centre species (one
    GP per species: gap_fit's ``add_species=T``); sigma0 is gap_fit's ``covariance_sigma0``.

    Parameters
    ----------
    species : atomic numbers (the model's, in its order: the SOAP channel order)
    cutoff, cutoff_transition_width, atom_sigma : Å; n_max, l_max : SOAP basis sizes (GAP's names)
    zeta : float >= 1 (an integer in the usual recipes); delta : float, eV
    n_sparse : int, number of sparse points of the term, all species together (buffers are sized by it)
    covariance_sigma0 : float >= 0, see above
    central_weight, central_reference_all_species : SOAP options (see :class:`~ase_mlcalc.descriptors.SOAP`)

    Buffers: ``sparse_points`` (n_sparse, n_features), ``sparse_species`` (n_sparse,) centre species index.
    """

    kind = "soap"

    def __init__(self, species, cutoff=DEFAULTS["cutoff"], cutoff_transition_width=DEFAULTS["cutoff_transition_width"],
                 n_max=DEFAULTS["n_max"], l_max=DEFAULTS["l_max"], atom_sigma=DEFAULTS["atom_sigma"],
                 zeta=DEFAULTS["zeta"], delta=DEFAULTS["delta"], n_sparse=DEFAULTS["n_sparse"], covariance_sigma0=0.0,
                 central_weight=1.0, central_reference_all_species=None):
        super().__init__()
        self.zeta = float(zeta)
        if not (np.isfinite(self.zeta) and self.zeta >= 1):
            raise ValueError(f"zeta must be >= 1, got {zeta!r}")
        if self.zeta.is_integer():
            self.zeta = int(self.zeta)
        self.delta = _check_positive("delta", delta)
        self.n_sparse = _check_positive_int("n_sparse", n_sparse)
        self.covariance_sigma0 = _check_nonnegative("covariance_sigma0", covariance_sigma0)
        self.descriptor = SOAP(species, cutoff=cutoff, cutoff_transition_width=cutoff_transition_width,
                               n_max=n_max, l_max=l_max, atom_sigma=atom_sigma, normalise=True,
                               central_weight=central_weight,
                               central_reference_all_species=central_reference_all_species)
        self.cutoff = self.descriptor.cutoff
        F = self.descriptor.n_features
        self.register_buffer("sparse_points", torch.zeros(self.n_sparse, F, dtype=torch.float64))
        self.register_buffer("sparse_species", torch.zeros(self.n_sparse, dtype=torch.int64))

    def hyperparameters(self):
        s = self.descriptor
        return {"kind": self.kind, "cutoff": s.cutoff, "cutoff_transition_width": s.cutoff_transition_width,
                "n_max": s.n_max, "l_max": s.l_max, "atom_sigma": s.atom_sigma, "zeta": self.zeta,
                "delta": self.delta, "n_sparse": self.n_sparse, "covariance_sigma0": self.covariance_sigma0,
                "central_weight": s.central_weight,
                "central_reference_all_species": s.central_reference_all_species}

    # -- prediction (torch): features of the centre atoms, the kernel on them
    def features(self, graph):
        """Differentiable SOAP vectors of the graph's centre atoms (n_centers, n_features)."""
        return self.descriptor.torch(graph)

    def kernel_from_features(self, q, center_species):
        """k(q_i, q_m) (n_centers, n_sparse), zero across species."""
        k = self.delta ** 2 * _pow(q @ self.sparse_points.T.to(q.dtype) + self.covariance_sigma0 ** 2, self.zeta)
        return k * (center_species[:, None] == self.sparse_species[None, :])

    def prior_variance(self, q):
        """k(q_i, q_i) (n_centers,)."""
        q = q.detach()
        return self.delta ** 2 * _pow((q * q).sum(1) + self.covariance_sigma0 ** 2, self.zeta)

    def sparse_kernel(self):
        """K_MM of the term's sparse points (n_sparse, n_sparse) float64 numpy."""
        Q = self.sparse_points.detach().cpu().numpy()
        Qs = self.sparse_species.cpu().numpy()
        return self.delta ** 2 * _pow(Q @ Q.T + self.covariance_sigma0 ** 2, self.zeta) * (Qs[:, None] == Qs[None, :])

    # -- fitting (numpy): candidates for the sparse set and the rows of K_NM
    def candidates(self, D, i, j, sidx, n_atoms):
        """Candidate sparse points of one structure: (SOAP vectors (n_atoms, F), centre species (n_atoms,))."""
        return self.descriptor.values(D, i, j, sidx, n_atoms), sidx[:n_atoms]

    def set_sparse(self, points, labels):
        with torch.no_grad():
            self.sparse_points.copy_(torch.as_tensor(points))
            self.sparse_species.copy_(torch.as_tensor(labels))

    def label_elements(self, label):
        """The atomic numbers a sparse-point label stands for: (Z of the centre,)."""
        return (self.descriptor.species[int(label)],)

    def design(self, D, i, j, sidx, n_atoms, chunk=2048):
        """Kernel rows of one structure (edges of the full list, centre-sorted).

        Returns ``(energy_row (M,), blocks)``: ``energy_row[m] = sum_i k(q_i, q_m)``
        and ``blocks`` yields ``(start, stop, t)`` with ``t[e, c, m] = d (sum_i k(q_i, q_m)) / d D[e, c]``
        for the edges ``start:stop`` (at most ``chunk`` of them at a time, to bound memory). Only
        the columns of the centre's own species are non-zero: they are computed per species.
        """
        q, jac = self.descriptor.values_and_jacobian(D, i, j, sidx, n_atoms)
        Q = self.sparse_points.detach().cpu().numpy()
        Qs = self.sparse_species.cpu().numpy()
        M, F = Q.shape
        same = sidx[:n_atoms, None] == Qs[None, :]
        qq = q @ Q.T + self.covariance_sigma0 ** 2  # (N, M)
        energy_row = (self.delta ** 2 * _pow(qq, self.zeta) * same).sum(0)
        w = self.zeta * self.delta ** 2 * _pow(qq, self.zeta - 1) * same  # dk/d(q . q_m)
        columns = [np.flatnonzero(Qs == s) for s in range(len(self.descriptor.species))]
        center_species = sidx[i]

        def blocks():
            for start in range(0, len(i), chunk):
                stop = min(len(i), start + chunk)
                if len(columns) == 1:  # one species: every column is the centre's
                    jt = np.ascontiguousarray(jac[start:stop].transpose(0, 2, 1)).reshape(-1, F)
                    t = (jt @ Q.T).reshape(stop - start, 3, M)
                    t *= w[i[start:stop]][:, None, :]
                    yield start, stop, t
                    continue
                t = np.zeros((stop - start, 3, M))
                for s, cols in enumerate(columns):
                    rows = np.flatnonzero(center_species[start:stop] == s)
                    if not len(rows) or not len(cols):
                        continue
                    # t[e, c, m] = w[i_e, m] * sum_f jac[e, f, c] Q[m, f]
                    jt = np.ascontiguousarray(jac[start + rows].transpose(0, 2, 1)).reshape(-1, F)
                    ts = (jt @ Q[cols].T).reshape(len(rows), 3, len(cols))
                    ts *= w[i[start + rows]][:, None, :][:, :, cols]
                    t[rows[:, None, None], np.arange(3)[None, :, None], cols[None, None, :]] = ts
                yield start, stop, t

        return energy_row, blocks()


class PairTerm(torch.nn.Module):
    """GP term on interatomic distances (gap_fit's ``distance_2b ... covariance_type=ard_se``).

    The energy of atom i is ``sum_j e(r_ij)`` over its neighbours j within the cutoff, with
    (GAP's gp_predict and IPModel_GAP; each pair's energy counted for both atoms, as gap_fit's
    full list of pair descriptors does)::

        e(r) = f_c(r) sum_m alpha_m f_c(r_m) [delta^2 exp(-(r - r_m)^2 / (2 theta^2)) + f0^2]

    for sparse distances r_m of the same (unordered) species pair, f_c GAP's cosine switch of
    width ``cutoff_transition_width`` below ``cutoff`` (default 0.5 Å, as gap_fit).

    Parameters
    ----------
    species : atomic numbers (the model's)
    cutoff : Å; cutoff_transition_width : Å, in [0, cutoff]; theta : Å (gap_fit's ``theta_uniform``)
    delta : eV; f0 : eV (gap_fit's ``f0``, default 0); n_sparse : sparse distances of the term, all pairs together

    Buffers: ``sparse_points`` (n_sparse, 1) Å, ``sparse_species`` (n_sparse,) species-pair index
    (:func:`pair_index`), ``sparse_cutoff`` (n_sparse,) f_c(r_m).
    """

    kind = "distance_2b"

    def __init__(self, species, cutoff=5.0, cutoff_transition_width=0.5, delta=1.0, theta=1.0, f0=0.0,
                 n_sparse=20):
        super().__init__()
        self.cutoff = _check_positive("cutoff", cutoff)
        self.cutoff_transition_width = _check_nonnegative("cutoff_transition_width", cutoff_transition_width)
        if self.cutoff_transition_width > self.cutoff:
            raise ValueError(f"cutoff_transition_width must not exceed the cutoff, got {cutoff_transition_width}")
        self.delta = _check_positive("delta", delta)
        self.theta = _check_positive("theta", theta)
        self.f0 = _check_nonnegative("f0", f0)
        self.n_sparse = _check_positive_int("n_sparse", n_sparse)
        self.species = tuple(species)
        self.pairs = pair_index(len(self.species))
        self.register_buffer("sparse_points", torch.zeros(self.n_sparse, 1, dtype=torch.float64))
        self.register_buffer("sparse_species", torch.zeros(self.n_sparse, dtype=torch.int64))
        self.register_buffer("sparse_cutoff", torch.zeros(self.n_sparse, dtype=torch.float64))

    def hyperparameters(self):
        return {"kind": self.kind, "cutoff": self.cutoff, "cutoff_transition_width": self.cutoff_transition_width,
                "delta": self.delta, "theta": self.theta, "f0": self.f0, "n_sparse": self.n_sparse}

    def cutoff_function(self, r):
        """GAP's cosine switch f_c(r) and its derivative, numpy or torch ``r`` (Å)."""
        lib = torch if isinstance(r, torch.Tensor) else np
        rc, w = self.cutoff, self.cutoff_transition_width
        if w == 0:
            return lib.where(r < rc, 1.0 + 0 * r, 0 * r), 0 * r
        t = lib.clip((r - rc + w) / w, 0.0, 1.0) * math.pi
        fc = lib.where(r < rc, 0.5 * (lib.cos(t) + 1.0), 0 * r)
        inside = (r > rc - w) & (r < rc)
        return fc, lib.where(inside, -0.5 * math.pi / w * lib.sin(t), 0 * r)

    def _kernel(self, r, lib):
        """delta^2 exp(-(r - r_m)^2 / (2 theta^2)) (E, M) and its derivative in r, without f0 and cutoffs."""
        rm = self.sparse_points[:, 0]
        rm = rm.to(r.dtype) if lib is torch else rm.detach().cpu().numpy()
        u = (r[:, None] - rm[None, :]) / self.theta
        k = self.delta ** 2 * lib.exp(-0.5 * u * u)
        return k, -k * u / self.theta

    # -- prediction (torch)
    def features(self, graph):
        """(distances (E,), edge centres (E,), species pair (E,)) of the graph's edges within the cutoff."""
        r = graph.edge_vectors
        d = torch.sqrt((r * r).sum(1))
        keep = torch.nonzero(d.detach() < self.cutoff).squeeze(1)
        sidx = graph.tensor("species_index")
        pairs = torch.as_tensor(self.pairs, device=r.device)
        i, j = graph.tensor("centers")[keep], graph.tensor("neighbors")[keep]
        return d[keep], i, pairs[sidx[i], sidx[j]], graph.n_centers

    def _edge_kernel(self, feats):
        d, i, p, _ = feats
        k, _ = self._kernel(d, torch)
        fc, _ = self.cutoff_function(d)
        sc = self.sparse_cutoff.to(d.dtype)
        return (k + self.f0 ** 2) * fc[:, None] * sc[None, :] * (p[:, None] == self.sparse_species[None, :])

    def kernel_from_features(self, feats, center_species):
        """K[i, m] = sum_j f_c(r_ij) f_c(r_m) k(r_ij, r_m) over same-pair edges (n_centers, n_sparse)."""
        k = self._edge_kernel(feats)
        return k.new_zeros(feats[3], self.n_sparse).index_add(0, feats[1], k)

    def prior_variance(self, feats):
        """var(epsilon_i) = sum_{j, j'} f_c(r_ij) f_c(r_ij') k(r_ij, r_ij') over same-pair neighbours (n_centers,)."""
        d, i, p, n = (x.detach() if isinstance(x, torch.Tensor) else x for x in feats)
        fc, _ = self.cutoff_function(d)
        out = d.new_zeros(n)
        if len(d) == 0:
            return out
        # edges are centre-sorted: pair up the edges of each centre, a few thousand centres at a time
        starts = torch.searchsorted(i, torch.arange(n + 1, device=i.device))
        for c0 in range(0, n, 2048):
            lo, hi = int(starts[c0]), int(starts[min(n, c0 + 2048)])
            ii, dd, pp, ff = i[lo:hi], d[lo:hi], p[lo:hi], fc[lo:hi]
            same = (ii[:, None] == ii[None, :]) & (pp[:, None] == pp[None, :])
            u = (dd[:, None] - dd[None, :]) / self.theta
            k = (self.delta ** 2 * torch.exp(-0.5 * u * u) + self.f0 ** 2) * ff[:, None] * ff[None, :] * same
            out.index_add_(0, ii, k.sum(1))
        return out

    def sparse_kernel(self):
        rm = self.sparse_points[:, 0].detach().cpu().numpy()
        k, _ = self._kernel(rm, np)
        sc = self.sparse_cutoff.cpu().numpy()
        ps = self.sparse_species.cpu().numpy()
        return (k + self.f0 ** 2) * sc[:, None] * sc[None, :] * (ps[:, None] == ps[None, :])

    # -- fitting (numpy)
    def candidates(self, D, i, j, sidx, n_atoms):
        """Candidate sparse distances of one structure: (distances (E, 1) Å, species pair (E,)) within the cutoff."""
        r = np.sqrt(np.einsum("ij,ij->i", D, D))
        keep = r < self.cutoff
        return r[keep, None], self.pairs[sidx[i[keep]], sidx[j[keep]]]

    def label_elements(self, label):
        """The atomic numbers a sparse-point label stands for: the species pair (Z1 <= Z2)."""
        a, b = np.argwhere(self.pairs == int(label))[0]
        return tuple(sorted((self.species[a], self.species[b])))

    def set_sparse(self, points, labels):
        points = np.asarray(points, dtype=np.float64).reshape(-1, 1)
        with torch.no_grad():
            self.sparse_points.copy_(torch.as_tensor(points))
            self.sparse_species.copy_(torch.as_tensor(labels))
            self.sparse_cutoff.copy_(torch.as_tensor(self.cutoff_function(points[:, 0])[0]))

    def design(self, D, i, j, sidx, n_atoms, chunk=8192):
        """Kernel rows of one structure, as :meth:`SoapTerm.design`."""
        r = np.sqrt(np.einsum("ij,ij->i", D, D))
        p = self.pairs[sidx[i], sidx[j]]
        ps = self.sparse_species.cpu().numpy()
        sc = self.sparse_cutoff.cpu().numpy()
        fc, dfc = self.cutoff_function(r)
        k, dk = self._kernel(r, np)
        match = (p[:, None] == ps[None, :]) * sc[None, :]
        energy_row = ((k + self.f0 ** 2) * fc[:, None] * match).sum(0)
        g = ((k + self.f0 ** 2) * dfc[:, None] + dk * fc[:, None]) * match / np.where(r > 0, r, 1.0)[:, None]

        def blocks():
            for start in range(0, len(i), chunk):
                stop = min(len(i), start + chunk)
                yield start, stop, D[start:stop, :, None] * g[start:stop, None, :]

        return energy_row, blocks()


TERMS = {"soap": SoapTerm, "distance_2b": PairTerm}


class SparseGPModel(AtomisticModel):
    """GAP-style sparse GP: a sum of GP terms (torch module).

    Parameters
    ----------
    species : elements (symbols or atomic numbers)
    terms : list of dicts, each the keyword arguments of a term class plus its
        ``kind``: "soap" (:class:`SoapTerm`) or "distance_2b" (:class:`PairTerm`);
        without ``terms``, one SOAP term built from the keyword arguments
        (``cutoff``, ``n_max``, ..., ``n_sparse``)
    variance : keep the (n_sparse_total, n_sparse_total) variance factors (False: none are stored, and
        the model has no uncertainty outputs; a 9000-point GAP saves 1.3 GB)

    Buffers (set by :func:`ase_mlcalc.training.fit_gap`, stored in model files)
    ---------------------------------------------------------------------------
    alpha : (n_sparse_total,) eV weights, terms in order
    kmm_factor : (n_sparse_total,) * 2 upper-triangular U, K_MM = U^T U (block diagonal over terms), eV
    posterior_factor : (n_sparse_total,) * 2 upper-triangular R, Sigma^-1 = R^T R, eV
        (both zero when the variance was not computed)
    terms[t].sparse_points, terms[t].sparse_species (, terms[t].sparse_cutoff) : each term's sparse set

    Outputs: ``energies_uncertainty`` (n_atoms,) and ``energy_uncertainty``
    (float), predictive standard deviations in eV; computed every call with the
    calculator option ``uncertainty=True``, otherwise only when asked for.
    """

    dtypes = (torch.float64,)  # alpha weights are large and cancel: float32 is wrong by ~0.1 eV/atom
    options = {"uncertainty": (False, "compute energies_uncertainty and energy_uncertainty at every call")}

    def __init__(self, species, terms=None, variance=True, **soap):
        super().__init__(species, 1.0)
        self.variance = bool(variance)
        if terms is None:
            terms = [dict(kind="soap", **soap)]
        elif soap:
            raise TypeError(f"give either terms or SOAP keywords, not both ({', '.join(soap)})")
        if not terms:
            raise ValueError("a sparse GP needs at least one term")
        built = []
        for t in terms:
            t = dict(t)
            kind = t.pop("kind", "soap")
            if kind not in TERMS:
                raise ValueError(f"unknown GP term kind {kind!r} (known: {', '.join(TERMS)})")
            built.append(TERMS[kind](self.species, **t))
        self.terms = torch.nn.ModuleList(built)
        self.cutoff = max(t.cutoff for t in self.terms)
        M = self.n_sparse
        self.register_buffer("alpha", torch.zeros(M, dtype=torch.float64))
        Mv = M if self.variance else 0  # a model without variance stores no (M, M) factors
        self.register_buffer("kmm_factor", torch.zeros(Mv, Mv, dtype=torch.float64))
        self.register_buffer("posterior_factor", torch.zeros(Mv, Mv, dtype=torch.float64))
        #: multiplies the predicted standard deviations (1 unless calibrated, :func:`ase_mlcalc.active.calibrate`)
        self.register_buffer("uncertainty_scale", torch.ones((), dtype=torch.float64))

    @property
    def n_sparse(self):
        """Total number of sparse points over all terms."""
        return sum(t.n_sparse for t in self.terms)

    @property
    def outputs(self):
        if not self.has_variance:
            return {}
        return {"energies_uncertainty": "(n_atoms,) eV, predictive standard deviation of each atomic energy",
                "energy_uncertainty": "float, eV, predictive standard deviation of the total energy",
                "energies_novelty": "(n_atoms,) in [0, 1], the share of each atomic energy's prior variance "
                                    "that the sparse set does not cover (k_ii - k_iM K_MM^-1 k_Mi) / k_ii"}

    @property
    def has_variance(self):
        return bool(self.posterior_factor.numel() and self.posterior_factor[0, 0] != 0)

    def outputs_for_options(self, options):
        return tuple(self.outputs) if options.get("uncertainty") else ()

    def hyperparameters(self):
        return {"species": list(self.species), "terms": [t.hyperparameters() for t in self.terms],
                "variance": self.variance}

    @classmethod
    def from_hyperparameters(cls, hp):
        hp = dict(hp)
        if "terms" not in hp:  # files of ase_mlcalc 0.1: one SOAP term, flat keywords
            species = hp.pop("species")
            return cls(species, terms=[dict(kind="soap", **hp)])
        return cls(hp["species"], terms=hp["terms"], variance=hp.get("variance", True))

    def _kernel(self, graph):
        """(features per term, kernel (n_centers, n_sparse_total)) of the graph's centre atoms."""
        cs = graph.center_species
        feats = [t.features(graph) for t in self.terms]
        K = torch.cat([t.kernel_from_features(x, cs) for t, x in zip(self.terms, feats)], dim=1)
        return feats, K

    def atomic_energies(self, graph):
        _, K = self._kernel(graph)
        return K @ self.alpha.to(K.dtype)

    def energies_and_outputs(self, graph, outputs=()):
        self.check_outputs(outputs)
        feats, K = self._kernel(graph)
        energies = K @ self.alpha.to(K.dtype) + self.e0.to(K.dtype)[graph.center_species]
        # the outputs share their work: asked for one, the model returns all of them
        extra = self._uncertainty(feats, K.detach()) if outputs else {}
        return energies, extra

    def _uncertainty(self, feats, K):
        with torch.no_grad():
            U, R = self.kmm_factor.to(K.dtype), self.posterior_factor.to(K.dtype)
            # |A^-T x|^2 for each row x of K, and for their sum s.
            ks = torch.cat([K, K.sum(0, keepdim=True)]).T
            proj_kmm = torch.linalg.solve_triangular(U.T, ks, upper=False).square().sum(0)
            proj_post = torch.linalg.solve_triangular(R.T, ks, upper=False).square().sum(0)
            prior = sum(t.prior_variance(x) for t, x in zip(self.terms, feats))
            residual = (prior - proj_kmm[:-1]).clamp_min(0.0)  # Nyström residual per atom
            var_atoms = residual + proj_post[:-1]
            var_total = residual.sum() + proj_post[-1]
        scale = float(self.uncertainty_scale)
        novelty = (residual / prior.clamp_min(1e-300)).clamp(0.0, 1.0)
        return {"energies_uncertainty": (var_atoms.sqrt() * scale).cpu().numpy().astype(np.float64),
                "energy_uncertainty": float(var_total.sqrt()) * scale,
                "energies_novelty": novelty.cpu().numpy().astype(np.float64)}


class GAP(MLCalculator):
    """Calculator of a trained :class:`SparseGPModel`: :class:`~ase_mlcalc.MLCalculator` for the GP family.

    Parameters
    ----------
    model : SparseGPModel (from :func:`ase_mlcalc.training.fit_gap`) or its model file
    uncertainty : bool, compute ``energies_uncertainty`` (n_atoms,) and
        ``energy_uncertainty`` (float), predictive standard deviations in eV,
        at every call (default False: they cost about as much again as energy
        and forces with thousands of sparse points;
        ``calc.get_property("energy_uncertainty", atoms)`` computes them on request)
    device, dtype, skin, min_distance : see :class:`~ase_mlcalc.MLCalculator` (float64 only)
    """

    def __init__(self, model, device="cpu", **kwargs):
        super().__init__(model=model, device=device, **kwargs)

    def check_model(self, model):
        if not isinstance(model, SparseGPModel):
            raise TypeError(f"GAP needs a SparseGPModel, got {type(model).__name__}")


register_family("gap", SparseGPModel, GAP)
