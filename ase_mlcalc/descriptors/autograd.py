"""Torch bridge for numba descriptors.

forward: numba values (N, F). backward: dE/dr_ij as a vector-Jacobian product
``g_e = sum_f dE/dq[i_e, f] * dq[i_e, f]/dr_e`` -- either by a numba kernel that
never stores the Jacobian (memory ~ atoms x neighbours; prediction), or from a
materialised Jacobian with torch operations, which keeps the backward
differentiable (training on forces needs d/dtheta of dE/dr).

The numba kernels run on the CPU; tensors on CUDA are copied to the host for
them and the result copied back.
"""

from __future__ import annotations

import numpy as np
import torch


def _np(t):
    return np.ascontiguousarray(t.detach().to("cpu", torch.float64).numpy())


class _VJPDescriptor(torch.autograd.Function):
    @staticmethod
    def forward(ctx, edge_vectors, descriptor, centers, neighbors, sidx, n_atoms):
        D = _np(edge_vectors)
        q = descriptor.values(D, centers, neighbors, sidx, n_atoms)
        ctx.descriptor = descriptor
        ctx.args = (D, centers, neighbors, sidx, n_atoms)
        return torch.as_tensor(q, dtype=edge_vectors.dtype, device=edge_vectors.device)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_q):
        g = ctx.descriptor.vjp(*ctx.args, _np(grad_q))
        g = torch.as_tensor(g, dtype=grad_q.dtype, device=grad_q.device)
        return g, None, None, None, None, None


class _JacobianDescriptor(torch.autograd.Function):
    @staticmethod
    def forward(ctx, edge_vectors, q, jac, centers):
        ctx.save_for_backward(jac, centers)
        return q

    @staticmethod
    def backward(ctx, grad_q):
        jac, centers = ctx.saved_tensors
        g = torch.einsum("ef,efk->ek", grad_q[centers], jac)
        return g, None, None, None


def from_jacobian(edge_vectors, q, jacobian, centers):
    """Descriptors ``q`` (N, F) computed beforehand, tied to ``edge_vectors`` (E, 3) through
    their Jacobian (E, F, 3) and the edges' ``centers`` (E,) (long tensor): the result
    differentiates to ``edge_vectors`` with a backward made of torch operations, so it can be
    differentiated again (training on forces). Used by :func:`descriptor_tensor` and by
    training loops that compute the descriptors of fixed training frames once.
    """
    return _JacobianDescriptor.apply(edge_vectors, q, jacobian, centers)


def descriptor_tensor(descriptor, graph, jacobian=False):
    """Differentiable (n_centers, F) descriptors of ``graph`` (see :meth:`Descriptor.torch`)."""
    r = graph.edge_vectors
    centers, neighbors = graph.centers, graph.neighbors
    d2 = (r.detach() ** 2).sum(1)
    keep = (d2 < descriptor.cutoff ** 2).cpu().numpy()
    if not keep.all():
        idx = np.flatnonzero(keep)
        r = r[torch.as_tensor(idx, device=r.device)]
        centers, neighbors = centers[idx], neighbors[idx]
    centers, neighbors = np.ascontiguousarray(centers), np.ascontiguousarray(neighbors)
    sidx = np.ascontiguousarray(graph.species_index)
    if not jacobian:
        return _VJPDescriptor.apply(r, descriptor, centers, neighbors, sidx, graph.n_centers)
    q, jac = descriptor.values_and_jacobian(_np(r), centers, neighbors, sidx, graph.n_centers)
    dev, dt = r.device, r.dtype
    return from_jacobian(r, torch.as_tensor(q, dtype=dt, device=dev), torch.as_tensor(jac, dtype=dt, device=dev),
                         torch.as_tensor(centers, device=dev))
