"""The numpy module's static runtime: checks, params files, workspaces and ``NN``.

Every generated module includes the sections of this file verbatim (each
from its ``# ---- runtime: <name> ----`` marker to the next), interleaved
with the code printed for its network.  Above the first marker are
stand-ins for what the template prints (``SIZES``, ``forward``, ...), with
the same signatures, so that this file can be linted and type-checked on its
own; the tests exercise the code through generated modules.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import DTypeLike, NDArray

Array = NDArray[np.floating]
Params = list[tuple[Array, Array]]
SIZES: tuple[int, ...] = (1, 1)
LOSS: str = "l2"
_WORKSPACE_WIDTHS: tuple[int, ...] = (1,)
_CONSTANTS: tuple[float, ...] = (1.0,)
_ACTIVATION_NAMES: tuple[str, ...] = ("tanh",)


def _diagnose_params(params: Params) -> np.dtype[np.floating]:
    """Stand-in: the generated module's step-by-step check of ``params``."""
    raise NotImplementedError


def forward(params: Params, x: Array) -> Array:
    """Stand-in: the generated module's forward pass."""
    raise NotImplementedError


def backprop(
    params: Params, x: Array, y: Array, out: Params | None = None, *, check_finite: bool = False
) -> tuple[float, Params]:
    """Stand-in: the generated module's derived backprop."""
    raise NotImplementedError


# ---- runtime: checks ----
def init_params(seed: int | None = None, dtype: DTypeLike = np.float64) -> Params:
    """Weights drawn from N(0, 1/n_{l-1}), biases zero, in layer order."""
    kind = np.dtype(dtype)
    if kind not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {kind}")
    rng = np.random.default_rng(seed)
    params = []
    for layer in range(1, len(SIZES)):
        n_in, n_out = SIZES[layer - 1], SIZES[layer]
        w = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(kind)
        params.append((w, np.zeros((1, n_out), dtype=kind)))
    return params


def _check_params(params: Params) -> np.dtype[np.floating]:
    """The params' common dtype, after checking their count, shapes and dtypes.

    The common case is one quick pass; anything unexpected goes to the
    step-by-step checks, which say exactly what is wrong.
    """
    try:
        dtype = params[0][0].dtype
        if (
            len(params) == len(_SHAPES)
            and (dtype == np.float64 or dtype == np.float32)
            and all(
                type(w) is np.ndarray
                and type(b) is np.ndarray
                and w.shape == w_shape
                and b.shape == b_shape
                and w.dtype == dtype
                and b.dtype == dtype
                for (w, b), (w_shape, b_shape) in zip(params, _SHAPES, strict=True)
            )
        ):
            return dtype
    except (AttributeError, IndexError, TypeError, ValueError):
        pass
    return _diagnose_params(params)


# ---- runtime: arrays ----
_PLAIN = (np.ndarray, np.memmap)
"""Array types taken as they are: a memmap only says where the numbers live."""


def _refuse_subclass(name: str, arr: np.ndarray) -> None:
    """Subclasses change what operations mean (a mask ignored, ``*`` as a matrix product)."""
    kind = type(arr)
    if kind not in _PLAIN:
        raise TypeError(
            f"{name} is a {kind.__module__}.{kind.__name__}, whose semantics this module "
            "does not follow; pass a plain numpy array (np.asarray, or .filled() for a masked one)"
        )


def _as_batch(name: str, arr: Array, width: int, dtype: np.dtype[np.floating]) -> Array:
    """``arr`` as an (m, width) array of ``dtype``; a 1-d example becomes one row."""
    if type(arr) is np.ndarray and arr.dtype == dtype and arr.ndim == 2 and arr.shape[1] == width:
        return arr
    if isinstance(arr, np.ndarray):
        _refuse_subclass(name, arr)
    arr = np.asarray(arr)
    if arr.dtype != dtype:
        if arr.dtype.kind in "iub":
            arr = arr.astype(dtype)
        else:
            raise ValueError(f"{name} has dtype {arr.dtype} but params are {dtype}")
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] != width:
        raise ValueError(f"{name} must have shape (m, {width}) or ({width},), got {arr.shape}")
    return arr


# ---- runtime: params_io ----
def _check_finite(params: Params, x: Array, y: Array) -> None:
    """Raise if any input holds NaN or inf (only with ``check_finite=True``)."""
    named = [("x", x), ("y", y)]
    for layer, (w, b) in enumerate(params, start=1):
        named += [(f"W{layer}", w), (f"b{layer}", b)]
    for name, arr in named:
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or inf (check_finite=True)")


