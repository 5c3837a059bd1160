"""scikit-learn estimators that train a derived, proved network.

At ``fit`` the estimator derives and proves the network for the data's
widths, renders its module in memory (no file is written) and trains it with
the module's own ``fit``.  Modules are cached per specification, so a grid
search derives each network once.  scikit-learn is an optional dependency
(``pip install 'derive[train]'``); nothing else in derive imports this file
unless ``derive.MLPClassifier`` or ``derive.MLPRegressor`` is asked for.

``alpha`` is an L2 penalty as scikit-learn has it: ``alpha / batch`` times W
is added to the gradient of the batch's mean loss (biases are not penalised).
For a dense network the optimizer adds it (its ``weight_decay``).  For a network
with layer kinds it is the derived, proved penalty (``--l2``, ``fit(l2=alpha /
batch)``) on the weights W_l and projections P_l, so that γ_l and β_l are not
decayed (the optimizer's decay would take γ_l as a pair's first array); the
``adamw`` solver keeps its decoupled decay.
"""

from __future__ import annotations

import warnings
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, check_random_state, column_or_1d

    try:
        from sklearn.utils.validation import validate_data
    except ImportError:  # scikit-learn < 1.6
        validate_data = None
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError("derive's estimators need scikit-learn: pip install 'derive[train]'") from err

from . import _build

Params = list[tuple[NDArray[np.floating], NDArray[np.floating]]]
"""A generated module's parameters: (W, b) per layer."""

_ACTIVATION_NAMES = {"logistic": "sigmoid"}
"""scikit-learn's activation names that derive spells differently."""


