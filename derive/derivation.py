"""The matrix-level chain rule, applied by machine to the composition.

Reverse mode over the chain: each node type has one vector-Jacobian rule
(below, in ``pull``), the adjoint of every pre-activation z_l is given a name,
δ_l = ∂L/∂z_l, and everything else is expressed through those names:

    ∂L/∂Ŷ given by the loss,  δ_L = ∂L/∂Ŷ ⊙ a'(z_L),
    δ_{l-1} = (δ_l W_lᵀ) ⊙ a'(z_{l-1}),  ∂L/∂W_l = a_{l-1}ᵀ δ_l,  ∂L/∂b_l = 1ᵀ δ_l.

These are outputs of the rules, not inputs: ``proof`` checks them exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from . import model
from .expr import (
    Activate,
    ActivateDeriv,
    Add,
    Expr,
    Hadamard,
    InvSqrt,
    Kind,
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
    SumCols,
    SumRows,
    Transpose,
    Var,
    assert_never,
    substitute,
    total,
)
from .layers import SEED, Step, dense_lemma_chain, numbered
from .model import Network

ONE = SEED
"""The seed adjoint ∂L/∂L."""

step_lemma_chain = dense_lemma_chain
"""The dense layer's one-step lemma (``layers.Dense.lemma_chain``), under its historic name."""


def _is_row(expr: Expr) -> bool:
    """True for one-row matrices that are broadcast over the batch."""
    return (isinstance(expr, Var) and expr.kind is Kind.B) or isinstance(expr, SumRows)


def pull(expr: Expr, adjoint: Expr, into: dict[Var, list[Expr]]) -> None:
    """Push ``adjoint`` (∂L/∂expr) down to the variables ``expr`` reads."""
    match expr:
        case Var():
            into.setdefault(expr, []).append(adjoint)
        case MatMul(left, right):
            pull(left, MatMul(adjoint, Transpose(right)), into)
            pull(right, MatMul(Transpose(left), adjoint), into)
        case Add(left, right):
            pull(left, SumRows(adjoint) if _is_row(left) else adjoint, into)
            pull(right, SumRows(adjoint) if _is_row(right) else adjoint, into)
        case Activate(layer, arg):
            pull(arg, Hadamard(adjoint, ActivateDeriv(layer, arg)), into)
        case Loss(pred, target):
            if adjoint != ONE:
                raise ValueError("the loss must be the end of the chain")
            pull(pred, LossGrad(pred, target), into)
        case Penalty(arg):
            if adjoint != ONE:
                raise ValueError("the penalty must be a term of the objective")
            pull(arg, PenaltyGrad(arg), into)
        case Hadamard(left, right):  # ∂(l ⊙ r) = ∂l ⊙ r + l ⊙ ∂r
            pull(left, Hadamard(adjoint, right), into)
            pull(right, Hadamard(adjoint, left), into)
        case Sub(left, right):
            pull(left, adjoint, into)
            pull(right, Scale(adjoint, sp.Integer(-1)), into)
        case Scale(arg, factor):
            pull(arg, Scale(adjoint, factor), into)
        case Spread(arg, axis, _):  # a broadcast's adjoint: the sum over the spread axis
            pull(arg, total(adjoint, axis), into)
        case Mean(arg, axis, count):  # the adjoint spread back over the axis, over the count
            pull(arg, Scale(Spread(adjoint, axis, count), 1 / count), into)
        case Power(arg, exponent):  # ∂ u^k = k u^{k-1} ∂u
            lower = arg if exponent == 2 else Power(arg, exponent - 1)
            pull(arg, Scale(Hadamard(adjoint, lower), sp.Integer(exponent)), into)
        case InvSqrt(arg, _):  # ∂ (u + ε)^{-1/2} = -1/2 (u + ε)^{-3/2} ∂u
            pull(arg, Scale(Hadamard(adjoint, Power(expr, 3)), sp.Rational(-1, 2)), into)
        case Transpose() | SumRows() | SumCols() | ActivateDeriv() | LossGrad() | PenaltyGrad():
            raise ValueError(f"{type(expr).__name__} is a derivative: the chain never contains it")
        case _:
            assert_never(expr)


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
    The returned map holds, for each step target whose adjoint is named (z_l),
    the definition of that name (δ_l); for every other variable, its gradient.
    """
    pending: dict[Var, list[Expr]] = {v: [g] for v, g in seeds.items()}
    result: dict[Var, Expr] = {}
    for step in reversed(steps):
        if step.target not in pending:
            continue
        adjoint = _total(pending.pop(step.target))
        if step.adjoint is not None:  # a named adjoint: δ_l for z_l
            result[step.target] = adjoint
            adjoint = step.adjoint
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
    named: dict[Var, Expr] = field(default_factory=dict)
    """Every named adjoint (δ_l, and ā_l, ĝ_l of the other kinds) → its definition, in
    chain order from the output; for a dense network the δ_l of ``deltas``."""

    def definitions(self) -> dict[Var, Expr]:
        """Each named adjoint → its definition (``named``, or the deltas when not given)."""
        return self.named or {model.delta(layer): d for layer, d in self.deltas.items()}

    def unrolled(self, expr: Expr) -> Expr:
        """``expr`` with every named adjoint replaced by its definition (a closed form)."""
        mapping = self.definitions()
        previous = None
        while previous != expr:
            previous, expr = expr, substitute(expr, mapping)
        return expr


def _layer(var: Var) -> int:
    if var.layer is None:
        raise ValueError(f"{var.name} names no layer")
    return var.layer


def derive(network: Network) -> Derivation:
    seeds: dict[Var, Expr] = {model.LOSS: ONE}
    if network.l2:  # the objective L + P: ∂(L + P)/∂L = ∂(L + P)/∂P = 1
        seeds[model.PENALTY] = ONE
    adjoints = backward(network.steps() + network.penalty_steps(), seeds)
    names = network.adjoint_names()
    named = {names[v]: adj for v, adj in adjoints.items() if v in names}
    deltas = {_layer(v): adj for v, adj in named.items() if v.kind is Kind.DELTA}
    gradients = {p: adjoints[p] for p in network.parameters()}
    return Derivation(network, deltas, gradients, named)


def output_lemma_chain(layer: int, fused: bool = False) -> tuple[list[Step], dict[Var, Expr]]:
    """The last layer and the loss: a_L = a(z_L), L = loss(a_L, Y).

    For a fused loss, L = loss(z_L, Y): the loss of the link's output as a
    function of the logits, so δ_L is the loss's own gradient.
    """
    steps = [
        Step(0, model.a(layer), Activate(layer, model.z(layer)), layer),
        Step(0, model.LOSS, Loss(model.z(layer) if fused else model.a(layer), model.Y)),
    ]
    return numbered(steps), {model.LOSS: ONE}
