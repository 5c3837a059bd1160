"""The generated module's promises at its boundary (issue 8, items 12-20).

Each test builds the hostile input the issue describes and requires either
the right answer or one clear error raised before any work.
"""

from __future__ import annotations

import io
import threading
import tracemalloc
import zipfile

import numpy as np
import pytest
from helpers import central_differences, generate

# --- modules, generated once per file -------------------------------------------


@pytest.fixture(scope="module")
def tanh_l2(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("l2"), "5,3,7,2")


@pytest.fixture(scope="module")
def one_to_five(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("one"), "1,5")


@pytest.fixture(scope="module")
def mean_loss(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("mse"), "4,3", loss="mse")


@pytest.fixture(scope="module")
def softmax(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("sm"), "4,6,3", "relu", "softmax_cross_entropy")


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("bce"), "4,5,1", loss="sigmoid_binary_cross_entropy")


def _data(module, m=4, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    params = module.init_params(seed=seed, dtype=dtype)
    for _, b in params:
        b += rng.standard_normal(b.shape).astype(dtype)
    x = rng.standard_normal((m, module.SIZES[0])).astype(dtype)
    y = rng.uniform(0, 1, (m, module.SIZES[-1])).astype(dtype)
    return params, x, y


def _copies(arrays):
    return [(w.copy(), b.copy()) for w, b in arrays]


def _assert_same(got, expected, **tolerance):
    for (w, b), (ew, eb) in zip(got, expected, strict=True):
        np.testing.assert_allclose(w, ew, **tolerance)
        np.testing.assert_allclose(b, eb, **tolerance)


def _numeric(module, params, x, y):
    """Central differences of ``module.loss`` by every parameter entry."""
    return central_differences(lambda p: module.loss(p, x, y), params)


# --- 12: out= that aliases inputs or other outputs ---------------------------------


def test_out_aliasing_the_params_is_refused_and_nothing_changes(tanh_l2):
    params, x, y = _data(tanh_l2)
    before = _copies(params)
    with pytest.raises(ValueError, match="out's dW1 shares memory with W1"):
        tanh_l2.backprop(params, x, y, out=params)
    _assert_same(params, before, rtol=0, atol=0)


def test_one_array_as_two_outputs_is_refused(one_to_five):
    params, x, y = _data(one_to_five)
    shared = np.zeros((1, 5))
    with pytest.raises(ValueError, match="dW1 shares memory with db1"):
        one_to_five.backprop(params, x, y, out=[(shared, shared)])
    assert not shared.any()


def test_an_input_reading_an_output_through_a_buffer_is_refused(tanh_l2):
    """x made by np.frombuffer over dW2's memory: its base is a memoryview, not dW2,
    so only the step-by-step overlap check can see it; the fast check must not pass it."""
    params, x, y = _data(tanh_l2)
    out = [(np.zeros_like(w), np.zeros_like(b)) for w, b in params]
    dw2 = out[1][0]  # 3 x 7: room for x's 4 x 5
    aliased = np.frombuffer(memoryview(dw2), dtype=dw2.dtype)[: x.size].reshape(x.shape)
    aliased[...] = x
    with pytest.raises(ValueError, match="out's dW2 shares memory with x"):
        tanh_l2.backprop(params, aliased, y, out=out)
    np.testing.assert_array_equal(aliased, x)  # nothing was written


def test_partly_overlapping_outputs_are_refused(tanh_l2):
    params, x, y = _data(tanh_l2)
    shapes = [(w.shape, b.shape) for w, b in params]
    sizes = [w.size + b.size for w, b in params]
    buffer = np.zeros(sum(sizes) + 1)

    def carve(offsets):
        out = []
        for (ws, bs), start in zip(shapes, offsets, strict=True):
            w = buffer[start : start + np.prod(ws)].reshape(ws)
            b = buffer[start + w.size : start + w.size + np.prod(bs)].reshape(bs)
            out.append((w, b))
        return out

    apart = carve(np.cumsum([0, *sizes[:-1]]))
    _, grads = tanh_l2.backprop(params, x, y, out=apart)  # views of one buffer, disjoint
    _, expected = tanh_l2.backprop(params, x, y)
    _assert_same(grads, expected, rtol=1e-12)
    overlapping = carve([0, sizes[0] - 1, sizes[0] + sizes[1]])  # one shared entry
    with pytest.raises(ValueError, match="out's dW2 shares memory with db1"):
        tanh_l2.backprop(params, x, y, out=overlapping)


def test_x_viewing_an_output_is_refused(tanh_l2):
    params, _, y = _data(tanh_l2, m=3)
    out = [(np.zeros_like(w), np.zeros_like(b)) for w, b in params]
    x = out[0][0][:, :3].T  # (3, 5): a view into dW1
    with pytest.raises(ValueError, match="out's dW1 shares memory with x"):
        tanh_l2.backprop(params, x, y, out=out)
    assert not any(w.any() or b.any() for w, b in out)


# --- 13: any memory layout ---------------------------------------------------------


def test_fortran_and_transposed_weights_give_the_same_results(tanh_l2, tmp_path):
    params, x, y = _data(tanh_l2, m=6)
    value, expected = tanh_l2.backprop(params, x, y)
    fortran = [(np.asfortranarray(w), np.asfortranarray(b)) for w, b in params]
    torch_like = [(np.ascontiguousarray(w.T).T, b) for w, b in params]  # weight.numpy().T
    assert not fortran[0][0].flags.c_contiguous and not torch_like[1][0].flags.c_contiguous
    tanh_l2.save_params(str(tmp_path / "f.npz"), fortran)
    loaded = tanh_l2.load_params(str(tmp_path / "f.npz"))
    for layout in (fortran, torch_like, loaded):
        got_value, grads = tanh_l2.backprop(layout, x, y)
        assert got_value == pytest.approx(value, rel=1e-12)
        _assert_same(grads, expected, rtol=1e-12)
        assert all(dw.flags.c_contiguous for dw, _ in grads)
        np.testing.assert_allclose(tanh_l2.forward(layout, x), tanh_l2.forward(params, x))


def test_non_contiguous_x_and_y_give_the_same_results(tanh_l2):
    params, x, y = _data(tanh_l2, m=6)
    value, expected = tanh_l2.backprop(params, x, y)
    x_strided = np.zeros((12, 10))
    x_strided[::2, ::2] = x
    y_fortran = np.asfortranarray(y)
    got_value, grads = tanh_l2.backprop(params, x_strided[::2, ::2], y_fortran)
    assert got_value == pytest.approx(value, rel=1e-12)
    _assert_same(grads, expected, rtol=1e-12)


# --- 14: out= checked completely before anything is written ------------------------


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda out: out[0][0].setflags(write=False), "out's dW1 is read-only"),
        (lambda out: out[-1][1].setflags(write=False), "out's db3 is read-only"),
    ],
)
def test_a_read_only_output_is_refused_before_any_write(tanh_l2, spoil, message):
    params, x, y = _data(tanh_l2)
    out = [(np.full_like(w, 7.0), np.full_like(b, 7.0)) for w, b in params]
    spoil(out)
    with pytest.raises(ValueError, match=message):
        tanh_l2.backprop(params, x, y, out=out)
    assert all((w == 7.0).all() and (b == 7.0).all() for w, b in out)


