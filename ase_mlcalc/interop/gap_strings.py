"""QUIP/gap_fit ``key=value`` argument strings, and gap_fit's ``gap={...}`` recipe as our GP terms.

Grammar as QUIP's ``param_read_line``: whitespace-separated ``key=value``
tokens, values ``{a b c}``, ``"a b"`` or a plain word, bare words (a
descriptor's type name) and Fortran logicals (T, F, .true., ...). Several
descriptors in a ``gap=`` string are separated by ``:``.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"""\s*([^\s=]+)(?:\s*=\s*(\{[^{}]*\}|"[^"]*"|'[^']*'|[^\s]*))?""")


def parse_args(s):
    """``key=value`` string -> (dict of str -> str, list of bare words), in order.

    Values ``{...}`` and quoted ones lose their delimiters; the last of duplicate keys wins.
    Raises ValueError for a string that does not parse.
    """
    out, bare = {}, []
    s = s.strip()
    pos = 0
    while pos < len(s):
        m = _TOKEN.match(s, pos)
        if not m or m.end() == pos:
            raise ValueError(f"cannot parse the argument string at {s[pos:]!r}")
        key, val = m.group(1), m.group(2)
        if val is None:
            bare.append(key)
        else:
            out[key] = val[1:-1].strip() if val[:1] in "{\"'" else val
        pos = m.end()
    return out, bare


def to_bool(v):
    """Fortran-style logical: T, F, .true., false, ... (first letter after an optional dot)."""
    t = str(v).strip().lstrip(".").lower()
    if t[:1] == "t":
        return True
    if t[:1] == "f":
        return False
    raise ValueError(f"not a logical value: {v!r}")


#: gap_fit's names -> (our keyword, type) per descriptor; "sparse_method" values map below
_SOAP_KEYS = {"cutoff": ("cutoff", float), "cutoff_transition_width": ("cutoff_transition_width", float),
              "n_max": ("n_max", int), "l_max": ("l_max", int), "atom_sigma": ("atom_sigma", float),
              "atom_gaussian_width": ("atom_sigma", float), "zeta": ("zeta", float), "delta": ("delta", float),
              "n_sparse": ("n_sparse", int), "covariance_sigma0": ("covariance_sigma0", float),
              "central_weight": ("central_weight", float),
              "central_reference_all_species": ("central_reference_all_species", to_bool),
              "sparse_method": ("sparse_method", str)}
_PAIR_KEYS = {"cutoff": ("cutoff", float), "cutoff_transition_width": ("cutoff_transition_width", float),
              "delta": ("delta", float), "theta_uniform": ("theta", float), "f0": ("f0", float),
              "n_sparse": ("n_sparse", int), "sparse_method": ("sparse_method", str)}
#: options whose only supported value is given here (gap_fit's default first)
_REQUIRED = {"soap": {"covariance_type": "dot_product", "add_species": "T", "normalise": "T", "normalize": "T"},
             "distance_2b": {"covariance_type": "ard_se", "add_species": "T"}}
_SPARSE_METHODS = {"cur_points": "cur", "cur": "cur", "random": "random", "uniform": "uniform"}


def gap_terms(gap):
    """Our GP term dicts (``kind`` + :class:`~ase_mlcalc.models.sparse_gp.SoapTerm` /
    :class:`~ase_mlcalc.models.sparse_gp.PairTerm` keywords + ``sparse_method``) from gap_fit's
    ``gap=`` string, e.g. ``"distance_2b cutoff=5 covariance_type=ard_se delta=0.5 theta_uniform=1
    n_sparse=20 sparse_method=uniform : soap cutoff=5 n_max=8 l_max=8 atom_sigma=0.5 zeta=4 delta=1
    n_sparse=1000 covariance_type=dot_product sparse_method=cur_points"``.

    ``n_sparse`` is per species (SOAP) or per species pair (distance_2b), as gap_fit's ``add_species``.

    Raises
    ------
    ValueError
        A descriptor other than soap and distance_2b, an option we do not implement, or a value of an
        option we only support at gap_fit's default; the message names it.
    """
    gap = gap.strip()
    if gap.startswith("{") and gap.endswith("}"):
        gap = gap[1:-1]
    terms = []
    for part in gap.split(":"):
        args, bare = parse_args(part)
        if len(bare) != 1 or bare[0] not in ("soap", "distance_2b"):
            raise ValueError(f"gap descriptor {part.strip()!r}: only soap and distance_2b are implemented")
        kind = bare[0]
        table = _SOAP_KEYS if kind == "soap" else _PAIR_KEYS
        term = {"kind": kind}
        for key, value in args.items():
            if key in _REQUIRED[kind]:
                ok = (to_bool(value) == to_bool(_REQUIRED[kind][key])) if _REQUIRED[kind][key] in "TF" \
                    else value == _REQUIRED[kind][key]
                if not ok:
                    raise ValueError(f"{kind} option {key}={value} is not implemented "
                                     f"(only {key}={_REQUIRED[kind][key]})")
                continue
            if key not in table:
                raise ValueError(f"{kind} option {key!r} is not implemented (known: "
                                 f"{', '.join(sorted(set(table) | set(_REQUIRED[kind])))})")
            name, kind_type = table[key]
            term[name] = kind_type(value)
        if "sparse_method" in term:
            if term["sparse_method"] not in _SPARSE_METHODS:
                raise ValueError(f"{kind} sparse_method={term['sparse_method']} is not implemented "
                                 f"(known: {', '.join(_SPARSE_METHODS)})")
            term["sparse_method"] = _SPARSE_METHODS[term["sparse_method"]]
        terms.append(term)
    return terms
