"""A LaTeX document compiled to PDF bytes by pdflatex, in a scratch folder.

The PDF is reproducible: pdflatex is given a fixed SOURCE_DATE_EPOCH, so
the same document gives the same bytes.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from .tools import need


class LatexFailed(Exception):
    """pdflatex rejected the document; the message is its first error line."""


def compile_pdf(document: str, what: str = "--pdf-out") -> bytes:
    """Run pdflatex twice (for page references) and return the PDF."""
    program = need("pdflatex", what)
    env = dict(os.environ, SOURCE_DATE_EPOCH="0", FORCE_SOURCE_DATE="1")
    with tempfile.TemporaryDirectory(prefix="derive-pdf-") as scratch:
        folder = Path(scratch)
        (folder / "derivation.tex").write_text(document, encoding="utf-8")
        for _ in range(2):
            done = subprocess.run(
                [program, "-interaction=nonstopmode", "-halt-on-error", "derivation.tex"],
                cwd=folder,
                capture_output=True,
                timeout=600,
                env=env,
            )
            if done.returncode != 0:
                log = (folder / "derivation.log").read_text(encoding="utf-8", errors="replace")
                first = next((line for line in log.splitlines() if line.startswith("!")), "")
                raise LatexFailed(f"pdflatex failed: {first or 'see its log'}")
        return (folder / "derivation.pdf").read_bytes()
