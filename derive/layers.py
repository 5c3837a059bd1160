"""The network's layers: each owns its steps, parameters, named adjoints and lemma.

The chain f_1 … f_K is the layers' steps, in order, then the loss; ``model.Network``
numbers the steps by position, so no reader computes an f-index from a layer
index.  The variables every layer and the loss read are named here once.

The layer contract (``Layer``): a layer of index l provides

* ``steps()``: its links ``target = expr`` in evaluation order, reading its
  ``input`` and its own parameters and ending in its ``output``; a step whose
  ``adjoint`` is set gets that name for ∂L/∂target in the derivation (Dense:
  z_l → δ_l), every other adjoint is expressed through those names;
* ``parameters()``: the variables the gradient is taken for (Dense: W_l, b_l);
* ``lemma_chain(penalty)``: the one-step lemma ``proof`` checks for this kind, as
  (steps, seeds) for ``derivation.backward``, fed by an arbitrary upstream G;
  ``proof.check_layers_are_lemma_instances`` requires every layer's derived
  identities to be this lemma's at its index.

Adding a layer kind (issue 14: residual, normalization, dropout) is one new class
here satisfying ``Layer``, added to the closed union ``AnyLayer``; then
``mypy --strict`` reports every ``match layer:`` that lacks its ``case``
(``graph.dot``, ``latex``'s per-layer prose, the numpy planner's buffers), and any
new IR node it needs is one ``case`` per IR reader (``expr.Node``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol, TypeAlias

import sympy as sp

from .catalog import Activation
from .expr import (
    Activate,
    Add,
    Axis,
    Expr,
    Hadamard,
    InvSqrt,
    Kind,
    MatMul,
    Mean,
    Penalty,
    Power,
    Scale,
    Spread,
    Sub,
    Var,
    assert_never,
)


@dataclass(frozen=True)
class Step:
    """One link of the chain: ``target = expr``; ``index`` is k in f_k.

    ``layer`` is the index of the layer that owns the step (None for the loss and
    the penalty); ``adjoint`` the name ∂L/∂target gets in the derivation, if any.
    """

    index: int
    target: Var
    expr: Expr
    layer: int | None = None
    adjoint: Var | None = None


LOSS = Var(Kind.LOSS)
PENALTY = Var(Kind.PENALTY)
"""The L2 penalty λ/2 Σ_l ‖W_l‖_F², added to the loss with ``--l2``."""
X = Var(Kind.A, 0)
Y = Var(Kind.Y)
INCOMING = Var(Kind.INCOMING)
"""The gradient arriving from above in a one-step lemma (G = ∂L/∂z_l), and in printed chain-rule factors."""
SEED = Var(Kind.ONE)
"""The seed adjoint ∂L/∂L."""


def W(layer: int) -> Var:
    return Var(Kind.W, layer)


def b(layer: int) -> Var:
    return Var(Kind.B, layer)


def z(layer: int) -> Var:
    return Var(Kind.Z, layer)


def a(layer: int) -> Var:
    """The activation of ``layer``; a(0) is the input X."""
    return Var(Kind.A, layer)


def delta(layer: int) -> Var:
    return Var(Kind.DELTA, layer)


def abar(layer: int) -> Var:
    """ā_l = ∂L/∂a_l, the named adjoint of a residual, normalization or dropout layer's output."""
    return Var(Kind.OUTPUT_GRAD, layer)


def adjoint_names(steps: list[Step]) -> dict[Var, Var]:
    """Target → the name of its adjoint, for the steps that name one."""
    return {s.target: s.adjoint for s in steps if s.adjoint is not None}


def numbered(steps: list[Step], first: int = 1) -> list[Step]:
    """``steps`` with ``index`` set by position, from ``first``."""
    return [Step(k, s.target, s.expr, s.layer, s.adjoint) for k, s in enumerate(steps, start=first)]


