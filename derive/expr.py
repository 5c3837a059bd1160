"""Matrix-level expressions: the one representation of the math.

SymPy's own matrix calculus cannot express a bias row broadcast over the batch
or an activation applied entrywise without falling into array expressions it
then cannot print or differentiate reliably.  So the chain, the derived
gradients and the recursive identities are trees of the small, frozen node
types below.  Every reader (the chain rule, the proof's evaluation, the LaTeX,
the code printers) walks them with one ``match`` over the closed union ``Node``
ending in ``assert_never``, so ``mypy --strict`` names a reader that lacks a
node type's ``case``.

Shape convention (the seed's row convention): a batch is m rows; X is
m x n_0, W_l is n_{l-1} x n_l, b_l is 1 x n_l and is added to every row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import NoReturn, TypeAlias

import sympy as sp


class Kind(Enum):
    """What a ``Var`` names; the value is its printed name (``Var.name``, code, LaTeX)."""

    _value_: str

    A = "a"  # a_l = σ(z_l); a_0 is the input X
    Z = "z"  # z_l, the pre-activation
    W = "W"  # weights of layer l
    B = "b"  # bias row of layer l
    DELTA = "delta"  # δ_l = ∂L/∂z_l, the named adjoint
    Y = "Y"  # the targets
    LOSS = "L"
    PENALTY = "P"  # λ/2 Σ_l ‖W_l‖_F²
    OBJECTIVE = "J"  # L + P, written out independently by the end-to-end proof
    INCOMING = "G"  # an arbitrary upstream gradient (step lemma)
    ONE = "1"  # the seed adjoint ∂L/∂L
    # a normalization layer l (issue 14): its statistics, intermediates and parameters
    MEAN = "mu"  # μ_l, the mean over the normalized axis
    CENTRED = "c"  # c_l = x - μ_l
    VARIANCE = "v"  # v_l, the biased variance over the normalized axis
    INV_STD = "s"  # s_l = (v_l + ε)^{-1/2}
    NORMALIZED = "xhat"  # x̂_l = c_l ⊙ s_l
    NORMALIZED_GRAD = "ghat"  # ĝ_l = ∂L/∂x̂_l, the normalization's named adjoint
    GAMMA = "gamma"  # γ_l, the learned scale row
    BETA = "beta"  # β_l, the learned shift row
    SUM_ADJOINT = "sum_g"  # a norm's Σ of its adjoint over the normalized axis (emitted code)
    SUM_ADJOINT_XHAT = "sum_gx"  # and Σ of adjoint ⊙ x̂, each computed once
    RUNNING_MEAN = "running_mean"  # a batch norm's running μ, read when not training
    RUNNING_VAR = "running_var"  # a batch norm's running (unbiased) variance, likewise
    # a residual block l and a dropout layer l (issue 14)
    HIDDEN = "h"  # h_l = σ(z_l), the residual branch before the skip add
    OUTPUT_GRAD = (
        "abar"  # ā_l = ∂L/∂a_l, a residual, normalization or dropout output's named adjoint
    )
    PROJ = "proj"  # P_l, a residual block's learned projection n_{l-1} x n_l ("P" is the penalty)
    MASK = "M"  # M_l, a dropout layer's 0/1 mask: an input of the network, given in proofs


class IRNode:
    """Base of the node classes: what every node offers without a ``match``."""

    def children(self) -> tuple[Expr, ...]:
        return ()


@dataclass(frozen=True)
class Var(IRNode):
    """A named matrix: an input, a parameter, a stored intermediate or a delta.

    ``kind`` says which (``Kind``); ``layer`` is its layer index, if any.
    """

    kind: Kind
    layer: int | None = None

    @property
    def name(self) -> str:
        return self.kind.value if self.layer is None else f"{self.kind.value}{self.layer}"


@dataclass(frozen=True)
class MatMul(IRNode):
    """Matrix product ``left @ right``."""

    left: Expr
    right: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.left, self.right)


@dataclass(frozen=True)
class Add(IRNode):
    """``left + right``; a one-row ``right`` is added to every row (bias)."""

    left: Expr
    right: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.left, self.right)


@dataclass(frozen=True)
class Hadamard(IRNode):
    """Entrywise product ``left ⊙ right``."""

    left: Expr
    right: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.left, self.right)


@dataclass(frozen=True)
class Transpose(IRNode):
    arg: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.arg,)


@dataclass(frozen=True)
class SumRows(IRNode):
    """``1ᵀ arg``: the sum over the batch, a one-row matrix."""

    arg: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.arg,)


@dataclass(frozen=True)
class Activate(IRNode):
    """The activation of ``layer`` applied entrywise: ``a(arg)``."""

    layer: int
    arg: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.arg,)


@dataclass(frozen=True)
class ActivateDeriv(IRNode):
    """The activation's derivative applied entrywise: ``a'(arg)``."""

    layer: int
    arg: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.arg,)


@dataclass(frozen=True)
class Loss(IRNode):
    """The scalar loss of prediction ``pred`` against target ``target``."""

    pred: Expr
    target: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.pred, self.target)


@dataclass(frozen=True)
class LossGrad(IRNode):
    """The loss's gradient with respect to the prediction, ``∂L/∂Ŷ``."""

    pred: Expr
    target: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.pred, self.target)


