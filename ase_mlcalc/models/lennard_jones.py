"""Lennard-Jones pair potential as a torch module, its ASE calculator and its fit to data.

phi(r) = 4 epsilon [(sigma/r)^12 - (sigma/r)^6] for r < cutoff, either shifted
by phi(cutoff) (continuous energy; ASE's default) or multiplied by ASE's smooth
cutoff function between ``ro`` and ``rc`` (``smooth=True``; from jax-md, as in
:class:`ase.calculators.lj.LennardJones`). Atomic energies
``epsilon_i = 1/2 sum_j phi(r_ij)``. Several species mix by Lorentz-Berthelot
(sigma_ab = (sigma_a + sigma_b)/2, epsilon_ab = sqrt(epsilon_a epsilon_b))
unless pair values are given.
"""

from __future__ import annotations

import numpy as np
import torch
from ase.data import atomic_numbers

from ..calculator import MLCalculator
from .base import AtomisticModel, as_atomic_numbers, register_family

ALL_ELEMENTS = tuple(range(1, 119))


def _pair_matrix(value, species, name, mixing):
    """(n, n) symmetric matrix from a scalar, per-species sequence/dict, (n, n) array or pair dict."""
    n = len(species)
    pos = {z: k for k, z in enumerate(species)}

    def zkey(s):
        z = atomic_numbers[s] if isinstance(s, str) else int(s)
        if z not in pos:
            raise ValueError(f"{name} given for element {s!r}, which is not in species")
        return pos[z]

    if np.isscalar(value):
        M = np.full((n, n), float(value))
    elif isinstance(value, dict):
        per = {zkey(k): float(v) for k, v in value.items() if not isinstance(k, tuple)}
        pairs = {(zkey(k[0]), zkey(k[1])): float(v) for k, v in value.items() if isinstance(k, tuple)}
        for (a, b), v in pairs.items():
            if a == b:
                per.setdefault(a, v)
        missing = [species[k] for k in range(n) if k not in per]
        if missing:
            raise ValueError(f"{name} missing for species {missing}")
        M = mixing(np.array([per[k] for k in range(n)]))
        for (a, b), v in pairs.items():
            M[a, b] = M[b, a] = v
    else:
        arr = np.asarray(value, dtype=np.float64)
        if arr.shape == (n,):
            M = mixing(arr)
        elif arr.shape == (n, n):
            if not np.allclose(arr, arr.T):
                raise ValueError(f"{name} pair table must be symmetric")
            M = arr.copy()
        else:
            raise ValueError(f"{name} must be a scalar, {n} per-species values or a {n}x{n} table, got shape {arr.shape}")
    if not np.all(np.isfinite(M)) or (M <= 0).any():
        raise ValueError(f"{name} must be positive and finite, got {M.tolist()}")
    return M


def _mix_sigma(s):
    return 0.5 * (s[:, None] + s[None, :])


def _mix_epsilon(e):
    return np.sqrt(e[:, None] * e[None, :])


