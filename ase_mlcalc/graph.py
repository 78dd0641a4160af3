"""The atomic graph: what every model sees.

One path for every potential (see the design notes): neighbor list ->
edge vectors ``r_ij = x_j - x_i + S_ij @ cell`` (a torch tensor that requires
grad) -> descriptor -> model -> atomic energies. Forces and the virial then
come from a single autograd pass with respect to the edge vectors:

    g_ij = dE/dr_ij,  F_k = sum_{i=k} g_ij - sum_{j=k} g_ij,
    W = -sum_ij r_ij (x) g_ij,  stress = -W / V.

A graph may hold several structures (training batches): ``batch`` maps atoms
to structures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from ase.data import chemical_symbols

from .errors import InvalidStructureError, UnknownElementError
from .neighbors import NeighborListCache, pair_list


@dataclass
class AtomicGraph:
    """Edges and species of one or several structures.

    Attributes
    ----------
    numbers : (n_atoms,) int64 numpy array, atomic numbers
    species_index : (n_atoms,) int64 numpy array, index into the model's species
    centers, neighbors : (n_edges,) int64 numpy arrays, sorted by ``centers``
        (i and j of the full neighbor list; both directions present)
    edge_vectors : (n_edges, 3) torch tensor, Å, ``x_j - x_i + S @ cell``
    batch : (n_atoms,) int64 numpy array, structure of each atom
    n_structures : int
    device : torch.device of the tensors
    """

    numbers: np.ndarray
    species_index: np.ndarray
    centers: np.ndarray
    neighbors: np.ndarray
    edge_vectors: torch.Tensor
    batch: np.ndarray
    n_structures: int = 1

    @property
    def n_atoms(self) -> int:
        return len(self.numbers)

    @property
    def device(self):
        return self.edge_vectors.device

    @property
    def dtype(self):
        return self.edge_vectors.dtype

    def tensor(self, name):
        """A cached torch copy (on the graph's device) of an integer array attribute."""
        cache = self.__dict__.setdefault("_tensors", {})
        if name not in cache:
            cache[name] = torch.as_tensor(getattr(self, name), device=self.device)
        return cache[name]


def species_index(numbers, species):
    """Map atomic numbers to indices into ``species``.

    Raises
    ------
    UnknownElementError
        If an element is not among ``species``; the message names it.
    """
    numbers = np.asarray(numbers, dtype=np.int64)
    species = np.asarray(species, dtype=np.int64)
    lookup = np.full(max(int(species.max()), int(numbers.max(initial=0))) + 1, -1, np.int64)
    lookup[species] = np.arange(len(species))
    idx = lookup[numbers]
    if (idx < 0).any():
        unknown = sorted({chemical_symbols[z] for z in numbers[idx < 0]})
        known = [chemical_symbols[z] for z in species]
        raise UnknownElementError(
            f"element(s) {', '.join(unknown)} not known to this model (species: {', '.join(known)})")
    return idx


def check_structure(atoms, min_distance=None, d=None):
    """Validate positions and cell of an :class:`ase.Atoms`.

    Raises
    ------
    InvalidStructureError
        NaN/infinite positions, zero-volume (or degenerate) periodic cell,
        or (when ``d`` is given) two atoms closer than ``min_distance`` Å.
    """
    pos = atoms.positions
    if not np.all(np.isfinite(pos)):
        bad = np.flatnonzero(~np.isfinite(pos).all(axis=1))
        raise InvalidStructureError(f"positions of atoms {bad[:10].tolist()} are NaN or infinite")
    pbc = atoms.pbc
    if pbc.any():
        cell = atoms.cell.array
        if not np.all(np.isfinite(cell)):
            raise InvalidStructureError("the cell contains NaN or infinite entries")
        P = cell[pbc]
        sv = np.linalg.svd(P, compute_uv=False)
        if sv.min() < 1e-10 * max(1.0, sv.max()) or np.linalg.norm(P, axis=1).min() < 1e-8:
            raise InvalidStructureError(
                f"periodic cell has zero volume (periodic vectors zero or linearly dependent): "
                f"cell = {np.round(cell, 6).tolist()}, pbc = {pbc.tolist()}")
    if d is not None and min_distance is not None and len(d) and d.min() < min_distance:
        raise InvalidStructureError(
            f"two atoms are {d.min():.3g} Å apart (< {min_distance} Å): overlapping positions")


def build_graph(atoms, cutoff, species, device="cpu", dtype=torch.float64,
                cache: NeighborListCache | None = None, min_distance=1e-2):
    """Graph of one :class:`ase.Atoms` for a model of given cutoff and species.

    Parameters
    ----------
    atoms : ase.Atoms
    cutoff : float, Å
    species : sequence of atomic numbers known to the model
    device, dtype : where and in which precision the edge vectors live
    cache : optional NeighborListCache (Verlet skin) reused across calls
    min_distance : float, Å; closer atoms raise InvalidStructureError

    Returns
    -------
    AtomicGraph with ``edge_vectors.requires_grad == True``.

    Raises
    ------
    UnknownElementError, InvalidStructureError
    """
    check_structure(atoms)
    numbers = atoms.numbers.astype(np.int64)
    sidx = species_index(numbers, species)
    if cache is not None:
        i, j, S, D = cache.get(atoms.positions, atoms.cell.array, atoms.pbc, numbers)
    else:
        i, j, S = pair_list(atoms.positions, atoms.cell.array, atoms.pbc, cutoff)
        D = atoms.positions[j] - atoms.positions[i] + S @ atoms.cell.array
    d = np.sqrt(np.einsum("ij,ij->i", D, D))
    check_structure(atoms, min_distance, d)
    edge_vectors = torch.as_tensor(D, dtype=dtype, device=device).requires_grad_(True)
    return AtomicGraph(numbers=numbers, species_index=sidx, centers=i, neighbors=j,
                       edge_vectors=edge_vectors, batch=np.zeros(len(numbers), np.int64))


def batch_graphs(graphs):
    """Concatenate graphs of several structures into one (atom indices offset).

    The returned graph's ``edge_vectors`` is a new leaf tensor requiring grad.
    """
    offs = np.cumsum([0] + [g.n_atoms for g in graphs])
    ev = torch.cat([g.edge_vectors.detach() for g in graphs]).requires_grad_(True)
    return AtomicGraph(
        numbers=np.concatenate([g.numbers for g in graphs]),
        species_index=np.concatenate([g.species_index for g in graphs]),
        centers=np.concatenate([g.centers + o for g, o in zip(graphs, offs)]),
        neighbors=np.concatenate([g.neighbors + o for g, o in zip(graphs, offs)]),
        edge_vectors=ev,
        batch=np.concatenate([np.full(g.n_atoms, k, np.int64) for k, g in enumerate(graphs)]),
        n_structures=len(graphs),
    )


def forces_and_virial(graph, energy, create_graph=False):
    """Forces (n_atoms, 3) and per-structure virial (n_structures, 3, 3) from one autograd pass.

    ``energy`` is a scalar (or any tensor whose sum is the total energy) that
    depends on ``graph.edge_vectors``. The virial is ``W = -sum r_ij (x) g_ij``
    with ``g_ij = dE/dr_ij``; the stress is ``-W / V``. Also returns the
    per-atom virials (n_atoms, 3, 3): each edge's term split half to ``i``,
    half to ``j`` (the convention of ASE's LennardJones and LAMMPS).
    """
    r = graph.edge_vectors
    (g,) = torch.autograd.grad(energy.sum(), r, create_graph=create_graph, allow_unused=True)
    if g is None:
        g = torch.zeros_like(r)
    i = graph.tensor("centers")
    j = graph.tensor("neighbors")
    forces = torch.zeros((graph.n_atoms, 3), dtype=r.dtype, device=r.device)
    forces = forces.index_add(0, i, g).index_add(0, j, -g)
    edge_w = -r.unsqueeze(2) * g.unsqueeze(1)  # (E, 3, 3): -r_a g_b
    atom_w = torch.zeros((graph.n_atoms, 3, 3), dtype=r.dtype, device=r.device)
    atom_w = atom_w.index_add(0, i, 0.5 * edge_w).index_add(0, j, 0.5 * edge_w)
    batch = graph.tensor("batch")
    virial = torch.zeros((graph.n_structures, 3, 3), dtype=r.dtype, device=r.device)
    virial = virial.index_add(0, batch, atom_w)
    return forces, virial, atom_w
