"""Generated code is valid, formatted Python that a linter passes without warnings."""

from __future__ import annotations

import ast
import py_compile
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
SPECS = [("4,3", "tanh", "l2"), ("20,50,10", "tanh", "l2"), ("3,5,7,2,9", "tanh", "l2")]
SPECS += [(",".join(["3"] * 31), "tanh", "l2")]
SPECS += [("3,4,2", act, loss) for act in ACTIVATIONS for loss in LOSSES]
SPECS += [("5,4,3,2", "leaky_relu:0.2,gelu,softmax", "softmax_cross_entropy")]


@pytest.fixture(scope="module")
def modules(tmp_path_factory):
    """Modules for every activation x loss and several depths (names unique beside generated/)."""
    folder = tmp_path_factory.mktemp("lint")
    for k, (layers, activation, loss) in enumerate(SPECS):
        name = f"lint_{k}"
        derivation = derive(spec.network(layers, activation, loss))
        (folder / f"{name}.py").write_text(numpy_module.render(derivation, name), encoding="utf-8")
    return folder


def test_py_compile(modules):
    for path in modules.glob("*.py"):
        py_compile.compile(str(path), doraise=True)


def test_imports_numpy_only(modules):
    for path in modules.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported.add((node.module or "").split(".")[0])
        assert imported <= {"numpy", "__future__"}, (path.name, imported)


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


def _mypy(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", *map(str, paths)],
        capture_output=True,
        text=True,
    )


def test_generated_code_is_fully_typed(modules):
    """One mypy run over every rendered module and the checked-in ones."""
    result = _mypy(*sorted(modules.glob("*.py")), *sorted((ROOT / "generated").glob("*.py")))
    assert result.returncode == 0, result.stdout


def test_mypy_catches_a_type_error(tmp_path):
    """Negative control: the type check does fail on badly typed code."""
    (tmp_path / "bad.py").write_text("def f(x: int) -> str:\n    return x\n")
    assert _mypy(tmp_path / "bad.py").returncode != 0


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