@dataclass(frozen=True)
class Penalty(IRNode):
    """The scalar L2 penalty λ/2 ‖arg‖_F² of a weight matrix (``derive.penalty``)."""

    arg: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.arg,)


@dataclass(frozen=True)
class PenaltyGrad(IRNode):
    """The penalty's gradient with respect to its matrix, λ ``arg``."""

    arg: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.arg,)


# --- the normalizations' nodes (issue 14) -----------------------------------------
#
# Broadcasting is explicit: a row (or column) enters an entrywise operation with a
# full matrix only through ``Spread``, so every node's operands have equal shapes
# (``shapes.shape``), and the broadcast's chain rule is a rule of its own (its adjoint
# is the sum over the spread axis).  Counts are SymPy symbols (m, n) carried by the
# nodes; an evaluator resolves them from the sizes it is given.


class Axis(Enum):
    """The axis a statistic runs over: the batch (rows; gives a row) or the features
    (columns; gives a column)."""

    BATCH = "batch"
    FEATURES = "features"


@dataclass(frozen=True)
class Sub(IRNode):
    """``left - right``, operands of equal shape."""

    left: Expr
    right: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.left, self.right)


@dataclass(frozen=True)
class Scale(IRNode):
    """``factor · arg`` for a scalar SymPy ``factor`` in rationals and counts (1/m, -1/2)."""

    arg: Expr
    factor: sp.Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.arg,)


@dataclass(frozen=True)
class SumCols(IRNode):
    """``arg 1``: the sum over the features, a one-column matrix."""

    arg: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.arg,)


@dataclass(frozen=True)
class Mean(IRNode):
    """The mean over ``axis`` of its ``count`` entries: a row (batch) or a column (features)."""

    arg: Expr
    axis: Axis
    count: sp.Symbol

    def children(self) -> tuple[Expr, ...]:
        return (self.arg,)


@dataclass(frozen=True)
class Spread(IRNode):
    """A row repeated down ``count`` rows (batch), or a column across ``count`` columns."""

    arg: Expr
    axis: Axis
    count: sp.Symbol

    def children(self) -> tuple[Expr, ...]:
        return (self.arg,)


@dataclass(frozen=True)
class Power(IRNode):
    """The entrywise integer power ``arg^{⊙k}`` (k ≥ 2)."""

    arg: Expr
    exponent: int

    def children(self) -> tuple[Expr, ...]:
        return (self.arg,)


@dataclass(frozen=True)
class InvSqrt(IRNode):
    """The entrywise ``(arg + ε)^{-1/2}``, ``eps`` a positive symbol (real for a variance arg ≥ 0)."""

    arg: Expr
    eps: sp.Symbol

    def children(self) -> tuple[Expr, ...]:
        return (self.arg,)


Node: TypeAlias = (
    Var
    | MatMul
    | Add
    | Hadamard
    | Transpose
    | SumRows
    | Activate
    | ActivateDeriv
    | Loss
    | LossGrad
    | Penalty
    | PenaltyGrad
    | Sub
    | Scale
    | SumCols
    | Mean
    | Spread
    | Power
    | InvSqrt
)
"""Every IR node type, a closed union.  A reader walks a tree with one ``match node:``
over these classes ending in ``case _: assert_never(node)``, so that a node type
added here is reported by ``mypy --strict`` in every reader that lacks its case."""


def assert_never(node: NoReturn) -> NoReturn:
    """The end of an exhaustive ``match`` (``typing.assert_never`` needs Python 3.11;
    derive supports 3.10, where mypy reads a ``NoReturn`` parameter the same way)."""
    raise TypeError(f"no rule for {type(node).__name__}")


Expr: TypeAlias = Node
"""The name annotations across derive use for an IR tree: the same closed union."""


def rebuild(expr: Expr, children: tuple[Expr, ...]) -> Expr:
    """Return ``expr`` with its children replaced, in order."""
    match expr:
        case Var():
            return expr
        case MatMul() | Add() | Hadamard() | Sub():
            left, right = children
            return type(expr)(left, right)
        case Transpose() | SumRows() | SumCols() | Penalty() | PenaltyGrad():
            (arg,) = children
            return type(expr)(arg)
        case Scale(_, factor):
            (arg,) = children
            return Scale(arg, factor)
        case Mean(_, axis, count) | Spread(_, axis, count):
            (arg,) = children
            return type(expr)(arg, axis, count)
        case Power(_, exponent):
            (arg,) = children
            return Power(arg, exponent)
        case InvSqrt(_, eps):
            (arg,) = children
            return InvSqrt(arg, eps)
        case Activate() | ActivateDeriv():
            (arg,) = children
            return type(expr)(expr.layer, arg)
        case Loss() | LossGrad():
            pred, target = children
            return type(expr)(pred, target)
        case _:
            assert_never(expr)


def total(arg: Expr, axis: Axis) -> Expr:
    """The sum over ``axis``: ``SumRows`` over the batch, ``SumCols`` over the features."""
    return SumRows(arg) if axis is Axis.BATCH else SumCols(arg)


def substitute(expr: Expr, mapping: Mapping[Var, Expr]) -> Expr:
    """Replace every occurrence of the given variables."""
    if isinstance(expr, Var):
        return mapping.get(expr, expr)
    return rebuild(expr, tuple(substitute(c, mapping) for c in expr.children()))
