"""Save and load trained models: one versioned file per model, any family.

File layout (a ``torch.save`` dict, read back with ``weights_only=True`` so a
model file cannot run code): ``format`` ("ase_mlcalc-model"), ``version``
(int), ``family``, ``species`` (atomic numbers), ``units``
({"energy": "eV", "length": "Å"}), ``hyperparameters`` (dict), ``state_dict``
(tensors) and free-form ``metadata``.
"""

from __future__ import annotations

import os
import pickle
import zipfile

import torch

from .errors import ModelFileError
from .models.base import families, get_family

FORMAT = "ase_mlcalc-model"
VERSION = 1


def save_model(model, path, metadata=None):
    """Write ``model`` (an AtomisticModel) to ``path``.

    The write goes to a temporary file first, then is renamed, so an
    interrupted save never leaves a truncated model behind.
    """
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "family": model.family,
        "species": list(model.species),
        "units": {"energy": "eV", "length": "Å"},
        "hyperparameters": model.hyperparameters(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metadata": dict(metadata or {}),
    }
    path = os.fspath(path)
    tmp = path + ".tmp"
    torch.save(payload, tmp)
    os.replace(tmp, path)


def read_model_file(path):
    """The raw payload dict of a model file, validated.

    Raises
    ------
    FileNotFoundError
    ModelFileError
        Not an ase_mlcalc model file, corrupt, or of an unsupported version.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no model file at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, OSError) as err:
        raise ModelFileError(f"{path} is not a readable ase_mlcalc model file (corrupt or truncated?): {err}") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not an ase_mlcalc model file")
    version = payload.get("version")
    if version != VERSION:
        raise ModelFileError(f"{path} has model format version {version}; this ase_mlcalc reads version {VERSION}")
    for key in ("family", "hyperparameters", "state_dict"):
        if key not in payload:
            raise ModelFileError(f"{path} lacks the {key!r} entry: corrupt model file")
    return payload


def load_model(path):
    """Rebuild the AtomisticModel stored in ``path`` (on the CPU, float64)."""
    payload = read_model_file(path)
    try:
        model_cls, _ = get_family(payload["family"])
    except KeyError:
        raise ModelFileError(
            f"{path} holds a model of unknown family {payload['family']!r} (known: {families()})") from None
    try:
        model = model_cls.from_hyperparameters(payload["hyperparameters"])
        model.load_state_dict(payload["state_dict"])
    except (TypeError, KeyError, RuntimeError, ValueError) as err:
        raise ModelFileError(f"{path}: stored parameters do not fit a {payload['family']} model: {err}") from err
    if list(model.species) != list(payload.get("species", model.species)):
        raise ModelFileError(f"{path}: species list does not match the hyper-parameters")
    model.metadata = payload.get("metadata", {})
    return model


def load(path, device="cpu", **calculator_kwargs):
    """A ready ASE calculator for any saved ase_mlcalc model file.

    Parameters
    ----------
    path : str or PathLike
    device : "cpu" or "cuda"
    **calculator_kwargs : passed to the family's calculator (e.g. ``skin``)

    Raises
    ------
    FileNotFoundError, ModelFileError
    """
    model = load_model(path)
    _, calc_cls = get_family(model.family)
    return calc_cls(model=model, device=device, **calculator_kwargs)
