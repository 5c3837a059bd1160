"""The catalog: every activation x loss, against finite differences and an
independent numpy reference, on extreme inputs, and the checkers' negative
controls (a wrong rewrite, stable form or fused delta must be rejected)."""

from __future__ import annotations

import itertools
import py_compile
import shutil
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
from helpers import (
    ACTS,
    FUSED,
    LOSSES,
    assert_grads_close,
    catalog_module,
    central_differences,
    targets,
)
from sympy.codegen.cfunctions import expm1
from sympy.codegen.numpy_nodes import logaddexp

from derive import catalog, model, naming, proof, spec
from derive.catalog import A, z
from derive.derivation import derive
from derive.expr import ActivateDeriv, Add, Hadamard, LossGrad

module = catalog_module


# --- an independent reference, plain numpy, written from the textbook ----------


def _sigmoid(v):
    out = np.empty_like(v)
    pos = v >= 0
    out[pos] = 1 / (1 + np.exp(-v[pos]))
    e = np.exp(v[~pos])
    out[~pos] = e / (1 + e)
    return out


def _softplus(v):
    return np.maximum(v, 0) + np.log1p(np.exp(-np.abs(v)))


GELU_C = np.sqrt(2 / np.pi)


def _gelu_prime(v):
    u = GELU_C * (v + 0.044715 * v**3)
    t = np.tanh(u)
    return 0.5 * (1 + t) + 0.5 * v * (1 - t**2) * GELU_C * (1 + 3 * 0.044715 * v**2)


REFERENCE = {  # name: (a(z), a'(z)), with a'(0) the left derivative
    "tanh": (np.tanh, lambda v: 1 / np.cosh(np.minimum(np.abs(v), 300)) ** 2),
    "sigmoid": (_sigmoid, lambda v: _sigmoid(v) * _sigmoid(-v)),
    "relu": (lambda v: np.maximum(v, 0), lambda v: (v > 0) * 1.0),
    "leaky_relu": (lambda v: np.where(v > 0, v, 0.01 * v), lambda v: np.where(v > 0, 1.0, 0.01)),
    "softplus": (_softplus, _sigmoid),
    "identity": (lambda v: v, np.ones_like),
    "elu": (
        lambda v: np.where(v > 0, v, np.expm1(np.minimum(v, 0))),
        lambda v: np.where(v > 0, 1.0, np.exp(np.minimum(v, 0))),
    ),
    "gelu": (lambda v: 0.5 * v * (1 + np.tanh(GELU_C * (v + 0.044715 * v**3))), _gelu_prime),
}


def _log_softmax(v):
    shifted = v - v.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def reference(params, x, y, acts: list[str], loss: str):
    """Loss and gradients by the textbook's backprop, from the per-layer names."""
    zs, activations = [], [x]
    for (w, b), name in zip(params, acts, strict=True):
        zs.append(activations[-1] @ w + b)
        if name == "softmax":
            activations.append(np.exp(_log_softmax(zs[-1])))
        else:
            activations.append(REFERENCE[name][0](zs[-1]))
    out, last = activations[-1], zs[-1]
    m, n = out.shape
    if loss == "l2":
        value, delta = np.sum((out - y) ** 2), 2 * (out - y) * REFERENCE[acts[-1]][1](last)
    elif loss == "mse":
        value, delta = (
            np.mean((out - y) ** 2),
            2 * (out - y) / (m * n) * REFERENCE[acts[-1]][1](last),
        )
    elif loss == "softmax_cross_entropy":
        value, delta = -np.sum(y * _log_softmax(last)), out - y
    else:
        value, delta = np.sum(_softplus(last) - y * last), out - y
    grads = []
    for layer in range(len(params), 0, -1):
        grads.append((activations[layer - 1].T @ delta, delta.sum(axis=0, keepdims=True)))
        if layer > 1:
            delta = delta @ params[layer - 1][0].T * REFERENCE[acts[layer - 2]][1](zs[layer - 2])
    return value, grads[::-1]


def random_params(sizes, rng):
    return [
        (rng.standard_normal((a, b)), rng.standard_normal((1, b)))
        for a, b in itertools.pairwise(sizes)
    ]


def finite_differences(mod, params, x, y):
    """Central differences of the module's loss for every parameter entry."""
    return central_differences(lambda p: mod.loss(p, x, y), params)


