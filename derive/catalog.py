"""Activations and losses, each defined once as a SymPy expression.

Everything else about an entry is derived from that one definition: its
derivative (``sympy.diff``), the rewrite of the derivative through the
activation's own output A (so generated code can reuse the stored
activation), the numerically stable form the code evaluates, its LaTeX and
its numpy code.  Nothing here is a hand-written derivative, and every derived
form is accepted only after ``same`` decides it equal to what it replaces.

Kinks: a piecewise definition is differentiated branch by branch, so at a
branch point the derivative is that of the branch the point belongs to; every
piecewise entry here splits at ``z > 0``, so a'(0) is the left derivative
(relu'(0) = 0, leaky_relu'(0) = slope, elu'(0) = alpha).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache, cached_property

import sympy as sp
from sympy.codegen.cfunctions import expm1
from sympy.codegen.numpy_nodes import logaddexp

z = sp.Symbol("z", real=True)
"""The pre-activation, a scalar entry of some z_l."""

A = sp.Symbol("A", real=True)
"""The activation's output a(z), used to rewrite a'(z) without recomputing."""

pred = sp.Symbol("a", real=True)
"""One entry of the prediction Ŷ (named so that SymPy prints Ŷ - Y, not -Y + Ŷ)."""

target = sp.Symbol("y", real=True)
"""One entry of the target Y."""

batch, outputs = sp.symbols("m n_L", positive=True, integer=True)

# A row of the output layer, for softmax (which is not entrywise): entries
# Z[1..n_L] of the logits, P[i] of the prediction and T[i] of the target.
i, j, k = sp.symbols("i j k", integer=True, positive=True)
Z = sp.IndexedBase("z", real=True)
P = sp.IndexedBase("p", real=True)
T = sp.IndexedBase("y", real=True)


class LogSumExp(sp.Function):
    """log Σ_j exp(z_j) over one row; numpy evaluates it with the max taken out."""

    nargs = 1
    is_real = True

    def _eval_rewrite_as_log(self, row, **kwargs):
        return sp.log(sp.Sum(sp.exp(row[j]), (j, 1, outputs)))


# --- exact equality of scalar formulas --------------------------------------


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
    return sp.cancel(sp.together(_exp_as_powers(expr))) == 0


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


# --- derived forms ------------------------------------------------------------


def _occurrences(expr: sp.Expr, var: sp.Symbol) -> int:
    return sum(1 for node in sp.preorder_traversal(expr) if node == var)


def _through(definition: sp.Expr, derivative: sp.Expr, output: sp.Symbol = A) -> Iterator[sp.Expr]:
    """Candidate forms of ``derivative`` free of z, given output = definition(z).

    First replace definition(z) by the output where it occurs verbatim; else,
    when z occurs once in the definition (so it unwinds to a unique inverse),
    let ``solve`` invert it and substitute.  Candidates are proved by callers.
    """
    if z not in derivative.free_symbols:
        yield derivative
        return
    direct = derivative.subs(definition, output)
    if z not in direct.free_symbols:
        yield direct
    if _occurrences(definition, z) == 1:
        try:
            inverses = sp.solve(sp.Eq(output, definition), z)
        except (NotImplementedError, ValueError):
            inverses = []
        for inverse in inverses:
            candidate = sp.expand(sp.simplify(derivative.subs(z, inverse)))
            if z not in candidate.free_symbols:
                yield candidate


def _is_split_at_zero(expr: sp.Piecewise) -> bool:
    conds = [c for _, c in expr.args]
    return len(conds) == 2 and conds[0] == (z > 0) and conds[1] == sp.true


def _clamped(expr: sp.Expr) -> sp.Expr:
    """Each branch of a split at 0 sees only its own side of 0.

    numpy's ``where`` evaluates both branches everywhere, so exp(z) in the
    z <= 0 branch would overflow for large z although it is never selected.
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


