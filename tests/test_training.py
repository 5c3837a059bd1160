"""The training runtime every generated module includes (derive/backends/numpy/templates/training.py)."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import catalog_module, steady_state_peak

ROOT = Path(__file__).resolve().parent.parent
TRAINING = ROOT / "derive" / "backends" / "numpy" / "templates" / "training.py"


def module(layers: str, activation: str = "tanh", loss: str = "l2"):
    """The module for a spec, rendered once per process as derive.derive(...).module() renders
    it, without the proof: this file's claim is the training runtime; the proofs are
    test_proof's and test_catalog's (proving here cost 3 CPU-s of relu, softmax and BCE lemmas)."""
    return catalog_module(layers, activation, loss)


def copy(params):
    return [(w.copy(), b.copy()) for w, b in params]


def same(a, b) -> bool:
    return all(
        np.array_equal(w1, w2) and np.array_equal(b1, b2)
        for (w1, b1), (w2, b2) in zip(a, b, strict=True)
    )


# --- the file itself ------------------------------------------------------------


def test_training_file_is_linted_and_formatted():
    """Typed by tests/test_lint.py's one mypy run, with every generated module."""
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    config = ["--config", str(ROOT / "pyproject.toml")]
    assert subprocess.run([ruff, "check", "--no-cache", str(TRAINING), *config]).returncode == 0
    fmt = [ruff, "format", "--check", "--no-cache", str(TRAINING), *config]
    assert subprocess.run(fmt).returncode == 0


def test_generated_modules_include_the_runtime_verbatim():
    text = TRAINING.read_text(encoding="utf-8")
    body = text.split("# ---- generated modules include this file from the next line on ----\n")[1]
    for path in (ROOT / "generated").glob("*.py"):
        assert path.read_text(encoding="utf-8").endswith(body), path.name


# --- each update rule, worked by hand ----------------------------------------------


def step_with(opt, grads_by_step):
    """Run opt over scalar-parameter gradients; return the trajectory of W1[0, 0]."""
    out = []
    for g in grads_by_step:
        ((dw, db),) = opt.grads
        dw.fill(g)
        db.fill(0.0)
        opt.step()
        out.append(float(opt.params[0][0][0, 0]))
    return out


@pytest.fixture
def scalar_net():
    """One weight, one bias: the update rules read off a single number."""
    m = module("1,1", "identity")
    params = [(np.array([[1.0]]), np.array([[0.0]]))]
    return m, params


GRADS = [0.5, -0.25, 1.0]


def test_sgd_by_hand(scalar_net):
    m, params = scalar_net
    assert step_with(m.SGD(params, lr=0.1), GRADS) == pytest.approx([0.95, 0.975, 0.875])


def test_momentum_by_hand(scalar_net):
    m, params = scalar_net
    # v1 = g1, v2 = 0.9 v1 + g2 = 0.2, v3 = 0.9·0.2 + 1 = 1.18
    expected = [1 - 0.05, 1 - 0.05 - 0.02, 1 - 0.05 - 0.02 - 0.118]
    assert step_with(m.SGD(params, lr=0.1, momentum=0.9), GRADS) == pytest.approx(expected)


def test_nesterov_by_hand(scalar_net):
    m, params = scalar_net
    # d_t = g_t + 0.9 v_t: 0.5 + 0.45, -0.25 + 0.18, 1 + 1.062
    expected = [1 - 0.095, 1 - 0.095 + 0.007, 1 - 0.095 + 0.007 - 0.2062]
    opt = m.SGD(params, lr=0.1, momentum=0.9, nesterov=True)
    assert step_with(opt, GRADS) == pytest.approx(expected)


def test_rmsprop_by_hand(scalar_net):
    m, params = scalar_net
    s, p, expected = 0.0, 1.0, []
    for g in GRADS:
        s = 0.9 * s + 0.1 * g * g
        p -= 0.01 * g / (math.sqrt(s) + 1e-8)
        expected.append(p)
    opt = m.RMSProp(params, lr=0.01, rho=0.9)
    assert step_with(opt, GRADS) == pytest.approx(expected, rel=1e-12)


