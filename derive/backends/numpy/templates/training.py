"""Training for a generated network: optimizers, ``fit``, ``predict``, ``score``, ``gradcheck``.

Every generated module includes this file verbatim from the marker line on,
where ``SIZES``, ``LOSS``, ``forward``, ``backprop`` and ``_check_params``
are the module's own.  Above the marker are stand-ins with the same
signatures, so that this file can be linted and type-checked on its own; the
tests exercise the code through generated modules.

Two kinds of weight decay, both on the weights W_l only, never the biases:
``weight_decay`` is an optimizer's (added to the gradient, or decoupled as in
AdamW); ``l2`` is the derived penalty λ/2 Σ_l ‖W_l‖_F², part of the objective
whose gradient ``backprop`` computes (modules generated with ``--l2``).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.floating]
Params = list[tuple[Array, Array]]
__all__: list[str] = []
SIZES: tuple[int, ...] = (1, 1)
LOSS: str = "l2"
L2_PENALTY: bool = False


def _check_params(params: Params) -> np.dtype[np.floating]:
    """Stand-in: the generated module's check of ``params``."""
    raise NotImplementedError


def forward(params: Params, x: Array) -> Array:
    """Stand-in: the generated module's forward pass."""
    raise NotImplementedError


def load_params(path: str) -> Params:
    """Stand-in: the generated module's reader of saved params."""
    raise NotImplementedError


def backprop(
    params: Params, x: Array, y: Array, out: Params | None = None, *, check_finite: bool = False
) -> tuple[float, Params]:
    """Stand-in: the generated module's derived backprop."""
    raise NotImplementedError


def _penalised_backprop(
    params: Params, x: Array, y: Array, out: Params | None, l2: float
) -> tuple[float, Params]:
    """Stand-in: the generated module's ``backprop`` with λ = ``l2``."""
    raise NotImplementedError


# ---- generated modules include this file from the next line on ----


__all__ += [
    "SGD",
    "Adam",
    "AdamW",
    "Optimizer",
    "RMSProp",
    "fit",
    "gradcheck",
    "load_checkpoint",
    "make_optimizer",
    "predict",
    "predict_proba",
    "save_checkpoint",
    "score",
]

_LOSS_PER_EXAMPLE = {
    "l2": True,
    "mse": False,
    "softmax_cross_entropy": True,
    "sigmoid_binary_cross_entropy": True,
}
"""Whether the loss sums over the batch (True) or is already a mean (False)."""

_CLASSIFIER = LOSS in ("softmax_cross_entropy", "sigmoid_binary_cross_entropy")
_INF = float("inf")


def _positive(name: str, value: object, *, allow_zero: bool = False) -> float:
    """``value`` as a finite float > 0 (or >= 0), else a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not (-_INF < number < _INF) or number < 0 or (number == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return number


def _whole(name: str, value: object, least: int) -> int:
    """``value`` as an int >= ``least``, else a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise ValueError(f"{name} must be a whole number >= {least}, got {value!r}")
    return int(value)


