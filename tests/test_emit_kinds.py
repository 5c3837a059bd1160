"""Emitted layer kinds (norms, residual, dropout) in the numpy target, checked against
PyTorch (F.layer_norm, F.batch_norm, a fixed dropout mask, autograd) and central differences."""

from __future__ import annotations

import re

import numpy as np
import pytest
from helpers import central_differences, load_module

from derive import spec
from derive.backends.numpy import module as numpy_module
from derive.derivation import derive
from derive.layers import BatchNorm, Dense, Dropout, LayerNorm, Residual

torch = F = None  # bound by _import_torch: imported at collection it cost every worker 2.5 CPU-s


@pytest.fixture(scope="module", autouse=True)
def _import_torch():
    global torch, F
    torch = pytest.importorskip("torch")
    F = torch.nn.functional


MIXED = "3,5,ln,5+res,drop:0.5,bn,2"
"""Every emitted kind in one network (a tanh network with the l2 loss)."""


def render(layers, tmp_path, activation="tanh", loss="l2", name="kinds"):
    network = spec.network(layers, activation, loss)
    path = tmp_path / f"{name}.py"
    path.write_text(numpy_module.render(derive(network), name))
    return network, load_module(path, name)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    return render(MIXED, tmp_path_factory.mktemp("kinds"))


def torch_reference(network, params, x, y, masks, eps):
    """The same network written with PyTorch's functions; gradients by autograd."""
    tensors = [tuple(torch.tensor(p, requires_grad=True) for p in pair) for pair in params]
    owned = iter(tensors)
    a = torch.tensor(x)
    z = a
    for layer in network.layers:
        match layer:
            case Dense() | Residual():
                w, b = next(owned)
                z = a @ w + b
                h = torch.tanh(z) if layer.activation.name == "tanh" else z
                a = h + a if isinstance(layer, Residual) else h
            case LayerNorm():
                g, be = next(owned)
                a = F.layer_norm(a, (layer.width,), g[0], be[0], eps)
            case BatchNorm():
                g, be = next(owned)
                a = F.batch_norm(a, None, None, g[0], be[0], training=True, eps=eps)
            case Dropout():  # dropout with a fixed mask: multiply by it, scale by 1/(1-p)
                a = a * torch.tensor(masks[layer.index], dtype=a.dtype) / (1 - float(layer.rate))
    target = torch.tensor(y)
    if network.loss.name == "softmax_cross_entropy":
        value = F.cross_entropy(z, target.argmax(dim=1), reduction="sum")
    else:
        value = ((a - target) ** 2).sum()
    value.backward()
    return float(value.detach()), [tuple(t.grad.numpy() for t in pair) for pair in tensors]


def data(dtype, m=7, seed=0, n_in=3, n_out=2):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, n_in)).astype(dtype)
    return x, rng.standard_normal((m, n_out)).astype(dtype)


def fixed_masks(network, m, seed=0):
    rng = np.random.default_rng(seed)
    return {
        layer.index: (rng.random((m, layer.width)) >= 0.5).astype(np.float64)
        for layer in network.layers
        if isinstance(layer, Dropout)
    }


def random_params(mod, dtype, seed=1):
    rng = np.random.default_rng(seed)
    return [
        tuple((p + 0.3 * rng.standard_normal(p.shape)).astype(dtype) for p in pair)
        for pair in mod.init_params(seed, dtype)
    ]


def assert_close(grads, ref_grads, rtol, dtype=None):
    for pair, ref_pair in zip(grads, ref_grads, strict=True):
        for grad, ref in zip(pair, ref_pair, strict=True):
            if dtype is not None:
                assert grad.dtype == dtype  # float32 stays float32
            scale = max(1.0, float(np.abs(ref).max()))
            np.testing.assert_allclose(grad, ref, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 2e-4)])