class LennardJonesModel(AtomisticModel):
    """Torch module of the (multi-species) Lennard-Jones potential.

    Parameters
    ----------
    species : atomic numbers or symbols
    epsilon, sigma : (n_species, n_species) arrays, eV and Å
    cutoff : float, Å
    shift : bool, shift phi by phi(cutoff) (ignored when ``smooth``)
    smooth : bool, ASE's smooth cutoff function between ``ro`` and ``cutoff``
    ro : float, Å, onset of the smooth cutoff (default 0.66 cutoff)
    """

    def __init__(self, species, epsilon, sigma, cutoff, shift=True, smooth=False, ro=None):
        super().__init__(species, cutoff)
        eps = np.asarray(epsilon, dtype=np.float64)
        sig = np.asarray(sigma, dtype=np.float64)
        self.log_epsilon = torch.nn.Parameter(torch.as_tensor(np.log(eps)))
        self.log_sigma = torch.nn.Parameter(torch.as_tensor(np.log(sig)))
        self.shift = bool(shift)
        self.smooth = bool(smooth)
        self.ro = float(0.66 * self.cutoff if ro is None else ro)
        if self.smooth and not 0 <= self.ro < self.cutoff:
            raise ValueError(f"ro must lie in [0, cutoff), got ro={self.ro}, cutoff={self.cutoff}")

    @property
    def epsilon(self):
        """(n_species, n_species) float64 numpy array, eV."""
        e = torch.exp(self.log_epsilon.detach())
        return (0.5 * (e + e.T)).cpu().numpy()

    @property
    def sigma(self):
        """(n_species, n_species) float64 numpy array, Å."""
        s = torch.exp(self.log_sigma.detach())
        return (0.5 * (s + s.T)).cpu().numpy()

    def hyperparameters(self):
        return {"species": list(self.species), "epsilon": self.epsilon.tolist(), "sigma": self.sigma.tolist(),
                "cutoff": self.cutoff, "shift": self.shift, "smooth": self.smooth, "ro": self.ro}

    def pair_energy(self, d2, si, sj):
        """phi for squared distances ``d2`` (Å²) between species indices si, sj; zero beyond the cutoff."""
        eps = torch.exp(self.log_epsilon)
        sig = torch.exp(self.log_sigma)
        eps = 0.5 * (eps + eps.T)
        sig = 0.5 * (sig + sig.T)
        e, s = eps[si, sj].to(d2.dtype), sig[si, sj].to(d2.dtype)
        rc2 = self.cutoff ** 2
        inside = d2 < rc2
        d2 = torch.where(inside, d2, torch.full_like(d2, rc2))
        c6 = (s * s / d2) ** 3
        phi = 4 * e * (c6 * c6 - c6)
        if self.smooth:
            ro2 = self.ro ** 2
            fc = (rc2 - d2) ** 2 * (rc2 + 2 * d2 - 3 * ro2) / (rc2 - ro2) ** 3
            phi = phi * torch.where(d2 < ro2, torch.ones_like(fc), fc)
        elif self.shift:
            c6c = (s * s / rc2) ** 3
            phi = phi - 4 * e * (c6c * c6c - c6c)
        return torch.where(inside, phi, torch.zeros_like(phi))

    def atomic_energies(self, graph):
        r = graph.edge_vectors
        d2 = (r * r).sum(1)
        sidx = graph.tensor("species_index")
        i = graph.tensor("centers")
        phi = self.pair_energy(d2, sidx[i], sidx[graph.tensor("neighbors")])
        return torch.zeros(graph.n_atoms, dtype=r.dtype, device=r.device).index_add(0, i, 0.5 * phi)


class LennardJones(MLCalculator):
    """Lennard-Jones ASE calculator; energy, forces and stress via torch autograd.

    With one species it accepts the keywords of
    :class:`ase.calculators.lj.LennardJones` and gives the same numbers:
    ``LennardJones(epsilon=1.0, sigma=1.0, rc=None, ro=None, smooth=False)``
    (rc defaults to 3 sigma; without ``species`` every element gets the same
    parameters, as in ASE).

    Parameters
    ----------
    epsilon : float (eV), per-species sequence, (n, n) table, or dict with
        symbol keys (per species) and/or tuple keys (explicit pairs)
    sigma : same forms, Å
    rc, cutoff : float, Å (aliases); default 3 * max(sigma)
    ro : float, Å, onset of the smooth cutoff (default 0.66 rc)
    smooth : bool, ASE's smooth cutoff function instead of the energy shift
    shift : bool, shift the energy so it is continuous at the cutoff (default True, as ASE)
    species : list of symbols or atomic numbers (default: all elements)
    model : a LennardJonesModel (e.g. fitted or loaded); other parameters then ignored
    device, dtype, skin, min_distance : see :class:`~ase_mlcalc.calculator.MLCalculator`

    Raises
    ------
    ValueError
        cutoff <= 0, non-positive epsilon/sigma, malformed tables.
    """

    def __init__(self, epsilon=1.0, sigma=1.0, rc=None, ro=None, smooth=False, shift=True, species=None,
                 cutoff=None, model=None, device="cpu", **kwargs):
        if model is None:
            species = ALL_ELEMENTS if species is None else as_atomic_numbers(species)
            eps = _pair_matrix(epsilon, species, "epsilon", _mix_epsilon)
            sig = _pair_matrix(sigma, species, "sigma", _mix_sigma)
            if rc is not None and cutoff is not None and rc != cutoff:
                raise ValueError("give either rc or cutoff, not both")
            rc = cutoff if rc is None else rc
            rc = 3.0 * float(sig.max()) if rc is None else float(rc)
            if not (np.isfinite(rc) and rc > 0):
                raise ValueError(f"cutoff (rc) must be a positive number of Å, got {rc}")
            model = LennardJonesModel(species, eps, sig, rc, shift=shift, smooth=smooth, ro=ro)
        super().__init__(model=model, device=device, **kwargs)

    @property
    def epsilon(self):
        return self.model.epsilon

    @property
    def sigma(self):
        return self.model.sigma


register_family("lennard_jones", LennardJonesModel, LennardJones)
