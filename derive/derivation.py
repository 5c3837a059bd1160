"""The matrix-level chain rule, applied by machine to the composition.

Reverse mode over the chain: each node type has one vector-Jacobian rule
(below, in ``pull``), the adjoint of every pre-activation z_l is given a name,
δ_l = ∂L/∂z_l, and everything else is expressed through those names:

    ∂L/∂Ŷ given by the loss,  δ_L = ∂L/∂Ŷ ⊙ a'(z_L),
    δ_{l-1} = (δ_l W_lᵀ) ⊙ a'(z_{l-1}),  ∂L/∂W_l = a_{l-1}ᵀ δ_l,  ∂L/∂b_l = 1ᵀ δ_l.

These are outputs of the rules, not inputs: ``proof`` checks them exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from . import model
from .expr import (
    Activate,
    ActivateDeriv,
    Add,
    Expr,
    Hadamard,
    InvSqrt,
    Loss,
    LossGrad,
    MatMul,
    Mean,
    Penalty,
    PenaltyGrad,
    Power,
    Scale,
    Spread,
    Sub,
    SumRows,
    Transpose,
    Var,
    substitute,
    total,
)
from .model import Network, Step

ONE = Var("1")
"""The seed adjoint ∂L/∂L."""


def _is_row(expr: Expr) -> bool:
    """True for one-row matrices that are broadcast over the batch."""
    return (isinstance(expr, Var) and expr.kind == "b") or isinstance(expr, SumRows)


def pull(expr: Expr, adjoint: Expr, into: dict[Var, list[Expr]]) -> None:
    """Push ``adjoint`` (∂L/∂expr) down to the variables ``expr`` reads."""
    if isinstance(expr, Var):
        into.setdefault(expr, []).append(adjoint)
    elif isinstance(expr, MatMul):
        pull(expr.left, MatMul(adjoint, Transpose(expr.right)), into)
        pull(expr.right, MatMul(Transpose(expr.left), adjoint), into)
    elif isinstance(expr, Add):
        pull(expr.left, SumRows(adjoint) if _is_row(expr.left) else adjoint, into)
        pull(expr.right, SumRows(adjoint) if _is_row(expr.right) else adjoint, into)
    elif isinstance(expr, Activate):
        pull(expr.arg, Hadamard(adjoint, ActivateDeriv(expr.layer, expr.arg)), into)
    elif isinstance(expr, Hadamard):  # ∂(l ⊙ r) = ∂l ⊙ r + l ⊙ ∂r
        pull(expr.left, Hadamard(adjoint, expr.right), into)
        pull(expr.right, Hadamard(adjoint, expr.left), into)
    elif isinstance(expr, Sub):
        pull(expr.left, adjoint, into)
        pull(expr.right, Scale(adjoint, sp.Integer(-1)), into)
    elif isinstance(expr, Scale):
        pull(expr.arg, Scale(adjoint, expr.factor), into)
    elif isinstance(expr, Spread):  # a broadcast's adjoint: the sum over the spread axis
        pull(expr.arg, total(adjoint, expr.axis), into)
    elif isinstance(expr, Mean):  # the adjoint spread back over the axis, over the count
        pull(expr.arg, Scale(Spread(adjoint, expr.axis, expr.count), 1 / expr.count), into)
    elif isinstance(expr, Power):  # ∂ u^k = k u^{k-1} ∂u
        lower = expr.arg if expr.exponent == 2 else Power(expr.arg, expr.exponent - 1)
        pull(expr.arg, Scale(Hadamard(adjoint, lower), sp.Integer(expr.exponent)), into)
    elif isinstance(expr, InvSqrt):  # ∂ (u + ε)^{-1/2} = -1/2 (u + ε)^{-3/2} ∂u
        cube = Power(expr, 3)
        pull(expr.arg, Scale(Hadamard(adjoint, cube), sp.Rational(-1, 2)), into)
    elif isinstance(expr, Loss):
        if adjoint != ONE:
            raise ValueError("the loss must be the end of the chain")
        pull(expr.pred, LossGrad(expr.pred, expr.target), into)
    elif isinstance(expr, Penalty):
        if adjoint != ONE:
            raise ValueError("the penalty must be a term of the objective")
        pull(expr.arg, PenaltyGrad(expr.arg), into)
    else:
        raise TypeError(f"no chain rule for {type(expr).__name__}")


def _total(parts: list[Expr]) -> Expr:
    """The sum of an adjoint's parts in the chain's order (the sweep collects them last
    step first): ∂/∂W_l = a_{l-1}ᵀ δ_l + λ W_l, the penalty's part last."""
    parts = parts[::-1]
    total = parts[0]
    for part in parts[1:]:
        total = Add(total, part)
    return total


