"""A layered module's ``backprop`` in place (``numpy/layered_inplace``): with ``out`` a
steady-state call allocates no array, two threads get their own workspaces, and the
in-place statements compute what the printed ones (``loss``) compute."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import all_equal, load_module, run_concurrently, steady_state_peak

from derive import spec
from derive.backends.numpy import module as numpy_module
from derive.derivation import derive

WIDE = "64,272,ln,272+res,264+proj,drop:0.5,bn,264"
"""Every kind at once: a residual block, a projection, layer norm, dropout, batch norm
(training mode).  m = 264: the smallest array it holds, a 1 x 264 row of float32 (1056
bytes) or a 264 x 1 column, is larger than ``SMALL_OBJECTS`` (so any array a call made
would show in the peak); no larger, each call's matrix products cost ~ m n²."""

SMALL_OBJECTS = 1024
"""Bytes of transient Python objects (views, shape tuples) a call may make."""

M = 264


def render(layers, folder, name, output="tanh"):
    loss = "softmax_cross_entropy" if output == "softmax" else "l2"
    depth = sum(1 for item in layers.split(",")[1:] if item[0].isdigit())
    network = spec.network(layers, ",".join(["tanh"] * (depth - 1) + [output]), loss)
    path = folder / f"{name}.py"
    path.write_text(numpy_module.render(derive(network), name), encoding="utf-8")
    return network, load_module(path, name)


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    return render(WIDE, tmp_path_factory.mktemp("inplace"), "wide_kinds")


def inputs(mod, dtype, seed=0, m=M):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, mod.SIZES[0])).astype(dtype)
    y = rng.uniform(-0.9, 0.9, (m, mod.SIZES[-1])).astype(dtype)
    return x, y


def given_masks(network, m, seed=3):
    rng = np.random.default_rng(seed)
    return {
        layer.index: (rng.random((m, layer.width)) >= 0.5).astype(np.float64)
        for layer in network.layers
        if type(layer).__name__ == "Dropout"
    }


# By default each dtype and each mask source once (float32 with drawn masks: a cast or a draw
# in float64 would need a buffer); the other two pairs run in the slow suite.
@pytest.mark.parametrize(
    ("dtype", "given"),
    [
        pytest.param(np.float32, False, id="float32-drawn-masks"),
        pytest.param(np.float64, True, id="float64-given-masks"),
        pytest.param(np.float64, False, id="float64-drawn-masks", marks=pytest.mark.slow),
        pytest.param(np.float32, True, id="float32-given-masks", marks=pytest.mark.slow),
    ],
)
def test_steady_state_with_out_allocates_no_array(wide, dtype, given):
    """Also catches float32 work done in float64 (a cast needs a buffer) and a broadcast
    ufunc (its iterator allocates one)."""
    network, mod = wide
    params = mod.init_params(seed=1, dtype=dtype)
    x, y = inputs(mod, dtype)
    out = [tuple(np.empty_like(p) for p in pair) for pair in params]
    masks = given_masks(network, M) if given else None
    state = mod.init_state()
    peak, growth = steady_state_peak(
        lambda: mod.backprop(params, x, y, out, state=state, masks=masks), calls=5
    )
    assert growth == 0
    assert peak < SMALL_OBJECTS


def test_the_l2_penalty_allocates_no_array_either(tmp_path):
    """With --l2 each λ W_l (and λ P_l) goes through a workspace scratch into ∂L/∂W_l."""
    network = spec.network("64,272,ln,264+proj,264", "tanh", "l2", l2=True)  # rows > 1024 B
    path = tmp_path / "penalised_kinds.py"
    path.write_text(numpy_module.render(derive(network), path.stem), encoding="utf-8")
    mod = load_module(path, path.stem)
    params = mod.init_params(seed=1, dtype=np.float32)
    x, y = inputs(mod, np.float32)
    out = [tuple(np.empty_like(p) for p in pair) for pair in params]
    peak, growth = steady_state_peak(lambda: mod.backprop(params, x, y, out, l2=0.01), calls=5)
    assert growth == 0 and peak < SMALL_OBJECTS
    value, _ = mod.backprop(params, x, y, l2=0.01)
    assert np.isclose(value, mod.loss(params, x, y, training=True, l2=0.01), rtol=1e-5)


def test_the_allocation_check_sees_the_plain_call_allocate(wide):
    """Negative control: without ``out`` the call makes its gradients, and is caught."""
    _, mod = wide
    params = mod.init_params(seed=1)
    x, y = inputs(mod, np.float64)
    state = mod.init_state()
    peak, _ = steady_state_peak(lambda: mod.backprop(params, x, y, state=state), calls=3)
    assert peak >= sum(p.nbytes for pair in params for p in pair)


