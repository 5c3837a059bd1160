"""The normalizations' decision in polynomial-ring arithmetic (``engine.RadicalRing``): the
same answers as the expression path, its negative controls, and the sizes ``verify`` uses."""

from __future__ import annotations

import sympy as sp

from derive import engine, normalization, proof_normalization
from derive.expr import Axis
from derive.layers import EPS
from derive.proof import evaluate

X, Y = sp.symbols("x y", real=True)
ROOT = sp.sqrt(X**2 + Y**2 + EPS)


def _expression_path(lhs: sp.Matrix, rhs: sp.Matrix) -> bool:
    """The decision without the ring: expand, together, reduce modulo t² = b."""
    radicals = engine.Radicals()
    for a, b in zip(lhs, rhs, strict=True):
        difference = sp.expand(radicals(a) - radicals(b))
        if difference != 0:
            difference = radicals.reduce(sp.fraction(sp.together(difference))[0])
        if difference != 0:
            return False
    return True


def test_the_ring_decides_with_the_relation_and_rejects_without_it():
    lhs = sp.Matrix([[X / ROOT**3 * (X**2 + Y**2 + EPS), ROOT / (X**2 + Y**2 + EPS)]])
    right = sp.Matrix([[X / ROOT, 1 / ROOT]])
    assert engine.RadicalRing().decide(lhs, right) == (True, "")
    wrong = sp.Matrix([[X / ROOT, 1 / ROOT**3]])
    assert engine.RadicalRing().decide(lhs, wrong) == (False, "entry (0, 1) differs")
    assert _expression_path(lhs, right) and not _expression_path(lhs, wrong)


def test_the_ring_keeps_two_roots_apart():
    other = sp.sqrt(X**2 + EPS)
    lhs = sp.Matrix([[1 / ROOT + 1 / other]])
    assert engine.RadicalRing().decide(lhs, sp.Matrix([[2 / ROOT]])) == (
        False,
        "entry (0, 0) differs",
    )


def test_exp_and_log_take_the_expression_path():
    lhs = sp.Matrix([[sp.exp(X) / ROOT]])
    assert engine.RadicalRing().decide(lhs, lhs) is None
    assert engine.identical_with_radicals(lhs, sp.Matrix([[sp.exp(X) * ROOT / ROOT**2]]))[0]
    assert not engine.identical_with_radicals(lhs, sp.Matrix([[sp.exp(Y) / ROOT]]))[0]


def test_the_ring_and_the_expression_path_agree_on_the_normalizations():
    """Layer norm's compact dx against its raw chain-rule output at (2, 3): equal on both
    paths; with the mean term's count changed, different on both."""
    layer = normalization.LAYER_NORM
    derivation = normalization.derive_normalization(layer)
    env, sem = proof_normalization._explicit(layer, 2, 3)
    compact = evaluate(derivation.compact[layer.input].expr, env, sem)
    raw = evaluate(derivation.raw[layer.input], env, sem)
    assert engine.RadicalRing().decide(raw, compact) == (True, "")
    assert _expression_path(raw, compact)
    wrong = compact + sp.ones(2, 3) * sp.Rational(1, 10**6) * env[layer.gamma][0, 0]
    assert engine.RadicalRing().decide(raw, wrong) == (False, "entry (0, 0) differs")
    assert not _expression_path(raw, wrong)


def test_verify_sizes_are_non_square_and_normalize_at_least_three_entries():
    for axis, (m, n) in proof_normalization.VERIFY_SIZES.items():
        normalized = n if axis is Axis.FEATURES else m
        assert m != n and normalized >= 3
    for layer in (normalization.LAYER_NORM, normalization.BATCH_NORM):
        (check,) = [c for c in proof_normalization.verify_normalizations() if c.name == layer.name]
        m, n = proof_normalization.VERIFY_SIZES[layer.axis]
        assert check.ok and f"m={m}, n={n}" in check.method
