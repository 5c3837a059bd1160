"""The L2 penalty (weight decay), defined once in SymPy: λ/2 times each weight squared.

With ``--l2`` the objective is the loss plus λ/2 Σ_l ‖W_l‖_F² (biases are not
penalised).  Its gradient per entry, λ w, is SymPy's derivative of the entry
below; the chain rule (``derivation``) sends it to each W_l, and ``proof``
checks the sum a_{l-1}ᵀ δ_l + λ W_l against SymPy's diff of the whole objective
written out independently.  λ is a symbol here and an argument at run time.
"""

from __future__ import annotations

import sympy as sp

lam = sp.Symbol("lambda", real=True)
"""λ, the penalty's strength (>= 0 at run time; any real in the proofs)."""

w = sp.Symbol("w", real=True)
"""One weight entry."""

ENTRY = lam / 2 * w**2
"""The penalty's term for one weight entry: the objective adds it for every entry of every W_l."""

GRADIENT = sp.diff(ENTRY, w)
"""∂(λ/2 w²)/∂w = λ w: what the derived gradient adds to ∂L/∂W_l, entry by entry."""

FACTOR = sp.cancel(GRADIENT / (lam * w))
"""The constant c in the gradient c λ W_l the generated code evaluates (1)."""

HALF = sp.cancel(ENTRY / (lam * w**2))
"""The constant c in the penalty's value c λ ‖W_l‖_F² the generated code evaluates (1/2)."""
