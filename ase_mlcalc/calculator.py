"""The ASE calculator that runs any ase_mlcalc model.

Energy, forces and stress come from one autograd pass through the model with
respect to the edge vectors (see :mod:`ase_mlcalc.graph`).
"""

from __future__ import annotations

import torch
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from .graph import build_graph, forces_and_virial
from .neighbors import NeighborListCache


def resolve_device(device):
    """torch.device from "cpu"/"cuda"/None; a clear error if CUDA is asked for but absent."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' requested but torch finds no CUDA GPU")
    return device


class MLCalculator(Calculator):
    """ASE calculator around an :class:`~ase_mlcalc.models.AtomisticModel`.

    Parameters
    ----------
    model : AtomisticModel; the calculator moves it to ``device``, puts it in
        eval mode and freezes its parameters (``requires_grad_(False)``) --
        call ``model.requires_grad_(True)`` to train it further
    device : "cpu" (default), "cuda", or None for CUDA when available
    dtype : torch dtype of the computation, float64 by default (NVE energy
        conservation needs it); results are always float64 numpy arrays
    skin : float, Å; Verlet skin of the neighbor-list cache (0 rebuilds every call)
    min_distance : float, Å; atoms closer than this raise InvalidStructureError

    Results
    -------
    energy, free_energy : float, eV
    energies : (n_atoms,) eV
    forces : (n_atoms, 3) eV/Å
    stress : (6,) eV/Å³, Voigt order xx, yy, zz, yz, xz, xy (3D-periodic cells only)
    stresses : (n_atoms, 6) eV/Å³, per-atom virials divided by the cell volume
        (they sum to ``stress``; 3D-periodic cells only)
    plus model-specific results (e.g. uncertainties) documented by the family.

    Raises
    ------
    UnknownElementError, InvalidStructureError (both ValueError)
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress", "stresses"]

    def __init__(self, model, device="cpu", dtype=torch.float64, skin=0.5, min_distance=1e-2, **kwargs):
        super().__init__(**kwargs)
        self.device = resolve_device(device)
        self.dtype = dtype
        self.model = model.to(device=self.device)
        self.model.eval()
        # A calculator predicts; gradients flow to positions only. (Models
        # may use faster inference kernels when parameters need no grad.)
        self.model.requires_grad_(False)
        self.skin = float(skin)
        self.min_distance = min_distance
        self._nl = self._new_cache()

    def _new_cache(self):
        return NeighborListCache(self.model.cutoff, self.skin, bothways=self.model.full_list)

    def reset(self):
        super().reset()
        if hasattr(self, "_nl"):
            self._nl = self._new_cache()

    def save(self, path, metadata=None):
        """Write the model to one versioned file; :func:`ase_mlcalc.load` reads it back."""
        from .io import save_model

        save_model(self.model, path, metadata)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        graph = build_graph(atoms, self.model.cutoff, self.model.species, self.device, self.dtype,
                            cache=self._nl, min_distance=self.min_distance)
        energies = self.model(graph)
        energy = energies.sum()
        want_stresses = "stresses" in properties and atoms.pbc.all()
        forces, virial, atom_virial = forces_and_virial(graph, energy, per_atom_virial=want_stresses)
        if not torch.isfinite(energy) or not torch.isfinite(forces).all():
            raise FloatingPointError("the model returned a non-finite energy or forces for this structure")
        to_np = lambda t: t.detach().to("cpu", torch.float64).numpy()  # noqa: E731
        e = float(energy.detach().cpu())
        self.results["energy"] = e
        self.results["free_energy"] = e
        self.results["energies"] = to_np(energies)
        self.results["forces"] = to_np(forces)
        if atoms.pbc.all():
            volume = atoms.get_volume()
            self.results["stress"] = full_3x3_to_voigt_6_stress(-to_np(virial[0]) / volume)
            if want_stresses:
                self.results["stresses"] = full_3x3_to_voigt_6_stress(-to_np(atom_virial) / volume)
        self.results.update(self.extra_results(graph, energies))

    def extra_results(self, graph, energies):
        """Model-specific results (e.g. uncertainties) for this call; the model's by default."""
        return self.model.extra_results(graph, energies)