def backward(steps: list[Step], seeds: dict[Var, Expr]) -> dict[Var, Expr]:
    """Adjoints of every variable the chain reads, in terms of named deltas.

    ``seeds`` gives the adjoints that start the sweep: {L: 1} for a whole
    network, or {z_l: G} for an arbitrary upstream gradient G (the step lemma).
    The returned map holds, for each z_l, the definition of δ_l; for every
    other variable, its gradient.
    """
    pending: dict[Var, list[Expr]] = {v: [g] for v, g in seeds.items()}
    result: dict[Var, Expr] = {}
    for step in reversed(steps):
        if step.target not in pending:
            continue
        adjoint = _total(pending.pop(step.target))
        if step.target.kind == "z":
            result[step.target] = adjoint
            adjoint = model.delta(step.target.layer)
        pull(step.expr, adjoint, pending)
    for var, parts in pending.items():
        result[var] = _total(parts)
    return result


@dataclass(frozen=True)
class Derivation:
    """The derived identities of one network."""

    network: Network
    deltas: dict[int, Expr]  # δ_l, in terms of δ_{l+1} (or ∂L/∂Ŷ for l = L)
    gradients: dict[Var, Expr]  # ∂L/∂W_l and ∂L/∂b_l, in terms of δ_l

    def unrolled(self, expr: Expr) -> Expr:
        """``expr`` with every δ replaced by its definition (a closed form)."""
        mapping = {model.delta(layer): d for layer, d in self.deltas.items()}
        previous = None
        while previous != expr:
            previous, expr = expr, substitute(expr, mapping)
        return expr


def derive(network: Network) -> Derivation:
    seeds = {model.LOSS: ONE}
    if network.l2:  # the objective L + P: ∂(L + P)/∂L = ∂(L + P)/∂P = 1
        seeds[model.PENALTY] = ONE
    adjoints = backward(network.steps() + network.penalty_steps(), seeds)
    deltas = {var.layer: adj for var, adj in adjoints.items() if var.kind == "z"}
    gradients = {p: adjoints[p] for p in network.parameters()}
    return Derivation(network, deltas, gradients)


def step_lemma_chain(layer: int, penalty: bool = False) -> tuple[list[Step], dict[Var, Expr]]:
    """One generic layer fed by an arbitrary upstream gradient G = ∂L/∂z_l.

    z_{l-1} is free; a_{l-1} = a(z_{l-1}); z_l = a_{l-1} W_l + b_l.  With
    ``penalty`` the objective also holds λ/2 ‖W_l‖_F² (seeded with 1, as in
    ``derive``).
    """
    below, here = layer - 1, layer
    steps = [
        Step(2 * below, model.a(below), Activate(below, model.z(below))),
        Step(
            2 * here - 1, model.z(here), Add(MatMul(model.a(below), model.W(here)), model.b(here))
        ),
    ]
    seeds: dict[Var, Expr] = {model.z(here): model.INCOMING}
    if penalty:
        steps.append(Step(2 * here + 1, model.PENALTY, Penalty(model.W(here))))
        seeds[model.PENALTY] = ONE
    return steps, seeds


def output_lemma_chain(layer: int, fused: bool = False) -> tuple[list[Step], dict[Var, Expr]]:
    """The last layer and the loss: a_L = a(z_L), L = loss(a_L, Y).

    For a fused loss, L = loss(z_L, Y): the loss of the link's output as a
    function of the logits, so δ_L is the loss's own gradient.
    """
    steps = [
        Step(2 * layer, model.a(layer), Activate(layer, model.z(layer))),
        Step(2 * layer + 1, model.LOSS, Loss(model.z(layer) if fused else model.a(layer), model.Y)),
    ]
    return steps, {model.LOSS: ONE}