def adam_by_hand(decoupled: float = 0.0):
    """Kingma & Ba, Algorithm 1, with decoupled decay as in Loshchilov & Hutter."""
    mean, square, p, out = 0.0, 0.0, 1.0, []
    for t, g in enumerate(GRADS, start=1):
        mean = 0.9 * mean + 0.1 * g
        square = 0.999 * square + 0.001 * g * g
        mean_hat = mean / (1 - 0.9**t)
        square_hat = square / (1 - 0.999**t)
        p = p - 0.1 * decoupled * p - 0.1 * mean_hat / (math.sqrt(square_hat) + 1e-8)
        out.append(p)
    return out


def test_adam_by_hand_including_bias_correction(scalar_net):
    m, params = scalar_net
    trajectory = step_with(m.Adam(params, lr=0.1), GRADS)
    assert trajectory == pytest.approx(adam_by_hand(), rel=1e-12)
    # with bias correction the first step moves by lr exactly (m̂/√v̂ = sign g)
    assert trajectory[0] == pytest.approx(1 - 0.1, rel=1e-7)


def test_adamw_by_hand(scalar_net):
    m, params = scalar_net
    trajectory = step_with(m.AdamW(params, lr=0.1, weight_decay=0.5), GRADS)
    assert trajectory == pytest.approx(adam_by_hand(decoupled=0.5), rel=1e-12)


def test_coupled_weight_decay_spares_biases(scalar_net):
    m, params = scalar_net
    params[0][1].fill(2.0)
    opt = m.SGD(params, lr=0.1, weight_decay=0.5)
    opt.step()  # zero gradients: only the decay acts
    assert params[0][0][0, 0] == pytest.approx(1 - 0.1 * 0.5)
    assert params[0][1][0, 0] == 2.0


# --- torch.optim as an oracle ----------------------------------------------------------

TORCH_CASES = [
    ("sgd", {"lr": 0.05}, {"lr": 0.05}),
    ("sgd", {"lr": 0.05, "momentum": 0.9}, {"lr": 0.05, "momentum": 0.9}),
    (
        "sgd",
        {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1},
        {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1},
    ),
    (
        "rmsprop",
        {"lr": 0.01, "weight_decay": 0.1},
        {"lr": 0.01, "alpha": 0.99, "weight_decay": 0.1},
    ),
    ("adam", {"lr": 0.01, "weight_decay": 0.1}, {"lr": 0.01, "weight_decay": 0.1}),
    ("adamw", {"lr": 0.01, "weight_decay": 0.1}, {"lr": 0.01, "weight_decay": 0.1}),
]


@pytest.mark.parametrize(("name", "ours", "theirs"), TORCH_CASES)
def test_optimizers_match_torch_optim(name, ours, theirs):
    torch = pytest.importorskip("torch")
    m = module("3,4,2")
    params = m.init_params(seed=1)
    kinds = {"sgd": (m.SGD, torch.optim.SGD), "rmsprop": (m.RMSProp, torch.optim.RMSprop)}
    kinds |= {"adam": (m.Adam, torch.optim.Adam), "adamw": (m.AdamW, torch.optim.AdamW)}
    ours_kind, torch_kind = kinds[name]
    weights = [torch.tensor(w, requires_grad=True) for w, _ in params]
    biases = [torch.tensor(b, requires_grad=True) for _, b in params]
    decay = theirs.pop("weight_decay", 0.0)
    reference = torch_kind(
        [{"params": weights, "weight_decay": decay}, {"params": biases, "weight_decay": 0.0}],
        **theirs,
    )
    opt = ours_kind(params, **ours)
    rng = np.random.default_rng(2)
    for _ in range(6):
        for (dw, db), w, b in zip(opt.grads, weights, biases, strict=True):
            dw[...] = rng.standard_normal(dw.shape)
            db[...] = rng.standard_normal(db.shape)
            w.grad, b.grad = torch.tensor(dw.copy()), torch.tensor(db.copy())
        opt.step()
        reference.step()
    for (w, b), tw, tb in zip(params, weights, biases, strict=True):
        np.testing.assert_allclose(w, tw.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(b, tb.detach().numpy(), rtol=1e-10, atol=1e-12)


# --- allocation ------------------------------------------------------------------------


ARRAY_BYTES = 96 * 256 * 8  # one weight matrix of the net below


@pytest.mark.parametrize("name", ["sgd", "nesterov", "rmsprop", "adam", "adamw"])
def test_training_step_allocates_no_array(name):
    m = module("96,256,192")
    params = m.init_params(seed=3)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 96)), rng.standard_normal((64, 192))
    opt = m.make_optimizer(name, params, weight_decay=0.01)

    def step():  # what fit does per minibatch
        m.backprop(opt.working_params, x, y, out=opt.grads)
        opt._step()

    assert steady_state_peak(step)[0] < 4096


