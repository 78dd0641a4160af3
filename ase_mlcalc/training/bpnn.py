"""Training of Behler-Parrinello networks (:class:`~ase_mlcalc.models.bpnn.BPNNModel`) on energies and forces.

The descriptors and their Jacobians of the training frames are computed
once; the force loss is differentiated through the (materialised, hence
differentiable) Jacobian. Adam on mini-batches, then full-batch L-BFGS.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np
import torch
from ase.data import chemical_symbols

from ..calculator import resolve_device
from ..descriptors.autograd import from_jacobian
from ..graph import batch_graphs, forces_and_virial
from ..models.bpnn import BPNN, BPNNModel
from ..models.repulsion import shortest_pair_distances
from ..species import as_atomic_numbers, species_of
from .data import (E0_METHODS, composition_matrix, fit_e0, frame_graphs, isolated_atom_energies, load_frames,
                   read_frames, reference_energies, reference_values)
from .metrics import finish_fit
from .settings import (check_choice, check_fraction, check_int, check_nonnegative, check_positive,
                       check_positive_int)

LBFGS_STEPS = 1000  # default full-batch L-BFGS iterations after the Adam phase
LBFGS_BLOCK = 20  # L-BFGS iterations between validations (and checkpoints)

class _Data:
    """Graphs, reference values and (optionally) cached descriptors+Jacobians of frames."""

    def __init__(self, frames, model, device, cache):
        ref = reference_values(frames, require_forces=True)
        self.graphs = frame_graphs(frames, model.cutoff, model.species, device=device)
        self.energy = torch.as_tensor(ref["energy"], device=device)
        self.n_atoms = torch.as_tensor(ref["n_atoms"], dtype=torch.float64, device=device)
        f = torch.as_tensor(ref["forces"], device=device)
        offs = np.cumsum([0] + [len(a) for a in frames])
        self.forces = [f[offs[k]:offs[k + 1]] for k in range(len(frames))]
        # reference virials W = -stress * volume (3, 3) eV, zero and masked out where a frame has no stress
        virial = np.zeros((len(frames), 3, 3))
        has = np.zeros(len(frames))
        if ref["stress"] is not None:
            from ase.stress import voigt_6_to_full_3x3_stress

            for k, (a, st) in enumerate(zip(frames, ref["stress"])):
                if np.all(np.isfinite(st)):
                    virial[k] = -voigt_6_to_full_3x3_stress(st) * a.get_volume()
                    has[k] = 1.0
        self.virial = torch.as_tensor(virial, device=device)
        self.has_virial = torch.as_tensor(has, device=device)
        self.q, self.jac, self._chunks = None, None, None
        if cache:
            self.q, self.jac = [], []
            for g in self.graphs:
                q, jac = model.descriptor.values_and_jacobian(
                    g.edge_vectors.detach().cpu().numpy(), g.centers, g.neighbors, g.species_index, g.n_atoms)
                self.q.append(torch.as_tensor(q, device=device))
                self.jac.append(torch.as_tensor(jac, device=device))

    def __len__(self):
        return len(self.graphs)

    def batch(self, idx):
        """Frames ``idx`` as one batch: (graph, descriptors, Jacobians (None if not cached),
        reference energies (B,), atom counts (B,), reference forces (atoms, 3), reference virials
        (B, 3, 3), virial mask (B,))."""
        g = batch_graphs([self.graphs[k] for k in idx])
        q = jac = None
        if self.q is not None:
            q = torch.cat([self.q[k] for k in idx])
            jac = torch.cat([self.jac[k] for k in idx])
        idx_t = torch.as_tensor(idx, device=self.energy.device)
        return (g, q, jac, self.energy[idx_t], self.n_atoms[idx_t], torch.cat([self.forces[k] for k in idx]),
                self.virial[idx_t], self.has_virial[idx_t])

    @property
    def n_virial(self):
        """Number of frames with a reference stress."""
        return int(self.has_virial.sum())

    def chunks(self, size):
        """All frames in order as batches of at most ``size`` frames, assembled once per size and reused
        (validation every epoch, full-batch L-BFGS every iteration)."""
        if self._chunks is None or self._chunks[0] != size:
            self._chunks = (size, [self.batch(list(range(start, min(start + size, len(self)))))
                                   for start in range(0, len(self), size)])
        return self._chunks[1]


_VOIGT = ([0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1])


def _loss_terms(model, batch, create_graph):
    """Squared errors of a batch: energies per atom (B,), force components (atoms, 3), and virials per
    atom (B,): the mean over the 6 Voigt components of ((W - W_ref) / N)^2, eV^2, 0 without a reference stress."""
    g, q, jac, e_ref, n, f_ref, v_ref, has_v = batch
    sidx = g.tensor("species_index")
    if q is not None:
        q = from_jacobian(g.edge_vectors, q, jac, g.tensor("centers"))
        eps = model.readout(q, sidx) + model.e0[sidx]
    else:
        model.descriptor_jacobian = True
        try:
            eps = model(g)
        finally:
            model.descriptor_jacobian = False
    e = torch.zeros(g.n_structures, dtype=eps.dtype, device=eps.device).index_add(0, g.tensor("batch"), eps)
    f, virial, _ = forces_and_virial(g, e.sum(), create_graph=create_graph)
    dv = (virial - v_ref)[:, _VOIGT[0], _VOIGT[1]] / n[:, None]
    return ((e - e_ref) / n) ** 2, (f - f_ref) ** 2, (dv ** 2).mean(1) * has_v


def _weighted_loss(terms, idx, loss_weights, counts, frame_weights=None):
    """``energy_weight * sum(w de2) / n_frames + force_weight * sum(w df2) / n_components
    + virial_weight * sum(w dv2) / n_virial`` (scalar tensor).

    ``terms`` = (de2 (B,), df2 (atoms, 3), dv2 (B,)) of frames ``idx`` (see :func:`_loss_terms`);
    ``loss_weights`` = (energy, force, virial) weights; ``counts`` = (n_frames, n_components,
    n_virial) normalisers; ``frame_weights`` None or (per-frame weights (n_frames,), atoms per frame) tensors.
    """
    de2, df2, dv2 = terms
    if frame_weights is not None:
        fw, n_atoms = frame_weights
        idx_t = torch.as_tensor(idx, device=de2.device)
        de2 = fw[idx_t] * de2
        dv2 = fw[idx_t] * dv2
        df2 = torch.repeat_interleave(fw[idx_t], n_atoms[idx_t])[:, None] * df2
    we, wf, wv = loss_weights
    n_frames, n_components, n_virial = counts
    loss = we * de2.sum() / n_frames + wf * df2.sum() / n_components
    return loss + wv * dv2.sum() / n_virial if wv and n_virial else loss


def _frame_weights(frames, frame_weights):
    """Per-frame loss weights (n_frames,) float64 numpy array with mean 1 (or None for uniform).

    ``frame_weights`` None (uniform), "balanced" (each ``atoms.info["config_type"]``
    group weighted by 1/sqrt(its frame count), so that rare configuration types
    such as surfaces count more), a dict {config_type: weight} (types not listed: 1),
    or a sequence of one non-negative weight per frame.
    """
    if frame_weights is None:
        return None
    types = [str(a.info.get("config_type", "")) for a in frames]
    if isinstance(frame_weights, str):
        if frame_weights != "balanced":
            raise ValueError(f"frame_weights must be None, 'balanced', a dict by config_type or one weight per "
                             f"frame, got {frame_weights!r}")
        counts = {t: types.count(t) for t in set(types)}
        w = np.array([1.0 / math.sqrt(counts[t]) for t in types])
    elif isinstance(frame_weights, dict):
        w = np.array([float(frame_weights.get(t, 1.0)) for t in types])
    else:
        w = np.asarray(frame_weights, dtype=np.float64).reshape(-1)
        if len(w) != len(frames):
            raise ValueError(f"frame_weights has {len(w)} entries for {len(frames)} training frames")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("frame_weights must be finite, non-negative and not all zero")
    return w / w.mean()


def _new_model(species, model_settings, seed, tr_frames, va_frames, e_train, device, cache_descriptors, e0,
               e0_method, isolated_atom_e0):
    """A BPNNModel with seeded initial networks and its statistics (standardisation, e0, energy scale)
    from the training frames; with the training and validation data."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = BPNNModel(species, **model_settings)
        if list(species) != sorted(species):  # the same initial networks whatever order the species come in
            torch.manual_seed(int(seed))
            _copy_networks(BPNNModel(sorted(species), **model_settings), model)
    # statistics from the training part only
    tr = _Data(tr_frames, model, device, cache_descriptors)
    va = _Data(va_frames, model, device, cache_descriptors) if va_frames else None
    if cache_descriptors:
        q_all = torch.cat(tr.q).cpu().numpy()
    else:
        q_all = np.concatenate([model.descriptor.values(g.edge_vectors.detach().cpu().numpy(), g.centers,
                                                        g.neighbors, g.species_index, g.n_atoms)
                                for g in tr.graphs])
    sidx_all = np.concatenate([g.species_index for g in tr.graphs])
    e0_start = fit_e0(tr_frames, species, e_train)
    scale = float(torch.sqrt(torch.mean(torch.cat(tr.forces) ** 2)))
    if not np.isfinite(scale) or scale < 1e-3:
        resid = (e_train - composition_matrix(tr_frames, species) @ e0_start) / np.array([len(a) for a in tr_frames])
        scale = max(float(np.std(resid)), 1e-3)
    model.set_statistics(q_all, sidx_all, e0_start, scale)
    # Which reference energies does the data fix (given, or isolated-atom frames)? Those the networks must
    # reproduce exactly, so training then uses the isolated-atom baseline form NN(x) - NN(x^0). Otherwise
    # e0 is a fitted offset: training uses the plain form e0 + NN(x) (the baseline term couples every
    # atom's gradient to the far-out input x^0, which measurably slows the fit: mlearn Mo test 6.60 vs 3.62
    # meV/atom), and NN(x^0) is folded into e0 afterwards -- the same function, with e0 = the energy
    # of an isolated atom.
    fixed = e0 is not None or (e0_method in ("auto", "isolated")
                               and bool(isolated_atom_energies(tr_frames, model.cutoff)))
    model.isolated_atom_e0 = isolated_atom_e0 and fixed
    nn_start = np.zeros(len(tr_frames))
    if model.isolated_atom_e0:
        # the untrained networks' energies relative to an isolated atom are far from zero: e0 (where the
        # data leave it free) is fitted to what they leave
        with torch.no_grad():
            nn = model.readout(torch.as_tensor(q_all), torch.as_tensor(sidx_all)).numpy()
        nn_start = np.add.reduceat(nn, np.cumsum([0] + [g.n_atoms for g in tr.graphs])[:-1])
    e0_values = reference_energies(tr_frames, species, e_train - nn_start, model.cutoff, e0, e0_method)
    model.set_statistics(q_all, sidx_all, e0_values, scale)
    return model, tr, va