class _BaseMLP(BaseEstimator):  # type: ignore[misc]
    """What the classifier and the regressor share: parameters, training, checks."""

    _loss = "l2"

    def __init__(
        self,
        hidden_layer_sizes: tuple[int, ...] = (100,),
        activation: str = "relu",
        *,
        solver: str = "adam",
        alpha: float = 0.0001,
        batch_size: int | str = "auto",
        learning_rate_init: float = 0.001,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: Any = None,
        tol: float = 1e-4,
        verbose: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: int = 10,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change

    # --- subclass hooks ---------------------------------------------------------------

    def _targets(self, y: np.ndarray) -> tuple[np.ndarray, int]:
        raise NotImplementedError

    def _activations(self, depth: int) -> str:
        raise NotImplementedError

    # --- training ---------------------------------------------------------------------

    def _hidden(self) -> tuple[str, ...]:
        """The hidden items as ``--layers`` writes them: widths, and layer kinds given as
        strings ("16+res", "ln", "bn", "drop:0.1"; ``spec`` checks them)."""
        sizes = self.hidden_layer_sizes
        sizes = (sizes,) if isinstance(sizes, (int, np.integer, str)) else tuple(sizes)
        items = []
        for n in sizes:
            if isinstance(n, str) and n.strip():
                items.append(n.strip())
            elif isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1:
                items.append(str(int(n)))
            else:
                raise ValueError(
                    "hidden_layer_sizes must be positive ints or layer kinds "
                    f"('16+res', 'ln', 'bn', 'drop:0.1'), got {self.hidden_layer_sizes!r}"
                )
        return tuple(items)

    def _penalised(self) -> bool:
        """True when ``alpha`` is the derived penalty: layer kinds, alpha > 0, not adamw."""
        kinds = any(not item.isdigit() for item in self._hidden())
        return kinds and self.solver != "adamw" and float(self.alpha) > 0

    def _module(self, n_in: int, n_out: int) -> ModuleType:
        hidden = self._hidden()
        layers = ",".join([str(n_in), *hidden, str(n_out)])
        activated = sum(1 for item in hidden if item[0].isdigit()) + 1  # dense and residual
        return _build.network_module(
            layers, self._activations(activated), self._loss, self._penalised()
        )

    def _optimizer(self, module: ModuleType, params: Params, batch: int) -> Any:
        if self.alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha!r}")
        decay = 0.0 if self._penalised() else float(self.alpha) / batch
        if self.solver == "sgd":
            return module.SGD(
                params,
                lr=self.learning_rate_init,
                momentum=self.momentum,
                nesterov=self.nesterovs_momentum and self.momentum > 0,
                weight_decay=decay,
            )
        if self.solver in ("adam", "adamw"):
            kind = module.Adam if self.solver == "adam" else module.AdamW
            return kind(
                params,
                lr=self.learning_rate_init,
                beta1=self.beta_1,
                beta2=self.beta_2,
                eps=self.epsilon,
                weight_decay=decay,
            )
        if self.solver == "rmsprop":
            return module.RMSProp(params, lr=self.learning_rate_init, weight_decay=decay)
        raise ValueError(f"solver must be 'adam', 'sgd', 'adamw' or 'rmsprop', got {self.solver!r}")

    def _fit(self, x: np.ndarray, y: np.ndarray) -> _BaseMLP:
        if validate_data is not None:
            x, y = validate_data(self, x, y, dtype=np.float64, multi_output=True)
        else:  # pragma: no cover - old scikit-learn
            x, y = self._validate_data(x, y, dtype=np.float64, multi_output=True)
        targets, n_out = self._targets(y)
        for name in ("max_iter", "n_iter_no_change"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if self.batch_size == "auto":
            batch = min(200, x.shape[0])
        elif isinstance(self.batch_size, (int, np.integer)) and self.batch_size >= 1:
            batch = min(int(self.batch_size), x.shape[0])
        else:
            raise ValueError(f"batch_size must be 'auto' or an int >= 1, got {self.batch_size!r}")
        module = self._module(x.shape[1], n_out)
        rng = check_random_state(self.random_state)
        init_seed, fit_seed = (int(s) for s in rng.randint(0, 2**31 - 1, size=2))
        validation = None
        if self.early_stopping:
            stratify = targets if isinstance(self, ClassifierMixin) else None
            x, x_val, targets, t_val = train_test_split(
                x,
                targets,
                test_size=self.validation_fraction,
                random_state=init_seed,
                stratify=stratify,
            )
            validation = (x_val, t_val)
        params = module.init_params(seed=init_seed)
        kinds = hasattr(module, "STATE")  # batch norm's running statistics, dropout's masks
        if kinds:
            module.reset_state()
            module.seed_masks(fit_seed)
        optimizer = self._optimizer(module, params, batch)
        stopper = _Stopper(self, module, params, validation)
        history = module.fit(
            params,
            x,
            targets,
            epochs=self.max_iter,
            batch_size=batch,
            optimizer=optimizer,
            seed=fit_seed,
            shuffle=self.shuffle,
            callback=stopper,
            verbose=self.verbose,
            l2=float(self.alpha) / batch if self._penalised() else 0.0,
        )
        if stopper.best_params is not None:
            for (w, b), (w_best, b_best) in zip(params, stopper.best_params, strict=True):
                np.copyto(w, w_best)
                np.copyto(b, b_best)
        self.params_ = params
        if kinds:  # this estimator's running statistics (the module's are shared)
            self.state_ = {key: value.copy() for key, value in module.STATE.items()}
        self.coefs_ = [w for w, _ in params]
        self.intercepts_ = [b[0] for _, b in params]
        self.loss_curve_ = list(history["loss"])
        self.loss_ = self.loss_curve_[-1]
        self.best_loss_ = min(self.loss_curve_)
        self.n_iter_ = len(self.loss_curve_)
        self.n_layers_ = len(params) + 1
        self.n_outputs_ = n_out
        if validation is not None:
            self.validation_scores_ = stopper.scores
            self.best_validation_score_ = max(stopper.scores)
        if not stopper.converged:
            warnings.warn(
                f"derive: training stopped after max_iter={self.max_iter} epochs without converging",
                ConvergenceWarning,
                stacklevel=3,
            )
        return self

    def _forward(self, x: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "params_")
        if validate_data is not None:
            x = validate_data(self, x, dtype=np.float64, reset=False)
        else:  # pragma: no cover - old scikit-learn
            x = self._validate_data(x, dtype=np.float64, reset=False)
        module = self._module(self.n_features_in_, self.n_outputs_)
        if hasattr(module, "STATE"):  # batch norm on the running statistics; no dropout
            return np.asarray(module.forward(self.params_, x, state=self.state_))
        return np.asarray(module.forward(self.params_, x))


class _Stopper:
    """The fit callback: scikit-learn's stopping rule (tol, n_iter_no_change)."""

    def __init__(
        self, estimator: _BaseMLP, module: ModuleType, params: Params, validation: Any
    ) -> None:
        self.estimator, self.module, self.params, self.validation = (
            estimator,
            module,
            params,
            validation,
        )
        self.best = np.inf
        self.best_params: Params | None = None
        self.scores: list[float] = []
        self.stale = 0
        self.converged = False

    def __call__(self, epoch: int, history: dict[str, list[float]]) -> bool:
        tol = self.estimator.tol
        if self.validation is not None:
            score = float(self.module.score(self.params, *self.validation))
            self.scores.append(score)
            value = -score
            if value < self.best:
                self.best_params = [(w.copy(), b.copy()) for w, b in self.params]
        else:
            value = history["loss"][-1]
        if value > self.best - tol:
            self.stale += 1
        else:
            self.stale = 0
        self.best = min(self.best, value)
        if self.stale >= self.estimator.n_iter_no_change:
            self.converged = True
            return True
        return False


class MLPClassifier(ClassifierMixin, _BaseMLP):  # type: ignore[misc]
    """A multilayer perceptron classifier: softmax cross-entropy over a derived network."""

    _loss = "softmax_cross_entropy"

    def _activations(self, depth: int) -> str:
        act = _ACTIVATION_NAMES.get(self.activation, self.activation)
        return act  # the fused loss fixes the output layer (softmax)

    def _targets(self, y: np.ndarray) -> tuple[np.ndarray, int]:
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if y.ndim != 1:
            raise ValueError(f"MLPClassifier takes one label per row, got y of shape {y.shape}")
        check_classification_targets(y)
        self.classes_, encoded = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                f"MLPClassifier needs at least 2 classes, got {len(self.classes_)} class"
            )
        return encoded.astype(np.int64), len(self.classes_)

    def fit(self, X: Any, y: Any) -> MLPClassifier:
        """Derive and prove the network for these widths, then train it."""
        self._fit(X, y)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        return self._forward(X)

    def predict(self, X: Any) -> np.ndarray:
        proba = self._forward(X)
        return np.asarray(self.classes_[np.argmax(proba, axis=1)])


class MLPRegressor(RegressorMixin, _BaseMLP):  # type: ignore[misc]
    """A multilayer perceptron regressor: squared error over a derived network, linear output."""

    _loss = "l2"

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # y of shape (m, k) trains k outputs
        return tags

    def _activations(self, depth: int) -> str:
        act = _ACTIVATION_NAMES.get(self.activation, self.activation)
        return ",".join([act] * (depth - 1) + ["identity"])

    def _targets(self, y: np.ndarray) -> tuple[np.ndarray, int]:
        y = np.asarray(y, dtype=np.float64)
        self._y_1d = y.ndim == 1
        targets = y.reshape(-1, 1) if y.ndim == 1 else y
        return targets, targets.shape[1]

    def fit(self, X: Any, y: Any) -> MLPRegressor:
        """Derive and prove the network for these widths, then train it."""
        self._fit(X, y)
        return self

    def predict(self, X: Any) -> np.ndarray:
        y_hat = self._forward(X)
        return y_hat[:, 0] if self._y_1d else y_hat
