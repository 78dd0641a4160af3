"""Read n2p2 / RuNNer neural network potentials (2G-HDNNP: ``input.nn``, ``scaling.data``,
``weights.ZZZ.data``) as ase_mlcalc Behler-Parrinello models.

``read_n2p2(directory)`` returns a :class:`~ase_mlcalc.models.bpnn.BPNNModel` (family "bpnn") with
:class:`~ase_mlcalc.descriptors.N2P2SymmetryFunctions`; :func:`ase_mlcalc.load` does the same for a
directory and returns the calculator::

    calc = ase_mlcalc.load("examples/data/nnp/Mo")                     # Bohr and Hartree files
    calc = ase_mlcalc.load(path, format_options={"length_unit": "angstrom", "energy_unit": "eV"})

Everything inside is Å and eV, float64: n2p2 files carry no units (n2p2 documentation, "Units",
https://compphysvienna.github.io/n2p2/topics/units.html), so the reader takes them as arguments
(default Bohr and Hartree, RuNNer's units and those of the mlearn potentials) and converts once:
rc, rs times the length unit, eta divided by its square, energies times the energy unit.

Sources: the n2p2 documentation (https://compphysvienna.github.io/n2p2/): "Keywords"
(``topics/keywords.html``: ``symfunction_short``, ``cutoff_type``, ``scale_*``/``center_*``,
``global_*_short``, ``normalize_nodes``, ``normalize_data_set``), "Symmetry function types",
"Cutoff functions", "Symmetry function scaling" and "Neural network" (``api/*.html``), and, where the
documentation is silent (order of the functions, file layouts), n2p2's source, ``src/libnnp``
(``Mode::setupSymmetryFunctionScaling``, ``NeuralNetwork::setConnections``,
``Element::sortSymmetryFunctions``). Checked against n2p2's own ``nnp-predict`` (v2.3.0 and master
61daa0d) on the mlearn Mo and Li potentials and on synthetic potentials using every option read here.

Prediction (n2p2 ``Prediction::predict``), per atom i of element s with symmetry functions G_i::

    Gs_i = scaling(G_i)          scale:       Smin + (Smax - Smin) (G - Gmin) / (Gmax - Gmin)
                                 center:      G - Gmean
                                 scalecenter: Smin + (Smax - Smin) (G - Gmean) / (Gmax - Gmin)
                                 sigma:       Smin + (Smax - Smin) (G - Gmean) / Gsigma
                                 none:        G
    e_i  = NN_s(Gs_i) / conv_energy + mean_energy + atom_energy[s]      (file energy unit)

(``conv_energy = 1``, ``mean_energy = 0`` without ``normalize_data_set``'s keywords; ``conv_length``
does not enter the prediction). In BPNNModel terms: ``(q - feature_mean[s]) / feature_std[s]`` is
the scaling, ``energy_scale = energy_unit / conv_energy``,
``e0[s] = (mean_energy + atom_energy[s]) energy_unit``, ``isolated_atom_e0=False`` (n2p2 has no
isolated-atom baseline: an atom without neighbours has e0 + energy_scale NN_s(scaling(0))),
``normalize_nodes`` (pre-activations divided by the previous layer's width) is folded into the weights.

Refused, by name (:class:`UnsupportedN2P2Option`; they change the prediction and are not
implemented): ``nnp_type`` other than a short-range 2G-HDNNP (4G-HDNNP, Q-HDNNP, charge
networks), the ``*_electrostatic`` network keywords, ``fixed_gausswidth``, ``ewald_*``,
``screen_electrostatics``, ``four_pi_epsilon``, RuNNer's ``use_electrostatics``,
``electrostatic_type``, ``use_vdw``, ``vdw_type``, ``nn_type_elec``; symmetry function types
other than 2, 3 and 9; angular functions with rs < 0 (n2p2's grouped kernels, its default, treat
them as rs = 0, its per-function kernels do not); ``element_hidden_layers_short``,
``element_nodes_short``, ``element_activation_short`` (undocumented; n2p2 v2.3.0 and later
versions read them differently). Keywords used only in training are ignored; unknown keywords
are ignored with a warning, as n2p2 does.
"""

from __future__ import annotations

import math
import os
import warnings

import numpy as np
import torch
from ase import units
from ase.data import atomic_numbers

