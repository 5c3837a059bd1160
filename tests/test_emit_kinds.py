"""Emitted layer kinds (norms): numpy modules checked against PyTorch and central differences."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from kinds_networks import hand_built

from derive.backends.numpy import module as numpy_module
from derive.derivation import derive

torch = pytest.importorskip("torch")


def load(source: str, name: str, tmp_path: Path):
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def norms_module(tmp_path_factory):
    net = hand_built((3, 5, 5, 5, 2), ["dense", "layer_norm", "batch_norm", "dense"])
    src = numpy_module.render(derive(net), "kinds_norms")
    return load(src, "kinds_norms", tmp_path_factory.mktemp("kinds"))


def torch_reference(params, x, y, eps):
    """The same network in PyTorch: F.layer_norm, F.batch_norm(training=True), autograd."""
    import torch.nn.functional as F

    tensors = [tuple(torch.tensor(p, requires_grad=True) for p in pair) for pair in params]
    (w1, b1), (g2, be2), (g3, be3), (w4, b4) = tensors
    a1 = torch.tanh(torch.tensor(x) @ w1 + b1)
    a2 = F.layer_norm(a1, (a1.shape[1],), g2[0], be2[0], eps)
    a3 = F.batch_norm(a2, None, None, g3[0], be3[0], training=True, eps=eps)
    yhat = a3 @ w4 + b4
    value = ((yhat - torch.tensor(y)) ** 2).sum()
    value.backward()
    return float(value.detach()), [tuple(t.grad.numpy() for t in pair) for pair in tensors]


def data(dtype, m=7, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, 3)).astype(dtype), rng.standard_normal((m, 2)).astype(dtype)


def random_params(mod, dtype, seed=1):
    rng = np.random.default_rng(seed)
    params = mod.init_params(seed, dtype)
    return [
        tuple((p + 0.3 * rng.standard_normal(p.shape)).astype(dtype) for p in pair)
        for pair in params
    ]


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 2e-4)])
def test_backprop_matches_torch_autograd(norms_module, dtype, rtol):
    mod = norms_module
    x, y = data(dtype)
    params = random_params(mod, dtype)
    value, grads = mod.backprop(params, x, y, state=mod.init_state())
    ref_value, ref_grads = torch_reference(params, x, y, mod.EPS)
    assert np.isclose(value, ref_value, rtol=rtol)
    for pair, ref_pair in zip(grads, ref_grads, strict=True):
        for grad, ref in zip(pair, ref_pair, strict=True):
            assert grad.dtype == dtype  # float32 stays float32
            scale = max(1.0, float(np.abs(ref).max()))
            np.testing.assert_allclose(grad, ref, rtol=rtol, atol=rtol * scale)


def test_a_wrong_gradient_is_caught_by_the_torch_comparison(norms_module):
    """Negative control: the comparison fails on a gradient off by a little."""
    mod = norms_module
    x, y = data(np.float64)
    params = random_params(mod, np.float64)
    _, grads = mod.backprop(params, x, y, state=mod.init_state())
    _, ref_grads = torch_reference(params, x, y, mod.EPS)
    wrong = grads[1][0] * (1 + 1e-6)
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(wrong, ref_grads[1][0], rtol=1e-10, atol=1e-10)


def central_differences(mod, params, x, y, h=1e-6):
    """∂L/∂θ by (L(θ+h) - L(θ-h))/2h, entry by entry, in training mode (batch statistics)."""
    out = []
    for pair in params:
        grads = []
        for arr in pair:
            grad = np.zeros_like(arr)
            flat, gflat = arr.reshape(-1), grad.reshape(-1)
            for i in range(flat.size):
                kept = flat[i]
                flat[i] = kept + h
                up = mod.loss(params, x, y, training=True, state=mod.init_state())
                flat[i] = kept - h
                down = mod.loss(params, x, y, training=True, state=mod.init_state())
                flat[i] = kept
                gflat[i] = (up - down) / (2 * h)
            grads.append(grad)
        out.append(tuple(grads))
    return out


def test_backprop_matches_central_differences(norms_module):
    mod = norms_module
    x, y = data(np.float64, m=6, seed=3)
    params = random_params(mod, np.float64, seed=4)
    _, grads = mod.backprop(params, x, y, state=mod.init_state())
    numeric = central_differences(mod, params, x, y)
    for pair, ref_pair in zip(grads, numeric, strict=True):
        for grad, ref in zip(pair, ref_pair, strict=True):
            np.testing.assert_allclose(grad, ref, rtol=1e-6, atol=1e-7)


def test_constant_rows_stay_finite(norms_module):
    """Variance 0 (a constant row for layer norm, a constant feature for batch norm): ε carries it."""
    mod = norms_module
    x = np.ones((4, 3))
    y = np.zeros((4, 2))
    params = mod.init_params(0)
    value, grads = mod.backprop(params, x, y, state=mod.init_state())
    assert np.isfinite(value)
    assert all(np.isfinite(g).all() for pair in grads for g in pair)
    _, ref_grads = torch_reference(params, x, y, mod.EPS)
    for pair, ref_pair in zip(grads, ref_grads, strict=True):
        for grad, ref in zip(pair, ref_pair, strict=True):
            np.testing.assert_allclose(grad, ref, rtol=1e-9, atol=1e-9)


def test_batch_norm_refuses_one_row_in_training(norms_module):
    x, y = data(np.float64, m=1)
    with pytest.raises(ValueError, match="at least 2 rows"):
        norms_module.backprop(norms_module.init_params(0), x, y)


def test_running_statistics_follow_pytorch(norms_module):
    """backprop updates the running mean and (unbiased) variance as nn.BatchNorm1d does;
    forward in inference reads them, as F.batch_norm(training=False)."""
    import torch.nn.functional as F

    mod = norms_module
    params = random_params(mod, np.float64)
    state = mod.init_state()
    mean, var = torch.zeros(5, dtype=torch.float64), torch.ones(5, dtype=torch.float64)
    for seed in range(3):
        x, y = data(np.float64, seed=seed)
        mod.backprop(params, x, y, state=state)
        a1 = np.tanh(x @ params[0][0] + params[0][1])
        a2 = F.layer_norm(
            torch.tensor(a1),
            (5,),
            torch.tensor(params[1][0][0]),
            torch.tensor(params[1][1][0]),
            mod.EPS,
        )
        F.batch_norm(a2, mean, var, training=True, momentum=mod.MOMENTUM, eps=mod.EPS)
    np.testing.assert_allclose(state["running_mean3"][0], mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(state["running_var3"][0], var.numpy(), rtol=1e-12)
    x, _ = data(np.float64, seed=9)
    yhat = mod.forward(params, x, state=state)
    a1 = np.tanh(x @ params[0][0] + params[0][1])
    a2 = F.layer_norm(
        torch.tensor(a1),
        (5,),
        torch.tensor(params[1][0][0]),
        torch.tensor(params[1][1][0]),
        mod.EPS,
    )
    a3 = F.batch_norm(
        a2,
        mean,
        var,
        torch.tensor(params[2][0][0]),
        torch.tensor(params[2][1][0]),
        training=False,
        eps=mod.EPS,
    )
    ref = a3.numpy() @ params[3][0] + params[3][1]
    np.testing.assert_allclose(yhat, ref, rtol=1e-12)
    # inference on one row is defined (running statistics)
    assert mod.forward(params, x[:1], state=state).shape == (1, 2)


@pytest.fixture(scope="module")
def classifier_module(tmp_path_factory):
    net = hand_built(
        (64, 16, 16, 16, 10),
        ["dense", "batch_norm", "layer_norm", "dense"],
        output="softmax",
        loss="softmax_cross_entropy",
    )
    src = numpy_module.render(derive(net), "kinds_classifier")
    return load(src, "kinds_classifier", tmp_path_factory.mktemp("kinds"))


def test_fused_softmax_network_matches_central_differences(classifier_module):
    mod = classifier_module
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5, 64))
    y = np.eye(10)[rng.integers(0, 10, 5)]
    params = random_params(mod, np.float64, seed=6)
    _, grads = mod.backprop(params, x, y, state=mod.init_state())
    numeric = central_differences(mod, params, x, y)
    for pair, ref_pair in zip(grads, numeric, strict=True):
        for grad, ref in zip(pair, ref_pair, strict=True):
            np.testing.assert_allclose(grad, ref, rtol=1e-5, atol=1e-7)


def test_fit_reduces_the_loss_and_predict_reads_running_statistics(classifier_module):
    """Training through ``fit`` on the digits; ``predict`` uses the running statistics
    (its labels do not depend on the other rows of the batch)."""
    from sklearn.datasets import load_digits

    mod = classifier_module
    x, labels = load_digits(return_X_y=True)
    x = x[:600] / 16.0
    y = np.eye(10)[labels[:600]]
    mod.reset_state()
    params = mod.init_params(0)
    history = mod.fit(params, x, y, epochs=5, batch_size=32, seed=0)
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert mod.STATE["running_var2"].mean() != 1.0  # fit moved the running statistics
    whole = mod.predict(params, x[:50])
    one_by_one = np.concatenate([mod.predict(params, x[k : k + 1]) for k in range(50)])
    np.testing.assert_array_equal(whole, one_by_one)
    assert mod.score(params, x, y) > 0.6  # chance is 0.1