class Layer(Protocol):
    """What the derivation, the proof, the printers and the backends ask of a layer."""

    @property
    def index(self) -> int: ...

    @property
    def input(self) -> Var: ...

    @property
    def output(self) -> Var: ...

    def steps(self) -> list[Step]: ...

    def parameters(self) -> tuple[Var, ...]: ...

    def lemma_chain(self, penalty: bool = False) -> tuple[list[Step], dict[Var, Expr]]: ...


@dataclass(frozen=True)
class Dense:
    """z_l = a_{l-1} W_l + b_l, a_l = σ(z_l): a fully connected layer of index l."""

    index: int
    n_in: int
    n_out: int
    activation: Activation

    @property
    def input(self) -> Var:
        return a(self.index - 1)

    @property
    def output(self) -> Var:
        return a(self.index)

    def steps(self) -> list[Step]:
        """z_l (its adjoint named δ_l), then a_l; indices are set by the network."""
        k = self.index
        return [
            Step(0, z(k), Add(MatMul(self.input, W(k)), b(k)), k, delta(k)),
            Step(0, a(k), Activate(k, z(k)), k),
        ]

    def parameters(self) -> tuple[Var, ...]:
        return (W(self.index), b(self.index))

    def lemma_chain(self, penalty: bool = False) -> tuple[list[Step], dict[Var, Expr]]:
        return dense_lemma_chain(self.index, penalty)


def dense_lemma_chain(layer: int, penalty: bool = False) -> tuple[list[Step], dict[Var, Expr]]:
    """One generic dense layer fed by an arbitrary upstream gradient G = ∂L/∂z_l.

    z_{l-1} is free; a_{l-1} = a(z_{l-1}); z_l = a_{l-1} W_l + b_l.  With
    ``penalty`` the objective also holds λ/2 ‖W_l‖_F² (seeded with 1, as in
    ``derivation.derive``).
    """
    below = layer - 1
    steps = [
        Step(0, a(below), Activate(below, z(below)), below),
        Step(0, z(layer), Add(MatMul(a(below), W(layer)), b(layer)), layer, delta(layer)),
    ]
    seeds: dict[Var, Expr] = {z(layer): INCOMING}
    if penalty:
        steps.append(Step(0, PENALTY, Penalty(W(layer))))
        seeds[PENALTY] = SEED
    return numbered(steps), seeds


@dataclass(frozen=True)
class Residual:
    """A residual dense block of index l: z_l = a_{l-1} W_l + b_l, h_l = σ(z_l) and
    a_l = h_l + a_{l-1} (widths equal), or a_l = h_l + a_{l-1} P_l with ``projection``.

    z_l's adjoint is named δ_l and a_l's ā_l, so the derivation shows the skip term:
    ∂L/∂a_{l-1} = ā_l + δ_l W_lᵀ (or ā_l P_lᵀ + δ_l W_lᵀ).
    """

    index: int
    n_in: int
    n_out: int
    activation: Activation
    projection: bool = False

    @property
    def input(self) -> Var:
        return a(self.index - 1)

    @property
    def output(self) -> Var:
        return a(self.index)

    @property
    def hidden(self) -> Var:
        return Var(Kind.HIDDEN, self.index)

    @property
    def proj(self) -> Var:
        return Var(Kind.PROJ, self.index)

    def skip(self) -> Expr:
        """What the skip connection adds: a_{l-1}, or a_{l-1} P_l."""
        return MatMul(self.input, self.proj) if self.projection else self.input

    def steps(self) -> list[Step]:
        """z_l (adjoint δ_l), h_l, a_l (adjoint ā_l); indices are set by the network."""
        k = self.index
        return [
            Step(0, z(k), Add(MatMul(self.input, W(k)), b(k)), k, delta(k)),
            Step(0, self.hidden, Activate(k, z(k)), k),
            Step(0, self.output, Add(self.hidden, self.skip()), k, abar(k)),
        ]

    def parameters(self) -> tuple[Var, ...]:
        """W_l, b_l, then P_l with a projection."""
        return (W(self.index), b(self.index), *((self.proj,) if self.projection else ()))

    def weights(self) -> tuple[Var, ...]:
        """The matrices ``--l2`` penalises: W_l and P_l (not b_l)."""
        return (W(self.index), *((self.proj,) if self.projection else ()))

    def lemma_chain(self, penalty: bool = False) -> tuple[list[Step], dict[Var, Expr]]:
        """The block fed by an arbitrary upstream gradient G = ∂L/∂a_l (with ``penalty``
        the objective also holds λ/2 ‖·‖_F² of its weights)."""
        return _block_lemma_chain(self, self.weights() if penalty else ())


