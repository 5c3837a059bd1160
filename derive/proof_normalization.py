"""Exact proofs of the normalizations' backward passes, raw and compact.

For one layer (``normalization.Normalization``) at concrete non-square sizes,
with every entry of x, γ, β and of an arbitrary upstream gradient G a free
symbol and ε > 0 a symbol, two claims are decided:

(a) the compact form (``simplify``'s) equals SymPy's own ``diff`` of Σ G ⊙ y,
    y written out here by an independent forward (``reference_forward``, plain
    SymPy on lists of entries, ``sp.sqrt`` for the root), not by the IR;
(b) the compact form equals the chain rule's raw output, both evaluated from the IR.

The square roots √(v_i + ε) become positive atoms (``engine.Radicals``) and the
difference is reduced modulo t_i² = v_i + ε: a decision, not a sample.  ε > 0 is
what makes every v_i + ε positive, hence the roots real and s finite: a constant
row (or column, for batch norm) has v = 0 and s = ε^{-1/2} — the emitted code must
keep the ε inside the root for that reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from functools import cache

import sympy as sp

from . import catalog, engine, model
from .catalog import LossFunction
from .check import Check
from .derivation import backward
from .expr import Axis, Expr, Kind, Loss, Var
from .layers import BATCH, EPS, WIDTH, BatchNorm, Dense, LayerNorm, Step, numbered
from .normalization import Normalization, derive_normalization
from .proof import Env, Semantics, evaluate, generic_semantics, symbols_matrix

SIZES = ((3, 4), (4, 3))
"""(m, n): the issue's sizes, non-square both ways; proved by the slow tests and
``benchmarks/bench_proof_normalization.py``."""

VERIFY_SIZES = {Axis.FEATURES: (2, 3), Axis.BATCH: (3, 2)}
"""The size ``verify`` proves each kind at (by normalized axis): layer norm m = 2 rows of
n = 3 features, batch norm m = 3 rows of n = 2 columns.  Why these suffice as the fixed-size
instance: the groups a statistic runs over (rows for layer norm, columns for batch norm)
are independent copies of one another, so more than one group adds nothing but a check
that no group reads another's, which 2 groups already make; the normalized count 3 is
generic: among the x̂ of a group of k ≥ 3 entries the only relations are Σ x̂ = 0 and
Σ x̂² = k v/(v + ε), which hold at every k, while k = 2 adds x̂₂ = -x̂₁ (so 2 would not do);
and 2 ≠ 3 keeps the size non-square, so a statistic over the wrong axis has the other
shape (the negative controls fail at these sizes, tests/test_normalization.py)."""

Divisor = Callable[[int], sp.Expr]


def biased(count: int) -> sp.Expr:
    """The variance's divisor of ``derive``'s normalizations: the count itself."""
    return sp.Integer(count)


def reference_forward(
    x: sp.Matrix,
    gamma: sp.Matrix,
    beta: sp.Matrix,
    axis: Axis,
    divisor: Divisor = biased,
) -> sp.Matrix:
    """y, normalized over ``axis`` entry by entry: (x - mean) / sqrt(var + ε) * γ + β."""
    m, n = x.shape
    y = sp.zeros(m, n)
    groups = (
        [[(i, j) for j in range(n)] for i in range(m)]
        if axis is Axis.FEATURES
        else [[(i, j) for i in range(m)] for j in range(n)]
    )
    for group in groups:
        entries = [x[i, j] for i, j in group]
        mean = sp.Add(*entries) / len(entries)
        variance = sp.Add(*[(e - mean) ** 2 for e in entries]) / divisor(len(entries))
        for i, j in group:
            y[i, j] = (x[i, j] - mean) / sp.sqrt(variance + EPS) * gamma[0, j] + beta[0, j]
    return y


def _inputs(layer: Normalization, m: int, n: int) -> Env:
    return {
        layer.input: symbols_matrix("x", m, n),
        layer.gamma: symbols_matrix("gamma", 1, n),
        layer.beta: symbols_matrix("beta", 1, n),
        model.INCOMING: symbols_matrix("g", m, n),
    }


def _semantics(m: int, n: int) -> Semantics:
    sem = generic_semantics(LossFunction("none", sp.Integer(0), "", ""))
    return Semantics(sem.activation, sem.derivative, sem.loss, sizes={BATCH: m, WIDTH: n})


@cache
def _explicit(layer: Normalization, m: int, n: int) -> tuple[Env, Semantics]:
    """Symbols for x, γ, β, G and the IR forward's intermediates on them (once per size)."""
    env = _inputs(layer, m, n)
    sem = _semantics(m, n)
    for step in layer.steps():
        env[step.target] = evaluate(step.expr, env, sem)
    env[layer.var(Kind.NORMALIZED_GRAD)] = evaluate(derive_normalization(layer).ghat, env, sem)
    return env, sem


