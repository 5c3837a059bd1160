"""Layer norm and batch norm (training mode): their derivation and compact backward.

The layers themselves (``layers.LayerNorm``, ``layers.BatchNorm``) own their steps:
with x the m x n input, γ, β learned 1 x n rows and ε > 0,

    μ = mean(x),  c = x - μ,  v = mean(c ⊙ c),  s = (v + ε)^{-1/2},
    x̂ = c ⊙ s,   y = x̂ ⊙ γ + β

over the features of each row (layer norm) or over the batch (batch norm), each
statistic spread back over the axis it was taken on.  Here: the shapes of their
variables, what the simplification may use about them (``facts``), and the chain
rule applied to the layer fed an arbitrary upstream gradient G (``derivation.backward``,
like the dense step lemma), raw and compact.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TypeAlias

import sympy as sp

from . import model
from .derivation import backward
from .expr import Axis, Expr, Kind, Var, substitute
from .layers import BATCH, WIDTH, BatchNorm, LayerNorm
from .shapes import Shape
from .simplify import Facts, Simplified, simplify

Normalization: TypeAlias = LayerNorm | BatchNorm

LAYER_NORM = LayerNorm(2, 4)
BATCH_NORM = BatchNorm(2, 4)
"""The lemma's layers: index 2 (input a_1, output a_2); their steps do not depend on the width."""

ONE = sp.Integer(1)


def shapes(layer: Normalization) -> dict[Var, Shape]:
    """Every variable's shape: m x n data, statistics along the kept axis, rows γ, β."""
    full: Shape = (BATCH, WIDTH)
    stat: Shape = (BATCH, ONE) if layer.axis is Axis.FEATURES else (ONE, WIDTH)
    data = (Kind.CENTRED, Kind.NORMALIZED, Kind.NORMALIZED_GRAD)
    stats = (Kind.MEAN, Kind.VARIANCE, Kind.INV_STD)
    return {
        layer.input: full,
        layer.output: full,
        model.INCOMING: full,
        **{layer.var(k): full for k in data},
        **{layer.var(k): stat for k in stats},
        layer.gamma: (ONE, WIDTH),
        layer.beta: (ONE, WIDTH),
    }


@dataclass(frozen=True)
class NormalizationDerivation:
    """The chain rule's output for one layer fed G: ĝ's definition, dx, dγ, dβ raw (through
    ĝ) and compact (``simplify``'s, from the raw forms with ĝ written out)."""

    layer: Normalization
    ghat: Expr
    raw: dict[Var, Expr]
    compact: dict[Var, Simplified]


def ghat_definition(layer: Normalization) -> Expr:
    """ĝ = ∂L/∂x̂, as the chain rule computes it for the layer fed G (x̂'s named adjoint)."""
    return backward(*layer.lemma_chain())[layer.xhat]


def facts(layer: Normalization) -> Facts:
    """What the simplification may use about ``layer``; each fact follows from its steps."""
    steps = {step.target: step.expr for step in layer.steps()}
    c, s = layer.var(Kind.CENTRED), layer.var(Kind.INV_STD)
    ghat = layer.var(Kind.NORMALIZED_GRAD)
    return Facts(
        shapes=shapes(layer),
        counts={Axis.BATCH: BATCH, Axis.FEATURES: WIDTH},
        definitions={steps[s]: s},
        centred={c: layer.axis, layer.xhat: layer.axis},
        normalized=(c, layer.xhat, s),
        abbreviations={ghat: ghat_definition(layer)},
        order=(model.INCOMING, ghat, layer.xhat, layer.gamma, s, c),
    )


@cache
def derive_normalization(layer: Normalization) -> NormalizationDerivation:
    """dx, dγ, dβ by ``derivation.backward``; then ``simplify``, with ĝ written out (so that
    γ can leave the sums where it is constant along them) and the layer's facts."""
    adjoints = backward(*layer.lemma_chain())
    ghat = adjoints[layer.xhat]
    wanted = [layer.input, layer.gamma, layer.beta]
    raw = {var: adjoints[var] for var in wanted}
    written_out = {layer.var(Kind.NORMALIZED_GRAD): ghat}
    known = facts(layer)
    compact = {var: simplify(substitute(raw[var], written_out), known) for var in wanted}
    return NormalizationDerivation(layer, ghat, raw, compact)
