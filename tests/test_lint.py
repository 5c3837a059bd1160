"""Generated code is valid, formatted Python that a linter passes without warnings."""

from __future__ import annotations

import ast
import py_compile
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from derive import spec
from derive.backends.numpy import module as numpy_module
from derive.derivation import derive

ROOT = Path(__file__).resolve().parent.parent
ACTIVATIONS = ["tanh", "sigmoid", "relu", "leaky_relu", "softplus", "identity", "elu", "gelu"]
LOSSES = ["l2", "mse", "softmax_cross_entropy", "sigmoid_binary_cross_entropy"]
# The default run: with generated/ (tanh, relu, leaky_relu, elu, softplus, gelu and both fused
# links; every loss; depths one, two and three), what generated/ lacks: sigmoid and identity as
# activations and depth four, in one module (mypy reads the runtime and training code each module
# includes again, about 1.5 CPU-s a module). The slow run compiles, lints and types every
# activation x loss pair on its own and a 31-layer network.
SPECS = [("3,5,7,2,9", "tanh,sigmoid,elu,identity", "mse")]
SPECS += [("4,6,5+proj,ln,3", "tanh", "l2", True)]  # a projection's split and join, --l2
SLOW_SPECS = [("20,50,10", "tanh", "l2"), (",".join(["3"] * 31), "tanh", "l2")]
SLOW_SPECS += [("3,4,2", act, loss) for act in ACTIVATIONS for loss in LOSSES]
RUNTIME = ROOT / "derive" / "backends" / "numpy" / "templates"


def _render(folder: Path, specs, prefix: str) -> list[Path]:
    paths = []
    for k, (layers, activation, loss, *l2) in enumerate(specs):
        name = f"{prefix}_{k}"
        derivation = derive(spec.network(layers, activation, loss, *l2))
        path = folder / f"{name}.py"
        path.write_text(numpy_module.render(derivation, name), encoding="utf-8")
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def modules(tmp_path_factory):
    """Modules for the specs above (names unique beside generated/)."""
    folder = tmp_path_factory.mktemp("lint")
    _render(folder, SPECS, "lint")
    return folder


def test_py_compile(modules):
    for path in modules.glob("*.py"):
        py_compile.compile(str(path), doraise=True)


def _imported(path: Path) -> set[str]:
    imported = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    return imported


def test_imports_numpy_only(modules):
    for path in modules.glob("*.py"):
        assert _imported(path) <= {"numpy", "__future__"}, path.name


def _ruff(*args: str) -> subprocess.CompletedProcess:
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    config = str(ROOT / "pyproject.toml")
    return subprocess.run([ruff, *args, "--config", config], capture_output=True, text=True)


def test_ruff_check_and_format(modules):
    for folder in (modules, ROOT / "generated"):
        lint = _ruff("check", "--no-cache", str(folder))
        assert lint.returncode == 0, lint.stdout
        fmt = _ruff("format", "--check", "--no-cache", str(folder))
        assert fmt.returncode == 0, fmt.stdout


def test_ruff_catches_a_lint_error(tmp_path):
    """Negative control: the lint check does fail on bad code."""
    (tmp_path / "bad.py").write_text("import os\nx=1\n")
    assert _ruff("check", "--no-cache", str(tmp_path)).returncode != 0
    assert _ruff("format", "--check", "--no-cache", str(tmp_path)).returncode != 0


# mypy loads numpy's stubs for seconds before it checks anything: one run types derive itself and
# every module it generates.
MYPY_CONFIG = """\
[mypy]
strict = True
python_version = 3.10
incremental = False
# the array API target's arrays are Any (the standard has no array type); following
# array_api_compat into numpy's and torch's stubs takes minutes
[mypy-array_api_compat.*]
follow_imports = skip
"""
PYPROJECT = ROOT / "pyproject.toml"
# untyped (an error only under --strict, so it shows the config is read) and ill-typed
BAD_SOURCE = 'def untyped(x):\n    return x\n\n\ndef count() -> int:\n    return "three"\n'
MYPY_ERROR = re.compile(r"^(?P<path>[^:\n]+\.py):\d+: error:", re.MULTILINE)
MYPY_CHECKED = re.compile(
    r"(?:Found \d+ errors? in \d+ files? \(checked|Success: no issues found in) (\d+) source files?"
)