def save_params(path: str, params: Params) -> None:
    """Write ``params`` to an .npz archive (arrays only, no pickles)."""
    _check_params(params)
    arrays = {}
    for layer, (w, b) in enumerate(params, start=1):
        arrays[f"W{layer}"], arrays[f"b{layer}"] = w, b
    # numpy's stubs match **arrays against savez's allow_pickle: bool as well
    np.savez(path, sizes=np.array(SIZES, dtype=np.int64), **arrays)  # type: ignore[arg-type]


def load_params(path: str) -> Params:
    """Read params written by ``save_params``; anything else is one ``ValueError``.

    Every member's header (shape, dtype) is checked before its data is read,
    so a hostile file costs no more memory or time than a valid one.
    """
    try:
        with open(path, "rb") as handle:
            is_zip = handle.read(4) == b"PK\x03\x04"
    except OSError as err:
        raise ValueError(f"cannot read params from {path!r}: {err}") from err
    if not is_zip:
        raise ValueError(f"cannot read params from {path!r}: not an .npz archive")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return _read_params(archive, path)
    except ValueError as err:
        if str(err).startswith("cannot read params"):
            raise
        raise ValueError(f"cannot read params from {path!r}: {err}") from err
    except Exception as err:  # a damaged zip or deflate stream, a short read: all one error
        raise ValueError(f"cannot read params from {path!r}: {type(err).__name__}: {err}") from err


def _read_params(archive: np.lib.npyio.NpzFile, path: str) -> Params:
    """The params in ``archive``, each member's header checked before its data is read."""
    names = ["sizes", *(f"{kind}{layer}" for layer in range(1, len(SIZES)) for kind in "Wb")]
    missing = [name for name in names if name not in archive.files]
    if missing:
        raise ValueError(
            f"cannot read params from {path!r}: it lacks {', '.join(missing)}; "
            "not params of this network"
        )
    headers = {name: _member_header(archive, name) for name in names}
    shape, dtype = headers.pop("sizes")
    if shape != (len(SIZES),) or dtype.kind not in "iu":
        raise ValueError(
            f"cannot read params from {path!r}: sizes must be {len(SIZES)} integers, "
            f"got {dtype} of shape {shape}"
        )
    sizes = tuple(int(n) for n in archive["sizes"])
    if sizes != SIZES:
        raise ValueError(
            f"cannot read params from {path!r}: it holds params for widths {sizes}, "
            f"this module is {SIZES}"
        )
    first = headers["W1"][1]
    for (name, (shape, dtype)), expected in zip(headers.items(), _flat_shapes(), strict=True):
        if shape != expected or dtype not in (np.float32, np.float64) or dtype != first:
            raise ValueError(
                f"cannot read params from {path!r}: {name} must be float32 or float64 "
                f"(as W1) of shape {expected}, got {dtype} of shape {shape}"
            )
    return [(archive[f"W{layer}"], archive[f"b{layer}"]) for layer in range(1, len(SIZES))]


