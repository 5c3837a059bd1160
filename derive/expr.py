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
        case MatMul() | Add() | Hadamard():
            left, right = children
            return type(expr)(left, right)
        case Transpose() | SumRows() | Penalty() | PenaltyGrad():
            (arg,) = children
            return type(expr)(arg)
        case Activate() | ActivateDeriv():
            (arg,) = children
            return type(expr)(expr.layer, arg)
        case Loss() | LossGrad():
            pred, target = children
            return type(expr)(pred, target)
        case _:
            assert_never(expr)


def substitute(expr: Expr, mapping: Mapping[Var, Expr]) -> Expr:
    """Replace every occurrence of the given variables."""
    if isinstance(expr, Var):
        return mapping.get(expr, expr)
    return rebuild(expr, tuple(substitute(c, mapping) for c in expr.children()))