@cache
def _oracle(
    layer: Normalization, m: int, n: int, axis: Axis, divisor: Divisor
) -> dict[Var, sp.Matrix]:
    """SymPy's diff of Σ G ⊙ y, y from ``reference_forward``, by every entry of x, γ, β."""
    env, _ = _explicit(layer, m, n)
    y = reference_forward(env[layer.input], env[layer.gamma], env[layer.beta], axis, divisor)
    scalar = sp.Add(*env[model.INCOMING].multiply_elementwise(y))
    return {
        var: env[var].applyfunc(lambda e: sp.diff(scalar, e))
        for var in (layer.input, layer.gamma, layer.beta)
    }


def check_normalization(
    layer: Normalization,
    size: tuple[int, int] = SIZES[0],
    claims: dict[Var, Expr] | None = None,
    reference_axis: Axis | None = None,
    divisor: Divisor = biased,
) -> Check:
    """(a) and (b) above for dx, dγ, dβ of ``layer`` at ``size`` = (m, n).

    ``claims`` replaces the compact forms, ``reference_axis`` the oracle's axis and
    ``divisor`` its variance's divisor: the negative controls use them.
    """
    default = claims is None and reference_axis is None and divisor is biased
    if default and (layer, size) in _PROVED:
        earlier = _PROVED[layer, size]
        note = f"; decided once in this process ({earlier.seconds:.2f} s), the same claim"
        return replace(earlier, method=earlier.method + note, seconds=0.0)
    start = time.perf_counter()
    m, n = size
    derivation = derive_normalization(layer)
    if claims is None:
        claims = {var: simplified.expr for var, simplified in derivation.compact.items()}
    env, sem = _explicit(layer, m, n)
    axis = layer.axis if reference_axis is None else reference_axis
    oracle = _oracle(layer, m, n, axis, divisor)
    problems = []
    for var, formula in claims.items():
        try:
            claimed = evaluate(formula, env, sem)
            raw = evaluate(derivation.raw[var], env, sem)
        except sp.ShapeError as err:
            problems.append(f"{var.name}: {err}")
            continue
        ok, why = engine.identical_with_radicals(oracle[var], claimed)
        if not ok:
            problems.append(f"{var.name} against SymPy's diff: {why}")
        ok, why = engine.identical_with_radicals(raw, claimed)
        if not ok:
            problems.append(f"{var.name} against the raw chain rule: {why}")
    statistic = "each row, over its features" if layer.axis is Axis.FEATURES else "the batch"
    check = Check(
        layer.name,
        f"y = x̂ ⊙ γ + β normalized over {statistic}, any upstream G = ∂L/∂y: the compact "
        "dx, dγ, dβ equal SymPy's diff of Σ G ⊙ y and the chain rule's raw output",
        f"exact: SymPy diff of an independent forward, m={m}, n={n}, entries and ε > 0 "
        "symbols; each √(v + ε) a positive atom t, reduced modulo t² = v + ε (ε > 0 keeps "
        "s finite where v = 0, a constant row or column)",
        not problems,
        time.perf_counter() - start,
        "; ".join(problems),
    )
    if default:
        _PROVED[layer, size] = check
    return check


