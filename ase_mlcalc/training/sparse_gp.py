"""Fit of the GAP-style sparse GP (:class:`~ase_mlcalc.models.sparse_gp.SparseGPModel`) in bounded memory.

gap_fit's sparse GP ("deterministic training conditional"; Bartók & Csányi,
IJQC 115, 1051 (2015)): with K_NM the covariances between the observations
(total energies, force components, virials) and the sparse points of all
terms, Lambda the diagonal of expected errors and K_MM = U^T U (block
diagonal over the terms),

    alpha = (K_MM + K_MN Lambda^-1 K_NM)^-1 K_MN Lambda^-1 y,

the least-squares solution of the stacked, whitened system
[Lambda^-1/2 K_NM; U] alpha = [Lambda^-1/2 y; 0], solved by a QR
factorisation (no normal equations). The rows are built and reduced in blocks
of structures (a tall-skinny QR: only the (M + 1) x (M + 1) triangle of
[A | b] is kept between blocks; Demmel et al., SIAM J. Sci. Comput. 34, A206
(2012)), so peak memory grows with the sparse set, not with the number of
force components.

gap_fit's conventions, as its sources define them (libAtoms/GAP gap_fit_module,
gp_predict, clustering): ``default_sigma`` and ``config_type_sigma`` energy and
virial sigmas are per atom (``sigma_per_atom=T``: a frame of N atoms gets
sigma^2 N), per-frame ``energy_sigma``/``force_sigma``/``virial_sigma`` info
keys are absolute; virial = -stress * volume; ``sparse_jitter`` is added to
K_MM's diagonal (eV^2); ``e0_method`` "isolated" takes one-atom frames
without neighbours, "average" the mean energy per atom for every element.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.linalg
import scipy.sparse
import torch

from ..errors import InvalidStructureError, UnknownElementError
from ..graph import build_graph
from ..models.sparse_gp import DEFAULTS, GAP, SparseGPModel
from ..species import as_atomic_numbers, species_of, symbols
from .data import (E0_METHODS, composition_matrix, frame_label, load_frames, read_frames, reference_energies,
                   reference_values)
from .metrics import finish_fit
from .settings import check_choice, check_nonnegative, check_positive, check_positive_int

#: rows of K_NM gathered before each QR reduction, in units of the number of sparse points
BLOCK_ROWS_PER_SPARSE = 4
#: sparse-point selection per term kind: the default first
SPARSE_METHODS = {"soap": ("cur", "random"), "distance_2b": ("uniform", "random")}


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


def uniform_selection(x, n, rng):
    """Indices of ``n`` data points spread over the range of the 1-D data ``x``, as gap_fit's ``uniform``
    (GAP clustering.f95): duplicates dropped, ``n`` bins between min and max with half-width end bins,
    the first point in each bin taken, empty bins' places filled at random; sorted."""
    x = np.asarray(x, dtype=np.float64).ravel()
    _, first = np.unique(x, return_index=True)
    first = np.sort(first)
    if n >= len(first):
        return first
    lo, hi = x[first].min(), x[first].max()
    bins = np.clip(np.rint((x[first] - lo) / (hi - lo) * (n - 1)).astype(np.int64), 0, n - 1) if hi > lo \
        else np.zeros(len(first), np.int64)
    _, taken = np.unique(bins, return_index=True)  # first point in each occupied bin
    chosen = first[taken]
    rest = np.setdiff1d(first, chosen)
    extra = rng.choice(rest, size=n - len(chosen), replace=False) if n > len(chosen) else np.zeros(0, np.int64)
    return np.sort(np.concatenate([chosen, extra]))


def _default_sigma(default_sigma, name="default_sigma"):
    sig = tuple(float(x) for x in np.atleast_1d(default_sigma))
    if not 2 <= len(sig) <= 4:
        raise ValueError(f"{name} must be (energy, force[, virial]) expected errors, got {default_sigma!r}")
    sig = sig[:3] + (DEFAULTS["default_sigma"][2],) * (3 - len(sig[:3]))
    for what, x in zip(("energy", "force", "virial"), sig):
        check_positive(f"{name} ({what})", x)
    return sig


