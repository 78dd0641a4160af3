"""Behler-Parrinello neural-network potential (BPNN) on ACSF descriptors.

J. Behler and M. Parrinello, Phys. Rev. Lett. 98, 146401 (2007): the energy is
a sum of atomic energies, each the output of a small feed-forward network of
the centre atom's element applied to the atom's symmetry functions
(:class:`~ase_mlcalc.descriptors.ACSF`)::

    E = sum_i [ e0[s_i] + scale * NN_{s_i}((q_i - mean[s_i]) / std[s_i]) ]

``mean``/``std`` (input standardisation) come from the training descriptors,
``e0`` from a least-squares fit of the energies on composition
(:func:`ase_mlcalc.training.fit_e0`) and ``scale`` (eV) from the spread of the
training forces; all three are buffers saved with the model.

Forces and stress come from one autograd pass through the descriptor
(numba vector-Jacobian product) in :class:`~ase_mlcalc.calculator.MLCalculator`.
Training (:func:`train_bpnn`) fits energies and forces: the descriptors and
their Jacobians of the training frames are computed once, and the force
loss is differentiated through the (materialised, hence differentiable)
Jacobian.

Accuracy with the defaults (``train_bpnn(train, test)``: 40 ACSF features,
rc = 5 Å, [64, 64] tanh networks, Adam then 1000 full-batch L-BFGS
iterations, seed 0, one CPU thread; mlearn data of Zuo et al., J. Phys. Chem.
A 124, 731 (2020)), test-set RMSE (``benchmarks/RESULTS_bpnn.md``):

==================  =================  ==============  ==============  ===========================
set                 energy (meV/atom)  forces (eV/Å)   training time   published NNP energy RMSE
==================  =================  ==============  ==============  ===========================
Mo                  3.68               0.221           ~12 min         5.67
Li                  1.14               0.026           ~10 min         0.98
Li, cutoff=6.0      0.81               0.019           ~25 min         0.98
==================  =================  ==============  ==============  ===========================

Seed-to-seed spread on these small test sets (23 and 29 frames) is
~1 meV/atom for Mo (seed 1: 4.74) and ~0.1 for Li (seed 1: 1.05; with
cutoff=6.0: 0.80). Without the
L-BFGS phase (``lbfgs_steps=0``) the networks underfit: Mo 6.43 meV/atom, 0.253 eV/Å.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np
import torch

from ..calculator import MLCalculator, resolve_device
from ..descriptors.acsf import ACSF
from ..descriptors.autograd import from_jacobian
from ..errors import TrainingDataError
from .base import AtomisticModel, as_atomic_numbers, register_family

FEATURE_TRANSFORMS = ("none", "log")
LBFGS_STEPS = 1000  # default full-batch L-BFGS iterations after the Adam phase
LBFGS_BLOCK = 20  # L-BFGS iterations between validations (and checkpoints)
LOG_FEATURE_OFFSET = 1e-4

ACTIVATIONS = {
    "tanh": torch.nn.Tanh,
    "silu": torch.nn.SiLU,
    "softplus": torch.nn.Softplus,
    "gelu": torch.nn.GELU,
}


def _mlp(n_in, hidden, activation):
    layers, n = [], n_in
    for h in hidden:
        layers += [torch.nn.Linear(n, h, dtype=torch.float64), ACTIVATIONS[activation]()]
        n = h
    layers.append(torch.nn.Linear(n, 1, dtype=torch.float64))
    return torch.nn.Sequential(*layers)


class BPNNModel(AtomisticModel):
    """One multilayer perceptron per element on ACSF descriptors.

    Parameters
    ----------
    species : element symbols or atomic numbers
    cutoff : float, Å (the descriptor's cutoff)
    acsf : dict of :class:`ACSF` keyword arguments (``radial_eta``,
        ``radial_rs``, ``angular_eta``, ``zeta``, ``lambda_``) or None for
        :meth:`ACSF.default` with ``acsf_defaults``
    hidden : sequence of int, hidden-layer widths (default (64, 64))
    activation : "tanh" (default), "silu", "softplus" or "gelu"
    acsf_defaults : dict of keyword arguments for :meth:`ACSF.default` (used when ``acsf`` is None)
    feature_transform : "none" (default) or "log": the networks see
        ``log(q + 1e-4)`` instead of ``q`` before standardisation (compresses
        symmetry functions that span orders of magnitude; ACSF values are >= 0)

    Buffers
    -------
    e0 : (n_species,) eV; feature_mean, feature_std : (n_species, n_features);
    energy_scale : () eV

    Raises
    ------
    ValueError for an unknown activation, empty/negative widths, bad cutoff or species.
    """

    def __init__(self, species, cutoff=5.0, acsf=None, hidden=(64, 64), activation="tanh", acsf_defaults=None,
                 feature_transform="none"):
        super().__init__(species, cutoff)
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}")
        if feature_transform not in FEATURE_TRANSFORMS:
            raise ValueError(f"unknown feature_transform {feature_transform!r}; choose from {FEATURE_TRANSFORMS}")
        self.feature_transform = feature_transform
        hidden = [int(h) for h in hidden]
        if any(h < 1 for h in hidden):
            raise ValueError(f"hidden widths must be positive integers, got {hidden}")
        if acsf is None:
            self.descriptor = ACSF.default(self.species, self.cutoff, **(acsf_defaults or {}))
        else:
            params = {k: v for k, v in dict(acsf).items() if k not in ("species", "cutoff")}
            self.descriptor = ACSF(self.species, self.cutoff, **params)
        self.hidden = hidden
        self.activation = activation
        S, F = len(self.species), self.descriptor.n_features
        self.register_buffer("feature_mean", torch.zeros(S, F, dtype=torch.float64))
        self.register_buffer("feature_std", torch.ones(S, F, dtype=torch.float64))
        self.register_buffer("energy_scale", torch.ones((), dtype=torch.float64))
        self.nets = torch.nn.ModuleList([_mlp(F, hidden, activation) for _ in range(S)])
        # True: materialise the descriptor Jacobian so that forces can be differentiated (training).
        self.descriptor_jacobian = False

    @property
    def n_features(self):
        return self.descriptor.n_features

    def hyperparameters(self):
        acsf = self.descriptor.parameters()
        del acsf["species"], acsf["cutoff"]
        return {"species": list(self.species), "cutoff": self.cutoff, "acsf": acsf,
                "hidden": list(self.hidden), "activation": self.activation,
                "feature_transform": self.feature_transform}

    def transform(self, q):
        """Features fed to standardisation: ``q`` or ``log(q + 1e-4)`` (see ``feature_transform``)."""
        if self.feature_transform == "log":
            return torch.log(q.clamp_min(0) + LOG_FEATURE_OFFSET)
        return q

    def readout(self, q, species_index):
        """Atomic energies without e0, (N,), from descriptors ``q`` (N, F) and species indices (N,) tensor."""
        mean = self.feature_mean.to(q.dtype)
        std = self.feature_std.to(q.dtype)
        scale = self.energy_scale.to(q.dtype)
        q = self.transform(q)
        if len(self.nets) == 1:
            return self.nets[0]((q - mean[0]) / std[0]).squeeze(-1) * scale
        out = q.new_zeros(q.shape[0])
        for s, net in enumerate(self.nets):
            idx = torch.nonzero(species_index == s).squeeze(1)
            if idx.numel():
                out = out.index_copy(0, idx, net((q[idx] - mean[s]) / std[s]).squeeze(-1))
        return out * scale

    def atomic_energies(self, graph):
        q = self.descriptor.torch(graph, jacobian=self.descriptor_jacobian)
        return self.readout(q, graph.tensor("species_index"))

    def set_statistics(self, descriptors, species_index, e0, energy_scale):
        """Set the standardisation buffers from training descriptors (N, F) and species indices (N,)."""
        q = self.transform(torch.as_tensor(descriptors, dtype=torch.float64))
        sidx = torch.as_tensor(species_index)
        with torch.no_grad():
            for s in range(len(self.species)):
                qs = q[sidx == s]
                if len(qs) == 0:
                    continue
                mean = qs.mean(0)
                std = qs.std(0, unbiased=False) if len(qs) > 1 else torch.zeros_like(mean)
                std = torch.where(std > 1e-8 * (1 + mean.abs()), std, torch.ones_like(std))
                self.feature_mean[s].copy_(mean)
                self.feature_std[s].copy_(std)
            self.e0.copy_(torch.as_tensor(np.asarray(e0, dtype=np.float64)))
            self.energy_scale.fill_(float(energy_scale))


class BPNN(MLCalculator):
    """ASE calculator of a Behler-Parrinello network (energy, forces, stress).

    Parameters
    ----------
    model : BPNNModel (trained by :func:`train_bpnn` or loaded with :func:`ase_mlcalc.load`)
    device, dtype, skin, min_distance : see :class:`~ase_mlcalc.calculator.MLCalculator`
    """

    def __init__(self, model, device="cpu", **kwargs):
        if not isinstance(model, BPNNModel):
            raise TypeError(f"BPNN needs a BPNNModel, got {type(model).__name__}")
        super().__init__(model=model, device=device, **kwargs)


register_family("bpnn", BPNNModel, BPNN)


# ----------------------------------------------------------------------------- training


class _Data:
    """Graphs, reference values and (optionally) cached descriptors+Jacobians of frames."""

    def __init__(self, frames, model, device, cache):
        from ..training import frame_graphs, reference_values

        ref = reference_values(frames, require_forces=True)
        self.graphs = frame_graphs(frames, model.cutoff, model.species, device=device)
        self.energy = torch.as_tensor(ref["energy"], device=device)
        self.n_atoms = torch.as_tensor(ref["n_atoms"], dtype=torch.float64, device=device)
        f = torch.as_tensor(ref["forces"], device=device)
        offs = np.cumsum([0] + [len(a) for a in frames])
        self.forces = [f[offs[k]:offs[k + 1]] for k in range(len(frames))]
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
        reference energies (B,), atom counts (B,), reference forces (atoms, 3))."""
        from ..graph import batch_graphs

        g = batch_graphs([self.graphs[k] for k in idx])
        q = jac = None
        if self.q is not None:
            q = torch.cat([self.q[k] for k in idx])
            jac = torch.cat([self.jac[k] for k in idx])
        idx_t = torch.as_tensor(idx, device=self.energy.device)
        return g, q, jac, self.energy[idx_t], self.n_atoms[idx_t], torch.cat([self.forces[k] for k in idx])

    def chunks(self, size):
        """All frames in order as batches of at most ``size`` frames, assembled once per size and reused
        (validation every epoch, full-batch L-BFGS every iteration)."""
        if self._chunks is None or self._chunks[0] != size:
            self._chunks = (size, [self.batch(list(range(start, min(start + size, len(self)))))
                                   for start in range(0, len(self), size)])
        return self._chunks[1]


def _energies_forces(model, batch, create_graph):
    """Predicted (energies (B,), forces (atoms, 3)) and references (energies, atom counts, forces) of a batch."""
    from ..graph import forces_and_virial

    g, q, jac, e_ref, n, f_ref = batch
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
    f, _, _ = forces_and_virial(g, e.sum(), create_graph=create_graph)
    return e, f, e_ref, n, f_ref


def _loss_terms(model, batch, create_graph):
    """Squared errors of a batch: energies per atom (B,) and force components (atoms, 3)."""
    e, f, e_ref, n, f_ref = _energies_forces(model, batch, create_graph)
    return ((e - e_ref) / n) ** 2, (f - f_ref) ** 2


def _weighted_loss(de2, df2, idx, energy_weight, force_weight, n_frames, n_components, weights=None):
    """``energy_weight * sum(w de2) / n_frames + force_weight * sum(w df2) / n_components`` (scalar tensor).

    ``de2`` (B,) and ``df2`` (atoms, 3) are the squared errors of frames ``idx``;
    ``weights`` None or (per-frame weights (n_frames,), atoms per frame (n_frames,)) tensors.
    """
    if weights is not None:
        fw, n_atoms = weights
        idx_t = torch.as_tensor(idx, device=de2.device)
        de2 = fw[idx_t] * de2
        df2 = torch.repeat_interleave(fw[idx_t], n_atoms[idx_t])[:, None] * df2
    return energy_weight * de2.sum() / n_frames + force_weight * df2.sum() / n_components


def _frame_weights(frames, frame_weights):
    """Per-frame loss weights (n_frames,) float64 numpy array with mean 1 (or None for uniform).

    ``frame_weights`` None (uniform), "balanced" (each ``atoms.info["config_type"]``
    group weighted by 1/sqrt(its frame count), so that rare configuration types
    such as surfaces count more), or a sequence of one non-negative weight per frame.
    """
    if frame_weights is None:
        return None
    if isinstance(frame_weights, str):
        if frame_weights != "balanced":
            raise ValueError(f"frame_weights must be None, 'balanced' or one weight per frame, got {frame_weights!r}")
        types = [str(a.info.get("config_type", "")) for a in frames]
        counts = {t: types.count(t) for t in set(types)}
        w = np.array([1.0 / math.sqrt(counts[t]) for t in types])
    else:
        w = np.asarray(frame_weights, dtype=np.float64).reshape(-1)
        if len(w) != len(frames):
            raise ValueError(f"frame_weights has {len(w)} entries for {len(frames)} training frames")
        if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError("frame_weights must be finite, non-negative and not all zero")
    return w / w.mean()


def _evaluate_set(model, data, batch_size):
    """(energy MSE per atom (eV/atom)^2, force MSE (eV/Å)^2) over a whole set."""
    se, sf, nf = 0.0, 0.0, 0
    for batch in data.chunks(batch_size):
        de2, df2 = _loss_terms(model, batch, create_graph=False)
        se += float(de2.detach().sum())
        sf += float(df2.detach().sum())
        nf += df2.numel()
    return se / max(len(data), 1), sf / max(nf, 1)


def train_bpnn(train_frames, test_frames=None, species=None, cutoff=5.0, acsf=None, n_radial=16, r_min=1.5,
               n_angular_eta=3, zeta=(1.0, 2.0, 4.0, 16.0), lambda_=(1.0, -1.0), hidden=(64, 64),
               activation="tanh", energy_weight=1.0, force_weight=0.003, epochs=2000, batch_size=16, lr=2e-3,
               lr_factor=0.5, lr_patience=50, min_lr=1e-5, weight_decay=0.0, validation_fraction=0.1,
               patience=150, lr_schedule="plateau", lbfgs_steps=LBFGS_STEPS, lbfgs_history=50, lbfgs_patience=400,
               frame_weights=None, feature_transform="none", seed=0, checkpoint=None, resume=False,
               checkpoint_every=10, progress=True, device="cpu", cache_descriptors=True, verbose=False):
    """Train a Behler-Parrinello network on energies and forces; returns a :class:`BPNN` calculator.

    Loss per step: ``energy_weight * mean_frames((E - E_ref) / N_atoms)^2 +
    force_weight * mean_components(F - F_ref)^2`` (eV/atom and eV/Å). Adam
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
    train_frames : list of ase.Atoms (or a file path) with reference energies (eV) and forces (eV/Å)
    test_frames : optional labelled frames (or path) evaluated at the end (``calc.metrics["test"]``)
    species : elements (default: those in the training frames)
    cutoff : float, Å
    acsf : dict of ACSF parameters (see :class:`BPNNModel`), or None for
        :meth:`ACSF.default` with ``n_radial``, ``r_min``, ``n_angular_eta``, ``zeta``, ``lambda_``
    hidden, activation, feature_transform : network shape and input transform (see :class:`BPNNModel`)
    energy_weight, force_weight : loss weights (see above)
    epochs, batch_size, lr, lr_factor, lr_patience, min_lr, weight_decay : optimiser settings
    lr_schedule : "plateau" (default: ReduceLROnPlateau as above) or "cosine"
        (cosine annealing from ``lr`` to ``min_lr`` over ``epochs``; ``lr_factor``
        and ``lr_patience`` unused; early stopping after ``patience`` still applies)
    lbfgs_steps : L-BFGS iterations after the Adam phase (default 1000; 0: Adam only)
    lbfgs_history : L-BFGS history size (curvature pairs kept)
    lbfgs_patience : stop the L-BFGS phase after this many iterations without a better validation loss
    frame_weights : None (uniform), "balanced" (weight each ``atoms.info["config_type"]``
        group by 1/sqrt(frame count), up-weighting rare types such as surfaces) or
        one non-negative weight per training frame; weights are normalised to mean 1
        over the training part and multiply both the energy and the force loss of a
        frame. The validation loss (schedule, early stopping) stays unweighted.
    validation_fraction : share of ``train_frames`` held out for the schedule and
        early stopping (0: none; then the training loss drives both)
    patience : early-stopping patience in epochs
    seed : int; fixes the initial weights, the validation split and the batch order
    checkpoint : path of a checkpoint written every ``checkpoint_every`` epochs and at the end
    resume : continue from ``checkpoint`` if it exists (same data and settings)
    progress : tqdm progress bar over epochs
    device : "cpu" or "cuda" (or None: CUDA when available)
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
        Invalid settings (validation_fraction outside [0, 1), batch_size < 1, negative weights,
        negative lbfgs_steps).
    """
    from ..training import composition_matrix, evaluate, fit_e0, read_frames, reference_values, species_of

    t_start = time.perf_counter()
    if not 0 <= validation_fraction < 1:
        raise ValueError(f"validation_fraction must lie in [0, 1), got {validation_fraction}")
    if int(batch_size) < 1 or int(epochs) < 0:
        raise ValueError(f"need batch_size >= 1 and epochs >= 0, got {batch_size}, {epochs}")
    if energy_weight < 0 or force_weight < 0 or energy_weight + force_weight == 0:
        raise ValueError("energy_weight and force_weight must be >= 0 and not both zero")
    if int(lbfgs_steps) < 0 or int(lbfgs_history) < 1:
        raise ValueError(f"need lbfgs_steps >= 0 and lbfgs_history >= 1, got {lbfgs_steps}, {lbfgs_history}")
    lbfgs_steps = int(lbfgs_steps)
    if lr_schedule not in ("plateau", "cosine"):
        raise ValueError(f"lr_schedule must be 'plateau' or 'cosine', got {lr_schedule!r}")
    batch_size, epochs = int(batch_size), int(epochs)
    device = resolve_device(device)
    frames = read_frames(train_frames)
    if not frames:
        raise TrainingDataError("no training frames")
    test = read_frames(test_frames) if test_frames is not None else None
    species = species_of(frames) if species is None else as_atomic_numbers(species)
    ref = reference_values(frames, require_forces=True)
    composition_matrix(frames, species)  # raises TrainingDataError for unlisted elements

    gen = torch.Generator().manual_seed(int(seed))
    n_val = int(round(validation_fraction * len(frames))) if len(frames) > 1 else 0
    perm = torch.randperm(len(frames), generator=gen).tolist()
    val_idx, train_idx = sorted(perm[:n_val]), sorted(perm[n_val:])
    tr_frames = [frames[k] for k in train_idx]
    if frame_weights is not None and not isinstance(frame_weights, str):
        if len(frame_weights) != len(frames):
            raise ValueError(f"frame_weights has {len(frame_weights)} entries for {len(frames)} training frames")
        frame_weights = [frame_weights[k] for k in train_idx]
    fw = _frame_weights(tr_frames, frame_weights)
    va_frames = [frames[k] for k in val_idx]

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = BPNNModel(species, cutoff, acsf=acsf, hidden=hidden, activation=activation,
                          feature_transform=feature_transform,
                          acsf_defaults=dict(n_radial=n_radial, r_min=r_min, n_angular_eta=n_angular_eta,
                                             zeta=zeta, lambda_=lambda_))
    # statistics from the training part only
    e0 = fit_e0(tr_frames, species, ref["energy"][train_idx])
    tr = _Data(tr_frames, model, device, cache_descriptors)
    va = _Data(va_frames, model, device, cache_descriptors) if va_frames else None
    scale = float(torch.sqrt(torch.mean(torch.cat(tr.forces) ** 2)))
    if not np.isfinite(scale) or scale < 1e-3:
        resid = (ref["energy"][train_idx] - composition_matrix(tr_frames, species) @ e0) / ref["n_atoms"][train_idx]
        scale = max(float(np.std(resid)), 1e-3)
    if cache_descriptors:
        q_all = torch.cat(tr.q).cpu().numpy()
    else:
        q_all = np.concatenate([model.descriptor.values(g.edge_vectors.detach().cpu().numpy(), g.centers,
                                                        g.neighbors, g.species_index, g.n_atoms)
                                for g in tr.graphs])
    model.set_statistics(q_all, np.concatenate([g.species_index for g in tr.graphs]), e0, scale)
    model.to(device)

    params = [p for p in model.parameters()]
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
        va_e, va_f = _evaluate_set(model, va, max(batch_size, 32)) if va is not None else train_mse
        val_loss = energy_weight * va_e + force_weight * va_f
        rec.update(val_energy_rmse=1000 * math.sqrt(va_e), val_force_rmse=math.sqrt(va_f), loss=val_loss)
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
            se = sf = 0.0
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                de2, df2 = _loss_terms(model, tr.batch(idx), create_graph=True)
                loss = _weighted_loss(de2, df2, idx, energy_weight, force_weight, len(idx), df2.numel(), weights)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                se += float(de2.detach().sum())
                sf += float(df2.detach().mean()) * len(idx)
            tr_e, tr_f = se / len(tr), sf / len(tr)
            rec = {"epoch": epoch, "phase": "adam", "train_energy_rmse": 1000 * math.sqrt(tr_e),
                   "train_force_rmse": math.sqrt(tr_f), "lr": opt.param_groups[0]["lr"]}
            val_loss = validate(rec, (tr_e, tr_f))
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
            e2, f2 = _evaluate_set(model, tr, max(batch_size, 64))
            loss_scale = max(energy_weight * e2 + force_weight * f2, 1e-300)
            save_checkpoint(epoch)

    if phase == "lbfgs":
        n_components = 3 * int(tr.n_atoms.sum())
        chunk = max(batch_size, 64)

        def closure():
            # gradient of the full-training-set loss, accumulated over chunks of frames (bounded memory)
            lbfgs_opt.zero_grad(set_to_none=True)
            total, se, sf = 0.0, 0.0, 0.0
            for start, batch in zip(range(0, len(tr), chunk), tr.chunks(chunk)):
                idx = list(range(start, min(start + chunk, len(tr))))
                de2, df2 = _loss_terms(model, batch, create_graph=True)
                loss = _weighted_loss(de2, df2, idx, energy_weight, force_weight, len(tr), n_components, weights)
                loss = loss / loss_scale
                loss.backward()
                total += float(loss.detach())
                se += float(de2.detach().sum())
                sf += float(df2.detach().sum())
            closure.train = (se / len(tr), sf / n_components)
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
            tr_e, tr_f = closure.train
            rec = {"epoch": epoch, "phase": "lbfgs", "iteration": lbfgs_done,
                   "train_energy_rmse": 1000 * math.sqrt(tr_e), "train_force_rmse": math.sqrt(tr_f),
                   "lr": float("nan")}
            validate(rec, (tr_e, tr_f))
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
    calc = BPNN(model=model, device=device)
    metrics = {"train": evaluate(model, tr_frames)[0]}
    if va_frames:
        metrics["validation"] = evaluate(model, va_frames)[0]
    if test is not None:
        metrics["test"] = evaluate(model, test)[0]
    model.fit_info = {"history": history, "best_epoch": best["epoch"],
                      "epochs_run": sum(1 for h in history if h.get("phase", "adam") == "adam"),
                      "lbfgs_iterations": lbfgs_done,
                      "wall_time_s": time.perf_counter() - t_start, "seed": int(seed)}
    calc.metrics = metrics
    return calc


# ----------------------------------------------------------------------------- command line


def add_train_arguments(parser):
    """Options of ``ase-mlcalc train bpnn`` (the CLI adds --train, --test, -o/--output and --plot)."""
    p = parser
    p.add_argument("--species", nargs="+", help="elements (default: those in the training set)")
    p.add_argument("--cutoff", type=float, default=5.0, help="Å (default 5.0)")
    p.add_argument("--n-radial", type=int, default=16, help="radial G2 functions per element (default 16)")
    p.add_argument("--r-min", type=float, default=1.5, help="Å, first radial centre (default 1.5)")
    p.add_argument("--n-angular-eta", type=int, default=3, help="angular eta values (default 3; 0: radial only)")
    p.add_argument("--zeta", type=float, nargs="+", default=[1.0, 2.0, 4.0, 16.0])
    p.add_argument("--hidden", type=int, nargs="+", default=[64, 64], help="hidden widths (default 64 64)")
    p.add_argument("--activation", default="tanh", choices=sorted(ACTIVATIONS))
    p.add_argument("--feature-transform", default="none", choices=FEATURE_TRANSFORMS,
                   help="'log': networks see log(ACSF + 1e-4) (default none)")
    p.add_argument("--lr-schedule", default="plateau", choices=("plateau", "cosine"))
    p.add_argument("--lbfgs-steps", type=int, default=LBFGS_STEPS,
                   help=f"full-batch L-BFGS iterations after Adam (default {LBFGS_STEPS}; 0: Adam only)")
    p.add_argument("--frame-weights", choices=("balanced",),
                   help="'balanced': weight frames by 1/sqrt(count of their config_type) (default uniform)")
    p.add_argument("--energy-weight", type=float, default=1.0)
    p.add_argument("--force-weight", type=float, default=0.003)
    p.add_argument("--epochs", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--lr-factor", type=float, default=0.5)
    p.add_argument("--lr-patience", type=int, default=50)
    p.add_argument("--min-lr", type=float, default=1e-5)
    p.add_argument("--validation-fraction", type=float, default=0.1)
    p.add_argument("--patience", type=int, default=150, help="early-stopping patience, epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", help="checkpoint file (written during training)")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")
    return parser


def train_from_args(args):
    """Run :func:`train_bpnn` from parsed arguments, save the model, print the error table; returns the calculator."""
    from ..training import evaluate, format_error_table, parity_plot, read_frames

    if args.threads:
        torch.set_num_threads(args.threads)
    train = read_frames(args.train)
    test = read_frames(args.test) if args.test else None
    calc = train_bpnn(train, test, species=args.species, cutoff=args.cutoff, n_radial=args.n_radial,
                      r_min=args.r_min, n_angular_eta=args.n_angular_eta, zeta=tuple(args.zeta),
                      hidden=tuple(args.hidden), activation=args.activation, energy_weight=args.energy_weight,
                      force_weight=args.force_weight, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      lr_factor=args.lr_factor, lr_patience=args.lr_patience, min_lr=args.min_lr,
                      validation_fraction=args.validation_fraction, patience=args.patience, seed=args.seed,
                      feature_transform=args.feature_transform,
                      lr_schedule=args.lr_schedule,
                      lbfgs_steps=args.lbfgs_steps,
                      frame_weights=args.frame_weights,
                      checkpoint=args.checkpoint, resume=args.resume, progress=not args.no_progress,
                      device=args.device)
    info = calc.model.fit_info
    calc.save(args.output, metadata={"trained_on": os.fspath(args.train), "metrics": calc.metrics,
                                     "epochs_run": info["epochs_run"], "lbfgs_iterations": info["lbfgs_iterations"],
                                     "wall_time_s": info["wall_time_s"]})
    print(format_error_table(calc.metrics))
    print(f"{info['epochs_run']} Adam epochs + {info['lbfgs_iterations']} L-BFGS iterations in "
          f"{info['wall_time_s']:.0f} s; model written to {args.output}")
    plot = args.plot if args.plot is not None else os.path.splitext(args.output)[0] + ".png"
    if plot:
        preds = {"train": evaluate(calc.model, train)[1]}
        if test is not None:
            preds["test"] = evaluate(calc.model, test)[1]
        parity_plot(preds, plot, title="BPNN")
        print(f"parity plot written to {plot}")
    return calc
