"""The LaTeX reads like a textbook and compiles."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from derive import codegen, latex, proof, spec
from derive.derivation import derive

FORBIDDEN = ["Lambda", "ArrayContraction", "\\mapsto", "Subs", "Derivative", "_xi", "Dummy"]


def _document(layers: str) -> str:
    derivation = derive(spec.network(layers))
    return latex.document(
        derivation, proof.verify(derivation), codegen.spec_command(derivation.network)
    )


@pytest.mark.parametrize("layers", ["4,3", "20,50,10", "3,4,5,6"])
def test_latex_uses_textbook_notation_only(layers):
    text = _document(layers)
    for token in FORBIDDEN:
        assert token not in text
    depth = len(layers.split(",")) - 1
    assert f"L = f_{{{2 * depth + 1}}}" in text  # the composition ends in the loss
    assert r"\odot" in text and r"a'\left(z_{1}\right)" in text and r"^{\top}" in text
    assert r"\frac{\partial L}{\partial \hat{Y}} &= 2 \left(\hat{Y} - Y\right)" in text
    assert "FAILED" not in text and "(verified)" in text


def test_verification_section_reports_failures():
    """Negative control: a failed check is printed as FAILED, not as verified."""
    bad = proof.Check("step lemma", "s", "exact", False, 0.0, "entry (0, 0) differs")
    assert "FAILED" in latex.verification([bad])


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_standalone_document_compiles_with_pdflatex(tmp_path):
    (tmp_path / "d.tex").write_text(_document("20,50,10"), encoding="utf-8")
    result = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "d.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    assert (tmp_path / "d.pdf").stat().st_size > 1000