# ---- runtime: npy_headers ----
def _member_header(archive: np.lib.npyio.NpzFile, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from the .npy header of ``name``, without reading its data."""
    assert archive.zip is not None  # an open NpzFile
    with archive.zip.open(f"{name}.npy") as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise ValueError(f"{name} has .npy format version {version}, expected 1.0 or 2.0")
    return shape, dtype


def _flat_shapes() -> list[tuple[int, ...]]:
    """W1's shape, b1's, W2's, ... in the order ``load_params`` checks them."""
    return [shape for pair in _SHAPES for shape in pair]


# ---- runtime: workspace_pool ----
Workspace = tuple[tuple[int, np.dtype], tuple[Array, ...], bool]
"""((m, dtype), the arrays ``backprop`` unpacks (see ``_take_workspace``), whether to keep it
for the next call)."""

_SPARE: list[Workspace] = []
"""Workspaces not in use.  ``list.pop`` and ``append`` are atomic, so two
threads calling ``backprop`` at once each hold their own."""

_MAX_SPARES = 4
"""Spare workspaces kept at most (one per thread that calls at the same time)."""

_MAX_KEPT_BYTES = 32 * 2**20
"""A workspace larger than this is dropped after the call: a batch that big
costs far more to compute than to allocate."""


def release_workspaces() -> None:
    """Free the spare workspaces ``backprop`` keeps between calls."""
    _SPARE.clear()


# ---- runtime: workspace ----
def _take_workspace(m: int, dtype: np.dtype) -> Workspace:
    """A workspace for m rows of ``dtype``: a spare one if it fits, else a new one.

    Its arrays: a 1 x m row of ones, one m x n buffer per width of ``_WORKSPACE_WIDTHS``,
    then each of ``_CONSTANTS`` as a 0-d array."""
    try:
        ws = _SPARE.pop()
    except IndexError:
        ws = None
    if ws is None or ws[0] != (m, dtype):
        buffers = [np.empty((m, n), dtype) for n in _WORKSPACE_WIDTHS]
        constants = [np.array(value, dtype) for value in _CONSTANTS]
        keep = m * (1 + sum(_WORKSPACE_WIDTHS)) * dtype.itemsize <= _MAX_KEPT_BYTES
        ws = ((m, dtype), (np.ones((1, m), dtype), *buffers, *constants), keep)
    return ws


def _check_out(out: Params, dtype: np.dtype, params: Params, x: Array, y: Array) -> None:
    """Refuse, before anything is written, an ``out`` that backprop cannot fill correctly.

    Each array must be a writeable, C-contiguous plain ndarray of ``dtype``
    shaped like its parameter, and no array may overlap another output or
    an input: writing one gradient would change what the others are
    computed from.
    """
    try:
        ok = len(out) == len(_SHAPES) and all(
            type(w) is np.ndarray
            and type(b) is np.ndarray
            and w.shape == w_shape
            and b.shape == b_shape
            and w.dtype == dtype
            and b.dtype == dtype
            and w.flags.c_contiguous
            and b.flags.c_contiguous
            and w.flags.writeable
            and b.flags.writeable
            for (w, b), (w_shape, b_shape) in zip(out, _SHAPES, strict=True)
        )
    except (AttributeError, TypeError, ValueError):
        ok = False
    if not ok:
        _diagnose_out(out, dtype)
    if not _surely_apart(out, params, x, y):
        _diagnose_overlap(out, params, x, y)


def _diagnose_out(out: Params, dtype: np.dtype) -> None:
    """The first problem with ``out``, named, as an error."""
    if not isinstance(out, (list, tuple)) or len(out) != len(_SHAPES):
        raise ValueError(f"out must be a list of {len(_SHAPES)} (dW, db) pairs like params")
    for layer, pair in enumerate(out, start=1):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError(f"out[{layer - 1}] must be a (dW{layer}, db{layer}) pair")
        names = (f"dW{layer}", f"db{layer}")
        for name, arr, shape in zip(names, pair, _SHAPES[layer - 1], strict=True):
            if type(arr) is not np.ndarray:
                raise ValueError(f"out's {name} must be a numpy array, got {type(arr).__name__}")
            if arr.shape != shape or arr.dtype != dtype:
                raise ValueError(
                    f"out's {name} must be {dtype} of shape {shape}, got {arr.dtype} {arr.shape}"
                )
            if not arr.flags.c_contiguous:
                raise ValueError(f"out's {name} must be C-contiguous (np.ascontiguousarray)")
            if not arr.flags.writeable:
                raise ValueError(f"out's {name} is read-only")


def _surely_apart(out: Params, params: Params, x: Array, y: Array) -> bool:
    """True when no output can share memory with another array: the common case, fast.

    Outputs that own their memory are disjoint from each other; an input
    overlaps one only if it is that array or a view whose base it is.
    Anything else (views as outputs, inputs viewing other buffers) is left
    to ``_diagnose_overlap``.
    """
    owners = set()
    for w, b in out:
        if w.base is not None or b.base is not None:
            return False
        owners.add(id(w))
        owners.add(id(b))
    if len(owners) != 2 * len(out):
        return False
    inputs = [x, y]
    for w, b in params:
        inputs += (w, b)
    for arr in inputs:
        base = arr.base
        if id(arr) in owners or (
            base is not None and (id(base) in owners or getattr(base, "base", 0) is not None)
        ):
            return False
    return True


def _diagnose_overlap(out: Params, params: Params, x: Array, y: Array) -> None:
    """Raise if an output may share memory with another output or an input.

    ``np.may_share_memory`` compares memory bounds: exact for the outputs,
    which are C-contiguous; for a strided input it may refuse arrays that
    interleave without touching, never accept ones that overlap.
    """
    outputs = [(f"dW{k}", w) for k, (w, _) in enumerate(out, 1)]
    outputs += [(f"db{k}", b) for k, (_, b) in enumerate(out, 1)]
    inputs = [("x", x), ("y", y)]
    inputs += [(f"W{k}", w) for k, (w, _) in enumerate(params, 1)]
    inputs += [(f"b{k}", b) for k, (_, b) in enumerate(params, 1)]
    for i, (name, arr) in enumerate(outputs):
        for other, arr2 in outputs[i + 1 :] + inputs:
            if np.may_share_memory(arr, arr2):
                raise ValueError(
                    f"out's {name} shares memory with {other}; pass separate gradient arrays"
                )


_SHAPES = tuple(((SIZES[k], SIZES[k + 1]), (1, SIZES[k + 1])) for k in range(len(SIZES) - 1))
"""The shapes of (W_l, b_l), in layer order."""


class NN:
    """A drop-in for the seed's ``NN`` class, with the derived backprop.

    ``NN(sizes, activation, loss)`` as the seed writes it; each may be left
    out, and each given one must describe this module's network: ``sizes``
    its widths, ``activation`` and ``loss`` its catalog names, or objects
    whose ``name`` (else ``__name__``, else class name) is that name, in any
    case.  Anything else is a ``ValueError`` naming both: this module
    computes one network only.  ``w`` and ``b`` are lists in layer order;
    ``backprop`` returns ``(w_grad, b_grad)`` last layer first, as the seed's.
    """

    def __init__(
        self,
        sizes: list[int] | tuple[int, ...] | None = None,
        activation: object = None,
        loss: object = None,
        *,
        seed: int | None = None,
        dtype: DTypeLike = np.float64,
    ) -> None:
        if sizes is not None and _widths(sizes) != SIZES:
            raise ValueError(
                f"NN was given sizes {sizes!r}, but this module is the network {list(SIZES)}; "
                "generate one for those widths with python -m derive --layers"
            )
        if activation is not None and _name_of(activation) not in _ACTIVATION_NAMES:
            raise ValueError(
                f"NN was given activation {_name_of(activation)!r}, but this module uses "
                f"{' or '.join(repr(n) for n in _ACTIVATION_NAMES)}"
            )
        if loss is not None and _name_of(loss) != LOSS:
            raise ValueError(f"NN was given loss {_name_of(loss)!r}, but this module uses {LOSS!r}")
        self.sizes = list(SIZES)
        self.num_layers = len(SIZES)
        self.x_dim = SIZES[0]
        self.activ = activation if activation is not None else _ACTIVATION_NAMES[0]
        self.loss = loss if loss is not None else LOSS
        params = init_params(seed, dtype)
        self.w = [w for w, _ in params]
        self.b = [b for _, b in params]

    def forward_pass(self, input: Array, classify: bool = False) -> NDArray[np.generic]:
        """Ŷ for ``input``; with ``classify``, each row's class instead.

        The class is the index of the largest output, or for a single sigmoid
        output whether it exceeds 1/2.
        """
        y_hat = forward(list(zip(self.w, self.b, strict=True)), input)
        if not classify:
            return y_hat
        if SIZES[-1] > 1:
            labels: NDArray[np.intp] = np.argmax(y_hat, axis=1)
            return labels
        if LOSS == "sigmoid_binary_cross_entropy":
            return (y_hat[:, 0] > 0.5).astype(np.intp)
        raise ValueError(f"classify needs several outputs or a sigmoid output; this is {LOSS}")

    def backprop(self, x: Array, y: Array) -> tuple[list[Array], list[Array]]:
        _, grads = backprop(list(zip(self.w, self.b, strict=True)), x, y)
        return [dw for dw, _ in reversed(grads)], [db for _, db in reversed(grads)]


# ---- runtime: names ----
def _name_of(thing: object) -> str:
    """A name to compare: the string itself, else ``name``, ``__name__`` or the class name."""
    if isinstance(thing, str):
        return thing
    if isinstance(thing, (list, tuple)):
        return ",".join(_name_of(item) for item in thing)
    for attribute in ("name", "__name__"):
        name = getattr(thing, attribute, None)
        if isinstance(name, str):
            return name.lower()
    return type(thing).__name__.lower()


def _widths(sizes: object) -> tuple[int, ...] | None:
    """``sizes`` as a tuple of ints, or None if it is not a sequence of integers."""
    if not isinstance(sizes, (list, tuple)) or not all(
        isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in sizes
    ):
        return None
    return tuple(int(n) for n in sizes)