def _onehot(rng, m: int, n: int):
    return np.eye(n)[rng.integers(0, n, m)]


@pytest.mark.parametrize(
    ("activation", "loss"),
    [("relu", "softmax_cross_entropy"), ("relu", "l2"), ("tanh", "softmax_cross_entropy")],
)
def test_training_step_allocates_no_array_for_relu_and_softmax(activation, loss):
    """relu in place (np.maximum, Heaviside's step for a'), softmax's log-sum-exp once
    into a row buffer and reused by the loss: no temporaries in the step.  (The row-sum
    check of the targets makes (m,) arrays: 64 floats each, far below one weight matrix.)"""
    m = module("96,256,192", activation, loss)
    params = m.init_params(seed=3)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 96)), _onehot(rng, 64, 192)
    opt = m.make_optimizer("adam", params)

    def step():
        m.backprop(opt.working_params, x, y, out=opt.grads)
        opt._step()

    assert steady_state_peak(step)[0] < 4096


def test_allocation_check_sees_a_naive_update():
    """Negative control: an update written with temporaries is caught."""
    m = module("96,256,192")
    params = m.init_params(seed=3)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 96)), rng.standard_normal((64, 192))
    opt = m.make_optimizer("sgd", params)

    def step():
        m.backprop(opt.working_params, x, y, out=opt.grads)
        for (w, b), (dw, db) in zip(opt.working_params, opt.grads, strict=True):
            w -= 0.01 * dw
            b -= 0.01 * db

    assert steady_state_peak(step)[0] >= ARRAY_BYTES


# --- fit -------------------------------------------------------------------------------


def blobs(n: int = 120, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.standard_normal((n, 4)) * 0.5 + np.eye(3, 4)[y] * 2
    return x, y


@pytest.fixture
def classifier():
    return module("4,8,3", "tanh", "softmax_cross_entropy")


def test_fit_learns_and_reports_history(classifier):
    x, y = blobs()
    params = classifier.init_params(seed=0)
    history = classifier.fit(
        params, x, y, epochs=15, batch_size=16, lr=0.01, seed=0, validation=(x, y)
    )
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 15 for v in history.values())
    assert history["loss"][-1] < history["loss"][0] / 3
    assert history["accuracy"][-1] == classifier.score(params, x, y) > 0.9
    assert history["val_loss"][-1] == pytest.approx(classifier.loss(params, x, np.eye(3)[y]) / 120)


def test_same_seed_same_result_bit_for_bit(classifier):
    x, y = blobs()
    runs = []
    for seed in (5, 5, 6):
        params = classifier.init_params(seed=0)
        history = classifier.fit(params, x, y, epochs=4, optimizer="nesterov", seed=seed)
        runs.append((params, history))
    assert same(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]
    assert not same(runs[0][0], runs[2][0])  # the seed does matter


def test_digits_reach_96_percent():
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    import generated.mlp_64_32_10 as m

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x / 16, y, test_size=0.2, stratify=y, random_state=0
    )
    params = m.init_params(seed=0)
    m.fit(params, x_train, y_train, epochs=20, batch_size=32, lr=3e-3, seed=0)
    assert m.score(params, x_test, y_test) >= 0.96


def test_keyboard_interrupt_keeps_the_last_finished_step(classifier):
    x, y = blobs()
    reference = classifier.init_params(seed=0)
    classifier.fit(reference, x, y, epochs=2, batch_size=120, seed=0)
    params = classifier.init_params(seed=0)
    real, calls = classifier.backprop, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # in the third step (one step per epoch)
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    classifier.backprop = interrupted
    try:
        history = classifier.fit(params, x, y, epochs=5, batch_size=120, seed=0)
    finally:
        classifier.backprop = real
    assert len(history["loss"]) == 2
    assert same(params, reference)