class Optimizer:
    """Updates ``params`` in place from the gradients in ``self.grads``.

    The optimizer keeps one contiguous working copy of the params, a
    contiguous gradient buffer (``grads`` are views of it, shaped like
    params, ready for ``backprop(..., out=opt.grads)``) and its state, all
    allocated once: a step is a fixed sequence of in-place ufuncs over whole
    buffers and allocates no arrays.  The weights come first in every
    buffer, so weight decay touches one contiguous prefix.
    """

    name = "optimizer"
    decoupled_decay = False

    def __init__(self, params: Params, lr: float, weight_decay: float = 0.0) -> None:
        dtype = _check_params(params)
        self.lr = _positive("lr", lr)
        self.weight_decay = _positive("weight_decay", weight_decay, allow_zero=True)
        self.params = params
        self.steps = 0
        shapes = [w.shape for w, _ in params] + [b.shape for _, b in params]
        sizes = [w.size for w, _ in params] + [b.size for _, b in params]
        self.size = sum(sizes)
        self._n_weights = sum(sizes[: len(params)])
        self._work = np.empty(self.size, dtype)
        self._grad = np.zeros(self.size, dtype)
        self._update = np.empty(self.size, dtype)
        self._decayed = np.empty(self._n_weights, dtype)
        self._slots: list[tuple[Array, Array]] = []  # (param array, its view in the work copy)
        work_views, grad_views = [], []
        start = 0
        for arr, shape, size in zip(
            [w for w, _ in params] + [b for _, b in params], shapes, sizes, strict=True
        ):
            work_views.append(self._work[start : start + size].reshape(shape))
            grad_views.append(self._grad[start : start + size].reshape(shape))
            self._slots.append((arr, work_views[-1]))
            start += size
        depth = len(params)
        self.working_params: Params = list(zip(work_views[:depth], work_views[depth:], strict=True))
        self.grads: Params = list(zip(grad_views[:depth], grad_views[depth:], strict=True))
        self._load()

    def state(self) -> dict[str, Array]:
        """The optimizer's state arrays (flat, weights first), by name."""
        return {}

    def hyperparameters(self) -> dict[str, float]:
        """What the constructor needs besides params, to rebuild this optimizer."""
        return {"lr": self.lr, "weight_decay": self.weight_decay}

    def step(self) -> None:
        """Apply one update from ``self.grads`` to ``params`` (in place)."""
        self._load()
        self._step()
        self._store()

    def _load(self) -> None:
        """Copy params into the working copy."""
        for arr, view in self._slots:
            np.copyto(view, arr)

    def _store(self) -> None:
        """Copy the working copy back into params."""
        for arr, view in self._slots:
            np.copyto(arr, view)

    def _step(self) -> None:
        """One update of the working copy; its last write is one ufunc over the whole buffer."""
        grad = self._grad
        n = self._n_weights
        if self.weight_decay and not self.decoupled_decay:  # L2: g_W += λ W
            np.multiply(self._work[:n], self.weight_decay, out=self._decayed)
            np.add(grad[:n], self._decayed, out=grad[:n])
        update = self._update
        self._direction(grad, update)  # the step to subtract, lr included
        if self.weight_decay and self.decoupled_decay:  # W ← W - lr λ W - update
            np.multiply(self._work[:n], self.lr * self.weight_decay, out=self._decayed)
            np.add(update[:n], self._decayed, out=update[:n])
        np.subtract(self._work, update, out=self._work)
        self.steps += 1

    def _direction(self, grad: Array, update: Array) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """θ ← θ - lr·d, with d = g, or with momentum μ: v ← μv + g, d = v (Nesterov: d = g + μv)."""

    name = "sgd"

    def __init__(
        self,
        params: Params,
        lr: float = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr, weight_decay)
        self.momentum = _positive("momentum", momentum, allow_zero=True)
        if self.momentum >= 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        if nesterov and not self.momentum:
            raise ValueError("nesterov=True needs a momentum > 0")
        self.nesterov = bool(nesterov)
        self._velocity = np.zeros_like(self._grad)

    def state(self) -> dict[str, Array]:
        return {"velocity": self._velocity}

    def hyperparameters(self) -> dict[str, float]:
        return {**super().hyperparameters(), "momentum": self.momentum, "nesterov": self.nesterov}

    def _direction(self, grad: Array, update: Array) -> None:
        if not self.momentum:
            np.multiply(grad, self.lr, out=update)
            return
        velocity = self._velocity
        if self.steps == 0:  # v₁ = g₁, as torch.optim.SGD starts
            np.copyto(velocity, grad)
        else:
            np.multiply(velocity, self.momentum, out=velocity)
            np.add(velocity, grad, out=velocity)
        if self.nesterov:
            np.multiply(velocity, self.momentum, out=update)
            np.add(update, grad, out=update)
            np.multiply(update, self.lr, out=update)
        else:
            np.multiply(velocity, self.lr, out=update)