from ..descriptors.n2p2 import SF_TYPES, sort_key
from ..errors import ModelFileError
from ..models.bpnn import N2P2_ACTIVATIONS, BPNNModel

__all__ = ["ENERGY_UNITS", "LENGTH_UNITS", "N2P2FormatError", "UnsupportedN2P2Option", "read_n2p2"]

# ----------------------------------------------------------------------------- errors and keywords


class N2P2FormatError(ModelFileError):
    """An n2p2 potential file is missing, malformed or inconsistent (the message names the file and line)."""


class UnsupportedN2P2Option(ModelFileError):
    """The potential uses an n2p2 / RuNNer option that the reader does not implement (it would change
    the prediction): ``keyword`` names the ``input.nn`` keyword, ``value`` the refused value (or None
    when the keyword itself is refused)."""

    def __init__(self, keyword, detail="", value=None):
        self.keyword = keyword
        self.value = value
        what = f"{keyword} {value}" if value is not None else keyword
        super().__init__(f"n2p2 option {what!r} is not supported by ase_mlcalc's n2p2 reader"
                         + (f": {detail}" if detail else ""))


#: keywords that define the prediction of a 2G-HDNNP and are implemented
PREDICTION_KEYWORDS = {
    "number_of_elements", "elements", "atom_energy", "cutoff_type", "symfunction_short", "symfunction",
    "scale_symmetry_functions", "center_symmetry_functions", "scale_symmetry_functions_sigma",
    "scale_min_short", "scale_max_short",
    "global_hidden_layers_short", "global_nodes_short", "global_activation_short",
    "normalize_nodes", "mean_energy", "conv_energy", "conv_length", "nnp_type",
    "nnp_generation", "nnp_type_gen", "nnp_gen",
}

#: per-element network keywords: their syntax and meaning differ between n2p2 versions (v2.3.0:
#: ``element_nodes_short <el> <layer> <nodes>``, no element_hidden_layers/activation; master after the
#: 4G-HDNNP merge: ``element_nodes_short <el> <n_1> ... <n_L>`` of which n2p2 applies all but the last)
#: and they are undocumented: refused rather than guessed
VERSION_DEPENDENT_KEYWORDS = {"element_hidden_layers_short", "element_nodes_short", "element_activation_short"}

#: keywords that change the prediction (4G-HDNNP / charge networks / electrostatics) and are refused
REFUSED_KEYWORDS = {
    "global_hidden_layers_electrostatic", "global_nodes_electrostatic", "global_activation_electrostatic",
    "element_hidden_layers_electrostatic", "element_nodes_electrostatic", "element_activation_electrostatic",
    "fixed_gausswidth", "ewald_truncation_error_method", "ewald_prec", "screen_electrostatics",
    "four_pi_epsilon",
    # RuNNer keywords (not read by n2p2) that would add non-short-range terms
    "use_electrostatics", "electrostatic_type", "use_vdw", "vdw_type", "nn_type_elec",
}

#: n2p2 keywords used only by training tools (nnp-train, nnp-scaling, ...): ignored
TRAINING_KEYWORDS = {
    "random_seed", "test_fraction", "epochs", "normalize_data_set", "use_short_forces", "rmse_threshold",
    "rmse_threshold_energy", "rmse_threshold_force", "rmse_threshold_charge", "rmse_threshold_trials",
    "rmse_threshold_trials_energy", "rmse_threshold_trials_force", "rmse_threshold_trials_charge",
    "energy_fraction", "force_fraction", "force_energy_ratio", "charge_fraction", "use_old_weights_short",
    "use_old_weights_charge", "weights_min", "weights_max", "initial_hardness", "nguyen_widrow_weights_short",
    "nguyen_widrow_weights_charge", "precondition_weights", "main_error_metric", "write_trainpoints",
    "write_trainforces", "write_traincharges", "write_weights_epoch", "write_neuronstats", "write_trainlog",
    "repeated_energy_update", "updater_type", "parallel_mode", "jacobian_mode", "update_strategy",
    "selection_mode", "selection_mode_energy", "selection_mode_force", "selection_mode_charge",
    "task_batch_size_energy", "task_batch_size_force", "task_batch_size_charge", "gradient_type",
    "gradient_eta", "gradient_adam_eta", "gradient_adam_beta1", "gradient_adam_beta2", "gradient_adam_epsilon",
    "kalman_type", "kalman_epsilon", "kalman_eta", "kalman_etatau", "kalman_etamax", "kalman_q0",
    "kalman_qtau", "kalman_qmin", "kalman_lambda_short", "kalman_nue_short", "memorize_symfunc_results",
    "force_weight",
    # RuNNer alternative names n2p2 accepts
    "short_energy_error_threshold", "short_force_error_threshold", "short_energy_fraction",
    "short_force_fraction",
    # only read for 4G/Q-HDNNPs (refused anyway through nnp_type)
    "conv_charge",
}

