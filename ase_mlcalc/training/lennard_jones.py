"""Fit of the Lennard-Jones baseline (epsilon, sigma per species pair, e0 per species) to energies and forces."""

from __future__ import annotations

import time

import numpy as np
import torch

from ..graph import batch_graphs, forces_and_virial
from ..models.lennard_jones import LennardJones, LennardJonesModel
from ..species import as_atomic_numbers, species_of
from .data import composition_matrix, frame_graphs, load_frames, read_frames, reference_values
from .metrics import finish_fit
from .settings import check_positive, check_positive_int


def fit_lennard_jones(train, test=None, *, species=None, cutoff=5.0, energy_sigma=0.01, force_sigma=0.1,
                      shift=True, smooth=False, ro=None, max_iter=300, progress=False, verbose=False):
    """Fit epsilon, sigma (per species pair) and per-species e0 to DFT energies and forces.

    Minimises ``mean_frames((dE/N)/energy_sigma)^2 + mean_components((dF)/force_sigma)^2``
    with L-BFGS (:func:`scipy.optimize.minimize`), gradients by torch autograd
    (forces differentiated once more with respect to the parameters), from a
    start where a common sigma is scanned and the energy scale and e0 enter linearly.

    Parameters
    ----------
    train : list of ase.Atoms (or a file path) with reference energy (eV) and forces (eV/Å)
    test : optional labelled frames (or path) evaluated at the end (``calc.metrics["test"]``)
    species : elements to fit (default: those in ``train``)
    cutoff : float, Å
    energy_sigma : float, eV/atom; force_sigma : float, eV/Å -- expected errors
        that weight the two terms (as GAP's default_sigma)
    shift, smooth, ro : as :class:`~ase_mlcalc.LennardJones`
    max_iter : L-BFGS iterations
    progress : tqdm progress bar over the loss evaluations; verbose : print every loss

    Returns
    -------
    LennardJones calculator holding the fitted model (``calc.epsilon``,
    ``calc.sigma``: (n_species, n_species) arrays; ``calc.model.e0``);
    ``calc.metrics`` holds train/test errors, ``calc.model.fit_info`` the optimiser's outcome.

    Raises
    ------
    ValueError
        A setting out of range (named in the message), before any work.
    TrainingDataError
        No frames, frames without energies or forces, or with unlisted elements.
    """
    t_start = time.perf_counter()
    cutoff = check_positive("cutoff", cutoff)
    energy_sigma = check_positive("energy_sigma", energy_sigma)
    force_sigma = check_positive("force_sigma", force_sigma)
    max_iter = check_positive_int("max_iter", max_iter)
    frames = load_frames(train)
    test = read_frames(test) if test is not None else None
    ref = reference_values(frames, require_forces=True)
    species = species_of(frames) if species is None else as_atomic_numbers(species)
    C = torch.as_tensor(composition_matrix(frames, species))  # raises for elements outside species
    n = len(species)
    graphs = frame_graphs(frames, cutoff, species, full_list=False)
    g = batch_graphs(graphs)
    d = torch.sqrt((g.edge_vectors.detach() ** 2).sum(1)).numpy()
    # Start from the nearest-neighbour distance: r_min = 2^(1/6) sigma.
    nearest = np.full(g.n_atoms, np.inf)
    np.minimum.at(nearest, g.centers, d)
    np.minimum.at(nearest, g.neighbors, d)
    r_nn = float(np.median(nearest[np.isfinite(nearest)])) if np.isfinite(nearest).any() else 0.5 * cutoff
    e_ref = torch.as_tensor(ref["energy"])
    n_at = torch.as_tensor(ref["n_atoms"], dtype=torch.float64)
    f_ref = torch.as_tensor(ref["forces"])
    batch = g.tensor("batch")

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
    history = []

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
        history.append({"loss": loss.item()})
        bar.update(1)
        if verbose:
            print(f"loss {loss.item():.6g}")
        return loss.item(), grad

    from scipy.optimize import minimize
    from tqdm.auto import tqdm

    x0 = np.concatenate([p.detach().numpy().ravel() for p in params])
    with tqdm(disable=not progress, desc="LJ L-BFGS", unit="eval") as bar:
        res = minimize(objective, x0, jac=True, method="L-BFGS-B",
                       options={"maxiter": max_iter, "ftol": 1e-15, "gtol": 1e-12})
        objective(res.x)
    model.e0.requires_grad_(False)
    for p in params:
        p.grad = None
    calc = LennardJones(model=model)
    return finish_fit(calc, {"train": frames, "test": test},
                      {"loss": float(res.fun), "iterations": int(res.nit), "message": str(res.message),
                       "history": history}, t_start)