def layer_names(activation: str, loss: str, depth: int) -> list[str]:
    names = activation.split(",")
    names = names * depth if len(names) == 1 else names
    if loss in FUSED:
        names[-1] = catalog.loss_function(loss).link.name
    return names


# --- every activation x loss -----------------------------------------------------


@pytest.mark.parametrize("act,loss", list(itertools.product(ACTS, LOSSES)))
def test_every_pair_matches_reference_and_finite_differences(act, loss):
    sizes, layers = (3, 4, 2), "3,4,2"
    mod = module(layers, act, loss)
    rng = np.random.default_rng(zlib.crc32(f"{act},{loss}".encode()))
    params = random_params(sizes, rng)
    x = rng.standard_normal((5, 3))
    y = targets(loss, rng, 5, 2)
    value, grads = mod.backprop(params, x, y)
    ref_value, ref_grads = reference(params, x, y, layer_names(act, loss, 2), loss)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    assert_grads_close(grads, ref_grads, rtol=1e-10, atol=1e-12)
    assert_grads_close(grads, finite_differences(mod, params, x, y), rtol=1e-5, atol=1e-7)


# The extreme-input tests feed x straight through: W_1 = I (3x4) and W_2 = I (4x2), rectangular
# identities (np.eye(3, 4)), so z_1 = (x, 0) and z_2 = a_1(z_1)'s first two columns, which hold
# every extreme value. The same 3,4,2 modules as above: no network is rendered twice.
def pass_through(dtype=np.float64):
    return [
        (np.eye(a, b, dtype=dtype), np.zeros((1, b), dtype=dtype))
        for a, b in itertools.pairwise((3, 4, 2))
    ]