_PROVED: dict[tuple[Normalization, tuple[int, int]], Check] = {}
"""The default checks already decided in this process: the claim depends only on the kind
and the size (every network's layer is an instance of the kind's lemma, by the induction),
so a notebook or a grid search deriving many networks decides it once."""


def verify_normalizations(sizes: tuple[tuple[int, int], ...] | None = None) -> list[Check]:
    """Both kinds at ``sizes`` (default: each at its ``VERIFY_SIZES`` size)."""
    from .normalization import BATCH_NORM, LAYER_NORM

    return [
        check_normalization(k, size)
        for k in (LAYER_NORM, BATCH_NORM)
        for size in (sizes or (VERIFY_SIZES[k.axis],))
    ]


def check_dense_then_normalization(
    kind: type[LayerNorm] | type[BatchNorm],
    batch: int = 2,
    widths: tuple[int, int] = (2, 3),
    claims: dict[Var, Expr] | None = None,
) -> Check:
    """A dense layer, then ``kind``, then the squared-error loss: the chain rule's own
    gradients of W_1, b_1, γ_2, β_2 (through its named adjoints δ_1 and ĝ_2) against SymPy's
    diff of the whole composition, with the activation an arbitrary function.

    Not yet a ``Network`` (its constructor builds dense layers only): this shows the layer
    composes with the others in ``derivation.backward`` as the contract says.  ``claims``
    replaces derived gradients (the negative controls).
    """
    start = time.perf_counter()
    n_in, n = widths
    dense = Dense(1, n_in, n, catalog.activation("tanh"))  # σ is left arbitrary below
    norm = kind(2, n)
    steps = numbered(
        [*dense.steps(), *norm.steps(), Step(0, model.LOSS, Loss(norm.output, model.Y))]
    )
    adjoints = backward(steps, {model.LOSS: model.SEED})
    loss = catalog.loss_function("l2")
    generic = generic_semantics(loss)
    sem = Semantics(generic.activation, generic.derivative, loss, sizes={BATCH: batch, WIDTH: n})
    env: Env = {
        model.X: symbols_matrix("x", batch, n_in),
        model.Y: symbols_matrix("y", batch, n),
        model.W(1): symbols_matrix("w", n_in, n),
        model.b(1): symbols_matrix("b", 1, n),
        norm.gamma: symbols_matrix("gamma", 1, n),
        norm.beta: symbols_matrix("beta", 1, n),
    }
    for step in steps:
        env[step.target] = evaluate(step.expr, env, sem)
    scalar = env[model.LOSS][0, 0]
    names = {step.target: step.adjoint for step in steps if step.adjoint is not None}
    for target in (norm.xhat, model.z(1)):  # ĝ_2 first: δ_1 reads it
        env[names[target]] = evaluate(adjoints[target], env, sem)
    problems = []
    for var in (model.W(1), model.b(1), norm.gamma, norm.beta):
        claimed = evaluate((claims or {}).get(var, adjoints[var]), env, sem)
        oracle = env[var].applyfunc(lambda e: sp.diff(scalar, e))
        ok, why = engine.identical_with_radicals(oracle, claimed)
        if not ok:
            problems.append(f"{var.name}: {why}")
    return Check(
        f"dense then {norm.name}",
        f"the chain rule's ∂L/∂W_1, ∂L/∂b_1, ∂L/∂γ_2, ∂L/∂β_2 of a dense layer, a {norm.name} "
        "and the squared error, through δ_1 and ĝ_2",
        f"exact: SymPy diff of the composition, batch {batch}, widths {widths}, σ undefined, "
        "ε > 0; each √(v + ε) a positive atom",
        not problems,
        time.perf_counter() - start,
        "; ".join(problems),
    )