def _config_type_sigma(config_type_sigma):
    """{config_type: (energy, force, virial)} from a dict or gap_fit's ``type:E:F:V[:H]`` string."""
    if config_type_sigma is None:
        return {}
    if isinstance(config_type_sigma, str):
        fields = config_type_sigma.replace(";", " ").replace(":", " ").split()
        if len(fields) % 5:
            raise ValueError("config_type_sigma string must hold type:energy:force:virial:hessian groups, "
                             f"got {config_type_sigma!r}")
        config_type_sigma = {fields[k]: tuple(map(float, fields[k + 1:k + 4])) for k in range(0, len(fields), 5)}
    return {str(t): _default_sigma(s, f"config_type_sigma[{t!r}]") for t, s in dict(config_type_sigma).items()}


def frame_sigmas(frames, default_sigma, config_type_sigma=None):
    """Expected errors of every frame's observations as gap_fit sets them: (n_frames, 3) array of the
    energy (eV), force (eV/Å) and virial (eV) sigma of each frame.

    Precedence: the frame's ``energy_sigma`` / ``force_sigma`` / ``virial_sigma`` info keys (absolute),
    then ``config_type_sigma[atoms.info["config_type"]]``, then ``default_sigma``; these two are per
    atom for energies and virials (scaled by sqrt(N), gap_fit's ``sigma_per_atom``).
    """
    default = _default_sigma(default_sigma)
    by_type = _config_type_sigma(config_type_sigma)
    out = np.empty((len(frames), 3))
    for k, atoms in enumerate(frames):
        sig = np.array(by_type.get(str(atoms.info.get("config_type")), default))
        sig[[0, 2]] *= np.sqrt(len(atoms))
        for c, key in enumerate(("energy_sigma", "force_sigma", "virial_sigma")):
            if key in atoms.info:
                sig[c] = check_positive(f"{frame_label(k, atoms)} info {key}", atoms.info[key])
        out[k] = sig
    return out


def _terms(gap, terms, distance_2b, soap):
    """The fit's term specifications: (list of term dicts with ``kind``, ``n_sparse`` per species or pair,
    ``sparse_method``), from one of ``gap`` (gap_fit's string), ``terms``, or the SOAP keywords
    (plus an optional distance_2b dict)."""
    if gap is not None:
        if terms is not None:
            raise ValueError("give either gap or terms, not both")
        from ..interop.gap_strings import gap_terms

        terms = gap_terms(gap)
    elif terms is None:
        terms = ([dict(kind="distance_2b", **distance_2b)] if distance_2b else []) + [dict(kind="soap", **soap)]
    elif distance_2b:
        raise ValueError("give distance_2b with the SOAP keywords, or put it in terms")
    out = []
    for t in terms:
        t = dict(t)
        kind = t.get("kind", "soap")
        if kind not in SPARSE_METHODS:
            raise ValueError(f"unknown GP term kind {kind!r} (known: {', '.join(SPARSE_METHODS)})")
        t["kind"] = kind
        t["sparse_method"] = check_choice(f"{kind} sparse_method", t.get("sparse_method", SPARSE_METHODS[kind][0]),
                                          SPARSE_METHODS[kind])
        t["n_sparse"] = check_positive_int(f"{kind} n_sparse", t.get("n_sparse", DEFAULTS["n_sparse"]))
        out.append(t)
    return out


