"""The sum-of-shards lemma: the gradient over all rows from gradients over row shards.

Split the m rows of a batch into shards of m_1 + ... + m_K = m rows.  Every
row's prediction depends on the parameters and that row alone (the forward
pass acts row by row), and every loss in the catalog is a sum over rows
times a scale that depends on m only.  Hence, for any parameter θ,

    ∂L/∂θ = Σ_k w_k ∂L_k/∂θ,   w_k = 1 for summed losses, m_k / m for mean losses,

where L_k is the loss the same code computes on shard k alone (a mean loss
then divides by m_k).  This is what lets a row-chunked Dask array, or
several machines, compute the full-batch gradient.  ``check_sum_of_shards``
proves it exactly for a given loss, on explicit shards, with each entry of
the prediction an undefined function of θ (any network, any parameter).
"""

from __future__ import annotations

import time

import sympy as sp

from . import engine
from .catalog import LossFunction, batch
from .check import Check
from .engine import _loss_matrix, identical, targets

SHARDS = (2, 3, 1)
"""Shard sizes of the proof: unequal, so a weighting mistake cannot cancel out."""
OUTPUTS = 2
"""Output width of the proof."""


def weights(loss: LossFunction, sizes: tuple[int, ...]) -> list[sp.Rational]:
    """w_k: 1 for a summed loss, m_k / m for a mean loss (its scale depends on m)."""
    if batch not in loss.scale.free_symbols:
        return [sp.Integer(1)] * len(sizes)
    return [sp.Rational(size, sum(sizes)) for size in sizes]


def statement(loss: LossFunction) -> str:
    mean = batch in loss.scale.free_symbols
    weight = "m_k/m · " if mean else ""
    return f"∂L/∂θ = Σ_k {weight}∂L_k/∂θ over row shards of sizes m_1 + ... + m_K = m"


def check_sum_of_shards(
    loss: LossFunction,
    claimed: list[sp.Expr] | None = None,
    sizes: tuple[int, ...] = SHARDS,
) -> Check:
    """Prove ∂L/∂θ = Σ_k w_k ∂L_k/∂θ exactly (``claimed`` overrides w_k, for negative tests)."""
    start = time.perf_counter()
    theta = sp.Symbol("θ", real=True)
    m = sum(sizes)
    # Row r's prediction (or logits, when fused): functions of θ that differ per entry.
    pred = sp.Matrix(m, OUTPUTS, lambda r, c: sp.Function(f"p_{r}{c}", real=True)(theta))
    y = targets(loss, m, OUTPUTS)
    full = engine.directional_derivative(
        _loss_matrix(loss, pred, y, gradient=False)[0, 0], {theta: sp.Integer(1)}
    )
    w = weights(loss, sizes) if claimed is None else claimed
    combined = sp.Integer(0)
    first = 0
    for size, weight in zip(sizes, w, strict=True):
        rows = slice(first, first + size)
        shard = _loss_matrix(loss, pred[rows, :], y[rows, :], gradient=False)[0, 0]
        combined += weight * engine.directional_derivative(shard, {theta: sp.Integer(1)})
        first += size
    ok, why = identical(sp.Matrix([[full]]), sp.Matrix([[combined]]))
    method = (
        f"exact: chain rule on the {loss.name} loss over {m} rows and over shards of "
        f"{', '.join(map(str, sizes))} rows, each prediction entry an undefined function of θ"
    )
    return Check("sum of shards", statement(loss), method, ok, time.perf_counter() - start, why)