def stable(expr: sp.Expr) -> sp.Expr:
    """The form the generated code evaluates: equal to ``expr`` (``same`` checks)."""
    return sp.powsimp(_clamped(expr.replace(lambda e: True, _stable_step)))


def stable_holds(expr: sp.Expr) -> bool:
    return same(stable(expr), expr)


def softmax_form_holds(definition: sp.Expr, form: sp.Expr) -> bool:
    """Decide form == definition for a row formula, log-sum-exp written out."""
    difference = sp.expand(sp.powsimp(form.rewrite(sp.log), combine="exp", deep=True)) - definition
    if sp.expand(difference) == 0:
        return True
    return sp.cancel(sp.together(sp.expand(difference))) == 0


def row_loss_form_holds(loss: LossFunction, form: sp.Expr) -> bool:
    """The row loss's code form (its sum over i dropped) is the log-softmax form.

    The code sums ``form`` over every entry, which is Σ_i of it per row.
    """
    restored = sp.Sum(form, (i, 1, outputs))
    expected = loss.logit_entry
    difference = sp.expand((restored.rewrite(sp.log) - expected).doit())
    if difference == 0:
        return True
    return sp.simplify(difference) == 0


# --- activations --------------------------------------------------------------


@dataclass(frozen=True)
class Activation:
    """An activation a(z): entrywise, or (softmax) over a row of Z[k]."""

    name: str
    definition: sp.Expr
    latex_name: str
    summary: str

    @property
    def entrywise(self) -> bool:
        return not self.definition.has(sp.Indexed)

    @cached_property
    def derivative(self) -> sp.Expr:
        """a'(z), derived by SymPy."""
        if not self.entrywise:
            raise ValueError(f"{self.name} is not entrywise; it has a Jacobian, not a'(z)")
        return sp.diff(self.definition, z)

    @cached_property
    def derivative_from_output(self) -> sp.Expr | None:
        """a'(z) written through A = a(z), if SymPy finds such a form.

        Smooth activations: see ``_through``.  Piecewise ones are rewritten
        branch by branch; the branch condition z > 0 is first tried as A > 0
        and kept on z (which the code has at hand) if that cannot be proved.
        A candidate is kept only if ``rewrite_holds`` proves it.
        """
        if not self.entrywise:
            return None
        if not isinstance(self.definition, sp.Piecewise):
            for candidate in _through(self.definition, self.derivative):
                if rewrite_holds(self, candidate):
                    return sp.factor_terms(candidate)  # A (1 - A), not A - A**2
            return None
        branches = []
        for (piece, cond), (slope, _) in zip(
            self.definition.args, self.derivative.args, strict=True
        ):
            branches.append((next(_through(piece, slope), slope), cond))
        for cond_var in (A, z):
            candidate = sp.Piecewise(*[(e, c.subs(z, cond_var)) for e, c in branches])
            if candidate != self.derivative and rewrite_holds(self, candidate):
                return candidate
        return None

    @cached_property
    def code_form(self) -> sp.Expr:
        """The definition as the code evaluates it (``stable``)."""
        return stable(self.definition)

    @property
    def derivative_code_form(self) -> sp.Expr:
        """a'(z) as the code evaluates it: through A if possible, made stable."""
        rewrite = self.derivative_from_output
        return stable(self.derivative if rewrite is None else rewrite)


def rewrite_holds(activation: Activation, rewrite: sp.Expr) -> bool:
    """Decide exactly whether ``rewrite(A := a(z))`` equals ``a'(z)``."""
    return same(rewrite.subs(A, activation.definition), activation.derivative)


_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")

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


LEAKY_SLOPE = sp.Rational(1, 100)
ELU_ALPHA = sp.Integer(1)