def fit_gap(train, test=None, *, species=None, gap=None, terms=None, distance_2b=None,
            cutoff=DEFAULTS["cutoff"], cutoff_transition_width=DEFAULTS["cutoff_transition_width"],
            n_max=DEFAULTS["n_max"], l_max=DEFAULTS["l_max"], atom_sigma=DEFAULTS["atom_sigma"],
            zeta=DEFAULTS["zeta"], delta=DEFAULTS["delta"], n_sparse=DEFAULTS["n_sparse"], sparse_method="cur",
            default_sigma=DEFAULTS["default_sigma"], config_type_sigma=None, e0=None, e0_method="auto",
            sparse_jitter=DEFAULTS["sparse_jitter"], compute_variance=True, seed=0, progress=True):
    """Fit a GAP-style sparse GP to total energies, forces (and virials where frames have stress).

    The GP is a sum of terms, given in one of three ways: the SOAP keywords below (one SOAP term,
    the mlearn Mo recipe by default), plus optionally ``distance_2b``; ``terms``, a list of dicts;
    or ``gap``, gap_fit's own string (``"distance_2b ... : soap ..."``; see
    :func:`ase_mlcalc.interop.gap_strings.gap_terms`).

    Parameters
    ----------
    train : list of ase.Atoms (or a file path) with reference energy (eV) and forces (eV/Å);
        stress (eV/Å³) used when present
    test : optional labelled frames (or path) evaluated at the end (``calc.metrics["test"]``)
    species : elements in channel order (default: those in the frames, sorted by atomic number)
    gap : gap_fit's ``gap=`` string
    terms : list of dicts: ``kind`` ("soap" or "distance_2b"), the keywords of
        :class:`~ase_mlcalc.models.sparse_gp.SoapTerm` / :class:`~ase_mlcalc.models.sparse_gp.PairTerm`,
        ``n_sparse`` (per species for SOAP, per species pair for distance_2b, as gap_fit's
        ``add_species``) and ``sparse_method`` ("cur" or "random" for SOAP, "uniform" or "random" for
        distance_2b; gap_fit's ``cur_points`` and ``uniform`` are the defaults)
    distance_2b : dict of PairTerm keywords (``cutoff``, ``delta``, ``theta``, ``n_sparse``, ...) for a
        pair term added to the SOAP one: GAP's distance_2b + SOAP recipe
    cutoff, cutoff_transition_width, n_max, l_max, atom_sigma : SOAP (GAP's names; Å)
    zeta, delta (eV), n_sparse (per species), sparse_method : the SOAP term's kernel and sparse set
    default_sigma : (energy eV/atom, force eV/Å[, virial eV/atom]): expected errors (gap_fit's
        default_sigma with sigma_per_atom=T: a structure of N atoms gets energy and virial variances sigma^2 N)
    config_type_sigma : {config_type: (energy, force, virial)} (same units) or gap_fit's
        ``"type:E:F:V:H ..."`` string; frames' own ``energy_sigma``, ``force_sigma``, ``virial_sigma``
        info keys (absolute, eV, eV/Å, eV) take precedence (see :func:`frame_sigmas`)
    e0 : fixed per-species reference energies (number or {element: eV}); else ``e0_method``:
        "auto" (default: isolated-atom frames where present, least squares on composition for the
        other elements), "isolated", "average" or "least_squares" (see :func:`ase_mlcalc.training.data.reference_energies`)
    sparse_jitter : eV^2 added to K_MM's diagonal (gap_fit's default 1e-10)
    compute_variance : store the predictive-variance factors (for the uncertainties)
    seed : random seed of the sparse-point draws
    progress : tqdm progress bars

    Returns
    -------
    GAP calculator with the fitted model; ``calc.metrics`` holds train/test errors,
    ``calc.model.fit_info`` timings, sizes, e0 and the peak size of a QR block.

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
    soap = dict(cutoff=cutoff, cutoff_transition_width=cutoff_transition_width, n_max=n_max, l_max=l_max,
                atom_sigma=atom_sigma, zeta=zeta, delta=delta, n_sparse=n_sparse, sparse_method=sparse_method)
    specs = _terms(gap, terms, distance_2b, soap)
    term_kwargs = [{k: v for k, v in t.items() if k != "sparse_method"} for t in specs]
    SparseGPModel([1], terms=[dict(t, n_sparse=1) for t in term_kwargs])  # validates every term before any work
    _default_sigma(default_sigma)
    _config_type_sigma(config_type_sigma)
    sparse_jitter = check_nonnegative("sparse_jitter", sparse_jitter)
    if e0 is None:
        check_choice("e0_method", e0_method, E0_METHODS)
    frames = load_frames(train)
    test = read_frames(test) if test is not None else None
    ref = reference_values(frames, require_forces=True)
    species = species_of(frames) if species is None else as_atomic_numbers(species)
    composition_matrix(frames, species)  # raises for elements outside species
    sigmas = frame_sigmas(frames, default_sigma, config_type_sigma)
    probe = SparseGPModel(species, terms=[dict(t, n_sparse=1) for t in term_kwargs])
    model_cutoff = probe.cutoff

    # Pass 1: candidate sparse points of every term, then the sparse sets (per species / species pair).
    cands = [([], []) for _ in specs]
    for k, atoms in enumerate(tqdm(frames, desc="descriptors", disable=not progress, leave=False)):
        D, i, j, sidx = frame_edges(k, atoms, model_cutoff, species)
        for term, (xs, zs) in zip(probe.terms, cands):
            x, z = term.candidates(*term_edges(term, D, i, j), sidx, len(atoms))
            xs.append(x)
            zs.append(z)
    chosen_sets = []
    for n_term, (spec, term, (xs, zs)) in enumerate(zip(specs, probe.terms, cands)):
        X, Z = np.concatenate(xs), np.concatenate(zs)
        pick = []
        for label in np.unique(Z):
            rows = np.flatnonzero(Z == label)
            # one random stream per term and element (pair): the draw does not depend on the species order
            rng = np.random.default_rng([seed, n_term, *term.label_elements(label)])
            method, n = spec["sparse_method"], spec["n_sparse"]
            if method == "cur":
                sel = cur_selection(X[rows], n, rng)
            elif method == "uniform":
                sel = uniform_selection(X[rows, 0], n, rng)
            else:
                sel = np.sort(rng.choice(len(rows), size=min(n, len(rows)), replace=False))
            pick.append(rows[sel])
        pick = np.concatenate(pick)
        chosen_sets.append((X[pick], Z[pick]))
    del cands
    model = SparseGPModel(species, terms=[dict(t, n_sparse=len(x)) for t, (x, _) in zip(term_kwargs, chosen_sets)],
                          variance=compute_variance)
    for term, (x, z) in zip(model.terms, chosen_sets):
        term.set_sparse(x, z)
    M = model.n_sparse
    t_desc = time.perf_counter()

    e0 = reference_energies(frames, species, ref["energy"], model_cutoff, e0, e0_method)
    solved = solve(model, frames, ref, sigmas, e0, sparse_jitter, compute_variance, progress=progress)
    fit_info = {"n_sparse": M, "n_sparse_per_term": [t.n_sparse for t in model.terms],
                "time_descriptors_s": t_desc - t_start, **solved,
                "time_total_s": time.perf_counter() - t_start}
    return finish_fit(GAP(model=model), {"train": frames, "test": test}, fit_info, t_start)


def sparse_factor(model, sparse_jitter=DEFAULTS["sparse_jitter"]):
    """Upper Cholesky factor U of K_MM + jitter (K_MM = U^T U), block diagonal over the terms.

    Raises ValueError (naming the remedy) when K_MM is not positive definite.
    """
    M = model.n_sparse
    K_MM = scipy.linalg.block_diag(*[t.sparse_kernel() for t in model.terms])
    K_MM[np.diag_indices(M)] += sparse_jitter
    try:
        return scipy.linalg.cholesky(K_MM, lower=False)
    except np.linalg.LinAlgError:
        raise ValueError(f"K_MM of the {M} sparse points is not positive definite: raise sparse_jitter "
                         f"(now {sparse_jitter} eV^2) or use fewer, less similar sparse points") from None


def frame_rows(model, k, atoms, ref, sigma, e0, columns=None):
    """The whitened rows [Lambda^-1/2 K_NM | Lambda^-1/2 y] of frame ``k``: its energy, forces and (with a
    reference stress) virial, (n_obs, M + 1). ``ref``: the frame's reference values (energy, forces (N, 3),
    stress (6,) or None); ``sigma``: its (energy, force, virial) sigmas; ``e0``: (n_species,) eV.
    ``columns``: a model whose terms hold only some sparse points (rows for those columns, no target)."""
    source = model if columns is None else columns
    n = len(atoms)
    D, i, j, sidx = frame_edges(k, atoms, source.cutoff, source.species)
    stress = ref.get("stress")
    has_virial = stress is not None and np.all(np.isfinite(stress))
    energy_row, force_rows, virial_rows = structure_rows(source, D, i, j, sidx, n, has_virial)
    sig_e, sig_f, sig_v = sigma
    if columns is not None:
        rows = [energy_row[None] / sig_e, force_rows / sig_f] + ([virial_rows / sig_v] if has_virial else [])
        return np.concatenate(rows)
    composition = np.bincount(sidx, minlength=len(model.species))
    rows = [np.append(energy_row, ref["energy"] - composition @ e0)[None] / sig_e,
            np.concatenate([force_rows, np.asarray(ref["forces"]).reshape(-1, 1)], 1) / sig_f]
    if has_virial:  # virial = -stress * volume
        rows.append(np.concatenate([virial_rows, (-np.asarray(stress) * atoms.get_volume())[:, None]], 1) / sig_v)
    return np.concatenate(rows)


def frame_references(ref, frames):
    """Per-frame reference dicts (energy, forces, stress) from :func:`reference_values` of ``frames``."""
    offsets = np.cumsum([0] + [len(a) for a in frames])
    return [{"energy": ref["energy"][k], "forces": ref["forces"][offsets[k]:offsets[k + 1]],
             "stress": None if ref["stress"] is None else ref["stress"][k]} for k in range(len(frames))]


def set_weights(model, R, U, e0, compute_variance=True):
    """alpha from the triangle R ((M + 1) x (M + 1): the QR factor of [A | b]) into ``model``, with the
    variance factors U and R[:M, :M] (zeroed without ``compute_variance``) and e0."""
    M = model.n_sparse
    if R.shape[0] < M + 1:  # fewer observations than sparse points + 1: pad (the triangle is still exact)
        R = np.concatenate([R, np.zeros((M + 1 - R.shape[0], M + 1))])
    alpha = scipy.linalg.solve_triangular(R[:M, :M], R[:M, M], lower=False)
    with torch.no_grad():
        model.alpha.copy_(torch.as_tensor(alpha))
        if model.variance:  # zero without compute_variance: no uncertainty outputs
            model.kmm_factor.zero_()
            model.posterior_factor.zero_()
            if compute_variance:
                model.kmm_factor.copy_(torch.as_tensor(U))
                model.posterior_factor.copy_(torch.as_tensor(R[:M, :M]))
        model.e0.copy_(torch.as_tensor(np.asarray(e0, dtype=np.float64)))


def qr_triangle(*blocks):
    """The (at most n_columns x n_columns) R factor of the stacked blocks (rows)."""
    stacked = np.concatenate(blocks)
    n = stacked.shape[1]
    return scipy.linalg.qr(stacked, mode="r", overwrite_a=True, check_finite=False)[0][:n]


def solve(model, frames, ref, sigmas, e0, sparse_jitter=DEFAULTS["sparse_jitter"], compute_variance=True,
          progress=False):
    """Fit the weights of a model whose sparse sets are chosen: alpha, the variance factors and e0
    are written into ``model``; returns a dict of sizes and timings.

    ``ref``: :func:`~ase_mlcalc.training.data.reference_values` of ``frames``; ``sigmas``: (n_frames, 3)
    from :func:`frame_sigmas`; ``e0``: (n_species,) eV.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    M = model.n_sparse
    U = sparse_factor(model, sparse_jitter)
    # Blocked QR of [A | b], A = [Lambda^-1/2 K_NM; U], b = [Lambda^-1/2 y; 0].
    R = np.concatenate([U, np.zeros((M, 1))], 1)
    block, n_block_rows, n_obs, peak_block = [], 0, 0, 0
    block_limit = BLOCK_ROWS_PER_SPARSE * (M + 1)
    per_frame = frame_references(ref, frames)
    for k, atoms in enumerate(tqdm(frames, desc="kernel rows", disable=not progress, leave=False)):
        rows = frame_rows(model, k, atoms, per_frame[k], sigmas[k], e0)
        block.append(rows)
        n_block_rows += len(rows)
        n_obs += len(rows)
        if n_block_rows >= block_limit or k == len(frames) - 1:
            peak_block = max(peak_block, (M + n_block_rows) * (M + 1) * 8)
            R = qr_triangle(R, *block)
            block, n_block_rows = [], 0
    t_rows = time.perf_counter()
    set_weights(model, R, U, e0, compute_variance)
    return {"n_observations": n_obs, "e0": dict(zip(symbols(model.species), map(float, e0))),
            "time_kernel_rows_s": t_rows - t0, "time_solve_s": time.perf_counter() - t_rows,
            "qr_block_bytes": int(peak_block)}


