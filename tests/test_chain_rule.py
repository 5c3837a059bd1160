"""The proofs' scalar derivative (``engine.directional_derivative``) against SymPy's ``diff``.

The proofs decide every derived gradient against this derivative, so it is checked
here on every scalar they differentiate (recorded while they run) and on the node
kinds it hands to SymPy, and the comparison is shown to catch a wrong rule.
"""

from __future__ import annotations

import pytest
import sympy as sp

from derive import engine, proof, spec
from derive.derivation import derive


def sympy_derivative(expr: sp.Expr, tangents: dict[sp.Symbol, sp.Expr]) -> sp.Expr:
    """Σ_k t_k ∂expr/∂θ_k by SymPy's own ``diff``: ∂expr/∂θ for one unit tangent (the lemmas'
    calls, entry by entry), else d/dε expr(θ + ε t) at ε = 0."""
    if len(tangents) == 1 and next(iter(tangents.values())) == 1:
        return sp.diff(expr, *tangents)
    eps = sp.Dummy("epsilon")
    moved = {s: s + eps * t for s, t in tangents.items()}
    return sp.diff(expr.xreplace(moved), eps).subs(eps, 0)


def agrees_with_sympy(expr: sp.Expr, tangents: dict[sp.Symbol, sp.Expr], ours: sp.Expr) -> bool:
    """Whether ``ours`` is SymPy's derivative: as the proofs decide (``identical``), or when
    that cannot tell (x**y/x against x**(y - 1)), by ``simplify``."""
    expected = sympy_derivative(expr, tangents)
    ok, _ = engine.identical(sp.Matrix([[expected]]), sp.Matrix([[ours]]))
    return ok or sp.simplify(expected - ours) == 0


x, y = sp.symbols("x y", real=True)
a1 = engine.generic_activation(1)[0]
f = sp.Function("f")


@pytest.mark.parametrize(
    "expr",
    [
        (a1(x * y + 1) - y) ** 2,  # the l2 loss of an arbitrary activation
        x**y + sp.sqrt(x**2 + 1),  # a variable exponent, a radical
        -(y * sp.log(1 / (1 + sp.exp(-x)))),  # a cross-entropy's exp and log
        sp.tanh(x * y) / (1 + x**2),  # a known function, a division
        f(x, x * y),  # an undefined function of two arguments
        sp.Max(x, y) + sp.Piecewise((x, x > 0), (x**2, True)),  # handed to SymPy
    ],
)
def test_directional_derivative_is_sympys(expr):
    tx, ty = sp.symbols("t_x t_y")
    for tangents in ({x: sp.Integer(1)}, {y: sp.Integer(1)}, {x: tx, y: ty}):
        ours = engine.directional_derivative(expr, tangents)
        assert agrees_with_sympy(expr, tangents, ours), (expr, tangents, ours)


def test_the_comparison_catches_a_wrong_derivative():
    """Negative controls: a product rule missing a term, a chain rule missing the inner
    factor, a wrong power rule are all told apart from SymPy's diff."""
    one = {x: sp.Integer(1)}
    assert not agrees_with_sympy(x * a1(x), one, a1(x))  # product rule: only one term
    inner = engine.generic_activation(1)[1]  # Da_1
    assert not agrees_with_sympy(a1(x * y), one, inner(x * y))  # chain rule: no factor y
    assert not agrees_with_sympy(x**3, one, 3 * x**3)  # power rule: exponent not lowered


@pytest.mark.parametrize(
    "layers, loss, l2",
    [
        ("3,4,2", "l2", True),
        # the cross-entropies' exp and log take SymPy a few seconds each
        pytest.param("3,4,2", "sigmoid_binary_cross_entropy", False, marks=pytest.mark.slow),
        pytest.param("3,4,5,3", "softmax_cross_entropy", False, marks=pytest.mark.slow),
    ],
)
def test_every_scalar_the_proofs_differentiate_gets_sympys_derivative(
    monkeypatch, layers, loss, l2
):
    """Record each call of the proofs (lemmas, shards, end to end) and redo it with SymPy."""
    calls = []
    ours = engine.directional_derivative

    def recording(expr, tangents):
        result = ours(expr, tangents)
        calls.append((expr, dict(tangents), result))
        return result

    monkeypatch.setattr(engine, "directional_derivative", recording)
    # every lemma afresh: a test before this one in the process may have proved them already
    monkeypatch.setattr(proof, "_SHARDS_PROVED", {})
    monkeypatch.setattr(proof, "_LEMMAS_PROVED", {})
    checks = proof.verify(derive(spec.network(layers, "tanh", loss, l2)))
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]
    # the output lemma, the step lemma per entry, the shards, end to end (one call)
    assert len(calls) > 10
    assert any(len(tangents) > 10 for _, tangents, _ in calls)  # the end-to-end call
    for expr, tangents, result in calls:
        assert agrees_with_sympy(expr, tangents, result), (expr, tangents)