@cache
def leaky_relu(slope: sp.Rational = LEAKY_SLOPE) -> Activation:
    name = "leaky_relu" if slope == LEAKY_SLOPE else f"leaky_relu:{decimal(slope)}"
    return Activation(
        name,
        sp.Piecewise((z, z > 0), (slope * z, True)),
        r"\operatorname{leaky\_relu}",
        f"z for z > 0, else {decimal(slope)} z",
    )


@cache
def elu(alpha: sp.Rational = ELU_ALPHA) -> Activation:
    name = "elu" if alpha == ELU_ALPHA else f"elu:{decimal(alpha)}"
    return Activation(
        name,
        sp.Piecewise((z, z > 0), (alpha * (sp.exp(z) - 1), True)),
        r"\operatorname{elu}",
        "z for z > 0, else " + ("e^z - 1" if alpha == 1 else f"{decimal(alpha)} (e^z - 1)"),
    )


SOFTMAX = Activation(
    "softmax",
    sp.exp(Z[k]) / sp.Sum(sp.exp(Z[j]), (j, 1, outputs)),
    r"\operatorname{softmax}",
    "e^{z_k} / Σ_j e^{z_j} over each row (the link of softmax_cross_entropy)",
)

ACTIVATIONS: dict[str, Activation] = {
    act.name: act
    for act in [
        Activation("tanh", sp.tanh(z), r"\tanh", "hyperbolic tangent (the seed's)"),
        Activation("sigmoid", 1 / (1 + sp.exp(-z)), r"\sigma", "logistic sigmoid 1 / (1 + e^{-z})"),
        Activation(
            "relu", sp.Piecewise((z, z > 0), (0, True)), r"\operatorname{relu}", "max(z, 0)"
        ),
        leaky_relu(),
        Activation("softplus", sp.log(1 + sp.exp(z)), r"\operatorname{softplus}", "log(1 + e^z)"),
        Activation("identity", z, r"\operatorname{id}", "z (a linear layer)"),
        elu(),
        Activation(
            "gelu",
            z / 2 * (1 + sp.tanh(sp.sqrt(2 / sp.pi) * (z + sp.Rational(44715, 1000000) * z**3))),
            r"\operatorname{gelu}",
            "GELU, tanh approximation",
        ),
        SOFTMAX,
    ]
}

PARAMETRIC = {"leaky_relu": (leaky_relu, "slope"), "elu": (elu, "alpha")}


# --- losses -------------------------------------------------------------------


