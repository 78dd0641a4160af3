"""Behler-Parrinello neural-network potential (BPNN) on ACSF or n2p2 symmetry functions.

J. Behler and M. Parrinello, Phys. Rev. Lett. 98, 146401 (2007): the energy is
a sum of atomic energies, each the output of a small feed-forward network of
the centre atom's element applied to the atom's symmetry functions
(:class:`~ase_mlcalc.descriptors.ACSF` for the potentials we fit;
:class:`~ase_mlcalc.descriptors.N2P2SymmetryFunctions` for n2p2/RuNNer
potentials read by :func:`ase_mlcalc.interop.n2p2.read_n2p2`)::

    E = sum_i [ e0[s_i] + scale * (NN_{s_i}(x_i) - NN_{s_i}(x_{s_i}^0)) ],  x_i = (q_i - mean[s_i]) / std[s_i]

where x_s^0 is the standardised descriptor of an atom without neighbours (q = 0),
so that an isolated atom has exactly the energy e0 of its element (with
``isolated_atom_e0=False``, as in n2p2 and RuNNer and in ase_mlcalc 0.1 files,
the baseline term is absent).

``mean``/``std`` (input standardisation) come from the training descriptors,
``e0`` from a least-squares fit of the energies on composition
(:func:`ase_mlcalc.training.fit_e0`) and ``scale`` (eV) from the spread of the
training forces; all three are buffers saved with the model.

Forces and stress come from one autograd pass through the descriptor
(numba vector-Jacobian product) in :class:`~ase_mlcalc.MLCalculator`.
Training (:func:`ase_mlcalc.training.fit_bpnn`) fits energies and forces.

With ``core_repulsion="zbl"`` (what ``fit_bpnn`` builds) each atom's energy also holds half of a
switched ZBL nuclear repulsion with every neighbour closer than 0.8 times the shortest distance of their
species pair in the training data (:mod:`ase_mlcalc.models.repulsion`): zero on the data, a wall below it.

Accuracy with the defaults (``fit_bpnn(train, test)``: 40 ACSF features,
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

import numpy as np
import torch

from ..calculator import MLCalculator
from ..descriptors.acsf import ACSF
from ..descriptors.n2p2 import N2P2SymmetryFunctions
from ..species import as_atomic_numbers
from .base import AtomisticModel, register_family
from .repulsion import CoreRepulsion

FEATURE_TRANSFORMS = ("none", "log")
LOG_FEATURE_OFFSET = 1e-4
DEFAULT_CUTOFF = 5.0  # Å, for ACSF

#: activations by name (what ``fit_bpnn`` and the command line offer)
ACTIVATIONS = {
    "tanh": torch.nn.Tanh,
    "silu": torch.nn.SiLU,
    "softplus": torch.nn.Softplus,
    "gelu": torch.nn.GELU,
}


class _Letter(torch.nn.Module):
    """An n2p2 activation (``letter`` of ``global_activation_short``)."""

    letter = "?"

    def extra_repr(self):
        return f"n2p2 {self.letter!r}"


class _Identity(_Letter):
    letter = "l"

    def forward(self, x):
        return x


class _Gaussian(_Letter):
    letter = "g"

    def forward(self, x):
        return torch.exp(-0.5 * x * x)


class _Cos(_Letter):
    letter = "c"

    def forward(self, x):
        return torch.cos(x)


class _ReverseLogistic(_Letter):
    letter = "S"

    def forward(self, x):
        return 1.0 - torch.sigmoid(x)


class _ExpNeg(_Letter):
    letter = "e"

    def forward(self, x):
        return torch.exp(-x)


class _Harmonic(_Letter):
    letter = "h"

    def forward(self, x):
        return x * x


def _n2p2_softplus():
    # n2p2 returns x above x = 35 (its EXP_LIMIT); torch's default threshold is 20
    return torch.nn.Softplus(beta=1.0, threshold=35.0)


#: n2p2's activation letters (``global_activation_short``; n2p2 documentation, "Neural network"
#: https://compphysvienna.github.io/n2p2/api/neural_network.html, ``NeuralNetwork::ActivationFunction``):
#: l x, t tanh x, s 1/(1+e^-x), p ln(1+e^x), r max(0, x), g exp(-x^2/2), c cos x, S 1 - 1/(1+e^-x),
#: e e^-x, h x^2. (n2p2 also clips s and p at |x| > 35: s to 0/1, p to 0/x; torch's differ from
#: that by < 1e-15 there.)
N2P2_ACTIVATIONS = {
    "l": _Identity, "t": torch.nn.Tanh, "s": torch.nn.Sigmoid, "p": _n2p2_softplus, "r": torch.nn.ReLU,
    "g": _Gaussian, "c": _Cos, "S": _ReverseLogistic, "e": _ExpNeg, "h": _Harmonic,
}

_LINEAR_OUTPUT = ("l",)


def _activation_module(name):
    return ACTIVATIONS[name]() if name in ACTIVATIONS else N2P2_ACTIVATIONS[name]()


def _mlp(n_in, hidden, activations):
    """Linear + activation per hidden layer, a Linear to one output and, unless it is linear, the
    output activation. ``activations``: one per hidden layer plus the output's (None: linear)."""
    layers, n = [], n_in
    for h, a in zip(hidden, activations):
        layers += [torch.nn.Linear(n, h, dtype=torch.float64), _activation_module(a)]
        n = h
    layers.append(torch.nn.Linear(n, 1, dtype=torch.float64))
    if activations[-1] is not None and activations[-1] not in _LINEAR_OUTPUT:
        layers.append(_activation_module(activations[-1]))
    return torch.nn.Sequential(*layers)


