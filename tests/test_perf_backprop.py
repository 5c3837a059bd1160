"""The fast generated backprop: still correct, allocation-free with ``out=``, thread safe.

No timing here: speed is measured by ``benchmarks/bench.py``.  Every checker
below is also run on something it must reject (a negative control).
"""

from __future__ import annotations

import importlib.util
import threading

import numpy as np
import pytest
import sympy as sp
from helpers import all_equal, central_differences, run_concurrently, steady_state_peak

from derive import catalog, spec
from derive.backends.numpy import module as numpy_module
from derive.derivation import derive
from derive.model import Network


def generate(tmp_path, layers: str, name: str):
    network = spec.network(layers)
    path = tmp_path / f"{name}.py"
    path.write_text(numpy_module.render(derive(network), name), encoding="utf-8")
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("small"), "3,4,5,2", "small_net")


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("wide"), "96,256,192", "wide_net")


def data(sizes, m, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, sizes[0])).astype(dtype), rng.uniform(
        -1, 1, (m, sizes[-1])
    ).astype(dtype)


# --- gradients against central differences -----------------------------------


def fd_mismatch(loss, params, x, y, grads) -> float:
    """Largest relative difference between ``grads`` and central differences of ``loss``."""
    numeric = central_differences(lambda p: loss(p, x, y), params)
    return max(
        float(np.max(np.abs(n - g) / np.maximum(1.0, np.abs(n))))
        for pair, reference in zip(grads, numeric, strict=False)
        for g, n in zip(pair, reference, strict=True)
    )


def test_gradients_match_central_differences(small):
    params = small.init_params(seed=1)
    x, y = data(small.SIZES, 5)
    value, grads = small.backprop(params, x, y)
    assert value == pytest.approx(small.loss(params, x, y))
    assert fd_mismatch(small.loss, params, x, y, grads) < 1e-7