def test_callback_can_stop_and_sees_current_params(classifier):
    x, y = blobs()
    params = classifier.init_params(seed=0)
    seen = []

    def callback(epoch, history):
        seen.append((epoch, classifier.score(params, x, y), history["accuracy"][-1]))
        return epoch == 3

    history = classifier.fit(params, x, y, epochs=10, seed=0, callback=callback)
    assert len(history["loss"]) == 3 and [e for e, _, _ in seen] == [1, 2, 3]
    assert all(live == recorded for _, live, recorded in seen)


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
def test_diverging_loss_raises_naming_epoch_and_step():
    m = module("2,3,1", "identity")
    x = np.random.default_rng(0).standard_normal((40, 2)) * 100
    y = x.sum(axis=1)
    params = m.init_params(seed=0)
    with pytest.raises(FloatingPointError, match=r"at epoch \d+, step \d+ of 5") as err:
        m.fit(params, x, y, epochs=50, batch_size=8, optimizer="sgd", lr=10.0, seed=0)
    assert "loss became" in str(err.value) or "gradient became" in str(err.value)
    assert all(np.isfinite(w).all() and np.isfinite(b).all() for w, b in params)


def test_checkpoint_resumes_exactly(classifier, tmp_path):
    x, y = blobs()
    straight = classifier.init_params(seed=0)
    opt = classifier.make_optimizer("adam", straight)
    classifier.fit(straight, x, y, epochs=2, optimizer=opt, seed=1)
    classifier.fit(straight, x, y, epochs=2, optimizer=opt, seed=2)

    params = classifier.init_params(seed=0)
    opt = classifier.make_optimizer("adam", params)
    classifier.fit(params, x, y, epochs=2, optimizer=opt, seed=1)
    classifier.save_checkpoint(str(tmp_path / "c.npz"), params, opt)
    resumed, opt2 = classifier.load_checkpoint(str(tmp_path / "c.npz"))
    assert type(opt2) is classifier.Adam and opt2.steps == opt.steps
    assert same(classifier.load_params(str(tmp_path / "c.npz")), params)
    classifier.fit(resumed, x, y, epochs=2, optimizer=opt2, seed=2)
    assert same(resumed, straight)


def test_checkpoint_without_the_state_would_differ(classifier, tmp_path):
    """Negative control: a fresh optimizer (no restored state) ends elsewhere."""
    x, y = blobs()
    a = classifier.init_params(seed=0)
    opt = classifier.make_optimizer("adam", a)
    classifier.fit(a, x, y, epochs=2, optimizer=opt, seed=1)
    b = copy(a)
    classifier.fit(a, x, y, epochs=1, optimizer=opt, seed=2)
    classifier.fit(b, x, y, epochs=1, optimizer="adam", seed=2)
    assert not same(a, b)


# --- predict, score, gradcheck -------------------------------------------------------


def test_predict_and_proba(classifier):
    x, y = blobs()
    params = classifier.init_params(seed=0)
    classifier.fit(params, x, y, epochs=10, seed=0)
    proba = classifier.predict_proba(params, x)
    np.testing.assert_allclose(proba.sum(axis=1), 1)
    labels = classifier.predict(params, x)
    assert labels.shape == (120,) and labels.dtype == np.int64
    assert classifier.score(params, x, y) == np.mean(labels == y)


def test_binary_cross_entropy_labels():
    m = module("4,5,1", "tanh", "sigmoid_binary_cross_entropy")
    x, y = blobs()
    y = (y == 1).astype(int)
    params = m.init_params(seed=0)
    m.fit(params, x, y, epochs=20, lr=0.01, seed=0)
    assert m.predict(params, x).shape == (120,)
    assert m.score(params, x, y) == np.mean(m.predict(params, x) == y) > 0.9
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        m.fit(params, x, y * 2, epochs=1)


