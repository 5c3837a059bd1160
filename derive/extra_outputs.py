"""The command line's picture and PDF outputs (--graph-out, --pdf-out).

``outputs`` names them as ``files.Output`` entries before any work (a bad
name or a missing program is a usage error, exit 2, nothing written), so
they are checked with every other output of the run; ``content`` makes a
file's bytes from the proved derivation.  Each carries derive's marker
(a ``#`` line in DOT, a comment in SVG, a PNG ``tEXt`` chunk, a PDF's
/Subject), so a later run recognises it as derive's and replaces it only for
the same specification.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import files, graph, spec
from .api import Derived
from .tools import need


def outputs(args: argparse.Namespace, command: str) -> list[files.Output]:
    """The extra files this run writes, unfilled; refuses bad names and missing programs."""
    found: list[files.Output] = []
    if args.graph_out is not None:
        try:
            fmt = graph.format_of(args.graph_out)
        except ValueError as err:
            raise spec.SpecError(str(err)) from None
        if fmt != "dot":
            need("dot", f"--graph-out {args.graph_out!r}")
        found.append(files.Output(Path(args.graph_out), "--graph-out", command))
    if args.pdf_out is not None:
        if not args.pdf_out.lower().endswith(".pdf"):
            raise spec.SpecError(f"--pdf-out {args.pdf_out!r}: the name must end in .pdf")
        need("pdflatex", "--pdf-out")
        found.append(files.Output(Path(args.pdf_out), "--pdf-out", command))
    return found


def content(out: files.Output, derived: Derived) -> str | bytes:
    """The bytes (or text) of an extra output."""
    if out.label == "--graph-out":
        return derived.graph_file(graph.format_of(str(out.path)))
    if out.label == "--pdf-out":
        return derived.pdf()
    raise ValueError(f"not an extra output: {out.label}")
