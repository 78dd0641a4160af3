"""QUIP/GAP XML potentials (gap_fit's ``gap_file``) read into and written from our GAP family.

:func:`read_quip_xml` turns a gap_fit XML file into a
:class:`~ase_mlcalc.models.sparse_gp.SparseGPModel` (``ase_mlcalc.load("gap.xml")``
goes through it); :func:`write_quip_xml` writes a SparseGPModel as a file that
quippy's ``Potential(param_filename=...)`` (and LAMMPS's ``pair_style quip``)
load and evaluate to the same numbers (``calc.save("gap.xml")``).

What a file holds and what it maps to
-------------------------------------
Sources: GAP ``libAtoms/GAP@480fc2d`` (the gap_fit build that writes
``gap_version="1769700636"``) and QUIP ``libAtoms/QUIP@caff154``; ``gp_predict:4224``
means GAP ``gp_predict.F90`` line 4224, ``IPModel_GAP:184`` QUIP
``src/Potentials/IPModel_GAP.f95``, ``descriptors:2486`` GAP ``descriptors.F90``.

* ``<Potential init_args="IP GAP label=L">`` then ``<GAP_params label=L gap_version=V>``
  with ``<GAP_data>`` (``<e0 Z value>``, eV, one per element: our ``e0`` per species;
  IPModel_GAP:576-589, 668-700) and ``<gpSparse>``: one ``<gpCoordinates>`` per
  descriptor after gap_fit's ``add_species`` expansion, found by the label
  ``L + str(k)`` (gp_predict:4405, 4562-4582), their energies summed.
* ``<gpCoordinates>``: ``signal_variance`` is delta (not delta^2; gp_predict:4224,
  3766), ``signal_mean`` f0, ``covariance_type`` 2 = dot_product (``zeta``
  attribute) or 1 = ard_se (``<theta>``), ``<descriptor>`` the descriptor string,
  ``<sparseX i alpha sparseCutoff>`` the sparse points, inline (``sliced="T"``
  with ``<sparseX_slice>`` children when d > 50) or in the text file
  ``sparseX_filename`` next to the XML (one ``%.20e`` per line, point after point,
  ``sparseX_md5sum`` its md5; QUIP cutil.c:153-213, gp_predict:4138-4146, 4716-4741).
* ``soap`` + dot_product -> a :class:`~ase_mlcalc.models.sparse_gp.SoapTerm`:
  QUIP's vector is ``q = [p / |p|, covariance_sigma0]`` (descriptors:8655-8663), so
  ``delta^2 (q . x_m)^zeta = delta^2 (p . x_m[:-1] + sigma0^2)^zeta`` when the
  sparse point's trailing entry is sigma0 (as every gap_fit sparse point's is).
  A coordinate with ``Z=z`` is the centre species of its sparse points; ``Z=0``
  (every atom a centre) gives each point once per species. The SOAP channel order
  is ``species_Z`` (gap_fit: first appearance in the training file,
  gap_fit_module:1924-1945): it becomes the model's species order.
  ``central_reference_all_species`` is QUIP's: F by default, T when not given and
  n_species = 1 (descriptors:2595), forced T for gap_version < 1426512068 (2555).
* ``distance_2b`` + ard_se -> a :class:`~ase_mlcalc.models.sparse_gp.PairTerm`:
  per ordered pair ``e = f_c(r) sum_m alpha_m sc_m [delta^2 exp(-(r - r_m)^2 / 2 theta^2) + f0^2]``,
  half to each atom, both orders counted (descriptors:4820-4988, IPModel_GAP:454-459),
  which is our pair term's ``sum_j e(r_ij)`` per atom; the file's per-point
  ``sparseCutoff`` (sc_m = f_c(r_m)) is kept as the term's ``sparse_cutoff`` buffer;
  ``Z1``/``Z2`` give the species-pair label (:func:`~ase_mlcalc.models.sparse_gp.pair_index`),
  0 (any element) one copy per matching pair.
* Consecutive coordinates of one kind with the same hyper-parameters (gap_fit's
  add_species copies, or our own per-species coordinates) become one term.

Neither format holds the other's everything: our GP variance factors
(``kmm_factor``, ``posterior_factor``) have no place in the XML, so an imported model
has no uncertainty outputs and an export drops them; what a file uses that we do not
implement is refused by :class:`UnsupportedQuipFeature` naming it (see
:func:`read_quip_xml`). Behaviours that differ: an element outside the model's species
raises :class:`~ase_mlcalc.UnknownElementError` (QUIP gives it e0 and skips it as a SOAP
neighbour).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import xml.etree.ElementTree as ET

import numpy as np
import torch
from ase.data import chemical_symbols

from ..errors import ModelFileError
from ..models.sparse_gp import PairTerm, SoapTerm, SparseGPModel, pair_index
from .gap_strings import parse_args, to_bool

__all__ = ["GAP_VERSION_WRITTEN", "UnsupportedQuipFeature", "read_quip_xml", "write_quip_xml"]

COVARIANCE_ARD_SE = 1
COVARIANCE_DOT_PRODUCT = 2
#: gp_predict:141-145
COVARIANCE_NAMES = {0: "none", 1: "ard_se", 2: "dot_product", 3: "bond_real_space", 4: "pp"}
#: QUIP's SOAP changed at these gap_version values (descriptors:8005, 8042; 2555)
XML_VERSION_2L1 = 1423143769          # from here on the power spectrum has the 1/sqrt(2l+1) factor
XML_VERSION_CENTRAL_REF = 1426512068  # before it central_reference_all_species is forced to T
#: gap_version written for our own models: the oldest with today's SOAP semantics (quippy refuses files
#: newer than itself, so the oldest compatible value loads in the most builds)
GAP_VERSION_WRITTEN = XML_VERSION_CENTRAL_REF
TOTAL_ELEMENTS = 118  # QUIP's total_elements: e0 is written for Z = 1..118 (gap_fit_module:1618-1623)
#: FoX (QUIP's XML parser) fails on lines of numbers longer than about 1000 characters ("string_to_real1d:
#: could not convert"; 1000 loads, 1020 fails; strings such as a 1900-character descriptor line load):
#: lists of numbers are wrapped at this length, as gap_fit's FoX writer wraps its own
MAX_LINE = 500
#: inline sparse points of more than this many dimensions are sliced (gp_predict:4277-4302)
SLICE = 50

#: descriptor type names QUIP knows (descriptors:671-801, get_descriptor_type)
DESCRIPTOR_TYPES = frozenset("""bispectrum_so4 bispectrum_so3 behler distance_2b coordination angle_3b co_angle_3b
    co_distance_2b cosnx trihis water_monomer water_dimer A2_dimer AB_dimer bond_real_space atom_real_space
    power_so3 power_so4 soap AN_monomer general_monomer general_dimer general_trimer water_trimer rdf
    as_distance_2b molecule_lo_d alex com_dimer distance_Nb soap_express soap_turbo""".split())

#: descriptor options: name -> (QUIP's default, handling). "ours": mapped onto the term; "require": only
#: QUIP's default is implemented; "ignored": means nothing unless an option we refuse is on.
#: soap: descriptors:2486-2784 (soap_initialise); distance_2b: descriptors:1767-1828.
SOAP_OPTIONS = {
    "cutoff": (None, "ours"), "cutoff_transition_width": ("0.5", "ours"), "l_max": (None, "ours"),
    "n_max": (None, "ours"), "atom_sigma": (None, "ours"), "atom_gaussian_width": (None, "ours"),
    "central_weight": ("1.0", "ours"), "central_reference_all_species": (None, "ours"),
    "covariance_sigma0": ("0.0", "ours"), "n_species": ("1", "ours"), "species_Z": ("0", "ours"),
    "Z": ("0", "ours"), "xml_version": (None, "ours"),
    "normalise": ("T", "require"), "normalize": ("T", "require"),
    "n_Z": ("1", "require"), "average": ("F", "require"), "diagonal_radial": ("F", "require"),
    "cutoff_dexp": ("0", "require"), "basis_error_exponent": ("10.0", "require"),
    "nu_R": ("2", "require"), "nu_S": ("2", "require"), "Z_mix": ("F", "require"), "R_mix": ("F", "require"),
    "sym_mix": ("F", "require"), "coupling": ("T", "require"), "K": ("0", "require"),
    "Z_map": ("", "require"), "radial_basis": ("EQUISPACED_GAUSS", "require"),
    "cutoff_scale": ("1.0", "ignored"), "cutoff_rate": ("1.0", "ignored"), "mix_shift": ("0", "ignored"),
}
DISTANCE_2B_OPTIONS = {
    "cutoff": ("0.0", "ours"), "cutoff_transition_width": ("0.5", "ours"), "Z1": ("0", "ours"),
    "Z2": ("0", "ours"), "xml_version": (None, "ours"),
    "n_exponents": ("1", "require"), "exponents": ("1", "require"), "tail_exponent": ("0", "require"),
    "only_intra": ("F", "require"), "only_inter": ("F", "require"), "resid_name": ("", "require"),
    "tail_range": ("1.0", "ignored"),
}
#: keys of gap_fit's gap= string that stay in the descriptor string and mean nothing to the descriptor
#: (gap_fit_module: gap_fit_parse_gap_str); QUIP ignores unknown keys, we refuse them (a newer QUIP's option
#: must not be dropped silently)
GAP_FIT_KEYS = frozenset({
    "covariance_type", "zeta", "soap_exponent", "delta", "energy_scale", "f0", "n_sparse", "config_type_n_sparse",
    "sparse_method", "theta_uniform", "lengthscale_uniform", "theta_fac", "lengthscale_factor", "theta_file",
    "lengthscale_file", "sparse_file", "mark_sparse_atoms", "add_species", "print_sparse_index",
    "unique_hash_tolerance", "unique_descriptor_tolerance"})
#: IP GAP init options (IPModel_GAP:166-171): label selects, the variance regularisation only changes variances
_IP_GAP_HARMLESS = ("label", "gap_variance_regularisation")


class UnsupportedQuipFeature(ModelFileError):
    """The QUIP/GAP file uses (or a model to write needs) a feature ase_mlcalc does not implement;
    the message names it."""


# ----------------------------------------------------------------------------- small helpers

def _fmt(x):
    """Shortest decimal that reads back to the same double (QUIP's Fortran read is correctly rounded)."""
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"cannot write the non-finite number {x} to a QUIP/GAP XML file")
    return repr(x)