def _is_sequence(x):
    return isinstance(x, (list, tuple))


def _check_activation(a):
    if not isinstance(a, str) or (a not in ACTIVATIONS and a not in N2P2_ACTIVATIONS):
        raise ValueError(f"unknown activation {a!r}; choose from {sorted(ACTIVATIONS)} or the n2p2 letters "
                         f"{''.join(N2P2_ACTIVATIONS)}")
    return a


def _layer_plan(n_species, hidden, activation):
    """Per species: (hidden widths, activations of the hidden layers + the output's (None: linear)),
    and whether ``hidden`` was given per species.

    ``hidden``: widths for all species, or one list per species. ``activation``: a name or letter for
    every hidden layer (linear output), one per layer including the output, or such a list per species.
    """
    hidden = list(hidden) if not isinstance(hidden, str) and np.iterable(hidden) else hidden
    per_species = _is_sequence(hidden) and bool(hidden) and all(np.iterable(h) for h in hidden)
    if per_species:
        if len(hidden) != n_species:
            raise ValueError(f"hidden: {len(hidden)} lists of widths for {n_species} species")
        widths = [list(h) for h in hidden]
    elif _is_sequence(hidden) and not any(np.iterable(h) for h in hidden):
        widths = [list(hidden)] * n_species
    else:
        raise ValueError(f"hidden must be a list of widths or one such list per species, got {hidden!r}")
    try:
        widths = [[int(h) for h in w] for w in widths]
    except (TypeError, ValueError):
        raise ValueError(f"hidden widths must be positive integers, got {hidden!r}") from None
    if any(h < 1 for w in widths for h in w):
        raise ValueError(f"hidden widths must be positive integers, got {hidden!r}")
    if isinstance(activation, str):
        acts = [[_check_activation(activation)] * len(w) + [None] for w in widths]
    elif _is_sequence(activation) and activation and all(isinstance(a, str) for a in activation):
        acts = [list(activation)] * n_species
    elif _is_sequence(activation) and len(activation) == n_species and all(_is_sequence(a) for a in activation):
        acts = [list(a) for a in activation]
    else:
        raise ValueError(f"activation must be a name, one per layer (hidden layers and output), or such a list "
                         f"per species; got {activation!r}")
    for s, (w, a) in enumerate(zip(widths, acts)):
        for x in a:
            if x is not None:
                _check_activation(x)
        if len(a) != len(w) + 1:
            raise ValueError(f"activation: {len(a)} activations for species {s} with {len(w)} hidden layers "
                             f"(give one per hidden layer plus one for the output)")
    return widths, acts, per_species


