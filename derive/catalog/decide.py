"""``same``: the decision procedure for equality of scalar formulas, and the checks built on it.

Every derived form in the catalog is accepted only after one of these decides
it equal to what it replaces; none of them guesses (an undecided case is False).
"""

from __future__ import annotations

import sympy as sp

from .symbols import z


def _exp_as_powers(expr: sp.Expr) -> sp.Expr:
    """exp(c z) -> t**c for integer c, so ``cancel`` sees one generator t."""
    t = sp.Dummy("t", positive=True)

    def power(arg: sp.Expr) -> sp.Expr:
        coeff = sp.expand(arg).as_coefficients_dict()
        if set(coeff) <= {z} and all(c.is_integer for c in coeff.values()):
            return t ** coeff.get(z, 0)
        return sp.exp(arg)

    return expr.replace(sp.exp, power)


def _smooth_zero(expr: sp.Expr) -> bool:
    """Decide expr == 0 for expressions built from z, exp, log and tanh.

    Rewritten in exp and with exp(z) as a single generator t, the expression
    is a rational function of t and z; ``cancel`` decides that exactly.
    """
    expr = sp.expand(expr)
    if expr == 0:
        return True
    expr = sp.expand(expr.rewrite(sp.log).rewrite(sp.exp))
    if expr == 0:
        return True
    return bool(sp.cancel(sp.together(_exp_as_powers(expr))) == 0)


_POSITIVE = sp.Symbol("p", positive=True)
_NONPOSITIVE = -sp.Symbol("q", nonnegative=True)
_KINKED = (sp.Piecewise, sp.Min, sp.Max, sp.Heaviside)
SAMPLE_POINTS = (-7, -1, sp.Rational(-1, 3), 0, sp.Rational(1, 3), 1, 7)
"""Points on both sides of 0, and 0 itself, where ``same`` also compares numerically."""


def same(lhs: sp.Expr, rhs: sp.Expr) -> bool:
    """Decide lhs == rhs for every real z (and A, if present, already substituted).

    Piecewise forms split at 0: on z > 0 and on z <= 0 SymPy's assumptions
    settle every condition, leaving smooth formulas for ``_smooth_zero``.  A
    condition SymPy cannot settle makes the answer False, never a guess.  As
    a second, independent check both sides are compared at points on both
    sides of 0 and at 0 itself.
    """
    difference = lhs - rhs
    if difference.has(*_KINKED):
        for region in (_POSITIVE, _NONPOSITIVE):
            part = sp.piecewise_fold(difference.subs(z, region))
            if part.has(*_KINKED):
                return False
            var = region.free_symbols.pop()
            if not _smooth_zero(part.subs(var, (z if region is _POSITIVE else -z))):
                return False
    elif not _smooth_zero(difference):
        return False
    for point in SAMPLE_POINTS:
        value = difference.subs(z, point).evalf(30)
        if not (value.is_number and abs(value) < 1e-20):
            return False
    return True


def softmax_form_holds(definition: sp.Expr, form: sp.Expr) -> bool:
    """Decide form == definition for a row formula, log-sum-exp written out."""
    difference = sp.expand(sp.powsimp(form.rewrite(sp.log), combine="exp", deep=True)) - definition
    if sp.expand(difference) == 0:
        return True
    return bool(sp.cancel(sp.together(sp.expand(difference))) == 0)