def frame_edges(k, atoms, cutoff, species):
    """``(D, i, j, species_index)`` of frame ``k`` from the package's edge builder; errors name the frame."""
    try:
        g = build_graph(atoms, cutoff, species)
    except (InvalidStructureError, UnknownElementError) as err:
        raise type(err)(f"{frame_label(k, atoms)}: {err}") from None
    return g.edge_vectors.detach().numpy(), g.centers, g.neighbors, g.species_index


def term_edges(term, D, i, j):
    """The edges of a term's own (smaller or equal) cutoff."""
    if len(D) == 0 or np.einsum("ij,ij->i", D, D).max() < term.cutoff ** 2:
        return D, i, j
    keep = np.einsum("ij,ij->i", D, D) < term.cutoff ** 2
    return D[keep], i[keep], j[keep]


def structure_rows(model, D, i, j, sidx, n_atoms, want_virial):
    """K_NM rows of one structure over all terms: energy (M,), forces (n_atoms*3, M), virial (6, M) or None.

    Force rows from the per-edge kernel gradients t (E, 3, M): F_k = sum_{i=k} t - sum_{j=k} t
    (as :func:`ase_mlcalc.graph.forces_and_virial`); virial W_ab = -sum_e D_a t_b, Voigt order.
    """
    energy_rows, force_rows, virial_rows = [], [], []
    for term in model.terms:
        Dt, it, jt = term_edges(term, D, i, j)
        E = len(it)
        inc = scipy.sparse.csr_matrix((np.r_[np.ones(E), -np.ones(E)], (np.r_[it, jt], np.r_[np.arange(E), np.arange(E)])),
                                      shape=(n_atoms, E))
        energy_row, blocks = term.design(Dt, it, jt, sidx, n_atoms)
        Mt = len(energy_row)
        forces = np.zeros((n_atoms, 3 * Mt))
        W = np.zeros((3, 3, Mt))
        for start, stop, t in blocks:
            forces += inc[:, start:stop] @ t.reshape(stop - start, -1)
            if want_virial:
                W -= np.einsum("ea,ebm->abm", Dt[start:stop], t)
        energy_rows.append(energy_row)
        force_rows.append(forces.reshape(n_atoms * 3, Mt))
        virial_rows.append(W[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]])
    return (np.concatenate(energy_rows), np.concatenate(force_rows, 1),
            np.concatenate(virial_rows, 1) if want_virial else None)


