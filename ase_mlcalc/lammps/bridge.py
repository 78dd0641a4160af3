"""Python side of LAMMPS's ``pair_style mlcalc``: called by the C++ plugin, one instance per pair style and MPI rank.

The plugin (``src/pair_mlcalc.cpp``) hands over the raw addresses of its contiguous, C-order
buffers; this module wraps them with numpy through ctypes (no copy), so the C++ side needs no
numpy C API. Integer arrays are int64, floating-point arrays float64, as
:class:`ase_mlcalc.graph.AtomicGraph` expects.

Graph of one rank, as the plugin builds it::

    atoms 0 .. n_centers-1         the rank's local atoms of mapped types (ascending LAMMPS index):
                                   the only edge centres, the only atoms that carry energies
    atoms n_centers .. n_atoms-1   ghost atoms (and unlisted local atoms) that are neighbours of a centre
    edges (i, j, r_ij = x_j - x_i) with |r_ij| < model cutoff, i < n_centers, sorted by i

The graph's ``n_centers`` tells the model that atoms beyond it are neighbours only, so it computes
descriptors and energies of the centres alone (ghost atoms cost nothing but their edges). Every
ase_mlcalc descriptor depends only on the edges centred on its own atom, so the sum over ranks of
the centres' energies is the total energy, and ``g_ij = dE/dr_ij`` from one autograd pass gives the
forces (``f_i += g_ij, f_j -= g_ij``; LAMMPS's reverse communication brings ghost forces home) and
the virial ``W = -sum r_ij (x) g_ij``.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
import weakref

import numpy as np
import torch

from .._openmp import set_threads
from ..graph import AtomicGraph, edge_gradients
from ..io import load_model
from ..species import species_index, symbols

__all__ = ["INSTANCES", "MLCalcLammps", "make_graph", "set_threads"]


def _view(address, count, dtype):
    """numpy array over ``count`` items of ``dtype`` at ``address`` (no copy; valid during the call only)."""
    dtype = np.dtype(dtype)
    if count == 0:
        return np.empty(0, dtype)
    buf = (ctypes.c_char * (count * dtype.itemsize)).from_address(address)
    return np.frombuffer(buf, dtype=dtype, count=count)


def make_graph(species_idx, numbers, centers, neighbors, edge_vectors, n_centers):
    """The AtomicGraph of one rank (see the module docstring).

    Parameters
    ----------
    species_idx, numbers : (n_atoms,) int64, species index into the model's species and atomic number
    centers, neighbors : (n_edges,) int64 graph indices, ``centers < n_centers``, sorted by ``centers``
    edge_vectors : (n_edges, 3) float64 tensor, Å, ``x_j - x_i``, requiring grad
    n_centers : int, atoms ``0..n_centers-1`` carry energies, the others are neighbours only
    """
    return AtomicGraph(numbers=numbers, species_index=species_idx, centers=centers, neighbors=neighbors,
                       edge_vectors=edge_vectors, batch=np.zeros(len(numbers), np.int64), full_list=True,
                       n_centers=int(n_centers))


#: live MLCalcLammps objects of this process (the benchmark reads their ``timings``)
INSTANCES = weakref.WeakSet()


class MLCalcLammps:
    """A loaded model and the LAMMPS type -> element map of one ``pair_style mlcalc`` on one MPI rank.

    Parameters
    ----------
    path : str, model file (anything :func:`ase_mlcalc.load_model` reads: our ``.pt`` files, QUIP XML, n2p2)
    nthreads : int, torch/numba threads of this rank (the plugin passes the resolved default, 1)

    Attributes
    ----------
    cutoff : float, Å (the plugin's neighbour cutoff)
    species : tuple of atomic numbers, the model's species order
    timings : dict, ``calls``, ``compute_s`` (seconds in :meth:`compute`), ``model_s`` (model + autograd), ``edges``

    Raises
    ------
    FileNotFoundError, ase_mlcalc.ModelFileError : the plugin stops LAMMPS with the message
    """

    def __init__(self, path, nthreads=1):
        set_threads(nthreads)
        self.path = os.fspath(path)
        self.model = load_model(self.path)
        self.model.eval()
        self.model.requires_grad_(False)  # predict: gradients flow to the edge vectors only
        self.cutoff = float(self.model.cutoff)
        self.species = tuple(int(z) for z in self.model.species)
        self._z_of_species = np.asarray(self.species, dtype=np.int64)
        self.timings = {"calls": 0, "compute_s": 0.0, "model_s": 0.0, "edges": 0}
        INSTANCES.add(self)
        if os.environ.get("ASE_MLCALC_DEBUG"):
            import numba

            print(f"mlcalc bridge: pid {os.getpid()} python {sys.executable} torch threads {torch.get_num_threads()} "
                  f"numba threads {numba.get_num_threads()} {self!r}", file=sys.stderr, flush=True)

    def set_type_map(self, names):
        """Species index (into ``self.species``) of each LAMMPS atom type, -1 for ``NULL``.

        Parameters
        ----------
        names : sequence of str, one element symbol (or "NULL") per atom type, type 1 first

        Returns
        -------
        list of int, one per type

        Raises
        ------
        ValueError : a name that is no element symbol;
        ase_mlcalc.UnknownElementError : an element the model does not know (names it and the model's species)
        """
        from ase.data import atomic_numbers

        out = []
        for t, name in enumerate(names, start=1):
            if name == "NULL":
                out.append(-1)
                continue
            if name not in atomic_numbers or name == "X":
                raise ValueError(f"atom type {t}: {name!r} is not an element symbol")
            out.append(int(species_index([atomic_numbers[name]], self.species)[0]))
        return out

    def compute(self, n_centers, n_atoms, species_ptr, n_edges, centers_ptr, neighbors_ptr, r_ptr, g_ptr, eatom_ptr):
        """Energy (eV) of the rank's centre atoms; writes ``g = dE/dr_ij`` and, if asked, the centres' energies.

        Parameters (addresses of the plugin's buffers, valid during the call)
        ----------
        n_centers, n_atoms, n_edges : int
        species_ptr : (n_atoms,) int64 species indices
        centers_ptr, neighbors_ptr : (n_edges,) int64 graph indices
        r_ptr : (n_edges, 3) float64 edge vectors, Å (read)
        g_ptr : (n_edges, 3) float64, written: dE/dr_ij, eV/Å
        eatom_ptr : 0, or (n_centers,) float64 written: atomic energies, eV

        Returns
        -------
        float, eV
        """
        t0 = time.perf_counter()
        sidx = _view(species_ptr, n_atoms, np.int64)
        centers = _view(centers_ptr, n_edges, np.int64)
        neighbors = _view(neighbors_ptr, n_edges, np.int64)
        r = torch.from_numpy(_view(r_ptr, 3 * n_edges, np.float64).reshape(n_edges, 3)).requires_grad_(True)
        graph = make_graph(sidx, self._z_of_species[sidx], centers, neighbors, r, n_centers)
        t1 = time.perf_counter()
        energies = self.model(graph)  # (n_centers,)
        energy = energies.sum()
        g = edge_gradients(graph, energy)
        t2 = time.perf_counter()
        if n_edges:
            _view(g_ptr, 3 * n_edges, np.float64).reshape(n_edges, 3)[:] = g.detach().numpy()
        if eatom_ptr:
            _view(eatom_ptr, n_centers, np.float64)[:] = energies.detach().numpy()
        t = self.timings
        t["calls"] += 1
        t["edges"] = n_edges
        t["model_s"] += t2 - t1
        t["compute_s"] += time.perf_counter() - t0
        return float(energy.detach())

    def __repr__(self):
        return (f"MLCalcLammps({self.path!r}, family={self.model.family}, species={list(symbols(self.species))}, "
                f"cutoff={self.cutoff})")
