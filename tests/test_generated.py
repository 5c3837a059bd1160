"""The generated module, checked numerically: finite differences and a reference."""

from __future__ import annotations

import numpy as np
import pytest
import reference
from helpers import catalog_module, central_differences
from hypothesis import given, settings
from hypothesis import strategies as st

DEPTHS = ["5,3", "3,7,5", "5,3,7,1", "1,9,3,5,3", "7,5,3,9,5,3"]  # depths 1-5, odd widths


def tanh_l2(layers: str):
    """The tanh/l2 module for ``layers``, rendered once per process (no test changes it)."""
    return catalog_module(layers, "tanh", "l2")


def _data(module, batch, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    params = module.init_params(seed=seed, dtype=dtype)
    for _w, b in params:  # nonzero biases so a wrong bias gradient shows
        b += rng.standard_normal(b.shape).astype(dtype)
    x = rng.standard_normal((batch, module.SIZES[0])).astype(dtype)
    y = rng.standard_normal((batch, module.SIZES[-1])).astype(dtype)
    return params, x, y


@pytest.mark.parametrize("layers", DEPTHS)
def test_gradients_match_central_differences(layers):
    module = tanh_l2(layers)
    params, x, y = _data(module, batch=4)
    _, grads = module.backprop(params, x, y)
    numeric = central_differences(lambda p: module.loss(p, x, y), params)
    for (dw, db), (nw, nb) in zip(grads, numeric, strict=True):
        np.testing.assert_allclose(dw, nw, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(db, nb, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("layers", DEPTHS)
def test_agrees_with_plain_numpy_reference(layers):
    module = tanh_l2(layers)
    params, x, y = _data(module, batch=6, seed=1)
    value, grads = module.backprop(params, x, y)
    ref_value, ref_grads = reference.backprop(params, x, y)
    assert value == pytest.approx(ref_value, rel=1e-12)
    np.testing.assert_allclose(module.forward(params, x), reference.forward(params, x), rtol=1e-12)
    for (dw, db), (rw, rb) in zip(grads, ref_grads, strict=True):
        assert dw.shape == rw.shape and db.shape == rb.shape
        np.testing.assert_allclose(dw, rw, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(db, rb, rtol=1e-10, atol=1e-12)


def test_reference_check_detects_a_wrong_gradient():
    """Negative control: the comparison above fails for a perturbed gradient."""
    module = tanh_l2("3,7,5")
    params, x, y = _data(module, batch=6, seed=1)
    _, grads = module.backprop(params, x, y)
    _, ref_grads = reference.backprop(params, x, y)
    wrong = grads[0][0] * (1 + 1e-6)
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(wrong, ref_grads[0][0], rtol=1e-10, atol=1e-12)


def test_nn_class_is_a_drop_in_for_the_seed():
    module = tanh_l2("20,50,10")
    net = module.NN(seed=3)
    assert net.sizes == [20, 50, 10] and net.num_layers == 3
    assert [w.shape for w in net.w] == [(20, 50), (50, 10)]
    assert [b.shape for b in net.b] == [(1, 50), (1, 10)]
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((8, 20)), rng.standard_normal((8, 10))
    params = list(zip(net.w, net.b, strict=True))
    w_grad, b_grad = net.backprop(x, y)
    _, ref = reference.backprop(params, x, y)
    for i, (rw, rb) in enumerate(reversed(ref)):  # the seed's order: last layer first
        np.testing.assert_allclose(w_grad[i], rw, rtol=1e-10)
        np.testing.assert_allclose(b_grad[i], rb, rtol=1e-10)
    np.testing.assert_allclose(net.forward_pass(x[0]), reference.forward(params, x[:1]), rtol=1e-12)


def test_single_example_is_a_batch_of_one():
    module = tanh_l2("4,3")
    params, x, y = _data(module, batch=1)
    assert module.forward(params, x[0]).shape == (1, 3)
    v1, g1 = module.backprop(params, x[0], y[0])
    v2, g2 = module.backprop(params, x, y)
    assert v1 == v2
    np.testing.assert_array_equal(g1[0][0], g2[0][0])


def test_init_params_shapes_dtypes_and_seed():
    module = tanh_l2("5,3,7,1")
    params = module.init_params(seed=7, dtype=np.float32)
    assert [(w.shape, b.shape) for w, b in params] == [
        ((5, 3), (1, 3)),
        ((3, 7), (1, 7)),
        ((7, 1), (1, 1)),
    ]
    assert all(w.dtype == np.float32 and b.dtype == np.float32 for w, b in params)
    again = module.init_params(seed=7, dtype=np.float32)
    assert all(np.array_equal(w, w2) for (w, _), (w2, _) in zip(params, again, strict=True))


def test_float32_stays_float32():
    module = tanh_l2("5,3,7,1")
    params, x, y = _data(module, batch=4, dtype=np.float32)
    _value, grads = module.backprop(params, x, y)
    assert module.forward(params, x).dtype == np.float32
    assert all(dw.dtype == np.float32 and db.dtype == np.float32 for dw, db in grads)
    _, ref = reference.backprop(
        [(w.astype(np.float64), b.astype(np.float64)) for w, b in params], x, y
    )
    np.testing.assert_allclose(grads[0][0], ref[0][0], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p, x, y: (p, x[:, :-1], y), r"x must have shape \(m, 5\) or \(5,\), got \(4, 4\)"),
        (lambda p, x, y: (p, x, y[:2]), "x has 4 rows but y has 2"),
        (lambda p, x, y: (p[:-1], x, y), r"params must hold 3 \(W, b\) pairs, got 2"),
        (
            lambda p, x, y: ([(p[0][0].T, p[0][1]), *p[1:]], x, y),
            r"W1 must have shape \(5, 3\), got \(3, 5\)",
        ),
        (
            lambda p, x, y: (p, x.astype(np.complex128), y),
            "x has dtype complex128 but params are float64",
        ),
        (
            lambda p, x, y: (p, x.astype(np.float32), y),
            "x has dtype float32 but params are float64",
        ),
        (
            lambda p, x, y: (p, np.array([["a"] * 5] * 4), y),
            "x has dtype <U1 but params are float64",
        ),
        (
            lambda p, x, y: ([(p[0][0].astype(np.float32), p[0][1]), *p[1:]], x, y),
            "b1 has dtype float64 but W1 has float32",
        ),
    ],
)
def test_bad_input_names_expected_and_received(mutate, message):
    module = tanh_l2("5,3,7,1")
    params, x, y = mutate(*_data(module, batch=4))
    with pytest.raises(ValueError, match=message):
        module.backprop(params, x, y)


def test_non_finite_input_propagates():
    module = tanh_l2("4,3")
    params, x, y = _data(module, batch=2)
    x[0, 0] = np.nan
    value, grads = module.backprop(params, x, y)
    assert np.isnan(value) and np.isnan(grads[0][0]).any()


@settings(max_examples=15, deadline=None)
@given(sizes=st.lists(st.integers(1, 7), min_size=2, max_size=5), batch=st.integers(1, 4))
def test_random_valid_specs_have_correct_gradients(sizes, batch):
    module = tanh_l2(",".join(map(str, sizes)))
    params, x, y = _data(module, batch=batch, seed=sum(sizes))
    _, grads = module.backprop(params, x, y)
    numeric = central_differences(lambda p: module.loss(p, x, y), params)
    for (dw, db), (nw, nb) in zip(grads, numeric, strict=True):
        np.testing.assert_allclose(dw, nw, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(db, nb, rtol=1e-6, atol=1e-7)


def test_depth_30_agrees_with_the_reference():
    module = tanh_l2(",".join(["5", "3"] * 15 + ["4"]))  # 30 weight layers, non-square
    assert len(module.SIZES) == 31
    params, x, y = _data(module, batch=3, seed=30)
    value, grads = module.backprop(params, x, y)
    ref_value, ref_grads = reference.backprop(params, x, y)
    assert value == pytest.approx(ref_value, rel=1e-12)
    for (dw, db), (rw, rb) in zip(grads, ref_grads, strict=True):
        np.testing.assert_allclose(dw, rw, rtol=1e-9, atol=1e-14)
        np.testing.assert_allclose(db, rb, rtol=1e-9, atol=1e-14)