def test_backprop_matches_torch_autograd(mixed, dtype, rtol):
    network, mod = mixed
    x, y = data(dtype)
    masks = fixed_masks(network, 7)
    params = random_params(mod, dtype)
    value, grads = mod.backprop(params, x, y, state=mod.init_state(), masks=masks)
    ref_value, ref_grads = torch_reference(network, params, x, y, masks, mod.EPS)
    assert isinstance(value, float) and np.isclose(value, ref_value, rtol=rtol)
    assert_close(grads, ref_grads, rtol, dtype)


def test_the_torch_comparison_catches_a_wrong_gradient(mixed):
    """Negative controls: a gradient off by 1e-6 relative, and the wrong dropout mask."""
    network, mod = mixed
    x, y = data(np.float64)
    masks = fixed_masks(network, 7)
    params = random_params(mod, np.float64)
    _, grads = mod.backprop(params, x, y, state=mod.init_state(), masks=masks)
    _, ref_grads = torch_reference(network, params, x, y, masks, mod.EPS)
    wrong = [list(pair) for pair in grads]
    wrong[1][0] = wrong[1][0] * (1 + 1e-6)
    with pytest.raises(AssertionError):
        assert_close(wrong, ref_grads, 1e-10)
    _, other = mod.backprop(
        params, x, y, state=mod.init_state(), masks=fixed_masks(network, 7, seed=1)
    )
    with pytest.raises(AssertionError):
        assert_close(other, ref_grads, 1e-10)


def training_loss_differences(mod, params, x, y, masks):
    """∂L/∂θ by central differences of the training-mode loss with fixed masks."""
    return central_differences(
        lambda p: mod.loss(p, x, y, training=True, state=mod.init_state(), masks=masks), params
    )


def test_backprop_matches_central_differences(mixed):
    network, mod = mixed
    x, y = data(np.float64, m=6, seed=3)
    masks = fixed_masks(network, 6, seed=2)
    params = random_params(mod, np.float64, seed=4)
    _, grads = mod.backprop(params, x, y, state=mod.init_state(), masks=masks)
    assert_close(grads, training_loss_differences(mod, params, x, y, masks), 1e-6)


def test_constant_inputs_stay_finite(mixed):
    """Variance 0 (constant rows for layer norm, constant features for batch norm): ε carries it."""
    network, mod = mixed
    x, y = np.ones((4, 3)), np.zeros((4, 2))
    masks = {4: np.ones((4, 5))}
    params = mod.init_params(0)
    value, grads = mod.backprop(params, x, y, state=mod.init_state(), masks=masks)
    assert np.isfinite(value)
    assert all(np.isfinite(g).all() for pair in grads for g in pair)
    _, ref_grads = torch_reference(network, params, x, y, masks, mod.EPS)
    assert_close(grads, ref_grads, 1e-9)


def test_layer_norm_on_one_row(tmp_path):
    """m = 1 is defined for layer norm (statistics per row); batch norm refuses it in training."""
    network, mod = render("3,4,ln,2", tmp_path, name="ln_only")
    x, y = data(np.float64, m=1, n_out=2)
    params = random_params(mod, np.float64)
    _, grads = mod.backprop(params, x, y)
    _, ref_grads = torch_reference(network, params, x, y, {}, mod.EPS)
    assert_close(grads, ref_grads, 1e-10)


def test_batch_norm_refuses_one_row_in_training(mixed):
    _, mod = mixed
    x, y = data(np.float64, m=1)
    with pytest.raises(ValueError, match="at least 2 rows"):
        mod.backprop(mod.init_params(0), x, y)


def test_a_bad_mask_is_refused(mixed):
    _, mod = mixed
    x, y = data(np.float64, m=3)
    with pytest.raises(ValueError, match="0 and 1 only"):
        mod.backprop(mod.init_params(0), x, y, masks={4: np.full((3, 5), 0.5)})
    with pytest.raises(ValueError, match=r"shape \(3, 5\)"):
        mod.backprop(mod.init_params(0), x, y, masks={4: np.ones((2, 5))})


