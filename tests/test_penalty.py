"""The L2 penalty λ/2 Σ_l ‖W_l‖_F² as part of the derivation (``--l2``).

Proved exactly (λ a SymPy symbol) with negative controls; emitted as ``backprop(..., l2=λ)``,
checked against central differences, allocation-free with ``out=``; used by ``fit(l2=λ)``.
"""

from __future__ import annotations

import random
import subprocess
import sys
from dataclasses import replace
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli
from helpers import central_differences, steady_state_peak

import derive
from derive import model, penalty, proof, spec, symbolic_widths
from derive.backends.numpy import module as numpy_module
from derive.derivation import Derivation, step_lemma_chain
from derive.derivation import backward as backward_sweep
from derive.derivation import derive as derive_identities
from derive.expr import Add, MatMul, Penalty, PenaltyGrad, SumRows, Transpose
from derive.model import Network

ROOT = Path(__file__).resolve().parent.parent


def penalised(layers: str, activation: str = "tanh", loss: str = "l2") -> Network:
    return spec.network(layers, activation, loss, l2=True)


def with_gradient(derivation: Derivation, param, gradient) -> Derivation:
    gradients = dict(derivation.gradients)
    gradients[param] = gradient
    return Derivation(derivation.network, derivation.deltas, gradients)


# --- the derivation ----------------------------------------------------------------------


def test_chain_rule_adds_lambda_w_to_weights_only():
    plain = derive_identities(spec.network("3,4,2"))
    with_penalty = derive_identities(penalised("3,4,2"))
    assert with_penalty.deltas == plain.deltas  # no z_l enters the penalty
    for layer in (1, 2):
        w, b = model.W(layer), model.b(layer)
        assert with_penalty.gradients[w] == Add(plain.gradients[w], PenaltyGrad(w))
        assert with_penalty.gradients[b] == plain.gradients[b] == SumRows(model.delta(layer))
    assert plain.gradients[model.W(1)] == MatMul(Transpose(model.X), model.delta(1))


def test_penalty_gradient_is_sympys_derivative_of_the_entry():
    assert penalty.GRADIENT == penalty.lam * penalty.w
    assert penalty.FACTOR == 1


# --- the proof and its negative controls ---------------------------------------------------


def test_penalty_lemma_is_proved_with_lambda_a_symbol():
    check = proof.check_step_lemma(penalty=True)
    assert check.ok and check.name == "penalty lemma"
    assert "λ a symbol" in check.method


def test_penalty_any_width_is_proved_and_rejects_half_the_factor():
    assert symbolic_widths.check_penalty_symbolic().ok
    half = symbolic_widths.check_penalty_symbolic(penalty.lam / 2 * penalty.w)
    assert not half.ok and "differs" in half.detail


def test_penalty_lemma_rejects_half_the_factor():
    half = penalty.lam / 2 * penalty.w  # λ/2 W instead of λ W
    check = proof.check_step_lemma(penalty=True, penalty_gradient=half)
    assert not check.ok and "W2" in check.detail


def test_penalty_lemma_rejects_twice_the_factor():
    check = proof.check_step_lemma(penalty=True, penalty_gradient=2 * penalty.lam * penalty.w)
    assert not check.ok


def test_penalty_lemma_rejects_a_penalty_on_the_bias():
    claims = backward_sweep(*step_lemma_chain(2, penalty=True))
    claims = {v: claims[v] for v in (model.z(1), model.W(2), model.b(2))}
    claims[model.b(2)] = Add(SumRows(model.delta(2)), PenaltyGrad(model.b(2)))
    check = proof.check_step_lemma(claims, penalty=True)
    assert not check.ok and "b2" in check.detail


def test_penalty_lemma_rejects_the_gradient_without_the_penalty():
    claims = backward_sweep(*step_lemma_chain(2))  # a_{l-1}ᵀ G alone
    claims = {v: claims[v] for v in (model.z(1), model.W(2), model.b(2))}
    assert not proof.check_step_lemma(claims, penalty=True).ok