#: n2p2 activation letters (the documentation of ``global_activation_short``)
ACTIVATION_LETTERS = {
    "l": "identity: x", "t": "tanh(x)", "s": "logistic: 1/(1+exp(-x))", "p": "softplus: ln(1+exp(x))",
    "r": "relu: max(0, x)", "g": "gaussian: exp(-x^2/2)", "c": "cos(x)", "S": "reverse logistic: 1-1/(1+exp(-x))",
    "e": "exp(-x)", "h": "harmonic: x^2",
}
assert set(ACTIVATION_LETTERS) == set(N2P2_ACTIVATIONS)

#: length units by name: Å per file unit
LENGTH_UNITS = {"bohr": units.Bohr, "angstrom": 1.0, "ang": 1.0, "å": 1.0, "nm": 10.0}
#: energy units by name: eV per file unit
ENERGY_UNITS = {"hartree": units.Hartree, "ha": units.Hartree, "ev": 1.0, "rydberg": units.Rydberg,
                "ry": units.Rydberg, "kcal/mol": units.kcal / units.mol, "kj/mol": units.kJ / units.mol}


def _unit(x, what):
    """Size of one file unit in Å (``what="length"``) or eV ("energy") from a name or a number.

    Raises ValueError for an unknown name or a non-positive number."""
    table, unit = (LENGTH_UNITS, "Å") if what == "length" else (ENERGY_UNITS, "eV")
    if isinstance(x, str):
        key = x.strip().lower()
        if key not in table:
            raise ValueError(f"unknown {what} unit {x!r}; give a number (one file unit in {unit}) or one of "
                             f"{', '.join(table)}")
        return float(table[key])
    try:
        x = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{what} unit must be a name or a number of {unit}, got {x!r}") from None
    if not (math.isfinite(x) and x > 0):
        raise ValueError(f"{what} unit must be a positive number of {unit}, got {x}")
    return x


# ----------------------------------------------------------------------------- input.nn


def _parse_settings(path):
    """``input.nn`` as a list of (keyword, value string, 1-based line number), like n2p2's
    ``Settings::parseLines``: text after '#' or '!' is a comment, the first token is the keyword."""
    out = []
    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            for ch in "#!":
                if ch in line:
                    line = line[:line.index(ch)]
            tok = line.split()
            if not tok:
                continue
            out.append((tok[0], " ".join(tok[1:]), n))
    return out


class _Settings:
    def __init__(self, path):
        self.path = path
        self.entries = _parse_settings(path)
        self.map = {}
        for k, v, n in self.entries:
            self.map.setdefault(k, []).append((v, n))

    def has(self, key):
        return key in self.map

    def get(self, key, default=None):
        if key not in self.map:
            return default
        vals = self.map[key]
        if len(vals) > 1:
            raise N2P2FormatError(f"{self.path}: keyword {key!r} appears {len(vals)} times "
                                  f"(lines {[n for _, n in vals]}); n2p2 rejects this")
        return vals[0][0]

    def all(self, key):
        return self.map.get(key, [])

    def err(self, key, msg):
        lines = [n for _, n in self.map.get(key, [])]
        where = f" (line {lines[0]})" if len(lines) == 1 else (f" (lines {lines})" if lines else "")
        return N2P2FormatError(f"{self.path}: {key}{where}: {msg}")


def _float(tok, settings, key):
    try:
        return float(tok)
    except (TypeError, ValueError):
        raise settings.err(key, f"{tok!r} is not a number") from None


def _int(tok, settings, key):
    try:
        return int(tok)
    except (TypeError, ValueError):
        raise settings.err(key, f"{tok!r} is not an integer") from None