@dataclass(frozen=True)
class Dropout:
    """Inverted dropout of index l: a_l = a_{l-1} ⊙ M_l / (1 - p), the mask M_l a 0/1 input.

    ``rate`` p is an exact SymPy number in [0, 1) (or a symbol, for the lemma proved for
    every p).  No parameters; the mask is an input of the network like X (drawn by the
    module's seeded generator, given in proofs).
    """

    index: int
    width: int
    rate: sp.Expr

    @property
    def input(self) -> Var:
        return a(self.index - 1)

    @property
    def output(self) -> Var:
        return a(self.index)

    @property
    def mask(self) -> Var:
        return Var(Kind.MASK, self.index)

    @property
    def scale(self) -> sp.Expr:
        """1 / (1 - p): what keeps the expected output equal to the input."""
        return 1 / (1 - self.rate)

    def steps(self) -> list[Step]:
        """a_l (adjoint ā_l); the index is set by the network."""
        masked = Scale(Hadamard(self.input, self.mask), self.scale)
        return [Step(0, self.output, masked, self.index, abar(self.index))]

    def parameters(self) -> tuple[Var, ...]:
        return ()

    def weights(self) -> tuple[Var, ...]:
        return ()

    def lemma_chain(self, penalty: bool = False) -> tuple[list[Step], dict[Var, Expr]]:
        """The layer fed by an arbitrary upstream gradient G = ∂L/∂a_l (no weights)."""
        return _block_lemma_chain(self, ())


def _block_lemma_chain(
    layer: Residual | Dropout, weights: tuple[Var, ...]
) -> tuple[list[Step], dict[Var, Expr]]:
    """A layer's own steps fed by G = ∂L/∂(its output), plus λ/2 ‖·‖² of ``weights``."""
    steps = list(layer.steps())
    seeds: dict[Var, Expr] = {layer.output: INCOMING}
    if weights:
        total: Expr = Penalty(weights[0])
        for weight in weights[1:]:
            total = Add(total, Penalty(weight))
        steps.append(Step(0, PENALTY, total))
        seeds[PENALTY] = SEED
    return numbered(steps), seeds


# --- the normalizations (issue 14) ---------------------------------------------------

BATCH = sp.Symbol("m", positive=True, integer=True)
"""m, the number of rows of the batch (``catalog.batch`` is the same symbol)."""
WIDTH = sp.Symbol("n", positive=True, integer=True)
"""n, the number of features a normalization layer normalizes."""
EPS = sp.Symbol("epsilon", positive=True)
"""ε > 0, added to the variance: a constant row (variance 0) still gets a finite 1/√ε."""


