"""Matrix-level expressions: the one representation of the math.

SymPy's own matrix calculus cannot express a bias row broadcast over the batch
or an activation applied entrywise without falling into array expressions it
then cannot print or differentiate reliably.  So the chain, the derived
gradients and the recursive identities are trees of the small, frozen node
types below.  Three readers walk the same trees: ``proof`` (turns them into
explicit SymPy matrices), ``latex`` (prints them) and ``backends`` (emit code).

Shape convention (the seed's row convention): a batch is m rows; X is
m x n_0, W_l is n_{l-1} x n_l, b_l is 1 x n_l and is added to every row.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

import sympy as sp


class Expr:
    """Base of all matrix-level nodes."""

    def children(self) -> tuple[Expr, ...]:
        return ()


@dataclass(frozen=True)
class Var(Expr):
    """A named matrix: an input, a parameter, a stored intermediate or a delta.

    ``kind`` is one of X, Y, W, b, z, a, delta, G (an arbitrary upstream
    gradient used by the step lemma); ``layer`` is its layer index, if any.
    """

    kind: str
    layer: int | None = None

    @property
    def name(self) -> str:
        return self.kind if self.layer is None else f"{self.kind}{self.layer}"


@dataclass(frozen=True)
class MatMul(Expr):
    """Matrix product ``left @ right``."""

    left: Expr
    right: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.left, self.right)


@dataclass(frozen=True)
class Add(Expr):
    """``left + right``; a one-row ``right`` is added to every row (bias)."""

    left: Expr
    right: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.left, self.right)


@dataclass(frozen=True)
class Hadamard(Expr):
    """Entrywise product ``left ⊙ right``."""

    left: Expr
    right: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.left, self.right)


@dataclass(frozen=True)
class Transpose(Expr):
    arg: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.arg,)


@dataclass(frozen=True)
class SumRows(Expr):
    """``1ᵀ arg``: the sum over the batch, a one-row matrix."""

    arg: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.arg,)


@dataclass(frozen=True)
class Activate(Expr):
    """The activation of ``layer`` applied entrywise: ``a(arg)``."""

    layer: int
    arg: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.arg,)


@dataclass(frozen=True)
class ActivateDeriv(Expr):
    """The activation's derivative applied entrywise: ``a'(arg)``."""

    layer: int
    arg: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.arg,)


@dataclass(frozen=True)
class Loss(Expr):
    """The scalar loss of prediction ``pred`` against target ``target``."""

    pred: Expr
    target: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.pred, self.target)


@dataclass(frozen=True)
class LossGrad(Expr):
    """The loss's gradient with respect to the prediction, ``∂L/∂Ŷ``."""

    pred: Expr
    target: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.pred, self.target)


@dataclass(frozen=True)
class Penalty(Expr):
    """The scalar L2 penalty λ/2 ‖arg‖_F² of a weight matrix (``derive.penalty``)."""

    arg: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.arg,)


@dataclass(frozen=True)
class PenaltyGrad(Expr):
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


class Axis(enum.Enum):
    """The axis a statistic runs over: the batch (rows; gives a row) or the features
    (columns; gives a column)."""

    BATCH = "batch"
    FEATURES = "features"


@dataclass(frozen=True)
class Sub(Expr):
    """``left - right``, operands of equal shape."""

    left: Expr
    right: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.left, self.right)


@dataclass(frozen=True)
class Scale(Expr):
    """``factor · arg`` for a scalar SymPy ``factor`` in rationals and counts (1/m, -1/2)."""

    arg: Expr
    factor: sp.Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.arg,)


@dataclass(frozen=True)
class SumCols(Expr):
    """``arg 1``: the sum over the features, a one-column matrix."""

    arg: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.arg,)


@dataclass(frozen=True)
class Mean(Expr):
    """The mean over ``axis`` of its ``count`` entries: a row (batch) or a column (features)."""

    arg: Expr
    axis: Axis
    count: sp.Symbol

    def children(self) -> tuple[Expr, ...]:
        return (self.arg,)


@dataclass(frozen=True)
class Spread(Expr):
    """A row repeated down ``count`` rows (batch), or a column across ``count`` columns."""

    arg: Expr
    axis: Axis
    count: sp.Symbol

    def children(self) -> tuple[Expr, ...]:
        return (self.arg,)


@dataclass(frozen=True)
class Power(Expr):
    """The entrywise integer power ``arg^{⊙k}`` (k ≥ 2)."""

    arg: Expr
    exponent: int

    def children(self) -> tuple[Expr, ...]:
        return (self.arg,)


@dataclass(frozen=True)
class InvSqrt(Expr):
    """The entrywise ``(arg + ε)^{-1/2}``, ``eps`` a positive symbol (real for a variance arg ≥ 0)."""

    arg: Expr
    eps: sp.Symbol

    def children(self) -> tuple[Expr, ...]:
        return (self.arg,)


def total(arg: Expr, axis: Axis) -> Expr:
    """The sum over ``axis``: ``SumRows`` over the batch, ``SumCols`` over the features."""
    return SumRows(arg) if axis is Axis.BATCH else SumCols(arg)


def rebuild(expr: Expr, children: tuple[Expr, ...]) -> Expr:
    """Return ``expr`` with its children replaced, in order."""
    if isinstance(expr, Var):
        return expr
    fields = list(expr.__dataclass_fields__)
    values = []
    it = iter(children)
    for field in fields:
        value = getattr(expr, field)
        values.append(next(it) if isinstance(value, Expr) else value)
    return type(expr)(*values)


def substitute(expr: Expr, mapping: Mapping[Var, Expr]) -> Expr:
    """Replace every occurrence of the given variables."""
    if isinstance(expr, Var):
        return mapping.get(expr, expr)
    return rebuild(expr, tuple(substitute(c, mapping) for c in expr.children()))