def test_plain_step_lemma_rejects_the_penalised_gradient():
    claims = backward_sweep(*step_lemma_chain(2, penalty=True))
    claims = {v: claims[v] for v in (model.z(1), model.W(2), model.b(2))}
    assert not proof.check_step_lemma(claims).ok


@pytest.mark.parametrize(
    ("layers", "activation", "loss"),
    [
        ("3,4,2", "tanh", "l2"),
        ("3,3", "tanh", "softmax_cross_entropy"),
        ("3,3,3,3,3", "tanh", "mse"),
    ],
)
def test_verify_proves_every_identity_with_the_penalty(layers, activation, loss):
    checks = proof.verify(derive_identities(penalised(layers, activation, loss)))
    assert all(c.ok for c in checks), [(c.name, c.detail) for c in checks if not c.ok]
    names = [c.name for c in checks]
    assert {"penalty lemma", "penalty lemma, any width", "end to end"} <= set(names)
    assert "penalty" in checks[-1].statement


def test_verify_without_l2_has_no_penalty_lemma():
    names = [c.name for c in proof.verify(derive_identities(spec.network("3,4,2")))]
    assert "penalty lemma" not in names


@pytest.mark.parametrize(("layers", "method"), [("3,4,2", "expand"), ("3,3,3,3,3", "field")])
def test_end_to_end_rejects_a_penalty_on_the_bias(layers, method):
    derivation = derive_identities(penalised(layers))
    bias = model.b(1)
    wrong = with_gradient(derivation, bias, Add(derivation.gradients[bias], PenaltyGrad(bias)))
    check = proof.check_end_to_end(wrong, method=method, rng=random.Random(1))
    assert not check.ok
    right = proof.check_end_to_end(derivation, method=method, rng=random.Random(1))
    assert right.ok


@pytest.mark.parametrize(("layers", "method"), [("3,4,2", "expand"), ("3,3,3,3,3", "field")])
def test_end_to_end_rejects_the_unpenalised_gradients(layers, method):
    network = penalised(layers)
    plain = derive_identities(replace(network, l2=False))
    claims = Derivation(network, plain.deltas, plain.gradients)
    assert not proof.check_end_to_end(claims, method=method, rng=random.Random(2)).ok


def test_end_to_end_writes_the_objective_apart_from_the_model(monkeypatch):
    """A model that penalised the biases too would derive λ b; the proof's own objective does not."""
    original = Network.penalty_steps

    def biases_too(self):
        (step,) = original(self)
        total = step.expr
        for layer in range(1, self.depth + 1):
            total = Add(total, Penalty(model.b(layer)))
        return [replace(step, expr=total)]

    monkeypatch.setattr(Network, "penalty_steps", biases_too)
    derivation = derive_identities(penalised("3,4,2"))
    assert derivation.gradients[model.b(1)] == Add(SumRows(model.delta(1)), PenaltyGrad(model.b(1)))
    assert not proof.check_end_to_end(derivation).ok


# --- the generated module -----------------------------------------------------------------


@pytest.fixture(scope="module")
def net():
    return derive.derive([3, 5, 4, 2], l2=True, name="penalty_net", end_to_end_depth=0).module()


@pytest.fixture(scope="module")
def plain_net():
    return derive.derive([3, 5, 4, 2], name="plain_net", end_to_end_depth=0).module()


def data(sizes, m, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, sizes[0])), rng.uniform(-1, 1, (m, sizes[-1]))


