"""The scalar symbols every catalog formula is written in, and the row function log-sum-exp."""

from __future__ import annotations

import sympy as sp

z = sp.Symbol("z", real=True)
"""The pre-activation, a scalar entry of some z_l."""

A = sp.Symbol("A", real=True)
"""The activation's output a(z), used to rewrite a'(z) without recomputing."""

pred = sp.Symbol("a", real=True)
"""One entry of the prediction Ŷ (named so that SymPy prints Ŷ - Y, not -Y + Ŷ)."""

target = sp.Symbol("y", real=True)
"""One entry of the target Y."""

batch, outputs = sp.symbols("m n_L", positive=True, integer=True)

# A row of the output layer, for softmax (which is not entrywise): entries
# Z[1..n_L] of the logits, P[i] of the prediction and T[i] of the target.
i, j, k = sp.symbols("i j k", integer=True, positive=True)
Z = sp.IndexedBase("z", real=True)
P = sp.IndexedBase("p", real=True)
T = sp.IndexedBase("y", real=True)


class LogSumExp(sp.Function):  # type: ignore[misc]  # SymPy has no types: its classes are Any
    """log Σ_j exp(z_j) over one row; numpy evaluates it with the max taken out."""

    nargs = 1
    is_real = True

    def _eval_rewrite_as_log(self, row: sp.IndexedBase, **kwargs: object) -> sp.Expr:
        return sp.log(sp.Sum(sp.exp(row[j]), (j, 1, outputs)))