def _bool(b):
    return "T" if b else "F"


def _numbers(text, what):
    try:
        return np.array((text or "").split(), dtype=np.float64)
    except ValueError as err:
        raise ModelFileError(f"{what}: not a list of numbers ({err})") from None


def _md5(path):
    with open(path, "rb") as f:
        return hashlib.md5(f.read()).hexdigest()


def _same_value(value, default):
    value = value.strip()
    if value == default:
        return True
    try:
        return to_bool(value) == to_bool(default)
    except ValueError:
        pass
    try:
        return [float(x) for x in value.split()] == [float(x) for x in default.split()]
    except ValueError:
        return value.upper() == default.upper()


def _symbol(z):
    return chemical_symbols[z] if 0 < z < len(chemical_symbols) else f"Z={z}"


# ----------------------------------------------------------------------------- reading: the file

class _Coordinate:
    """One parsed ``<gpCoordinates>``: kind, typed descriptor options and the arrays (see _read_coordinate)."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def _parse_file(path, label=None):
    """(GAP_params element, its label, gap_version (0 if absent), list of gpCoordinates elements, base dir)."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise ModelFileError(f"{path} is not a readable QUIP/GAP XML file: {err}") from None
    pots = [root] if root.tag == "Potential" else root.findall(".//Potential")
    gap_label = label
    for pot in pots:
        init = pot.get("init_args", "")
        try:
            args, bare = parse_args(init)
        except ValueError as err:
            raise ModelFileError(f"{path}: <Potential init_args={init!r}> does not parse: {err}") from None
        if bare != ["IP", "GAP"]:
            raise UnsupportedQuipFeature(
                f"{path}: <Potential init_args={init!r}>: only a single 'IP GAP' potential is implemented (a "
                "core/baseline potential, 'Sum' or another IP is not)")
        other = {k: v for k, v in args.items() if k not in _IP_GAP_HARMLESS}
        if "E_scale" in other and _same_value(other["E_scale"], "1.0"):
            del other["E_scale"]
        if other:  # E_scale != 1 scales E, F, virial and e0 (IPModel_GAP:590-596)
            raise UnsupportedQuipFeature(f"{path}: IP GAP option(s) {', '.join(f'{k}={v}' for k, v in other.items())}"
                                         " not implemented")
        gap_label = gap_label or args.get("label")
    params = [root] if root.tag == "GAP_params" else root.findall(".//GAP_params")
    if gap_label is not None:
        params = [p for p in params if p.get("label") == gap_label] or params
    if not params:
        raise ModelFileError(f"{path} holds no <GAP_params>: not a QUIP/GAP potential file")
    if len(params) != 1:
        raise ModelFileError(f"{path}: {len(params)} <GAP_params> and no label chooses one")
    gp = params[0]
    try:
        version = int(gp.get("gap_version", "0"))
    except ValueError:
        raise ModelFileError(f"{path}: gap_version={gp.get('gap_version')!r} is not an integer") from None
    sparse = gp.find("gpSparse")
    if sparse is None:
        found = [c.tag for c in gp if c.tag not in ("GAP_data", "command_line", "XYZ_data")]
        raise UnsupportedQuipFeature(f"{path}: no <gpSparse> in <GAP_params> (found {found}): only sparse GAPs "
                                     "are implemented")
    if not to_bool(sparse.get("fitted", "T")):
        raise UnsupportedQuipFeature(f"{path}: gpSparse fitted=F (gap_fit sparsify_only_no_fit): no weights")
    n = int(sparse.get("n_coordinate", "-1"))
    coords = sparse.findall("gpCoordinates")
    if n != len(coords):
        raise ModelFileError(f"{path}: gpSparse n_coordinate={n} but {len(coords)} <gpCoordinates>")
    by_label = {c.get("label"): c for c in coords}
    slab = sparse.get("label") or ""
    if slab and all(f"{slab}{k}" in by_label for k in range(1, n + 1)):  # quippy's order (gp_predict:4575-4580)
        coords = [by_label[f"{slab}{k}"] for k in range(1, n + 1)]
    return gp, gp.get("label"), version, coords, os.path.dirname(os.path.abspath(path))


