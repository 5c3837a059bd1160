"""Exact decimal parameters: their bounds, their printing, and the error for a bad name."""

from __future__ import annotations

import sympy as sp

PARAMETER_DIGITS = 15
"""Most significant digits of an activation parameter (float64 keeps 15 exactly)."""

PARAMETER_RANGE = (sp.Rational(1, 10**6), sp.Integer(100))
"""Smallest and largest accepted magnitude |s| of an activation parameter.

Wider ones say nothing new about a network and risk overflow in backprop
(the parameter multiplies the gradient at every layer it is used in)."""


def decimal(value: sp.Rational) -> str:
    """A rational as its exact decimal (0.01, -2.5, 3), or p/q if it has none."""
    q, twos, fives = int(value.q), 0, 0
    while q % 2 == 0:
        q, twos = q // 2, twos + 1
    while q % 5 == 0:
        q, fives = q // 5, fives + 1
    if q != 1:
        return f"{value.p}/{value.q}"
    digits = max(twos, fives)
    scaled = abs(int(value.p)) * 10**digits // int(value.q)
    sign = "-" if value < 0 else ""
    if not digits:
        return f"{sign}{scaled}"
    whole, frac = divmod(scaled, 10**digits)
    return f"{sign}{whole}.{frac:0{digits}d}"


class UnknownName(ValueError):
    """A name that is not in the catalog; the message suggests the nearest."""