class RMSProp(Optimizer):
    """s ← ρs + (1-ρ)g², θ ← θ - lr·g/(√s + ε)."""

    name = "rmsprop"

    def __init__(
        self,
        params: Params,
        lr: float = 0.001,
        rho: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr, weight_decay)
        self.rho = _positive("rho", rho)
        if self.rho >= 1:
            raise ValueError(f"rho must be in (0, 1), got {rho!r}")
        self.eps = _positive("eps", eps)
        self._square = np.zeros_like(self._grad)

    def state(self) -> dict[str, Array]:
        return {"square": self._square}

    def hyperparameters(self) -> dict[str, float]:
        return {**super().hyperparameters(), "rho": self.rho, "eps": self.eps}

    def _direction(self, grad: Array, update: Array) -> None:
        square = self._square
        np.multiply(grad, grad, out=update)
        np.multiply(update, 1.0 - self.rho, out=update)
        np.multiply(square, self.rho, out=square)
        np.add(square, update, out=square)
        np.sqrt(square, out=update)
        np.add(update, self.eps, out=update)
        np.divide(grad, update, out=update)
        np.multiply(update, self.lr, out=update)


class Adam(Optimizer):
    """m ← β₁m + (1-β₁)g, v ← β₂v + (1-β₂)g², θ ← θ - lr·m̂/(√v̂ + ε).

    m̂ = m/(1-β₁ᵗ) and v̂ = v/(1-β₂ᵗ) are the bias corrections for step t.
    """

    name = "adam"

    def __init__(
        self,
        params: Params,
        lr: float = 0.001,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr, weight_decay)
        for label, beta in (("beta1", beta1), ("beta2", beta2)):
            if _positive(label, beta, allow_zero=True) >= 1:
                raise ValueError(f"{label} must be in [0, 1), got {beta!r}")
        self.beta1, self.beta2 = float(beta1), float(beta2)
        self.eps = _positive("eps", eps)
        self._mean = np.zeros_like(self._grad)
        self._square = np.zeros_like(self._grad)

    def state(self) -> dict[str, Array]:
        return {"mean": self._mean, "square": self._square}

    def hyperparameters(self) -> dict[str, float]:
        return {
            **super().hyperparameters(),
            "beta1": self.beta1,
            "beta2": self.beta2,
            "eps": self.eps,
        }

    def _direction(self, grad: Array, update: Array) -> None:
        mean, square = self._mean, self._square
        t = self.steps + 1
        np.multiply(mean, self.beta1, out=mean)
        np.multiply(grad, 1.0 - self.beta1, out=update)
        np.add(mean, update, out=mean)
        np.multiply(square, self.beta2, out=square)
        np.multiply(grad, grad, out=update)
        np.multiply(update, 1.0 - self.beta2, out=update)
        np.add(square, update, out=square)
        # lr·m̂/(√v̂ + ε) = (lr/(1-β₁ᵗ))·m/(√v/√(1-β₂ᵗ) + ε)
        np.sqrt(square, out=update)
        np.divide(update, (1.0 - self.beta2**t) ** 0.5, out=update)
        np.add(update, self.eps, out=update)
        np.divide(mean, update, out=update)
        np.multiply(update, self.lr / (1.0 - self.beta1**t), out=update)


class AdamW(Adam):
    """Adam with decoupled weight decay: θ ← θ - lr·λ·θ - lr·m̂/(√v̂ + ε) (W only)."""

    name = "adamw"
    decoupled_decay = True

    def __init__(
        self,
        params: Params,
        lr: float = 0.001,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.01,
    ) -> None:
        super().__init__(params, lr, beta1, beta2, eps, weight_decay)


_OPTIMIZERS: dict[str, tuple[type[Optimizer], dict[str, float]]] = {
    "sgd": (SGD, {}),
    "momentum": (SGD, {"momentum": 0.9}),
    "nesterov": (SGD, {"momentum": 0.9, "nesterov": True}),
    "rmsprop": (RMSProp, {}),
    "adam": (Adam, {}),
    "adamw": (AdamW, {}),
}
"""Optimizer names ``fit`` accepts: the class, and settings that differ from its defaults."""


def make_optimizer(
    name: str, params: Params, lr: float | None = None, weight_decay: float = 0.0
) -> Optimizer:
    """The optimizer called ``name`` for ``params`` (``lr=None``: its default)."""
    if not isinstance(name, str) or name not in _OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(_OPTIMIZERS)}")
    kind, settings = _OPTIMIZERS[name]
    options: dict[str, float] = {**settings, "weight_decay": weight_decay}
    if lr is not None:
        options["lr"] = lr
    return kind(params, **options)


