"""The end-to-end check at any depth (``proof_unrolled``): it proves the derived
identities, rejects wrong ones at every depth, agrees with the expanding check
where both run, and never turns an undecided point into a pass."""

from __future__ import annotations

import dataclasses
import random

import pytest
import sympy as sp

from derive import derivation, model, proof, spec
from derive import proof_unrolled as unrolled
from derive.derivation import derive
from derive.expr import (
    Activate,
    ActivateDeriv,
    Hadamard,
    LossGrad,
    MatMul,
    SumRows,
    Transpose,
)


def _network(depth: int, activation: str = "tanh", loss: str = "l2"):
    return derive(spec.network(",".join(["3"] * (depth + 1)), activation, loss))


def _field(derived, seed: int = 0) -> proof.Check:
    return proof.check_end_to_end(derived, method="field", rng=random.Random(seed))


@pytest.mark.parametrize("depth", [1, 2, 3, 6])
def test_field_method_proves_the_derived_identities(depth):
    check = _field(_network(depth))
    assert check.ok, check.detail
    assert f"{depth} deltas" in check.statement
    assert "probability at most " in check.method and "mod the prime 2**61-1" in check.method


@pytest.mark.parametrize(
    "activation,loss",
    [
        ("relu,gelu,sigmoid,identity,softplus,tanh", "l2"),
        ("tanh", "mse"),
        ("elu,leaky_relu,relu,gelu,tanh,softmax", "softmax_cross_entropy"),
        ("tanh,relu,gelu,identity,softplus,sigmoid", "sigmoid_binary_cross_entropy"),
    ],
)
def test_field_method_proves_mixed_activations_and_every_loss_at_depth_six(activation, loss):
    check = _field(_network(6, activation, loss))
    assert check.ok, check.detail


def test_auto_method_expands_up_to_expand_depth_and_evaluates_deeper(monkeypatch):
    monkeypatch.setattr(proof, "EXPAND_DEPTH", 1)
    assert proof.check_end_to_end(_network(1)).method.startswith("exact: chain rule")
    assert proof.check_end_to_end(_network(2)).method.startswith("randomised exact")
    with pytest.raises(ValueError, match="unknown end-to-end method"):
        proof.check_end_to_end(_network(1), method="guess")


# --- negative controls, deep ------------------------------------------------


def _mutants(depth: int):
    """(name, which delta or gradient, wrong formula) for a depth-``depth`` network."""
    top, mid = depth, depth // 2
    d, W, z, a = model.delta, model.W, model.z, model.a
    upstream = MatMul(d(mid + 1), Transpose(W(mid + 1)))
    yield "δ_1 with W_1 for W_2", 1, Hadamard(MatMul(d(2), Transpose(W(1))), ActivateDeriv(1, z(1)))
    yield "δ_mid without a'", mid, upstream
    yield "δ_mid with a", mid, Hadamard(upstream, Activate(mid, z(mid)))
    yield "δ_mid with the wrong layer's a'", mid, Hadamard(upstream, ActivateDeriv(mid + 1, z(mid)))
    yield "δ_mid with a' at a_l", mid, Hadamard(upstream, ActivateDeriv(mid, a(mid)))
    yield "δ_L without a'", top, LossGrad(a(top), model.Y)
    yield "∂L/∂W_mid without transpose", W(mid), MatMul(a(mid - 1), d(mid))
    yield "∂L/∂W_mid from the wrong side", W(mid), MatMul(Transpose(d(mid)), a(mid - 1))
    yield "∂L/∂W_mid with the wrong layer's input", W(mid), MatMul(Transpose(a(mid)), d(mid))
    yield "∂L/∂b_mid not summed", model.b(mid), d(mid)
    yield (
        "∂L/∂b_mid summed over the wrong axis",
        model.b(mid),
        Transpose(SumRows(Transpose(d(mid)))),
    )


def _mutate(good, target, formula):
    if isinstance(target, int):
        return dataclasses.replace(good, deltas={**good.deltas, target: formula})
    return dataclasses.replace(good, gradients={**good.gradients, target: formula})


# every mutant at depth 6 by default (and at depth 3 by both methods, below); depth 8 in the
# slow run (11 x 0.1 CPU-s)
@pytest.mark.parametrize("depth", [6, pytest.param(8, marks=pytest.mark.slow)])
@pytest.mark.parametrize("case", range(11))
def test_field_method_rejects_each_mutant_deep(depth, case):
    good = _network(depth)
    name, target, formula = list(_mutants(depth))[case]
    check = _field(_mutate(good, target, formula), seed=case)
    assert not check.ok, name


