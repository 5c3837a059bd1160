"""The array API target: equal to the numpy target on every library it runs on.

numpy and array-api-strict (the standard's reference implementation) always
run; torch, JAX and Dask run when installed and skip with the reason
otherwise; CuPy and torch CUDA run only where a GPU is present.
"""

from __future__ import annotations

import importlib
import itertools
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import central_difference, generate, load_module

from derive import catalog, cli, spec
from derive.backends import array_api
from derive.derivation import derive

ROOT = Path(__file__).resolve().parent.parent
GENERATED = sorted((ROOT / "generated" / "array_api").glob("*.py"))
LAYERS = "5,4,3"
ACTIVATIONS = [name for name in catalog.ACTIVATIONS if name != "softmax"]
LOSSES = list(catalog.LOSSES)
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
SLOW_PAIRS = [p for p in itertools.product(ACTIVATIONS, LOSSES) if p not in FAST_PAIRS]
# The tests below take their modules from FAST_PAIRS: a pair of its own costs its derivation
# and two renders (0.1 to 0.5 CPU-s) for a claim that is not about the pair.


def render_array_api(folder: Path, layers: str, activation: str = "tanh", loss: str = "l2"):
    network = spec.network(layers, activation, loss)
    name = f"aa_{'_'.join(map(str, network.sizes))}_{activation}_{loss}".replace(".", "p")
    path = folder / f"{name}.py"
    path.write_text(array_api.render(derive(network), name), encoding="utf-8")
    return load_module(path)


@pytest.fixture(scope="module")
def modules(tmp_path_factory):
    """(array API module, numpy target module) per (activation, loss), made once."""
    folder = tmp_path_factory.mktemp("array_api")
    made: dict[tuple[str, str], tuple] = {}

    def get(activation: str = "tanh", loss: str = "l2"):
        if (activation, loss) not in made:
            made[activation, loss] = (
                render_array_api(folder, LAYERS, activation, loss),
                generate(folder, LAYERS, activation, loss),
            )
        return made[activation, loss]

    return get