def _e0(gp, path):
    data = gp.find("GAP_data")
    if data is None:
        raise ModelFileError(f"{path}: no <GAP_data> in <GAP_params>")
    if to_bool(data.get("do_core", "F")):
        raise UnsupportedQuipFeature(f"{path}: GAP_data do_core=T (a core/baseline potential added to the GAP) "
                                     "is not implemented")
    if to_bool(data.get("do_pca", "F")):
        raise UnsupportedQuipFeature(f"{path}: GAP_data do_pca=T (PCA-transformed descriptors) is not implemented")
    e0 = {}
    if data.get("e0") is not None:  # one value for every element (IPModel_GAP:668-684)
        e0 = {z: float(data.get("e0")) for z in range(1, TOTAL_ELEMENTS + 1)}
    for el in data.findall("e0"):
        e0[int(el.get("Z"))] = float(el.get("value"))
    return e0


def _check_options(kind, table, opts, where):
    for key, value in opts.items():
        if key in GAP_FIT_KEYS:
            continue
        if key not in table:
            raise UnsupportedQuipFeature(f"{where}: {kind} descriptor option {key}={value!r} is not implemented")
        default, how = table[key]
        if how == "require" and not _same_value(value, default):
            raise UnsupportedQuipFeature(f"{where}: {kind} descriptor option {key}={value!r} is not implemented "
                                         f"(only QUIP's default {key}={default})")


def _soap_params(opts, version, where):
    """Typed SOAP options with QUIP's defaults (descriptors:2486-2784)."""
    _check_options("soap", SOAP_OPTIONS, opts, where)
    if version < XML_VERSION_2L1:
        raise UnsupportedQuipFeature(f"{where}: soap of gap_version {version} < {XML_VERSION_2L1} (a power spectrum "
                                     "without the 1/sqrt(2l+1) factor) is not implemented")
    for key in ("cutoff", "n_max", "l_max"):
        if key not in opts:
            raise ModelFileError(f"{where}: soap descriptor without its mandatory {key}")
    sigma = opts.get("atom_sigma", opts.get("atom_gaussian_width"))
    if sigma is None:
        raise ModelFileError(f"{where}: soap descriptor without its mandatory atom_sigma")
    n_species = int(opts.get("n_species", "1"))
    species = [int(x) for x in opts.get("species_Z", "0").replace(",", " ").split()]
    if len(species) != n_species:
        raise ModelFileError(f"{where}: soap n_species={n_species} but species_Z={{{opts.get('species_Z', '')}}}")
    if len(set(species)) != len(species):
        raise ModelFileError(f"{where}: soap species_Z={{{opts['species_Z']}}} lists an element twice")
    if 0 in species and n_species != 1:
        raise UnsupportedQuipFeature(f"{where}: soap species_Z with 0 (any element) among other species "
                                     "is not implemented")
    if "central_reference_all_species" in opts:
        cras = to_bool(opts["central_reference_all_species"])
    else:
        cras = n_species == 1  # QUIP: F, but T when not given and n_species = 1 (descriptors:2595)
    if version < XML_VERSION_CENTRAL_REF:
        cras = True  # QUIP forces it for files older than this (descriptors:2555)
    return dict(cutoff=float(opts["cutoff"]), cutoff_transition_width=float(opts.get("cutoff_transition_width", "0.5")),
                n_max=int(opts["n_max"]), l_max=int(opts["l_max"]), atom_sigma=float(sigma),
                central_weight=float(opts.get("central_weight", "1.0")), central_reference_all_species=cras,
                covariance_sigma0=float(opts.get("covariance_sigma0", "0.0")), species_Z=species,
                Z=int(opts.get("Z", "0")))