@pytest.mark.parametrize("use_out", [False, True])
def test_one_row_path_matches_central_differences(small, use_out):
    """m = 1 takes its own statements (b_l added directly, 1ᵀδ as δ itself): right too,
    with nonzero biases so that a bias added twice or not at all would show."""
    params = small.init_params(seed=13)
    for _, b in params:
        b += np.random.default_rng(13).standard_normal(b.shape)
    x, y = data(small.SIZES, 1, seed=13)
    out = [(np.empty_like(w), np.empty_like(b)) for w, b in params] if use_out else None
    value, grads = small.backprop(params, x, y, out)
    assert value == pytest.approx(small.loss(params, x, y))
    assert fd_mismatch(small.loss, params, x, y, grads) < 1e-7
    _, rows = small.backprop(params, np.repeat(x, 3, axis=0), np.repeat(y, 3, axis=0))
    for (dw, db), (rw, rb) in zip(grads, rows, strict=True):  # three equal rows: 3x the grads
        np.testing.assert_allclose(3 * dw, rw, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(3 * db, rb, rtol=1e-12, atol=1e-14)


def test_finite_difference_check_rejects_a_wrong_gradient(small):
    params = small.init_params(seed=1)
    x, y = data(small.SIZES, 5)
    _, grads = small.backprop(params, x, y)
    grads[1][0][2, 3] += 1e-4  # one wrong entry
    assert fd_mismatch(small.loss, params, x, y, grads) > 1e-5


def test_out_gives_the_same_gradients_and_returns_out(small):
    params = small.init_params(seed=2)
    x, y = data(small.SIZES, 7)
    value, grads = small.backprop(params, x, y)
    out = [(np.full_like(w, np.nan), np.full_like(b, np.nan)) for w, b in params]
    value_out, returned = small.backprop(params, x, y, out=out)
    assert returned is out and value_out == value
    for (dw, db), (ow, ob) in zip(grads, out, strict=False):
        np.testing.assert_array_equal(dw, ow)
        np.testing.assert_array_equal(db, ob)


def test_reused_workspace_does_not_leak_into_returned_gradients(small):
    params = small.init_params(seed=3)
    x1, y1 = data(small.SIZES, 6, seed=1)
    x2, y2 = data(small.SIZES, 6, seed=2)
    _, first = small.backprop(params, x1, y1)
    kept = [(dw.copy(), db.copy()) for dw, db in first]
    small.backprop(params, x2, y2)  # same workspace, other data
    for (dw, db), (kw, kb) in zip(first, kept, strict=False):
        np.testing.assert_array_equal(dw, kw)
        np.testing.assert_array_equal(db, kb)


def test_batch_size_and_dtype_changes_between_calls(small):
    params64 = small.init_params(seed=4)
    params32 = small.init_params(seed=4, dtype=np.float32)
    for m in (1, 9, 2, 9):
        for params, dtype in ((params64, np.float64), (params32, np.float32)):
            x, y = data(small.SIZES, m, seed=m, dtype=dtype)
            _, grads = small.backprop(params, x, y)
            assert all(dw.dtype == dtype and db.dtype == dtype for dw, db in grads)
            _, again = small.backprop(params, x, y)
            for (dw, db), (aw, ab) in zip(grads, again, strict=False):
                np.testing.assert_array_equal(dw, aw)
                np.testing.assert_array_equal(db, ab)


def test_bad_out_is_refused(small):
    params = small.init_params(seed=5)
    x, y = data(small.SIZES, 3)
    with pytest.raises(ValueError):
        small.backprop(params, x, y, out=[(np.empty((4, 3)), np.empty((1, 4)))] * 3)
    out = [(np.empty_like(w), np.empty_like(b)) for w, b in small.init_params(dtype=np.float32)]
    with pytest.raises(ValueError):
        small.backprop(params, x, y, out=out)
    out = [(np.asfortranarray(np.empty_like(w)), np.empty_like(b)) for w, b in params]
    out[1] = (np.empty((5, 4)).T, out[1][1])  # right shape, not C-contiguous
    with pytest.raises(ValueError):
        small.backprop(params, x, y, out=out)


# --- allocation ---------------------------------------------------------------

SMALL_OBJECTS = 1024
"""Bytes of transient Python objects (shape tuples, array views) a call may make.

Every array of the ``wide`` network, down to a bias gradient of 1 x 192
float64s, is larger than this, so a peak below it means no array was allocated."""


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
# m = 1 has statements of its own; every m > 1 runs the same ones, and at 64 rows each per-row
# array is already 48 KiB or more (512 rows cost 8 times the CPU for the same statements)
@pytest.mark.parametrize("m", [1, 64])
def test_steady_state_with_out_allocates_no_array(wide, m, dtype):
    """Also catches float32 work done in float64: casting needs buffers."""
    params = wide.init_params(seed=6, dtype=dtype)
    x, y = data(wide.SIZES, m, dtype=dtype)
    out = [(np.empty_like(w), np.empty_like(b)) for w, b in params]
    peak, growth = steady_state_peak(lambda: wide.backprop(params, x, y, out=out))
    assert growth == 0
    assert peak < SMALL_OBJECTS


def test_allocation_check_sees_the_plain_call_allocate(wide):
    params = wide.init_params(seed=6)
    x, y = data(wide.SIZES, 64)
    peak, _ = steady_state_peak(lambda: wide.backprop(params, x, y))
    assert peak >= sum(w.nbytes + b.nbytes for w, b in params)


# --- threads --------------------------------------------------------------------


def test_two_threads_get_correct_results(wide):
    params = wide.init_params(seed=7)
    inputs = [data(wide.SIZES, 64, seed=s) for s in (1, 2)]
    expected = [wide.backprop(params, x, y) for x, y in inputs]
    calls = [lambda x=x, y=y: wide.backprop(params, x, y) for x, y in inputs]
    results = run_concurrently(calls, rounds=30)
    for k in range(2):
        assert all_equal(results[k], expected[k])


def test_thread_check_catches_a_shared_workspace(wide, monkeypatch):
    """Negative control on the real module: one workspace for both threads is caught.

    The race is left to the scheduler, so up to three tries; measured, the
    first try caught it in 5 runs out of 5.
    """
    params = wide.init_params(seed=7)
    inputs = [data(wide.SIZES, 64, seed=s) for s in (1, 2)]
    expected = [wide.backprop(params, x, y) for x, y in inputs]
    shared = wide._take_workspace(64, params[0][0].dtype)
    monkeypatch.setattr(wide, "_take_workspace", lambda m, dtype: shared)
    calls = [lambda x=x, y=y: wide.backprop(params, x, y) for x, y in inputs]
    for _ in range(3):
        results = run_concurrently(calls, rounds=30)
        if not all(all_equal(results[k], expected[k]) for k in range(2)):
            return
    pytest.fail("two threads sharing one workspace went unnoticed")


def test_thread_check_catches_a_shared_buffer():
    """Negative control: a function racing on one shared buffer is caught.

    The barrier forces the interleaving (both write, then both read), so the
    race shows on every run rather than by chance.
    """
    shared = np.zeros(3)
    barrier = threading.Barrier(2)

    def racy(v):
        def call():
            shared[:] = v
            barrier.wait()
            result = (float(shared.sum()), [(shared.copy(), shared.copy())])
            barrier.wait()
            return result

        return call

    results = run_concurrently([racy(1.0), racy(2.0)], rounds=3)
    expected = [(3.0, [(np.ones(3), np.ones(3))]), (6.0, [(np.full(3, 2.0), np.full(3, 2.0))])]
    assert not (all_equal(results[0], expected[0]) and all_equal(results[1], expected[1]))


def test_a_mean_loss_is_scaled_in_place(tmp_path):
    """A loss with a batch-dependent scale (a mean of squares) goes through the
    residual path with the scale applied in place; gradients stay exact."""
    mean = catalog.LossFunction(
        "mean_sq",
        (catalog.pred - catalog.target) ** 2,
        r"\frac{1}{m n_L}\lVert {pred} - {target} \rVert^2",
        "mean of squared errors",
        scale=1 / (catalog.batch * catalog.outputs),
    )
    tanh = catalog.activation("tanh")
    network = Network((3, 4, 2), (tanh, tanh), mean)
    path = tmp_path / "mean_net.py"
    source = numpy_module.render(derive(network), "mean_net")
    assert "np.vdot" in source  # the in-place residual path, not the fallback
    path.write_text(source, encoding="utf-8")
    module_spec = importlib.util.spec_from_file_location("mean_net", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    params = module.init_params(seed=8)
    x, y = data(module.SIZES, 6)
    value, grads = module.backprop(params, x, y)
    prediction = module.forward(params, x)
    assert value == pytest.approx(float(np.mean((prediction - y) ** 2)), rel=1e-12)
    assert fd_mismatch(module.loss, params, x, y, grads) < 1e-7


def _custom_module(tmp_path, name, definition, loss=None):
    act = catalog.Activation(name, definition, name, name)
    network = Network((3, 4, 2), (act, act), loss or catalog.loss_function("l2"))
    source = numpy_module.render(derive(network), f"net_{name}")
    path = tmp_path / f"net_{name}.py"
    path.write_text(source, encoding="utf-8")
    module_spec = importlib.util.spec_from_file_location(f"net_{name}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module, source


def test_activation_whose_derivative_needs_z_keeps_z(tmp_path):
    """atan: a' is compiled from z (cos(A)² needs two buffers), so z_l gets its own."""
    module, source = _custom_module(tmp_path, "atan", sp.atan(catalog.z))
    assert "np.arctan(z1, a1)" in source and "[...] =" not in source
    params = module.init_params(seed=9)
    x, y = data(module.SIZES, 5)
    _, grads = module.backprop(params, x, y)
    assert fd_mismatch(module.loss, params, x, y, grads) < 1e-7


def test_formulas_the_compiler_refuses_fall_back_and_stay_correct(tmp_path):
    """z·exp(−z²) (a' needs two buffers) and a cross-entropy loss use NumpyCode's expressions."""
    z, p, t = catalog.z, catalog.pred, catalog.target
    module, source = _custom_module(tmp_path, "bump", z * sp.exp(-(z**2)))
    assert "delta1[...] =" in source
    params = module.init_params(seed=10)
    x, y = data(module.SIZES, 5)
    _, grads = module.backprop(params, x, y)
    assert fd_mismatch(module.loss, params, x, y, grads) < 1e-7

    bce = catalog.LossFunction("bce", -(t * sp.log(p) + (1 - t) * sp.log(1 - p)), "", "")
    module, source = _custom_module(tmp_path, "sigmoid", 1 / (1 + sp.exp(-z)), bce)
    assert "value = float(np.sum(" in source and "delta2[...] =" in source
    params = module.init_params(seed=11)
    x, _ = data(module.SIZES, 5)
    y = (np.random.default_rng(0).uniform(size=(5, 2)) > 0.5).astype(float)
    _, grads = module.backprop(params, x, y)
    assert fd_mismatch(module.loss, params, x, y, grads) < 1e-7


def test_strided_inputs_and_an_empty_batch(small):
    """Non-contiguous x and y go through np.dot and the ufuncs as they are."""
    params = small.init_params(seed=12)
    x, y = data(small.SIZES, 8)
    wide_x = np.zeros((8, 2 * x.shape[1]))
    wide_x[:, ::2] = x
    expected_value, expected = small.backprop(params, x, np.ascontiguousarray(y))
    value, grads = small.backprop(params, wide_x[:, ::2], np.asfortranarray(y))
    assert value == pytest.approx(expected_value, rel=1e-12)
    for (dw, db), (ew, eb) in zip(grads, expected, strict=True):
        np.testing.assert_allclose(dw, ew, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(db, eb, rtol=1e-12, atol=1e-15)
    value, grads = small.backprop(params, x[:0], y[:0])
    assert value == 0.0
    assert all(not dw.any() and not db.any() for dw, db in grads)
