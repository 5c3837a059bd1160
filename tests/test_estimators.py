"""derive.MLPClassifier and derive.MLPRegressor follow scikit-learn's conventions."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import warnings
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

import derive
from derive import _build

# scikit-learn is imported by the tests, not at collection (1.8 CPU-s in every pytest process)
pytestmark = pytest.mark.skipif(
    find_spec("sklearn") is None, reason="scikit-learn is not installed"
)

ROOT = Path(__file__).resolve().parent.parent
# Each network is derived and proved once per process (about 1 CPU-s each beyond the first), so
# the iris classifiers share one: tanh, one hidden width 8, unless a test is about the network.
HIDDEN, ACTIVATION = (8,), "tanh"
# Every layer kind the estimators take, in one network (its proof is 3 CPU-s of kinds lemmas).
KINDS = (8, "bn", "8+res", "ln", "6+proj", "drop:0.1")


@contextlib.contextmanager
def quiet():
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


@pytest.fixture(autouse=True)
def _quiet():
    with quiet():
        yield


def iris():
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    return x, np.array(["setosa", "versicolor", "virginica"])[y]


def standardized_iris():
    from sklearn.preprocessing import StandardScaler

    x, y = iris()
    return StandardScaler().fit_transform(x), y


@pytest.fixture(scope="module")
def kinds_classifier():
    """KINDS fitted on iris (the tests below only read it)."""
    with quiet():
        x, y = standardized_iris()
        clf = derive.MLPClassifier(
            KINDS,
            activation="tanh",
            batch_size=16,
            learning_rate_init=0.01,
            max_iter=60,
            random_state=0,
        )
        return clf.fit(x, y)


def test_import_derive_does_not_import_sklearn():
    code = "import sys, derive; print('sklearn' in sys.modules, 'derive.estimators' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
    )
    assert result.stdout.split() == ["False", "False"], result.stderr


def test_classifier_fits_string_labels_and_predicts_them():
    x, y = iris()
    clf = derive.MLPClassifier(
        HIDDEN,
        activation=ACTIVATION,
        batch_size=16,
        learning_rate_init=0.01,
        max_iter=80,
        random_state=0,
    )
    clf.fit(x, y)
    assert list(clf.classes_) == ["setosa", "versicolor", "virginica"]
    assert clf.n_features_in_ == 4 and clf.n_iter_ <= 80
    assert set(clf.predict(x)) <= set(clf.classes_)
    proba = clf.predict_proba(x)
    assert proba.shape == (150, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1)
    assert clf.score(x, y) > 0.9
    assert [w.shape for w in clf.coefs_] == [(4, 8), (8, 3)]


def test_same_random_state_same_model():
    x, y = iris()
    a, b, c = (
        derive.MLPClassifier(HIDDEN, activation=ACTIVATION, max_iter=5, random_state=seed).fit(x, y)
        for seed in (3, 3, 4)
    )
    assert all(np.array_equal(p, q) for p, q in zip(a.coefs_, b.coefs_, strict=True))
    assert not np.array_equal(a.coefs_[0], c.coefs_[0])


def test_clone_and_params():
    from sklearn.base import clone

    clf = derive.MLPClassifier((7, 3), solver="sgd", alpha=0.01)
    twin = clone(clf)
    assert twin.get_params() == clf.get_params()
    assert twin.set_params(max_iter=3).max_iter == 3
    assert not hasattr(twin, "classes_")


def test_pipeline_cross_val_and_grid_search_derive_each_network_once():
    from sklearn.model_selection import GridSearchCV, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = iris()
    model = derive.MLPClassifier(
        HIDDEN,
        activation=ACTIVATION,
        batch_size=16,
        learning_rate_init=0.01,
        max_iter=30,
        random_state=0,
    )
    pipe = make_pipeline(StandardScaler(), model)
    assert cross_val_score(pipe, x, y, cv=3).mean() > 0.8
    before = _build.network_module.cache_info()
    # two networks this file derives anyway (a third would cost its proof, 1 CPU-s)
    grid = GridSearchCV(
        derive.MLPClassifier(activation=ACTIVATION, max_iter=10, random_state=0),
        {"hidden_layer_sizes": [HIDDEN, KINDS], "learning_rate_init": [0.001, 0.01]},
        cv=3,
    ).fit(x, y)
    after = _build.network_module.cache_info()
    assert after.misses - before.misses <= 2  # two networks, eight fits plus the refit
    assert after.hits - before.hits >= 10
    assert grid.best_params_["hidden_layer_sizes"] in [HIDDEN, KINDS]


def test_early_stopping_keeps_the_best_validation_params():
    x, y = iris()
    clf = derive.MLPClassifier(
        HIDDEN,
        activation=ACTIVATION,
        max_iter=300,
        early_stopping=True,
        n_iter_no_change=5,
        random_state=0,
    ).fit(x, y)
    assert clf.n_iter_ < 300
    assert len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)


def test_regressor_scores_r2():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.standard_normal(200)
    reg = derive.MLPRegressor((16,), learning_rate_init=0.01, max_iter=100, random_state=0)
    reg.fit(x, y)
    assert reg.predict(x).shape == (200,)
    assert reg.score(x, y) > 0.95
    two = derive.MLPRegressor((4,), max_iter=5, random_state=0).fit(x, np.column_stack([y, y]))
    assert two.predict(x).shape == (200, 2)


def test_bad_settings_are_clear_errors():
    x, y = iris()
    shared = {"hidden_layer_sizes": HIDDEN, "activation": ACTIVATION}
    with pytest.raises(ValueError, match="solver must be"):
        derive.MLPClassifier(**shared, solver="lbfgs", max_iter=1).fit(x, y)
    with pytest.raises(ValueError, match="hidden_layer_sizes must be positive ints"):
        derive.MLPClassifier(hidden_layer_sizes=(0,)).fit(x, y)
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        derive.MLPClassifier(**shared, learning_rate_init=-1.0, max_iter=1).fit(x, y)
    with pytest.raises(ValueError, match="at least 2 classes"):
        derive.MLPClassifier(**shared, max_iter=1).fit(x, np.zeros(150))
    with pytest.raises(ValueError, match="NaN"):
        derive.MLPClassifier(**shared, max_iter=1).fit(np.full((150, 4), np.nan), y)


@pytest.mark.slow
def test_scikit_learn_estimator_checks():
    from sklearn.utils.estimator_checks import check_estimator

    for estimator in (
        derive.MLPClassifier((10,), learning_rate_init=0.01, max_iter=200, random_state=0),
        derive.MLPRegressor((10,), learning_rate_init=0.01, max_iter=200, random_state=0),
    ):
        check_estimator(estimator)  # every check scikit-learn has


@pytest.mark.slow
def test_readme_estimators_example_runs(tmp_path):
    """Seven fits on digits (11 CPU-s): in the slow run. The default run covers the same calls
    (make_pipeline, StandardScaler, GridSearchCV, one derivation per network) on iris in
    test_pipeline_cross_val_and_grid_search_derive_each_network_once."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("```python\n", text.index("\n## Estimators\n")) + len("```python\n")
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", text[start : text.index("```", start)]],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "mlpclassifier__learning_rate_init" in result.stdout
    assert float(result.stdout.split()[-1]) > 0.9


def test_classifier_with_layer_kinds_keeps_its_own_running_statistics(kinds_classifier):
    """hidden_layer_sizes takes layer kinds; batch norm's running statistics are the
    estimator's own (``state_``), and predict reads them, row by row as in a batch."""
    clf = kinds_classifier
    x, y = standardized_iris()
    assert clf.loss_curve_[-1] < 0.5 * clf.loss_curve_[0]
    assert clf.score(x, y) > 0.8
    assert set(clf.state_) == {"running_mean2", "running_var2"}
    labels = clf.predict(x[:20])
    np.testing.assert_array_equal(labels, [clf.predict(x[k : k + 1])[0] for k in range(20)])
    other = derive.MLPClassifier(KINDS, activation="tanh", max_iter=5, random_state=1).fit(x, y)
    assert not np.array_equal(other.state_["running_mean2"], clf.state_["running_mean2"])
    np.testing.assert_array_equal(clf.predict(x[:20]), labels)  # the other fit left ours alone
    with pytest.raises(ValueError, match="hidden_layer_sizes must be positive ints or layer kinds"):
        derive.MLPClassifier((8, None)).fit(x, y)


def test_classifier_with_a_projection_trains_on_the_pair_w_p(kinds_classifier):
    """A projected block's coefs_ entry is [W_l | P_l] (n_{l-1} x 2 n_l), as its params.

    In KINDS it follows a batch norm (γ_2, the first (1, 8) entry), a residual block and a
    layer norm (γ_4, the second); a projection network's end-to-end check runs in
    tests/test_penalty_kinds.py."""
    clf = kinds_classifier
    x, y = standardized_iris()
    assert clf.loss_curve_[-1] < 0.5 * clf.loss_curve_[0]
    assert clf.score(x, y) > 0.8
    assert [w.shape for w in clf.coefs_] == [(4, 8), (1, 8), (8, 8), (1, 8), (8, 12), (6, 3)]


def test_alpha_with_layer_kinds_is_the_derived_penalty_on_w_not_gamma():
    """With layer kinds, alpha is the proved penalty (fit's l2 = alpha / batch) on W_l and
    P_l: one plain SGD step over the whole batch is θ ← θ - lr (mean gradient + alpha/m θ)
    for W_l, the plain mean gradient step for b_l, γ_l and β_l (the optimizer's
    weight_decay, used before, decayed γ_l as a pair's first array: this fails then)."""
    from sklearn.utils.validation import check_random_state

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((10, 3)), rng.standard_normal(10)
    alpha, lr = 2.0, 0.1
    reg = derive.MLPRegressor(
        (4, "ln"),
        activation="tanh",
        solver="sgd",
        momentum=0.0,
        alpha=alpha,
        batch_size=10,
        max_iter=1,
        shuffle=False,
        random_state=0,
        learning_rate_init=lr,
    ).fit(x, y)
    module = _build.network_module("3,4,ln,1", "tanh,identity", "l2", True)
    assert module.L2_PENALTY
    init_seed, _ = (int(s) for s in check_random_state(0).randint(0, 2**31 - 1, size=2))
    before = module.init_params(seed=init_seed)
    _, grads = module.backprop(before, x, y[:, None])
    for k, (pair, old, grad) in enumerate(zip(reg.params_, before, grads, strict=True)):
        decay = alpha / 10 * old[0] if k != 1 else 0.0  # pair 1 is (γ_2, β_2)
        np.testing.assert_allclose(pair[0], old[0] - lr * (grad[0] / 10 + decay), rtol=1e-12)
        np.testing.assert_allclose(pair[1], old[1] - lr * grad[1] / 10, rtol=1e-12)