def mypy_strict(
    folder: Path, paths: list[Path | str], config: Path | None = None
) -> tuple[dict[str, list[str]], int, str]:
    """Run mypy --strict once over ``paths`` (files, folders or options) from ``folder``, with
    ``config`` (default: MYPY_CONFIG): (error lines by file name, files checked, output)."""
    if config is None:
        config = folder / "mypy.ini"
        config.write_text(MYPY_CONFIG, encoding="utf-8")
    command = [sys.executable, "-m", "mypy", "--config-file", str(config), *map(str, paths)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=folder)
    errors: dict[str, list[str]] = {}
    for line in result.stdout.splitlines():
        match = MYPY_ERROR.match(line)
        if match:
            errors.setdefault(Path(match["path"]).name, []).append(line)
    checked = MYPY_CHECKED.search(result.stdout)
    return errors, int(checked[1]) if checked else 0, result.stdout


def _copy(source: Path, folder: Path, name: str) -> Path:
    """A lone copy under a unique module name (mypy refuses two modules of one name)."""
    target = folder / name
    shutil.copy(source, target)
    return target


def _package_modules() -> list[Path]:
    """Every .py file under derive/ that pyproject's mypy config does not exclude."""
    package = ROOT / "derive"
    return [p for p in package.rglob("*.py") if "templates" not in p.relative_to(package).parts]


# generated/ typed in the default run: one module per structure the numpy target emits beyond
# the SPECS above (layer kinds, the L2 penalty) and per loss they lack (softmax and sigmoid
# cross-entropy, with relu and gelu); the others (dense tanh/l2, leaky_relu, elu, softplus,
# depth one), at about 1 CPU-s each, are typed in the slow run.
TYPED_BY_DEFAULT = {
    "mlp_4_6_ln_6res_drop0p5_bn_3.py",
    "mlp_20_50_10_l2.py",
    "mlp_64_32_10.py",
    "mlp_8_16_1.py",
}
GENERATED = sorted((ROOT / "generated").glob("*.py"))
# A reader of the IR (tests/test_dispatch.py runs the package's readers on every node): with
# every case, mypy accepts it; with ActivateDeriv's case missing, it names the node.
READER = """
from derive.expr import (
    Activate, ActivateDeriv, Add, Expr, Hadamard, Loss, LossGrad, MatMul, Penalty, PenaltyGrad,
    SumRows, Transpose, Var, assert_never, Sub, Scale, SumCols, Mean, Spread, Power, InvSqrt,
)


def depth(e: Expr) -> int:
    match e:
        case Var():
            return 0
        case MatMul(left, right) | Add(left, right) | Hadamard(left, right) | Sub(left, right):
            return 1 + max(depth(left), depth(right))
        case Loss(left, right) | LossGrad(left, right):
            return 1 + max(depth(left), depth(right))
        case Transpose(arg) | SumRows(arg) | Penalty(arg) | PenaltyGrad(arg) | SumCols(arg):
            return 1 + depth(arg)
        case Scale(arg) | Mean(arg) | Spread(arg) | Power(arg) | InvSqrt(arg):
            return 1 + depth(arg)
        case Activate(_, arg){deriv}:
            return 1 + depth(arg)
        case _:
            assert_never(e)
"""


