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
explicit inverses, no loss of positivity). Results ``energies_uncertainty``
(per-atom std, eV) and ``energy_uncertainty`` (std of the total energy: the
sparse-subspace part s^T Sigma s with s = sum_i k_M(q_i) exactly, plus the
per-atom Nyström residuals k_ii - k_iM K_MM^-1 k_Mi taken as independent) are
computed when the calculator asks for them (``uncertainty=True``, or
``calc.get_property("energy_uncertainty", atoms)``).
"""

from __future__ import annotations

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


class SoapTerm(torch.nn.Module):
    """GP term on normalised SOAP power spectra: k(q, q') = delta^2 (q . q')^zeta, within one centre species.

    Parameters
    ----------
    species : atomic numbers (the model's, in its order)
    cutoff, cutoff_transition_width, atom_sigma : Å; n_max, l_max : SOAP basis sizes (GAP's names)
    zeta : int >= 1; delta : float, eV
    n_sparse : int, number of sparse points of the term (buffers are sized by it)

    Buffers: ``sparse_points`` (n_sparse, n_features), ``sparse_species`` (n_sparse,) species index.
    """

    kind = "soap"

    def __init__(self, species, cutoff=DEFAULTS["cutoff"], cutoff_transition_width=DEFAULTS["cutoff_transition_width"],
                 n_max=DEFAULTS["n_max"], l_max=DEFAULTS["l_max"], atom_sigma=DEFAULTS["atom_sigma"],
                 zeta=DEFAULTS["zeta"], delta=DEFAULTS["delta"], n_sparse=DEFAULTS["n_sparse"]):
        super().__init__()
        self.zeta = _check_positive_int("zeta", zeta)
        self.delta = _check_positive("delta", delta)
        self.n_sparse = _check_positive_int("n_sparse", n_sparse)
        self.descriptor = SOAP(species, cutoff=cutoff, cutoff_transition_width=cutoff_transition_width,
                               n_max=n_max, l_max=l_max, atom_sigma=atom_sigma, normalise=True)
        self.cutoff = self.descriptor.cutoff
        F = self.descriptor.n_features
        self.register_buffer("sparse_points", torch.zeros(self.n_sparse, F, dtype=torch.float64))
        self.register_buffer("sparse_species", torch.zeros(self.n_sparse, dtype=torch.int64))

    def hyperparameters(self):
        s = self.descriptor
        return {"kind": self.kind, "cutoff": s.cutoff, "cutoff_transition_width": s.cutoff_transition_width,
                "n_max": s.n_max, "l_max": s.l_max, "atom_sigma": s.atom_sigma, "zeta": self.zeta,
                "delta": self.delta, "n_sparse": self.n_sparse}

    # descriptors of the centre atoms and the kernel on them
    def features(self, graph):
        """Differentiable SOAP vectors of the graph's centre atoms (n_centers, n_features)."""
        return self.descriptor.torch(graph)

    def kernel_from_features(self, q, center_species):
        """k(q_i, q_m) (n_centers, n_sparse), zero across species."""
        k = self.delta ** 2 * (q @ self.sparse_points.T.to(q.dtype)) ** self.zeta
        return k * (center_species[:, None] == self.sparse_species[None, :])

    def prior_variance(self, q):
        """k(q_i, q_i) (n_centers,)."""
        return self.delta ** 2 * (q * q).sum(1) ** self.zeta

    def sparse_kernel(self):
        """K_MM of the term's sparse points (n_sparse, n_sparse) float64 numpy."""
        Q = self.sparse_points.detach().cpu().numpy()
        Qs = self.sparse_species.cpu().numpy()
        return self.delta ** 2 * (Q @ Q.T) ** self.zeta * (Qs[:, None] == Qs[None, :])

    # -- fitting (numpy): candidates for the sparse set and the rows of K_NM
    def candidates(self, D, i, j, sidx, n_atoms):
        """Candidate sparse points of one structure: (SOAP vectors (n_atoms, F), species index (n_atoms,))."""
        return self.descriptor.values(D, i, j, sidx, n_atoms), sidx[:n_atoms]

    def design(self, D, i, j, sidx, n_atoms, chunk=2048):
        """Kernel rows of one structure (edges of the full list, centre-sorted).

        Returns ``(energy_row (M,), blocks)``: ``energy_row[m] = sum_i k(q_i, q_m)``
        and ``blocks`` yields ``(start, stop, t)`` with ``t[e, c, m] = d (sum_i k(q_i, q_m)) / d D[e, c]``
        for the edges ``start:stop`` (at most ``chunk`` of them at a time, to bound memory).
        """
        q, jac = self.descriptor.values_and_jacobian(D, i, j, sidx, n_atoms)
        Q = self.sparse_points.detach().cpu().numpy()
        same = sidx[:n_atoms, None] == self.sparse_species.cpu().numpy()[None, :]
        qq = q @ Q.T  # (N, M)
        energy_row = (self.delta ** 2 * qq ** self.zeta * same).sum(0)
        w = self.zeta * self.delta ** 2 * qq ** (self.zeta - 1) * same  # dk/d(q . q_m)
        M, F = Q.shape

        def blocks():
            for start in range(0, len(i), chunk):
                stop = min(len(i), start + chunk)
                # t[e, c, m] = w[i_e, m] * sum_f jac[e, f, c] Q[m, f]
                t = (np.ascontiguousarray(jac[start:stop].transpose(0, 2, 1)).reshape(-1, F) @ Q.T)
                t = t.reshape(stop - start, 3, M)
                t *= w[i[start:stop]][:, None, :]
                yield start, stop, t

        return energy_row, blocks()


TERMS = {"soap": SoapTerm}


class SparseGPModel(AtomisticModel):
    """GAP-style sparse GP: a sum of GP terms (torch module).

    Parameters
    ----------
    species : elements (symbols or atomic numbers)
    terms : list of dicts, each the keyword arguments of a term class plus
        ``kind`` ("soap"); without ``terms``, one SOAP term built from the
        keyword arguments (``cutoff``, ``n_max``, ..., ``n_sparse``; see :class:`SoapTerm`)

    Buffers (set by :func:`ase_mlcalc.training.fit_gap`, stored in model files)
    ---------------------------------------------------------------------------
    alpha : (n_sparse_total,) eV weights, terms in order
    kmm_factor : (n_sparse_total,) * 2 upper-triangular U, K_MM = U^T U (block diagonal over terms), eV
    posterior_factor : (n_sparse_total,) * 2 upper-triangular R, Sigma^-1 = R^T R, eV
        (both zero when the variance was not computed)
    terms[t].sparse_points, terms[t].sparse_species : each term's sparse set

    Outputs: ``energies_uncertainty`` (n_atoms,) and ``energy_uncertainty``
    (float), predictive standard deviations in eV; computed every call with the
    calculator option ``uncertainty=True``, otherwise only when asked for.
    """

    dtypes = (torch.float64,)  # alpha weights are large and cancel: float32 is wrong by ~0.1 eV/atom
    options = {"uncertainty": (False, "compute energies_uncertainty and energy_uncertainty at every call")}

    def __init__(self, species, terms=None, **soap):
        super().__init__(species, 1.0)
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
        self.register_buffer("kmm_factor", torch.zeros(M, M, dtype=torch.float64))
        self.register_buffer("posterior_factor", torch.zeros(M, M, dtype=torch.float64))

    @property
    def n_sparse(self):
        """Total number of sparse points over all terms."""
        return sum(t.n_sparse for t in self.terms)

    @property
    def outputs(self):
        if not self.has_variance:
            return {}
        return {"energies_uncertainty": "(n_atoms,) eV, predictive standard deviation of each atomic energy",
                "energy_uncertainty": "float, eV, predictive standard deviation of the total energy"}

    @property
    def has_variance(self):
        return bool(self.posterior_factor.numel() and self.posterior_factor[0, 0] != 0)

    def outputs_for_options(self, options):
        return tuple(self.outputs) if options.get("uncertainty") else ()

    def hyperparameters(self):
        return {"species": list(self.species), "terms": [t.hyperparameters() for t in self.terms]}

    @classmethod
    def from_hyperparameters(cls, hp):
        hp = dict(hp)
        if "terms" not in hp:  # files of ase_mlcalc 0.1: one SOAP term, flat keywords
            species = hp.pop("species")
            return cls(species, terms=[dict(kind="soap", **hp)])
        return cls(hp["species"], terms=hp["terms"])

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
        extra = self._uncertainty([x.detach() for x in feats], K.detach()) if outputs else {}
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
        return {"energies_uncertainty": var_atoms.sqrt().cpu().numpy().astype(np.float64),
                "energy_uncertainty": float(var_total.sqrt())}


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