def _copy_networks(source, target):
    """Give ``target`` the networks of ``source`` (the same elements in another order), each network's
    input weights permuted to ``target``'s feature order (matched by the descriptors' feature names)."""
    names = source.descriptor.feature_names
    perm = torch.as_tensor([names.index(n) for n in target.descriptor.feature_names])
    with torch.no_grad():
        for s, z in enumerate(target.species):
            state = source.nets[list(source.species).index(z)].state_dict()
            state["0.weight"] = state["0.weight"][:, perm]
            target.nets[s].load_state_dict(state)


def _evaluate_set(model, data, batch_size):
    """Mean squared errors over a whole set: (energy per atom (eV/atom)^2, force (eV/Å)^2,
    virial per atom (eV/atom)^2 over the frames with stress, 0 without)."""
    se, sf, sv, nf = 0.0, 0.0, 0.0, 0
    for batch in data.chunks(batch_size):
        de2, df2, dv2 = _loss_terms(model, batch, create_graph=False)
        se += float(de2.detach().sum())
        sf += float(df2.detach().sum())
        sv += float(dv2.detach().sum())
        nf += df2.numel()
    return se / max(len(data), 1), sf / max(nf, 1), sv / max(data.n_virial, 1)


def fit_bpnn(train, test=None, *, species=None, cutoff=5.0, acsf=None, n_radial=16, r_min=1.5,
               n_angular_eta=3, zeta=(1.0, 2.0, 4.0, 16.0), lambda_=(1.0, -1.0), hidden=(64, 64),
               activation="tanh", energy_weight=1.0, force_weight=0.003, virial_weight=0.04, e0=None,
               e0_method="auto", epochs=2000, batch_size=16, lr=2e-3,
               lr_factor=0.5, lr_patience=50, min_lr=1e-5, weight_decay=0.0, validation_fraction=0.1,
               patience=150, lr_schedule="plateau", lbfgs_steps=LBFGS_STEPS, lbfgs_history=50, lbfgs_patience=400,
               frame_weights=None, feature_transform="none", isolated_atom_e0=True, core_repulsion="zbl",
               committee=None,
               committee_data="shuffle", initial_model=None, seed=0, checkpoint=None, resume=False,
               checkpoint_every=10, progress=True, device="cpu", cache_descriptors=True, verbose=False):
    """Train a Behler-Parrinello network on energies and forces; returns a :class:`BPNN` calculator.

    Loss per step: ``energy_weight * mean_frames((E - E_ref) / N_atoms)^2 +
    force_weight * mean_components(F - F_ref)^2 + virial_weight *
    mean_frames_with_stress mean_voigt((W - W_ref) / N_atoms)^2`` (eV/atom, eV/Å,
    eV/atom; the virial W = -stress * volume, as gap_fit's; the default virial
    weight 0.04 is the ratio (0.01 / 0.05)^2 of GAP's default energy and virial
    sigmas). Adam
    on mini-batches of frames, learning rate reduced by ``lr_factor`` when the
    validation loss has not improved for ``lr_patience`` epochs
    (:class:`torch.optim.lr_scheduler.ReduceLROnPlateau`); training stops
    after ``epochs``, when the validation loss has not improved for
    ``patience`` epochs, or when the learning rate falls below ``min_lr``.
    Then, from the best Adam weights, ``lbfgs_steps`` iterations of full-batch
    L-BFGS (:class:`torch.optim.LBFGS`, strong-Wolfe line search; the gradient of
    the whole training set's loss, divided by its starting value so that
    L-BFGS's tolerances are relative, is accumulated over chunks of frames)
    refine the fit, validated every 20 iterations; it stops early after
    ``lbfgs_patience`` iterations without a better validation loss. Small
    data sets such as mlearn's (~200 frames) are fitted far more tightly by
    this second-order refinement than by Adam alone (Mo test energy RMSE
    6.4 -> ~4 meV/atom), as in n2p2's and RuNNer's use of (Kalman-filter)
    second-order optimisers for Behler-Parrinello networks. The weights with
    the best validation loss over both phases are returned.

    Parameters
    ----------
    train : list of ase.Atoms (or a file path) with reference energies (eV) and forces (eV/Å)
    test : optional labelled frames (or path) evaluated at the end (``calc.metrics["test"]``)
    species : elements (default: those in the training frames)
    cutoff : float, Å
    acsf : dict of ACSF parameters (see :class:`BPNNModel`), or None for
        :meth:`ACSF.default` with ``n_radial``, ``r_min``, ``n_angular_eta``, ``zeta``, ``lambda_``
    hidden, activation, feature_transform : network shape and input transform (see :class:`BPNNModel`)
    core_repulsion : "zbl" (default) or None: a ZBL nuclear repulsion below 0.8 times the shortest distance
        of each species pair in the training and validation frames (capped at 0.8 times the sum of the
        covalent radii), where the networks have no data (:mod:`ase_mlcalc.models.repulsion`); exactly
        zero on every training frame. Without it a network can let atoms collapse in MD (acetylacetone, 300 K: two carbon atoms
        at 0.09 Å within 6 ps). A warm start keeps the initial model's term and lowers its radii to what
        new frames come closer than
    isolated_atom_e0 : the returned model gives an isolated atom exactly its e0 (default True; see
        :class:`~ase_mlcalc.models.bpnn.BPNNModel`); e0 is then the data's isolated-atom energy where
        the data fix it (``e0`` given, or isolated-atom frames), else the trained networks' value
    energy_weight, force_weight, virial_weight : loss weights (see above; the virial term counts
        only frames with a reference stress)
    e0 : fixed per-species reference energies (number or {element: eV}); else ``e0_method``: "auto"
        (default: isolated-atom frames where present, the rest by least squares of what the untrained
        networks leave), "isolated", "average" or "least_squares"
        (:func:`ase_mlcalc.training.data.reference_energies`). With the default
        ``isolated_atom_e0`` an isolated atom then has exactly this energy.
    epochs, batch_size, lr, lr_factor, lr_patience, min_lr, weight_decay : optimiser settings
    lr_schedule : "plateau" (default: ReduceLROnPlateau as above) or "cosine"
        (cosine annealing from ``lr`` to ``min_lr`` over ``epochs``; ``lr_factor``
        and ``lr_patience`` unused; early stopping after ``patience`` still applies)
    lbfgs_steps : L-BFGS iterations after the Adam phase (default 1000; 0: Adam only)
    lbfgs_history : L-BFGS history size (curvature pairs kept)
    lbfgs_patience : stop the L-BFGS phase after this many iterations without a better validation loss
    frame_weights : None (uniform), "balanced" (weight each ``atoms.info["config_type"]``
        group by 1/sqrt(frame count), up-weighting rare types such as surfaces), a dict
        {config_type: weight}, or one non-negative weight per training frame; weights are normalised to mean 1
        over the training part and multiply both the energy and the force loss of a
        frame. The validation loss (schedule, early stopping) stays unweighted.
    validation_fraction : share of ``train`` held out for the schedule and
        early stopping (0: none; then the training loss drives both)
    patience : early-stopping patience in epochs
    seed : int; fixes the initial weights, the validation split and the batch order
    checkpoint : path of a checkpoint written every ``checkpoint_every`` epochs and at the end
    resume : continue from ``checkpoint`` if it exists (same data and settings)
    progress : tqdm progress bar over epochs
    device : "cpu" or "cuda" (or None: CUDA when available)
    committee : None, or K >= 2: train K networks (seeds ``seed``, ``seed + 1``, ...: other initial
        weights, validation splits and batch orders) and return their
        :class:`~ase_mlcalc.models.committee.CommitteeModel` (mean prediction; the spread is the
        uncertainty); ``checkpoint`` then gets a ``.k`` suffix per member
    committee_data : "shuffle" (every member sees all frames, default) or "bootstrap" (each member a
        resample of the frames with replacement)
    initial_model : a BPNNModel (or, with ``committee``, a CommitteeModel) to continue training from:
        its weights, feature statistics and e0 are kept (a warm start: the model settings above are ignored)
    cache_descriptors : compute descriptors and Jacobians of the frames once
        (fast; memory ~ 24 n_edges n_features bytes); False recomputes them
        each batch through ``descriptor.torch(graph, jacobian=True)``

    Returns
    -------
    BPNN calculator; ``calc.model.fit_info`` holds the history (per Adam epoch
    and per block of 20 L-BFGS iterations: train/validation RMSEs, ``phase``) and ``calc.metrics`` the error metrics
    (:func:`ase_mlcalc.training.error_metrics`) of train/validation/test sets.

    Raises
    ------
    TrainingDataError
        Frames without energies or forces, or with elements not in ``species``.
    ValueError
        A setting out of range (named in the message: validation_fraction outside [0, 1),
        batch_size < 1, negative weights, ...), before any work.
    """
    if committee is not None:
        return _fit_committee(dict(locals()))
    t_start = time.perf_counter()
    validation_fraction = check_fraction("validation_fraction", validation_fraction)
    batch_size = check_positive_int("batch_size", batch_size)
    epochs = check_int("epochs", epochs, 0)
    energy_weight = check_nonnegative("energy_weight", energy_weight)
    force_weight = check_nonnegative("force_weight", force_weight)
    virial_weight = check_nonnegative("virial_weight", virial_weight)
    if energy_weight + force_weight == 0:
        raise ValueError("energy_weight and force_weight must not both be zero")
    if e0 is None:
        check_choice("e0_method", e0_method, E0_METHODS)
    lbfgs_steps = check_int("lbfgs_steps", lbfgs_steps, 0)
    lbfgs_history = check_positive_int("lbfgs_history", lbfgs_history)
    lbfgs_patience = check_positive_int("lbfgs_patience", lbfgs_patience)
    lr = check_positive("lr", lr)
    min_lr = check_nonnegative("min_lr", min_lr)
    weight_decay = check_nonnegative("weight_decay", weight_decay)
    patience = check_positive_int("patience", patience)
    lr_patience = check_int("lr_patience", lr_patience, 0)
    checkpoint_every = check_positive_int("checkpoint_every", checkpoint_every)
    if not 0 < lr_factor < 1:
        raise ValueError(f"lr_factor must lie in (0, 1), got {lr_factor!r}")
    check_choice("lr_schedule", lr_schedule, ("plateau", "cosine"))
    model_settings = dict(cutoff=cutoff, acsf=acsf, hidden=hidden, activation=activation,
                          feature_transform=feature_transform, core_repulsion=core_repulsion,
                          acsf_defaults=dict(n_radial=n_radial, r_min=r_min, n_angular_eta=n_angular_eta,
                                             zeta=zeta, lambda_=lambda_))
    BPNNModel([1], **model_settings)  # validates the model settings before any work
    device = resolve_device(device)
    frames = load_frames(train)
    test = read_frames(test) if test is not None else None
    species = species_of(frames) if species is None else as_atomic_numbers(species)
    ref = reference_values(frames, require_forces=True)
    composition_matrix(frames, species)  # raises TrainingDataError for unlisted elements

    gen = torch.Generator().manual_seed(int(seed))
    n_val = int(round(validation_fraction * len(frames))) if len(frames) > 1 else 0
    perm = torch.randperm(len(frames), generator=gen).tolist()
    val_idx, train_idx = sorted(perm[:n_val]), sorted(perm[n_val:])
    tr_frames = [frames[k] for k in train_idx]
    if frame_weights is not None and not isinstance(frame_weights, (str, dict)):
        if len(frame_weights) != len(frames):
            raise ValueError(f"frame_weights has {len(frame_weights)} entries for {len(frames)} training frames")
        frame_weights = [frame_weights[k] for k in train_idx]
    fw = _frame_weights(tr_frames, frame_weights)
    va_frames = [frames[k] for k in val_idx]

    if initial_model is not None:  # warm start: its weights, statistics and e0 (e.g. on-the-fly updates)
        import copy

        model = copy.deepcopy(initial_model).to(device)
        if tuple(model.species) != tuple(species):
            raise ValueError(f"initial_model knows the species {model.symbols}, the frames need "
                             f"{[chemical_symbols[z] for z in species]}")
        model.requires_grad_(True)
        tr = _Data(tr_frames, model, device, cache_descriptors)
        va = _Data(va_frames, model, device, cache_descriptors) if va_frames else None
    else:
        model, tr, va = _new_model(species, model_settings, seed, tr_frames, va_frames, ref["energy"][train_idx],
                                   device, cache_descriptors, e0, e0_method, isolated_atom_e0)
    model.to(device)
    if model.core_repulsion is not None:  # zero on every frame the fit sees
        d = shortest_pair_distances(tr.graphs + (va.graphs if va is not None else []), len(species))
        model.core_repulsion.fit_to_distances(d)

    params = [p for p in model.parameters()]
    loss_weights = (energy_weight, force_weight, virial_weight)
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if lr_schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1), eta_min=min_lr)
    else:
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=lr_factor, patience=lr_patience)
    weights = None if fw is None else (torch.as_tensor(fw, device=device), tr.n_atoms.to(torch.long))
    history = []
    best = {"loss": math.inf, "state": None, "epoch": -1}
    start_epoch, phase, lbfgs_done, loss_scale = 0, "adam", 0, 1.0
    lbfgs_opt = None
    if lbfgs_steps > 0:
        lbfgs_opt = torch.optim.LBFGS(params, lr=1.0, max_iter=LBFGS_BLOCK, max_eval=3 * LBFGS_BLOCK,
                                      history_size=lbfgs_history, line_search_fn="strong_wolfe")
    if checkpoint is not None and resume and os.path.exists(checkpoint):
        ck = torch.load(checkpoint, map_location=device, weights_only=True)
        if (ck.get("hyperparameters") != model.hyperparameters() or ck.get("train_idx") != train_idx
                or ck.get("lbfgs_steps", 0) != lbfgs_steps):
            raise ValueError(f"checkpoint {checkpoint} was written for other data or settings; "
                             "remove it or train without resume")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        gen.set_state(ck["generator"])
        best = {"loss": ck["best_loss"], "state": ck["best_state"], "epoch": ck["best_epoch"]}
        history = ck["history"]
        start_epoch = ck["epoch"] + 1
        phase, lbfgs_done = ck.get("phase", "adam"), ck.get("lbfgs_iterations", 0)
        loss_scale = ck.get("lbfgs_loss_scale", 1.0)
        if phase == "lbfgs":
            lbfgs_opt.load_state_dict(ck["lbfgs_optimizer"])

    def save_checkpoint(epoch):
        if checkpoint is None:
            return
        payload = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                   "generator": gen.get_state(), "best_loss": best["loss"], "best_state": best["state"],
                   "best_epoch": best["epoch"], "history": history, "epoch": epoch,
                   "hyperparameters": model.hyperparameters(), "train_idx": train_idx,
                   "phase": phase, "lbfgs_iterations": lbfgs_done, "lbfgs_steps": lbfgs_steps,
                   "lbfgs_loss_scale": loss_scale}
        if phase == "lbfgs":
            payload["lbfgs_optimizer"] = lbfgs_opt.state_dict()
        tmp = os.fspath(checkpoint) + ".tmp"
        torch.save(payload, tmp)
        os.replace(tmp, checkpoint)

    def validate(rec, train_mse):
        """Validation errors into ``rec`` (the training MSEs stand in without a validation set);
        appends ``rec`` to the history, keeps the best weights; returns the validation loss."""
        model.eval()
        va_e, va_f, va_v = _evaluate_set(model, va, max(batch_size, 32)) if va is not None else train_mse
        val_loss = energy_weight * va_e + force_weight * va_f + virial_weight * va_v
        rec.update(val_energy_rmse=1000 * math.sqrt(va_e), val_force_rmse=math.sqrt(va_f), loss=val_loss)
        if tr.n_virial:
            rec["val_virial_rmse"] = math.sqrt(va_v)
        history.append(rec)
        if val_loss < best["loss"]:
            best.update(loss=val_loss, epoch=rec["epoch"],
                        state={k: v.detach().clone() for k, v in model.state_dict().items()})
        return val_loss

    from tqdm.auto import tqdm

    epoch = start_epoch - 1
    if phase == "adam":
        bar = tqdm(range(start_epoch, epochs), disable=not progress, desc="bpnn adam", unit="epoch",
                   initial=start_epoch, total=epochs)
        for epoch in bar:
            model.train()
            order = torch.randperm(len(tr), generator=gen).tolist()
            se = sf = sv = 0.0
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                batch = tr.batch(idx)
                terms = _loss_terms(model, batch, create_graph=True)
                loss = _weighted_loss(terms, idx, loss_weights,
                                      (len(idx), terms[1].numel(), float(batch[-1].sum())), weights)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                se += float(terms[0].detach().sum())
                sf += float(terms[1].detach().mean()) * len(idx)
                sv += float(terms[2].detach().sum())
            tr_e, tr_f, tr_v = se / len(tr), sf / len(tr), sv / max(tr.n_virial, 1)
            rec = {"epoch": epoch, "phase": "adam", "train_energy_rmse": 1000 * math.sqrt(tr_e),
                   "train_force_rmse": math.sqrt(tr_f), "lr": opt.param_groups[0]["lr"]}
            if tr.n_virial:
                rec["train_virial_rmse"] = math.sqrt(tr_v)
            val_loss = validate(rec, (tr_e, tr_f, tr_v))
            if lr_schedule == "cosine":
                sched.step()
            else:
                sched.step(val_loss)
            rec["lr"] = opt.param_groups[0]["lr"]
            bar.set_postfix(E=f"{rec['val_energy_rmse']:.2f}", F=f"{rec['val_force_rmse']:.3f}",
                            lr=f"{rec['lr']:.1e}")
            if verbose:
                print(f"epoch {epoch}: train E {rec['train_energy_rmse']:.3f} meV/atom F {rec['train_force_rmse']:.4f}"
                      f" | val E {rec['val_energy_rmse']:.3f} F {rec['val_force_rmse']:.4f} | lr {rec['lr']:.2e}")
            if checkpoint is not None and (epoch + 1) % checkpoint_every == 0:
                save_checkpoint(epoch)
            if epoch - best["epoch"] >= patience or opt.param_groups[0]["lr"] < min_lr:
                break
        bar.close()
        if lbfgs_steps > 0:
            # full-batch L-BFGS refinement from the best Adam weights
            phase = "lbfgs"
            if best["state"] is not None:
                model.load_state_dict(best["state"])
            # L-BFGS minimises loss / (its starting value): its tolerances become relative
            e2, f2, v2 = _evaluate_set(model, tr, max(batch_size, 64))
            loss_scale = max(energy_weight * e2 + force_weight * f2 + virial_weight * v2, 1e-300)
            save_checkpoint(epoch)

    if phase == "lbfgs":
        n_components = 3 * int(tr.n_atoms.sum())
        chunk = max(batch_size, 64)

        def closure():
            # gradient of the full-training-set loss, accumulated over chunks of frames (bounded memory)
            lbfgs_opt.zero_grad(set_to_none=True)
            total, se, sf, sv = 0.0, 0.0, 0.0, 0.0
            for start, batch in zip(range(0, len(tr), chunk), tr.chunks(chunk)):
                idx = list(range(start, min(start + chunk, len(tr))))
                terms = _loss_terms(model, batch, create_graph=True)
                loss = _weighted_loss(terms, idx, loss_weights, (len(tr), n_components, tr.n_virial), weights)
                loss = loss / loss_scale
                loss.backward()
                total += float(loss.detach())
                se += float(terms[0].detach().sum())
                sf += float(terms[1].detach().sum())
                sv += float(terms[2].detach().sum())
            closure.train = (se / len(tr), sf / n_components, sv / max(tr.n_virial, 1))
            return torch.tensor(total, dtype=torch.float64)

        bar = tqdm(total=lbfgs_steps, initial=lbfgs_done, disable=not progress, desc="bpnn lbfgs", unit="it")
        while lbfgs_done < lbfgs_steps:
            model.train()
            state = lbfgs_opt.state[params[0]]
            n_before, evals_before = state.get("n_iter", 0), state.get("func_evals", 0)
            max_iter = min(LBFGS_BLOCK, lbfgs_steps - lbfgs_done)
            lbfgs_opt.param_groups[0].update(max_iter=max_iter, max_eval=3 * max_iter)
            lbfgs_opt.step(closure)
            n_iter = state["n_iter"] - n_before
            converged = n_iter < max_iter and state["func_evals"] - evals_before < 3 * max_iter
            lbfgs_done += n_iter
            epoch += 1
            tr_e, tr_f, tr_v = closure.train
            rec = {"epoch": epoch, "phase": "lbfgs", "iteration": lbfgs_done,
                   "train_energy_rmse": 1000 * math.sqrt(tr_e), "train_force_rmse": math.sqrt(tr_f),
                   "lr": float("nan")}
            if tr.n_virial:
                rec["train_virial_rmse"] = math.sqrt(tr_v)
            validate(rec, closure.train)
            bar.update(n_iter)
            bar.set_postfix(E=f"{rec['val_energy_rmse']:.2f}", F=f"{rec['val_force_rmse']:.3f}")
            if verbose:
                print(f"lbfgs {lbfgs_done}: train E {rec['train_energy_rmse']:.3f} meV/atom "
                      f"F {rec['train_force_rmse']:.4f} | val E {rec['val_energy_rmse']:.3f} "
                      f"F {rec['val_force_rmse']:.4f}")
            save_checkpoint(epoch)
            best_iteration = max([h["iteration"] for h in history
                                  if h.get("phase") == "lbfgs" and h["epoch"] == best["epoch"]] or [0])
            if converged or not math.isfinite(tr_e + tr_f) or lbfgs_done - best_iteration >= lbfgs_patience:
                break  # below L-BFGS's tolerances, diverged, or no better validation loss for a while
        bar.close()
    save_checkpoint(epoch)
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    model.eval()
    if isolated_atom_e0 and not model.isolated_atom_e0:  # fold NN(x^0) into e0 (the same function)
        with torch.no_grad():
            x0 = torch.zeros(len(species), model.n_features, dtype=model.e0.dtype, device=model.e0.device)
            base = model.readout(x0, torch.arange(len(species), device=x0.device))
            model.e0 += base
            model.isolated_atom_e0 = True
    fit_info = {"history": history, "best_epoch": best["epoch"],
                "epochs_run": sum(1 for h in history if h.get("phase", "adam") == "adam"),
                "lbfgs_iterations": lbfgs_done, "seed": int(seed),
                "e0": dict(zip(model.symbols, map(float, model.e0))), "n_virial_frames": tr.n_virial}
    return finish_fit(BPNN(model=model, device=device), {"train": tr_frames, "validation": va_frames, "test": test},
                      fit_info, t_start)


