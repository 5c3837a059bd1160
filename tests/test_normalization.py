"""Layer norm and batch norm (issue 14): nodes, chain rules, simplification, exact proofs, LaTeX."""

from __future__ import annotations

import shutil

import pytest
import sympy as sp

from derive import catalog, engine, model
from derive.catalog import LossFunction
from derive.derivation import pull
from derive.expr import (
    Axis,
    Expr,
    Hadamard,
    InvSqrt,
    Kind,
    Mean,
    Power,
    Scale,
    Spread,
    Sub,
    SumRows,
    Var,
    total,
)
from derive.latex_normalization import document, equations
from derive.layers import BATCH, EPS, WIDTH, BatchNorm, LayerNorm
from derive.normalization import (
    BATCH_NORM,
    LAYER_NORM,
    Normalization,
    derive_normalization,
    facts,
    shapes,
)
from derive.proof import Semantics, evaluate, symbols_matrix
from derive.proof_normalization import SIZES, check_dense_then_normalization, check_normalization
from derive.shapes import ShapeError, shape
from derive.simplify import (
    RULES,
    Monomial,
    Poly,
    Summed,
    centred_sums_vanish,
    constants_leave_sums,
    simplify,
)

SMALL = {LAYER_NORM: (2, 3), BATCH_NORM: (3, 2)}
"""Fast sizes: non-square, and each statistic averages 3 entries."""

U = Var(Kind.A, 9)  # a free m x n (or row, or column) variable
G = model.INCOMING


# --- shapes ----------------------------------------------------------------------


@pytest.mark.parametrize("layer", [LAYER_NORM, BATCH_NORM], ids=["layer", "batch"])
def test_every_step_has_a_shape(layer):
    known = shapes(layer)
    for step in layer.steps():
        assert shape(step.expr, known) == known[step.target]


R = Var(Kind.GAMMA, 9)


def test_shape_rule_refuses_broadcast_without_spread():
    leaves = {U: (BATCH, WIDTH), R: (sp.Integer(1), WIDTH)}
    with pytest.raises(ShapeError, match="entrywise product"):
        shape(Hadamard(U, R), leaves)
    assert shape(Hadamard(U, Spread(R, Axis.BATCH, BATCH)), leaves) == (BATCH, WIDTH)
    with pytest.raises(ShapeError, match="mean of m"):
        shape(Mean(U, Axis.FEATURES, BATCH), leaves)
    with pytest.raises(ShapeError, match="spread across the features"):
        shape(Spread(U, Axis.FEATURES, WIDTH), leaves)


# --- one chain rule per node, against SymPy's diff -------------------------------------


def _vjp_holds(node: Expr, u_shape: tuple[int, int], vjp: Expr | None = None) -> bool:
    """pull's rule for ``node`` (or ``vjp``, a claimed one) equals ∂ Σ G ⊙ node / ∂u."""
    loss = LossFunction("none", sp.Integer(0), "", "")
    sem = Semantics(
        lambda _: sp.Function("a"), lambda _: sp.Function("Da"), loss, sizes={BATCH: 2, WIDTH: 3}
    )
    env = {U: symbols_matrix("u", *u_shape)}
    value = evaluate(node, env, sem)
    env[G] = symbols_matrix("g", *value.shape)
    scalar = sp.Add(*env[G].multiply_elementwise(value))
    if vjp is None:
        into: dict[Var, list[Expr]] = {}
        pull(node, G, into)
        vjp = sum_parts(into[U])
    claimed = evaluate(vjp, env, sem)
    oracle = env[U].applyfunc(lambda e: sp.diff(scalar, e))
    return engine.identical_with_radicals(oracle, claimed)[0]


def sum_parts(parts: list[Expr]) -> Expr:
    from derive.expr import Add

    result = parts[0]
    for part in parts[1:]:
        result = Add(result, part)
    return result


FULL, ROW, COL = (2, 3), (1, 3), (2, 1)


