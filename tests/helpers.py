"""What several test files and tests/update_golden.py share: loading modules, golden files.

Test modules import from here (or receive conftest's fixtures), never from each other.
"""

from __future__ import annotations

import atexit
import importlib.util
import itertools
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import tracemalloc
from functools import cache
from pathlib import Path

import numpy as np

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
# every catalog activation (softmax only as a fused loss's link) and every loss
ACTS = ["tanh", "sigmoid", "relu", "leaky_relu", "softplus", "identity", "elu", "gelu"]
LOSSES = ["l2", "mse", "softmax_cross_entropy", "sigmoid_binary_cross_entropy"]
FUSED = {"softmax_cross_entropy", "sigmoid_binary_cross_entropy"}
_CATALOG_OUT = Path(tempfile.mkdtemp(prefix="derive_catalog_"))
atexit.register(shutil.rmtree, _CATALOG_OUT, ignore_errors=True)


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


# --- central differences: the one numerical derivative of the suite ----------------


def central_difference(f, arr, index, h: float = 1e-6) -> float:
    """(f() at arr[index] + h − f() at arr[index] − h) / 2h; f reads arr, which is restored."""
    kept = arr[index]
    arr[index] = kept + h
    upper = float(f())
    arr[index] = kept - h
    lower = float(f())
    arr[index] = kept
    return (upper - lower) / (2 * h)


def central_differences(f, params, h: float = 1e-6):
    """∂f/∂θ in float64 for every entry of every array in params ([(W, b), ...]), f(params) a number."""
    grads = []
    for arrays in params:
        pair = []
        for arr in arrays:
            g = np.zeros(arr.shape)
            for index in np.ndindex(arr.shape):
                g[index] = central_difference(lambda: f(params), arr, index, h)
            pair.append(g)
        grads.append(tuple(pair))
    return grads


def assert_grads_close(got, expected, rtol, atol):
    for (gw, gb), (ew, eb) in zip(got, expected, strict=True):
        np.testing.assert_allclose(gw, ew, rtol=rtol, atol=atol)
        np.testing.assert_allclose(gb, eb, rtol=rtol, atol=atol)


# --- catalog networks -------------------------------------------------------------


@cache
def catalog_module(layers: str, activation: str, loss: str):
    """Render the module for a spec (no proof: that is tested separately) and import it, once."""
    network = spec.network(layers, activation, loss)
    name = "m_" + "_".join(
        [
            layers.replace(",", "_"),
            activation.replace(",", "_").replace(":", "_").replace(".", "p"),
            loss,
        ]
    )
    path = _CATALOG_OUT / f"{name}.py"
    path.write_text(numpy_module.render(derive(network), name), encoding="utf-8")
    return load_module(path, f"_catalog_{name}")


def targets(loss: str, rng, m: int, n: int):
    """Targets valid for ``loss``: rows summing to 1 for softmax CE, in [0, 1] for BCE."""
    if loss == "softmax_cross_entropy":
        y = rng.random((m, n))
        return y / y.sum(axis=1, keepdims=True)  # rows sum to 1: the derivation's assumption
    if loss == "sigmoid_binary_cross_entropy":
        return rng.random((m, n))
    return rng.standard_normal((m, n))


HAS_PDFLATEX = shutil.which("pdflatex") is not None


def compile_latex(tmp_path: Path, text: str) -> str:
    """pdflatex on ``text`` in ``tmp_path`` (it must succeed); the log."""
    (tmp_path / "d.tex").write_text(text, encoding="utf-8")
    result = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "d.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    return (tmp_path / "d.log").read_text(encoding="utf-8", errors="replace")


def layout_problems(log: str) -> tuple[int, list[float], int]:
    """(pages, widths of overfull hboxes over 5 pt, overfull vboxes) from a pdflatex log."""
    pages = re.search(r"Output written on \S+ \((\d+) pages?", log)
    hboxes = [float(w) for w in re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\)", log)]
    vboxes = len(re.findall(r"Overfull \\vbox", log))
    return (int(pages.group(1)) if pages else 0), [w for w in hboxes if w > 5], vboxes


def run_concurrently(calls, rounds: int) -> list[list]:
    """Run each of ``calls`` in its own thread, ``rounds`` times, started together; a call
    that raises leaves its exception as its result."""
    barrier = threading.Barrier(len(calls))
    results = [[] for _ in calls]

    def worker(k):
        barrier.wait()
        for _ in range(rounds):
            try:
                results[k].append(calls[k]())
            except Exception as err:  # a race that raises is caught too, never unhandled
                results[k].append(err)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def all_equal(results, expected) -> bool:
    """Every (value, gradient pairs) result equals ``expected`` exactly (an exception never)."""
    return all(
        not isinstance(result, Exception)
        and result[0] == expected[0]
        and all(
            np.array_equal(g, e)
            for pair, other in zip(result[1], expected[1], strict=True)
            for g, e in zip(pair, other, strict=True)
        )
        for result in results
    )