def test_drawn_masks_come_from_the_seeded_generator(mixed):
    """Two runs after the same seed_masks give the same loss; inference ignores dropout."""
    _, mod = mixed
    x, y = data(np.float64)
    params = random_params(mod, np.float64)
    mod.seed_masks(7)
    first = mod.backprop(params, x, y, state=mod.init_state())[0]
    mod.seed_masks(7)
    again = mod.backprop(params, x, y, state=mod.init_state())[0]
    other = mod.backprop(params, x, y, state=mod.init_state())[0]
    assert first == again and first != other
    state = mod.init_state()
    assert np.array_equal(mod.forward(params, x, state=state), mod.forward(params, x, state=state))


def test_running_statistics_follow_pytorch(tmp_path):
    """backprop updates the running mean and (unbiased) variance as F.batch_norm(training=True)
    with momentum does; forward in inference reads them, as F.batch_norm(training=False)."""
    _, mod = render("3,5,bn,2", tmp_path, name="bn_only")
    params = random_params(mod, np.float64)
    state = mod.init_state()
    mean, var = torch.zeros(5, dtype=torch.float64), torch.ones(5, dtype=torch.float64)
    for seed in range(3):
        x, y = data(np.float64, seed=seed)
        mod.backprop(params, x, y, state=state)
        a1 = torch.tanh(torch.tensor(x @ params[0][0] + params[0][1]))
        F.batch_norm(a1, mean, var, training=True, momentum=mod.MOMENTUM, eps=mod.EPS)
    np.testing.assert_allclose(state["running_mean2"][0], mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(state["running_var2"][0], var.numpy(), rtol=1e-12)
    x, _ = data(np.float64, seed=9)
    gamma, beta = (torch.tensor(p[0]) for p in params[1])
    a1 = torch.tanh(torch.tensor(x @ params[0][0] + params[0][1]))
    a2 = F.batch_norm(a1, mean, var, gamma, beta, training=False, eps=mod.EPS)
    ref = torch.tanh(a2 @ torch.tensor(params[2][0]) + torch.tensor(params[2][1]))
    np.testing.assert_allclose(mod.forward(params, x, state=state), ref.numpy(), rtol=1e-12)
    assert mod.forward(params, x[:1], state=state).shape == (1, 2)  # inference on one row


def test_save_and_load_keep_params_and_running_statistics(mixed, tmp_path):
    _, mod = mixed
    params = random_params(mod, np.float32)
    state = mod.init_state()
    x, y = data(np.float32)
    mod.backprop(params, x, y, state=state)
    mod.save_params(str(tmp_path / "p.npz"), params, state)
    loaded_state = mod.init_state()
    loaded = mod.load_params(str(tmp_path / "p.npz"), loaded_state)
    for pair, other in zip(params, loaded, strict=True):
        for a, b in zip(pair, other, strict=True):
            assert a.dtype == b.dtype and np.array_equal(a, b)
    assert all(np.array_equal(state[k], loaded_state[k]) for k in state)


def test_out_receives_the_gradients(mixed):
    network, mod = mixed
    x, y = data(np.float64)
    masks = fixed_masks(network, 7)
    params = random_params(mod, np.float64)
    _, grads = mod.backprop(params, x, y, state=mod.init_state(), masks=masks)
    out = [tuple(np.empty_like(p) for p in pair) for pair in params]
    _, written = mod.backprop(params, x, y, out, state=mod.init_state(), masks=masks)
    assert all(
        w is o for pw, po in zip(written, out, strict=True) for w, o in zip(pw, po, strict=True)
    )
    assert_close(out, grads, 0.0)
    with pytest.raises(ValueError, match="shares memory"):
        mod.backprop(params, x, y, [params[0], *out[1:]], state=mod.init_state())


# --- the residual block with a projection: params ([W_l | P_l], b_l) ------------------

PROJECTED = "3,5,4+proj,ln,3+proj,2"
"""Two projections, one below a layer norm and one below the output (ā_{l-1} of each
holds the skip term ā_l P_lᵀ; the first one's reaches a dense layer)."""


@pytest.fixture(scope="module")
def projected(tmp_path_factory):
    return render(PROJECTED, tmp_path_factory.mktemp("proj"), name="projected")


def projected_reference(network, params, x, y, detach_skip=False):
    """The network in torch.nn: a Linear for W_l, b_l and a Linear without bias for P_l
    (its weight is P_lᵀ); gradients by autograd, joined as the module's [∂W_l | ∂P_l].
    ``detach_skip`` cuts the gradient through a_{l-1} P_l (a backward missing ā_l P_lᵀ)."""
    dtype = torch.float64 if params[0][0].dtype == np.float64 else torch.float32
    pieces, owned = [], iter(params)
    a = torch.tensor(x)
    for layer in network.layers:
        if isinstance(layer, LayerNorm):
            g, be = (torch.tensor(p[0], requires_grad=True) for p in next(owned))
            pieces.append((g, be))
            a = F.layer_norm(a, (layer.width,), g, be, EPS_TORCH)
            continue
        joined, bias = next(owned)
        n = layer.n_out
        linear = torch.nn.Linear(layer.n_in, n, dtype=dtype)
        with torch.no_grad():
            linear.weight.copy_(torch.tensor(joined[:, :n].T))
            linear.bias.copy_(torch.tensor(bias[0]))
        h = torch.tanh(linear(a))
        if isinstance(layer, Residual) and layer.projection:
            proj = torch.nn.Linear(layer.n_in, n, bias=False, dtype=dtype)
            with torch.no_grad():
                proj.weight.copy_(torch.tensor(joined[:, n:].T))
            pieces.append((linear, proj))
            a = h + proj(a.detach() if detach_skip else a)
        else:
            pieces.append((linear, None))
            a = h
    value = ((a - torch.tensor(y)) ** 2).sum()
    value.backward()
    grads = []
    for first, second in pieces:
        if isinstance(first, torch.nn.Linear):
            w = first.weight.grad.numpy().T
            if second is not None:
                w = np.concatenate([w, second.weight.grad.numpy().T], axis=1)
            grads.append((w, first.bias.grad.numpy()[None, :]))
        else:
            grads.append((first.grad.numpy()[None, :], second.grad.numpy()[None, :]))
    return float(value.detach()), grads


EPS_TORCH = 1e-05  # the generated module's EPS (checked in the test below)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 2e-4)])
def test_a_projection_matches_torch_autograd(projected, dtype, rtol):
    network, mod = projected
    assert mod.EPS == EPS_TORCH
    x, y = data(dtype)
    params = random_params(mod, dtype)
    assert params[1][0].shape == (5, 8) and params[1][1].shape == (1, 4)  # ([W2 | P2], b2)
    value, grads = mod.backprop(params, x, y)
    ref_value, ref_grads = projected_reference(network, params, x, y)
    assert isinstance(value, float) and np.isclose(value, ref_value, rtol=rtol)
    assert_close(grads, ref_grads, rtol, dtype)


def test_the_projection_comparison_catches_a_wrong_p_gradient_or_a_missing_skip(projected):
    """Negative controls: ∂L/∂P_2 off by 1e-6 relative fails; so does a reference whose
    backward lacks the skip term ā_l P_lᵀ (the module's gradients below it differ)."""
    network, mod = projected
    x, y = data(np.float64)
    params = random_params(mod, np.float64)
    _, grads = mod.backprop(params, x, y)
    _, ref_grads = projected_reference(network, params, x, y)
    assert_close(grads, ref_grads, 1e-10)
    wrong = [list(pair) for pair in grads]
    joined = wrong[1][0].copy()
    joined[:, 4:] *= 1 + 1e-6  # the P_2 half only
    wrong[1][0] = joined
    with pytest.raises(AssertionError):
        assert_close(wrong, ref_grads, 1e-10)
    _, skipless = projected_reference(network, params, x, y, detach_skip=True)
    with pytest.raises(AssertionError):
        assert_close(grads, skipless, 1e-10)


def test_a_projection_matches_central_differences_and_gradcheck(projected):
    _, mod = projected
    x, y = data(np.float64, m=6, seed=3)
    params = random_params(mod, np.float64, seed=4)
    _, grads = mod.backprop(params, x, y)
    assert_close(grads, training_loss_differences(mod, params, x, y, {}), 1e-6)
    assert mod.gradcheck(params, x, y) < 1e-3


def test_a_projection_initialises_p_like_w_and_keeps_save_load_and_out(projected, tmp_path):
    _, mod = projected
    joined = mod.init_params(0)[1][0]
    assert joined.shape == (5, 8) and np.all(joined[:, 4:] != 0)  # P_2 drawn as W_2
    params = random_params(mod, np.float32)
    mod.save_params(str(tmp_path / "p.npz"), params)
    loaded = mod.load_params(str(tmp_path / "p.npz"))
    assert all(
        a.dtype == b.dtype and np.array_equal(a, b)
        for pair, other in zip(params, loaded, strict=True)
        for a, b in zip(pair, other, strict=True)
    )
    x, y = data(np.float32)
    _, grads = mod.backprop(params, x, y)
    out = [tuple(np.empty_like(p) for p in pair) for pair in params]
    mod.backprop(params, x, y, out)
    assert_close(out, grads, 0.0, np.float32)
    with pytest.raises(ValueError, match=r"W2proj2 must have shape \(5, 8\)"):
        mod.backprop([params[0], (params[1][0][:, :4], params[1][1]), *params[2:]], x, y)


def test_fit_reduces_the_loss_with_projections(tmp_path):
    """``fit`` on the digits the other kinds train on, through two projected blocks."""
    from sklearn.datasets import load_digits

    _, mod = render(
        "64,24+proj,ln,16+proj,10",
        tmp_path,
        loss="softmax_cross_entropy",
        activation="tanh,tanh,softmax",
        name="proj_classifier",
    )
    x, labels = load_digits(return_X_y=True)
    x = x[:600] / 16.0
    y = np.eye(10)[labels[:600]]
    params = mod.init_params(0)
    history = mod.fit(params, x, y, epochs=5, batch_size=32, seed=0)
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert mod.score(params, x, y) > 0.6  # chance is 0.1


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    return render(
        "64,16,bn,ln,16+res,drop:0.1,10",
        tmp_path_factory.mktemp("kinds"),
        loss="softmax_cross_entropy",
        activation="tanh,tanh,softmax",
        name="kinds_classifier",
    )


@pytest.fixture(scope="module")
def small_classifier(tmp_path_factory):
    """The classifier's kinds and fused softmax at widths 6 -> 5 -> 4: central differences
    take two loss evaluations per parameter (the digits' 64 inputs: 1500 parameters)."""
    return render(
        "6,5,bn,ln,5+res,drop:0.1,4",
        tmp_path_factory.mktemp("kinds"),
        loss="softmax_cross_entropy",
        activation="tanh,tanh,softmax",
        name="small_kinds_classifier",
    )


def test_fused_softmax_network_matches_torch_and_central_differences(small_classifier):
    network, mod = small_classifier
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5, 6))
    y = np.eye(4)[rng.integers(0, 4, 5)]
    masks = {5: (rng.random((5, 5)) >= 0.1).astype(float)}
    params = random_params(mod, np.float64, seed=6)
    _, grads = mod.backprop(params, x, y, state=mod.init_state(), masks=masks)
    _, ref_grads = torch_reference(network, params, x, y, masks, mod.EPS)
    assert_close(grads, ref_grads, 1e-10)
    assert_close(grads, training_loss_differences(mod, params, x, y, masks), 1e-6)


