"""The public Python API: derive.derive(...) and what the object it returns gives."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
from helpers import ROOT, central_difference

import derive
from derive import api, cli, proof, spec
from derive.backends.numpy import module as numpy_module
from derive.derivation import derive as derive_identities


@pytest.fixture(scope="module")
def small():
    return derive.derive([4, 3, 2], activation="tanh", loss="l2", end_to_end_depth=2)


def test_checks_say_what_verdict_and_time(small):
    assert small.ok
    names = [c.what for c in small.checks]
    assert "output lemma" in names and "end to end" in names
    for c in small.checks:
        assert c.verdict == "proved" and c.time >= 0


def test_source_is_the_generator_output_and_module_is_in_memory(small, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    network = spec.network("4,3,2")
    expected = numpy_module.render(derive_identities(network), "mlp_4_3_2")
    assert small.source() == expected
    module = small.module()
    assert module is small.module()  # cached
    assert "mlp_4_3_2" not in sys.modules
    assert not list(tmp_path.iterdir())  # no file written
    params = module.init_params(seed=1)
    x, y = np.linspace(-1, 1, 8).reshape(2, 4), np.linspace(0, 1, 4).reshape(2, 2)
    _, grads = module.backprop(params, x, y)
    # the in-memory module is the real one: its gradient matches a finite difference
    numeric = central_difference(lambda: module.loss(params, x, y), params[0][0], (0, 0))
    assert grads[0][0][0, 0] == pytest.approx(numeric, rel=1e-5)


def test_write_goes_through_the_generated_file_guard(small, tmp_path):
    target = small.write(tmp_path / "nets")
    assert target.read_text(encoding="utf-8") == small.source()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "mlp_4_3_2.py").write_text("my own work\n")
    with pytest.raises(derive.api.files.Refused, match="not written by derive"):
        small.write(mine)


def test_repr_latex_is_display_math_only(small):
    text = small._repr_latex_()
    assert text.startswith("$$")
    assert r"\section" not in text and "itemize" not in text and "align*" not in text
    outside = re.sub(r"\$\$.*?\$\$", "", text, flags=re.S)
    assert outside.strip() == ""
    assert r"\delta_{l-1}" in text  # the recursive identities are there


def test_latex_is_the_document_body(small):
    assert small.latex().startswith("\\section")
    assert "\\begin{document}" in small.document()


def test_graph_has_dot_text(small):
    shown = small.graph()
    assert "digraph derive" in shown.source
    assert "W₂\\n3 × 2" in small.dot()


def test_graph_without_dot_is_text_with_no_svg(small, monkeypatch):
    monkeypatch.setattr(api.shutil, "which", lambda name: None)
    shown = small.graph()
    assert isinstance(shown, api.Graph)
    assert shown._repr_svg_() is None and "digraph" in repr(shown)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: derive.derive([20, 2.5, 10]), "'2.5' is not a positive whole number"),
        (lambda: derive.derive([20]), "give at least two comma-separated widths"),
        (lambda: derive.derive("20,50", activation="nope"), "unknown activation 'nope'"),
        (lambda: derive.derive([4, 3], loss="hinge"), "hinge"),
        (lambda: derive.derive([4, 3], loss=None), "--loss None"),
        (lambda: derive.derive([4, 3], name="class"), "cannot be a Python keyword"),
        (lambda: derive.derive(7), "give a list or a comma-separated string"),
    ],
)
def test_bad_input_is_the_command_lines_value_error(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


def test_the_same_message_as_the_command_line(tmp_path, monkeypatch, capsys):
    with pytest.raises(ValueError) as raised:
        derive.derive([20, 0, 10])
    monkeypatch.chdir(tmp_path)  # the main() python -m derive runs (test_cli.py runs a process)
    assert cli.main(["--layers", "20,0,10"]) == 2
    assert capsys.readouterr().err.strip() == f"derive: error: {raised.value}"
    assert not list(tmp_path.iterdir())


def test_no_code_from_a_failed_proof():
    network = spec.network("4,3")
    failed = proof.Check("step lemma", "δ", "exact", False, 0.0, "entry (0, 0) differs")
    broken = api.Derived(network, "mlp_4_3", derive_identities(network), [failed])
    assert not broken.ok and broken.checks[0].verdict == "failed"
    for produce in (broken.source, broken.module, broken.pdf):
        with pytest.raises(api.ProofFailed, match="step lemma"):
            produce()


def test_import_derive_stays_light():
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, derive; print(sorted(m for m in ('sympy', 'numpy', "
            "'derive.api', 'typing') if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
    )
    assert done.returncode == 0, done.stderr
    assert (
        "sympy" not in done.stdout
        and "derive.api" not in done.stdout
        and "numpy" not in done.stdout
    )