def _as_descriptor(species, descriptor):
    """An n2p2 descriptor from a dict (``{"type": "n2p2", ...}`` as in :meth:`BPNNModel.hyperparameters`) or an
    instance; None for ACSF (given as dict or instance: returned as its parameter dict)."""
    if isinstance(descriptor, ACSF):
        return None, descriptor.parameters()
    if isinstance(descriptor, N2P2SymmetryFunctions):
        desc = descriptor
    elif isinstance(descriptor, dict):
        d = dict(descriptor)
        kind = d.pop("type", None)
        if kind == "acsf":
            return None, d
        if kind != "n2p2":
            raise ValueError(f"descriptor type must be 'acsf' or 'n2p2', got {kind!r}")
        d.setdefault("species", list(species))
        d.setdefault("sort", False)
        desc = N2P2SymmetryFunctions(**d)
    else:
        raise TypeError(f"descriptor must be a dict, an ACSF or an N2P2SymmetryFunctions, got "
                        f"{type(descriptor).__name__}")
    if tuple(desc.species) != tuple(species):
        raise ValueError(f"descriptor species {list(desc.species)} differ from the model's {list(species)}")
    return desc, None


class BPNNModel(AtomisticModel):
    """One multilayer perceptron per element on ACSF descriptors (or n2p2 symmetry functions).

    Parameters
    ----------
    species : element symbols or atomic numbers
    cutoff : float, Å (the descriptor's cutoff; default 5.0 for ACSF; with ``descriptor``, None or
        equal to its cutoff, for n2p2 functions their largest rc)
    acsf : dict of :class:`ACSF` keyword arguments (``radial_eta``,
        ``radial_rs``, ``angular_eta``, ``zeta``, ``lambda_``) or None for
        :meth:`ACSF.default` with ``acsf_defaults``
    hidden : hidden-layer widths: a sequence of int for every element (default (64, 64)), or one
        such sequence per element (channel order)
    activation : "tanh" (default), "silu", "softplus" or "gelu" (or an n2p2 letter) for every hidden
        layer, with a linear output; or one name or n2p2 letter per layer, hidden layers then the
        output (n2p2's ``global_activation_short``, e.g. ``["t", "t", "l"]``); or one such list per
        element. n2p2 letters (:data:`N2P2_ACTIVATIONS`): l (identity), t (tanh), s (logistic),
        p (softplus, threshold 35 as n2p2; "softplus" keeps torch's 20), r (relu), g (exp(-x^2/2)),
        c (cos), S (1 - logistic), e (exp(-x)), h (x^2)
    acsf_defaults : dict of keyword arguments for :meth:`ACSF.default` (used when ``acsf`` is None)
    feature_transform : "none" (default) or "log": the networks see
        ``log(q + 1e-4)`` instead of ``q`` before standardisation (compresses
        symmetry functions that span orders of magnitude; ACSF values are >= 0)
    isolated_atom_e0 : bool (default True): subtract each network's output for
        an atom without neighbours, so an isolated atom's energy is its e0
        (False for imported n2p2 potentials, which have no such baseline)
    core_repulsion : None (default) or "zbl": add a ZBL nuclear repulsion below per-species-pair
        distances (:class:`~ase_mlcalc.models.repulsion.CoreRepulsion`; :func:`~ase_mlcalc.training.fit_bpnn`
        sets them to 0.8 times the shortest distances of its training frames: zero on those frames)
    descriptor : None (ACSF from ``acsf`` / ``acsf_defaults``), an
        :class:`~ase_mlcalc.descriptors.N2P2SymmetryFunctions` (or an ACSF), or its dict
        ``{"type": "n2p2", "functions": [...], "cutoff_type": int, "cutoff_alpha": float}``
        (columns in the given order; :meth:`hyperparameters` writes this form). The n2p2 layout is
        padded: element s uses the first F_s of ``n_features = max F_s`` columns; the other columns
        are 0, standardised with mean 0 and std 1, and have zero input weights.

    Buffers
    -------
    e0 : (n_species,) eV; feature_mean, feature_std : (n_species, n_features);
    energy_scale : () eV

    Raises
    ------
    ValueError for an unknown activation, empty/negative widths, lists of widths or activations
    that do not match the species or layers, bad cutoff or species, ``descriptor`` together with
    ``acsf`` / ``acsf_defaults``, or a cutoff that differs from the ``descriptor``'s; TypeError for a
    ``descriptor`` of another type.

    Runs in float64 (default) or float32 (the calculator converts the networks;
    descriptors are computed in float64 and rounded), float32 only where the
    standardisation constants fit it (:attr:`dtypes`).
    """

    def __init__(self, species, cutoff=None, acsf=None, hidden=(64, 64), activation="tanh", acsf_defaults=None,
                 feature_transform="none", isolated_atom_e0=True, descriptor=None, core_repulsion=None):
        n2p2_desc = None
        if descriptor is not None:
            if acsf is not None or acsf_defaults is not None:
                raise ValueError("give either descriptor or acsf / acsf_defaults, not both")
            n2p2_desc, acsf = _as_descriptor(as_atomic_numbers(species), descriptor)
            given = n2p2_desc.cutoff if n2p2_desc is not None else float(acsf.get("cutoff", DEFAULT_CUTOFF))
            if cutoff is None:
                cutoff = given
            elif float(cutoff) != given:
                raise ValueError(f"cutoff {cutoff} Å differs from the descriptor's ({given} Å; for n2p2 functions "
                                 "the largest rc)")
        super().__init__(species, DEFAULT_CUTOFF if cutoff is None else cutoff)
        self.isolated_atom_e0 = bool(isolated_atom_e0)
        if feature_transform not in FEATURE_TRANSFORMS:
            raise ValueError(f"unknown feature_transform {feature_transform!r}; choose from {FEATURE_TRANSFORMS}")
        self.feature_transform = feature_transform
        S = len(self.species)
        widths, acts, per_species = _layer_plan(S, hidden, activation)
        if n2p2_desc is not None:
            self.descriptor = n2p2_desc
        elif acsf is None:
            self.descriptor = ACSF.default(self.species, self.cutoff, **(acsf_defaults or {}))
        else:
            params = {k: v for k, v in dict(acsf).items() if k not in ("species", "cutoff")}
            self.descriptor = ACSF(self.species, self.cutoff, **params)
        # as given, JSON-able (hyperparameters() returns them)
        self.hidden = [list(w) for w in widths] if per_species else list(widths[0])
        self.activation = activation if isinstance(activation, str) else [
            list(a) if _is_sequence(a) else a for a in activation]
        self.layer_widths = widths  # per species: hidden widths
        self.layer_activations = acts  # per species: hidden activations + the output's (None: linear)
        F = self.descriptor.n_features
        self.register_buffer("feature_mean", torch.zeros(S, F, dtype=torch.float64))
        self.register_buffer("feature_std", torch.ones(S, F, dtype=torch.float64))
        self.register_buffer("energy_scale", torch.ones((), dtype=torch.float64))
        self.nets = torch.nn.ModuleList([_mlp(F, w, a) for w, a in zip(widths, acts)])
        if core_repulsion not in (None, "zbl"):
            raise ValueError(f"unknown core_repulsion {core_repulsion!r}; choose None or 'zbl'")
        self.core_repulsion = None if core_repulsion is None else CoreRepulsion(self.species)
        # True: materialise the descriptor Jacobian so that forces can be differentiated (training).
        self.descriptor_jacobian = False

    @property
    def n_features(self):
        return self.descriptor.n_features

    @property
    def dtypes(self):
        """(torch.float64, torch.float32), or (torch.float64,) where a standardisation constant does not fit
        float32 (std outside [1e-30, 1e30] or |mean| > 1e30: e.g. the mlearn Li n2p2 potential, whose
        eta = 5 Bohr^-2 functions span 1e-136 on its training set; rounded, they would divide 0 by 0)."""
        std = self.feature_std.detach().double()
        mean = self.feature_mean.detach().double()
        ok = bool(((std >= 1e-30) & (std <= 1e30)).all() and (mean.abs() <= 1e30).all())
        return (torch.float64, torch.float32) if ok else (torch.float64,)

    def hyperparameters(self):
        """JSON-able dict that rebuilds the model (``BPNNModel(**hp)``): ``acsf`` for an ACSF model (as in
        0.1), ``descriptor`` (``{"type": "n2p2", ...}``) for n2p2 symmetry functions."""
        hp = {"species": list(self.species), "cutoff": self.cutoff}
        params = self.descriptor.parameters()
        del params["species"]
        if isinstance(self.descriptor, ACSF):
            del params["cutoff"]
            hp["acsf"] = params
        else:
            del params["sort"]  # the stored order is the column order
            hp["descriptor"] = {"type": "n2p2", **params}
        hp.update({"hidden": self.hidden, "activation": self.activation,
                   "feature_transform": self.feature_transform, "isolated_atom_e0": self.isolated_atom_e0})
        if self.core_repulsion is not None:  # its radii travel in the state dict
            hp["core_repulsion"] = self.core_repulsion.kind
        return hp

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
        t = self.transform(q)
        if len(self.nets) == 1:  # one element: broadcast its statistics, no gathers
            net = self.nets[0]
            out = net((t - mean[0]) / std[0]).squeeze(-1)
            if self.isolated_atom_e0:  # minus the network's value for an atom without neighbours
                out = out - net((self.transform(q.new_zeros(1, q.shape[1])) - mean[0]) / std[0]).squeeze(-1)
            return out * scale
        x = (t - mean[species_index]) / std[species_index]
        out = x.new_zeros(x.shape[0])
        for s, net in enumerate(self.nets):
            idx = torch.nonzero(species_index == s).squeeze(1)
            if idx.numel():
                y = net(x[idx]).squeeze(-1)
                if self.isolated_atom_e0:
                    y = y - net((self.transform(q.new_zeros(1, q.shape[1])) - mean[s]) / std[s]).squeeze(-1)
                out = out.index_copy(0, idx, y)
        return out * scale

    def atomic_energies(self, graph):
        q = self.descriptor.torch(graph, jacobian=self.descriptor_jacobian)
        eps = self.readout(q.to(self.energy_scale.dtype), graph.center_species)
        if self.core_repulsion is not None:
            eps = eps + self.core_repulsion.atomic_energies(graph).to(eps.dtype)
        return eps

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
    """Calculator of a Behler-Parrinello network: :class:`~ase_mlcalc.MLCalculator` for the BPNN family.

    Parameters
    ----------
    model : BPNNModel (from :func:`ase_mlcalc.training.fit_bpnn`) or its model file
    device, dtype, skin, min_distance : see :class:`~ase_mlcalc.MLCalculator` (float64 or float32)
    """

    def __init__(self, model, device="cpu", **kwargs):
        super().__init__(model=model, device=device, **kwargs)

    def check_model(self, model):
        if not isinstance(model, BPNNModel):
            raise TypeError(f"BPNN needs a BPNNModel, got {type(model).__name__}")


register_family("bpnn", BPNNModel, BPNN)