def test_fit_reduces_the_loss_and_predict_reads_running_statistics(classifier):
    """Training through ``fit`` on the digits; ``predict`` uses the running statistics and
    no dropout (a row's label does not depend on the other rows of the batch)."""
    from sklearn.datasets import load_digits

    _, mod = classifier
    x, labels = load_digits(return_X_y=True)
    x = x[:600] / 16.0
    y = np.eye(10)[labels[:600]]
    mod.reset_state()
    mod.seed_masks(0)
    params = mod.init_params(0)
    history = mod.fit(params, x, y, epochs=5, batch_size=32, seed=0)
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert mod.STATE["running_var2"].mean() != 1.0  # fit moved the running statistics
    whole = mod.predict(params, x[:50])
    one_by_one = np.concatenate([mod.predict(params, x[k : k + 1]) for k in range(50)])
    np.testing.assert_array_equal(whole, one_by_one)
    assert mod.score(params, x, y) > 0.6  # chance is 0.1


# --- the array API target: equal to the numpy target on every library it runs on -----

LIBRARIES = ["numpy", "array_api_strict", "torch"]


def render_array_api(layers, tmp_path, activation="tanh", loss="l2", name="aa_kinds"):
    from derive.backends import array_api

    network = spec.network(layers, activation, loss)
    path = tmp_path / f"{name}.py"
    path.write_text(array_api.render(derive(network), name))
    return load_module(path, name)