class GAPUpdater:
    """A sparse-GP fit that grows by frames and sparse points, without recomputing what it holds.

    It keeps the whitened design rows [Lambda^-1/2 K_NM | Lambda^-1/2 y] of every frame and the QR
    triangle of the data rows. A new labelled frame costs its own kernel rows and a rank update of
    the triangle (the R factor of [R; new rows], exact); new sparse points cost only their own kernel
    columns for the stored frames (descriptors of the new points alone), after which the triangle is
    re-factorised from the stored rows (O(n_obs M^2) linear algebra, no descriptor work). K_MM's
    Cholesky factor is recomputed for the new sparse set. The result equals :func:`fit_gap` on the
    same frames and sparse set to rounding (``tests/test_active.py``). e0 is kept as given.

    Parameters
    ----------
    model : SparseGPModel with its sparse sets and e0 (e.g. ``fit_gap(...).model``); it is updated in place
        while its sparse set keeps its size, replaced by a larger one (``self.model``) when points are added
    frames : the labelled frames it was fitted to (list of ase.Atoms)
    default_sigma, config_type_sigma : as :func:`fit_gap` (per-frame info sigmas apply too)
    sparse_jitter : eV^2; compute_variance : keep the variance factors (the uncertainties need them)
    """

    def __init__(self, model, frames=(), *, default_sigma=DEFAULTS["default_sigma"], config_type_sigma=None,
                 sparse_jitter=DEFAULTS["sparse_jitter"], compute_variance=True):
        self.model = model
        self.default_sigma = _default_sigma(default_sigma)
        self.config_type_sigma = _config_type_sigma(config_type_sigma)
        self.sparse_jitter = check_nonnegative("sparse_jitter", sparse_jitter)
        self.compute_variance = bool(compute_variance)
        self.e0 = model.e0.detach().cpu().numpy().copy()
        self.frames, self.rows = [], []
        M = model.n_sparse
        self.R = np.zeros((0, M + 1))
        self.add_frames(frames, solve=False)
        self.solve()

    def add_frames(self, frames, solve=True):
        """Add labelled frames (energy, forces, stress when periodic): their rows, a rank update of the triangle."""
        frames = list(frames)
        if not frames:
            return
        ref = frame_references(reference_values(frames, require_forces=True), frames)
        sig = frame_sigmas(frames, self.default_sigma, self.config_type_sigma)
        composition_matrix(frames, self.model.species)  # refuses unknown elements, naming the frame
        new = [frame_rows(self.model, len(self.frames) + k, a, ref[k], sig[k], self.e0)
               for k, a in enumerate(frames)]
        self.frames += frames
        self.rows += new
        self.R = qr_triangle(self.R, *new)
        if solve:
            self.solve()

    def add_sparse_points(self, term, points, labels, solve=True):
        """Add sparse points to term ``term`` (index into ``model.terms``): ``points`` (n, F) as the term's
        :meth:`candidates` return them, ``labels`` (n,) their species (pair) indices. Replaces
        ``self.model`` by a model with the larger sparse set (same weights until :meth:`solve`)."""
        points = np.asarray(points, dtype=np.float64)
        if len(points) == 0:
            return
        old = self.model
        kinds = [t.hyperparameters() for t in old.terms]
        # a model holding only the new points, for their kernel columns
        only = SparseGPModel(old.species, terms=[dict(kinds[term], n_sparse=len(points))])
        only.terms[0].set_sparse(points, labels)
        offsets = np.cumsum([0] + [t.n_sparse for t in old.terms])
        new_sizes = [t.n_sparse + (len(points) if k == term else 0) for k, t in enumerate(old.terms)]
        model = SparseGPModel(old.species, terms=[dict(h, n_sparse=n) for h, n in zip(kinds, new_sizes)],
                              variance=old.variance)
        for k, (t_old, t_new) in enumerate(zip(old.terms, model.terms)):
            x = t_old.sparse_points.detach().cpu().numpy()
            z = t_old.sparse_species.cpu().numpy()
            if k == term:
                x, z = np.concatenate([x, points.reshape(len(points), -1)]), np.concatenate([z, labels])
            t_new.set_sparse(x, z)
        with torch.no_grad():
            model.e0.copy_(old.e0)
        ref = frame_references(reference_values(self.frames, require_forces=True), self.frames)
        sig = frame_sigmas(self.frames, self.default_sigma, self.config_type_sigma)
        at = offsets[term + 1]  # the new columns go after the term's old ones
        for k, a in enumerate(self.frames):
            cols = frame_rows(self.model, k, a, ref[k], sig[k], self.e0, columns=only)
            self.rows[k] = np.concatenate([self.rows[k][:, :at], cols, self.rows[k][:, at:]], 1)
        self.model = model
        self.R = qr_triangle(np.zeros((0, model.n_sparse + 1)), *self.rows) if self.rows else \
            np.zeros((0, model.n_sparse + 1))
        if solve:
            self.solve()

    def solve(self):
        """alpha and the variance factors of the current frames and sparse set, into ``self.model``."""
        U = sparse_factor(self.model, self.sparse_jitter)
        M = self.model.n_sparse
        R = qr_triangle(self.R, np.concatenate([U, np.zeros((M, 1))], 1))
        set_weights(self.model, R, U, self.e0, self.compute_variance)
        return self.model