@pytest.mark.parametrize(
    ("node", "u_shape"),
    [
        (Sub(U, Scale(U, sp.Integer(3))), FULL),
        (Scale(U, sp.Rational(-1, 2)), FULL),
        (Hadamard(U, Power(U, 2)), FULL),
        (Power(U, 3), FULL),
        (Mean(U, Axis.BATCH, BATCH), FULL),
        (Mean(U, Axis.FEATURES, WIDTH), FULL),
        (Spread(U, Axis.BATCH, BATCH), ROW),
        (Spread(U, Axis.FEATURES, WIDTH), COL),
        (InvSqrt(Power(U, 2), EPS), FULL),
    ],
    ids=[
        "sub",
        "scale",
        "hadamard",
        "power",
        "mean-rows",
        "mean-cols",
        "spread-rows",
        "spread-cols",
        "invsqrt",
    ],
)
def test_chain_rule_of_each_node(node, u_shape):
    assert _vjp_holds(node, u_shape)


def test_a_wrong_chain_rule_is_rejected():
    """Negative control: the mean's adjoint without 1/count, and a spread's without the sum."""
    mean = Mean(U, Axis.FEATURES, WIDTH)
    assert not _vjp_holds(mean, FULL, Spread(G, Axis.FEATURES, WIDTH))
    spread = Spread(U, Axis.BATCH, BATCH)
    assert not _vjp_holds(spread, ROW, Mean(G, Axis.BATCH, BATCH))
    assert not _vjp_holds(
        InvSqrt(U, EPS), FULL, Scale(Hadamard(G, Power(InvSqrt(U, EPS), 3)), sp.Rational(1, 2))
    )


# --- the simplification -------------------------------------------------------------


def _textbook(layer: Normalization) -> Expr:
    """The issue's compact dx, typed in here only to compare against what the machine made."""
    n, axis = layer.count, layer.axis
    s, xhat = layer.var(Kind.INV_STD), layer.xhat

    def spread(e: Expr) -> Expr:
        return Spread(e, axis, n)

    if layer.axis is Axis.BATCH:  # (γ s / m) ⊙ (m G - Σ G - x̂ ⊙ Σ(G ⊙ x̂))
        g, front = G, Spread(Hadamard(layer.gamma, s), Axis.BATCH, BATCH)
    else:  # (s / n) ⊙ (n ĝ - Σ ĝ - x̂ ⊙ Σ(ĝ ⊙ x̂))
        g, front = layer.var(Kind.NORMALIZED_GRAD), spread(s)
    inner = Sub(
        Sub(Scale(g, n), spread(total(g, axis))),
        Hadamard(xhat, spread(total(Hadamard(g, xhat), axis))),
    )
    return Hadamard(Scale(front, 1 / n), inner)


@pytest.mark.parametrize("layer", [LAYER_NORM, BATCH_NORM], ids=["layer", "batch"])
def test_the_compact_form_comes_out_of_the_rules(layer):
    derivation = derive_normalization(layer)
    dx = derivation.compact[layer.input]
    assert dx.changed and dx.expr == _textbook(layer)
    assert "centred_sums_vanish" in dx.rules and "collect" in dx.rules
    assert derivation.compact[layer.gamma].expr == SumRows(Hadamard(G, layer.xhat))
    assert derivation.compact[layer.beta].expr == SumRows(G)
    # the ĝ abbreviation only where γ could not leave the sums
    assert ("abbreviate" in dx.rules) == (layer is LAYER_NORM)


def test_without_a_rule_the_form_stays_longer_and_is_still_proved():
    layer = LAYER_NORM
    raw = derive_normalization(layer).raw[layer.input]
    rules = tuple(rule for rule in RULES if rule is not centred_sums_vanish)
    partial = simplify(raw, facts(layer), rules)
    assert partial.expr != _textbook(layer)
    claims = {layer.input: partial.expr}
    assert check_normalization(layer, SMALL[layer], claims=claims).ok