def _parse_symfunctions(st, elements):
    """[(centre symbol, dict in file units, line)]; refuses types other than 2, 3, 9."""
    keys = [k for k in ("symfunction_short", "symfunction") if st.has(k)]
    if len(keys) > 1:
        raise N2P2FormatError(f"{st.path}: both 'symfunction_short' and 'symfunction' lines; n2p2 rejects this")
    if not keys:
        raise N2P2FormatError(f"{st.path}: no symfunction_short lines")
    key = keys[0]
    out = []
    for value, n in st.all(key):
        tok = value.split()
        where = f"{st.path} line {n}"
        if len(tok) < 2:
            raise N2P2FormatError(f"{where}: incomplete symmetry function line {value!r}")
        try:
            t = int(tok[1])
        except ValueError:
            raise N2P2FormatError(f"{where}: symmetry function type {tok[1]!r} is not an integer") from None
        if t not in SF_TYPES:
            raise UnsupportedN2P2Option(key, f"{where} ({value!r}); only types 2 (radial), 3 (angular narrow) and "
                                        "9 (angular wide) are implemented", value=f"type {t}")
        need = 6 if t == 2 else 8
        if len(tok) < need:
            raise N2P2FormatError(f"{where}: type {t} needs {need} fields, got {value!r}")
        els = [tok[0], tok[2]] + ([tok[3]] if t != 2 else [])
        for e in els:
            if e not in elements:
                raise N2P2FormatError(f"{where}: element {e!r} is not in 'elements' {elements}")
        try:
            if t == 2:
                sf = {"type": 2, "e1": tok[2], "eta": float(tok[3]), "rs": float(tok[4]), "rc": float(tok[5])}
            else:
                sf = {"type": t, "e1": tok[2], "e2": tok[3], "eta": float(tok[4]), "lambda": float(tok[5]),
                      "zeta": float(tok[6]), "rc": float(tok[7]), "rs": float(tok[8]) if len(tok) > 8 else 0.0}
        except ValueError:
            raise N2P2FormatError(f"{where}: non-numeric parameter in {value!r}") from None
        if t != 2 and sf["rs"] < 0:
            # n2p2's grouped kernels (SymGrpExpAngn/-w, the default build) replace rs <= 0 by 0
            # while the per-function kernels use it: refuse rather than pick one
            raise UnsupportedN2P2Option(key, f"{where}: n2p2's grouped kernels (its default) treat rs < 0 as 0, its "
                                        "per-function kernels do not", value=f"type {t} with rs < 0")
        if len(tok) > need + (1 if t != 2 else 0):
            warnings.warn(f"{where}: extra fields after the parameters are ignored (as n2p2 does): {value!r}")
        out.append((tok[0], sf, n))
    return out


def _topology(st, elements, n_sf):
    """Per element: (layer sizes [F, h1, ..., 1], activation letters per non-input layer), from the
    global_* keywords as n2p2's ``Mode::setupNeuralNetwork`` reads them (per-element keywords are
    refused before this is called)."""
    S = len(elements)
    n_layers = [0] * S
    g_hidden = st.get("global_hidden_layers_short")
    if g_hidden is not None:
        gh = _int(g_hidden, st, "global_hidden_layers_short")
        n_layers = [gh + 2] * S
    else:
        gh = 0
    if any(n == 0 for n in n_layers):
        raise N2P2FormatError(f"{st.path}: keyword 'global_hidden_layers_short' missing")
    neurons = [[0] * n for n in n_layers]
    acts = [[None] * n for n in n_layers]
    g_nodes = st.get("global_nodes_short")
    g_nodes = g_nodes.split() if g_nodes is not None else []
    if g_nodes and len(g_nodes) != gh:
        raise st.err("global_nodes_short", f"{len(g_nodes)} widths for {gh} hidden layers")
    g_act = st.get("global_activation_short")
    g_act = g_act.split() if g_act is not None else []
    if g_act and len(g_act) != gh + 1:
        raise st.err("global_activation_short", f"{len(g_act)} activations for {gh} hidden layers + output")
    for i in range(S):
        L = n_layers[i]
        neurons[i][0] = n_sf[i]
        acts[i][0] = "l"
        neurons[i][L - 1] = 1
        if L != gh + 2:
            continue
        for j in range(1, L):
            if j == L - 1 and g_act:
                acts[i][j] = g_act[L - 2]
            else:
                if g_nodes:
                    neurons[i][j] = _int(g_nodes[j - 1], st, "global_nodes_short")
                if g_act:
                    acts[i][j] = g_act[j - 1]
    for i in range(S):
        for j in range(n_layers[i]):
            if neurons[i][j] == 0:
                raise N2P2FormatError(f"{st.path}: element {elements[i]}: number of neurons of layer {j} unset")
            if acts[i][j] is None:
                raise N2P2FormatError(f"{st.path}: element {elements[i]}: activation of layer {j} unset")
            if acts[i][j] not in ACTIVATION_LETTERS:
                raise UnsupportedN2P2Option("global_activation_short", f"{st.path}: element {elements[i]} layer {j}; "
                                            f"n2p2's letters: {ACTIVATION_LETTERS}", value=acts[i][j])
    return [(neurons[i], acts[i][1:]) for i in range(S)]