def test_a_wrong_last_output_leaves_the_others_untouched(tanh_l2):
    params, x, y = _data(tanh_l2)
    out = [(np.full_like(w, 7.0), np.full_like(b, 7.0)) for w, b in params]
    out[-1] = (out[-1][0], np.full((1, 2), 7.0, dtype=np.float32))
    with pytest.raises(ValueError, match="out's db3 must be float64"):
        tanh_l2.backprop(params, x, y, out=out)
    assert all((w == 7.0).all() and (b == 7.0).all() for w, b in out)


# --- 15: empty batches and ndarray subclasses ----------------------------------


def test_empty_batch_with_a_mean_loss_is_refused(mean_loss):
    params = mean_loss.init_params(seed=0)
    x, y = np.empty((0, 4)), np.empty((0, 3))
    with pytest.raises(ValueError, match="mean over the batch, undefined for m = 0"):
        mean_loss.backprop(params, x, y)
    with pytest.raises(ValueError, match="undefined for m = 0"):
        mean_loss.loss(params, x, y)


def test_empty_batch_with_a_summed_loss_is_zero(tanh_l2):
    params = tanh_l2.init_params(seed=0)
    value, grads = tanh_l2.backprop(params, np.empty((0, 5)), np.empty((0, 2)))
    assert value == 0.0 and tanh_l2.loss(params, np.empty((0, 5)), np.empty((0, 2))) == 0.0
    assert all(not dw.any() and not db.any() for dw, db in grads)


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
def test_masked_arrays_and_matrices_are_refused(tanh_l2):
    params, x, y = _data(tanh_l2)
    masked = np.ma.masked_array(x, mask=np.zeros_like(x, dtype=bool))
    masked.mask[0, 0] = True
    with pytest.raises(TypeError, match=r"x is a numpy\.ma\..*MaskedArray"):
        tanh_l2.backprop(params, masked, y)
    with pytest.raises(TypeError, match=r"y is a numpy\..*matrix"):
        tanh_l2.backprop(params, x, np.asmatrix(y))
    as_matrix = [(np.asmatrix(w), b) for w, b in params]
    with pytest.raises(TypeError, match=r"W1 is a numpy\..*matrix"):
        tanh_l2.forward(as_matrix, x)