def save_checkpoint(path: str, params: Params, optimizer: Optimizer) -> None:
    """Write params and the optimizer's state to one .npz (arrays only, no pickles).

    ``load_params`` reads the params back from it as well.
    """
    if optimizer.params is not params:
        raise ValueError("optimizer was made for other params")
    _check_params(params)
    optimizer._load()
    arrays: dict[str, Array] = {}
    for layer, (w, b) in enumerate(params, start=1):
        arrays[f"W{layer}"], arrays[f"b{layer}"] = w, b
    for key, setting in optimizer.hyperparameters().items():
        arrays[f"optimizer.hyper.{key}"] = np.array(float(setting))
    for key, state in optimizer.state().items():
        arrays[f"optimizer.state.{key}"] = state
    np.savez(
        path,
        sizes=np.array(SIZES, dtype=np.int64),
        optimizer=np.array(optimizer.name),
        steps=np.array(optimizer.steps, dtype=np.int64),
        **arrays,  # type: ignore[arg-type]
    )


def load_checkpoint(path: str) -> tuple[Params, Optimizer]:
    """Params and their optimizer, as ``save_checkpoint`` wrote them."""
    params = load_params(path)
    with np.load(path, allow_pickle=False) as archive:
        files = set(archive.files)
        if "optimizer" not in files or "steps" not in files:
            raise ValueError(f"{path!r} holds params but no optimizer state")
        name = str(archive["optimizer"])
        kinds = {kind.name: kind for kind, _ in _OPTIMIZERS.values()}
        if name not in kinds:
            raise ValueError(f"{path!r} names an unknown optimizer {name!r}")
        hyper = {
            key.removeprefix("optimizer.hyper."): float(archive[key])
            for key in files
            if key.startswith("optimizer.hyper.")
        }
        state = {
            key.removeprefix("optimizer.state."): archive[key]
            for key in files
            if key.startswith("optimizer.state.")
        }
        steps = int(archive["steps"])
    try:
        optimizer = kinds[name](params, **hyper)
    except TypeError as err:
        raise ValueError(f"{path!r} has settings {name} does not take: {err}") from err
    expected = optimizer.state()
    if set(state) != set(expected):
        raise ValueError(f"{path!r} holds state {sorted(state)}, {name} keeps {sorted(expected)}")
    for key, arr in expected.items():
        if state[key].shape != arr.shape or state[key].dtype != arr.dtype:
            raise ValueError(f"{path!r}: optimizer state {key} does not match these params")
        np.copyto(arr, state[key])
    optimizer.steps = steps
    return params, optimizer


