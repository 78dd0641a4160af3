"""What every descriptor (SOAP, ACSF) provides, so that models and the torch bridge can use any of them.

Edges are those of the full neighbor list within the descriptor's cutoff,
sorted by center atom: ``centers[e]`` (i), ``neighbors[e]`` (j),
``edge_vectors[e] = x_j - x_i + S @ cell`` (Å). The descriptor of atom i
depends only on the edges centred on i (angular terms use
``r_jk = r_ik - r_ij``), so its Jacobian has one (n_features, 3) block per
edge: ``jacobian[e] = d q[centers[e]] / d edge_vectors[e]``.
"""

from __future__ import annotations

import numpy as np

from ..graph import build_graph
from ..species import as_atomic_numbers


def edge_offsets(centers, n_atoms):
    """(n_atoms + 1,) int64 offsets of each center's edges in a center-sorted edge list."""
    return np.searchsorted(centers, np.arange(n_atoms + 1)).astype(np.int64)


class Descriptor:
    """Base class. Subclasses set ``species`` (tuple of Z), ``cutoff`` (Å),
    ``n_features`` and implement the three kernels below (numba inside; plain
    float64/int64 numpy arrays in and out).

    Kernels (all arrays numpy, C-contiguous):

    ``values(edge_vectors (E,3), centers (E,), neighbors (E,), species_index (N,), n_atoms) -> (N, F)``

    ``values_and_jacobian(...) -> (q (N, F), jacobian (E, F, 3))``

    ``vjp(edge_vectors, centers, neighbors, species_index, n_atoms, grad_q (N, F)) -> (E, 3)``:
    ``out[e] = sum_f grad_q[centers[e], f] * jacobian[e, f, :]`` without
    materialising the Jacobian.
    """

    species: tuple = ()
    cutoff: float = 0.0
    n_features: int = 0

    def _set_species(self, species):
        if species is None or len(species) == 0:
            raise ValueError("species must list the elements the descriptor will see, e.g. ['Mo']")
        self.species = as_atomic_numbers(species)

    def _kernel_inputs(self, edge_vectors, centers, neighbors, species_index, n_atoms):
        """Contiguous kernel inputs ``(D (E, 3) float64, neighbors (E,), species_index (N,), offsets (N+1,))``.

        Raises ValueError for edges not sorted by center atom or species indices outside ``species``
        (the numba kernels index without bounds checks).
        """
        D = np.ascontiguousarray(edge_vectors, dtype=np.float64).reshape(-1, 3)
        centers = np.asarray(centers, dtype=np.int64)
        sidx = np.ascontiguousarray(species_index, dtype=np.int64)
        if len(centers) > 1 and np.any(np.diff(centers) < 0):
            raise ValueError(f"{type(self).__name__} edges must be sorted by center atom")
        if sidx.size and (sidx.min() < 0 or sidx.max() >= len(self.species)):
            raise ValueError("species_index out of range for this descriptor's species")
        return D, np.ascontiguousarray(neighbors, dtype=np.int64), sidx, edge_offsets(centers, int(n_atoms))

    def _outputs(self, n_atoms, n_edges, mode, grad_q=None):
        """Zeroed kernel outputs ``(q (N, F), jac (E, F, 3) or empty, vjp (E, 3) or empty, grad_q)`` for
        mode 0 (values), 1 (values and Jacobian) or 2 (values and vector-Jacobian product with ``grad_q``)."""
        F = self.n_features
        q = np.zeros((n_atoms, F))
        jac = np.zeros((n_edges, F, 3)) if mode == 1 else np.zeros((0, 0, 3))
        out = np.zeros((n_edges, 3)) if mode == 2 else np.zeros((0, 3))
        grad_q = np.zeros((0, F)) if grad_q is None else self._grad_q(grad_q, n_atoms)
        return q, jac, out, grad_q

    def _grad_q(self, grad_q, n_atoms):
        """``grad_q`` as a contiguous (n_atoms, n_features) float64 array; ValueError for another shape."""
        g = np.ascontiguousarray(grad_q, dtype=np.float64)
        if g.shape != (n_atoms, self.n_features):
            raise ValueError(f"grad_q must have shape ({n_atoms}, {self.n_features}), got {g.shape}")
        return g

    def edges(self, atoms, min_distance=1e-2):
        """``(edge_vectors (E, 3) float64, centers (E,), neighbors (E,), species_index (N,))`` of
        ``atoms`` within the cutoff, from the package's one edge builder
        (:func:`ase_mlcalc.graph.build_graph`).

        Raises
        ------
        UnknownElementError
            An element not in ``species``.
        InvalidStructureError
            NaN positions, a zero-volume periodic cell, or atoms closer than ``min_distance`` (Å).
        """
        g = build_graph(atoms, self.cutoff, self.species, min_distance=min_distance)
        return g.edge_vectors.detach().numpy(), g.centers, g.neighbors, g.species_index

    def compute(self, atoms):
        """Descriptor of every atom: (n_atoms, n_features) float64.

        Raises UnknownElementError for an element not in ``species`` and
        InvalidStructureError for NaN or overlapping positions or a zero-volume cell.
        """
        D, i, j, sidx = self.edges(atoms)
        return self.values(D, i, j, sidx, len(atoms))

    def _run(self, edge_vectors, centers, neighbors, species_index, n_atoms, mode, grad_q=None):  # pragma: no cover
        """One kernel call in ``mode`` 0, 1 or 2 (see :meth:`_outputs`): ``(q, jac, vjp)``. A descriptor
        whose kernel has one entry point for the three modes implements this; one with three kernels
        (SOAP) overrides the three methods below instead."""
        raise NotImplementedError

    def values(self, edge_vectors, centers, neighbors, species_index, n_atoms):
        """(n_atoms, n_features) float64 descriptors."""
        return self._run(edge_vectors, centers, neighbors, species_index, n_atoms, 0)[0]

    def values_and_jacobian(self, edge_vectors, centers, neighbors, species_index, n_atoms):
        """``(q (N, F), jac (E, F, 3))``, ``jac[e] = d q[centers[e]] / d edge_vectors[e]`` (Å^-1)."""
        q, jac, _ = self._run(edge_vectors, centers, neighbors, species_index, n_atoms, 1)
        return q, jac

    def vjp(self, edge_vectors, centers, neighbors, species_index, n_atoms, grad_q):
        """(E, 3): ``sum_f grad_q[centers[e], f] jac[e, f, :]`` without storing the Jacobian."""
        return self._run(edge_vectors, centers, neighbors, species_index, n_atoms, 2, grad_q)[2]

    def torch(self, graph, jacobian=False):
        """Descriptors of a graph's atoms as a differentiable torch tensor (N, F).

        Edges of the graph beyond this descriptor's cutoff are dropped.
        ``jacobian=True`` materialises dq/dr so that the result can be
        differentiated twice (force training); otherwise backward is a numba
        vector-Jacobian product (prediction).
        """
        from .autograd import descriptor_tensor

        return descriptor_tensor(self, graph, jacobian=jacobian)
