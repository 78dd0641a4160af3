"""Sparse Gaussian process on SOAP power spectra (GAP-style), its ASE calculator and its fit to data.

Model (Bartók et al., PRL 104, 136403 (2010); Bartók & Csányi, IJQC 115, 1051
(2015), "Gaussian approximation potentials: a brief tutorial introduction"):

    epsilon_i = sum_m alpha_m k(q_i, q_m),  k(q, q') = delta^2 (q . q')^zeta

over sparse points q_m (normalised SOAP vectors of training atoms, chosen by
CUR or at random), for centres of the same species as the sparse point (a
separate GP per species); E = sum_i epsilon_i + sum_i e0[Z_i].

Fit (gap_fit's sparse GP, the "deterministic training conditional"): with
K_NM the covariances between observations (total energies, force components,
virials: sums and derivatives of atomic energies) and sparse points, Lambda
the diagonal of expected errors (default_sigma) and K_MM = U^T U,

    alpha = (K_MM + K_MN Lambda^-1 K_NM)^-1 K_MN Lambda^-1 y,

solved by a QR factorisation of [Lambda^-1/2 K_NM; U] (no normal equations).

Predictive variance of an atomic energy (DTC; Quiñonero-Candela & Rasmussen,
JMLR 6, 1939 (2005)):

    var(epsilon_*) = k_** - k_*M K_MM^-1 k_M* + k_*M Sigma k_M*,
    Sigma = (K_MM + K_MN Lambda^-1 K_NM)^-1,

evaluated with the triangular factors K_MM = U^T U and
K_MM + K_MN Lambda^-1 K_NM = R^T R stored in the model
(k K_MM^-1 k = |U^-T k|^2, k Sigma k = |R^-T k|^2: no explicit inverses,
no loss of positivity). The calculator returns the per-atom standard deviations (``energies_uncertainty``, eV) and a total-energy
one (``energy_uncertainty``, eV): the sparse-subspace part s^T Sigma s
(s = sum_i k_M(q_i)) exactly, plus the per-atom Nyström residuals
k_ii - k_iM K_MM^-1 k_Mi taken as independent.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.linalg
import scipy.sparse
import torch

from ..calculator import MLCalculator
from .base import AtomisticModel, as_atomic_numbers, register_family

#: GAP recipe of the mlearn benchmark (Zuo et al., J. Phys. Chem. A 124, 731 (2020)) for Mo.
DEFAULTS = dict(cutoff=5.2, cutoff_transition_width=0.5, n_max=8, l_max=8, atom_sigma=0.5,
                zeta=4, delta=1.0, n_sparse=2000, default_sigma=(0.01, 0.05, 0.05), sparse_jitter=1e-10)


def _soap(species, cutoff, cutoff_transition_width, n_max, l_max, atom_sigma):
    from ..descriptors.soap import SOAP

    return SOAP(species, cutoff=cutoff, cutoff_transition_width=cutoff_transition_width,
                n_max=n_max, l_max=l_max, atom_sigma=atom_sigma, normalise=True)


class SparseGPModel(AtomisticModel):
    """GAP-style sparse GP on normalised SOAP power spectra (torch module).

    Parameters
    ----------
    species : elements (symbols or atomic numbers)
    cutoff, cutoff_transition_width, atom_sigma : Å; n_max, l_max : SOAP basis sizes
    zeta : int, kernel exponent; delta : float, eV, energy scale of the kernel
    n_sparse : int, number of sparse points (buffers are sized by it)

    Buffers (set by :func:`fit_gap`, stored in model files)
    --------------------------------------------------------
    sparse_points : (n_sparse, n_features) normalised SOAP vectors
    sparse_species : (n_sparse,) species index of each sparse point
    alpha : (n_sparse,) eV weights
    kmm_factor : (n_sparse, n_sparse) upper-triangular U, K_MM = U^T U, eV
    posterior_factor : (n_sparse, n_sparse) upper-triangular R, Sigma^-1 = R^T R, eV
        (both zero when the variance was not computed)
    """

    def __init__(self, species, cutoff=5.2, cutoff_transition_width=0.5, n_max=8, l_max=8, atom_sigma=0.5,
                 zeta=4, delta=1.0, n_sparse=2000):
        super().__init__(species, cutoff)
        if int(zeta) != zeta or zeta < 1:
            raise ValueError(f"zeta must be a positive integer, got {zeta}")
        if not delta > 0:
            raise ValueError(f"delta must be > 0 eV, got {delta}")
        if int(n_sparse) < 1:
            raise ValueError(f"n_sparse must be >= 1, got {n_sparse}")
        self.soap = _soap(self.species, cutoff, cutoff_transition_width, n_max, l_max, atom_sigma)
        self.zeta = int(zeta)
        self.delta = float(delta)
        self.n_sparse = int(n_sparse)
        F = self.soap.n_features
        self.register_buffer("sparse_points", torch.zeros(self.n_sparse, F, dtype=torch.float64))
        self.register_buffer("sparse_species", torch.zeros(self.n_sparse, dtype=torch.int64))
        self.register_buffer("alpha", torch.zeros(self.n_sparse, dtype=torch.float64))
        self.register_buffer("kmm_factor", torch.zeros(self.n_sparse, self.n_sparse, dtype=torch.float64))
        self.register_buffer("posterior_factor", torch.zeros(self.n_sparse, self.n_sparse, dtype=torch.float64))

    def hyperparameters(self):
        s = self.soap
        return {"species": list(self.species), "cutoff": self.cutoff,
                "cutoff_transition_width": s.cutoff_transition_width, "n_max": s.n_max, "l_max": s.l_max,
                "atom_sigma": s.atom_sigma, "zeta": self.zeta, "delta": self.delta, "n_sparse": self.n_sparse}

    def kernel(self, q, species_index):
        """k(q_i, q_m) = delta^2 (q_i . q_m)^zeta, zero across species: (N, n_sparse) tensor."""
        k = self.delta ** 2 * (q @ self.sparse_points.T.to(q.dtype)) ** self.zeta
        same = species_index[:, None] == self.sparse_species[None, :]
        return k * same

    def atomic_energies(self, graph):
        q = self.soap.torch(graph)
        k = self.kernel(q, graph.tensor("species_index"))
        graph.__dict__["gap_kernel"] = (q.detach(), k.detach())  # reused by extra_results for this graph
        return k @ self.alpha.to(q.dtype)

    @property
    def has_variance(self):
        return bool(self.posterior_factor[0, 0] != 0)

    def extra_results(self, graph, energies):
        """``energies_uncertainty`` (n_atoms,) and ``energy_uncertainty`` (float): predictive std, eV.

        Empty when the model was fitted without variance.
        """
        if not self.has_variance:
            return {}
        with torch.no_grad():
            if "gap_kernel" in graph.__dict__:
                q, k = graph.__dict__["gap_kernel"]
            else:
                q = self.soap.torch(graph).detach()
                k = self.kernel(q, graph.tensor("species_index"))
            U, R = self.kmm_factor.to(q.dtype), self.posterior_factor.to(q.dtype)
            # |A^-T x|^2 for each row x of k, and for their sum s.
            ks = torch.cat([k, k.sum(0, keepdim=True)]).T
            proj_kmm = torch.linalg.solve_triangular(U.T, ks, upper=False).square().sum(0)
            proj_post = torch.linalg.solve_triangular(R.T, ks, upper=False).square().sum(0)
            prior = self.delta ** 2 * (q * q).sum(1) ** self.zeta
            residual = (prior - proj_kmm[:-1]).clamp_min(0.0)  # Nyström residual per atom
            var_atoms = residual + proj_post[:-1]
            var_total = residual.sum() + proj_post[-1]
        return {"energies_uncertainty": var_atoms.sqrt().cpu().numpy(),
                "energy_uncertainty": float(var_total.sqrt())}


class GAP(MLCalculator):
    """ASE calculator of a trained :class:`SparseGPModel` (load with :func:`ase_mlcalc.load`).

    Parameters
    ----------
    model : SparseGPModel
    uncertainty : bool, compute the predictive uncertainties at every call
        (default True; they cost about as much again as energy and forces
        with thousands of sparse points)
    device, dtype, skin, min_distance : see :class:`~ase_mlcalc.calculator.MLCalculator`

    Results beyond the standard ones: ``energies_uncertainty`` (n_atoms,) and
    ``energy_uncertainty`` (float), predictive standard deviations in eV
    (``calc.results[...]`` after a calculation, or
    ``calc.get_property("energy_uncertainty", atoms)``).
    """

    implemented_properties = MLCalculator.implemented_properties + ["energy_uncertainty", "energies_uncertainty"]

    def __init__(self, model, device="cpu", uncertainty=True, **kwargs):
        super().__init__(model=model, device=device, **kwargs)
        self.uncertainty = bool(uncertainty)

    def extra_results(self, graph, energies):
        return self.model.extra_results(graph, energies) if self.uncertainty else {}


register_family("gap", SparseGPModel, GAP)


# ----------------------------------------------------------------------------- fit

def cur_selection(X, n, rng, k=None):
    """Row indices chosen by CUR leverage scores (Mahoney & Drineas, PNAS 106, 697 (2009)), as gap_fit's cur_points.

    Leverage of row i: mean over the top-k left singular vectors of u_i^2;
    rows are drawn without replacement with probability proportional to it.
    """
    n = min(n, len(X))
    if n == len(X):
        return np.arange(len(X))
    U, s, _ = np.linalg.svd(X, full_matrices=False)
    k = min(k or n, int((s > s[0] * 1e-12).sum()))
    lev = (U[:, :k] ** 2).mean(1)
    p = lev / lev.sum()
    return np.sort(rng.choice(len(X), size=n, replace=False, p=np.maximum(p, 1e-300) / np.maximum(p, 1e-300).sum()))


def _structure_rows(soap, atoms, Q, Qs, zeta, delta, want_virial):
    """K_NM rows of one structure: energy (M,), forces (n_atoms*3, M), virial (6, M) or None."""
    D, i, j, sidx = soap.edges(atoms)
    q, jac = soap.values_and_jacobian(D, i, j, sidx, len(atoms))
    same = sidx[:, None] == Qs[None, :]
    qq = q @ Q.T  # (N, M)
    energy_row = (delta ** 2 * qq ** zeta * same).sum(0)
    w = zeta * delta ** 2 * qq ** (zeta - 1) * same  # dk/d(q.q_m)
    E = len(i)
    # t[e, c, m] = w[i_e, m] * sum_f jac[e, f, c] Q[m, f]  = dk(q_i, q_m)/dr_e
    t = (np.ascontiguousarray(jac.transpose(0, 2, 1)).reshape(E * 3, -1) @ Q.T).reshape(E, 3, -1)
    t *= w[i][:, None, :]
    n = len(atoms)
    inc = scipy.sparse.csr_matrix((np.r_[np.ones(E), -np.ones(E)], (np.r_[i, j], np.r_[np.arange(E), np.arange(E)])),
                                  shape=(n, E))
    force_rows = (inc @ t.reshape(E, -1)).reshape(n * 3, -1)  # F_k = sum_{i=k} t - sum_{j=k} t
    virial_rows = None
    if want_virial:
        W = -np.einsum("ea,ebm->abm", D, t)  # virial W_ab = -sum_e r_a g_b
        virial_rows = W[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    return energy_row, force_rows, virial_rows


def fit_gap(train_frames, species=None, cutoff=DEFAULTS["cutoff"],
            cutoff_transition_width=DEFAULTS["cutoff_transition_width"], n_max=DEFAULTS["n_max"],
            l_max=DEFAULTS["l_max"], atom_sigma=DEFAULTS["atom_sigma"], zeta=DEFAULTS["zeta"],
            delta=DEFAULTS["delta"], n_sparse=DEFAULTS["n_sparse"], sparse_method="cur",
            default_sigma=DEFAULTS["default_sigma"], sparse_jitter=DEFAULTS["sparse_jitter"],
            compute_variance=True, seed=0, progress=True):
    """Fit a GAP-style sparse GP to total energies, forces (and virials where present).

    Parameters
    ----------
    train_frames : list of ase.Atoms with reference energy (eV) and forces (eV/Å); stress (eV/Å³) used when present
    species : elements (default: those in the frames)
    cutoff, cutoff_transition_width, n_max, l_max, atom_sigma : SOAP (GAP's names; Å)
    zeta : int; delta : float, eV -- kernel delta^2 (q . q')^zeta
    n_sparse : sparse points per species (fewer if fewer atoms)
    sparse_method : "cur" (gap_fit's cur_points) or "random"
    default_sigma : (energy eV/atom, force eV/Å, virial eV/atom): expected errors
        (the regularisers, as gap_fit's default_sigma with sigma_per_atom=T:
        a structure of N atoms gets energy and virial variances sigma^2 N)
    sparse_jitter : relative jitter added to K_MM's diagonal
    compute_variance : store the predictive-variance matrix
    seed : random seed of the sparse-point draw
    progress : tqdm progress bar

    Returns
    -------
    GAP calculator with the fitted model; ``model.fit_info`` holds timings.

    Raises
    ------
    TrainingDataError: frames without energy or forces, or with elements outside ``species``.
    """
    from tqdm.auto import tqdm

    from ..graph import species_index as sp_index
    from ..training import composition_matrix, fit_e0, reference_values, species_of

    t_start = time.perf_counter()
    frames = list(train_frames)
    ref = reference_values(frames, require_forces=True)
    species = species_of(frames) if species is None else as_atomic_numbers(species)
    C = composition_matrix(frames, species)  # raises for elements outside species
    rng = np.random.default_rng(seed)
    soap = _soap(species, cutoff, cutoff_transition_width, n_max, l_max, atom_sigma)
    sig_e, sig_f, sig_v = default_sigma

    # Descriptors of every atom, then sparse points per species.
    qs, zs = [], []
    for atoms in tqdm(frames, desc="SOAP", disable=not progress, leave=False):
        qs.append(soap.compute(atoms))
        zs.append(sp_index(atoms.numbers, species))
    X, Z = np.concatenate(qs), np.concatenate(zs)
    chosen = []
    for s in range(len(species)):
        rows = np.flatnonzero(Z == s)
        if sparse_method == "cur":
            pick = cur_selection(X[rows], n_sparse, rng)
        elif sparse_method == "random":
            pick = np.sort(rng.choice(len(rows), size=min(n_sparse, len(rows)), replace=False))
        else:
            raise ValueError(f"sparse_method must be 'cur' or 'random', got {sparse_method!r}")
        chosen.append(rows[pick])
    chosen = np.concatenate(chosen)
    Q, Qs = X[chosen], Z[chosen]
    M = len(chosen)
    t_desc = time.perf_counter()

    e0 = fit_e0(frames, species, ref["energy"])
    K_MM = delta ** 2 * (Q @ Q.T) ** zeta * (Qs[:, None] == Qs[None, :])
    K_MM[np.diag_indices(M)] += sparse_jitter * delta ** 2 + 1e-12
    U = scipy.linalg.cholesky(K_MM, lower=False)

    # Stacked, whitened system [Lambda^-1/2 K_NM; U] alpha = [Lambda^-1/2 y; 0].
    blocks, targets = [], []
    offset = 0
    for k, atoms in enumerate(tqdm(frames, desc="kernel rows", disable=not progress, leave=False)):
        n = len(atoms)
        has_virial = ref["stress"] is not None and np.all(np.isfinite(ref["stress"][k]))
        e_row, f_rows, v_rows = _structure_rows(soap, atoms, Q, Qs, zeta, delta, has_virial)
        w_e = 1.0 / (sig_e * np.sqrt(n))  # gap_fit's sigma_per_atom: variance sigma_E^2 * N
        blocks.append(e_row[None] * w_e)
        targets.append([(ref["energy"][k] - C[k] @ e0) * w_e])
        blocks.append(f_rows / sig_f)
        targets.append(ref["forces"][offset:offset + n].ravel() / sig_f)
        if v_rows is not None:
            V = atoms.get_volume()
            w_v = 1.0 / (sig_v * np.sqrt(n))
            blocks.append(v_rows * w_v)
            targets.append(-ref["stress"][k] * V * w_v)  # virial = -stress * volume
        offset += n
    b = np.concatenate([np.asarray(t, dtype=np.float64) for t in targets] + [np.zeros(M)])
    # QR of [A | b]: R's last column holds Q^T b, so Q itself is never formed.
    Ab = np.concatenate([np.concatenate(blocks + [U]), b[:, None]], axis=1)
    del blocks
    t_rows = time.perf_counter()
    R = scipy.linalg.qr(Ab, mode="r", overwrite_a=True, check_finite=False)[0][: M + 1]
    del Ab
    alpha = scipy.linalg.solve_triangular(R[:M, :M], R[:M, M], lower=False)
    R = R[:M, :M]
    t_solve = time.perf_counter()

    model = SparseGPModel(species, cutoff, cutoff_transition_width, n_max, l_max, atom_sigma, zeta, delta, M)
    with torch.no_grad():
        model.sparse_points.copy_(torch.as_tensor(Q))
        model.sparse_species.copy_(torch.as_tensor(Qs))
        model.alpha.copy_(torch.as_tensor(alpha))
        if compute_variance:
            model.kmm_factor.copy_(torch.as_tensor(U))
            model.posterior_factor.copy_(torch.as_tensor(R))
        model.e0.copy_(torch.as_tensor(e0))
    model.fit_info = {"n_sparse": M, "n_observations": int(len(b) - M), "time_descriptors_s": t_desc - t_start,
                      "time_kernel_rows_s": t_rows - t_desc, "time_solve_s": t_solve - t_rows,
                      "time_total_s": t_solve - t_start}
    return GAP(model=model)


def add_train_arguments(parser):
    """Options of ``ase-mlcalc train gap`` (GAP's names; defaults: the mlearn Mo recipe)."""
    d = DEFAULTS
    parser.add_argument("--cutoff", type=float, default=d["cutoff"], help=f"SOAP cutoff, Å (default {d['cutoff']})")
    parser.add_argument("--cutoff-transition-width", type=float, default=d["cutoff_transition_width"],
                        help=f"width of the cosine switch-off below the cutoff, Å (default {d['cutoff_transition_width']})")
    parser.add_argument("--n-max", type=int, default=d["n_max"], help=f"radial basis functions (default {d['n_max']})")
    parser.add_argument("--l-max", type=int, default=d["l_max"], help=f"spherical harmonics band limit (default {d['l_max']})")
    parser.add_argument("--atom-sigma", type=float, default=d["atom_sigma"], help=f"Gaussian width, Å (default {d['atom_sigma']})")
    parser.add_argument("--zeta", type=int, default=d["zeta"], help=f"kernel exponent (default {d['zeta']})")
    parser.add_argument("--delta", type=float, default=d["delta"], help=f"kernel energy scale, eV (default {d['delta']})")
    parser.add_argument("--n-sparse", type=int, default=d["n_sparse"], help=f"sparse points per species (default {d['n_sparse']})")
    parser.add_argument("--sparse-method", choices=["cur", "random"], default="cur", help="sparse point selection (default cur)")
    parser.add_argument("--default-sigma", type=float, nargs="+", default=list(d["default_sigma"]),
                        metavar="SIGMA", help="expected errors: energy eV/atom, force eV/Å[, virial eV/atom] "
                        f"(default {' '.join(map(str, d['default_sigma']))})")
    parser.add_argument("--no-variance", action="store_true", help="do not store the predictive-variance matrix")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sparse-point draw")


def train_from_args(args):
    """Run ``ase-mlcalc train gap``: fit, save, print the error table, write the parity plot."""
    import os

    from ..training import read_frames, report

    sig = list(args.default_sigma) + list(DEFAULTS["default_sigma"][len(args.default_sigma):])
    train = read_frames(args.train)
    test = read_frames(args.test) if args.test else None
    calc = fit_gap(train, cutoff=args.cutoff, cutoff_transition_width=args.cutoff_transition_width,
                   n_max=args.n_max, l_max=args.l_max, atom_sigma=args.atom_sigma, zeta=args.zeta,
                   delta=args.delta, n_sparse=args.n_sparse, sparse_method=args.sparse_method,
                   default_sigma=tuple(sig[:3]), compute_variance=not args.no_variance, seed=args.seed)
    info = calc.model.fit_info
    print(f"fitted {info['n_sparse']} sparse points to {info['n_observations']} observations "
          f"in {info['time_total_s']:.1f} s (descriptors {info['time_descriptors_s']:.1f} s, "
          f"kernel rows {info['time_kernel_rows_s']:.1f} s, solve {info['time_solve_s']:.1f} s)")
    calc.save(args.output, metadata={"trained_on": os.path.basename(args.train), **info})
    report(calc.model, train, test, plot=args.plot or os.path.splitext(args.output)[0] + ".png")
    print(f"model written to {args.output}")
