"""Fit of the GAP-style sparse GP (:class:`~ase_mlcalc.models.sparse_gp.SparseGPModel`) in bounded memory.

gap_fit's sparse GP ("deterministic training conditional"; Bartók & Csányi,
IJQC 115, 1051 (2015)): with K_NM the covariances between the observations
(total energies, force components, virials) and the sparse points, Lambda the
diagonal of expected errors and K_MM = U^T U,

    alpha = (K_MM + K_MN Lambda^-1 K_NM)^-1 K_MN Lambda^-1 y,

the least-squares solution of the stacked, whitened system
[Lambda^-1/2 K_NM; U] alpha = [Lambda^-1/2 y; 0], solved by a QR
factorisation (no normal equations). The rows are built and reduced in blocks
of structures (a tall-skinny QR: only the (M + 1) x (M + 1) triangle of
[A | b] is kept between blocks; Demmel et al., SIAM J. Sci. Comput. 34, A206
(2012)), so peak memory grows with the sparse set, not with the number of
force components.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.linalg
import scipy.sparse
import torch

from ..graph import build_graph
from ..models.sparse_gp import DEFAULTS, GAP, SparseGPModel
from ..species import as_atomic_numbers, species_of
from .data import composition_matrix, fit_e0, frame_label, load_frames, read_frames, reference_values
from .metrics import finish_fit
from .settings import check_choice, check_nonnegative, check_positive, check_positive_int

#: rows of K_NM gathered before each QR reduction, in units of the number of sparse points
BLOCK_ROWS_PER_SPARSE = 4


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
    p = np.maximum(lev / lev.sum(), 1e-300)
    return np.sort(rng.choice(len(X), size=n, replace=False, p=p / p.sum()))


def _default_sigma(default_sigma):
    sig = tuple(float(x) for x in np.atleast_1d(default_sigma))
    if not 2 <= len(sig) <= 3:
        raise ValueError(f"default_sigma must be (energy, force[, virial]) expected errors, got {default_sigma!r}")
    sig = sig + (DEFAULTS["default_sigma"][2],) * (3 - len(sig))
    for name, x in zip(("energy", "force", "virial"), sig):
        check_positive(f"default_sigma ({name})", x)
    return sig


def fit_gap(train, test=None, *, species=None, cutoff=DEFAULTS["cutoff"],
            cutoff_transition_width=DEFAULTS["cutoff_transition_width"], n_max=DEFAULTS["n_max"],
            l_max=DEFAULTS["l_max"], atom_sigma=DEFAULTS["atom_sigma"], zeta=DEFAULTS["zeta"],
            delta=DEFAULTS["delta"], n_sparse=DEFAULTS["n_sparse"], sparse_method="cur",
            default_sigma=DEFAULTS["default_sigma"], sparse_jitter=DEFAULTS["sparse_jitter"],
            compute_variance=True, seed=0, progress=True):
    """Fit a GAP-style sparse GP to total energies, forces (and virials where frames have stress).

    Parameters
    ----------
    train : list of ase.Atoms (or a file path) with reference energy (eV) and forces (eV/Å);
        stress (eV/Å³) used when present
    test : optional labelled frames (or path) evaluated at the end (``calc.metrics["test"]``)
    species : elements (default: those in the frames)
    cutoff, cutoff_transition_width, n_max, l_max, atom_sigma : SOAP (GAP's names; Å)
    zeta : int; delta : float, eV -- kernel delta^2 (q . q')^zeta
    n_sparse : sparse points per species (fewer if fewer atoms)
    sparse_method : "cur" (gap_fit's cur_points) or "random"
    default_sigma : (energy eV/atom, force eV/Å[, virial eV/atom]): expected errors
        (the regularisers, as gap_fit's default_sigma with sigma_per_atom=T:
        a structure of N atoms gets energy and virial variances sigma^2 N)
    sparse_jitter : relative jitter added to K_MM's diagonal
    compute_variance : store the predictive-variance factors (for the uncertainties)
    seed : random seed of the sparse-point draw
    progress : tqdm progress bars

    Returns
    -------
    GAP calculator with the fitted model; ``calc.metrics`` holds train/test
    errors, ``calc.model.fit_info`` timings and sizes.

    Raises
    ------
    ValueError
        A setting out of range (named in the message), before any work.
    TrainingDataError
        No frames, frames without energy or forces, or with elements outside ``species``.
    InvalidStructureError
        A frame with NaN or overlapping positions (named in the message).
    """
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    sig_e, sig_f, sig_v = _default_sigma(default_sigma)
    n_sparse = check_positive_int("n_sparse", n_sparse)
    sparse_method = check_choice("sparse_method", sparse_method, ("cur", "random"))
    sparse_jitter = check_nonnegative("sparse_jitter", sparse_jitter)
    term = dict(kind="soap", cutoff=cutoff, cutoff_transition_width=cutoff_transition_width, n_max=n_max,
                l_max=l_max, atom_sigma=atom_sigma, zeta=zeta, delta=delta, n_sparse=1)
    SparseGPModel([1], terms=[term])  # validates the term's settings before any work
    frames = load_frames(train)
    test = read_frames(test) if test is not None else None
    ref = reference_values(frames, require_forces=True)
    species = species_of(frames) if species is None else as_atomic_numbers(species)
    C = composition_matrix(frames, species)  # raises for elements outside species
    rng = np.random.default_rng(seed)

    def edges(k, atoms):
        g = _graph(k, atoms, max(cutoff, 1e-9), species)
        return g.edge_vectors.detach().numpy(), g.centers, g.neighbors, g.species_index

    # Candidates (descriptors of every atom), then sparse points per species.
    probe = SparseGPModel(species, terms=[term])
    xs, zs = [], []
    for k, atoms in enumerate(tqdm(frames, desc="SOAP", disable=not progress, leave=False)):
        x, z = probe.terms[0].candidates(*edges(k, atoms), len(atoms))
        xs.append(x)
        zs.append(z)
    X, Z = np.concatenate(xs), np.concatenate(zs)
    del xs
    chosen = []
    for s in range(len(species)):
        rows = np.flatnonzero(Z == s)
        if sparse_method == "cur":
            pick = cur_selection(X[rows], n_sparse, rng)
        else:
            pick = np.sort(rng.choice(len(rows), size=min(n_sparse, len(rows)), replace=False))
        chosen.append(rows[pick])
    chosen = np.concatenate(chosen)
    model = SparseGPModel(species, terms=[dict(term, n_sparse=len(chosen))])
    with torch.no_grad():
        model.terms[0].sparse_points.copy_(torch.as_tensor(X[chosen]))
        model.terms[0].sparse_species.copy_(torch.as_tensor(Z[chosen]))
    del X
    M = model.n_sparse
    t_desc = time.perf_counter()

    e0 = fit_e0(frames, species, ref["energy"])
    # jitter relative to each term's prior variance delta^2
    K_MM = scipy.linalg.block_diag(*[t.sparse_kernel() + (sparse_jitter * t.delta ** 2 + 1e-12) * np.eye(t.n_sparse)
                                     for t in model.terms])
    U = scipy.linalg.cholesky(K_MM, lower=False)

    # Blocked QR of [A | b], A = [Lambda^-1/2 K_NM; U], b = [Lambda^-1/2 y; 0].
    R = np.zeros((M, M + 1))
    R[:, :M] = U
    block, n_block_rows, n_obs = [], 0, 0
    block_limit = BLOCK_ROWS_PER_SPARSE * (M + 1)
    peak_block = 0

    def reduce():
        nonlocal R, block, n_block_rows, peak_block
        if block:
            stacked = np.concatenate([R] + block)
            peak_block = max(peak_block, stacked.nbytes)
            block, n_block_rows = [], 0
            R = scipy.linalg.qr(stacked, mode="r", overwrite_a=True, check_finite=False)[0][: M + 1]

    offset = 0
    for k, atoms in enumerate(tqdm(frames, desc="kernel rows", disable=not progress, leave=False)):
        n = len(atoms)
        D, i, j, sidx = edges(k, atoms)
        has_virial = ref["stress"] is not None and np.all(np.isfinite(ref["stress"][k]))
        energy_row, force_rows, virial_rows = _structure_rows(model, D, i, j, sidx, n, has_virial)
        w_e = 1.0 / (sig_e * np.sqrt(n))  # gap_fit's sigma_per_atom: variance sigma_E^2 * N
        rows = [np.append(energy_row * w_e, (ref["energy"][k] - C[k] @ e0) * w_e)[None],
                np.concatenate([force_rows / sig_f, ref["forces"][offset:offset + n].reshape(-1, 1) / sig_f], 1)]
        if has_virial:
            w_v = 1.0 / (sig_v * np.sqrt(n))
            rows.append(np.concatenate([virial_rows * w_v, (-ref["stress"][k] * atoms.get_volume() * w_v)[:, None]],
                                       1))  # virial = -stress * volume
        offset += n
        for r in rows:
            block.append(r)
            n_block_rows += len(r)
            n_obs += len(r)
        if n_block_rows >= block_limit:
            reduce()
    reduce()
    t_rows = time.perf_counter()
    if R.shape[0] < M + 1:  # fewer observations than sparse points + 1: pad (the triangle is still exact)
        R = np.concatenate([R, np.zeros((M + 1 - R.shape[0], M + 1))])
    alpha = scipy.linalg.solve_triangular(R[:M, :M], R[:M, M], lower=False)
    t_solve = time.perf_counter()

    with torch.no_grad():
        model.alpha.copy_(torch.as_tensor(alpha))
        if compute_variance:
            model.kmm_factor.copy_(torch.as_tensor(U))
            model.posterior_factor.copy_(torch.as_tensor(R[:M, :M]))
        model.e0.copy_(torch.as_tensor(e0))
    fit_info = {"n_sparse": M, "n_observations": n_obs, "time_descriptors_s": t_desc - t_start,
                "time_kernel_rows_s": t_rows - t_desc, "time_solve_s": t_solve - t_rows,
                "time_total_s": t_solve - t_start, "qr_block_bytes": int(peak_block)}
    return finish_fit(GAP(model=model), {"train": frames, "test": test}, fit_info, t_start)


def _graph(k, atoms, cutoff, species):
    from ..errors import InvalidStructureError, UnknownElementError

    try:
        return build_graph(atoms, cutoff, species)
    except (InvalidStructureError, UnknownElementError) as err:
        raise type(err)(f"{frame_label(k, atoms)}: {err}") from None


def _structure_rows(model, D, i, j, sidx, n_atoms, want_virial):
    """K_NM rows of one structure over all terms: energy (M,), forces (n_atoms*3, M), virial (6, M) or None.

    Force rows from the per-edge kernel gradients t (E, 3, M): F_k = sum_{i=k} t - sum_{j=k} t
    (as :func:`ase_mlcalc.graph.forces_and_virial`); virial W_ab = -sum_e D_a t_b, Voigt order.
    """
    E = len(i)
    inc = scipy.sparse.csr_matrix((np.r_[np.ones(E), -np.ones(E)], (np.r_[i, j], np.r_[np.arange(E), np.arange(E)])),
                                  shape=(n_atoms, E))
    energy_rows, force_rows, virial_rows = [], [], []
    for term in model.terms:
        energy_row, blocks = term.design(D, i, j, sidx, n_atoms)
        Mt = len(energy_row)
        forces = np.zeros((n_atoms, 3 * Mt))
        W = np.zeros((3, 3, Mt))
        for start, stop, t in blocks:
            forces += inc[:, start:stop] @ t.reshape(stop - start, -1)
            if want_virial:
                W -= np.einsum("ea,ebm->abm", D[start:stop], t)
        energy_rows.append(energy_row)
        force_rows.append(forces.reshape(n_atoms * 3, Mt))
        virial_rows.append(W[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]])
    return (np.concatenate(energy_rows), np.concatenate(force_rows, 1),
            np.concatenate(virial_rows, 1) if want_virial else None)