@pytest.mark.parametrize("lam", [0.0, 0.3, 2.5])
def test_backprop_matches_central_differences_with_lambda(net, lam):
    params = net.init_params(seed=1)
    x, y = data(net.SIZES, 6)
    value, grads = net.backprop(params, x, y, l2=lam)
    assert value == pytest.approx(net.loss(params, x, y, l2=lam), rel=1e-12)
    numeric = central_differences(lambda p: net.loss(p, x, y, l2=lam), params)
    for pair, reference in zip(grads, numeric, strict=True):
        for g, n in zip(pair, reference, strict=True):
            np.testing.assert_allclose(g, n, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("layers", "activation", "loss"),
    [("4,6,3", "relu", "softmax_cross_entropy"), ("4,6,2", "softplus", "mse")],
)
def test_other_losses_with_lambda_pass_gradcheck(layers, activation, loss):
    """The module's gradients with λ, numerically; the penalty's proof at every depth is
    test_verify_proves_every_identity_with_the_penalty's (end to end for these losses too)."""
    mod = derive.derive(layers, activation, loss, l2=True, end_to_end_depth=0).module()
    params = mod.init_params(seed=3)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, mod.SIZES[0]))
    if loss == "softmax_cross_entropy":
        y = rng.integers(0, mod.SIZES[-1], 5)
    else:
        y = rng.uniform(-1, 1, (5, mod.SIZES[-1]))
    assert mod.gradcheck(params, x, y, l2=0.7) < 1e-5


def test_gradcheck_with_lambda_catches_a_missing_penalty(net, plain_net):
    """Negative control: the module without the penalty, checked against the penalised loss."""
    params = net.init_params(seed=1)
    x, y = data(net.SIZES, 4)
    _, plain = plain_net.backprop(params, x, y)
    numeric = central_differences(lambda p: net.loss(p, x, y, l2=0.5), params)
    assert not np.allclose(plain[0][0], numeric[0][0], rtol=1e-4)
    np.testing.assert_allclose(plain[0][1], numeric[0][1], rtol=1e-5, atol=1e-7)  # biases alike


def test_lambda_zero_is_the_module_without_the_penalty_bit_for_bit(net, plain_net):
    params = net.init_params(seed=2)
    x, y = data(net.SIZES, 7)
    value, grads = net.backprop(params, x, y)
    plain_value, plain_grads = plain_net.backprop(params, x, y)
    assert value == plain_value
    for pair, plain_pair in zip(grads, plain_grads, strict=True):
        for g, p in zip(pair, plain_pair, strict=True):
            assert np.array_equal(g, p)


def test_penalty_adds_lambda_w_and_leaves_biases(net, plain_net):
    params = net.init_params(seed=2)
    x, y = data(net.SIZES, 7)
    lam = 0.125
    value, grads = net.backprop(params, x, y, l2=lam)
    plain_value, plain_grads = plain_net.backprop(params, x, y)
    norms = sum(float(np.sum(w * w)) for w, _ in params)
    assert value == pytest.approx(plain_value + lam / 2 * norms, rel=1e-14)
    for (w, _), (dw, db), (pw, pb) in zip(params, grads, plain_grads, strict=True):
        np.testing.assert_allclose(dw, pw + lam * w, rtol=1e-14, atol=1e-15)
        assert np.array_equal(db, pb)


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), True, "0.1", None])
def test_bad_lambda_is_refused_before_anything_is_written(net, bad):
    params = net.init_params(seed=0)
    x, y = data(net.SIZES, 3)
    out = [(np.full_like(w, 7.0), np.full_like(b, 7.0)) for w, b in params]
    with pytest.raises(ValueError, match="l2"):
        net.backprop(params, x, y, out=out, l2=bad)
    assert all((dw == 7).all() and (db == 7).all() for dw, db in out)
    with pytest.raises(ValueError, match="l2"):
        net.loss(params, x, y, l2=bad)


def test_module_without_l2_takes_no_lambda(plain_net):
    assert plain_net.L2_PENALTY is False
    params = plain_net.init_params(seed=0)
    x, y = data(plain_net.SIZES, 3)
    with pytest.raises(TypeError):
        plain_net.backprop(params, x, y, l2=0.1)


