"""The L2 penalty (``--l2``) on a network with layer kinds: which matrices it penalises (W_l
and projections P_l; not b_l, γ_l, β_l), derived, proved with negative controls, printed,
emitted in both Python targets, trained through ``fit`` and the estimators."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from helpers import central_differences, load_module

from derive import spec
from derive.backends.array_api import module as array_api_module
from derive.backends.numpy import module as numpy_module
from derive.derivation import derive
from derive.expr import Add, Kind, PenaltyGrad
from derive.proof_layers import (
    block_claims,
    check_block_lemma,
    check_blocks_are_lemma_instances,
    check_end_to_end_mixed,
    sample_block,
)

MIXED = "3,4+proj,ln,4+res,bn,drop:0.5,2"
"""Every kind with the penalty: W_1, P_1, W_3 and W_6 penalised; b, γ, β not."""


def test_the_penalty_adds_lambda_times_each_weight_and_projection_only():
    plain = derive(spec.network(MIXED))
    penalised = derive(spec.network(MIXED, l2=True))
    assert [v.name for v in penalised.network.weights()] == ["W1", "proj1", "W3", "W6"]
    assert penalised.named == plain.named  # no layer's output enters the penalty
    for var, gradient in penalised.gradients.items():
        if var.kind in (Kind.W, Kind.PROJ):
            assert gradient == Add(plain.gradients[var], PenaltyGrad(var))
        else:  # b_l, γ_l, β_l
            assert gradient == plain.gradients[var]


# --- the proof: positive, and the negative controls (γ penalised; P not) ----------------


def _penalise(derivation, var):
    """A derivation whose ∂/∂var also gains λ var (a penalty on the wrong parameter)."""
    gradients = dict(derivation.gradients)
    gradients[var] = Add(gradients[var], PenaltyGrad(var))
    return replace(derivation, gradients=gradients)


def _unpenalise(derivation, var):
    """A derivation whose ∂/∂var lacks its λ var term."""
    gradients = dict(derivation.gradients)
    gradient = gradients[var]
    assert isinstance(gradient, Add) and gradient.right == PenaltyGrad(var)
    gradients[var] = gradient.left
    return replace(derivation, gradients=gradients)


def test_the_projection_lemma_with_the_penalty_rejects_p_without_lambda_p():
    block = sample_block("proj")
    assert check_block_lemma(block, penalty=True).ok
    claims = block_claims(block, penalty=True)
    claims[block.proj] = claims[block.proj].left  # ∂/∂P_l without λ P_l
    check = check_block_lemma(block, claims, penalty=True)
    assert not check.ok and "proj2" in check.detail


def test_the_block_lemma_with_the_penalty_rejects_a_penalised_bias():
    block = sample_block("res")
    claims = block_claims(block, penalty=True)
    bias = block.parameters()[1]
    claims[bias] = Add(claims[bias], PenaltyGrad(bias))
    assert not check_block_lemma(block, claims, penalty=True).ok


def test_induction_and_end_to_end_reject_p_without_its_penalty():
    derivation = derive(spec.network("3,3+proj,drop:0.5,2", l2=True))
    assert check_blocks_are_lemma_instances(derivation).ok
    assert check_end_to_end_mixed(derivation, batch_size=2).ok
    proj = derivation.network.layers[0].proj
    wrong = _unpenalise(derivation, proj)
    assert not check_blocks_are_lemma_instances(wrong).ok
    check = check_end_to_end_mixed(wrong, batch_size=2)
    assert not check.ok and "proj1" in check.detail


def test_induction_and_end_to_end_reject_a_penalty_on_gamma():
    derivation = derive(spec.network("3,ln,2", l2=True))
    assert check_blocks_are_lemma_instances(derivation).ok
    assert check_end_to_end_mixed(derivation, batch_size=2).ok
    gamma = derivation.network.layers[0].parameters()[0]
    assert gamma.kind is Kind.GAMMA
    wrong = _penalise(derivation, gamma)
    assert not check_blocks_are_lemma_instances(wrong).ok
    check = check_end_to_end_mixed(wrong, batch_size=2)
    assert not check.ok and "gamma1" in check.detail


def test_the_document_states_the_objective_over_w_and_p():
    from derive import latex_layers

    derivation = derive(spec.network("3,4+proj,ln,2", l2=True))
    text = latex_layers.document_body(derivation, [])
    assert "\\section*{The L2 penalty}" in text
    objective = (
        r"\mathcal{J} &= \mathcal{L} + \frac{\lambda}{2} (\lVert W_{1} \rVert_F^2 + "
        r"\lVert P_{1} \rVert_F^2 + \lVert W_{3} \rVert_F^2)"
    )
    assert objective in text
    assert (
        r"\frac{\partial \mathcal{J}}{\partial P_{1}} &= X^{\top} \bar{a}_{1} + \lambda P_{1}"
        in (text)
    )
    assert "The L2 penalty" not in latex_layers.document_body(
        derive(spec.network("3,4+proj,ln,2")), []
    )


# --- the emitted modules -------------------------------------------------------------


@pytest.fixture(scope="module")
def modules(tmp_path_factory):
    """The numpy and array API modules of MIXED with --l2, and the numpy one without."""
    folder = tmp_path_factory.mktemp("penalty_kinds")
    out = {}
    for key, l2, target in [
        ("np_l2", True, numpy_module),
        ("xp_l2", True, array_api_module),
        ("np", False, numpy_module),
    ]:
        path = folder / f"pk_{key}.py"
        path.write_text(target.render(derive(spec.network(MIXED, l2=l2)), path.stem))
        out[key] = load_module(path, path.stem)
    return out


def _data(dtype=np.float64, m=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, 3)).astype(dtype)
    y = rng.standard_normal((m, 2)).astype(dtype)
    masks = {5: (rng.random((m, 4)) >= 0.5).astype(dtype)}
    return x, y, masks


def _params(mod, dtype=np.float64, seed=1):
    rng = np.random.default_rng(seed)
    return [
        tuple((p + 0.3 * rng.standard_normal(p.shape)).astype(dtype) for p in pair)
        for pair in mod.init_params(seed, dtype)
    ]


def _close(grads, ref_grads, rtol):
    for pair, ref_pair in zip(grads, ref_grads, strict=True):
        for grad, ref in zip(pair, ref_pair, strict=True):
            scale = max(1.0, float(np.abs(ref).max()))
            np.testing.assert_allclose(grad, ref, rtol=rtol, atol=rtol * scale)


def test_the_module_matches_central_differences_of_its_penalised_loss(modules):
    """Positive, and the negative controls: λ γ added to ∂/∂γ, λ P missing from ∂/∂[W | P]."""
    mod = modules["np_l2"]
    assert mod.L2_PENALTY and mod._PENALISED == (0, 2, 4)  # [W1 | P1], W3, W6
    x, y, masks = _data()
    params = _params(mod)
    value, grads = mod.backprop(params, x, y, state=mod.init_state(), masks=masks, l2=0.7)
    loss = mod.loss(params, x, y, training=True, state=mod.init_state(), masks=masks, l2=0.7)
    assert np.isclose(value, loss, rtol=1e-14)
    reference = central_differences(
        lambda p: mod.loss(p, x, y, training=True, state=mod.init_state(), masks=masks, l2=0.7),
        params,
    )
    _close(grads, reference, 1e-6)
    with_gamma = [list(pair) for pair in grads]
    with_gamma[1][0] = with_gamma[1][0] + 0.7 * params[1][0]  # γ₂ penalised too
    with pytest.raises(AssertionError):
        _close(with_gamma, reference, 1e-6)
    without_p = [list(pair) for pair in grads]
    without_p[0][0] = without_p[0][0].copy()
    without_p[0][0][:, 4:] -= 0.7 * params[0][0][:, 4:]  # ∂/∂P₁ without λ P₁
    with pytest.raises(AssertionError):
        _close(without_p, reference, 1e-6)


def test_lambda_zero_is_the_module_without_the_penalty_and_lambda_adds_its_term(modules):
    penalised, plain = modules["np_l2"], modules["np"]
    assert not plain.L2_PENALTY
    x, y, masks = _data(seed=3)
    params = _params(plain, seed=4)
    state = penalised.init_state()
    value, grads = penalised.backprop(params, x, y, state=state, masks=masks)
    ref_value, ref_grads = plain.backprop(params, x, y, state=plain.init_state(), masks=masks)
    assert value == ref_value
    for pair, ref_pair in zip(grads, ref_grads, strict=True):
        for grad, ref in zip(pair, ref_pair, strict=True):
            np.testing.assert_array_equal(grad, ref)
    value, grads = penalised.backprop(params, x, y, state=state, masks=masks, l2=0.25)
    penalised_sum = sum(float(np.vdot(params[k][0], params[k][0])) for k in (0, 2, 4))
    assert np.isclose(value, ref_value + 0.125 * penalised_sum, rtol=1e-13)
    for k, (pair, ref_pair) in enumerate(zip(grads, ref_grads, strict=True)):
        first = ref_pair[0] + (0.25 * params[k][0] if k in (0, 2, 4) else 0.0)
        np.testing.assert_allclose(pair[0], first, rtol=1e-13, atol=1e-15)
        np.testing.assert_array_equal(pair[1], ref_pair[1])  # b, β: never penalised


@pytest.mark.parametrize("bad", [-1.0, float("nan"), True, "0.1"])
def test_a_bad_lambda_is_refused_in_one_line(modules, bad):
    mod = modules["np_l2"]
    x, y, masks = _data()
    with pytest.raises(ValueError, match=r"^l2 must be a (finite number >= 0|number), got"):
        mod.backprop(mod.init_params(0), x, y, masks=masks, l2=bad)


def test_float32_stays_float32_with_the_penalty(modules):
    mod = modules["np_l2"]
    x, y, masks = _data(np.float32)
    params = _params(mod, np.float32)
    _, grads = mod.backprop(params, x, y, state=mod.init_state(), masks=masks, l2=0.5)
    assert all(g.dtype == np.float32 for pair in grads for g in pair)


@pytest.mark.parametrize("library", ["numpy", "array_api_strict", "torch"])
def test_the_array_api_module_matches_the_numpy_one_with_the_penalty(modules, library):
    import importlib

    xp = importlib.import_module(library) if library != "torch" else pytest.importorskip("torch")
    aa, np_mod = modules["xp_l2"], modules["np_l2"]
    assert aa.L2_PENALTY and aa._PENALISED == np_mod._PENALISED
    x, y, masks = _data(seed=5)
    params = _params(np_mod, seed=6)
    value, grads = np_mod.backprop(params, x, y, state=np_mod.init_state(), masks=masks, l2=0.3)
    got_value, got = aa.backprop(
        aa.as_params(params, xp),
        xp.asarray(x),
        xp.asarray(y),
        masks={k: xp.asarray(v) for k, v in masks.items()},
        l2=0.3,
    )
    assert np.isclose(float(got_value), value, rtol=1e-12)
    loss = aa.loss(
        aa.as_params(params, xp),
        xp.asarray(x),
        xp.asarray(y),
        training=True,
        masks={k: xp.asarray(v) for k, v in masks.items()},
        l2=0.3,
    )
    assert np.isclose(float(loss), value, rtol=1e-12)
    for pair, ref_pair in zip(got, grads, strict=True):
        for grad, ref in zip(pair, ref_pair, strict=True):
            np.testing.assert_allclose(np.asarray(grad), ref, rtol=1e-12, atol=1e-12)


def test_the_cli_emits_the_penalty_for_layer_kinds_on_both_targets(tmp_path, capsys, monkeypatch):
    from cli_helpers import run_cli

    monkeypatch.chdir(tmp_path)
    for target in ("numpy", "array-api"):
        result = run_cli(
            capsys, "--layers", "3,4+proj,ln,2", "--l2", "--target", target, "--out", target
        )
        assert result.returncode == 0, result.stderr
        (path,) = (tmp_path / target).glob("*.py")
        assert path.name == "mlp_3_4proj_ln_2_l2.py"
        assert "L2_PENALTY: bool = True" in path.read_text(encoding="utf-8")
    dense = run_cli(capsys, "--layers", "3,4,2", "--l2", "--target", "array-api")
    assert dense.returncode == 2
    assert "--l2 on a dense network is not supported by --target array-api" in dense.stderr
    assert dense.stderr.count("\n") == 1


# --- training ----------------------------------------------------------------------


def test_fit_takes_l2_only_from_a_module_derived_with_it(modules):
    x, y, _ = _data(m=8)
    plain = modules["np"]
    with pytest.raises(ValueError, match="derived without the L2 penalty"):
        plain.fit(plain.init_params(0), x, y, epochs=1, l2=0.1)


def test_one_sgd_step_of_fit_is_the_penalised_gradient_step(modules):
    """fit(l2=λ) with plain SGD over one full batch: θ ← θ - lr (mean gradient + λ θ) for W_l
    and P_l, the plain mean gradient for b_l, γ_l, β_l (dropout's masks drawn from the seeded
    generator: the same draw in both runs)."""
    mod, plain = modules["np_l2"], modules["np"]
    x, y, _ = _data(m=8, seed=7)
    params = _params(mod, seed=8)
    before = [tuple(p.copy() for p in pair) for pair in params]
    lam, lr = 0.5, 0.1
    mod.reset_state()
    mod.seed_masks(3)
    mod.fit(params, x, y, epochs=1, batch_size=8, optimizer="sgd", lr=lr, l2=lam, shuffle=False)
    masks = {5: (np.random.default_rng(3).random((8, 4)) >= 0.5).astype(np.float64)}
    _, grads = plain.backprop(before, x, y, state=plain.init_state(), masks=masks)
    for k, (pair, old, grad) in enumerate(zip(params, before, grads, strict=True)):
        decay = lam * old[0] if k in (0, 2, 4) else 0.0
        np.testing.assert_allclose(pair[0], old[0] - lr * (grad[0] / 8 + decay), rtol=1e-12)
        np.testing.assert_allclose(pair[1], old[1] - lr * grad[1] / 8, rtol=1e-12)
