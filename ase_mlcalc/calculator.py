"""The one ASE calculator: it runs any ase_mlcalc model.

Energy, forces and stress come from one autograd pass through the model with
respect to the edge vectors (see :mod:`ase_mlcalc.graph`). What a family may
add (e.g. the GP's uncertainties) the model declares in ``model.outputs``;
they are computed only when asked for, the ASE way
(``calc.get_property("energy_uncertainty", atoms)``), or at every call when a
model option says so (``uncertainty=True`` for a GAP).
"""

from __future__ import annotations

import os

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes, equal
from ase.stress import full_3x3_to_voigt_6_stress

from .graph import build_graph, forces_and_virial
from .neighbors import NeighborListCache

#: torch dtypes by the names that calc.parameters stores (JSON-able, as ASE's trajectories need)
DTYPES = {"float64": torch.float64, "float32": torch.float32}


def resolve_device(device):
    """torch.device from "cpu"/"cuda"/None; a clear error if CUDA is asked for but absent."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' requested but torch finds no CUDA GPU")
    return device


def dtype_name(dtype):
    """"float64" or "float32" from a torch dtype or its name; ValueError otherwise."""
    for name, dt in DTYPES.items():
        if dtype in (dt, name):
            return name
    raise ValueError(f"dtype must be torch.float64 or torch.float32, got {dtype!r}")


class MLCalculator(Calculator):
    """ASE calculator around an :class:`~ase_mlcalc.models.AtomisticModel`.

    Parameters
    ----------
    model : AtomisticModel, or the path of a model file (read with :func:`ase_mlcalc.load_model`).
        The calculator owns it: it moves it to ``device`` and ``dtype``, puts it
        in eval mode and freezes its parameters (``requires_grad_(False)``) --
        call ``model.requires_grad_(True)`` to train it further.
    device : "cpu" (default), "cuda", or None for CUDA when available
    dtype : torch.float64 (default; NVE energy conservation needs it) or
        torch.float32 where the family supports it (``model.dtypes``); results
        are always float64 numpy arrays
    skin : float, Å; Verlet skin of the neighbor-list cache (0 rebuilds every call)
    min_distance : float, Å; atoms closer than this raise InvalidStructureError
    **options : the model's own options (``model.options``, e.g. ``uncertainty`` for a GAP)
    atoms, directory, label : as for every ASE calculator

    ``calc.parameters`` holds what rebuilds the calculator (JSON-able: the
    model file it came from or was last saved to, device, dtype name, skin,
    min_distance, options), so ``MLCalculator(**calc.todict())`` gives the same
    calculator; :meth:`set` applies a change and resets the results, or raises.

    Results
    -------
    energy, free_energy : float, eV
    energies : (n_atoms,) eV
    forces : (n_atoms, 3) eV/Å
    stress : (6,) eV/Å³, Voigt order xx, yy, zz, yz, xz, xy (3D-periodic cells only)
    stresses : (n_atoms, 6) eV/Å³, per-atom virials divided by the cell volume
        (they sum to ``stress``; 3D-periodic cells only)
    plus the model's ``outputs`` when asked for (e.g. ``energy_uncertainty``).

    Raises
    ------
    TypeError
        An unknown keyword argument.
    ValueError
        A dtype the model does not support, a negative skin or min_distance;
        UnknownElementError, InvalidStructureError (ValueError subclasses) from a calculation.
    FloatingPointError
        The model returned a non-finite energy or forces.
    """

    base_properties = ["energy", "free_energy", "energies", "forces", "stress", "stresses"]
    implemented_properties = list(base_properties)
    #: calculator parameters and their defaults (the model's options come on top)
    calculator_defaults = {"device": "cpu", "dtype": "float64", "skin": 0.5, "min_distance": 1e-2}
    #: whether ``parameters["model"]`` names the model file (False where keywords rebuild the model, as for LJ)
    stores_model_path = True

    def __init__(self, model, device="cpu", dtype=torch.float64, skin=0.5, min_distance=1e-2, *, atoms=None,
                 directory=".", label=None, **options):
        Calculator.__init__(self, atoms=None, directory=directory, label=label)
        self.model = None
        self._set_model(model)
        self._check_keywords(options)
        params = {"device": device, "dtype": dtype, "skin": skin, "min_distance": min_distance}
        params.update({k: v[0] for k, v in self.model.options.items()})
        params.update(options)
        self._apply(params)
        if atoms is not None:
            atoms.calc = self

    # -- parameters --------------------------------------------------------------------------------

    def _known_keywords(self):
        return set(self.calculator_defaults) | {"model"} | set(self.model.options)

    def _check_keywords(self, kwargs):
        unknown = sorted(set(kwargs) - self._known_keywords())
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected keyword argument(s) {', '.join(unknown)} "
                            f"(known: {', '.join(sorted(self._known_keywords()))})")

    def _set_model(self, model):
        from .io import load_model

        if isinstance(model, (str, os.PathLike)):
            path, model = os.fspath(model), load_model(model)
            if self.stores_model_path:
                self.parameters["model"] = path
        elif not isinstance(model, torch.nn.Module) or not hasattr(model, "atomic_energies"):
            raise TypeError(f"model must be an ase_mlcalc model or a model file path, got {type(model).__name__}")
        else:
            self.parameters.pop("model", None)
        self.check_model(model)
        self.model = model
        self.implemented_properties = self.base_properties + list(model.outputs)

    def check_model(self, model):
        """Hook for the family constructors (GAP, BPNN, ...) to refuse a model of another family."""

    def set(self, **kwargs):
        """Change parameters; a change is applied at once and resets the results (ASE's protocol).

        Raises TypeError for an unknown parameter and ValueError for an invalid value
        (the calculator is then left unchanged).
        """
        if not kwargs:
            return {}
        self._check_keywords(kwargs)
        changed = {k: v for k, v in kwargs.items()
                   if k not in self.parameters or not equal(self.parameters[k], v)}
        if changed:
            self._apply(changed)
            self.reset()
        return changed

    def _apply(self, changed):
        """Validate and apply changed parameters (all of them, or none: validation comes first)."""
        changed = dict(changed)
        if "model" in changed:
            self._set_model(changed.pop("model"))
            changed.setdefault("device", self.parameters["device"])
            changed.setdefault("dtype", self.parameters["dtype"])
        p = {**self.parameters, **changed}
        device = resolve_device(p["device"])
        dtype = dtype_name(p["dtype"])
        if DTYPES[dtype] not in self.model.dtypes:
            raise ValueError(f"a {self.model.family} model does not compute correctly in {dtype} "
                             f"(supported: {', '.join(dtype_name(d) for d in self.model.dtypes)})")
        skin, min_distance = float(p["skin"]), float(p["min_distance"])
        if not (np.isfinite(skin) and skin >= 0):
            raise ValueError(f"skin must be >= 0 Å, got {p['skin']}")
        if not (np.isfinite(min_distance) and min_distance >= 0):
            raise ValueError(f"min_distance must be >= 0 Å, got {p['min_distance']}")
        for name in self.model.options:
            if name in changed and not isinstance(changed[name], (bool, np.bool_)):
                raise ValueError(f"option {name} must be True or False, got {changed[name]!r}")
        changed.update(device=str(device), dtype=dtype, skin=skin, min_distance=min_distance)
        self.parameters.update(changed)
        self.device, self.dtype = device, DTYPES[dtype]
        self.model = self.model.to(device=device, dtype=self.dtype)
        self.model.eval()
        # A calculator predicts; gradients flow to positions only. (Models
        # may use faster inference kernels when parameters need no grad.)
        self.model.requires_grad_(False)
        self._every_call = tuple(self.model.outputs_for_options(
            {k: self.parameters[k] for k in self.model.options}))
        self._nl = NeighborListCache(self.model.cutoff, skin, bothways=self.model.full_list)

    @property
    def skin(self):
        return self.parameters["skin"]

    @property
    def min_distance(self):
        return self.parameters["min_distance"]

    def reset(self):
        super().reset()
        if getattr(self, "model", None) is not None:
            self._nl = NeighborListCache(self.model.cutoff, self.parameters["skin"], bothways=self.model.full_list)

    def save(self, path, metadata=None, format=None):
        """Write the model to one versioned file (:func:`ase_mlcalc.load` reads it back);
        ``calc.parameters["model"]`` then names that file. ``format="quip"`` (or a path ending
        in .xml) writes a GAP as a QUIP/GAP XML potential instead (see :func:`ase_mlcalc.save_model`)."""
        from .io import model_format, save_model

        save_model(self.model, path, metadata, format=format)
        if self.stores_model_path and model_format(path, format) == "ase_mlcalc":
            self.parameters["model"] = os.fspath(path)

    # -- calculation -------------------------------------------------------------------------------

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        model = self.model
        graph = build_graph(atoms, model.cutoff, model.species, self.device, self.dtype, cache=self._nl,
                            min_distance=self.parameters["min_distance"], reuse_buffers=True)
        wanted = tuple(dict.fromkeys(self._every_call + tuple(p for p in properties if p in model.outputs)))
        energies, extra = model.energies_and_outputs(graph, wanted)
        energy = energies.sum()
        periodic = bool(atoms.pbc.all())
        want_stresses = "stresses" in properties and periodic
        forces, virial, atom_virial = forces_and_virial(graph, energy, per_atom_virial=want_stresses)
        if not torch.isfinite(energy) or not torch.isfinite(forces).all():
            raise FloatingPointError("the model returned a non-finite energy or forces for this structure")
        e = float(energy.detach().cpu())
        self.results["energy"] = e
        self.results["free_energy"] = e
        self.results["energies"] = _numpy(energies)
        self.results["forces"] = _numpy(forces)
        if periodic:
            volume = atoms.get_volume()
            self.results["stress"] = full_3x3_to_voigt_6_stress(-_numpy(virial[0]) / volume)
            if want_stresses:
                self.results["stresses"] = full_3x3_to_voigt_6_stress(-_numpy(atom_virial) / volume)
        self.results.update(extra)


def _numpy(t):
    return t.detach().to("cpu", torch.float64).numpy()

