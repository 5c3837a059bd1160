"""The example notebook runs top to bottom (nbclient) and renders to HTML (nbconvert);
docs/build_docs.py regenerates the README's pictures."""

from __future__ import annotations

import importlib.util
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "examples" / "seed_walkthrough.ipynb"
PICTURES = ["derivation_page1.png", "graph_20_50_10.png"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's header; refuses anything that is not a PNG."""
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR", "not a PNG"
    return struct.unpack(">II", data[16:24])


def _build_docs():
    spec = importlib.util.spec_from_file_location("build_docs", ROOT / "docs" / "build_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _needs_notebook_tools() -> None:
    for name in ("nbclient", "nbformat", "nbconvert", "ipykernel"):
        pytest.importorskip(name, reason=f"{name} is not installed: pip install -e '.[notebook]'")
    for name in ("sklearn", "matplotlib"):
        pytest.importorskip(name, reason=f"{name} is not installed: pip install -e '.[notebook]'")
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        pytest.skip("no python3 Jupyter kernel: pip install ipykernel")


def _outputs(notebook) -> str:
    """Every text output of the executed notebook, and the names of its rich outputs."""
    parts = []
    for cell in notebook.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out["text"])
            for kind, value in out.get("data", {}).items():
                parts.append(f"[{kind}]")
                if kind in ("text/plain", "text/markdown", "text/latex"):
                    parts.append(value)
    return "\n".join(parts)


@pytest.mark.slow
def test_notebook_runs_and_renders_to_html():
    """About 20 s: it derives two networks, checks the seed's equations and trains."""
    _needs_notebook_tools()
    docs = _build_docs()
    notebook = docs.execute()  # a failing cell raises CellExecutionError
    text = _outputs(notebook)
    # the derivation as display math, every check proved, the seed-check table
    assert "[text/latex]" in text and r"\delta" in text
    assert "failed" not in text and "proved   end to end" in text
    assert text.count("| holds") + text.count("| wrong") >= 10
    if shutil.which("dot"):
        assert "[image/svg+xml]" in text  # the graph
    # training worked: the seed-style classifier is far above chance (0.1)
    accuracy = float(re.search(r"test accuracy: ([\d.]+)", text).group(1))
    assert accuracy > 0.9, accuracy
    page = docs.html(notebook)
    assert "MathJax" in page and "test accuracy" in page
    assert "data:image/svg+xml" in page or not shutil.which("dot")


def test_output_reader_sees_a_failure_line():
    """Negative control for the checks above: a failed verdict in the outputs is visible."""
    nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed")
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [nbformat.v4.new_output("stream", text="failed   end to end  0.1 s\n")]
    assert "failed" in _outputs(nbformat.v4.new_notebook(cells=[cell]))


def test_notebook_is_checked_in_without_outputs():
    """The notebook is source: outputs (timings, pictures) come from running it."""
    nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert notebook.metadata["kernelspec"]["name"] == "python3"


def test_readme_shows_the_checked_in_pictures():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in PICTURES:
        assert f"(docs/{name})" in readme, name
        width, height = png_size((ROOT / "docs" / name).read_bytes())
        assert width > 300 and height > 300, (name, width, height)


def test_png_size_refuses_other_files():
    with pytest.raises(AssertionError):
        png_size(b"%PDF-1.5\n" + bytes(40))


@pytest.mark.slow
@pytest.mark.skipif(
    not (shutil.which("pdflatex") and shutil.which("pdftoppm") and shutil.which("dot")),
    reason="needs pdflatex, pdftoppm (poppler-utils) and Graphviz's dot",
)
def test_build_docs_regenerates_the_pictures(tmp_path):
    """The script runs and gives pictures of the checked-in ones' size (bytes may differ with
    the poppler and Graphviz versions, so they are not compared)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "build_docs.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for name in PICTURES:
        fresh = png_size((tmp_path / name).read_bytes())
        assert fresh == png_size((ROOT / "docs" / name).read_bytes()), name
