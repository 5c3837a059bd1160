"""External programs some outputs need (Graphviz's dot, pdflatex), found or refused in one line."""

from __future__ import annotations

import shutil


class ToolMissing(Exception):
    """An output needs a program that is not installed; the message names what to install."""


INSTALL = {
    "dot": "Graphviz (e.g. `apt-get install graphviz` or `brew install graphviz`)",
    "pdflatex": "a TeX distribution (e.g. `apt-get install texlive-latex-recommended`)",
}


def need(program: str, what: str) -> str:
    """The path of ``program``, or ToolMissing saying that ``what`` needs it and how to get it."""
    path = shutil.which(program)
    if path is None:
        raise ToolMissing(f"{what} needs `{program}`: install {INSTALL[program]}")
    return path
