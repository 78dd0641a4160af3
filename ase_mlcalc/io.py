"""Model files: one versioned, checksummed file per model, any family; and the loader for every format.

:func:`load` / :func:`load_model` also read the potentials users already own:
a QUIP/GAP XML file (``*.xml``, :mod:`ase_mlcalc.interop.quip`) and an
n2p2/RuNNer directory holding ``input.nn`` (:mod:`ase_mlcalc.interop.n2p2`);
:func:`save_model` writes our GAP as QUIP XML with ``format="quip"``.

File layout (a ``torch.save`` dict, read back with ``weights_only=True`` so a
model file cannot run code): ``format`` ("ase_mlcalc-model"), ``version``
(int), ``family``, ``species`` (atomic numbers), ``units``
({"energy": "eV", "length": "Å"}), ``hyperparameters`` (dict), ``state_dict``
(tensors), free-form ``metadata``, and ``sha256``: a checksum of all of these
(tensor bytes included), verified on load, so a corrupted file is refused
instead of predicting nonsense.

Version 1 files (ase_mlcalc 0.1, no checksum) are still read.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile

import torch

from .errors import ModelFileError
from .models.base import families, get_family

FORMAT = "ase_mlcalc-model"
VERSION = 2
READABLE_VERSIONS = (1, 2)
UNITS = {"energy": "eV", "length": "Å"}
#: buffers a file may predate: they keep their default value (1: an uncalibrated uncertainty)
DEFAULT_BUFFERS = ("uncertainty_scale",)


def _checksum(payload):
    """sha256 (hex) of a payload's entries other than the checksum itself, tensor bytes included."""
    h = hashlib.sha256()
    head = {k: v for k, v in payload.items() if k not in ("state_dict", "sha256")}
    h.update(json.dumps(head, sort_keys=True, default=repr).encode())
    for key in sorted(payload["state_dict"]):
        t = payload["state_dict"][key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def model_format(path, format=None):
    """The format of a model path: "ase_mlcalc" (our files), "quip" (``*.xml``) or "n2p2" (a directory)."""
    if format is not None:
        if format not in FORMATS:
            raise ValueError(f"unknown model format {format!r} (known: {', '.join(FORMATS)})")
        return format
    path = os.fspath(path)
    if os.path.isdir(path):
        return "n2p2"
    return "quip" if path.lower().endswith(".xml") else "ase_mlcalc"


#: model formats and the options their readers take (passed through load(..., format_options))
FORMATS = {"ase_mlcalc": (), "quip": (), "n2p2": ("length_unit", "energy_unit")}


def save_model(model, path, metadata=None, format=None):
    """Write ``model`` (an AtomisticModel) to ``path``, with ``metadata`` (default: ``model.metadata``,
    e.g. the provenance an imported potential keeps).

    ``format`` "ase_mlcalc" (default; "quip" for a path ending in .xml) writes our versioned file: to a
    temporary file first, then renamed, so an interrupted save never leaves a truncated model behind.
    "quip" writes a GAP as a QUIP/GAP XML potential that quippy and LAMMPS's ``pair_style quip`` read
    (:func:`ase_mlcalc.interop.quip.write_quip_xml`).
    """
    fmt = model_format(path, format)
    if fmt == "quip":
        from .interop.quip import write_quip_xml

        return write_quip_xml(model, path)
    if fmt != "ase_mlcalc":
        raise ValueError(f"ase_mlcalc cannot write {fmt} models")
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "family": model.family,
        "species": list(model.species),
        "units": dict(UNITS),
        "hyperparameters": model.hyperparameters(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "metadata": dict(getattr(model, "metadata", {}) if metadata is None else metadata),
    }
    payload["sha256"] = _checksum(payload)
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
        Not an ase_mlcalc model file, corrupt (checksum), of an unsupported
        version, or in other units than eV and Å.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no model file at {path}")
    if os.path.isdir(path):
        raise ModelFileError(f"{path} is a directory, not an ase_mlcalc model file")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive
        raise ModelFileError(f"{path} is not a readable ase_mlcalc model file (not the zip archive torch.save "
                             "writes: another format, or truncated?)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for damaged archives
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ModelFileError(f"{path} is not a readable ase_mlcalc model file (corrupt or truncated?): "
                             f"{type(err).__name__}: {first}") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not an ase_mlcalc model file")
    version = payload.get("version")
    if version not in READABLE_VERSIONS:
        raise ModelFileError(f"{path} has model format version {version}; this ase_mlcalc reads versions "
                             f"{', '.join(map(str, READABLE_VERSIONS))}")
    for key in ("family", "hyperparameters", "state_dict"):
        if key not in payload:
            raise ModelFileError(f"{path} lacks the {key!r} entry: corrupt model file")
    if not isinstance(payload["state_dict"], dict) or not all(
            isinstance(v, torch.Tensor) for v in payload["state_dict"].values()):
        raise ModelFileError(f"{path}: corrupt model file (its state dict holds something other than tensors)")
    if version >= 2:
        if payload.get("sha256") != _checksum(payload):
            raise ModelFileError(f"{path}: checksum mismatch, the file is corrupt (its contents changed after it "
                                 "was written)")
    units = payload.get("units", UNITS)
    if units != UNITS:
        raise ModelFileError(f"{path} stores its model in units {units}; ase_mlcalc models are in eV and Å")
    if version == 1:
        _upgrade_v1(payload)
    return payload


def _upgrade_v1(payload):
    """Version-1 GAP files hold one SOAP term's sparse set at the top level of the state dict;
    version-1 BPNNs have no isolated-atom baseline."""
    if payload["family"] == "bpnn":
        payload["hyperparameters"].setdefault("isolated_atom_e0", False)
    if payload["family"] == "gap":
        sd = payload["state_dict"]
        for key in ("sparse_points", "sparse_species"):
            if key in sd:
                sd[f"terms.0.{key}"] = sd.pop(key)


def load_model(path, format=None, **format_options):
    """Rebuild the AtomisticModel stored in ``path`` (on the CPU, float64): an ase_mlcalc model file,
    a QUIP/GAP XML potential (``*.xml``) or an n2p2 directory (``format_options``: ``length_unit``,
    ``energy_unit`` of its files, Bohr and Hartree by default).

    Raises
    ------
    FileNotFoundError, ModelFileError
    """
    fmt = model_format(path, format)
    unknown = sorted(set(format_options) - set(FORMATS[fmt]))
    if unknown:
        raise TypeError(f"options {', '.join(unknown)} do not apply to {fmt} model files")
    if not os.path.exists(os.fspath(path)):
        raise FileNotFoundError(f"no model file at {os.fspath(path)}")
    if fmt == "quip":
        from .interop.quip import read_quip_xml

        return read_quip_xml(path)
    if fmt == "n2p2":
        from .interop.n2p2 import read_n2p2

        return read_n2p2(path, **format_options)
    payload = read_model_file(path)
    try:
        model_cls, _ = get_family(payload["family"])
    except KeyError:
        raise ModelFileError(
            f"{path} holds a model of unknown family {payload['family']!r} (known: {families()})") from None
    try:
        model = model_cls.from_hyperparameters(payload["hyperparameters"])
        state = dict(payload["state_dict"])
        for key, value in model.state_dict().items():  # buffers added since the file was written
            if key not in state and key.split(".")[-1] in DEFAULT_BUFFERS:
                state[key] = value
        model.load_state_dict(state)
    except (TypeError, KeyError, RuntimeError, ValueError) as err:
        raise ModelFileError(f"{path}: stored parameters do not fit a {payload['family']} model: {err}") from err
    if list(model.species) != list(payload.get("species", model.species)):
        raise ModelFileError(f"{path}: species list does not match the hyper-parameters")
    model.metadata = payload.get("metadata", {})
    return model


def load(path, device="cpu", format=None, format_options=None, **calculator_kwargs):
    """A ready ASE calculator for any saved ase_mlcalc model file, QUIP/GAP XML potential or n2p2 directory.

    Parameters
    ----------
    path : str or PathLike
    device : "cpu" or "cuda"
    format : None (from the path, see :func:`model_format`), "ase_mlcalc", "quip" or "n2p2"
    format_options : dict of reader options (n2p2: ``length_unit``, ``energy_unit``)
    **calculator_kwargs : calculator parameters and model options (e.g. ``skin``, ``uncertainty``)

    Raises
    ------
    FileNotFoundError, ModelFileError; TypeError for an unknown keyword
    """
    model = load_model(path, format=format, **(format_options or {}))
    _, calc_cls = get_family(model.family)
    calc = calc_cls(model=model, device=device, **calculator_kwargs)
    if calc.stores_model_path and model_format(path, format) == "ase_mlcalc":
        calc.parameters["model"] = os.fspath(path)
    return calc