def test_r2_matches_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    m = module("3,4,2", "tanh")  # the torch.optim tests' network
    rng = np.random.default_rng(1)
    x = rng.standard_normal((30, 3))
    y = np.column_stack([x[:, 0] - x[:, 1], np.full(30, 2.0)])  # the second output is constant
    params = m.init_params(seed=0)
    expected = metrics.r2_score(y, m.predict(params, x))
    assert m.score(params, x, y) == pytest.approx(expected)
    with pytest.raises(ValueError, match="predict_proba needs a classification loss"):
        m.predict_proba(params, x)


def test_gradcheck_passes_and_catches_a_wrong_gradient(classifier):
    x, y = blobs(8)
    params = classifier.init_params(seed=0)
    assert classifier.gradcheck(params, x, y) < 1e-6
    real = classifier.backprop

    def wrong(*args, **kwargs):
        value, grads = real(*args, **kwargs)
        grads[0][0][0, 0] *= 1.01
        return value, grads

    classifier.backprop = wrong
    try:
        assert classifier.gradcheck(params, x, y) > 1e-3
    finally:
        classifier.backprop = real


# --- bad input -------------------------------------------------------------------------

BAD_CALLS = [
    ({"y": np.array([0, 1, 3] * 40)}, "holds label 3 at row 2; labels must be 0..2"),
    ({"y": np.array([0, -1, 2] * 40)}, "holds label -1 at row 1"),
    ({"y": np.array([0.5, 1, 2] * 40)}, "class labels are 0..2"),
    ({"y": np.eye(3)[:2]}, "has 2 rows, x has 120"),
    ({"x": np.full((120, 4), np.nan)}, "x contains NaN or inf"),
    ({"x": np.zeros((0, 4)), "y": np.zeros(0, int)}, "x is empty"),
    ({"x": np.zeros((120, 5))}, r"x must have shape \(m, 4\)"),
    ({"epochs": 0}, "epochs must be a whole number >= 1, got 0"),
    ({"batch_size": 0}, "batch_size must be a whole number >= 1"),
    ({"lr": 0.0}, "lr must be a finite number > 0"),
    ({"lr": -1.0}, "lr must be a finite number > 0"),
    ({"lr": float("nan")}, "lr must be a finite number > 0"),
    ({"optimizer": "adagrad"}, "unknown optimizer 'adagrad'; choose one of sgd"),
    ({"weight_decay": -0.1}, "weight_decay must be a finite number >= 0"),
    ({"validation": (np.zeros((3, 4)), np.array([0, 1, 5]))}, "validation y holds label 5"),
]


@pytest.mark.parametrize(("change", "message"), BAD_CALLS)
def test_bad_input_is_refused_and_params_untouched(classifier, change, message):
    x, y = blobs()
    params = classifier.init_params(seed=0)
    before = copy(params)
    arguments = {"x": x, "y": y, "epochs": 2, **change}
    with pytest.raises(ValueError, match=message):
        classifier.fit(params, arguments.pop("x"), arguments.pop("y"), **arguments)
    assert same(params, before)


def test_bad_optimizer_settings():
    m = module("3,4,2")
    params = m.init_params(seed=0)
    with pytest.raises(ValueError, match="momentum must be in"):
        m.SGD(params, momentum=1.0)
    with pytest.raises(ValueError, match="nesterov=True needs a momentum"):
        m.SGD(params, nesterov=True)
    with pytest.raises(ValueError, match="beta2 must be in"):
        m.Adam(params, beta2=1.0)


def readme_block(section: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("```python\n", text.index(f"\n## {section}\n")) + len("```python\n")
    return text[start : text.index("```", start)]


def test_readme_training_example_runs(tmp_path, monkeypatch, capsys):
    """The README's block as written, run in this process: its claim is the code, not a
    process (a fresh interpreter cost 2 CPU-s of imports; test_readme.py runs the README's
    first example in one)."""
    pytest.importorskip("sklearn")
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_block("Training"), "README.md", "exec"), {"__name__": "readme"})
    accuracy, score, error = (float(line) for line in capsys.readouterr().out.split())
    assert accuracy == score >= 0.96 and error < 1e-3
    assert (tmp_path / "ckpt.npz").is_file()
