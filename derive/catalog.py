"""Activations and losses, each defined once as a SymPy expression.

Everything else about an entry is derived from that one definition: its
derivative (``sympy.diff``), the rewrite of the derivative through the
activation's own output A (so generated code can reuse the stored
activation), its LaTeX and its numpy code.  Nothing here is a hand-written
derivative.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from functools import cached_property

import sympy as sp

z = sp.Symbol("z", real=True)
"""The pre-activation, a scalar entry of some z_l."""

A = sp.Symbol("A", real=True)
"""The activation's output a(z), used to rewrite a'(z) without recomputing."""

pred = sp.Symbol("a", real=True)
"""One entry of the prediction Ŷ (named so that SymPy prints Ŷ - Y, not -Y + Ŷ)."""

target = sp.Symbol("y", real=True)
"""One entry of the target Y."""

batch, outputs = sp.symbols("m n_L", positive=True, integer=True)


@dataclass(frozen=True)
class Activation:
    """An entrywise activation a(z)."""

    name: str
    definition: sp.Expr
    latex_name: str
    summary: str

    @cached_property
    def derivative(self) -> sp.Expr:
        """a'(z), derived by SymPy."""
        return sp.diff(self.definition, z)

    @cached_property
    def derivative_from_output(self) -> sp.Expr | None:
        """a'(z) written through A = a(z) alone, if SymPy finds such a form.

        Tried in order: replace a(z) by A in the derivative; else invert
        A = a(z) for z and substitute.  A candidate is kept only if it is free
        of z and ``rewrite_holds`` proves it.
        """
        candidates = [self.derivative.subs(self.definition, A)]
        try:
            inverses = sp.solve(sp.Eq(A, self.definition), z)
        except (NotImplementedError, ValueError):
            inverses = []
        candidates += [sp.simplify(self.derivative.subs(z, inv)) for inv in inverses]
        for candidate in candidates:
            if z not in candidate.free_symbols and rewrite_holds(self, candidate):
                return sp.expand(candidate)
        return None


def rewrite_holds(activation: Activation, rewrite: sp.Expr) -> bool:
    """Decide exactly whether ``rewrite(A := a(z))`` equals ``a'(z)``."""
    difference = rewrite.subs(A, activation.definition) - activation.derivative
    return sp.simplify(difference.rewrite(sp.exp)) == 0


@dataclass(frozen=True)
class LossFunction:
    """A loss summed entrywise over batch and outputs, optionally as a mean."""

    name: str
    entry: sp.Expr  # the loss of one entry, in ``pred`` and ``target``
    latex_template: str  # LaTeX of L with {pred} and {target} placeholders
    summary: str
    scale: sp.Expr = field(default=sp.Integer(1))  # 1, or 1/(m n_L) for a mean

    @cached_property
    def gradient(self) -> sp.Expr:
        """∂L/∂Ŷ entrywise, derived by SymPy."""
        return sp.factor_terms(sp.diff(self.scale * self.entry, pred))


ACTIVATIONS: dict[str, Activation] = {
    act.name: act
    for act in [
        Activation("tanh", sp.tanh(z), r"\tanh", "hyperbolic tangent (the seed's)"),
    ]
}

LOSSES: dict[str, LossFunction] = {
    loss.name: loss
    for loss in [
        LossFunction(
            "l2",
            (pred - target) ** 2,
            r"\lVert {pred} - {target} \rVert^2",
            "sum of squared errors over batch and outputs (the seed's)",
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
    return _lookup(ACTIVATIONS, "activation", name)


def loss_function(name: str) -> LossFunction:
    return _lookup(LOSSES, "loss", name)
