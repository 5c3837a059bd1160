"""The residual, projection and dropout block lemmas for every width (``symbolic_widths``),
with the negative controls failing at symbolic widths too."""

from __future__ import annotations

import pytest

from derive import spec, symbolic_widths, verification
from derive.derivation import derive
from derive.expr import Add, Hadamard, MatMul, Transpose
from derive.layers import W, abar, delta
from derive.proof_layers import sample_block


@pytest.mark.parametrize("kind", symbolic_widths.BLOCKS)
def test_each_block_lemma_holds_for_every_width(kind):
    check = symbolic_widths.check_block_lemma_symbolic(kind)
    assert check.ok, check.detail
    assert check.name.endswith(" lemma, any width")


def test_the_residual_lemma_at_any_width_rejects_a_missing_skip_term():
    block = sample_block("res")
    claims = symbolic_widths.block_claims_symbolic("res")
    assert claims[block.input] == Add(MatMul(delta(2), Transpose(W(2))), abar(2))
    claims[block.input] = MatMul(delta(2), Transpose(W(2)))
    check = symbolic_widths.check_block_lemma_symbolic("res", claims)
    assert not check.ok and check.detail == "a1: differs"


def test_the_residual_lemma_at_any_width_rejects_a_transposed_weight_gradient():
    """The square n x n weight of equal widths: both index cases (r ≤ s, s ≤ r) are decided."""
    block = sample_block("res")
    claims = symbolic_widths.block_claims_symbolic("res")
    claims[W(2)] = Transpose(claims[W(2)])  # δ_lᵀ a_{l-1}: the right shape, the wrong entries
    check = symbolic_widths.check_block_lemma_symbolic("res", claims)
    assert not check.ok and check.detail == "W2: differs"
    assert block.input in claims


def test_the_projection_lemma_at_any_width_rejects_the_skip_term_without_p():
    block = sample_block("proj")
    claims = symbolic_widths.block_claims_symbolic("proj")
    claims[block.input] = Add(MatMul(delta(2), Transpose(W(2))), abar(2))
    check = symbolic_widths.check_block_lemma_symbolic("proj", claims)
    assert not check.ok and "cannot add m x n_prev and m x n_l" in check.detail


def test_the_projection_lemma_at_any_width_rejects_p_from_the_wrong_adjoint():
    block = sample_block("proj")
    claims = symbolic_widths.block_claims_symbolic("proj")
    claims[block.proj] = claims[W(2)]  # a_{l-1}ᵀ δ_l instead of a_{l-1}ᵀ ā_l
    check = symbolic_widths.check_block_lemma_symbolic("proj", claims)
    assert not check.ok and check.detail == "proj2: differs"


def test_the_dropout_lemma_at_any_width_rejects_a_missing_scale():
    block = sample_block("drop")
    claims = symbolic_widths.block_claims_symbolic("drop")
    claims[block.input] = Hadamard(abar(2), block.mask)  # without 1/(1 - p)
    check = symbolic_widths.check_block_lemma_symbolic("drop", claims)
    assert not check.ok and check.detail == "a1: differs"


def test_verify_reports_the_any_width_lemma_of_each_block_kind_and_the_document_explains_it():
    from derive import latex_layers, naming

    derivation = derive(spec.network("3,4+proj,drop:0.5,4+res,2"))
    checks = verification.verify(derivation, end_to_end_depth=0)
    names = {c.name for c in checks}
    assert {
        "residual lemma, any width",
        "residual with projection lemma, any width",
        "dropout lemma, any width",
        "step lemma, any width",
    } <= names
    assert all(c.ok for c in checks)
    text = latex_layers.document(derivation, checks, naming.spec_command(derivation.network))
    for heading in ("residual", "residual with projection", "dropout"):
        assert f"One {heading} block, any width" in text
    assert "proved at fixed sizes only" in text


def test_a_point_refutes_a_wrong_sum_and_never_a_true_one():
    """``_nonzero_at_a_point`` (a wrong claim rejected without ``simplify``): a true identity
    that is not equal on its face is never refuted; a transposed entry is; a symbol it cannot
    place leaves the decision to ``simplify``."""
    import sympy as sp

    from derive.engine import generic_activation
    from derive.symbolic_widths import DROP_RATE, _nonzero_at_a_point, n, r, s

    x = sp.IndexedBase("x")
    k, u = sp.symbols("k u", integer=True, nonnegative=True)
    a, da = generic_activation(2)
    whole = sp.Sum(x[r, k], (k, 0, n - 1))
    split = sp.Sum(x[r, k], (k, 0, s)) + sp.Sum(x[r, k], (k, s + 1, n - 1))
    true = (a(whole) * da(whole) / (1 - DROP_RATE) - a(split) * da(split) / (1 - DROP_RATE)).subs(
        {n: s + 1 + u}
    )
    assert sp.expand(true) != 0  # equal only once the sums are split alike
    assert not _nonzero_at_a_point(true)
    transposed = (a(whole) - a(sp.Sum(x[k, r], (k, 0, n - 1)))).subs({n: s + 1 + u})
    assert _nonzero_at_a_point(transposed)
    assert not _nonzero_at_a_point(transposed * sp.Symbol("lam"))  # not placed: undecided


@pytest.mark.parametrize(
    ("kind", "wrong", "detail"),
    [
        ("res", "no skip", "a1: differs"),
        pytest.param("res", "transposed", "W2: differs", marks=pytest.mark.slow),
        pytest.param("proj", "wrong adjoint", "proj2: differs", marks=pytest.mark.slow),
    ],
)  # the cheapest control by default; the two that took 2-4 CPU-s through simplify: slow
def test_the_controls_fail_through_simplify_alone(monkeypatch, kind, wrong, detail):
    """The point only shortcuts: without it, ``simplify`` rejects the same claims."""
    monkeypatch.setattr(symbolic_widths, "_nonzero_at_a_point", lambda difference: False)
    block = sample_block(kind)
    claims = symbolic_widths.block_claims_symbolic(kind)
    if wrong == "no skip":
        claims[block.input] = MatMul(delta(2), Transpose(W(2)))
    elif wrong == "transposed":
        claims[W(2)] = Transpose(claims[W(2)])
    else:
        claims[block.proj] = claims[W(2)]
    check = symbolic_widths.check_block_lemma_symbolic(kind, claims)
    assert not check.ok and check.detail == detail
