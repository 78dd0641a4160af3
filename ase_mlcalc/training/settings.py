"""Validation of fit settings, before any work: each error names the setting and the value it got."""

from __future__ import annotations

import numbers

import numpy as np


def check_positive(name, value):
    """``value`` as a float > 0; ValueError naming ``name`` otherwise."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number > 0, got {value!r}") from None
    if not (np.isfinite(x) and x > 0):
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return x


def check_nonnegative(name, value):
    """``value`` as a float >= 0; ValueError naming ``name`` otherwise."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number >= 0, got {value!r}") from None
    if not (np.isfinite(x) and x >= 0):
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return x


def check_int(name, value, minimum):
    """``value`` as an int >= ``minimum``; ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if not (isinstance(value, numbers.Real) and float(value).is_integer()):
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_positive_int(name, value):
    return check_int(name, value, 1)


def check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_fraction(name, value, upper_open=True):
    """``value`` in [0, 1) (or [0, 1] with ``upper_open=False``)."""
    x = check_nonnegative(name, value)
    if x > 1 or (upper_open and x == 1):
        raise ValueError(f"{name} must lie in [0, 1{')' if upper_open else ']'}, got {value!r}")
    return x
