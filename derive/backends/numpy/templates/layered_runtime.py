"""The static runtime of a numpy module whose network holds layer kinds (norms, ...).

Included section by section (``# ---- layered: <name> ----``) by ``layered.py.jinja``;
above the first marker are stand-ins for what the template prints, so that this file
can be linted and type-checked on its own.  ``params`` holds one pair per layer in
layer order: (W_l, b_l) of a dense layer, (γ_l, β_l) of a normalization.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import DTypeLike, NDArray

Array = NDArray[np.floating]
Params = list[tuple[Array, Array]]
SIZES: tuple[int, ...] = (1, 1)
_NAMES: tuple[tuple[str, str], ...] = (("W1", "b1"),)
_SHAPES: tuple[tuple[tuple[int, int], tuple[int, int]], ...] = (((1, 1), (1, 1)),)
_NORMALIZES: tuple[bool, ...] = (False,)
_BATCH_NORMS: tuple[tuple[int, int], ...] = ()
_DROPOUTS: dict[int, tuple[int, float]] = {}
MOMENTUM = 0.1


def _refuse_subclass(name: str, arr: np.ndarray) -> None:
    """Stand-in: the numpy runtime's refusal of array subclasses."""
    raise NotImplementedError


def _member_header(archive: np.lib.npyio.NpzFile, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """Stand-in: the numpy runtime's .npy header reader (section ``npy_headers``)."""
    raise NotImplementedError


def _flat_shapes() -> list[tuple[int, ...]]:
    """Stand-in: the numpy runtime's flat list of parameter shapes (``npy_headers``)."""
    raise NotImplementedError


# ---- layered: params ----
def init_params(seed: int | None = None, dtype: DTypeLike = np.float64) -> Params:
    """Dense weights from N(0, 1/n_{l-1}) and zero biases; γ = 1, β = 0; in layer order."""
    kind = np.dtype(dtype)
    if kind not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {kind}")
    rng = np.random.default_rng(seed)
    params = []
    for (first, second), norm in zip(_SHAPES, _NORMALIZES, strict=True):
        if norm:
            params.append((np.ones(first, dtype=kind), np.zeros(second, dtype=kind)))
        else:
            w = (rng.standard_normal(first) / np.sqrt(first[0])).astype(kind)
            params.append((w, np.zeros(second, dtype=kind)))
    return params


def _check_params(params: Params) -> np.dtype[np.floating]:
    """The params' common dtype, after checking their count, shapes and dtypes."""
    if not isinstance(params, (list, tuple)) or len(params) != len(_SHAPES):
        raise ValueError(
            f"params must hold {len(_SHAPES)} pairs (one per layer), got {params!r:.80}"
        )
    dtype = None
    for names, pair, shapes in zip(_NAMES, params, _SHAPES, strict=True):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError(f"the entry of params for {names[0]}, {names[1]} must be a pair")
        for name, arr, shape in zip(names, pair, shapes, strict=True):
            if not isinstance(arr, np.ndarray):
                raise TypeError(f"{name} must be a numpy array, got {type(arr).__name__}")
            _refuse_subclass(name, arr)
            if arr.shape != shape:
                raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
            if arr.dtype not in (np.float32, np.float64):
                raise ValueError(f"{name} must be float32 or float64, got {arr.dtype}")
            if dtype is None:
                dtype = arr.dtype
            elif arr.dtype != dtype:
                raise ValueError(f"{name} has dtype {arr.dtype} but W1 has {dtype}; use one dtype")
    assert dtype is not None  # at least one layer
    return dtype


def _check_finite(params: Params, x: Array, y: Array) -> None:
    """Raise if any input holds NaN or inf (only with ``check_finite=True``)."""
    named = [("x", x), ("y", y)]
    for names, pair in zip(_NAMES, params, strict=True):
        named += list(zip(names, pair, strict=True))
    for name, arr in named:
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or inf (check_finite=True)")


# ---- layered: state ----
def init_state() -> dict[str, Array]:
    """Running statistics of every batch norm: mean 0 and variance 1 (float64), as PyTorch's."""
    state: dict[str, Array] = {}
    for layer, width in _BATCH_NORMS:
        state[f"running_mean{layer}"] = np.zeros((1, width))
        state[f"running_var{layer}"] = np.ones((1, width))
    return state


STATE: dict[str, Array] = init_state()
"""The running statistics ``backprop`` updates and ``forward`` reads when no ``state`` is given."""


def reset_state() -> None:
    """Set the module's running statistics back to mean 0, variance 1."""
    STATE.update(init_state())


def _running(state: dict[str, Array] | None, name: str, dtype: np.dtype) -> Array:
    """A running statistic as an array of ``dtype`` (stored in float64)."""
    chosen = STATE if state is None else state
    if name not in chosen:
        raise ValueError(f"state lacks {name}; make it with init_state()")
    return chosen[name].astype(dtype, copy=False)


def _update_running(
    state: dict[str, Array] | None, layer: int, mu: Array, v: Array, m: int
) -> None:
    """running ← (1 − MOMENTUM) running + MOMENTUM batch (PyTorch's convention); the batch
    variance enters unbiased, v m/(m − 1), as in torch.nn.BatchNorm1d."""
    chosen = STATE if state is None else state
    mean, var = chosen[f"running_mean{layer}"], chosen[f"running_var{layer}"]
    mean *= 1.0 - MOMENTUM
    mean += MOMENTUM * mu
    var *= 1.0 - MOMENTUM
    var += MOMENTUM * (m / (m - 1)) * v


def _check_training_batch(m: int) -> None:
    """Batch norm in training needs two rows: one row has no batch variance (PyTorch refuses too)."""
    if _BATCH_NORMS and m < 2:
        raise ValueError(f"batch norm in training needs at least 2 rows, got m = {m}")


# ---- layered: io ----
def save_params(path: str, params: Params, state: dict[str, Array] | None = None) -> None:
    """Write ``params`` and the batch norms' running statistics (``state``, default the
    module's) to an .npz archive (arrays only, no pickles)."""
    _check_params(params)
    arrays: dict[str, Array] = {}
    for names, pair in zip(_NAMES, params, strict=True):
        arrays.update(zip(names, pair, strict=True))
    arrays.update(STATE if state is None else state)
    np.savez(path, sizes=np.array(SIZES, dtype=np.int64), **arrays)  # type: ignore[arg-type]


def load_params(path: str, state: dict[str, Array] | None = None) -> Params:
    """Read params written by ``save_params``, their running statistics into ``state``
    (default the module's); anything else is one ``ValueError``.

    Every member's header (shape, dtype) is checked before its data is read, as the
    dense runtime does (``_member_header``), so a hostile file costs no more memory
    or time than a valid one.
    """
    names = [name for pair in _NAMES for name in pair]
    stats = init_state()
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [n for n in ["sizes", *names, *stats] if n not in archive.files]
            if missing:
                raise ValueError(f"it lacks {', '.join(missing)}; not params of this network")
            shape, dtype = _member_header(archive, "sizes")
            if shape != (len(SIZES),) or dtype.kind not in "iu":
                raise ValueError(
                    f"sizes must be {len(SIZES)} integers, got {dtype} of shape {shape}"
                )
            if tuple(int(n) for n in archive["sizes"]) != SIZES:
                raise ValueError(f"it holds params for other widths, this module is {SIZES}")
            first_dtype = _member_header(archive, names[0])[1]
            for name, expected in zip(names, _flat_shapes(), strict=True):
                shape, dtype = _member_header(archive, name)
                if (
                    shape != expected
                    or dtype != first_dtype
                    or dtype not in (np.float32, np.float64)
                ):
                    raise ValueError(
                        f"{name} must be float32 or float64 (as {names[0]}) of shape "
                        f"{expected}, got {dtype} of shape {shape}"
                    )
            for name, initial in stats.items():
                shape, dtype = _member_header(archive, name)
                if shape != initial.shape or dtype.kind != "f":
                    raise ValueError(f"{name} has shape {shape}")
            arrays = {name: archive[name] for name in names}
            loaded = {name: archive[name] for name in stats}
    except ValueError as err:
        raise ValueError(f"cannot read params from {path!r}: {err}") from err
    except Exception as err:  # an unreadable file or a damaged archive: one error
        raise ValueError(f"cannot read params from {path!r}: {type(err).__name__}: {err}") from err
    (STATE if state is None else state).update(
        {name: arr.astype(np.float64) for name, arr in loaded.items()}
    )
    return [(arrays[first], arrays[second]) for first, second in _NAMES]


# ---- layered: out ----
def _into(out: Params | None, grads: Params, params: Params, x: Array, y: Array) -> Params:
    """``grads``, or copied into ``out`` after checking it (shapes, dtype, no shared memory)."""
    if out is None:
        return grads
    if not isinstance(out, (list, tuple)) or len(out) != len(_SHAPES):
        raise ValueError(f"out must be a list of {len(_SHAPES)} pairs like params")
    inputs = [x, y, *(arr for pair in params for arr in pair)]
    written: list[Array] = []
    for names, pair, made in zip(_NAMES, out, grads, strict=True):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError(f"out's entry for {names[0]}, {names[1]} must be a pair")
        for name, arr, grad in zip(names, pair, made, strict=True):
            if type(arr) is not np.ndarray or arr.shape != grad.shape or arr.dtype != grad.dtype:
                raise ValueError(
                    f"out's d{name} must be a {grad.dtype} array of shape {grad.shape}"
                )
            if not arr.flags.writeable:
                raise ValueError(f"out's d{name} is read-only")
            if any(np.may_share_memory(arr, other) for other in inputs + written):
                raise ValueError(f"out's d{name} shares memory with an input or another output")
            written.append(arr)
    for pair, made in zip(out, grads, strict=True):
        for arr, grad in zip(pair, made, strict=True):
            np.copyto(arr, grad)
    return list(out)


# ---- layered: masks ----
_GENERATOR = np.random.default_rng(0)
"""The module's generator of dropout masks (``seed_masks`` reseeds it)."""


def seed_masks(seed: int | None) -> None:
    """Reseed the generator the dropout masks are drawn from (None: from the OS)."""
    global _GENERATOR
    _GENERATOR = np.random.default_rng(seed)


def _mask(masks: dict[int, Array] | None, layer: int, m: int, dtype: np.dtype) -> Array:
    """M_l for a batch of m rows: given in ``masks`` (0/1 entries, shape (m, n_l)), else each
    entry kept (1) with probability 1 - p, drawn from the module's generator."""
    width, rate = _DROPOUTS[layer]
    if masks is not None and layer in masks:
        mask = np.asarray(masks[layer])
        if mask.shape != (m, width):
            raise ValueError(f"the mask of dropout layer {layer} must have shape {(m, width)}")
        if not np.isin(mask, (0, 1)).all():
            raise ValueError(f"the mask of dropout layer {layer} must hold 0 and 1 only")
        return mask.astype(dtype, copy=False)
    return (_GENERATOR.random((m, width)) >= rate).astype(dtype)