@dataclass(frozen=True)
class _Normalization:
    """y = x̂ ⊙ γ + β with x̂ = (x - μ) ⊙ (v + ε)^{-1/2}, statistics over ``axis``.

    The steps are written in the symbols m and n (``BATCH``, ``WIDTH``) whatever
    ``width`` is: the layer's lemma is one identity for every size, proved at concrete
    ones (``proof_normalization``).  x̂'s adjoint is named ĝ_l = ∂L/∂x̂_l.
    """

    index: int
    width: int
    axis: ClassVar[Axis]

    def __post_init__(self) -> None:
        if self.index < 1:
            raise ValueError(f"a {self.name} layer needs an index of at least 1, got {self.index}")
        if self.width < 1 or (self.axis is Axis.FEATURES and self.width < 2):
            least = 2 if self.axis is Axis.FEATURES else 1
            raise ValueError(
                f"a {self.name} layer needs a width of at least {least}, got {self.width}"
                + (" (one feature normalizes to 0: y = β)" if self.width == 1 else "")
            )

    @property
    def input(self) -> Var:
        return a(self.index - 1)

    @property
    def output(self) -> Var:
        return a(self.index)

    @property
    def name(self) -> str:
        return "layer norm" if self.axis is Axis.FEATURES else "batch norm"

    @property
    def gamma(self) -> Var:
        return self.var(Kind.GAMMA)

    @property
    def beta(self) -> Var:
        return self.var(Kind.BETA)

    @property
    def xhat(self) -> Var:
        return self.var(Kind.NORMALIZED)

    @property
    def count(self) -> sp.Symbol:
        """N, the number of entries a statistic averages: n (layer norm) or m (batch norm)."""
        return WIDTH if self.axis is Axis.FEATURES else BATCH

    def var(self, kind: Kind) -> Var:
        return Var(kind, self.index)

    def spread(self, e: Expr) -> Spread:
        """A statistic spread back over the axis it was taken on."""
        return Spread(e, self.axis, self.count)

    def steps(self) -> list[Step]:
        """μ, c, v, s, x̂ (its adjoint named ĝ), y; indices are set by the network."""
        mu, c, v, s, xhat = (
            self.var(k)
            for k in (Kind.MEAN, Kind.CENTRED, Kind.VARIANCE, Kind.INV_STD, Kind.NORMALIZED)
        )
        rows = Spread(self.gamma, Axis.BATCH, BATCH), Spread(self.beta, Axis.BATCH, BATCH)
        k = self.index
        return [
            Step(0, mu, Mean(self.input, self.axis, self.count), k),
            Step(0, c, Sub(self.input, self.spread(mu)), k),
            Step(0, v, Mean(Power(c, 2), self.axis, self.count), k),
            Step(0, s, InvSqrt(v, EPS), k),
            Step(0, xhat, Hadamard(c, self.spread(s)), k, self.var(Kind.NORMALIZED_GRAD)),
            Step(0, self.output, Add(Hadamard(xhat, rows[0]), rows[1]), k),
        ]

    def parameters(self) -> tuple[Var, ...]:
        """γ_l and β_l, 1 x n rows (not penalised by ``--l2``: the penalty is on weights)."""
        return (self.gamma, self.beta)

    def lemma_chain(self, penalty: bool = False) -> tuple[list[Step], dict[Var, Expr]]:
        """The layer fed by an arbitrary upstream gradient G = ∂L/∂y (``penalty``: no weights,
        nothing changes)."""
        return numbered(self.steps()), {self.output: INCOMING}


@dataclass(frozen=True)
class LayerNorm(_Normalization):
    """Layer normalization: each row normalized over its n features (m x 1 statistics)."""

    axis: ClassVar[Axis] = Axis.FEATURES


@dataclass(frozen=True)
class BatchNorm(_Normalization):
    """Batch normalization in training mode: each feature normalized over the batch (1 x n
    statistics, the biased variance, divided by m)."""

    axis: ClassVar[Axis] = Axis.BATCH


NORMALIZATIONS: tuple[type[Layer], ...] = (LayerNorm, BatchNorm)
"""The normalization kinds; typed as ``Layer`` so that mypy checks them against the contract."""

AnyLayer: TypeAlias = Dense | Residual | LayerNorm | BatchNorm | Dropout
"""Every layer kind, a closed union: readers ``match layer:`` over it (see the module docstring)."""

Activated: TypeAlias = Dense | Residual
"""The kinds with an activation σ_l (``--activation`` applies to them, in order)."""


def weights(layer: AnyLayer) -> tuple[Var, ...]:
    """The matrices of ``layer`` that ``--l2`` penalises (weights; not biases, γ, β)."""
    match layer:
        case Dense():
            return (W(layer.index),)
        case Residual() | Dropout():
            return layer.weights()
        case LayerNorm() | BatchNorm():
            return ()
        case _:
            assert_never(layer)


def width(layer: AnyLayer) -> int:
    """n_l, the width of the layer's output."""
    match layer:
        case Dense() | Residual():
            return layer.n_out
        case LayerNorm() | BatchNorm() | Dropout():
            return layer.width
        case _:
            assert_never(layer)