def test_the_allocation_check_sees_a_broadcasting_ufunc():
    """Negative control for the reason rows are spread by a copy: numpy's ufunc
    broadcasting a 1 x n row over m x n allocates, and the probe sees it."""
    a, row, out = np.ones((M, 264), np.float32), np.ones((1, 264), np.float32), None
    out = np.empty_like(a)
    assert steady_state_peak(lambda: np.add(a, row, out), calls=3)[0] >= SMALL_OBJECTS


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_the_in_place_loss_is_the_printed_loss(wide, dtype, rtol):
    """``backprop``'s value (in place) equals ``loss(training=True)`` (the printed
    statements) on the same masks and fresh statistics: float32 stays float32."""
    network, mod = wide
    params = mod.init_params(seed=2, dtype=dtype)
    x, y = inputs(mod, dtype, m=16)
    masks = given_masks(network, 16)
    value, grads = mod.backprop(params, x, y, state=mod.init_state(), masks=masks)
    printed = mod.loss(params, x, y, training=True, state=mod.init_state(), masks=masks)
    assert np.isclose(value, printed, rtol=rtol)
    assert all(g.dtype == dtype for pair in grads for g in pair)


def test_weights_copied_out_of_a_projection_keep_their_own_arrays(tmp_path):
    """Regression: W_1 (read by no later statement) and P_1 had one workspace array, so
    the copy of P_1 overwrote W_1 before z_1 = X W_1 + b_1 read it.  The in-place value
    must equal the printed statements' (``loss``) on a fused softmax with projections."""
    _, mod = render("64,24+proj,ln,16+proj,10", tmp_path, "proj_softmax", "softmax")
    params = mod.init_params(seed=0)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((32, 64)), np.eye(10)[rng.integers(0, 10, 32)]
    value, _ = mod.backprop(params, x, y)
    assert np.isclose(value, mod.loss(params, x, y, training=True), rtol=1e-12)


def test_out_and_the_plain_call_agree_bit_for_bit_and_move_the_statistics_alike(wide):
    network, mod = wide
    params = mod.init_params(seed=3)
    x, y = inputs(mod, np.float64, m=32)
    masks = given_masks(network, 32)
    plain_state, out_state = mod.init_state(), mod.init_state()
    value, grads = mod.backprop(params, x, y, state=plain_state, masks=masks)
    out = [tuple(np.empty_like(p) for p in pair) for pair in params]
    again, written = mod.backprop(params, x, y, out, state=out_state, masks=masks)
    assert value == again and all(
        w is o for pw, po in zip(written, out, strict=True) for w, o in zip(pw, po, strict=True)
    )
    for pair, other in zip(grads, out, strict=True):
        for g, o in zip(pair, other, strict=True):
            assert np.array_equal(g, o)
    for name in plain_state:
        assert np.array_equal(plain_state[name], out_state[name])
        assert not np.array_equal(plain_state[name], mod.init_state()[name])


def test_a_mask_off_zero_or_one_by_a_hair_is_refused(wide):
    """The in-place check is exact: 1e-300 is not 0, 1 + 2⁻⁵² is not 1."""
    network, mod = wide
    params = mod.init_params(seed=1)
    x, y = inputs(mod, np.float64, m=4)
    for bad in (1e-300, 1 + 2**-52):
        masks = given_masks(network, 4)
        (layer,) = masks
        masks[layer][1, 2] = bad
        with pytest.raises(ValueError, match="0 and 1 only"):
            mod.backprop(params, x, y, state=mod.init_state(), masks=masks)


# --- threads --------------------------------------------------------------------


def two_callers(mod, network):
    params = mod.init_params(seed=4)
    data = [inputs(mod, np.float64, seed=s, m=64) for s in (1, 2)]
    masks = given_masks(network, 64)
    expected = [mod.backprop(params, x, y, masks=masks, update_state=False) for x, y in data]
    calls = [
        lambda x=x, y=y: mod.backprop(params, x, y, masks=masks, update_state=False)
        for x, y in data
    ]
    return calls, expected


def test_two_threads_get_correct_results(wide):
    network, mod = wide
    calls, expected = two_callers(mod, network)
    results = run_concurrently(calls, rounds=15)
    assert all(all_equal(results[k], expected[k]) for k in range(2))


def test_the_thread_check_catches_a_shared_workspace(wide, monkeypatch):
    """Negative control on the real module: one workspace for both threads is caught
    (the race is left to the scheduler: up to three tries)."""
    network, mod = wide
    calls, expected = two_callers(mod, network)
    shared = mod._take_workspace(64, np.dtype(np.float64))
    monkeypatch.setattr(mod, "_take_workspace", lambda m, dtype: shared)
    for _ in range(3):
        results = run_concurrently(calls, rounds=15)
        if not all(all_equal(results[k], expected[k]) for k in range(2)):
            return
    pytest.fail("two threads sharing one workspace went unnoticed")