def _distance_2b_params(opts, where):
    """Typed distance_2b options with QUIP's defaults (descriptors:1767-1828)."""
    _check_options("distance_2b", DISTANCE_2B_OPTIONS, opts, where)
    return dict(cutoff=float(opts.get("cutoff", "0.0")),
                cutoff_transition_width=float(opts.get("cutoff_transition_width", "0.5")),
                Z1=int(opts.get("Z1", "0")), Z2=int(opts.get("Z2", "0")))


def _descriptor_kind(desc, where):
    """(type name, options) of a descriptor string: the type is the one type key that is true, normally a leading
    bare word (descriptors:671-801)."""
    try:
        opts, bare = parse_args(desc)
    except ValueError as err:
        raise ModelFileError(f"{where}: descriptor string does not parse: {err}") from None
    named = [k for k, v in opts.items() if k in DESCRIPTOR_TYPES and _true(v)]
    kinds = [w for w in bare if w in DESCRIPTOR_TYPES] + named
    for k in named:
        del opts[k]
    if len(kinds) != 1:
        raise ModelFileError(f"{where}: the descriptor string names {len(kinds)} descriptor types {kinds}: {desc!r}")
    extra = [w for w in bare if w not in DESCRIPTOR_TYPES]
    if extra:
        raise UnsupportedQuipFeature(f"{where}: {kinds[0]} descriptor flag(s) {extra} not implemented")
    return kinds[0], opts


def _true(v):
    try:
        return to_bool(v)
    except ValueError:
        return False


def _read_coordinate(c, base, version, path):
    """One <gpCoordinates> (gp_predict:4219-4302 write, 4790-5019 read) -> _Coordinate."""
    lab = c.get("label")
    where = f"{os.path.basename(path)}: gpCoordinates {lab}"
    if not to_bool(c.get("sparsified", "F")):
        raise UnsupportedQuipFeature(f"{where}: sparsified=F (a full GP) is not implemented")
    if int(c.get("n_permutations", "1")) != 1:
        raise UnsupportedQuipFeature(f"{where}: n_permutations={c.get('n_permutations')} (permutation-symmetrised "
                                     "descriptors) is not implemented")
    desc_el = c.find("descriptor")
    desc = " ".join((desc_el.text or "").split()) if desc_el is not None else ""
    kind, opts = _descriptor_kind(desc, where)
    d = int(c.get("dimensions"))
    ctype = int(c.get("covariance_type"))
    if kind == "soap":
        params = _soap_params(opts, version, where)
        if ctype != COVARIANCE_DOT_PRODUCT:
            raise UnsupportedQuipFeature(f"{where}: soap with covariance_type={ctype} "
                                         f"({COVARIANCE_NAMES.get(ctype, '?')}) is not implemented (only dot_product)")
    elif kind == "distance_2b":
        params = _distance_2b_params(opts, where)
        if ctype != COVARIANCE_ARD_SE:
            raise UnsupportedQuipFeature(f"{where}: distance_2b with covariance_type={ctype} "
                                         f"({COVARIANCE_NAMES.get(ctype, '?')}) is not implemented (only ard_se)")
        if d != 1:
            raise UnsupportedQuipFeature(f"{where}: distance_2b with dimensions={d} (several exponents) "
                                         "is not implemented")
    else:
        raise UnsupportedQuipFeature(f"{where}: descriptor {kind!r} is not implemented (only soap and distance_2b)")

    theta_el = c.find("theta")
    zeta = theta = None
    if ctype == COVARIANCE_DOT_PRODUCT:
        if c.get("zeta") is not None:
            zeta = float(c.get("zeta"))
        elif theta_el is not None:  # old files: zeta as the one <theta> value (gp_predict:4968-4978)
            zeta = float(_numbers(theta_el.text, f"{where} theta")[0])
        else:
            raise ModelFileError(f"{where}: dot_product covariance without zeta")
    else:
        theta = _numbers(theta_el.text if theta_el is not None else "", f"{where} theta")
        if theta.shape != (d,):
            raise ModelFileError(f"{where}: <theta> holds {theta.size} values for dimensions={d}")

    n = int(c.get("n_sparseX"))
    elements = c.findall("sparseX")
    if len(elements) != n:
        raise ModelFileError(f"{where}: n_sparseX={n} but {len(elements)} <sparseX> elements")
    alpha = np.empty(n)
    scut = np.empty(n)
    X = np.full((n, d), np.nan)
    seen = np.zeros(n, bool)
    fname = c.get("sparseX_filename")
    for el in elements:
        i = int(el.get("i")) - 1
        if not 0 <= i < n or seen[i]:
            raise ModelFileError(f"{where}: <sparseX i={el.get('i')}> out of range or repeated")
        seen[i] = True
        alpha[i] = float(el.get("alpha"))
        scut[i] = float(el.get("sparseCutoff", "1.0"))
        if fname is not None:
            continue
        if to_bool(el.get("sliced", "F")):
            for s in el.findall("sparseX_slice"):
                a, b = int(s.get("start")), int(s.get("end"))
                vals = _numbers(s.text, f"{where} sparseX {i + 1}")
                if not 1 <= a <= b <= d or vals.size != b - a + 1:
                    raise ModelFileError(f"{where}: sparseX {i + 1} slice {a}..{b} holds {vals.size} values")
                X[i, a - 1:b] = vals
        else:
            vals = _numbers(el.text, f"{where} sparseX {i + 1}")
            if vals.size != d:
                raise ModelFileError(f"{where}: sparseX {i + 1} holds {vals.size} values, dimensions={d}")
            X[i] = vals
    if fname is not None:
        # a text file next to the XML (quippy chdirs to the XML's directory first: QUIP Potential.f95:456-466)
        fpath = os.path.join(base, fname)
        if not os.path.isfile(fpath):
            raise ModelFileError(f"{where}: its sparse-point file {fname} is missing (it must lie next to the XML)")
        md5 = c.get("sparseX_md5sum") or ""
        if len(md5) == 32 and _md5(fpath) != md5:  # QUIP aborts on a mismatch, warns on a malformed md5
            raise ModelFileError(f"{where}: sparse-point file {fname} has md5 {_md5(fpath)}, the XML says {md5}: "
                                 "the file is corrupt or belongs to another model")
        with open(fpath) as f:
            vals = _numbers(f.read(), fname)
        if vals.size != n * d:
            raise ModelFileError(f"{where}: sparse-point file {fname} holds {vals.size} numbers, not {n} x {d}")
        X[:] = vals.reshape(n, d)
    if np.isnan(X).any():
        raise ModelFileError(f"{where}: sparse points with missing values")
    return _Coordinate(kind=kind, params=params, descriptor=desc, label=lab, where=where, dimensions=d,
                       delta=float(c.get("signal_variance")), f0=float(c.get("signal_mean", "0")), zeta=zeta,
                       theta=theta, sparse_x=X, alpha=alpha, sparse_cutoff=scut)


