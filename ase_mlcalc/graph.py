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

import numba
import numpy as np
import torch

from .errors import InvalidStructureError
from .neighbors import NeighborListCache, check_geometry, pair_list
from .species import species_index

__all__ = ["AtomicGraph", "build_graph", "batch_graphs", "check_structure", "edge_gradients", "forces_and_virial",
           "species_index"]


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
    full_list : bool, True if both (i, j) and (j, i) are present (descriptors
        need this); False for a half list (each pair once; pair potentials)
    n_centers : int, the atoms whose energies the model computes: atoms
        ``0..n_centers-1`` (all atoms by default). Atoms beyond it are
        neighbours only (LAMMPS's ghost atoms: no edges are centred on them)
    device : torch.device of the tensors
    """

    numbers: np.ndarray
    species_index: np.ndarray
    centers: np.ndarray
    neighbors: np.ndarray
    edge_vectors: torch.Tensor
    batch: np.ndarray
    n_structures: int = 1
    full_list: bool = True
    n_centers: int | None = None

    def __post_init__(self):
        if self.n_centers is None:
            self.n_centers = len(self.numbers)

    @property
    def n_atoms(self) -> int:
        return len(self.numbers)

    @property
    def center_species(self):
        """(n_centers,) long tensor: species index of the atoms that carry energies."""
        sidx = self.tensor("species_index")
        return sidx if self.n_centers == self.n_atoms else sidx[: self.n_centers]

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


def check_structure(atoms):
    """Validate positions and cell of an :class:`ase.Atoms`.

    Raises
    ------
    InvalidStructureError
        NaN/infinite positions, zero-volume (or degenerate) periodic cell.
    """
    check_geometry(atoms.pbc, atoms.cell.array, atoms.positions)


def build_graph(atoms, cutoff, species, device="cpu", dtype=torch.float64,
                cache: NeighborListCache | None = None, min_distance=1e-2, full_list=True, reuse_buffers=False):
    """Graph of one :class:`ase.Atoms` for a model of given cutoff and species.

    The one edge builder of the package: calculators, training and
    :meth:`Descriptor.compute <ase_mlcalc.descriptors.Descriptor.compute>` all
    build their edges here, with the same checks.

    Parameters
    ----------
    atoms : ase.Atoms
    cutoff : float, Å
    species : sequence of atomic numbers known to the model
    device, dtype : where and in which precision the edge vectors live
    cache : optional NeighborListCache (Verlet skin) reused across calls; its
        cutoff and ``bothways`` are used instead of ``cutoff``/``full_list``
    min_distance : float, Å; closer atoms raise InvalidStructureError
    full_list : bool, both directions of every pair (default) or a half list
    reuse_buffers : bool, let the graph's arrays be views of ``cache``'s
        buffers (valid until its next call; the calculator's MD hot path).
        By default the graph owns copies that the caller may keep.

    Returns
    -------
    AtomicGraph with ``edge_vectors.requires_grad == True``.

    Raises
    ------
    UnknownElementError, InvalidStructureError (both ValueError)
    """
    check_structure(atoms)
    numbers = atoms.numbers.astype(np.int64)
    sidx = species_index(numbers, species)
    if cache is None:
        i, j, S = pair_list(atoms.positions, atoms.cell.array, atoms.pbc, cutoff, bothways=full_list)
        D = atoms.positions[j] - atoms.positions[i] + S @ atoms.cell.array
        d_min = float(np.sqrt(np.einsum("ij,ij->i", D, D).min())) if len(D) else np.inf
        full = bool(full_list)
    else:
        i, j, D, _, d_min = cache.get(atoms.positions, atoms.cell.array, atoms.pbc, numbers, copy=not reuse_buffers)
        full = cache.bothways
    if d_min < min_distance:
        raise InvalidStructureError(
            f"two atoms are {d_min:.3g} Å apart (< {min_distance} Å): overlapping positions")
    edge_vectors = torch.as_tensor(D, dtype=dtype, device=device).requires_grad_(True)
    return AtomicGraph(numbers=numbers, species_index=sidx, centers=i, neighbors=j,
                       edge_vectors=edge_vectors, batch=np.zeros(len(numbers), np.int64), full_list=full)


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
        full_list=all(g.full_list for g in graphs),
    )


def edge_gradients(graph, energy, create_graph=False, retain_graph=None):
    """``g = dE/dr_ij`` (n_edges, 3) of ``energy`` (a tensor whose sum is E, eV) by one autograd pass.

    The per-edge gradient from which forces and the virial follow (and what
    LAMMPS's pair style consumes); zeros where E does not depend on an edge.
    ``retain_graph`` keeps the autograd graph for further passes (default: ``create_graph``).
    """
    r = graph.edge_vectors
    energy = energy.sum()
    if not energy.requires_grad:  # no atoms, or no edges the energy depends on
        return torch.zeros_like(r)
    (g,) = torch.autograd.grad(energy, r, create_graph=create_graph, retain_graph=retain_graph, allow_unused=True)
    return torch.zeros_like(r) if g is None else g


def forces_and_virial(graph, energy, create_graph=False, per_atom_virial=False, retain_graph=None):
    """Forces, virial and optionally per-atom virials from one autograd pass.

    ``energy`` is a tensor whose sum is the total energy (eV) and which
    depends on ``graph.edge_vectors``. With ``g_ij = dE/dr_ij``:
    ``F_k = sum_{i=k} g_ij - sum_{j=k} g_ij`` (eV/Å) and the virial
    ``W = -sum_ij r_ij (x) g_ij`` (eV) per structure; the stress is ``-W / V``.

    Returns
    -------
    forces : (n_atoms, 3) tensor
    virial : (n_structures, 3, 3) tensor
    atom_virial : (n_atoms, 3, 3) tensor or None (``per_atom_virial``): each
        edge's term split half to ``i``, half to ``j`` (the convention of ASE's
        LennardJones and of LAMMPS); they sum to ``virial``.
    """
    r = graph.edge_vectors
    g = edge_gradients(graph, energy, create_graph, retain_graph)
    if r.device.type == "cpu" and not create_graph and graph.n_structures == 1:
        # Same sums as below, in one numba pass (prediction on the CPU).
        forces, virial, atom_virial = _scatter_edges(
            g.detach().numpy(), r.detach().numpy(), graph.centers, graph.neighbors, graph.n_atoms,
            per_atom_virial)
        return (torch.from_numpy(forces), torch.from_numpy(virial)[None],
                torch.from_numpy(atom_virial) if per_atom_virial else None)
    i = graph.tensor("centers")
    j = graph.tensor("neighbors")
    forces = torch.zeros((graph.n_atoms, 3), dtype=r.dtype, device=r.device)
    forces = forces.index_add(0, i, g).index_add(0, j, -g)
    if graph.n_structures == 1:
        virial = -(r.T @ g).unsqueeze(0)
    else:
        edge_batch = graph.tensor("batch")[i]
        virial = torch.zeros((graph.n_structures, 3, 3), dtype=r.dtype, device=r.device)
        virial = virial.index_add(0, edge_batch, -r.unsqueeze(2) * g.unsqueeze(1))
    atom_virial = None
    if per_atom_virial:
        half = -0.5 * r.unsqueeze(2) * g.unsqueeze(1)
        atom_virial = torch.zeros((graph.n_atoms, 3, 3), dtype=r.dtype, device=r.device)
        atom_virial = atom_virial.index_add(0, i, half).index_add(0, j, half)
    return forces, virial, atom_virial


@numba.njit(cache=True)
def _scatter_edges(g, r, i, j, n_atoms, per_atom_virial):
    """Forces, virial and (optionally) per-atom virials from edge gradients g = dE/dr (see forces_and_virial)."""
    forces = np.zeros((n_atoms, 3))
    # scalar accumulators: the compiler keeps them in registers
    v00 = v01 = v02 = v10 = v11 = v12 = v20 = v21 = v22 = 0.0
    for e in range(g.shape[0]):
        a, b = i[e], j[e]
        g0, g1, g2 = g[e, 0], g[e, 1], g[e, 2]
        forces[a, 0] += g0
        forces[a, 1] += g1
        forces[a, 2] += g2
        forces[b, 0] -= g0
        forces[b, 1] -= g1
        forces[b, 2] -= g2
        r0, r1, r2 = r[e, 0], r[e, 1], r[e, 2]
        v00 -= r0 * g0
        v01 -= r0 * g1
        v02 -= r0 * g2
        v10 -= r1 * g0
        v11 -= r1 * g1
        v12 -= r1 * g2
        v20 -= r2 * g0
        v21 -= r2 * g1
        v22 -= r2 * g2
    virial = np.array([[v00, v01, v02], [v10, v11, v12], [v20, v21, v22]])
    atom_virial = np.zeros((n_atoms if per_atom_virial else 0, 3, 3))
    if per_atom_virial:
        for e in range(g.shape[0]):
            for c in range(3):
                for k in range(3):
                    w = -0.5 * r[e, c] * g[e, k]
                    atom_virial[i[e], c, k] += w
                    atom_virial[j[e], c, k] += w
    return forces, virial, atom_virial