@pytest.mark.parametrize("act,loss", list(itertools.product(ACTS, LOSSES)))
def test_extreme_inputs_stay_finite_and_correct(act, loss):
    """|z| up to 1e4, with every floating-point warning an error (underflow to 0 is fine)."""
    mod = module("3,4,2", act, loss)
    params = pass_through()
    x = np.array(
        [
            [-1e4, 1e4, -30.0],
            [-700.0, 800.0, 30.0],
            [-30.0, 2.5, 0.0],
            [0.0, -2.5, 1e4],
            [30.0, -800.0, -1e4],
        ]
    )
    y = targets(loss, np.random.default_rng(0), 5, 2)
    if loss == "softmax_cross_entropy":
        # one-hot on the smaller logit: the log of a vanishing probability must not be log(0)
        y = np.eye(2)[[0, 0, 0, 1, 1]]
    with warnings.catch_warnings(), np.errstate(over="raise", divide="raise", invalid="raise"):
        warnings.simplefilter("error")
        value, grads = mod.backprop(params, x, y)
        prediction = mod.forward(params, x)
    assert np.isfinite(value) and np.all(np.isfinite(prediction))
    for gw, gb in grads:
        assert np.all(np.isfinite(gw)) and np.all(np.isfinite(gb))
    with np.errstate(all="ignore"):
        ref_value, ref_grads = reference(params, x, y, layer_names(act, loss, 2), loss)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    assert_grads_close(grads, ref_grads, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("act,loss", list(itertools.product(ACTS, LOSSES)))
def test_extreme_inputs_in_float32_agree_with_float64(act, loss):
    """float32 overflows at e^89: the stable forms must not care."""
    mod = module("3,4,2", act, loss)
    x = np.array([[-1e4, 1e4, 95.0], [-60.0, 95.0, -1e4], [0.5, -95.0, 1e4]])
    y = np.eye(2)[[0, 0, 1]] if loss == "softmax_cross_entropy" else np.full((3, 2), 0.25)
    results = []
    for dtype in (np.float32, np.float64):
        params = pass_through(dtype)
        with warnings.catch_warnings(), np.errstate(over="raise", divide="raise", invalid="raise"):
            warnings.simplefilter("error")
            results.append(mod.backprop(params, x.astype(dtype), y.astype(dtype)))
    (v32, g32), (v64, g64) = results
    np.testing.assert_allclose(v32, v64, rtol=1e-5)
    assert_grads_close(g32, g64, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("act,loss", list(itertools.product(ACTS, LOSSES)))
def test_nan_in_the_input_is_not_made_finite(act, loss):
    mod = module("3,4,2", act, loss)
    rng = np.random.default_rng(3)
    params, x = random_params((3, 4, 2), rng), rng.standard_normal((2, 3))
    x[0, 0] = np.nan
    with np.errstate(invalid="ignore"):
        value, grads = mod.backprop(params, x, targets(loss, rng, 2, 2))
        assert np.isnan(value) and np.isnan(grads[0][0]).any()
        assert np.isnan(mod.forward(params, x)[0]).all()


W_ERROR_SCRIPT = (
    "import numpy as np, importlib.util, sys\n"
    "for path in sys.argv[1:]:\n"
    "    s = importlib.util.spec_from_file_location('m', path)\n"
    "    m = importlib.util.module_from_spec(s)\n"
    "    s.loader.exec_module(m); n = m.SIZES[0]\n"
    "    p = [(np.eye(a, b), np.zeros((1, b))) for a, b in zip(m.SIZES, m.SIZES[1:])]\n"
    "    x = np.linspace(-1e4, 1e4, 2 * n).reshape(2, n); y = np.eye(m.SIZES[-1])[:2]\n"
    "    v, g = m.backprop(p, x, y)\n"
    "    assert np.isfinite(v), path\n"
    "    assert all(np.isfinite(a).all() for pair in g for a in pair), path\n"
)


def _run_clean_under_python_dash_W_error(pairs):
    paths = [str(module("3,4,2", act, loss).__file__) for act, loss in pairs]
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", W_ERROR_SCRIPT, *paths],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_extreme_inputs_run_clean_under_python_dash_W_error():
    """Every activation and loss (FAST_PAIRS, below); every pair is run with warnings as errors
    in-process above (test_extreme_inputs_stay_finite_and_correct), and under -W error in the slow
    run (importing 32 modules in a fresh interpreter: 4.7 CPU-s)."""
    _run_clean_under_python_dash_W_error(FAST_PAIRS)


@pytest.mark.slow
def test_every_pair_runs_clean_under_python_dash_W_error():
    _run_clean_under_python_dash_W_error(itertools.product(ACTS, LOSSES))


def test_softmax_cross_entropy_needs_rows_summing_to_one(monkeypatch):
    """Outside the stated assumption, δ_L = Ŷ - Y is not the gradient, so the module refuses."""
    mod = module("3,4,2", "tanh", "softmax_cross_entropy")
    rng = np.random.default_rng(1)
    params, x = random_params((3, 4, 2), rng), rng.standard_normal((4, 3))
    y = 2 * targets("softmax_cross_entropy", rng, 4, 2)  # rows sum to 2
    with pytest.raises(ValueError, match="row 0 of y sums to 2"):
        mod.backprop(params, x, y)
    monkeypatch.setattr(mod, "_check_targets", lambda y: None)  # why: finite differences disagree
    _, grads = mod.backprop(params, x, y)
    with pytest.raises(AssertionError):
        assert_grads_close(grads, finite_differences(mod, params, x, y), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("act,loss", list(itertools.product(ACTS, LOSSES)))
def test_float32_stays_float32(act, loss):
    mod = module("3,4,2", act, loss)
    params = mod.init_params(0, np.float32)
    x, y = np.ones((2, 3), np.float32), np.full((2, 2), 0.5, np.float32)
    assert mod.forward(params, x).dtype == np.float32
    _, grads = mod.backprop(params, x, y)
    assert all(g.dtype == np.float32 for pair in grads for g in pair)


def test_parametric_slope_reaches_the_code():
    mod = module("3,4,2", "leaky_relu:0.2", "l2")
    rng = np.random.default_rng(2)
    params, x, y = (
        random_params((3, 4, 2), rng),
        rng.standard_normal((5, 3)),
        rng.standard_normal((5, 2)),
    )
    z1 = x @ params[0][0] + params[0][1]
    assert (z1 < 0).any()
    a1 = np.where(z1 > 0, z1, 0.2 * z1)
    np.testing.assert_allclose(
        mod.forward(params, x), np.where((a := a1 @ params[1][0] + params[1][1]) > 0, a, 0.2 * a)
    )
    assert_grads_close(
        mod.backprop(params, x, y)[1], finite_differences(mod, params, x, y), rtol=1e-5, atol=1e-7
    )


# --- the generated code is lint-clean, formatted, compiles and is deterministic ----


def test_generated_modules_pass_ruff_and_compile():
    mods = [module("3,4,2", act, loss) for act in ACTS for loss in LOSSES]
    mods.append(module("5,4,3,2", "leaky_relu:0.2,gelu,softmax", "softmax_cross_entropy"))
    paths = [m.__file__ for m in mods]
    for path in paths:
        py_compile.compile(path, doraise=True)
    root = Path(__file__).resolve().parent.parent
    ruff = [sys.executable, "-m", "ruff"]
    config = ["--config", str(root / "pyproject.toml")]
    check = subprocess.run([*ruff, "check", *config, *paths], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    fmt = subprocess.run(
        [*ruff, "format", "--check", *config, *paths], capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


# --- what SymPy found, and the checkers' negative controls ------------------------


def test_rewrites_found_automatically():
    found = {name: catalog.activation(name).derivative_from_output for name in ACTS}
    assert sp.expand(found["tanh"] - (1 - A**2)) == 0
    assert sp.expand(found["sigmoid"] - A * (1 - A)) == 0
    assert sp.expand(found["softplus"] - (1 - sp.exp(-A))) == 0
    assert found["identity"] == 1
    assert found["relu"] == sp.Piecewise((1, A > 0), (0, True))
    assert found["leaky_relu"] == sp.Piecewise((1, A > 0), (sp.Rational(1, 100), True))
    assert found["elu"] == sp.Piecewise((1, z > 0), (A + 1, True))  # A > 0 is not decided for elu
    assert found["gelu"] is None


@pytest.mark.parametrize("name", ACTS)
def test_every_activation_check_passes(name):
    check = proof.check_activation(catalog.activation(name))
    assert check.ok, check.detail


WRONG_REWRITES = [
    ("tanh", 1 - A),
    ("tanh", 1 + A**2),
    ("sigmoid", A * (1 + A)),
    ("softplus", sp.exp(-A)),
    ("relu", sp.Heaviside(A)),  # SymPy's Heaviside(0) = 1/2: wrong at the kink
    ("relu", sp.Piecewise((1, A >= 0), (0, True))),  # relu'(0) = 1: not the convention
    ("relu", sp.Piecewise((1, z > 1), (0, True))),
    ("leaky_relu", sp.Piecewise((1, A > 0), (sp.Rational(1, 10), True))),
    ("elu", sp.Piecewise((1, z > 0), (A, True))),
    (
        "elu",
        sp.Piecewise((1, A > 0), (A + 1, True)),
    ),  # true, but not decidable: rejected, not guessed
]


@pytest.mark.parametrize("name,rewrite", WRONG_REWRITES)
def test_wrong_rewrite_is_rejected(name, rewrite):
    act = catalog.activation(name)
    assert not catalog.rewrite_holds(act, rewrite)
    assert not proof.check_activation(act, rewrite=rewrite).ok


WRONG_CODE_FORMS = [
    ("sigmoid", sp.exp(-logaddexp(0, z))),
    ("softplus", logaddexp(0, -z)),
    ("elu", sp.Piecewise((z, z > 0), (expm1(sp.Max(z, 0)), True))),  # clamped to the wrong side
    ("relu", sp.Piecewise((z, z >= 1), (0, True))),
    ("gelu", z / 2 * (1 + sp.tanh(z))),
]


@pytest.mark.parametrize("name,form", WRONG_CODE_FORMS)
def test_wrong_stable_form_is_rejected(name, form):
    assert not proof.check_activation(catalog.activation(name), code_form=form).ok


def test_wrong_derivative_code_form_is_rejected():
    act = catalog.activation("softplus")
    assert not proof.check_activation(act, derivative_code_form=expm1(-A)).ok
    assert proof.check_activation(act, derivative_code_form=-expm1(-A)).ok


def test_wrong_softmax_form_is_rejected():
    bad = sp.exp(catalog.Z[catalog.k] - catalog.LogSumExp(catalog.Z) + 1)
    assert not proof.check_activation(catalog.SOFTMAX, code_form=bad).ok


@pytest.mark.parametrize("loss", LOSSES)
def test_loss_code_form_is_checked(loss):
    fn = catalog.loss_function(loss)
    assert proof.check_loss(fn).ok
    assert not proof.check_loss(fn, code_form=2 * fn.code_form).ok


def test_sums_cancel_only_over_the_same_limits():
    """The row loss's shortcut: Σ_i f + Σ_i (-f) = 0 over the same limits; over other limits,
    or with a term that is no Sum, it says nothing (False) and ``simplify`` decides."""
    from derive.catalog.losses import _summands_cancel
    from derive.catalog.symbols import T, i, outputs

    n, m = outputs, sp.Symbol("m", integer=True, positive=True)
    f = T[i] * sp.log(1 + sp.exp(T[i]))
    assert _summands_cancel(sp.Sum(f, (i, 1, n)) + sp.Sum(-f, (i, 1, n)))
    assert _summands_cancel(sp.Sum(2 * f, (i, 1, n)) - 2 * sp.Sum(f, (i, 1, n)))
    assert not _summands_cancel(sp.Sum(f, (i, 1, n)) + sp.Sum(-f, (i, 1, m)))
    assert not _summands_cancel(sp.Sum(f, (i, 1, n)) + sp.Sum(f, (i, 1, n)))
    assert not _summands_cancel(sp.Sum(f, (i, 1, n)) + 1)


@pytest.mark.parametrize("loss", sorted(FUSED))
def test_fused_delta_is_proved_and_wrong_ones_are_rejected(loss):
    network = spec.network("3,2", "tanh", loss)
    depth, lg = network.depth, LossGrad(model.z(1), model.Y)
    assert proof.check_output_lemma(network).ok
    unfused = Hadamard(lg, ActivateDeriv(depth, model.z(depth)))
    for wrong in [unfused, Add(lg, lg), model.Y]:
        assert not proof.check_output_lemma(network, claims={model.z(depth): wrong}).ok


def test_softmax_fused_delta_fails_without_its_assumption():
    network = spec.network("3,2", "tanh", "softmax_cross_entropy")
    check = proof.check_output_lemma(network, assume=False)
    assert not check.ok and "unconstrained" in check.method


@pytest.mark.parametrize(
    "act,loss",
    [
        # relu + softmax and gelu + BCE at depth three (5.5 CPU-s each) are in the slow run's
        # test_every_pair_is_proved_end_to_end_at_depth_three; by default every activation and
        # loss is proved at depth one (test_every_activation_and_loss_is_proved_at_depth_one)
        # and a per-layer list at depth three here
        pytest.param("relu", "softmax_cross_entropy", marks=pytest.mark.slow),
        pytest.param("gelu", "sigmoid_binary_cross_entropy", marks=pytest.mark.slow),
        ("elu,softplus,identity", "mse"),
    ],
)
def test_verify_passes_for_catalog_networks(act, loss):
    network = spec.network("3,4,2,3", act, loss)
    checks = proof.verify(derive(network))
    assert all(c.ok for c in checks), [(c.name, c.detail) for c in checks if not c.ok]


# --- usage errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "activation,loss,message",
    [
        ("leaky_relu:abc", "l2", "'abc' is not a number"),
        ("leaky_relu:", "l2", "is not a number"),
        ("tanh:2", "l2", "takes no parameter"),
        ("relu,relu", "softmax_cross_entropy", "must be softmax"),
        ("relu,sigmoid", "softmax_cross_entropy", "must be softmax"),
        ("relu,softmax", "l2", "only the output of"),
        ("softmax,softmax", "softmax_cross_entropy", "only the output of"),
        ("relu,tanh", "sigmoid_binary_cross_entropy", "must be sigmoid"),
    ],
)
def test_usage_errors_are_one_line(activation, loss, message):
    with pytest.raises(spec.SpecError, match=message) as err:
        spec.network("3,4,2", activation, loss)
    assert "\n" not in str(err.value)


def test_single_name_with_fused_loss_is_hidden_layers_then_link():
    network = spec.network("64,32,10", "relu", "softmax_cross_entropy")
    assert [a.name for a in network.activations] == ["relu", "softmax"]
    assert naming.command_line(network, "mlp_64_32_10").endswith(
        "--activation relu --loss softmax_cross_entropy"
    )
    same = spec.network("64,32,10", "relu,softmax", "softmax_cross_entropy")
    assert same == network


def test_kink_convention_is_the_same_in_code_and_latex():
    mod = module("2,2", "relu", "l2")
    params = [(np.eye(2), np.zeros((1, 2)))]
    _, grads = mod.backprop(params, np.zeros((1, 2)), -np.ones((1, 2)))  # z = 0 exactly
    assert np.all(grads[0][0] == 0) and np.all(grads[0][1] == 0)  # relu'(0) = 0
    assert catalog.activation("relu").derivative.subs(z, 0) == 0


# Every activation and every loss is proved at depth one in the default run (each activation
# once, on the output layer or, under a fused loss, the hidden one); every pair at depths one and
# three in the slow run.
FAST_PAIRS = [
    ("tanh", "l2"),
    ("sigmoid", "mse"),
    ("relu", "sigmoid_binary_cross_entropy"),
    ("softplus", "softmax_cross_entropy"),
    ("leaky_relu", "mse"),
    ("elu", "l2"),
    ("gelu", "softmax_cross_entropy"),
    ("identity", "mse"),
]
SLOW_PAIRS = [pair for pair in itertools.product(ACTS, LOSSES) if pair not in FAST_PAIRS]


def _assert_proved_at_depth_one(act, loss):
    checks = proof.verify(derive(spec.network("3,2", act, loss)))
    assert all(c.ok for c in checks), [(c.name, c.detail) for c in checks if not c.ok]


@pytest.mark.parametrize("act,loss", FAST_PAIRS)
def test_every_activation_and_loss_is_proved_at_depth_one(act, loss):
    _assert_proved_at_depth_one(act, loss)


@pytest.mark.slow
@pytest.mark.parametrize("act,loss", SLOW_PAIRS)
def test_every_other_pair_is_proved_at_depth_one(act, loss):
    _assert_proved_at_depth_one(act, loss)


@pytest.mark.slow
@pytest.mark.parametrize("act,loss", list(itertools.product(ACTS, LOSSES)))
def test_every_pair_is_proved_end_to_end_at_depth_three(act, loss):
    checks = proof.verify(derive(spec.network("3,2,3,2", act, loss)))
    assert all(c.ok for c in checks), [(c.name, c.detail) for c in checks if not c.ok]


# Every golden's bytes are regenerated and compared in the default run (tests/test_golden.py);
# through the command line with --check, proofs included, one by default and all in the slow run
# (3 CPU-s each for the two below).
CATALOG_GOLDENS = [
    pytest.param("mlp_64_32_10.py", marks=pytest.mark.slow),
    pytest.param("mlp_8_16_1.py", marks=pytest.mark.slow),
    "mlp_6_5_4_3.py",
]


@pytest.mark.parametrize("name", CATALOG_GOLDENS)
def test_catalog_golden_files_are_what_their_header_command_generates(name, capsys):
    import shlex

    from derive import cli

    path = Path(__file__).resolve().parent.parent / "generated" / name
    command = shlex.split(path.read_text(encoding="utf-8").splitlines()[0].split("`")[1])
    assert command[:3] == ["python", "-m", "derive"]
    assert cli.main([*command[3:], "--out", str(path.parent), "--check"]) == 0, (
        capsys.readouterr().out
    )


@pytest.mark.parametrize(
    "act,loss",
    [
        ("relu", "softmax_cross_entropy"),
        ("elu,gelu,sigmoid", "sigmoid_binary_cross_entropy"),
        ("leaky_relu:0.2,softplus,identity", "mse"),
    ],
)
def test_catalog_latex_shows_the_derivations_and_compiles(act, loss, tmp_path):
    from derive import latex

    derivation = derive(spec.network("4,3,3,2", act, loss))
    checks = proof.verify(derivation, end_to_end_depth=0)
    # without the seed's equations (3 CPU-s to decide; network-independent): test_latex.py
    # compiles documents that include them
    command = naming.spec_command(derivation.network)
    document = latex.document(derivation, checks, command, seed_check=False)
    if loss in FUSED:
        assert r"\quad\text{with } A" in document and (
            "A - Y" in document or "A_{k} - {Y}_{k}" in document
        )
    else:
        assert r"\quad\text{with } A = \sigma_{1}(z)" in document
    if loss == "softmax_cross_entropy":
        assert r"\text{using } \sum_i Y_i = 1" in document
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed")
    (tmp_path / "d.tex").write_text(document, encoding="utf-8")
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "d.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:]
