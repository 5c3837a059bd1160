"""What several test files and tests/update_golden.py share: loading modules, golden files.

Test modules import from here (or receive conftest's fixtures), never from each other.
"""

from __future__ import annotations

import importlib.util
import itertools
import shlex
import sys
import tracemalloc
from pathlib import Path

from derive import latex, naming, proof, spec
from derive.backends.numpy import module as numpy_module
from derive.derivation import derive

ROOT = Path(__file__).resolve().parent.parent
GENERATED = sorted((ROOT / "generated").glob("*.py"))
LATEX_GOLDEN = ROOT / "tests" / "golden"
LATEX_SNAPSHOTS = {
    "latex_depth1.tex": "4,3",
    "latex_depth2.tex": "20,50,10",
    "latex_depth3.tex": "3,4,5,6",
}
_LOADED = itertools.count()


def load_module(path: Path, name: str | None = None):
    """Import a generated module from its file, under a unique name."""
    name = name or f"_derive_test_{path.stem}_{next(_LOADED)}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    module_spec.loader.exec_module(module)
    return module


def generate(tmp_path: Path, layers: str, activation: str = "tanh", loss: str = "l2"):
    """Render a module for the spec into tmp_path and import it."""
    network = spec.network(layers, activation, loss)
    name = naming.default_module_name(network)
    path = tmp_path / f"{name}.py"
    path.write_text(numpy_module.render(derive(network), name), encoding="utf-8")
    return load_module(path)


def header_command(path: Path) -> list[str]:
    """The CLI arguments recorded in a generated file's first line."""
    first = path.read_text(encoding="utf-8").splitlines()[0]
    command = first.split("`")[1]
    words = shlex.split(command)
    assert words[:3] == ["python", "-m", "derive"], first
    return words[3:]


def latex_body(layers: str) -> str:
    """The LaTeX document body a snapshot in tests/golden holds."""
    derivation = derive(spec.network(layers))
    return latex.document_body(derivation, proof.verify(derivation))


def steady_state_peak(call, calls: int = 20) -> tuple[int, int]:
    """(peak bytes above the start, net growth) over ``calls`` calls of ``call``, after warm-up.

    The one allocation probe of the suite (tracemalloc sees numpy's array buffers)."""
    for _ in range(3):
        call()
    tracemalloc.start()
    try:
        call()
        start, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(calls):
            call()
        end, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - start, end - start
