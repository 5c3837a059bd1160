"""Regenerate the README's pictures and render the example notebook to HTML.

    python docs/build_docs.py                 # docs/derivation_page1.png, docs/graph_20_50_10.png
    python docs/build_docs.py --html          # also docs/_build/seed_walkthrough.html (runs it)
    python docs/build_docs.py --out DIR       # write everything to DIR instead

The pictures are of the seed's network (20-50-10, tanh, l2): page 1 of the PDF that
``--pdf-out`` writes, rasterised by poppler's ``pdftoppm``, and the computational graph
that ``--graph-out`` writes, rendered by Graphviz's ``dot``. They are checked in; run this
after a change to the LaTeX or the graph and review them. The HTML is not checked in (it
records timings); ``--html`` needs the ``notebook`` extra (nbclient, nbconvert, ipykernel).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import derive  # noqa: E402  (this checkout, not an installed copy)

DOCS = ROOT / "docs"
NOTEBOOK = ROOT / "examples" / "seed_walkthrough.ipynb"
SEED_NETWORK = [20, 50, 10]
PAGE_DPI = 100
"""Resolution of the page picture: the README shows it at about half a screen's height."""


def page_png(pdf: bytes, page: int = 1, dpi: int = PAGE_DPI) -> bytes:
    """One page of a PDF as PNG bytes, by pdftoppm."""
    program = shutil.which("pdftoppm")
    if program is None:
        raise SystemExit("build_docs: pdftoppm is not installed (Debian: poppler-utils)")
    with tempfile.TemporaryDirectory(prefix="derive-docs-") as scratch:
        folder = Path(scratch)
        (folder / "d.pdf").write_bytes(pdf)
        pages = ["-f", str(page), "-l", str(page), "-singlefile"]
        subprocess.run(
            [program, "-png", "-r", str(dpi), *pages, "d.pdf", "page"],
            cwd=folder,
            check=True,
            timeout=300,
        )
        return (folder / "page.png").read_bytes()


def pictures(out: Path) -> list[Path]:
    """Page 1 of the derivation and the graph of the seed's network."""
    d = derive.derive(SEED_NETWORK, activation="tanh", loss="l2")
    written = []
    for name, data in [
        ("derivation_page1.png", page_png(d.pdf())),
        ("graph_20_50_10.png", d.graph_file("png")),
    ]:
        assert isinstance(data, bytes)
        (out / name).write_bytes(data)
        written.append(out / name)
    return written


def execute(path: Path = NOTEBOOK, timeout: int = 600) -> object:
    """The notebook run top to bottom by nbclient in a python3 kernel, from the repository
    root, with this checkout first on the kernel's path; a failing cell raises."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), old) if p)
    try:
        NotebookClient(
            notebook,
            timeout=timeout,
            kernel_name="python3",
            resources={"metadata": {"path": str(ROOT)}},
        ).execute()
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old
    return notebook


def html(notebook: object) -> str:
    """An executed notebook as a standalone HTML page (nbconvert, MathJax for the math)."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(notebook)
    return body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="folder (default docs/)")
    parser.add_argument("--html", action="store_true", help="also run the notebook to HTML")
    args = parser.parse_args(argv)
    out = DOCS if args.out is None else args.out
    out.mkdir(parents=True, exist_ok=True)
    for path in pictures(out):
        print(f"wrote {path}")
    if args.html:
        folder = out / "_build" if args.out is None else out
        folder.mkdir(exist_ok=True)
        page = folder / "seed_walkthrough.html"
        page.write_text(html(execute()), encoding="utf-8")
        print(f"wrote {page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