# ----------------------------------------------------------------------------- reading: the model

def _species(coords, e0, path):
    """The model's species (atomic numbers, in order) and the soap species_Z wildcards resolved."""
    soaps = [c for c in coords if c.kind == "soap"]
    pairs = [c for c in coords if c.kind == "distance_2b"]
    named = {z for c in soaps for z in c.params["species_Z"] if z} | {c.params["Z"] for c in soaps if c.params["Z"]}
    named |= {z for c in pairs for z in (c.params["Z1"], c.params["Z2"]) if z}
    for c in soaps:
        if c.params["species_Z"] == [0]:
            # QUIP: every neighbour in one density channel whatever its element; equal to our one-species SOAP
            # when one element is known (Z, or the only element named or with an e0)
            known = sorted({c.params["Z"]} - {0}) or sorted(named | {z for z, v in e0.items() if v != 0.0})
            if len(known) != 1:
                raise UnsupportedQuipFeature(
                    f"{c.where}: soap without species_Z (any element in one density channel) whose element cannot "
                    f"be told (candidates {[_symbol(z) for z in known]}); refit with add_species=T")
            c.params["species_Z"] = known
    orders = {tuple(c.params["species_Z"]) for c in soaps}
    if len(orders) > 1:
        raise UnsupportedQuipFeature(f"{os.path.basename(path)}: soap coordinates with different species_Z lists "
                                     f"{sorted(orders)} (one model has one SOAP channel order) are not implemented")
    if orders:
        species = list(orders.pop())
        for c in soaps:
            if c.params["Z"] and c.params["Z"] not in species:
                raise UnsupportedQuipFeature(f"{c.where}: soap centre Z={c.params['Z']} outside its species_Z "
                                             f"{species} is not implemented")
        for c in pairs:
            for z in (c.params["Z1"], c.params["Z2"]):
                if z and z not in species:
                    raise UnsupportedQuipFeature(
                        f"{c.where}: distance_2b of {_symbol(z)}, an element outside the soap species_Z {species} "
                        "(QUIP skips it as a SOAP neighbour) is not implemented")
        return species
    # pair terms only: gap_fit's add_species order (pairs i <= j in species order), then other e0 elements
    species = []
    for c in pairs:
        for z in (c.params["Z1"], c.params["Z2"]):
            if z and z not in species:
                species.append(z)
    species += sorted(z for z, v in e0.items() if v != 0.0 and z not in species and 0 < z <= TOTAL_ELEMENTS)
    if not species:
        raise UnsupportedQuipFeature(f"{os.path.basename(path)}: distance_2b for any element (Z1=Z2=0) and no "
                                     "element named anywhere in the file: the model's species cannot be told")
    return species


def _term_key(c):
    """What must agree for coordinates to share one term (all but the sparse sets)."""
    p = c.params
    if c.kind == "soap":
        return ("soap", p["cutoff"], p["cutoff_transition_width"], p["n_max"], p["l_max"], p["atom_sigma"],
                p["central_weight"], p["central_reference_all_species"], p["covariance_sigma0"],
                tuple(p["species_Z"]), c.zeta, c.delta)
    return ("distance_2b", p["cutoff"], p["cutoff_transition_width"], c.delta, float(c.theta[0]), abs(c.f0))


