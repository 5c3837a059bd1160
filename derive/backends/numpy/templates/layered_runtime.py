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
_WORKSPACE: tuple[tuple[int, int, str], ...] = ((0, 1, "f"),)
_SLOTS: tuple[int, ...] = (0,)
_ONES_COLUMNS: tuple[int, ...] = ()
_CONSTANTS: tuple[float, ...] = ()
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


# stand-ins: the numpy runtime's workspace pool (section ``workspace_pool``)
Workspace = tuple[tuple[int, np.dtype], tuple[Array, ...], bool]
_SPARE: list[Workspace] = []
_MAX_SPARES = 4
_MAX_KEPT_BYTES = 32 * 2**20


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
    state: dict[str, Array] | None,
    layer: int,
    mu: Array,
    v: Array,
    m: int,
    row: Array | None = None,
) -> None:
    """running ← (1 − MOMENTUM) running + MOMENTUM batch (PyTorch's convention); the batch
    variance enters unbiased, v m/(m − 1), as in torch.nn.BatchNorm1d.  ``row``, a float64
    1 x n scratch, makes the update allocate nothing."""
    chosen = STATE if state is None else state
    mean, var = chosen[f"running_mean{layer}"], chosen[f"running_var{layer}"]
    if row is None:
        row = np.empty(mean.shape)
    for running, batch, weight in ((mean, mu, MOMENTUM), (var, v, MOMENTUM * (m / (m - 1)))):
        np.multiply(running, 1.0 - MOMENTUM, running)
        np.copyto(row, batch)
        np.multiply(row, weight, row)
        np.add(running, row, running)


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
def _gradients_out(
    out: Params | None, params: Params, x: Array, y: Array, dtype: np.dtype
) -> Params:
    """The arrays ``backprop`` writes the gradients into: ``out`` after checking it
    (shapes, dtype, C-contiguous, writeable, no shared memory), or new ones."""
    if out is None:
        return [(np.empty(first, dtype), np.empty(second, dtype)) for first, second in _SHAPES]
    if not isinstance(out, (list, tuple)) or len(out) != len(_SHAPES):
        raise ValueError(f"out must be a list of {len(_SHAPES)} pairs like params")
    for names, pair, shapes in zip(_NAMES, out, _SHAPES, strict=True):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError(f"out's entry for {names[0]}, {names[1]} must be a pair")
        for name, arr, shape in zip(names, pair, shapes, strict=True):
            if type(arr) is not np.ndarray or arr.shape != shape or arr.dtype != dtype:
                raise ValueError(f"out's d{name} must be a {dtype} array of shape {shape}")
            if not arr.flags.c_contiguous:
                raise ValueError(f"out's d{name} must be C-contiguous (np.ascontiguousarray)")
            if not arr.flags.writeable:
                raise ValueError(f"out's d{name} is read-only")
    if not _surely_apart(out, params, x, y):
        _check_apart(out, params, x, y)
    return out if isinstance(out, list) else list(out)


def _surely_apart(out: Params, params: Params, x: Array, y: Array) -> bool:
    """True when no output can share memory with another array: the common case, fast
    and without allocating (outputs owning their memory are disjoint; an input overlaps
    one only if it is that array or a view whose base it is).  Else ``_check_apart``."""
    for i, (w, b) in enumerate(out):
        if w.base is not None or b.base is not None or w is b:
            return False
        for j in range(i):
            earlier = out[j]
            if w is earlier[0] or w is earlier[1] or b is earlier[0] or b is earlier[1]:
                return False
    if not (_apart(x, out) and _apart(y, out)):
        return False
    for w, b in params:
        if not (_apart(w, out) and _apart(b, out)):
            return False
    return True


def _apart(arr: Array, out: Params) -> bool:
    """``arr`` is no array of ``out`` nor a view of one (its base owns its memory)."""
    base = arr.base
    if base is not None and getattr(base, "base", 0) is not None:
        return False  # a view of a view of something else: let _check_apart decide
    for w, b in out:
        if arr is w or arr is b or (base is not None and (base is w or base is b)):
            return False
    return True


