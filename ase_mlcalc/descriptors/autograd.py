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
    def forward(ctx, edge_vectors, descriptor, centers, neighbors, sidx, n_atoms):
        D = _np(edge_vectors)
        q, jac = descriptor.values_and_jacobian(D, centers, neighbors, sidx, n_atoms)
        dev, dt = edge_vectors.device, edge_vectors.dtype
        ctx.save_for_backward(torch.as_tensor(jac, dtype=dt, device=dev),
                              torch.as_tensor(centers, device=dev))
        return torch.as_tensor(q, dtype=dt, device=dev)

    @staticmethod
    def backward(ctx, grad_q):
        jac, centers = ctx.saved_tensors
        g = torch.einsum("ef,efk->ek", grad_q[centers], jac)
        return g, None, None, None, None, None


def descriptor_tensor(descriptor, graph, jacobian=False):
    """Differentiable (N, F) descriptors of ``graph`` (see :meth:`Descriptor.torch`)."""
    r = graph.edge_vectors
    centers, neighbors = graph.centers, graph.neighbors
    d2 = (r.detach() ** 2).sum(1)
    keep = (d2 < descriptor.cutoff ** 2).cpu().numpy()
    if not keep.all():
        idx = np.flatnonzero(keep)
        r = r[torch.as_tensor(idx, device=r.device)]
        centers, neighbors = centers[idx], neighbors[idx]
    fn = _JacobianDescriptor if jacobian else _VJPDescriptor
    return fn.apply(r, descriptor, np.ascontiguousarray(centers), np.ascontiguousarray(neighbors),
                    np.ascontiguousarray(graph.species_index), graph.n_atoms)