def _term_arrays(c, species):
    """(points (n', F), labels (n',), alpha (n',), sparse_cutoff (n',) or None) of one coordinate in our terms."""
    if c.kind == "soap":
        p = c.params
        F = c.dimensions - 1
        if not np.array_equal(c.sparse_x[:, F], np.full(len(c.alpha), p["covariance_sigma0"])):
            raise UnsupportedQuipFeature(f"{c.where}: soap sparse points whose trailing entry is not covariance_sigma0="
                                         f"{p['covariance_sigma0']} are not implemented")
        # sparseCutoff is 1 for soap (descriptors:8183); any other value is a factor of the weight
        alpha = c.alpha if np.all(c.sparse_cutoff == 1.0) else c.alpha * c.sparse_cutoff
        labels = [species.index(p["Z"])] if p["Z"] else list(range(len(species)))  # Z=0: every atom a centre
        pts = c.sparse_x[:, :F]
        return (np.concatenate([pts] * len(labels)), np.repeat(labels, len(alpha)),
                np.concatenate([alpha] * len(labels)), None)
    z1, z2 = c.params["Z1"], c.params["Z2"]
    table = pair_index(len(species))
    labels = []
    for a in range(len(species)):  # QUIP's selection (descriptors:4930-4938), 0 = any element
        for b in range(a, len(species)):
            za, zb = species[a], species[b]
            if (z1 in (0, za) and z2 in (0, zb)) or (z1 in (0, zb) and z2 in (0, za)):
                labels.append(int(table[a, b]))
    k = len(labels)
    return (np.concatenate([c.sparse_x] * k), np.repeat(labels, len(c.alpha)), np.concatenate([c.alpha] * k),
            np.concatenate([c.sparse_cutoff] * k))


def _term_hyperparameters(c, n_sparse):
    p = c.params
    if c.kind == "soap":
        if not c.zeta >= 1:
            raise UnsupportedQuipFeature(f"{c.where}: dot_product zeta={c.zeta} < 1 is not implemented")
        return dict(kind="soap", cutoff=p["cutoff"], cutoff_transition_width=p["cutoff_transition_width"],
                    n_max=p["n_max"], l_max=p["l_max"], atom_sigma=p["atom_sigma"], zeta=c.zeta, delta=c.delta,
                    n_sparse=n_sparse, covariance_sigma0=p["covariance_sigma0"], central_weight=p["central_weight"],
                    central_reference_all_species=p["central_reference_all_species"])
    # f0 enters as f0^2 (gp_predict:3815): its sign means nothing
    return dict(kind="distance_2b", cutoff=p["cutoff"], cutoff_transition_width=p["cutoff_transition_width"],
                delta=c.delta, theta=float(c.theta[0]), f0=abs(c.f0), n_sparse=n_sparse)