@dataclass(frozen=True)
class LossFunction:
    """A loss summed over batch and outputs, optionally as a mean.

    ``entry`` is the loss of one entry in ``pred`` and ``target`` (or, for a
    row loss, of one row in P[i] and T[i]).  A loss with a ``link`` is fused
    with the output layer's activation: it reads the logits z_L, and its
    gradient ∂L/∂z_L is derived through the link (``assumption`` states what
    the derivation needs of the targets).
    """

    name: str
    entry: sp.Expr
    latex_template: str  # LaTeX of L with {pred} and {target} placeholders
    summary: str
    scale: sp.Expr = field(default=sp.Integer(1))  # 1, or 1/(m n_L) for a mean
    link: Activation | None = None
    assumption: str = ""

    @property
    def rowwise(self) -> bool:
        return self.entry.has(sp.Indexed)

    @property
    def argument(self) -> sp.Expr:
        """The symbol the loss is differentiated by: Ŷ's entry, or z (fused)."""
        if self.link is None:
            return pred
        return Z[k] if self.rowwise else z

    @cached_property
    def logit_entry(self) -> sp.Expr:
        """The entry (or row) loss in terms of ``argument``."""
        if self.link is None:
            return self.scale * self.entry
        if self.rowwise:
            # log p_i = z_i - log Σ_j e^{z_j}: exact, as e^{z} > 0 (expand_log's force).
            fused = self.entry.replace(
                lambda e: isinstance(e, sp.Indexed) and e.base == P,
                lambda e: self.link.definition.subs(k, e.indices[0]),
            )
            return sp.expand_log(fused, force=True)
        fused = self.entry.subs(pred, self.link.definition)
        return sp.expand(
            sp.expand_log(fused.replace(sp.log, lambda a: sp.log(sp.together(a))), force=True)
        )

    @cached_property
    def gradient_steps(self) -> list[sp.Expr]:
        """The derivation of ∂L/∂argument, step by step (for the LaTeX)."""
        raw = sp.diff(self.logit_entry, self.argument)
        if not self.rowwise:
            return list(dict.fromkeys([raw, sp.factor_terms(raw)]))
        inside = sp.piecewise_fold(raw.doit())
        if isinstance(inside, sp.Piecewise):  # the branch for 1 <= k <= n_L
            inside = inside.args[0].expr
        linear = inside.replace(lambda e: isinstance(e, sp.Sum), _factor_out_constants)
        used = linear.subs(sp.Sum(T[i], (i, 1, outputs)), 1)  # the assumption Σ_i y_i = 1
        return [linear, used]

    @cached_property
    def gradient(self) -> sp.Expr:
        """∂L/∂Ŷ entrywise (or ∂L/∂z_L for a fused loss), derived by SymPy."""
        return self.gradient_steps[-1]

    @cached_property
    def gradient_from_output(self) -> sp.Expr | None:
        """A fused loss's gradient through the link's output A (p − y), if found."""
        if self.link is None:
            return None
        if self.rowwise:
            candidate = self.gradient.subs(self.link.definition, A)
            return candidate if not candidate.has(Z) else None
        for candidate in _through(self.link.definition, self.gradient):
            if same(candidate.subs(A, self.link.definition), self.gradient):
                return candidate
        return None

    @cached_property
    def code_form(self) -> sp.Expr:
        """The entry (or row) loss as the code evaluates it: stable, sums dropped."""
        form = stable(self.logit_entry)
        return form.replace(lambda e: isinstance(e, sp.Sum), lambda e: e.function)


def _factor_out_constants(total: sp.Sum) -> sp.Expr:
    """Σ_i c f(i) = c Σ_i f(i) for c free of i (linearity)."""
    ((index, *_),) = total.limits
    constant, rest = sp.Mul(*total.function.as_ordered_factors()).as_independent(
        index, as_Add=False
    )
    return constant * sp.Sum(rest, *total.limits)


LOSSES: dict[str, LossFunction] = {
    loss.name: loss
    for loss in [
        LossFunction(
            "l2",
            (pred - target) ** 2,
            r"\lVert {pred} - {target} \rVert^2",
            "sum of squared errors over batch and outputs (the seed's)",
        ),
        LossFunction(
            "mse",
            (pred - target) ** 2,
            r"\frac{{1}}{{m\, n_L}} \lVert {pred} - {target} \rVert^2",
            "mean squared error, the mean over batch and outputs",
            scale=1 / (batch * outputs),
        ),
        LossFunction(
            "sigmoid_binary_cross_entropy",
            -(target * sp.log(pred) + (1 - target) * sp.log(1 - pred)),
            r"-\sum \left(Y \odot \log {pred} + (1 - Y) \odot \log(1 - {pred})\right)",
            "binary cross-entropy of a sigmoid output, summed over batch and outputs; "
            "targets in [0, 1]",
            link=ACTIVATIONS["sigmoid"],
        ),
        LossFunction(
            "softmax_cross_entropy",
            -sp.Sum(T[i] * sp.log(P[i]), (i, 1, outputs)),
            r"-\sum Y \odot \log {pred}",
            "cross-entropy of a softmax output, summed over the batch; "
            "each row of targets sums to 1",
            link=SOFTMAX,
            assumption=r"\sum_i Y_i = 1",
        ),
    ]
}


class UnknownName(ValueError):
    """A name that is not in the catalog; the message suggests the nearest."""


def _lookup(table: dict, kind: str, name: str):
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