def _fit_committee(kwargs):
    """fit_bpnn(committee=K): K members, then their CommitteeModel with the members' metrics."""
    from ..models.committee import Committee, CommitteeModel

    t_start = time.perf_counter()
    K = check_int("committee", kwargs.pop("committee"), 2)
    how = check_choice("committee_data", kwargs.pop("committee_data"), ("shuffle", "bootstrap"))
    train, test, seed, checkpoint = kwargs.pop("train"), kwargs.pop("test"), kwargs.pop("seed"), kwargs.pop("checkpoint")
    start = kwargs.pop("initial_model")
    if start is not None and (not isinstance(start, CommitteeModel) or len(start.members) != K):
        raise ValueError(f"initial_model of a committee of {K} must be a CommitteeModel of {K} members")
    frames = load_frames(train)
    test = read_frames(test) if test is not None else None
    members, infos = [], []
    for k in range(K):
        data = frames
        if how == "bootstrap":
            pick = np.random.default_rng([seed, k]).integers(0, len(frames), len(frames))
            data = [frames[i] for i in np.sort(pick)]
        calc = fit_bpnn(data, None, seed=seed + k, checkpoint=None if checkpoint is None else f"{checkpoint}.{k}",
                        initial_model=None if start is None else start.members[k], **kwargs)
        members.append(calc.model)
        infos.append({"seed": seed + k, "metrics": calc.metrics, "wall_time_s": calc.model.fit_info["wall_time_s"],
                      "epochs_run": calc.model.fit_info["epochs_run"],
                      "lbfgs_iterations": calc.model.fit_info["lbfgs_iterations"]})
    model = CommitteeModel(members)
    fit_info = {"members": infos, "committee_data": how, "epochs_run": sum(i["epochs_run"] for i in infos),
                "lbfgs_iterations": sum(i["lbfgs_iterations"] for i in infos)}
    return finish_fit(Committee(model=model, device=kwargs["device"]), {"train": frames, "test": test}, fit_info,
                      t_start)


def train_bpnn(*args, **kwargs):
    """Deprecated name of :func:`fit_bpnn` (ase_mlcalc 0.1); same arguments."""
    import warnings

    warnings.warn("train_bpnn is now fit_bpnn (one verb for every family's fit)", DeprecationWarning, stacklevel=2)
    return fit_bpnn(*args, **kwargs)