@cache
def wide_penalised_module():
    """96,256,192 with the penalty, derived and rendered once for both dtypes."""
    return derive.derive("96,256,192", l2=True, name="wide_penalty", end_to_end_depth=0).module()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_penalised_backprop_with_out_allocates_no_array(dtype):
    wide = wide_penalised_module()
    params = wide.init_params(seed=6, dtype=dtype)
    x, y = (a.astype(dtype) for a in data(wide.SIZES, 64))
    out = [(np.empty_like(w), np.empty_like(b)) for w, b in params]
    peak, growth = steady_state_peak(lambda: wide.backprop(params, x, y, out=out, l2=0.01))
    assert growth == 0
    assert peak < 1024  # every array here, down to a 1 x 192 bias, is larger


def test_allocation_probe_sees_an_array():
    """Negative control for the probe above: a call that makes one small array is caught."""
    arr = np.ones((96, 256))
    peak, _ = steady_state_peak(lambda: arr * 0.01)
    assert peak >= 1024


@pytest.mark.slow
def test_generated_penalised_modules_pass_mypy_and_ruff(tmp_path):
    """generated/mlp_20_50_10_l2.py is linted and typed with the rest of generated/."""
    paths = []
    for layers, act, loss in [("4,3", "tanh", "l2"), ("3,4,5,3", "relu", "softmax_cross_entropy")]:
        network = penalised(layers, act, loss)
        name = f"pen_{len(paths)}"
        path = tmp_path / f"{name}.py"
        path.write_text(numpy_module.render(derive_identities(network), name), encoding="utf-8")
        paths.append(str(path))
    ruff = [sys.executable, "-m", "ruff"]
    config = ["--config", str(ROOT / "pyproject.toml")]
    assert subprocess.run([*ruff, "check", *config, *paths]).returncode == 0
    assert subprocess.run([*ruff, "format", "--check", *config, *paths]).returncode == 0
    mypy = [sys.executable, "-m", "mypy", "--strict", "--no-incremental", *paths]
    done = subprocess.run(mypy, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stdout


# --- training ------------------------------------------------------------------------------


@cache
def penalised_module():
    """4,8,3 tanh with the penalty, proved once for the training tests: the lemmas and the
    induction prove every depth; its end-to-end check (not their claim) is
    test_verify_proves_every_identity_with_the_penalty's."""
    return derive.derive("4,8,3", "tanh", "l2", l2=True, end_to_end_depth=0).module()


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_fit_with_l2_is_the_optimizers_coupled_weight_decay(optimizer):
    """The derived penalty through backprop and the optimizer's L2 take the same steps."""
    mod = penalised_module()
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((40, 4)), rng.uniform(-1, 1, (40, 3))
    a, b = mod.init_params(seed=0), mod.init_params(seed=0)
    mod.fit(a, x, y, epochs=3, batch_size=8, optimizer=optimizer, lr=0.05, l2=0.1, seed=1)
    mod.fit(b, x, y, epochs=3, batch_size=8, optimizer=optimizer, lr=0.05, weight_decay=0.1, seed=1)
    for (wa, ba), (wb, bb) in zip(a, b, strict=True):
        np.testing.assert_allclose(wa, wb, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(ba, bb, rtol=1e-12, atol=1e-14)
    c = mod.init_params(seed=0)
    mod.fit(c, x, y, epochs=3, batch_size=8, optimizer=optimizer, lr=0.05, seed=1)
    assert not np.allclose(c[0][0], a[0][0], rtol=1e-6)  # the penalty did something


def test_fit_history_includes_the_penalty():
    mod = penalised_module()
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((16, 4)), rng.uniform(-1, 1, (16, 3))
    params = mod.init_params(seed=0)
    start = [(w.copy(), b.copy()) for w, b in params]
    lam = 0.5
    history = mod.fit(
        params, x, y, epochs=1, batch_size=16, optimizer="sgd", lr=1e-12, l2=lam,
        validation=(x, y), shuffle=False,
    )  # fmt: skip
    expected = mod.loss(start, x, y, l2=0.0) / 16 + lam / 2 * sum(
        float(np.sum(w * w)) for w, _ in start
    )
    assert history["loss"][0] == pytest.approx(expected, rel=1e-9)
    assert history["val_loss"][0] == pytest.approx(expected, rel=1e-9)


def test_fit_refuses_l2_on_a_module_without_the_penalty(plain_net):
    params = plain_net.init_params(seed=0)
    before = [(w.copy(), b.copy()) for w, b in params]
    x, y = data(plain_net.SIZES, 8)
    with pytest.raises(ValueError, match="--l2"):
        plain_net.fit(params, x, y, epochs=1, l2=0.1)
    with pytest.raises(ValueError, match="l2"):
        plain_net.gradcheck(params, x, y, l2=0.1)
    assert all(np.array_equal(w, v) for (w, _), (v, _) in zip(params, before, strict=True))


def test_fit_refuses_a_negative_l2(net):
    params = net.init_params(seed=0)
    x, y = data(net.SIZES, 8)
    with pytest.raises(ValueError, match="l2 must be a finite number >= 0"):
        net.fit(params, x, y, epochs=1, l2=-1.0)


# --- command line, API, LaTeX ------------------------------------------------------------


def test_cli_l2_writes_its_own_module(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_cli(capsys, "--layers", "3,2", "--l2", "--out", "out")
    assert result.returncode == 0, result.stderr
    assert "penalty lemma" in result.stdout and "L2 penalty" in result.stdout.splitlines()[0]
    text = (tmp_path / "out" / "mlp_3_2_l2.py").read_text(encoding="utf-8")
    assert text.startswith("# Generated by `python -m derive --layers 3,2 --l2`")
    assert "L2_PENALTY: bool = True" in text
    plain = run_cli(capsys, "--layers", "3,2", "--out", "out")
    assert plain.returncode == 0
    assert "L2_PENALTY: bool = False" in (tmp_path / "out" / "mlp_3_2.py").read_text()


@pytest.mark.parametrize(
    "args", [["--layers", "3,2", "--l2", "--target", "array-api"], ["--seed-check", "--l2"]]
)
def test_cli_l2_refused_where_it_would_have_no_effect(tmp_path, capsys, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    result = run_cli(capsys, *args)
    assert result.returncode == 2
    assert "--l2" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_train_cli_l2_derives_the_penalty_and_trains(tmp_path, capsys, monkeypatch):
    pytest.importorskip("sklearn")
    monkeypatch.chdir(tmp_path)
    # depth 1: its end-to-end identity is test_verify_proves_every_identity_with_the_penalty's
    # 3,3 softmax one, decided once per process
    args = ["train", "--data", "iris", "--layers", "4,3", "--epochs", "2", "--quiet"]
    result = run_cli(capsys, *args, "--l2", "0.01")
    assert result.returncode == 0, result.stderr
    assert "plus the L2 penalty" in result.stdout
    bad = run_cli(capsys, *args, "--l2", "-1")
    assert bad.returncode == 2 and "--l2 must be a finite number >= 0" in bad.stderr


def test_api_refuses_a_number_for_l2():
    with pytest.raises(ValueError, match="True or False"):
        derive.derive("3,2", l2=0.1)


def test_latex_shows_the_penalty_only_when_used():
    with_penalty = derive.derive("3,4,2", l2=True).latex()
    without = derive.derive("3,4,2").latex()
    assert "The L2 penalty" in with_penalty and "The L2 penalty" not in without
    assert r"a_{l-1}^{\top} \delta_l + \lambda W_l" in with_penalty
    assert (
        r"\frac{\partial \mathcal{J}}{\partial W_{1}} &= X^{\top} \delta_{1} + \lambda W_{1}"
        in (with_penalty)
    )
    assert r"\lambda" not in without