def read_quip_xml(path, label=None):
    """Read a QUIP/GAP XML potential (gap_fit's ``gap_file``) as a :class:`~ase_mlcalc.SparseGPModel`.

    Parameters
    ----------
    path : str or PathLike, the XML file; external sparse-point files (``sparseX_filename``) are read from
        its directory and their md5 checked
    label : the ``<GAP_params>`` label when a file holds several (default: the one the
        ``<Potential init_args="IP GAP label=...">`` names)

    Returns
    -------
    SparseGPModel on the CPU, float64: species in the file's SOAP ``species_Z`` order, ``e0`` (eV) of
    those elements (the file's e0 of other elements is dropped and listed in the metadata), one term per
    run of coordinates sharing hyper-parameters, ``alpha`` (eV per kernel unit) in the file's order, no
    variance factors (none stored, ``variance=False``: no uncertainty outputs, the file has none).
    ``model.metadata``: ``format`` "quip", ``source``, ``label``, ``gap_version`` (int, 0 if absent),
    ``command_line`` (gap_fit's, or None), ``descriptors`` (the coordinates' descriptor strings) and
    ``dropped_e0`` ({symbol: eV}).

    Raises
    ------
    UnsupportedQuipFeature (a ModelFileError)
        A feature we do not implement, named: a core/baseline potential (``Sum``, another IP, ``do_core=T``),
        IP GAP ``E_scale`` != 1, ``do_pca``, a descriptor other than soap and distance_2b (soap_turbo, angle_3b,
        ...), a covariance other than dot_product (soap) / ard_se (distance_2b) (pp, bond_real_space), a full or
        unfitted GP (``sparsified=F``, ``fitted=F``), ``n_permutations`` > 1; soap options other than QUIP's
        default for ``normalise``, ``average``, ``n_Z``, ``diagonal_radial``, ``nu_R``, ``nu_S``, ``Z_mix``,
        ``R_mix``, ``sym_mix``, ``coupling``, ``K``, ``Z_map``, ``radial_basis``, ``cutoff_dexp``,
        ``basis_error_exponent``, a soap of gap_version < 1423143769, zeta < 1, species_Z lists that differ
        between coordinates; distance_2b ``n_exponents``/``exponents``, ``tail_exponent``, ``resid_name``,
        ``only_intra``, ``only_inter``, or an element outside the soap's species_Z; an option QUIP may know
        but we do not (anything not in :data:`SOAP_OPTIONS`, :data:`DISTANCE_2B_OPTIONS`, :data:`GAP_FIT_KEYS`).
    ModelFileError
        Not a GAP XML, inconsistent counts, a missing or corrupt (md5) sparse-point file.
    FileNotFoundError
        ``path`` does not exist.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no QUIP/GAP XML file at {path}")
    gp, gap_label, version, coord_elements, base = _parse_file(path, label)
    e0 = _e0(gp, path)
    coords = [_read_coordinate(c, base, version, path) for c in coord_elements]
    if not coords:
        raise ModelFileError(f"{path}: a GAP without any <gpCoordinates>")
    species = _species(coords, e0, path)

    groups = []  # [key, [coordinate, ...]]: consecutive coordinates of equal hyper-parameters
    for c in coords:
        key = _term_key(c)
        if groups and groups[-1][0] == key:
            groups[-1][1].append(c)
        else:
            groups.append([key, [c]])
    terms, arrays = [], []
    for _, group in groups:
        parts = [_term_arrays(c, species) for c in group]
        pts = np.concatenate([p[0] for p in parts])
        arrays.append((pts, np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts]),
                       None if parts[0][3] is None else np.concatenate([p[3] for p in parts])))
        terms.append(_term_hyperparameters(group[0], len(pts)))
    try:
        model = SparseGPModel(species, terms=terms, variance=False)
    except ValueError as err:
        raise UnsupportedQuipFeature(f"{path}: hyper-parameters outside what our GAP implements: {err}") from None
    with torch.no_grad():
        for term, (pts, labels, _, scut), (_, group) in zip(model.terms, arrays, groups):
            if tuple(term.sparse_points.shape) != pts.shape:
                raise ModelFileError(f"{group[0].where}: {pts.shape[1]} descriptor dimensions (+1), but soap with "
                                     f"these options has {term.sparse_points.shape[1]}")
            term.sparse_points.copy_(torch.from_numpy(pts))
            term.sparse_species.copy_(torch.from_numpy(labels.astype(np.int64)))
            if scut is not None:
                term.sparse_cutoff.copy_(torch.from_numpy(scut))
        model.alpha.copy_(torch.from_numpy(np.concatenate([a[2] for a in arrays])))
        model.e0.copy_(torch.tensor([e0.get(z, 0.0) for z in species], dtype=torch.float64))
    cl = gp.find("command_line")
    model.metadata = {
        "format": "quip", "source": os.path.abspath(path), "label": gap_label, "gap_version": version,
        "command_line": None if cl is None else (cl.text or "").strip(),
        "descriptors": [c.descriptor for c in coords],
        "dropped_e0": {_symbol(z): v for z, v in sorted(e0.items()) if v != 0.0 and z not in species},
    }
    return model


# ----------------------------------------------------------------------------- writing

def _wrap(tokens, indent):
    """Tokens joined by two spaces, a line break before any token that would take a line past MAX_LINE
    characters (FoX's limit on lists of numbers; the element's own tag comes on top of the first line)."""
    lines, cur = [], ""
    for t in tokens:
        if cur and len(cur) + len(t) + 2 > MAX_LINE:
            lines.append(cur)
            cur = ""
        cur += "  " + t
    lines.append(cur)
    return ("\n" + indent).join(lines) + "  "


def _esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _soap_string(term, species, z):
    s = term.descriptor
    return (f"soap cutoff={_fmt(s.cutoff)} cutoff_transition_width={_fmt(s.cutoff_transition_width)} "
            f"n_max={s.n_max} l_max={s.l_max} atom_sigma={_fmt(s.atom_sigma)} central_weight={_fmt(s.central_weight)} "
            f"central_reference_all_species={_bool(s.central_reference_all_species)} normalise=T "
            f"covariance_sigma0={_fmt(term.covariance_sigma0)} n_species={len(species)} "
            f"species_Z={{{' '.join(str(x) for x in species)}}} Z={z}")


def _pair_string(term, z1, z2):
    return (f"distance_2b cutoff={_fmt(term.cutoff)} cutoff_transition_width={_fmt(term.cutoff_transition_width)} "
            f"Z1={z1} Z2={z2}")


def _runs(labels):
    """(start, stop) of the runs of equal values in a 1-D int array."""
    if len(labels) == 0:
        return []
    cuts = np.flatnonzero(np.diff(labels)) + 1
    edges = np.concatenate([[0], cuts, [len(labels)]])
    return list(zip(edges[:-1].tolist(), edges[1:].tolist()))


def _check_writable(model):
    if not isinstance(model, SparseGPModel):
        family = getattr(model, "family", type(model).__name__)
        raise UnsupportedQuipFeature(f"a {family} model cannot be written as a QUIP/GAP XML file: only our GAP "
                                     "(SparseGPModel) has a QUIP counterpart")
    for k, term in enumerate(model.terms):
        kind = getattr(term, "kind", type(term).__name__)
        if type(term) not in (SoapTerm, PairTerm) or kind not in ("soap", "distance_2b"):
            raise UnsupportedQuipFeature(f"GP term {k} of kind {kind!r} has no QUIP/GAP counterpart (only soap "
                                         "with dot_product and distance_2b with ard_se)")
        if kind == "soap" and not term.descriptor.normalise:
            raise UnsupportedQuipFeature(f"GP term {k}: an unnormalised soap is not written")


def write_quip_xml(model, path, label=None, sparse_separate_file=False):
    """Write our GAP as a QUIP/GAP XML potential that quippy's ``Potential(param_filename=path)`` loads
    and evaluates to our numbers.

    Layout as gap_fit_print_xml (gap_fit_module:1585-1700) and gpCoordinates_printXML
    (gp_predict:4219-4302): root element named after the label (no XML declaration: quippy takes the
    first tag as the label, QUIP Potential.f95:525-537), ``<Potential init_args="IP GAP label=...">``,
    ``<GAP_params gap_version>`` with e0 (eV) for Z = 1..118 and one ``<gpCoordinates>`` per run of sparse
    points of one centre species (soap: ``Z=z``, ``species_Z`` = the model's species) or species pair
    (distance_2b: ``Z1 Z2``), every option we rely on spelt out. Numbers are written with Python's repr
    (round-trip exact), lists of them wrapped at :data:`MAX_LINE` characters; soap sparse points get their
    trailing ``covariance_sigma0`` entry; pair sparse points their ``sparse_cutoff`` as ``sparseCutoff``.
    The variance factors are not written (the format has no place for them).

    Parameters
    ----------
    model : SparseGPModel
    path : str or PathLike, written atomically (temporary file, then renamed)
    label : the potential's label (default: the imported file's, else "GAP_ase_mlcalc")
    sparse_separate_file : write the sparse points to ``<path>.sparseX.<coordinate label>`` text files with
        their md5, as gap_fit's ``sparse_separate_file=T`` (default: inline)

    ``gap_version`` is an imported model's (``model.metadata``), else :data:`GAP_VERSION_WRITTEN`
    (1426512068); ``<command_line>`` is an imported model's gap_fit command line, else a note.
    :func:`read_quip_xml` of the file gives back the model bit for bit (but for the variance factors).

    Raises
    ------
    UnsupportedQuipFeature (a ModelFileError)
        A model other than a SparseGPModel, or a term quippy cannot express (named).
    ValueError
        A label that is not an XML name, non-finite numbers.
    """
    from .. import __version__

    _check_writable(model)
    path = os.fspath(path)
    meta = getattr(model, "metadata", None) or {}
    meta = meta if meta.get("format") == "quip" else {}  # provenance of an imported file only
    label = label or meta.get("label") or "GAP_ase_mlcalc"
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", str(label)):
        raise ValueError(f"label {label!r} must be a valid XML element name")
    try:
        version = int(meta.get("gap_version") or 0)
    except (TypeError, ValueError):
        version = 0
    version = version if version >= XML_VERSION_CENTRAL_REF else GAP_VERSION_WRITTEN
    species = list(model.species)
    e0 = dict(zip(species, model.e0.detach().cpu().numpy().tolist()))
    alpha = model.alpha.detach().cpu().numpy()
    directory = os.path.dirname(os.path.abspath(path))

    coords = []  # (descriptor, covariance type, zeta, theta, delta, f0, X (n, d), alpha, sparse cutoff)
    offset = 0
    for term in model.terms:
        X = term.sparse_points.detach().cpu().numpy()
        lab = term.sparse_species.cpu().numpy()
        a = alpha[offset:offset + term.n_sparse]
        offset += term.n_sparse
        for start, stop in _runs(lab):
            s = int(lab[start])
            if term.kind == "soap":
                pts = np.hstack([X[start:stop], np.full((stop - start, 1), term.covariance_sigma0)])
                coords.append((_soap_string(term, species, species[s]), COVARIANCE_DOT_PRODUCT, term.zeta, None,
                               term.delta, 0.0, pts, a[start:stop], np.ones(stop - start)))
            else:
                ia, ib = np.argwhere(term.pairs == s)[0]
                coords.append((_pair_string(term, species[ia], species[ib]), COVARIANCE_ARD_SE, None,
                               [term.theta], term.delta, term.f0, X[start:stop], a[start:stop],
                               term.sparse_cutoff.detach().cpu().numpy()[start:stop]))
    if not coords:
        raise UnsupportedQuipFeature("a GAP without sparse points cannot be written as a QUIP/GAP XML file")

    out = [f"<{label}>", f'<Potential label="{label}" init_args="IP GAP label={label}"/>',
           f'<GAP_params label="{label}" gap_version="{version}">', '  <GAP_data do_core="F">']
    out += [f'    <e0 Z="{z}" value="{_fmt(e0.get(z, 0.0))}"/>' for z in range(1, TOTAL_ELEMENTS + 1)]
    out += ["  </GAP_data>", f'  <gpSparse label="{label}" n_coordinate="{len(coords)}" fitted="T">']
    written = []
    for k, (desc, ctype, zeta, theta, delta, f0, X, a, scut) in enumerate(coords, start=1):
        clab = f"{label}{k}"  # gap_fit: gpSparse label // index
        n, d = X.shape
        attrs = (f'label="{clab}" dimensions="{d}" signal_variance="{_fmt(delta)}" signal_mean="{_fmt(f0)}" '
                 f'sparsified="T" n_permutations="1" covariance_type="{ctype}"')
        if ctype == COVARIANCE_DOT_PRODUCT:
            attrs += f' zeta="{_fmt(zeta)}"'
        attrs += f' n_sparseX="{n}"'
        if sparse_separate_file:
            fname = f"{os.path.basename(path)}.sparseX.{clab}"
            text = "".join(f"{v:.20e}\n" for v in X.ravel())  # as QUIP's fwrite_array_d (cutil.c:195-213)
            if not all(math.isfinite(v) for v in X.ravel()):
                raise ValueError("cannot write non-finite sparse points")
            written.append((os.path.join(directory, fname), text))
            attrs += f' sparseX_filename="{fname}" sparseX_md5sum="{hashlib.md5(text.encode()).hexdigest()}"'
        out.append(f"    <gpCoordinates {attrs}>")
        if theta is not None:
            out.append("      <theta>" + _wrap([_fmt(t) for t in theta], "        ") + "</theta>")
        out.append(f"      <descriptor>{_esc(desc)}</descriptor>")
        perm = " ".join(str(i) for i in range(1, (d if ctype == COVARIANCE_ARD_SE else 1) + 1))
        out.append(f'      <permutation i="1">{perm}</permutation>')
        for m in range(n):
            head = f'      <sparseX i="{m + 1}" alpha="{_fmt(a[m])}" sparseCutoff="{_fmt(scut[m])}"'
            if sparse_separate_file:
                out.append(head + "/>")
            elif d <= SLICE:
                out.append(head + ">" + _wrap([_fmt(v) for v in X[m]], "        ") + "</sparseX>")
            else:
                out.append(head + ' sliced="T">')
                for lo in range(0, d, SLICE):
                    hi = min(lo + SLICE, d)
                    out.append(f'        <sparseX_slice start="{lo + 1}" end="{hi}">'
                               + _wrap([_fmt(v) for v in X[m, lo:hi]], "          ") + "</sparseX_slice>")
                out.append("      </sparseX>")
        out.append("    </gpCoordinates>")
    out.append("  </gpSparse>")
    command = meta.get("command_line")
    if command is None:
        command = f"written by ase_mlcalc {__version__} (ase_mlcalc.interop.quip.write_quip_xml); not a gap_fit run"
    command = str(command)  # verbatim: FoX's line limit is on numbers only (a 4600-character command line loads)
    out.append(f"  <command_line><![CDATA[{command.replace(']]>', ']]]]><![CDATA[>')}]]></command_line>")
    out += ["</GAP_params>", f"</{label}>"]

    for fpath, text in written:
        tmp = fpath + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, fpath)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(out) + "\n")
    os.replace(tmp, path)