@pytest.fixture(scope="module")
def typed(modules, tmp_path_factory):
    """One mypy --strict run, with pyproject's config, from the repository root (as ``mypy``
    there runs): the derive package (less the runtime files pyproject excludes), the rendered
    modules, generated/ (TYPED_BY_DEFAULT), the runtime, training and layered runtime files
    (type-checked as lone files, away from the package whose folder is named numpy), the array
    API target's modules, and three negative controls: a badly typed file and the IR reader
    with and without a case. mypy reads numpy's stubs for seconds before it checks anything,
    so the suite runs it once. (errors by file name, files checked, files expected, output)"""
    from derive.backends import array_api

    folder = tmp_path_factory.mktemp("typed")
    paths = sorted(modules.glob("*.py"))
    paths += [path for path in GENERATED if path.name in TYPED_BY_DEFAULT]
    for name in ("runtime.py", "training.py", "layered_runtime.py"):
        paths.append(_copy(RUNTIME / name, folder, name))
    for path in sorted((ROOT / "generated" / "array_api").glob("*.py")):
        paths.append(_copy(path, folder, f"xp_{path.name}"))
    # the array API's helpers and logsumexp
    network = spec.network("6,5,4", "gelu", "softmax_cross_entropy")
    rendered = folder / "xp_6_5_4_gelu.py"
    rendered.write_text(array_api.render(derive(network), rendered.stem), encoding="utf-8")
    projected = folder / "xp_4_6_5proj_ln_3.py"
    network = spec.network("4,6,5+proj,ln,3", "tanh", "l2")
    projected.write_text(array_api.render(derive(network), projected.stem), encoding="utf-8")
    penalised = folder / "xp_4_6_5proj_ln_3_l2.py"
    network = spec.network("4,6,5+proj,ln,3", "tanh", "l2", l2=True)
    penalised.write_text(array_api.render(derive(network), penalised.stem), encoding="utf-8")
    controls = {
        "bad.py": BAD_SOURCE,
        "reader_complete.py": READER.replace("{deriv}", " | ActivateDeriv(_, arg)"),
        "reader_missing.py": READER.replace("{deriv}", ""),
    }
    for name, text in controls.items():
        (folder / name).write_text(text, encoding="utf-8")
        paths.append(folder / name)
    # mypy's incremental cache, where `mypy` run by hand at the root keeps it (.mypy_cache/, in
    # .gitignore): a fresh clone pays the whole run (~26 CPU-s; writing the cache adds nothing
    # measurable), a rerun only what changed (~1 CPU-s unchanged, ~7 after an edit to a module
    # half of derive imports). Cached errors are reported again, so the negative controls hold
    # on a warm cache too; the rendered files are matched by content, not by their temporary path.
    files = [ROOT / "derive", *paths, rendered, projected, penalised]
    errors, checked, output = mypy_strict(ROOT, files, config=PYPROJECT)
    return errors, checked, len(_package_modules()) + len(paths) + 3, output


def test_derive_and_the_modules_it_generates_are_fully_typed(typed):
    errors, checked, expected, output = typed
    assert len(TYPED_BY_DEFAULT & {path.name for path in GENERATED}) == len(TYPED_BY_DEFAULT)
    assert checked == expected, output
    assert set(errors) == {"bad.py", "reader_missing.py"}, output


def test_a_badly_typed_file_is_reported(typed):
    """Negative control: an untyped function (an error only under --strict, so it shows the
    config is read) and an ill-typed return."""
    errors, _, _, output = typed
    assert any(
        "bad.py:1: error: Function is missing a type annotation  [no-untyped-def]" in line
        for line in errors["bad.py"]
    ), output
    assert any("bad.py:6: error: Incompatible return value type" in e for e in errors["bad.py"])


def test_mypy_reports_a_reader_missing_a_case(typed):
    """An IR reader without ActivateDeriv's case is reported; the same reader with every case
    is not (test above), so the report is the missing case."""
    errors, _, _, output = typed
    assert any(
        'Argument 1 to "assert_never" has incompatible type "ActivateDeriv"' in line
        for line in errors["reader_missing.py"]
    ), output


@pytest.mark.slow
def test_the_rest_of_the_matrix_is_compiled_linted_and_typed(tmp_path):
    paths = _render(tmp_path, SLOW_SPECS, "slow_lint")
    for path in paths:
        py_compile.compile(str(path), doraise=True)
        assert _imported(path) <= {"numpy", "__future__"}, path.name
    assert _ruff("check", "--no-cache", str(tmp_path)).returncode == 0
    assert _ruff("format", "--check", "--no-cache", str(tmp_path)).returncode == 0
    typed = paths + [
        _copy(p, tmp_path, p.name) for p in GENERATED if p.name not in TYPED_BY_DEFAULT
    ]
    errors, checked, output = mypy_strict(tmp_path, typed)
    assert (errors, checked) == ({}, len(typed)), output


def test_project_code_is_linted_and_formatted():
    folders = [str(ROOT / name) for name in ("derive", "tests", "benchmarks", "docs")]
    lint = _ruff("check", "--no-cache", *folders)
    assert lint.returncode == 0, lint.stdout
    fmt = _ruff("format", "--check", "--no-cache", *folders)
    assert fmt.returncode == 0, fmt.stdout


def test_generated_line_lengths_are_pyprojects():
    """The formatter's and the linter's line lengths are copied once, into python_source."""
    tomllib = pytest.importorskip("tomllib")
    from derive.backends import python_source

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["ruff"]
    assert python_source.LINE_LENGTH == config["line-length"]
    assert python_source.LINT_LINE_LENGTH == config["lint"]["pycodestyle"]["max-line-length"]
