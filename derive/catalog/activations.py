"""The activations, each defined once as a SymPy expression; everything else is derived."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, cached_property

import sympy as sp

from .decide import same
from .numbers import decimal
from .stable import stable
from .symbols import A, Z, j, k, outputs, z


def _occurrences(expr: sp.Expr, var: sp.Symbol) -> int:
    return sum(1 for node in sp.preorder_traversal(expr) if node == var)


def through(definition: sp.Expr, derivative: sp.Expr, output: sp.Symbol = A) -> Iterator[sp.Expr]:
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

        Smooth activations: see ``through``.  Piecewise ones are rewritten
        branch by branch; the branch condition z > 0 is first tried as A > 0
        and kept on z (which the code has at hand) if that cannot be proved.
        A candidate is kept only if ``rewrite_holds`` proves it.
        """
        if not self.entrywise:
            return None
        if not isinstance(self.definition, sp.Piecewise):
            for candidate in through(self.definition, self.derivative):
                if rewrite_holds(self, candidate):
                    return sp.factor_terms(candidate)  # A (1 - A), not A - A**2
            return None
        branches = []
        for (piece, cond), (slope, _) in zip(
            self.definition.args, self.derivative.args, strict=True
        ):
            branches.append((next(through(piece, slope), slope), cond))
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