def _as_inputs(name: str, x: object, dtype: np.dtype[np.floating]) -> Array:
    """``x`` as a finite (m, n0) array of ``dtype``, or a ValueError saying what is wrong."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold numbers, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[1] != SIZES[0]:
        raise ValueError(f"{name} must have shape (m, {SIZES[0]}), got {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: it needs at least one row")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    _require_finite(name, arr)
    return arr


def _require_finite(name: str, arr: Array) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise ValueError(f"{name} contains NaN or inf (first at row {row})")


def _as_targets(name: str, y: object, m: int, dtype: np.dtype[np.floating]) -> Array:
    """``y`` as the (m, nL) targets the loss expects.

    softmax cross-entropy: class labels 0..nL-1 of shape (m,) (made one-hot),
    or rows of class probabilities; binary cross-entropy: 0/1 labels of
    shape (m, nL), or (m,) for one output; regression: (m, nL), or (m,) for
    one output.
    """
    n_out = SIZES[-1]
    arr = np.asarray(y)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold numbers, got dtype {arr.dtype}")
    if arr.shape[:1] != (m,):
        raise ValueError(f"{name} has {arr.shape[0] if arr.ndim else 0} rows, x has {m}")
    if arr.dtype.kind == "f":
        _require_finite(name, arr)
    if LOSS == "softmax_cross_entropy" and arr.ndim == 1:
        labels = arr.astype(np.int64)
        if arr.dtype.kind == "f" and not np.array_equal(labels, arr):
            row = int(np.flatnonzero(labels != arr)[0])
            raise ValueError(
                f"{name} holds {arr[row]!r} at row {row}; class labels are 0..{n_out - 1}"
            )
        outside = (labels < 0) | (labels >= n_out)
        if outside.any():
            row = int(np.flatnonzero(outside)[0])
            raise ValueError(
                f"{name} holds label {labels[row]} at row {row}; labels must be 0..{n_out - 1} "
                f"(the network has {n_out} outputs)"
            )
        onehot = np.zeros((m, n_out), dtype)
        onehot[np.arange(m), labels] = 1
        return onehot
    if arr.ndim == 1 and n_out == 1:
        arr = arr.reshape(m, 1)
    if arr.ndim != 2 or arr.shape[1] != n_out:
        shapes = f"(m,) labels or (m, {n_out})" if _CLASSIFIER else f"(m, {n_out})"
        raise ValueError(f"{name} must have shape {shapes}, got {arr.shape}")
    targets = np.ascontiguousarray(arr, dtype=dtype)
    if LOSS == "softmax_cross_entropy":
        sums = targets.sum(axis=1)
        bad = (targets < 0).any(axis=1) | (np.abs(sums - 1) > 1e-6 * n_out)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{name} row {row} is not a probability row (entries >= 0 summing to 1)"
            )
    elif LOSS == "sigmoid_binary_cross_entropy":
        bad = (targets != 0) & (targets != 1)
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise ValueError(f"{name} holds {arr[row]!r} at row {row}; labels must be 0 or 1")
    return targets


def _check_loss_known() -> bool:
    """Whether the loss sums over the batch; refuses a loss whose scaling is unknown."""
    if LOSS not in _LOSS_PER_EXAMPLE:
        raise ValueError(f"fit does not know how the {LOSS} loss scales with the batch")
    return _LOSS_PER_EXAMPLE[LOSS]


def fit(
    params: Params,
    x: Array,
    y: Array,
    *,
    epochs: int,
    batch_size: int = 32,
    optimizer: str | Optimizer = "adam",
    lr: float | None = None,
    weight_decay: float = 0.0,
    l2: float = 0.0,
    seed: int | None = None,
    shuffle: bool = True,
    validation: tuple[Array, Array] | None = None,
    callback: object = None,
    verbose: bool = False,
) -> dict[str, list[float]]:
    """Train ``params`` in place by minibatch gradient descent on the mean loss per example.

    ``optimizer`` is a name (sgd, momentum, nesterov, rmsprop, adam, adamw)
    or an ``Optimizer`` made for these params (to resume from a checkpoint).
    Returns the history: per epoch ``loss`` (mean over the epoch's
    minibatches, per example), ``accuracy`` (classifiers, the params at the
    epoch's end, on all of x), and ``val_loss``/``val_accuracy`` when
    ``validation=(x_val, y_val)``.  ``callback(epoch, history)`` runs after
    each epoch (1-based); if it returns True, training stops.

    ``l2`` = λ makes the objective the mean loss per example plus the derived
    penalty λ/2 Σ_l ‖W_l‖_F² (a module generated with ``--l2``): ``backprop``
    returns a_{l-1}ᵀ δ_l + λ W_l, and ``loss``/``val_loss`` include the
    penalty.  ``weight_decay`` is the optimizer's instead (see ``Optimizer``).

    Everything is checked before params change.  The same seed gives the
    same result bit for bit.  KeyboardInterrupt stops training and returns
    the history so far, params holding the last finished step.  A loss or
    gradient that becomes NaN or inf raises FloatingPointError naming the
    epoch and step, params again holding the last finished step.
    """
    per_example = _check_loss_known()
    dtype = _check_params(params)
    l2 = _positive("l2", l2, allow_zero=True)
    if l2 and not L2_PENALTY:
        raise ValueError(
            f"l2={l2!r}: this module was derived without the L2 penalty; generate it with "
            "--l2, or use weight_decay (the optimizer's)"
        )
    epochs = _whole("epochs", epochs, 1)
    batch_size = _whole("batch_size", batch_size, 1)
    if seed is not None:
        seed = _whole("seed", seed, 0)
    if callback is not None and not callable(callback):
        raise ValueError(f"callback must be callable, got {callback!r}")
    inputs = _as_inputs("x", x, dtype)
    m = inputs.shape[0]
    targets = _as_targets("y", y, m, dtype)
    checks: tuple[Array, Array] | None = None
    if validation is not None:
        if not (isinstance(validation, tuple) and len(validation) == 2):
            raise ValueError("validation must be a pair (x_val, y_val)")
        x_val = _as_inputs("validation x", validation[0], dtype)
        checks = (x_val, _as_targets("validation y", validation[1], x_val.shape[0], dtype))
    if isinstance(optimizer, Optimizer):
        if optimizer.params is not params:
            raise ValueError("optimizer was made for other params; make it with these")
        if lr is not None or weight_decay:
            raise ValueError("give lr and weight_decay to the optimizer, not to fit")
        opt = optimizer
        opt._load()
    else:
        opt = make_optimizer(optimizer, params, lr, weight_decay)

    history: dict[str, list[float]] = {"loss": []}
    if _CLASSIFIER:
        history["accuracy"] = []
    if checks is not None:
        history["val_loss"] = []
        if _CLASSIFIER:
            history["val_accuracy"] = []

    batch_size = min(batch_size, m)
    full, rest = divmod(m, batch_size)
    sizes = [batch_size] * full + ([rest] if rest else [])
    buffers = {
        size: (np.empty((size, SIZES[0]), dtype), np.empty((size, SIZES[-1]), dtype))
        for size in set(sizes)
    }
    order = np.arange(m)
    rng = np.random.default_rng(seed)
    work, grads, flat_grad = opt.working_params, opt.grads, opt._grad
    try:
        for epoch in range(1, epochs + 1):
            if shuffle:
                rng.shuffle(order)
            total = 0.0
            start = 0
            for step, size in enumerate(sizes, start=1):
                xb, yb = buffers[size]
                index = order[start : start + size]
                np.take(inputs, index, axis=0, out=xb, mode="clip")
                np.take(targets, index, axis=0, out=yb, mode="clip")
                start += size
                # per example: (L + λ m/2 Σ‖W‖²)/m = L/m + λ/2 Σ‖W‖², gradient mean + λ W
                value, _ = _penalised_backprop(
                    work, xb, yb, grads, l2 * size if per_example else l2
                )
                if per_example:
                    np.multiply(flat_grad, 1.0 / size, out=flat_grad)
                    value /= size
                norm = float(np.dot(flat_grad, flat_grad))
                if not (-_INF < value < _INF and norm < _INF):
                    what = "loss" if not -_INF < value < _INF else "gradient"
                    raise FloatingPointError(
                        f"the {what} became {value if what == 'loss' else norm} at epoch {epoch}, "
                        f"step {step} of {len(sizes)}; params hold the step before (try a smaller lr)"
                    )
                opt._step()
                total += value * size
            opt._store()
            history["loss"].append(total / m)
            if _CLASSIFIER:
                history["accuracy"].append(_accuracy(params, inputs, targets))
            if checks is not None:
                x_val, t_val = checks
                n_val = x_val.shape[0]
                val, _ = _penalised_backprop(
                    params, x_val, t_val, None, l2 * n_val if per_example else l2
                )
                history["val_loss"].append(val / n_val if per_example else val)
                if _CLASSIFIER:
                    history["val_accuracy"].append(_accuracy(params, x_val, t_val))
            if verbose:
                print(
                    f"epoch {epoch}/{epochs}: "
                    + ", ".join(f"{k} {v[-1]:.4g}" for k, v in history.items())
                )
            if callback is not None:
                stop = callback(epoch, history)
                opt._load()  # the callback may have changed params
                if stop is True:
                    break
    except KeyboardInterrupt:
        if verbose:
            print(
                f"interrupted in epoch {len(history['loss']) + 1}; params hold the last finished step"
            )
    finally:
        opt._store()
    return history


def predict_proba(params: Params, x: Array) -> Array:
    """Class probabilities Ŷ: softmax rows, or each output's P(label 1) for sigmoid BCE."""
    if not _CLASSIFIER:
        raise ValueError(f"predict_proba needs a classification loss; this module's is {LOSS}")
    return forward(params, _as_inputs("x", x, _check_params(params)))


def predict(params: Params, x: Array) -> NDArray[np.generic]:
    """Class labels (softmax: shape (m,); sigmoid BCE: 0/1 per output), or Ŷ for regression."""
    dtype = _check_params(params)
    y_hat = forward(params, _as_inputs("x", x, dtype))
    if LOSS == "softmax_cross_entropy":
        return np.asarray(np.argmax(y_hat, axis=1), dtype=np.int64)
    if LOSS == "sigmoid_binary_cross_entropy":
        labels = (y_hat > 0.5).astype(np.int64)
        return labels[:, 0] if SIZES[-1] == 1 else labels
    return y_hat


def score(params: Params, x: Array, y: Array) -> float:
    """Accuracy for classifiers (exact match of every label), R² for regression.

    R² is scikit-learn's ``r2_score``: 1 - SS_res/SS_tot per output,
    averaged over outputs; an output with constant y scores 1.0 if predicted
    exactly, else 0.0.
    """
    dtype = _check_params(params)
    inputs = _as_inputs("x", x, dtype)
    targets = _as_targets("y", y, inputs.shape[0], dtype)
    if _CLASSIFIER:
        return _accuracy(params, inputs, targets)
    y_hat = forward(params, inputs)
    residual = ((targets - y_hat) ** 2).sum(axis=0)
    spread = ((targets - targets.mean(axis=0)) ** 2).sum(axis=0)
    r2 = np.where(spread > 0, 1 - residual / np.where(spread > 0, spread, 1), 0.0)
    r2 = np.where((spread == 0) & (residual == 0), 1.0, r2)
    return float(np.mean(r2))


def _accuracy(params: Params, inputs: Array, targets: Array) -> float:
    """The fraction of rows whose every predicted label is right (checked inputs)."""
    y_hat = forward(params, inputs)
    if LOSS == "softmax_cross_entropy":
        return float(np.mean(np.argmax(y_hat, axis=1) == np.argmax(targets, axis=1)))
    return float(np.mean(np.all((y_hat > 0.5) == (targets > 0.5), axis=1)))


def gradcheck(
    params: Params, x: Array, y: Array, h: float = 1e-6, atol: float = 1e-5, *, l2: float = 0.0
) -> float:
    """The largest relative error of ``backprop``'s gradients against central differences.

    ``l2`` = λ checks the penalised objective L + λ/2 Σ_l ‖W_l‖_F² (modules made with ``--l2``).

    Computed in float64 on copies, entry by entry: |g - n| / max(|g|, |n|,
    atol), with n = (L(θ+h) - L(θ-h))/2h.  Entries below ``atol`` (torch's
    gradcheck default) compare absolutely: rounding in L alone moves n by
    about 1e-9 at h = 1e-6.  A right backprop scores well below 1e-3; a
    kink such as relu's at 0 between θ-h and θ+h scores more.
    """
    _check_params(params)
    h = _positive("h", h)
    floor = _positive("atol", atol)
    l2 = _positive("l2", l2, allow_zero=True)
    work: Params = [(w.astype(np.float64), b.astype(np.float64)) for w, b in params]
    inputs = _as_inputs("x", x, np.dtype(np.float64))
    targets = _as_targets("y", y, inputs.shape[0], np.dtype(np.float64))
    _, grads = _penalised_backprop(work, inputs, targets, None, l2)
    worst = 0.0
    for arrays, derived in zip(work, grads, strict=True):
        for arr, grad in zip(arrays, derived, strict=True):
            flat, flat_grad = arr.reshape(-1), grad.reshape(-1)
            for i in range(flat.size):
                kept = flat[i]
                flat[i] = kept + h
                upper = _penalised_backprop(work, inputs, targets, None, l2)[0]
                flat[i] = kept - h
                lower = _penalised_backprop(work, inputs, targets, None, l2)[0]
                flat[i] = kept
                numeric = (upper - lower) / (2 * h)
                analytic = float(flat_grad[i])
                error = abs(analytic - numeric) / max(abs(analytic), abs(numeric), floor)
                worst = max(worst, error)
    return worst
