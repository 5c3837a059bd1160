"""Catalog names as the command line writes them: ``name`` or ``name:parameter``."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import TypeVar

import sympy as sp

from .activations import ACTIVATIONS, PARAMETRIC, Activation
from .losses import LOSSES, LossFunction
from .numbers import PARAMETER_DIGITS, PARAMETER_RANGE, UnknownName, decimal

T = TypeVar("T")

_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def _parameter(name: str, what: str, text: str) -> sp.Rational:
    """An exact decimal, bounded in length, digits and range before any arithmetic."""
    text = text.strip()
    example = f"e.g. {name}:0.2"
    if len(text) > 40 or not _NUMBER.fullmatch(text):
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise UnknownName(
            f"activation {name!r}: {what} {shown!r} is not a number: give a decimal ({example})"
        )
    mantissa, _, exponent = text.lower().partition("e")
    sign = -1 if mantissa.startswith("-") else 1
    whole, _, fraction = mantissa.lstrip("+-").partition(".")
    digits = (whole + fraction).lstrip("0")
    significant = digits.rstrip("0")
    if len(significant) > PARAMETER_DIGITS:
        raise UnknownName(
            f"activation {name!r}: {what} {text!r} has more than {PARAMETER_DIGITS} significant digits"
        )
    low, high = PARAMETER_RANGE
    bounds = f"{decimal(low)} <= |{what}| <= {decimal(high)}"
    if not significant:
        raise UnknownName(f"activation {name!r}: {what} {text!r} must not be 0 ({bounds})")
    # (whole + fraction) * 10**(exponent - len(fraction)); bound the exponent before using it
    power = int(exponent or "0") - len(fraction) if len(exponent.lstrip("+-0")) <= 4 else None
    value = None
    if power is not None and abs(power) <= 100:
        value = sign * sp.Rational(int(whole + fraction)) * sp.Rational(10) ** power
    if value is None or not low <= abs(value) <= high:
        raise UnknownName(f"activation {name!r}: {what} {text!r} is out of range ({bounds})")
    return value


def _lookup(table: Mapping[str, T], kind: str, name: str) -> T:
    if name in table:
        return table[name]
    near = difflib.get_close_matches(name, list(table), n=1, cutoff=0.5)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    raise UnknownName(f"unknown {kind} {name!r} (choose from {', '.join(table)}){hint}")


def activation(name: str) -> Activation:
    """Look up ``name``, or ``name:value`` for a parametric one (``leaky_relu:0.2``)."""
    base, colon, value = name.partition(":")
    if not colon:
        return _lookup(ACTIVATIONS, "activation", name)
    if base not in PARAMETRIC:
        _lookup(ACTIVATIONS, "activation", base)
        raise UnknownName(f"activation {base!r} takes no parameter (got {name!r})")
    make, what = PARAMETRIC[base]
    return make(_parameter(base, what, value))


def loss_function(name: str) -> LossFunction:
    return _lookup(LOSSES, "loss", name)
