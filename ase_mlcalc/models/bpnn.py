"""Behler-Parrinello neural-network potential (BPNN) on ACSF descriptors.

J. Behler and M. Parrinello, Phys. Rev. Lett. 98, 146401 (2007): the energy is
a sum of atomic energies, each the output of a small feed-forward network of
the centre atom's element applied to the atom's symmetry functions
(:class:`~ase_mlcalc.descriptors.ACSF`)::

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
from .base import AtomisticModel, register_family

FEATURE_TRANSFORMS = ("none", "log")
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
    isolated_atom_e0 : bool (default True): subtract each network's output for
        an atom without neighbours, so an isolated atom's energy is its e0

    Buffers
    -------
    e0 : (n_species,) eV; feature_mean, feature_std : (n_species, n_features);
    energy_scale : () eV

    Raises
    ------
    ValueError for an unknown activation, empty/negative widths, bad cutoff or species.

    Runs in float64 (default) or float32 (the calculator converts the networks;
    descriptors are computed in float64 and rounded).
    """

    dtypes = (torch.float64, torch.float32)

    def __init__(self, species, cutoff=5.0, acsf=None, hidden=(64, 64), activation="tanh", acsf_defaults=None,
                 feature_transform="none", isolated_atom_e0=True):
        super().__init__(species, cutoff)
        self.isolated_atom_e0 = bool(isolated_atom_e0)
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
                "feature_transform": self.feature_transform, "isolated_atom_e0": self.isolated_atom_e0}

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
        x = (self.transform(q) - mean[species_index]) / std[species_index]
        if self.isolated_atom_e0:  # append each species' no-neighbour input x^0 as one more row
            x0 = (self.transform(q.new_zeros(1, q.shape[1])) - mean) / std
            x = torch.cat([x, x0])
            species_index = torch.cat([species_index, torch.arange(len(self.nets), device=species_index.device)])
        if len(self.nets) == 1:
            out = self.nets[0](x).squeeze(-1)
        else:
            out = x.new_zeros(x.shape[0])
            for s, net in enumerate(self.nets):
                idx = torch.nonzero(species_index == s).squeeze(1)
                if idx.numel():
                    out = out.index_copy(0, idx, net(x[idx]).squeeze(-1))
        if self.isolated_atom_e0:
            n = q.shape[0]
            out = out[:n] - out[n:][species_index[:n]]
        return out * scale

    def atomic_energies(self, graph):
        q = self.descriptor.torch(graph, jacobian=self.descriptor_jacobian)
        return self.readout(q.to(self.energy_scale.dtype), graph.center_species)

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
