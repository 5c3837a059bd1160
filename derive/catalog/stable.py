"""Numerically stable forms: what generated code evaluates instead of a definition.

Target-neutral SymPy rewrites (log1p-style ``logaddexp``, ``expm1``,
log-sum-exp, a clamped argument in each branch of a split at 0); each backend's
printer writes them in its own library's functions.  ``same`` proves every form
equal to its definition where the catalog uses it.
"""

from __future__ import annotations

from functools import cache

import sympy as sp
from sympy.codegen.cfunctions import expm1
from sympy.codegen.numpy_nodes import logaddexp

from .symbols import LogSumExp, outputs, z


def _is_split_at_zero(expr: sp.Piecewise) -> bool:
    conds = [c for _, c in expr.args]
    return len(conds) == 2 and conds[0] == (z > 0) and conds[1] == sp.true


def _clamped(expr: sp.Expr) -> sp.Expr:
    """Each branch of a split at 0 sees only its own side of 0.

    An array library's ``where`` evaluates both branches everywhere, so exp(z)
    in the z <= 0 branch would overflow for large z although it is never selected.
    """
    if not isinstance(expr, sp.Piecewise) or not _is_split_at_zero(expr):
        return expr
    (upper, cond), (lower, other) = expr.args
    if upper.has(sp.exp, expm1):
        upper = upper.subs(z, sp.Max(z, 0))
    if lower.has(sp.exp, expm1):
        lower = lower.subs(z, sp.Min(z, 0))
    return sp.Piecewise((upper, cond), (lower, other))


def _stable_step(expr: sp.Expr) -> sp.Expr:
    """One node rewritten to a form that cannot overflow or cancel badly."""
    if isinstance(expr, sp.log) and expr.args[0].is_Add:
        rest = expr.args[0] - 1
        if isinstance(rest, sp.exp):  # log(1 + e^u) = logaddexp(0, u)
            return logaddexp(0, rest.args[0])
    if isinstance(expr, sp.Pow) and expr.base.is_Add:
        rest = expr.base - 1
        if isinstance(rest, sp.exp):  # (1 + e^u)^k = exp(k logaddexp(0, u))
            return sp.exp(expr.exp * logaddexp(0, rest.args[0]))
    if expr.is_Add and len(expr.args) == 2:
        for sign in (1, -1):
            rest = expr - sign
            if isinstance(-sign * rest, sp.exp):  # ±(e^u - 1) = ±expm1(u)
                return -sign * expm1((-sign * rest).args[0])
    if isinstance(expr, sp.Piecewise) and _is_split_at_zero(expr):
        (upper, _), (lower, _) = expr.args
        slope = sp.simplify(lower / upper) if upper == z else None
        if slope is not None and slope.is_number and 0 <= slope <= 1:
            # max(z, s z) for 0 <= s <= 1: numpy's maximum propagates NaN, where() would drop it
            return sp.Max(z, slope * z)
    if isinstance(expr, sp.Sum) and isinstance(expr.function, sp.exp):
        row = expr.function.args[0]
        if isinstance(row, sp.Indexed) and expr.limits == ((row.indices[0], 1, outputs),):
            return sp.exp(LogSumExp(row.base))  # Σ e^{z_j} = exp(logsumexp z)
    return expr


@cache
def stable(expr: sp.Expr) -> sp.Expr:
    """The form the generated code evaluates: equal to ``expr`` (``same`` checks)."""
    return sp.powsimp(_clamped(expr.replace(lambda e: True, _stable_step)))