def test_memmap_params_are_plain_arrays(tanh_l2, tmp_path):
    params, x, y = _data(tanh_l2)
    mapped = []
    for k, (w, b) in enumerate(params):
        pair = []
        for name, arr in ((f"w{k}", w), (f"b{k}", b)):
            mm = np.memmap(tmp_path / name, dtype=arr.dtype, mode="w+", shape=arr.shape)
            mm[...] = arr
            pair.append(mm)
        mapped.append(tuple(pair))
    value, expected = tanh_l2.backprop(params, x, y)
    got_value, grads = tanh_l2.backprop(mapped, x, y)
    assert got_value == value
    _assert_same(grads, expected, rtol=0, atol=0)
    assert all(type(dw) is np.ndarray and type(db) is np.ndarray for dw, db in grads)


# --- 16: what the fused gradients assume of the targets ---------------------------


def test_softmax_targets_whose_rows_do_not_sum_to_one_are_refused(softmax):
    params, x, _ = _data(softmax)
    y = 2.0 * np.eye(3)[[0, 1, 2, 0]]
    with pytest.raises(ValueError, match=r"row 0 of y sums to 2\.0, not 1"):
        softmax.backprop(params, x, y)
    with pytest.raises(ValueError, match=r"row 0 of y sums to 2\.0"):
        softmax.loss(params, x, y)
    y = np.eye(3)[[0, 1, 2, 0]]
    y[2] = [0.5, 0.5, 1e-3]  # off by 1e-3 on one row
    with pytest.raises(ValueError, match=r"row 2 of y sums to 1\.001"):
        softmax.backprop(params, x, y)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_softmax_targets_that_sum_to_one_after_rounding_are_accepted(softmax, dtype):
    params, x, _ = _data(softmax, dtype=dtype)
    rng = np.random.default_rng(5)
    y = rng.dirichlet(np.ones(3), size=4).astype(dtype)  # each row rounded entry by entry
    _, grads = softmax.backprop(params, x, y)
    if dtype == np.float64:
        _assert_same(grads, _numeric(softmax, params, x, y), rtol=1e-6, atol=1e-7)


def test_binary_targets_outside_the_unit_interval_are_refused(binary):
    params, x, _ = _data(binary)
    y = np.array([[0.0], [1.0], [1.5], [0.25]])
    with pytest.raises(ValueError, match=r"y\[2, 0\] = 1.5 is outside \[0, 1\]"):
        binary.backprop(params, x, y)
    y[2, 0] = -0.25
    with pytest.raises(ValueError, match=r"y\[2, 0\] = -0.25 is outside"):
        binary.loss(params, x, y)
    y[2, 0] = 0.75
    _, grads = binary.backprop(params, x, y)
    _assert_same(grads, _numeric(binary, params, x, y), rtol=1e-6, atol=1e-7)


