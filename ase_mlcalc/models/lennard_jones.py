"""Lennard-Jones pair potential (fitted baseline) as a torch module, its ASE calculator and its fit to data.

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

    full_list = False  # pair potential: each pair once (half list)

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
        r = graph.edge_vectors
        if r.device.type == "cpu" and not (self.log_epsilon.requires_grad or self.log_sigma.requires_grad):
            return _LJInference.apply(r, self, graph)
        sidx = graph.tensor("species_index")
        i = graph.tensor("centers")
        j = graph.tensor("neighbors")
        phi = self.pair_energy((r * r).sum(1), sidx[i], sidx[j])
        # Half of each pair's energy goes to each atom: with a full list
        # the pair appears twice, once centred on each atom.
        eps = torch.zeros(graph.n_atoms, dtype=r.dtype, device=r.device).index_add(0, i, 0.5 * phi)
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
    den = (rc2 - ro2) ** 3
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
            fc = (rc2 - r2) ** 2 * (rc2 + 2.0 * r2 - 3.0 * ro2) / den
            dfc = 6.0 * (rc2 - r2) * (ro2 - r2) / den
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
            graph.n_atoms, graph.full_list, dphi)
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


def fit_lennard_jones(frames, species=None, cutoff=5.0, energy_sigma=0.01, force_sigma=0.1, shift=True,
                      smooth=False, ro=None, max_iter=300, verbose=False):
    """Fit epsilon, sigma (per species pair) and per-species e0 to DFT energies and forces.

    Minimises ``mean_frames((dE/N)/energy_sigma)^2 + mean_components((dF)/force_sigma)^2``
    with L-BFGS (:func:`scipy.optimize.minimize`), gradients by torch autograd
    (forces differentiated once more with respect to the parameters).

    Parameters
    ----------
    frames : list of ase.Atoms with reference energy (eV) and forces (eV/Å)
    species : elements to fit (default: those in ``frames``)
    cutoff : float, Å
    energy_sigma : float, eV/atom; force_sigma : float, eV/Å -- expected errors
        that weight the two terms (as GAP's default_sigma)
    shift, smooth, ro : as :class:`LennardJones`
    max_iter : L-BFGS iterations

    Returns
    -------
    LennardJones calculator holding the fitted model (``calc.epsilon``,
    ``calc.sigma``: (n_species, n_species) arrays; ``calc.model.e0``).

    Raises
    ------
    TrainingDataError
        Frames without energies or forces, or with unlisted elements.
    """
    from scipy.optimize import minimize

    from ..graph import batch_graphs, forces_and_virial
    from ..training import composition_matrix, frame_graphs, reference_values, species_of

    frames = list(frames)
    ref = reference_values(frames, require_forces=True)
    species = species_of(frames) if species is None else as_atomic_numbers(species)
    n = len(species)
    graphs = frame_graphs(frames, cutoff, species, full_list=False)
    g = batch_graphs(graphs)
    d = torch.sqrt((g.edge_vectors.detach() ** 2).sum(1))
    # Start from the nearest-neighbour distance: r_min = 2^(1/6) sigma.
    r_nn = float(np.median([d[torch.as_tensor(g.centers == k)].min() for k in range(g.n_atoms)
                            if (g.centers == k).any()])) if len(d) else 2.5
    e_ref = torch.as_tensor(ref["energy"])
    n_at = torch.as_tensor(ref["n_atoms"], dtype=torch.float64)
    f_ref = torch.as_tensor(ref["forces"])
    batch = g.tensor("batch")
    C = torch.as_tensor(composition_matrix(frames, species))

    def energies_forces(model, create_graph=False):
        atom_e = model.atomic_energies(g)
        e = torch.zeros(len(frames), dtype=torch.float64).index_add(0, batch, atom_e)
        f, _, _ = forces_and_virial(g, e.sum(), create_graph=create_graph)
        return e, f

    # Start: scan a common sigma (r_min = 2^(1/6) sigma near the nearest-neighbour
    # distance); for each, the energy scale c (epsilon = c everywhere) and e0 enter
    # linearly, so they come from one weighted least-squares solve.
    best = None
    for scale in np.linspace(0.75, 1.15, 9):
        sig = np.full((n, n), scale * r_nn / 2 ** (1 / 6))
        trial = LennardJonesModel(species, np.ones((n, n)), sig, cutoff, shift=shift, smooth=smooth, ro=ro)
        e1, f1 = energies_forces(trial)
        e1, f1 = e1.detach(), f1.detach()
        # rows: energies per atom / energy_sigma, then force components / force_sigma
        w_e = 1 / (n_at * energy_sigma * len(frames) ** 0.5)
        w_f = 1 / (force_sigma * f1.numel() ** 0.5)
        A = torch.cat([torch.cat([(e1 * w_e)[:, None], C * w_e[:, None]], 1),
                       torch.cat([(f1.reshape(-1) * w_f)[:, None], torch.zeros(f1.numel(), n, dtype=torch.float64)], 1)])
        b = torch.cat([e_ref * w_e, f_ref.reshape(-1) * w_f])
        x = torch.linalg.lstsq(A, b).solution
        if x[0] <= 0:
            continue
        cost = float(((A @ x - b) ** 2).sum())
        if best is None or cost < best[0]:
            best = (cost, sig, float(x[0]), x[1:].clone())
    if best is None:
        raise RuntimeError("no repulsive-attractive Lennard-Jones start found for these data")
    _, sig0, c0, e00 = best
    model = LennardJonesModel(species, np.full((n, n), c0), sig0, cutoff, shift=shift, smooth=smooth, ro=ro)
    with torch.no_grad():
        model.e0.copy_(e00)
    model.e0.requires_grad_(True)
    params = [model.log_epsilon, model.log_sigma, model.e0]
    sizes = [p.numel() for p in params]

    def objective(x):
        with torch.no_grad():
            for p, chunk in zip(params, np.split(x, np.cumsum(sizes)[:-1])):
                p.copy_(torch.as_tensor(chunk).view_as(p))
        for p in params:
            p.grad = None
        e, f = energies_forces(model, create_graph=True)
        e = e + C @ model.e0
        loss = (((e - e_ref) / n_at / energy_sigma) ** 2).mean() + (((f - f_ref) / force_sigma) ** 2).mean()
        loss.backward()
        grad = np.concatenate([p.grad.detach().numpy().ravel() for p in params])
        if verbose:
            print(f"loss {loss.item():.6g}")
        return loss.item(), grad

    x0 = np.concatenate([p.detach().numpy().ravel() for p in params])
    res = minimize(objective, x0, jac=True, method="L-BFGS-B",
                   options={"maxiter": max_iter, "ftol": 1e-15, "gtol": 1e-12})
    objective(res.x)
    model.e0.requires_grad_(False)
    for p in params:
        p.grad = None
    model.fit_info = {"loss": float(res.fun), "iterations": int(res.nit), "message": str(res.message)}
    return LennardJones(model=model)


def add_train_arguments(parser):
    """Options of ``ase-mlcalc train lj``."""
    parser.add_argument("--cutoff", type=float, default=5.0, help="cutoff in Å (default 5.0)")
    parser.add_argument("--energy-sigma", type=float, default=0.01, help="expected energy error, eV/atom (default 0.01)")
    parser.add_argument("--force-sigma", type=float, default=0.1, help="expected force error, eV/Å (default 0.1)")
    parser.add_argument("--smooth", action="store_true", help="ASE's smooth cutoff instead of the energy shift")
    parser.add_argument("--max-iter", type=int, default=300, help="L-BFGS iterations (default 300)")


def train_from_args(args):
    """Run ``ase-mlcalc train lj``: fit, save, print the error table and write the parity plot."""
    import os

    from ..training import read_frames, report

    train = read_frames(args.train)
    test = read_frames(args.test) if args.test else None
    calc = fit_lennard_jones(train, cutoff=args.cutoff, energy_sigma=args.energy_sigma,
                             force_sigma=args.force_sigma, smooth=args.smooth, max_iter=args.max_iter)
    calc.save(args.output, metadata={"trained_on": os.path.basename(args.train), **calc.model.fit_info})
    print(f"epsilon (eV):\n{calc.epsilon}\nsigma (Å):\n{calc.sigma}\ne0 (eV): {calc.model.e0.numpy()}")
    report(calc.model, train, test, plot=args.plot or os.path.splitext(args.output)[0] + ".png")
    print(f"model written to {args.output}")