def test_an_unknown_node_leaves_the_raw_form():
    from derive.expr import Activate

    raw = Hadamard(G, Activate(1, LAYER_NORM.input))
    result = simplify(raw, facts(LAYER_NORM))
    assert result.expr == raw and not result.changed and result.rules == ()


def test_rules_respect_the_axis():
    known = facts(BATCH_NORM)
    gamma, xhat = BATCH_NORM.gamma, BATCH_NORM.xhat
    # γ (a row) leaves a sum over the batch, not one over the features
    over_batch = Summed(Axis.BATCH, Poly.of({Monomial.of({G: 1, gamma: 1}): sp.Integer(1)}))
    assert constants_leave_sums(over_batch, known) is not None
    over_features = Summed(Axis.FEATURES, over_batch.body)
    assert constants_leave_sums(over_features, known) is None
    # x̂ sums to 0 over the normalized axis only
    assert centred_sums_vanish(Summed(Axis.BATCH, Poly.atom(xhat)), known) == Poly()
    assert centred_sums_vanish(Summed(Axis.FEATURES, Poly.atom(xhat)), known) is None


# --- the exact proof and its negative controls ------------------------------------------


@pytest.mark.parametrize("layer", [LAYER_NORM, BATCH_NORM], ids=["layer", "batch"])
def test_proved_at_a_small_size(layer):
    check = check_normalization(layer, SMALL[layer])
    assert check.ok, check.detail
    assert "ε > 0" in check.method


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("layer", [LAYER_NORM, BATCH_NORM], ids=["layer", "batch"])
def test_proved_at_the_issue_sizes(layer, size):
    check = check_normalization(layer, size)
    assert check.ok, check.detail


def _without_mean_term(dx: Expr) -> Expr:
    """m G - Σ G - x̂ ⊙ Σ(G ⊙ x̂) with the - Σ G dropped."""
    assert isinstance(dx, Hadamard) and isinstance(dx.right, Sub)
    inner = dx.right
    assert isinstance(inner.left, Sub)
    return Hadamard(dx.left, Sub(inner.left.left, inner.right))


def test_batch_norm_without_the_mean_term_fails():
    layer = BATCH_NORM
    compact = {v: s.expr for v, s in derive_normalization(layer).compact.items()}
    compact[layer.input] = _without_mean_term(compact[layer.input])
    check = check_normalization(layer, SMALL[layer], claims=compact)
    assert check.status.value == "failed"
    assert "against SymPy's diff" in check.detail and "against the raw chain rule" in check.detail


@pytest.mark.parametrize(
    "layer", [LAYER_NORM, pytest.param(BATCH_NORM, marks=pytest.mark.slow)], ids=["layer", "batch"]
)
def test_normalization_over_the_wrong_axis_fails(layer):
    wrong = Axis.BATCH if layer.axis is Axis.FEATURES else Axis.FEATURES
    check = check_normalization(layer, SMALL[layer], reference_axis=wrong)
    assert check.status.value == "failed"
    assert f"{layer.input.name} against SymPy's diff" in check.detail


def test_unbiased_variance_in_the_forward_fails():
    layer = BATCH_NORM
    check = check_normalization(layer, SMALL[layer], divisor=lambda count: sp.Integer(count - 1))
    assert check.status.value == "failed"
    assert f"{layer.input.name} against SymPy's diff" in check.detail


def test_radicals_decide_with_the_relation():
    """√b · √b = b is only seen through the reduction modulo t² = b."""
    x = sp.Symbol("x", real=True)
    root = sp.sqrt(x**2 + EPS)
    lhs = sp.Matrix([[root * root.subs(x, x) / (x**2 + EPS) ** sp.Rational(3, 2)]])
    assert engine.identical_with_radicals(lhs, sp.Matrix([[1 / root]]))[0]
    assert not engine.identical_with_radicals(lhs, sp.Matrix([[1 / (x**2 + EPS)]]))[0]