@pytest.fixture(scope="module")
def array_api_pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("aa_kinds")
    layers, activation, loss = (
        "6,8,bn,ln,8+res,drop:0.25,4",
        "gelu,relu,softmax",
        "softmax_cross_entropy",
    )
    aa = render_array_api(layers, folder, activation, loss)
    _, np_mod = render(layers, folder, activation, loss, name="np_kinds")
    return aa, np_mod


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-12), ("float32", 1e-5)])
def test_array_api_matches_the_numpy_target(array_api_pair, library, dtype, rtol):
    import importlib

    aa, np_mod = array_api_pair
    xp = importlib.import_module(library)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((5, 6)).astype(dtype)
    y = np.eye(4, dtype=dtype)[rng.integers(0, 4, 5)]
    masks = {5: (rng.random((5, 8)) >= 0.25).astype(dtype)}
    params = random_params(np_mod, np.dtype(dtype))
    value, grads = np_mod.backprop(params, x, y, state=np_mod.init_state(), masks=masks)
    put = aa.as_params(params, xp)
    got_value, got = aa.backprop(put, xp.asarray(x), xp.asarray(y), masks={5: xp.asarray(masks[5])})
    assert np.isclose(float(got_value), value, rtol=rtol)
    for pair, ref_pair in zip(got, grads, strict=True):
        for grad, ref in zip(pair, ref_pair, strict=True):
            assert str(grad.dtype).endswith(dtype)  # float32 stays float32
            np.testing.assert_allclose(np.asarray(grad), ref, rtol=rtol, atol=rtol)
    # inference: the running statistics after one training batch, then forward
    state = aa.running_statistics(put, xp.asarray(x), aa.init_state(xp), {5: xp.asarray(masks[5])})
    np_state = np_mod.init_state()
    np_mod.backprop(params, x, y, state=np_state, masks=masks)
    for key in np_state:
        np.testing.assert_allclose(np.asarray(state[key]), np_state[key], rtol=rtol, atol=rtol)
    yhat = aa.forward(put, xp.asarray(x), state=state)
    np.testing.assert_allclose(
        np.asarray(yhat), np_mod.forward(params, x, state=np_state), rtol=rtol, atol=rtol
    )