# ----------------------------------------------------------------------------- scaling.data, weights


def _scaling_lines(path):
    """Non-comment lines of scaling.data as lists of tokens (n2p2 skips lines starting with '#')."""
    rows = []
    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip() or line.startswith("#"):
                continue
            rows.append((line.split(), n))
    return rows


def _scaling_number(tok, path, n):
    # tolerate dots as left padding ('{:.>22s}'-style formatting); n2p2's own files have none
    try:
        return float(tok.lstrip(".")) if tok.startswith("..") else float(tok)
    except ValueError:
        raise N2P2FormatError(f"{path} line {n}: {tok!r} is not a number") from None


def _label(tok, n_fields, path, n):
    """(kind, layer/neuron numbers...) of a labelled weights line: ``<value> a|b <index> <ints...>``."""
    try:
        return (tok[1],) + tuple(int(t) for t in tok[3:n_fields])
    except ValueError:
        raise N2P2FormatError(f"{path} line {n}: malformed connection label {' '.join(tok[1:])!r}") from None


def _read_weights(path, layers):
    """Per layer (W (n_out, n_in), b (n_out,)) from an n2p2 weights file.

    n2p2 (``NeuralNetwork::setConnections``) reads column 0 of every non-comment line, in the
    order: for each layer l = 1..L-1: for each neuron j of layer l-1: for each neuron k of layer l:
    w[l][k][j]; then the biases b[l][k] (the layout is not documented by n2p2). The remaining columns
    (``a``/``b``, index, and the (layer, neuron) pairs) are checked when present.
    """
    vals, rows = [], []
    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip() or line.startswith("#"):
                continue
            tok = line.split()
            try:
                vals.append(float(tok[0]))
            except ValueError:
                raise N2P2FormatError(f"{path} line {n}: {tok[0]!r} is not a number") from None
            if not math.isfinite(vals[-1]):
                raise N2P2FormatError(f"{path} line {n}: weight {tok[0]!r} is not finite")
            rows.append((tok, n))
    n_expected = sum(layers[lay - 1] * layers[lay] + layers[lay] for lay in range(1, len(layers)))
    if len(vals) != n_expected:
        raise N2P2FormatError(f"{path}: {len(vals)} numbers for a {layers} network, which needs {n_expected}")
    out, c = [], 0
    for lay in range(1, len(layers)):
        n_in, n_out = layers[lay - 1], layers[lay]
        W = np.array(vals[c:c + n_in * n_out]).reshape(n_in, n_out).T.copy()
        for k in range(n_in * n_out):  # check the connection labels if present
            tok, n = rows[c + k]
            if len(tok) >= 7:
                j, kk = divmod(k, n_out)
                want = ("a", lay - 1, j + 1, lay, kk + 1)
                got = _label(tok, 7, path, n)
                if got != want:
                    raise N2P2FormatError(f"{path} line {n}: expected weight {want}, found {got}")
        c += n_in * n_out
        b = np.array(vals[c:c + n_out])
        for k in range(n_out):
            tok, n = rows[c + k]
            if len(tok) >= 5:
                got = _label(tok, 5, path, n)
                if got != ("b", lay, k + 1):
                    raise N2P2FormatError(f"{path} line {n}: expected bias ('b', {lay}, {k + 1}), found {got}")
        c += n_out
        out.append((W, b))
    return out


# ----------------------------------------------------------------------------- reader