def _check_apart(out: Params, params: Params, x: Array, y: Array) -> None:
    """Raise if an output may share memory with an input or another output."""
    inputs = [x, y, *(arr for pair in params for arr in pair)]
    written: list[Array] = []
    for names, pair in zip(_NAMES, out, strict=True):
        for name, arr in zip(names, pair, strict=True):
            if any(np.may_share_memory(arr, other) for other in inputs + written):
                raise ValueError(f"out's d{name} shares memory with an input or another output")
            written.append(arr)


# ---- layered: workspace ----
_KINDS = {"d": np.dtype(np.float64), "b": np.dtype(np.bool_)}
"""A buffer's kind: "f" holds the call's dtype, "d" float64 (drawn masks, running
statistics), "b" booleans (a mask's comparison)."""


def _take_workspace(m: int, dtype: np.dtype) -> Workspace:
    """A workspace for m rows of ``dtype``: a spare one if it fits, else a new one.

    Its arrays, in the order ``backprop`` unpacks them: a 1 x m row of ones (1ᵀ A is a
    column sum), an n x 1 column of ones per width in ``_ONES_COLUMNS`` (A 1 a row sum),
    each buffer's array of ``_WORKSPACE`` ((rows, cols, kind); rows 0 means m) as
    ``_SLOTS`` assigns it, then each of ``_CONSTANTS`` as a 0-d array (a Python float
    is converted on every call)."""
    try:
        ws = _SPARE.pop()
    except IndexError:
        ws = None
    if ws is None or ws[0] != (m, dtype):
        arrays = [np.ones((1, m), dtype)]
        arrays += [np.ones((n, 1), dtype) for n in _ONES_COLUMNS]
        slots = [
            np.empty((rows or m, cols), _KINDS.get(kind, dtype)) for rows, cols, kind in _WORKSPACE
        ]
        arrays += [slots[k] for k in _SLOTS]
        arrays += [np.array(value, dtype) for value in _CONSTANTS]
        keep = sum(arr.nbytes for arr in slots) <= _MAX_KEPT_BYTES
        ws = ((m, dtype), tuple(arrays), keep)
    return ws


def _give_back(ws: Workspace) -> None:
    """Keep ``ws`` for the next call (unless too large or enough are kept)."""
    if ws[2] and len(_SPARE) < _MAX_SPARES:
        _SPARE.append(ws)


# ---- layered: masks ----
_GENERATOR = np.random.default_rng(0)
"""The module's generator of dropout masks (``seed_masks`` reseeds it)."""


def seed_masks(seed: int | None) -> None:
    """Reseed the generator the dropout masks are drawn from (None: from the OS)."""
    global _GENERATOR
    _GENERATOR = np.random.default_rng(seed)


def _check_mask_layers(masks: dict[int, Array] | None) -> None:
    """Refuse a mask keyed by a layer that is not a dropout layer: it would be ignored."""
    for layer in masks or ():
        if layer not in _DROPOUTS:
            raise ValueError(
                f"masks has a mask for layer {layer!r}, which is not a dropout layer "
                f"(this network's dropout layers: {sorted(_DROPOUTS)})"
            )


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


def _mask_into(
    masks: dict[int, Array] | None, layer: int, mask: Array, drawn: Array, kept: Array
) -> None:
    """M_l into ``mask`` (m x n_l, the call's dtype) with no allocation: copied from
    ``masks`` after checking its shape and 0/1 entries, else drawn as ``_mask`` draws it
    (the same float64 numbers into ``drawn``, compared into the booleans ``kept``)."""
    width, rate = _DROPOUTS[layer]
    if masks is not None and layer in masks:
        given = masks[layer]
        if np.shape(given) != mask.shape:
            raise ValueError(
                f"the mask of dropout layer {layer} must have shape {(mask.shape[0], width)}"
            )
        np.copyto(drawn, given, casting="unsafe")  # exact for bool, int and float entries
        np.equal(drawn, 0.0, kept)
        np.copyto(drawn, 1.0, where=kept)  # the zeros made ones: then all must be ones
        np.not_equal(drawn, 1.0, kept)
        if np.count_nonzero(kept):
            raise ValueError(f"the mask of dropout layer {layer} must hold 0 and 1 only")
        np.copyto(mask, given, casting="unsafe")
        return
    _GENERATOR.random(out=drawn)
    np.greater_equal(drawn, rate, kept)
    np.copyto(mask, kept)