def test_nan_targets_still_propagate(softmax, binary):
    for module in (softmax, binary):
        params, x, y = _data(module)
        if module is softmax:
            y = np.eye(3)[[0, 1, 2, 0]]
        y[0, 0] = np.nan
        value, _ = module.backprop(params, x, y)
        assert np.isnan(value)


# --- 17: load_params reads headers before data -----------------------------------


def _member(array=None, header=None, data=b""):
    """The bytes of a .npy member: an array, or a hand-made header and data."""
    stream = io.BytesIO()
    if header is None:
        np.lib.format.write_array(stream, np.asanyarray(array), allow_pickle=False)
    else:
        np.lib.format.write_array_header_1_0(stream, header)
        stream.write(data)
    return stream.getvalue()


def _npz(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, content in members.items():
            archive.writestr(f"{name}.npy", content)
    return path


def _valid_members(module):
    members = {"sizes": _member(np.array(module.SIZES, dtype=np.int64))}
    for layer, (w, b) in enumerate(module.init_params(seed=0), start=1):
        members[f"W{layer}"], members[f"b{layer}"] = _member(w), _member(b)
    return members


def _huge(shape):
    return _member(header={"descr": "<f8", "fortran_order": False, "shape": shape}, data=b"\0" * 64)


BAD_MEMBERS = {
    "W1 declares 2**29 float64": ("W1", _huge((2**29,)), "W1 must be float32 or float64"),
    "W1 declares 10**12 entries": (
        "W1",
        _huge((10**12,)),
        r"got float64 of shape \(1000000000000,\)",
    ),
    "W1 of the right shape, too short": ("W1", _huge((5, 3)), "cannot read params"),
    "W2 of integers": ("W2", _member(np.zeros((3, 7), dtype=np.int64)), "got int64"),
    "b1 of the wrong shape": ("b1", _member(np.zeros((3,))), r"b1 must be .* of shape \(1, 3\)"),
    "sizes 0-d": (
        "sizes",
        _member(np.int64(5)),
        r"sizes must be 4 integers, got int64 of shape \(\)",
    ),
    "sizes 2-d": ("sizes", _member(np.array([[5, 3, 7, 2]])), r"sizes must be 4 integers"),
    "sizes as datetimes": (
        "sizes",
        _member(np.array([5, 3, 7, 2], dtype="datetime64[s]")),
        "sizes must be 4 integers",
    ),
    "sizes as strings": ("sizes", _member(np.array(["5", "3", "7", "2"])), "sizes must be"),
    "sizes as floats": ("sizes", _member(np.array([5.0, 3.0, 7.9, 2.0])), "got float64"),
    "sizes of another network": (
        "sizes",
        _member(np.array([5, 3, 7, 9])),
        r"widths \(5, 3, 7, 9\)",
    ),
    "W1 of pickled objects": (
        "W1",
        _member(header={"descr": "|O", "fortran_order": False, "shape": (5, 3)}),
        "got object",
    ),
}


@pytest.mark.parametrize("case", list(BAD_MEMBERS))
def test_each_bad_member_is_one_value_error(tanh_l2, tmp_path, case):
    name, content, message = BAD_MEMBERS[case]
    members = _valid_members(tanh_l2) | {name: content}
    path = _npz(tmp_path / "bad.npz", members)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=message) as raised:
            tanh_l2.load_params(str(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "\n" not in str(raised.value) and str(raised.value).startswith("cannot read params")
    assert peak < 2**20  # the declared sizes are never allocated


def test_a_valid_hand_made_file_loads(tanh_l2, tmp_path):
    """Positive control for the cases above: the same construction, unspoiled, loads."""
    for compression in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        path = _npz(tmp_path / f"ok{compression}.npz", _valid_members(tanh_l2), compression)
        _assert_same(tanh_l2.load_params(str(path)), tanh_l2.init_params(seed=0), rtol=0, atol=0)


def test_damaged_archives_are_one_value_error(tanh_l2, tmp_path):
    stored = _npz(tmp_path / "stored.npz", _valid_members(tanh_l2))
    deflated = _npz(tmp_path / "deflated.npz", _valid_members(tanh_l2), zipfile.ZIP_DEFLATED)
    raw = stored.read_bytes()
    at = raw.index(_valid_members(tanh_l2)["W2"][-8:])  # inside W2's data: a CRC mismatch
    damaged = {
        "flipped data byte": raw[:at] + bytes([raw[at] ^ 0xFF]) + raw[at + 1 :],
        "flipped directory byte": raw[:-30] + bytes([raw[-30] ^ 0xFF]) + raw[-29:],
        "truncated": raw[: len(raw) // 2],
    }
    packed = deflated.read_bytes()
    middle = len(packed) // 3
    damaged["corrupt deflate stream"] = packed[:middle] + b"\xff" * 16 + packed[middle + 16 :]
    for case, content in damaged.items():
        path = tmp_path / f"{case}.npz"
        path.write_bytes(content)
        with pytest.raises(ValueError, match="cannot read params") as raised:
            tanh_l2.load_params(str(path))
        assert "\n" not in str(raised.value), case


# --- 18: the workspace pool is bounded and can be freed -------------------------


def test_large_workspaces_are_not_kept(tanh_l2, monkeypatch):
    params, x, y = _data(tanh_l2, m=64)
    tanh_l2.release_workspaces()
    tanh_l2.backprop(params, x[:1], y[:1])
    assert len(tanh_l2._SPARE) == 1  # a small one is kept for the next call
    monkeypatch.setattr(tanh_l2, "_MAX_KEPT_BYTES", 1000)
    tanh_l2.backprop(params, x, y)  # 64 rows x 41 widths x 8 bytes > 1000
    assert tanh_l2._SPARE == []


def test_at_most_a_few_spares_are_kept_across_threads(tanh_l2):
    params, x, y = _data(tanh_l2, m=8)
    tanh_l2.release_workspaces()
    barrier = threading.Barrier(12)

    def call():
        barrier.wait()
        for _ in range(20):
            tanh_l2.backprop(params, x, y)

    threads = [threading.Thread(target=call) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 1 <= len(tanh_l2._SPARE) <= tanh_l2._MAX_SPARES


def test_release_workspaces_frees_them_and_backprop_still_works(tanh_l2):
    params, x, y = _data(tanh_l2, m=5)
    _, expected = tanh_l2.backprop(params, x, y)
    assert tanh_l2._SPARE
    tanh_l2.release_workspaces()
    assert tanh_l2._SPARE == []
    _, grads = tanh_l2.backprop(params, x, y)
    _assert_same(grads, expected, rtol=0, atol=0)


# --- 19: loss() is a forward pass and the loss -----------------------------------


@pytest.mark.parametrize("which", ["tanh_l2", "mean_loss", "softmax", "binary"])
def test_loss_runs_no_backprop(which, request, monkeypatch):
    module = request.getfixturevalue(which)
    params, x, y = _data(module)
    if which == "softmax":
        y = np.eye(3)[[0, 1, 2, 0]]
    value, _ = module.backprop(params, x, y)

    def no_backprop(*args, **kwargs):
        raise AssertionError("loss() ran backprop")

    monkeypatch.setattr(module, "backprop", no_backprop)
    monkeypatch.setattr(module, "_take_workspace", no_backprop)
    assert module.loss(params, x, y) == pytest.approx(value, rel=1e-12)


# --- 20: NN accepts the seed's constructor, methods and attributes ----------------


@pytest.fixture(scope="module")
def seed_net(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("seed"), "20,50,10")


class Tanh:
    """An activation object as the seed passes one (fn and deriv)."""

    fn = staticmethod(np.tanh)

    @staticmethod
    def deriv(z):
        return 1 - np.tanh(z) ** 2


class Sigmoid:
    @staticmethod
    def fn(z):
        return 1 / (1 + np.exp(-z))


def test_nn_takes_the_seeds_arguments_and_has_its_attributes(seed_net):
    net = seed_net.NN([20, 50, 10], Tanh(), "l2", seed=1)
    assert (net.sizes, net.num_layers, net.x_dim) == ([20, 50, 10], 3, 20)
    assert isinstance(net.activ, Tanh) and net.loss == "l2"
    plain = seed_net.NN(seed=1)
    assert (plain.activ, plain.loss) == ("tanh", "l2")
    np.testing.assert_array_equal(net.w[0], plain.w[0])
    x = np.random.default_rng(0).standard_normal((6, 20))
    y_hat = net.forward_pass(x)
    np.testing.assert_array_equal(net.forward_pass(x, classify=True), y_hat.argmax(axis=1))
    assert seed_net.NN((20, 50, 10), "tanh", seed_net.LOSS).sizes == [20, 50, 10]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ([784, 100, 10],),
            r"sizes \[784, 100, 10\], but this module is the network \[20, 50, 10\]",
        ),
        (([20, 50],), r"sizes \[20, 50\]"),
        (([20.0, 50, 10],), r"sizes \[20.0, 50, 10\]"),
        (([20, 50, 10], "relu"), "activation 'relu', but this module uses 'tanh'"),
        (([20, 50, 10], Sigmoid()), "activation 'sigmoid'"),
        (([20, 50, 10], "tanh", "mse"), "loss 'mse', but this module uses 'l2'"),
    ],
)
def test_nn_refuses_a_network_it_does_not_compute(seed_net, args, message):
    with pytest.raises(ValueError, match=message):
        seed_net.NN(*args)


def test_nn_of_a_fused_loss_names_its_hidden_activation(softmax):
    net = softmax.NN([4, 6, 3], "relu", "softmax_cross_entropy")
    assert net.forward_pass(np.ones(4), classify=True).shape == (1,)
    assert softmax.NN([4, 6, 3], "relu,softmax").sizes == [4, 6, 3]
    with pytest.raises(ValueError, match="activation 'tanh', but this module uses 'relu'"):
        softmax.NN([4, 6, 3], "tanh")


def test_nn_classify_with_one_sigmoid_output(binary):
    net = binary.NN(seed=0)
    x = np.random.default_rng(1).standard_normal((5, 4))
    labels = net.forward_pass(x, classify=True)
    np.testing.assert_array_equal(labels, (net.forward_pass(x)[:, 0] > 0.5).astype(int))


@pytest.fixture(scope="module")
def layered(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("layered"), "5,3,bn,3+res,2")


def _valid_layered_members(module):
    members = {"sizes": _member(np.array(module.SIZES, dtype=np.int64))}
    for names, pair in zip(module._NAMES, module.init_params(seed=0), strict=True):
        members.update({name: _member(arr) for name, arr in zip(names, pair, strict=True)})
    members.update({name: _member(arr) for name, arr in module.init_state().items()})
    return members


@pytest.mark.parametrize(
    ("member", "message"),
    [("W1", "W1 must be float32 or float64"), ("running_var2", "running_var2 has shape")],
)
def test_a_layered_module_reads_headers_before_data(layered, tmp_path, member, message):
    """Layer-kind modules keep the dense loader's promise: declared sizes are never allocated."""
    members = _valid_layered_members(layered)
    assert member in members  # the name this case spoils exists
    path = _npz(tmp_path / "bad.npz", members | {member: _huge((2**29,))})
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=message) as raised:
            layered.load_params(str(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "\n" not in str(raised.value) and str(raised.value).startswith("cannot read params")
    assert peak < 2**20


def test_a_valid_hand_made_layered_file_loads(layered, tmp_path):
    """Positive control for the case above."""
    path = _npz(tmp_path / "ok.npz", _valid_layered_members(layered))
    _assert_same(layered.load_params(str(path)), layered.init_params(seed=0), rtol=0, atol=0)