def read_n2p2(directory, length_unit="bohr", energy_unit="hartree"):
    """Build a :class:`~ase_mlcalc.models.bpnn.BPNNModel` from an n2p2 / RuNNer 2G-HDNNP directory.

    Parameters
    ----------
    directory : folder with ``input.nn``, ``scaling.data`` (required unless no scaling keyword is
        set) and one ``weights.ZZZ.data`` per element (ZZZ: atomic number, three digits)
    length_unit, energy_unit : the files' units: a name (:data:`LENGTH_UNITS`: "bohr", "angstrom",
        "nm"; :data:`ENERGY_UNITS`: "hartree", "ev", "rydberg", "kcal/mol", "kj/mol") or the size of one
        file unit in Å / eV. Default Bohr and Hartree (RuNNer's units; the mlearn potentials).

    Returns
    -------
    BPNNModel (family "bpnn"; float64, Å, eV; species in n2p2's element order, by atomic number;
    ``model.metadata["n2p2"]`` records the source directory, units and settings)

    Raises
    ------
    FileNotFoundError
        ``directory`` does not exist.
    N2P2FormatError (a :class:`~ase_mlcalc.ModelFileError`)
        Not a directory, ``input.nn``, ``scaling.data`` or a weights file missing, malformed or
        inconsistent (the message names the file and line).
    UnsupportedN2P2Option (a :class:`~ase_mlcalc.ModelFileError`, ``.keyword`` names the option)
        An option that would change the prediction and is not implemented (module docstring).
    ValueError
        An unknown unit name or a non-positive unit.
    """
    L = _unit(length_unit, "length")
    U = _unit(energy_unit, "energy")
    directory = os.fspath(directory)
    if not os.path.exists(directory):
        raise FileNotFoundError(f"no n2p2 potential directory at {directory}")
    if not os.path.isdir(directory):
        raise N2P2FormatError(f"{directory} is not a directory (an n2p2 potential is a directory holding input.nn, "
                              "scaling.data and weights.ZZZ.data)")
    path = os.path.join(directory, "input.nn")
    if not os.path.isfile(path):
        raise N2P2FormatError(f"{directory} holds no input.nn: not an n2p2 potential directory")
    try:
        st = _Settings(path)
    except UnicodeDecodeError as err:
        raise N2P2FormatError(f"{path}: not a text file ({err})") from None

    # -- keywords: implemented / refused / training-only / unknown
    unknown = []
    for key in st.map:
        if key in REFUSED_KEYWORDS:
            raise UnsupportedN2P2Option(key, f"{path}: electrostatics / charge networks (4G-HDNNP) are not "
                                        "implemented")
        if key in VERSION_DEPENDENT_KEYWORDS:
            raise UnsupportedN2P2Option(key, f"{path}: per-element network topologies are undocumented and read "
                                        "differently by n2p2 v2.3.0 ('<element> <layer> <nodes>') and later "
                                        "n2p2 ('<element> <n_1> ... <n_L>'); not implemented")
        if key not in PREDICTION_KEYWORDS and key not in TRAINING_KEYWORDS:
            unknown.append(key)
    if unknown:
        warnings.warn(f"{path}: keywords unknown to n2p2 are ignored (n2p2 warns and ignores them too): "
                      f"{sorted(unknown)}", stacklevel=2)
    for k in ("nnp_type", "nnp_generation", "nnp_type_gen", "nnp_gen"):
        if st.has(k):
            v = st.get(k).strip()
            # short range only: "2" / "2G-HDNNP" (n2p2 >= 2.3 master), "0" (SHORT_ONLY of n2p2 <= 2.3.0)
            if v not in ("0", "2", "2G-HDNNP"):
                raise UnsupportedN2P2Option(k, f"{path}: only short-range 2G-HDNNPs are implemented "
                                            "(not 4G-HDNNP, Q-HDNNP or charge networks)", value=v)

    # -- elements (n2p2 sorts them by atomic number: ElementMap::registerElements)
    el_line = st.get("elements")
    if el_line is None:
        raise N2P2FormatError(f"{path}: keyword 'elements' missing")
    elements = el_line.split()
    for e in elements:
        if e not in atomic_numbers:
            raise st.err("elements", f"unknown element {e!r}")
    if len(set(elements)) != len(elements):
        raise st.err("elements", f"an element listed twice: {elements}")
    elements = sorted(elements, key=lambda e: atomic_numbers[e])
    n_el = st.get("number_of_elements")
    if n_el is None or _int(n_el, st, "number_of_elements") != len(elements):
        raise st.err("number_of_elements", f"missing or inconsistent with elements {elements}")
    S = len(elements)

    atom_energy = {e: 0.0 for e in elements}
    for value, n in st.all("atom_energy"):
        tok = value.split()
        try:
            if len(tok) < 2 or tok[0] not in atom_energy:
                raise ValueError
            atom_energy[tok[0]] = float(tok[1])
        except ValueError:
            raise N2P2FormatError(f"{path} line {n}: bad atom_energy line {value!r} (expected '<element> "
                                  f"<energy>' for one of {elements})") from None

    # -- normalisation: all three or none (Mode::setupNormalization)
    norm_keys = ("mean_energy", "conv_energy", "conv_length")
    present = [k for k in norm_keys if st.has(k)]
    if present and len(present) != 3:
        raise N2P2FormatError(f"{path}: use all or none of mean_energy, conv_energy, conv_length (found {present})")
    normalize = len(present) == 3
    mean_energy = _float(st.get("mean_energy"), st, "mean_energy") if normalize else 0.0
    conv_energy = _float(st.get("conv_energy"), st, "conv_energy") if normalize else 1.0
    conv_length = _float(st.get("conv_length"), st, "conv_length") if normalize else 1.0
    if normalize and not (conv_energy > 0 and conv_length > 0):
        raise N2P2FormatError(f"{path}: conv_energy and conv_length must be positive")

    # -- cutoff function (Mode::setupCutoff): "cutoff_type <type> [<alpha>]", required
    ct = st.get("cutoff_type")
    if ct is None or not ct.split():
        raise N2P2FormatError(f"{path}: keyword 'cutoff_type' missing (n2p2 requires it)")
    tok = ct.split()
    cutoff_type = _int(tok[0], st, "cutoff_type")
    if cutoff_type not in range(9):
        raise UnsupportedN2P2Option("cutoff_type", f"{path}: n2p2's cutoff types are 0-8", value=cutoff_type)
    cutoff_alpha = _float(tok[1], st, "cutoff_type") if len(tok) > 1 else 0.0
    if not 0.0 <= cutoff_alpha < 1.0:
        raise st.err("cutoff_type", f"inner cutoff alpha must be in [0, 1), got {cutoff_alpha}")

    # -- symmetry functions, per element in n2p2's order (Element::sortSymmetryFunctions), on the file's values
    per = {e: [] for e in elements}
    for centre, sf, n in _parse_symfunctions(st, elements):
        key_sf = dict(sf, e1=atomic_numbers[sf["e1"]])
        if sf["type"] != 2:
            z1, z2 = atomic_numbers[sf["e1"]], atomic_numbers[sf["e2"]]
            key_sf["e1"], key_sf["e2"] = min(z1, z2), max(z1, z2)
        per[centre].append((sort_key(key_sf), sf, n))
    functions, n_sf, sf_lines = [], [], []
    for e in elements:
        if not per[e]:
            raise N2P2FormatError(f"{path}: no symmetry function for element {e}")
        per[e].sort(key=lambda x: x[0])
        n_sf.append(len(per[e]))
        for _, sf, n in per[e]:
            functions.append(dict(sf, center=e, eta=sf["eta"] / L ** 2, rs=sf["rs"] * L, rc=sf["rc"] * L))
            sf_lines.append(n)

    # -- scaling (Mode::setupSymmetryFunctionScaling, SymFnc::setScalingType)
    has_scale = st.has("scale_symmetry_functions")
    has_center = st.has("center_symmetry_functions")
    if has_scale and not has_center:
        scaling = "scale"
    elif has_center and not has_scale:
        scaling = "center"
    elif has_scale and has_center:
        scaling = "scalecenter"
    elif st.has("scale_symmetry_functions_sigma"):
        scaling = "sigma"
    else:
        scaling = "none"
    smin = _float(st.get("scale_min_short", "0.0"), st, "scale_min_short")
    smax = _float(st.get("scale_max_short", "1.0"), st, "scale_max_short")
    F = max(n_sf)
    mean = np.zeros((S, F))
    std = np.ones((S, F))
    spath = os.path.join(directory, "scaling.data")
    if scaling != "none":
        if not os.path.isfile(spath):
            raise N2P2FormatError(f"{spath} missing: input.nn asks for symmetry function scaling "
                                  f"({scaling}), whose statistics it holds")
        if scaling in ("scale", "scalecenter", "sigma") and smax == smin:
            raise st.err("scale_max_short", "scale_min_short == scale_max_short")
        rows = _scaling_lines(spath)
        if len(rows) < sum(n_sf):
            raise N2P2FormatError(f"{spath}: {len(rows)} lines for {sum(n_sf)} symmetry functions")
        if len(rows) > sum(n_sf):
            warnings.warn(f"{spath}: {len(rows) - sum(n_sf)} lines after the symmetry function statistics are "
                          "ignored (as n2p2 does)", stacklevel=2)
        r = 0
        for s, e in enumerate(elements):
            for k in range(n_sf[s]):
                tok, n = rows[r]
                r += 1
                if len(tok) < 5:
                    raise N2P2FormatError(f"{spath} line {n}: expected '<element> <function> <min> <max> <mean> "
                                          "[<sigma>]'")
                if tok[0] != str(s + 1) or tok[1] != str(k + 1):
                    raise N2P2FormatError(f"{spath} line {n}: expected element {s + 1} function {k + 1}, "
                                          f"found {tok[0]} {tok[1]}")
                gmin, gmax, gmean = (_scaling_number(t, spath, n) for t in tok[2:5])
                gsig = _scaling_number(tok[5], spath, n) if len(tok) > 5 else float("nan")
                # n2p2: Gs = Smin + (Smax - Smin) (G - Gref) / width  ==  (G - mean) / std
                if scaling == "center":
                    mean[s, k], std[s, k] = gmean, 1.0
                    continue
                width = gsig if scaling == "sigma" else gmax - gmin
                if not (math.isfinite(width) and width != 0.0):
                    raise N2P2FormatError(
                        f"{spath} line {n}: {'sigma' if scaling == 'sigma' else 'Gmax - Gmin'} = {width} "
                        f"for {e} function {k + 1} (input.nn line {sf_lines[sum(n_sf[:s]) + k]}): "
                        "n2p2 would divide by it")
                gref = gmin if scaling == "scale" else gmean
                std[s, k] = width / (smax - smin)
                mean[s, k] = gref - smin * std[s, k]

    # -- networks (Mode::setupNeuralNetwork; global topology only, the per-element keywords are refused above)
    topo = _topology(st, elements, n_sf)
    hidden = topo[0][0][1:-1]
    letters = topo[0][1]
    normalize_nodes = st.has("normalize_nodes")
    weights = []
    for s, e in enumerate(elements):
        wpath = os.path.join(directory, f"weights.{atomic_numbers[e]:03d}.data")
        if not os.path.isfile(wpath):
            raise N2P2FormatError(f"{wpath} missing: the weights of the {e} network")
        weights.append(_read_weights(wpath, topo[s][0]))
    model = BPNNModel(
        [atomic_numbers[e] for e in elements], hidden=hidden, activation=letters, isolated_atom_e0=False,
        descriptor={"type": "n2p2", "functions": functions, "cutoff_type": cutoff_type,
                    "cutoff_alpha": cutoff_alpha})
    with torch.no_grad():
        for s in range(S):
            linears = [m for m in model.nets[s] if isinstance(m, torch.nn.Linear)]
            for (W, b), lin in zip(weights[s], linears):
                if normalize_nodes:  # n2p2: pre-activation (W x + b) / (neurons of the previous layer)
                    W, b = W / W.shape[1], b / W.shape[1]
                lin.weight.zero_()  # padding inputs (columns >= F_s) keep zero weights
                lin.weight[:, :W.shape[1]] = torch.as_tensor(W, dtype=torch.float64)
                lin.bias.copy_(torch.as_tensor(b, dtype=torch.float64))
        model.feature_mean.copy_(torch.as_tensor(mean))
        model.feature_std.copy_(torch.as_tensor(std))
        model.energy_scale.fill_(U / conv_energy)
        model.e0.copy_(torch.tensor([(mean_energy + atom_energy[e]) * U for e in elements], dtype=torch.float64))
    model.eval()
    model.metadata = {"n2p2": {
        "source": os.path.abspath(directory), "length_unit_angstrom": L, "energy_unit_eV": U, "elements": elements,
        "scaling": scaling, "scale_min_short": smin, "scale_max_short": smax, "normalize": normalize,
        "mean_energy": mean_energy, "conv_energy": conv_energy, "conv_length": conv_length,
        "normalize_nodes": normalize_nodes, "atom_energy": atom_energy, "cutoff_type": cutoff_type,
        "cutoff_alpha": cutoff_alpha}}
    return model