def test_both_methods_prove_depth_three():
    assert proof.check_end_to_end(_network(3), method="expand").ok
    assert _field(_network(3)).ok


@pytest.mark.parametrize("case", range(11))
def test_both_methods_reject_each_mutant_at_depth_three(case):
    name, target, formula = list(_mutants(3))[case]
    bad = _mutate(_network(3), target, formula)
    assert not proof.check_end_to_end(bad, method="expand").ok, name
    assert not _field(bad, seed=case).ok, name


def test_a_chain_rule_mutation_is_caught_end_to_end_at_depth_six(monkeypatch):
    """The chain rule itself corrupted (products lose their transpose): caught at depth 6."""

    def without_transpose(expr, adjoint, into, original=derivation.pull):
        if isinstance(expr, MatMul):
            without_transpose(expr.left, MatMul(adjoint, expr.right), into)
            without_transpose(expr.right, MatMul(Transpose(expr.left), adjoint), into)
        else:
            original(expr, adjoint, into)

    monkeypatch.setattr(derivation, "pull", without_transpose)
    check = _field(_network(6))
    assert not check.ok, check


# --- the field evaluation itself -----------------------------------------------


def _same(left: sp.Expr, right: sp.Expr, seed: int = 0) -> bool:
    point = unrolled.FieldPoint(random.Random(seed), {})
    return point(left)[0] == point(right)[0]


def test_field_point_decides_functions_arguments_and_exponentials():
    a, b = proof.generic_activation(1)[0], proof.generic_activation(2)[0]
    x, y = sp.symbols("x y")
    assert _same(2 * a(x), a(x) + a(x))
    assert not _same(a(x), b(x))
    assert not _same(a(x), a(y))
    assert not _same(sp.diff(a(x), x), a(x))
    assert _same(sp.exp(x) * sp.exp(-x), sp.Integer(1))
    assert _same(sp.exp(x) / (sp.exp(x) + 1), 1 / (1 + sp.exp(-x)))
    assert not _same(sp.exp(x) / (sp.exp(x) + 1), 1 / (1 + sp.exp(x)))
    assert _same(sp.Rational(1, 3) * 3 * x, x)


def test_field_point_refuses_what_it_cannot_evaluate():
    with pytest.raises(TypeError, match="cannot evaluate"):
        unrolled.FieldPoint(random.Random(0), {})(sp.Symbol("x") ** sp.Rational(1, 2))


@pytest.mark.parametrize(
    "expr",
    [
        "(x*y + 1)**3 / (x + y) + x**2",
        "1/(1 + 1/(x + y*z)) - x**4*z",
        "((x + 1)/(y - 2))**-2 * z",
        "x**5 + y**5 - z/(x*y)",
    ],
)
def test_degree_bound_is_at_least_the_true_degree(expr):
    parsed = sp.parse_expr(expr)
    value = unrolled.FieldPoint(random.Random(0), {})(parsed)
    numerator, denominator = sp.fraction(sp.cancel(sp.together(parsed)))
    gens = sorted(parsed.free_symbols, key=str)
    assert value[1] >= sp.Poly(numerator, *gens).total_degree()
    assert value[2] >= sp.Poly(denominator, *gens).total_degree()


class _MinusOne(random.Random):
    """Every free variable is -1: exp(z) = -1 makes 1 + exp(-z) vanish."""

    def randrange(self, start, stop=None, step=1):  # type: ignore[override]
        return unrolled.PRIME - 1


def test_a_vanishing_denominator_fails_rather_than_passes():
    good = _network(4, "tanh,tanh,tanh,sigmoid", "sigmoid_binary_cross_entropy")
    assert _field(good).ok
    check = proof.check_end_to_end(good, method="field", rng=_MinusOne())
    assert not check.ok and "denominator vanished" in check.detail


def test_error_bound_text_rounds_up():
    assert unrolled.bound_text(2.3e-50) == "3e-50"
    assert unrolled.bound_text(1e-49) == "1e-49"
    assert unrolled.bound_text(9.99e-12) == "1e-11"
    assert unrolled.bound_text(1.0) == "1"