# --- LaTeX ---------------------------------------------------------------------------


@pytest.mark.parametrize("layer", [LAYER_NORM, BATCH_NORM], ids=["layer", "batch"])
def test_equations_print_every_step_and_adjoint(layer):
    text = equations(layer)
    for name in (r"\mu", r"\sigma^{2}", r"\hat{x}", r"\overline{x}", r"\overline{\gamma}"):
        assert name in text
    lines = [line for line in text.splitlines() if "&&" in line]  # one per forward step
    assert len(lines) == len(layer.steps())
    for line, step in zip(lines, layer.steps(), strict=True):
        rows, cols = shapes(layer)[step.target]
        assert line.endswith(f"&& {sp.latex(rows)} \\times {sp.latex(cols)} \\\\") or line.endswith(
            f"&& {sp.latex(rows)} \\times {sp.latex(cols)}"
        )


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_the_document_compiles():
    from derive.pdf import compile_pdf

    assert compile_pdf(document([LAYER_NORM, BATCH_NORM])).startswith(b"%PDF")


def test_a_sum_of_a_spread_row_is_the_count_times_the_row():
    """Σ_rows of γ spread down the batch is m γ (``constants_leave_sums``, ``sum_of_a_constant``);
    the result keeps the raw form's shape."""
    gamma = BATCH_NORM.gamma
    result = simplify(SumRows(Spread(gamma, Axis.BATCH, BATCH)), facts(BATCH_NORM))
    assert result.expr == Scale(gamma, BATCH)
    assert "sum_of_a_constant" in result.rules
    full = simplify(
        Spread(SumRows(Spread(gamma, Axis.BATCH, BATCH)), Axis.BATCH, BATCH), facts(BATCH_NORM)
    )
    assert shape(full.expr, shapes(BATCH_NORM)) == (BATCH, WIDTH)


@pytest.mark.parametrize("layer", [LAYER_NORM, BATCH_NORM], ids=["layer", "batch"])
def test_compact_form_matches_torch(layer):
    """The derived forward and compact backward, at numbers, against PyTorch's autograd of
    F.layer_norm / F.batch_norm (training mode): same ε placement, same biased variance."""
    torch = pytest.importorskip("torch")
    import numpy as np

    m, n = 4, 3
    rng = np.random.default_rng(14)
    x, g = rng.standard_normal((m, n)), rng.standard_normal((m, n))
    gamma, beta = rng.standard_normal((1, n)), rng.standard_normal((1, n))
    eps = 1e-3
    env = {
        layer.input: sp.Matrix(x),
        layer.gamma: sp.Matrix(gamma),
        layer.beta: sp.Matrix(beta),
        G: sp.Matrix(g),
    }
    loss = LossFunction("none", sp.Integer(0), "", "")
    sem = Semantics(
        lambda _: sp.Function("a"), lambda _: sp.Function("Da"), loss, sizes={BATCH: m, WIDTH: n}
    )
    for step in layer.steps():
        env[step.target] = evaluate(step.expr, env, sem).subs(EPS, eps)
    env[layer.var(Kind.NORMALIZED_GRAD)] = evaluate(derive_normalization(layer).ghat, env, sem)
    ours = {
        v: np.array(evaluate(s.expr, env, sem), dtype=float)
        for v, s in derive_normalization(layer).compact.items()
    }

    tx = torch.tensor(x, requires_grad=True)
    tg = torch.tensor(gamma[0], requires_grad=True)
    tb = torch.tensor(beta[0], requires_grad=True)
    if layer.axis is Axis.FEATURES:
        y = torch.nn.functional.layer_norm(tx, (n,), tg, tb, eps)
    else:
        y = torch.nn.functional.batch_norm(tx, None, None, tg, tb, training=True, eps=eps)
    assert np.allclose(np.array(env[layer.output], dtype=float), y.detach().numpy(), atol=1e-12)
    (y * torch.tensor(g)).sum().backward()
    assert np.allclose(ours[layer.input], tx.grad.numpy(), atol=1e-10)
    assert np.allclose(ours[layer.gamma][0], tg.grad.numpy(), atol=1e-10)
    assert np.allclose(ours[layer.beta][0], tb.grad.numpy(), atol=1e-10)


