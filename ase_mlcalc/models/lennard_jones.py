"""Lennard-Jones pair potential (the empirical baseline) as a torch module, and its calculator constructor.

phi(r) = 4 epsilon [(sigma/r)^12 - (sigma/r)^6] for r < cutoff, either shifted
by phi(cutoff) (continuous energy; ASE's default) or multiplied by ASE's smooth
cutoff function between ``ro`` and ``rc`` (``smooth=True``; from jax-md, as in
:class:`ase.calculators.lj.LennardJones`). Atomic energies
``epsilon_i = 1/2 sum_j phi(r_ij)``. Several species mix by Lorentz-Berthelot
(sigma_ab = (sigma_a + sigma_b)/2, epsilon_ab = sqrt(epsilon_a epsilon_b))
unless pair values are given.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from ase.data import atomic_numbers

from ..calculator import MLCalculator
from ..descriptors.cutoffs import ase_smooth_cutoff
from ..species import as_atomic_numbers, symbols
from .base import AtomisticModel, register_family

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

    full_list = False  # pair potential: each pair once (half list)
    dtypes = (torch.float64, torch.float32)

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

    def _tables(self):
        """(epsilon, sigma) numpy tables for the inference kernel, rebuilt only when a parameter changed."""
        key = tuple((p.data_ptr(), p._version) for p in (self.log_epsilon, self.log_sigma))
        cached = self.__dict__.get("_table_cache")
        if cached is None or cached[0] != key:
            cached = self.__dict__["_table_cache"] = (key, self.epsilon, self.sigma)
        return cached[1], cached[2]

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
        if not graph.full_list and graph.n_centers != graph.n_atoms:
            raise ValueError("a half neighbour list cannot have neighbour-only (ghost) atoms: use a full list")
        r = graph.edge_vectors
        if r.device.type == "cpu" and not (self.log_epsilon.requires_grad or self.log_sigma.requires_grad):
            return _LJInference.apply(r, self, graph)
        sidx = graph.tensor("species_index")
        i = graph.tensor("centers")
        j = graph.tensor("neighbors")
        phi = self.pair_energy((r * r).sum(1), sidx[i], sidx[j])
        # Half of each pair's energy goes to each atom: with a full list
        # the pair appears twice, once centred on each atom.
        eps = torch.zeros(graph.n_centers, dtype=r.dtype, device=r.device).index_add(0, i, 0.5 * phi)
        if not graph.full_list:
            eps = eps.index_add(0, j, 0.5 * phi)
        return eps


@numba.njit(cache=True)
def _lj_kernel(D, i, j, sidx, eps_t, sig_t, cutoff, mode, ro, n_atoms, full_list, dphi):
    """Atomic energies (N,) of the LJ pair terms; writes dphi/dr_e into ``dphi`` (E, 3).

    mode 0: plain; 1: shifted by phi(cutoff); 2: ASE's smooth cutoff between ro and cutoff.
    """
    n = D.shape[0]
    ns = eps_t.shape[0]
    energies = np.zeros(n_atoms)
    rc2 = cutoff * cutoff
    ro2 = ro * ro
    # per species pair: 4 eps, sigma^2 and the energy shift phi(cutoff)
    four_eps = 4.0 * eps_t
    sig2 = sig_t * sig_t
    shift = np.zeros((ns, ns))
    if mode == 1:
        for a in range(ns):
            for b in range(ns):
                x = sig2[a, b] / rc2
                c6c = x * x * x
                shift[a, b] = four_eps[a, b] * (c6c * c6c - c6c)
    for e in range(n):
        d0, d1, d2 = D[e, 0], D[e, 1], D[e, 2]
        r2 = d0 * d0 + d1 * d1 + d2 * d2
        if r2 >= rc2:
            dphi[e, 0] = dphi[e, 1] = dphi[e, 2] = 0.0
            continue
        a, b = sidx[i[e]], sidx[j[e]]
        fe = four_eps[a, b]
        inv_r2 = 1.0 / r2
        x = sig2[a, b] * inv_r2
        c6 = x * x * x
        phi = fe * (c6 * c6 - c6) - shift[a, b]
        dphi_dr2 = -3.0 * fe * (2.0 * c6 * c6 - c6) * inv_r2  # dphi/d(r^2)
        if mode == 2 and r2 > ro2:
            fc, dfc = ase_smooth_cutoff(r2, ro2, rc2)
            dphi_dr2 = dphi_dr2 * fc + phi * dfc
            phi *= fc
        energies[i[e]] += 0.5 * phi
        if not full_list:
            energies[j[e]] += 0.5 * phi
        w = 2.0 * dphi_dr2
        dphi[e, 0] = w * d0
        dphi[e, 1] = w * d1
        dphi[e, 2] = w * d2
    return energies


class _LJInference(torch.autograd.Function):
    """Fused numba forward for prediction (parameters fixed, CPU).

    forward: atomic energies; backward: dE/dr_e = w_e dphi/dr_e with
    w_e = (dE/deps_i + dE/deps_j) / 2 (half list) or dE/deps_i / 2 (full list).
    dphi lives in a buffer reused from call to call (an MD step then
    allocates nothing edge-sized), and backward scales it in place: the
    gradient it returns is valid until the next forward of this model. Not
    twice differentiable: training uses the pure torch path.
    """

    @staticmethod
    def forward(ctx, r, model, graph):
        n_edges = r.shape[0]
        buf = model.__dict__.get("_dphi_buffer")
        if buf is None or len(buf) < n_edges:
            buf = model.__dict__["_dphi_buffer"] = np.empty((int(1.2 * n_edges) + 16, 3))
        dphi = buf[:n_edges]
        eps, sig = model._tables()
        energies = _lj_kernel(
            r.detach().numpy(), graph.centers, graph.neighbors, graph.species_index,
            eps, sig, model.cutoff, 2 if model.smooth else int(model.shift), model.ro,
            graph.n_centers, graph.full_list, dphi)
        ctx.graph = graph
        ctx.dphi = dphi
        return torch.from_numpy(energies).to(r.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_energies):
        g = ctx.graph
        _lj_scale_inplace(grad_energies.contiguous().numpy(), ctx.dphi, g.centers, g.neighbors, g.full_list)
        return torch.from_numpy(ctx.dphi), None, None


@numba.njit(cache=True)
def _lj_scale_inplace(grad_e, dphi, i, j, full_list):
    for e in range(dphi.shape[0]):
        w = grad_e[i[e]] if full_list else grad_e[i[e]] + grad_e[j[e]]
        for c in range(3):
            dphi[e, c] *= 0.5 * w


class LennardJones(MLCalculator):
    """Lennard-Jones calculator: :class:`~ase_mlcalc.MLCalculator` with a :class:`LennardJonesModel`
    built from ASE's keywords.

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
    e0 : per-species reference energies (eV), a sequence in ``species`` order (default 0)
    model : a LennardJonesModel (e.g. fitted or loaded) or a model file, instead of the keywords above
    device, dtype, skin, min_distance : see :class:`~ase_mlcalc.MLCalculator`

    ``calc.parameters`` holds these keywords (tables resolved to (n, n)
    nested lists), so ``LennardJones(**calc.todict())`` rebuilds the same
    potential, also for a fitted or loaded model.

    Raises
    ------
    ValueError
        cutoff <= 0, non-positive epsilon/sigma, malformed tables; TypeError for an unknown keyword.
    """

    stores_model_path = False
    keywords = ("epsilon", "sigma", "rc", "cutoff", "ro", "smooth", "shift", "species", "e0")

    def __init__(self, epsilon=1.0, sigma=1.0, rc=None, ro=None, smooth=False, shift=True, species=None,
                 cutoff=None, e0=None, model=None, device="cpu", **kwargs):
        keywords = None
        if model is None:
            keywords = dict(epsilon=epsilon, sigma=sigma, rc=rc, ro=ro, smooth=smooth, shift=shift, species=species,
                            cutoff=cutoff, e0=e0)
            model = build_lennard_jones_model(**keywords)
        super().__init__(model=model, device=device, **kwargs)
        self.parameters.update(lennard_jones_keywords(self.model, keywords))

    def _known_keywords(self):
        return super()._known_keywords() | set(self.keywords)

    def check_model(self, model):
        if not isinstance(model, LennardJonesModel):
            raise TypeError(f"LennardJones needs a LennardJonesModel, got {type(model).__name__}")

    def _apply(self, changed):
        changed = dict(changed)
        if "cutoff" in changed:
            changed["rc"] = changed.pop("cutoff")
        keywords = None
        if any(k in changed for k in self.keywords):
            keywords = {k: self.parameters.get(k) for k in self.keywords if k != "cutoff"}
            keywords.update({k: changed.pop(k) for k in self.keywords if k in changed})
            changed["model"] = build_lennard_jones_model(**keywords)
        super()._apply(changed)
        if "model" in changed and "epsilon" in self.parameters:  # after __init__: keep the keywords in step
            self.parameters.update(lennard_jones_keywords(self.model, keywords))

    @property
    def epsilon(self):
        return self.model.epsilon

    @property
    def sigma(self):
        return self.model.sigma


def build_lennard_jones_model(epsilon=1.0, sigma=1.0, rc=None, ro=None, smooth=False, shift=True, species=None,
                              cutoff=None, e0=None):
    """A :class:`LennardJonesModel` from the keywords of :class:`LennardJones`."""
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
    if e0 is not None:
        e0 = np.asarray(e0, dtype=np.float64).reshape(-1)
        if e0.shape != (len(species),) or not np.all(np.isfinite(e0)):
            raise ValueError(f"e0 must be {len(species)} finite energies (eV), one per species, got {e0.tolist()}")
        with torch.no_grad():
            model.e0.copy_(torch.as_tensor(e0))
    return model


def lennard_jones_keywords(model, given=None):
    """The :class:`LennardJones` keywords that rebuild ``model`` (JSON-able): the ``given``
    keywords with tables resolved to (n, n) nested lists, or values read off the model."""
    e0 = model.e0.detach().cpu().numpy()
    every = tuple(model.species) == ALL_ELEMENTS
    out = {"rc": model.cutoff, "ro": model.ro, "smooth": model.smooth, "shift": model.shift,
           "species": None if every else symbols(model.species), "e0": e0.tolist() if np.any(e0) else None}
    if given is not None:
        for name, mixing in (("epsilon", _mix_epsilon), ("sigma", _mix_sigma)):
            value = given[name]
            out[name] = float(value) if np.isscalar(value) else _pair_matrix(value, model.species, name, mixing).tolist()
        return out
    eps, sig = model.epsilon, model.sigma
    uniform = every and np.all(eps == eps.flat[0]) and np.all(sig == sig.flat[0])
    out["epsilon"] = float(eps.flat[0]) if uniform else eps.tolist()
    out["sigma"] = float(sig.flat[0]) if uniform else sig.tolist()
    return out


register_family("lennard_jones", LennardJonesModel, LennardJones)