def test_a_mask_for_a_layer_that_is_not_dropout_is_refused_in_both_targets(array_api_pair):
    """Its only dropout layer is 5: a mask keyed 4 (the user's off-by-one) would be ignored and
    a drawn mask used instead, a wrong answer without an error; every entry point refuses it,
    and the same mask keyed 5 is taken (the control)."""
    aa, np_mod = array_api_pair
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((5, 6)), np.eye(4)[rng.integers(0, 4, 5)]
    mask = (rng.random((5, 8)) >= 0.25).astype(float)
    params = random_params(np_mod, np.dtype("float64"))
    put = aa.as_params(params, np)
    message = r"masks has a mask for layer 4, which is not a dropout layer .*\[5\]"
    calls = [
        lambda masks: np_mod.backprop(params, x, y, state=np_mod.init_state(), masks=masks),
        lambda masks: np_mod.loss(
            params, x, y, training=True, state=np_mod.init_state(), masks=masks
        ),
        lambda masks: np_mod.forward(
            params, x, training=True, state=np_mod.init_state(), masks=masks
        ),
        lambda masks: aa.backprop(put, x, y, masks=masks),
        lambda masks: aa.forward(put, x, training=True, masks=masks),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=message):
            call({5: mask, 4: mask})
        call({5: mask})