def test_layers_refuse_a_width_they_cannot_normalize():
    with pytest.raises(ValueError, match="layer norm layer needs a width of at least 2, got 1"):
        LayerNorm(2, 1)
    with pytest.raises(ValueError, match="batch norm layer needs a width of at least 1, got 0"):
        BatchNorm(2, 0)
    with pytest.raises(ValueError, match="index of at least 1, got 0"):
        BatchNorm(0, 3)
    assert BatchNorm(2, 1).parameters() == (Var(Kind.GAMMA, 2), Var(Kind.BETA, 2))


# --- composed with a dense layer and a loss -----------------------------------------


@pytest.mark.parametrize(
    "kind", [pytest.param(LayerNorm, marks=pytest.mark.slow), BatchNorm], ids=["layer", "batch"]
)
def test_dense_then_normalization_is_proved(kind):
    check = check_dense_then_normalization(kind)
    assert check.ok, check.detail


def test_dense_then_normalization_rejects_a_wrong_gradient():
    """Negative control: ∂L/∂γ_2 claimed as 1ᵀ ĝ_2 (the x̂ factor forgotten)."""
    norm = BatchNorm(2, 3)
    claims = {norm.gamma: SumRows(norm.var(Kind.NORMALIZED_GRAD))}
    check = check_dense_then_normalization(BatchNorm, claims=claims)
    assert check.status.value == "failed" and check.detail.startswith("gamma2")


@pytest.mark.parametrize("kind", [LayerNorm, BatchNorm], ids=["layer", "batch"])
def test_the_composed_chain_instantiates_the_lemma(kind):
    """In dense → normalization → loss, the normalization's identities are, term for term,
    its lemma's with G := ∂L/∂y (structural, like ``proof.check_layers_are_lemma_instances``)."""
    from derive.derivation import backward
    from derive.expr import ActivateDeriv, Loss, LossGrad, substitute
    from derive.layers import Dense, Step, numbered

    dense, norm = Dense(1, 2, 3, catalog.activation("tanh")), kind(2, 3)
    steps = numbered(
        [*dense.steps(), *norm.steps(), Step(0, model.LOSS, Loss(norm.output, model.Y))]
    )
    chain = backward(steps, {model.LOSS: model.SEED})
    lemma = backward(*norm.lemma_chain())
    upstream = {G: LossGrad(norm.output, model.Y)}
    for var in (norm.xhat, norm.gamma, norm.beta):
        assert chain[var] == substitute(lemma[var], upstream)
    assert chain[model.z(1)] == Hadamard(lemma[norm.input], ActivateDeriv(1, model.z(1)))


def test_a_decided_normalization_is_reused_but_never_for_a_negative_control(monkeypatch):
    """The default claim is decided once per process; altered claims, axes or divisors are
    always decided afresh (a wrong axis still fails after the right one was cached).  At the
    small size: what is cached is keyed by the size, any size shows it."""
    from derive import proof_normalization as pn
    from derive.normalization import LAYER_NORM

    monkeypatch.setattr(pn, "_PROVED", {})  # decided here, whichever test ran before
    first = pn.check_normalization(LAYER_NORM, SMALL[LAYER_NORM])
    assert "decided once" not in first.method
    again = pn.check_normalization(LAYER_NORM, SMALL[LAYER_NORM])
    assert first.ok and again.ok and "decided once in this process" in again.method
    wrong = pn.check_normalization(LAYER_NORM, SMALL[LAYER_NORM], reference_axis=Axis.BATCH)
    assert not wrong.ok and "decided once" not in wrong.method
