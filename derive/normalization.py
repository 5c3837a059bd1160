"""Layer normalization and batch normalization (training mode) as chains of IR nodes.

One ``Normalization`` describes either: the statistics run over the features of
each row (layer norm: a column of m statistics) or over the batch for each
feature (batch norm: a row of n statistics; biased variance, divided by m).
With x the m x n input and γ, β learned 1 x n rows, ε > 0:

    μ = mean(x),  c = x - μ,  v = mean(c ⊙ c),  s = (v + ε)^{-1/2},
    x̂ = c ⊙ s,   y = x̂ ⊙ γ + β

(statistics spread back over the axis they were taken on).  ``lemma_chain``
feeds y an arbitrary upstream gradient G, like the dense step lemma; the
backward pass is ``derivation.backward``'s, the compact form ``simplify``'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import sympy as sp

from . import model
from .derivation import backward
from .expr import Add, Axis, Expr, Hadamard, InvSqrt, Mean, Power, Spread, Sub, Var
from .model import Step
from .shapes import Shape
from .simplify import Facts, Simplified, simplify

BATCH = sp.Symbol("m", positive=True, integer=True)
"""m, the number of rows of the batch (``catalog.batch`` is the same symbol)."""
WIDTH = sp.Symbol("n", positive=True, integer=True)
"""n, the number of features the layer normalizes."""
EPS = sp.Symbol("epsilon", positive=True)
"""ε > 0, added to the variance: a constant row (variance 0) still gets a finite 1/√ε."""

ONE = sp.Integer(1)


@dataclass(frozen=True)
class Normalization:
    """A normalization layer: its statistics' ``axis`` and its index in the network."""

    axis: Axis
    layer: int = 2

    @property
    def name(self) -> str:
        return "layer norm" if self.axis is Axis.FEATURES else "batch norm"

    @property
    def count(self) -> sp.Symbol:
        """N, the number of entries each statistic averages: n (layer norm) or m (batch norm)."""
        return WIDTH if self.axis is Axis.FEATURES else BATCH

    # --- the variables ----------------------------------------------------------

    def var(self, kind: str) -> Var:
        return Var(kind, self.layer)

    @property
    def x(self) -> Var:
        """The layer's input (the previous layer's output)."""
        return model.a(self.layer - 1)

    @property
    def y(self) -> Var:
        return model.a(self.layer)

    @property
    def gamma(self) -> Var:
        return self.var("gamma")

    @property
    def beta(self) -> Var:
        return self.var("beta")

    @property
    def xhat(self) -> Var:
        return self.var("xhat")

    def parameters(self) -> list[Var]:
        return [self.gamma, self.beta]

    def spread(self, e: Expr) -> Spread:
        """A statistic spread back over the axis it was taken on."""
        return Spread(e, self.axis, self.count)

    def steps(self) -> list[Step]:
        """μ, c, v, s, x̂, y in evaluation order."""
        mu, c, v, s = (self.var(k) for k in ("mu", "c", "v", "s"))
        row = Axis.BATCH  # γ and β are rows, spread down the batch in both kinds
        first = 2 * self.layer - 1
        defs: list[tuple[Var, Expr]] = [
            (mu, Mean(self.x, self.axis, self.count)),
            (c, Sub(self.x, self.spread(mu))),
            (v, Mean(Power(c, 2), self.axis, self.count)),
            (s, InvSqrt(v, EPS)),
            (self.xhat, Hadamard(c, self.spread(s))),
            (
                self.y,
                Add(
                    Hadamard(self.xhat, Spread(self.gamma, row, BATCH)),
                    Spread(self.beta, row, BATCH),
                ),
            ),
        ]
        return [Step(first + k, target, expr) for k, (target, expr) in enumerate(defs)]

    def shapes(self) -> dict[Var, Shape]:
        """Every variable's shape: m x n data, statistics along the kept axis, rows γ, β."""
        full: Shape = (BATCH, WIDTH)
        stat: Shape = (BATCH, ONE) if self.axis is Axis.FEATURES else (ONE, WIDTH)
        return {
            self.x: full,
            self.y: full,
            model.INCOMING: full,
            self.var("c"): full,
            self.xhat: full,
            self.var("ghat"): full,
            self.var("mu"): stat,
            self.var("v"): stat,
            self.var("s"): stat,
            self.gamma: (ONE, WIDTH),
            self.beta: (ONE, WIDTH),
        }

    def lemma_chain(self) -> tuple[list[Step], dict[Var, Expr]]:
        """The layer fed by an arbitrary upstream gradient G = ∂L/∂y."""
        return self.steps(), {self.y: model.INCOMING}

    def facts(self) -> Facts:
        """What the simplification may use about this layer (each fact follows from ``steps``)."""
        steps = {step.target: step.expr for step in self.steps()}
        c, s = self.var("c"), self.var("s")
        # ĝ = ∂L/∂x̂, as the chain rule computes it from the last step alone
        last = [step for step in self.steps() if step.target == self.y]
        ghat = backward(last, {self.y: model.INCOMING})[self.xhat]
        return Facts(
            shapes=self.shapes(),
            counts={Axis.BATCH: BATCH, Axis.FEATURES: WIDTH},
            definitions={steps[s]: s},
            centred={c: self.axis, self.xhat: self.axis},
            normalized=(c, self.xhat, s),
            abbreviations={self.var("ghat"): ghat},
            order=(model.INCOMING, self.var("ghat"), self.xhat, self.gamma, s, c),
        )


@dataclass(frozen=True)
class NormalizationDerivation:
    """The chain rule's raw adjoints of x, γ, β for an upstream G, and their compact forms."""

    layer: Normalization
    raw: dict[Var, Expr]
    compact: dict[Var, Simplified]


@cache
def derive_normalization(layer: Normalization) -> NormalizationDerivation:
    """dx, dγ, dβ by ``derivation.backward``; then ``simplify`` with the layer's facts."""
    adjoints = backward(*layer.lemma_chain())
    wanted = [layer.x, layer.gamma, layer.beta]
    raw = {var: adjoints[var] for var in wanted}
    facts = layer.facts()
    return NormalizationDerivation(layer, raw, {var: simplify(raw[var], facts) for var in wanted})


LAYER_NORM = Normalization(Axis.FEATURES)
BATCH_NORM = Normalization(Axis.BATCH)