@pytest.fixture(scope="module")
def projected_array_api(tmp_path_factory):
    """PROJECTED's array API module, rendered once for every library and dtype."""
    return render_array_api(PROJECTED, tmp_path_factory.mktemp("aa_proj"), name="aa_proj")


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-12), ("float32", 1e-5)])
def test_array_api_projection_matches_the_numpy_target(
    projected, projected_array_api, library, dtype, rtol
):
    import importlib

    _, np_mod = projected
    aa = projected_array_api
    xp = importlib.import_module(library)
    x, y = data(np.dtype(dtype), seed=12)
    params = random_params(np_mod, np.dtype(dtype))
    value, grads = np_mod.backprop(params, x, y)
    got_value, got = aa.backprop(aa.as_params(params, xp), xp.asarray(x), xp.asarray(y))
    assert np.isclose(float(got_value), value, rtol=rtol)
    for pair, ref_pair in zip(got, grads, strict=True):
        for grad, ref in zip(pair, ref_pair, strict=True):
            assert str(grad.dtype).endswith(dtype)  # float32 stays float32
            np.testing.assert_allclose(np.asarray(grad), ref, rtol=rtol, atol=rtol)


def test_array_api_dropout_needs_its_mask(array_api_pair):
    aa, _ = array_api_pair
    x = np.zeros((3, 6))
    y = np.eye(4)[[0, 1, 2]]
    with pytest.raises(ValueError, match="dropout layer 5 needs its mask"):
        aa.backprop(aa.init_params(0), x, y)


def test_the_modules_gradcheck_passes_with_dropout_and_batch_norm(mixed):
    """``gradcheck`` (training.py) sees the same masks at every call, so it can pass."""
    _, mod = mixed
    x, y = data(np.float64, m=4, seed=8)
    params = random_params(mod, np.float64, seed=9)
    assert mod.gradcheck(params, x, y) < 1e-3  # "well below 1e-3" for a right backprop


def test_a_norms_dx_is_its_lemmas_compact_form_only_when_the_raw_forms_agree(mixed):
    """The compact dx is used where the network's raw adjoint is the lemma's at ā_l (the
    module computes Σg, Σgx̂ once); a different raw adjoint keeps the raw form."""
    from derive.backends import layered
    from derive.backends.python_source import MatrixText
    from derive.expr import Kind, Var

    network, mod = mixed
    source = open(mod.__file__, encoding="utf-8").read()
    # each sum is the output of one product (``np.dot(t, ones5, sum_gx2)``), read after
    for total in ("sum_gx2", "sum_gx5"):
        assert len(re.findall(rf"np\.dot\([\w.]+, [\w.]+, {total}\)", source)) == 1, total
    norm = network.layers[1]
    steps = layered._steps(network)
    adjoints = layered.backward(steps, {layered.model.LOSS: layered.model.SEED})
    assert norm.input in layered._compact(norm, adjoints, steps)
    tampered = {**adjoints, norm.input: Var(Kind.DELTA, 9)}
    assert norm.input not in layered._compact(norm, tampered, steps)
    plan = layered.plan(network, MatrixText(network))
    assert any(s.target == Var(Kind.SUM_ADJOINT_XHAT, 2) for s in plan.backward)


def test_check_finite_names_the_bad_input(mixed):
    _, mod = mixed
    x, y = data(np.float64)
    params = random_params(mod, np.float64)
    x[0, 0] = np.nan
    with pytest.raises(ValueError, match="x contains NaN"):
        mod.backprop(params, x, y, check_finite=True)