def data(loss: str, m: int = 6, seed: int = 0, dtype=np.float64):
    """x and targets valid for ``loss``: in [0, 1] for BCE, rows summing to 1 for softmax CE."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, 5))
    if loss == "sigmoid_binary_cross_entropy":
        y = rng.uniform(size=(m, 3))
    elif loss == "softmax_cross_entropy":
        y = rng.uniform(size=(m, 3))
        y /= y.sum(axis=1, keepdims=True)
    else:
        y = rng.standard_normal((m, 3))
    return x.astype(dtype), y.astype(dtype)


def relative_error(got, want) -> float:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-300))


def assert_equal_to_numpy_target(module, target, to_array, finish=lambda r: r, rtol=1e-12):
    """The array API module's loss and gradients equal the numpy target's."""
    loss = module.LOSS
    x, y = data(loss)
    params = target.init_params(3)
    want_value, want_grads = target.backprop(params, x, y)
    converted = [(to_array(w), to_array(b)) for w, b in params]
    value, grads = finish(module.backprop(converted, to_array(x), to_array(y)))
    assert relative_error(value, want_value) <= rtol
    for (dw, db), (want_dw, want_db) in zip(grads, want_grads, strict=True):
        assert relative_error(dw, want_dw) <= rtol
        assert relative_error(db, want_db) <= rtol


def _check_pair(modules, activation, loss):
    module, target = modules(activation, loss)
    assert_equal_to_numpy_target(module, target, np.asarray)
    strict = pytest.importorskip("array_api_strict")
    assert_equal_to_numpy_target(module, target, strict.asarray)


@pytest.mark.parametrize(("activation", "loss"), FAST_PAIRS)
def test_equal_to_numpy_target(modules, activation, loss):
    _check_pair(modules, activation, loss)


@pytest.mark.slow
@pytest.mark.parametrize(("activation", "loss"), SLOW_PAIRS)
def test_equal_to_numpy_target_every_pair(modules, activation, loss):
    _check_pair(modules, activation, loss)


def test_equality_check_detects_a_wrong_gradient(modules):
    """Negative control: a perturbed gradient is caught by the comparison."""
    module, target = modules()

    def perturbed(result):
        value, grads = result
        return value, [(grads[0][0] * (1 + 1e-9), grads[0][1]), *grads[1:]]

    with pytest.raises(AssertionError):
        assert_equal_to_numpy_target(module, target, np.asarray, perturbed)


@pytest.mark.parametrize(("activation", "loss"), FAST_PAIRS[:4])
def test_gradients_match_central_differences(modules, activation, loss):
    module, _ = modules(activation, loss)
    x, y = data(loss, m=4, seed=1)
    params = module.init_params(5)
    _, grads = module.backprop(params, x, y)
    for layer, (w, b) in enumerate(params):
        for which, arr in ((0, w), (1, b)):
            for index in [(0, 0), (arr.shape[0] - 1, arr.shape[1] - 1)]:
                numeric = central_difference(lambda: module.loss(params, x, y), arr, index)
                assert abs(grads[layer][which][index] - numeric) <= 1e-6 * max(1.0, abs(numeric))


# --- other libraries ----------------------------------------------------------


def test_torch_cpu(modules):
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch)")
    module, target = modules("gelu", "softmax_cross_entropy")
    assert_equal_to_numpy_target(module, target, torch.asarray)
    value, grads = module.backprop(
        module.init_params(1, "float32", xp=torch), *map(torch.asarray, data("l2", dtype="f4"))
    )
    assert isinstance(value, torch.Tensor) and value.ndim == 0 and value.dtype == torch.float32
    assert all(g.dtype == torch.float32 and isinstance(g, torch.Tensor) for p in grads for g in p)


def test_jax_jit_x64(modules):
    jax = pytest.importorskip("jax", reason="JAX is not installed (pip install jax)")
    jax.config.update("jax_enable_x64", True)
    jnp = importlib.import_module("jax.numpy")
    module, target = modules("elu", "l2")
    jitted = jax.jit(module.backprop)
    assert_equal_to_numpy_target(module, target, jnp.asarray, lambda r: r)
    x, y = data("l2")
    params = target.init_params(3)
    value, grads = jitted([tuple(map(jnp.asarray, p)) for p in params], jnp.asarray(x), y * 1.0)
    want_value, want_grads = target.backprop(params, x, y)
    assert relative_error(value, want_value) <= 1e-12
    assert relative_error(grads[0][0], want_grads[0][0]) <= 1e-12


def test_jax_float32_stays_float32(modules):
    """Under jit: the dtypes are decided when the calls are traced, by the rules eager calls
    follow (test_jax_jit_x64 runs the module eagerly), and one compilation is 0.3 CPU-s where
    eager calls compile each operation for float32 again (1.4 CPU-s)."""
    jax = pytest.importorskip("jax", reason="JAX is not installed (pip install jax)")
    jnp = importlib.import_module("jax.numpy")
    module, _ = modules("leaky_relu", "mse")
    x, y = data("mse", dtype=np.float32)
    value, grads = jax.jit(module.backprop)(
        module.init_params(1, "float32", xp=jnp), jnp.asarray(x), jnp.asarray(y)
    )
    assert value.dtype == jnp.float32 and all(g.dtype == jnp.float32 for p in grads for g in p)


def test_dask_row_chunks(modules):
    da = pytest.importorskip("dask.array", reason="Dask is not installed (pip install dask)")
    dask = importlib.import_module("dask")
    module, target = modules("sigmoid", "mse")

    def chunked(arr):
        return da.from_array(arr, chunks=(4, -1) if arr.shape[0] == 6 else -1)

    assert_equal_to_numpy_target(module, target, chunked, lambda r: dask.compute(*r))


def test_dask_on_a_local_cluster_with_two_workers(modules):
    pytest.importorskip("dask.array", reason="Dask is not installed (pip install dask)")
    distributed = pytest.importorskip(
        "distributed", reason="dask.distributed is not installed (pip install distributed)"
    )
    da = importlib.import_module("dask.array")
    module, target = modules("tanh", "l2")
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((1000, 5)), rng.standard_normal((1000, 3))
    params = target.init_params(2)
    want_value, want_grads = target.backprop(params, x, y)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        on_cluster = [tuple(da.from_array(a) for a in pair) for pair in params]
        lazy = module.backprop(
            on_cluster, da.from_array(x, chunks=(250, -1)), da.from_array(y, chunks=(250, -1))
        )
        value, grads = client.compute(lazy, sync=True)
        assert len(client.scheduler_info()["workers"]) == 2
    assert relative_error(value, want_value) <= 1e-12
    for got, want in zip(grads, want_grads, strict=True):
        assert relative_error(got[0], want[0]) <= 1e-12
        assert relative_error(got[1], want[1]) <= 1e-12


def _cuda_torch():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU: torch.cuda.is_available() is False")
    return torch


def test_torch_cuda(modules):
    torch = _cuda_torch()
    module, target = modules("relu", "sigmoid_binary_cross_entropy")
    assert_equal_to_numpy_target(
        module, target, lambda a: torch.asarray(a, device="cuda"), lambda r: r, rtol=1e-10
    )
    value = module.loss(
        module.init_params(1, xp=torch, device="cuda"),
        *(torch.asarray(a, device="cuda") for a in data(module.LOSS)),
    )
    assert value.device.type == "cuda" and value.ndim == 0


def test_cupy(modules):
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed (needs a CUDA GPU)")
    try:
        cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # CUDA runtime errors are not one class
        pytest.skip(f"no usable CUDA GPU for CuPy: {err}")
    module, target = modules("softplus", "l2")
    assert_equal_to_numpy_target(module, target, cupy.asarray, lambda r: r, rtol=1e-10)


# --- purity and bad input -----------------------------------------------------


def test_inputs_are_not_modified(modules):
    module, _ = modules("gelu", "softmax_cross_entropy")
    x, y = data("softmax_cross_entropy")
    params = module.init_params(2)
    copies = [a.copy() for a in (x, y, *[arr for pair in params for arr in pair])]
    module.backprop(params, x, y)
    for before, after in zip(
        copies, (x, y, *[arr for pair in params for arr in pair]), strict=True
    ):
        assert np.array_equal(before, after)


def test_integer_and_boolean_targets_are_converted_explicitly(modules):
    strict = pytest.importorskip("array_api_strict")
    module, _ = modules("relu", "sigmoid_binary_cross_entropy")
    x, _ = data("l2")
    labels = np.arange(18).reshape(6, 3) % 2
    params = module.as_params(module.init_params(1), strict)
    as_int = module.loss(params, strict.asarray(x), strict.asarray(labels))
    as_float = module.loss(params, strict.asarray(x), strict.asarray(labels.astype(np.float64)))
    as_bool = module.loss(params, strict.asarray(x), strict.asarray(labels == 1))
    assert float(as_int) == float(as_float) == float(as_bool)


def test_loss_is_a_zero_d_array_of_the_namespace(modules):
    strict = pytest.importorskip("array_api_strict")
    module, _ = modules()
    x, y = data("l2")
    value = module.loss(
        module.as_params(module.init_params(1), strict), *map(strict.asarray, (x, y))
    )
    assert type(value) is type(strict.asarray(0.0)) and value.ndim == 0


BAD = [
    (lambda p, x, y, t: (p, t.asarray(x), y), "x is a torch array but W1 is a numpy array"),
    (lambda p, x, y, t: (p, x, t.asarray(y)), "y is a torch array but W1 is a numpy array"),
    (lambda p, x, y, t: (p, x.tolist(), y), "x must be an array, got list"),
    (lambda p, x, y, t: (p, x[:, :2], y), "x must have shape (m, 5) or (5,), got (6, 2)"),
    (lambda p, x, y, t: (p, x.astype(np.float32), y), "x has dtype float32 but params are float64"),
    (lambda p, x, y, t: (p, x, y[:4]), "x has 6 rows but y has 4"),
    (lambda p, x, y, t: (p[:1], x, y), "params must hold 2 (W, b) pairs, got 1"),
    (
        lambda p, x, y, t: ([(p[0][0].T, p[0][1]), p[1]], x, y),
        "W1 must have shape (5, 4), got (4, 5)",
    ),
    (
        lambda p, x, y, t: ([(p[0][0], p[0][1].astype(np.float32)), p[1]], x, y),
        "b1 has dtype float32",
    ),
    (lambda p, x, y, t: ([(p[0][0].astype(np.int64), p[0][1]), p[1]], x, y), "W1 must be float32"),
    (
        lambda p, x, y, t: (
            [tuple(t.asarray(a) for a in p[0]), tuple(t.asarray(a, device="meta") for a in p[1])],
            t.asarray(x),
            t.asarray(y),
        ),
        "W2 is on device meta but W1 is on cpu",
    ),
]


@pytest.mark.parametrize(("mutate", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_input_is_a_clear_value_error(modules, mutate, message):
    torch = pytest.importorskip("torch", reason="the mixed-library cases need torch")
    module, _ = modules()
    x, y = data("l2")
    params, x, y = mutate(module.init_params(1), x, y, torch)
    with pytest.raises(ValueError) as caught:
        module.backprop(params, x, y)
    assert message in str(caught.value)


# --- the generated file and the CLI -------------------------------------------


def header_arguments(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()[0].split("`")[1].split()[3:]


def test_generated_folder_has_the_array_api_module():
    assert [p.name for p in GENERATED] == ["mlp_20_50_10.py"]


@pytest.mark.parametrize("path", GENERATED, ids=lambda p: p.name)
def test_generated_file_matches_regeneration(path):
    args = cli.build_parser().parse_args(header_arguments(path))
    assert args.target == "array-api"
    network = spec.network(args.layers, args.activation, args.loss)
    assert path.read_text(encoding="utf-8") == array_api.render(derive(network), path.stem)


def test_regeneration_comparison_detects_drift():
    """Negative control: a one-character change is not equal to the regenerated file."""
    path = GENERATED[0]
    network = spec.network("20,50,10")
    tampered = path.read_text(encoding="utf-8").replace("xp.tanh", "xp.sinh", 1)
    assert tampered != array_api.render(derive(network), path.stem)


def test_cli_target_array_api_writes_the_module(tmp_path):
    assert cli.main(["--layers", "4,3", "--target", "array-api", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "mlp_4_3.py").read_text(encoding="utf-8")
    assert text.startswith("# Generated by `python -m derive --layers 4,3 --target array-api`")
    assert "import array_api_compat" in text and "import numpy" not in text.split("def ")[0]


def test_cli_rejects_an_unknown_target(tmp_path, capsys):
    assert cli.main(["--layers", "4,3", "--target", "tensorflow", "--out", str(tmp_path)]) == 2
    assert "invalid choice: 'tensorflow'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_printer_refuses_functions_outside_the_standard():
    import sympy as sp

    from derive.backends.array_api.printer import NotInStandard, scalar_code

    assert scalar_code(sp.atan(catalog.z), {catalog.z: "z1"}) == "xp.atan(z1)"
    with pytest.raises(NotInStandard, match=r"math\.erf"):
        scalar_code(sp.erf(catalog.z), {catalog.z: "z1"})


def test_generated_code_passes_ruff(tmp_path):
    """Typed by tests/test_lint.py's one mypy run (this spec and generated/array_api)."""
    render_array_api(tmp_path, "6,5,4", "gelu", "softmax_cross_entropy")  # helpers, logsumexp
    paths = [*map(str, tmp_path.glob("*.py")), *map(str, GENERATED)]
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    config = ["--config", str(ROOT / "pyproject.toml")]
    for command in (["check", "--no-cache"], ["format", "--check", "--no-cache"]):
        result = subprocess.run([ruff, *command, *config, *paths], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout
