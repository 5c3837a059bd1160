"""--seed-check: the seed's equations decided by the engine, and the engine can say no."""

from __future__ import annotations

import dataclasses
import functools
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from derive import cli, seedcheck
from derive.seedcheck import (
    HOLDS,
    REORDERED,
    WRONG,
    Act,
    DAct,
    Equation,
    F,
    Grad,
    Node,
    Param,
    Plus,
    Scale,
)

CACHE = seedcheck.NETWORKS  # the explicit networks and their gradients, built once


@pytest.fixture(scope="module")
def verdicts():
    return seedcheck.check()


def _by_what(verdicts):
    return {v.equation.what: v for v in verdicts}


def _equations():
    return {e.what: e for e in seedcheck.seed_equations()}


def test_every_kind_of_seed_equation_is_restated(verdicts):
    whats = [v.equation.what for v in verdicts]
    for kind in (
        "composition",
        "unrolled prediction",
        "chain product",
        "recursive formula",
        "weight-gradient shortcut",
    ):
        assert any(kind in w for w in whats), kind
    assert len(set(whats)) == len(whats)


def test_verdicts_agree_with_working_by_hand(verdicts):
    """Facts checked by hand, independently of derive: each names why."""
    v = _by_what(verdicts)
    assert v["composition f2"].verdict == HOLDS  # f2 = a(f1), nothing to get wrong
    # W1 is 20x50 for [20, 50, 10] but f0 is a row of 20: W1 ⋅ f0 only works reversed.
    assert v["composition f1"].verdict == REORDERED
    assert v["composition f1"].correct == "f_{1} = f_{0} W_{1} + b_{1}"
    # b2 sits inside W2 ⋅ ( ... ): no product order can move it out.
    assert v["unrolled prediction"].verdict == WRONG
    # for one example the bias gradient is δ itself
    assert v["chain product ∂f5/∂b2"].verdict == HOLDS
    # ∂f5/∂b1 has the shape of b1, not of b2: an index slip
    assert v["shortcut ∂f5/∂W2 through ∂f5/∂b1"].verdict == WRONG
    # for a batch, ∂L/∂b_n has summed the rows away: W's gradient cannot be recovered from it
    assert v["weight-gradient shortcut"].verdict == REORDERED
    assert v["weight-gradient shortcut, batch of m > 1 rows"].verdict == WRONG


def test_correct_forms_carry_transposes_where_the_layout_needs_them(verdicts):
    v = _by_what(verdicts)
    assert r"W_{2}^{\top}" in v["chain product ∂f5/∂b1"].correct
    assert v["chain product ∂f5/∂W1"].correct.startswith(
        r"\frac{\partial f_5}{\partial W_{1}} = f_{0}^{\top}"
    )


def _mutate(node: Node) -> Node | None:
    """A wrong variant: a' for a (or back), a bias dropped, a 2 made 3, another layer's
    gradient, or an earlier f_k; the first such change in the tree."""
    for rule in (_swap_activation, _drop_bias, _bump_scale, _other_gradient, _earlier_f):
        changed = rule(node)
        if changed is not None:
            return changed
    return None


def _first(node: Node, change) -> Node | None:
    new = change(node)
    if new is not None:
        return new
    kids = seedcheck._children(node)
    for i, kid in enumerate(kids):
        new = _first(kid, change)
        if new is not None:
            return seedcheck._rebuild(node, (*kids[:i], new, *kids[i + 1 :]))
    return None


def _swap_activation(node):
    return _first(
        node,
        lambda n: (
            DAct(n.arg) if isinstance(n, Act) else Act(n.arg) if isinstance(n, DAct) else None
        ),
    )


def _drop_bias(node):
    return _first(node, lambda n: n.left if isinstance(n, Plus) else None)


def _bump_scale(node):
    return _first(node, lambda n: Scale(n.factor + 1, n.arg) if isinstance(n, Scale) else None)


def _other_gradient(node):
    def change(n):
        if isinstance(n, Grad) and isinstance(n.wrt, Param):
            layer = n.wrt.layer
            return Grad(Param(n.wrt.kind, layer + 1 if layer == 1 else layer - 1))
        return None

    return _first(node, change)


def _earlier_f(node):
    return _first(node, lambda n: F(n.k - 1) if isinstance(n, F) and n.k > 0 else None)


def _variant(eq: Equation, rhs_at) -> Equation:
    return dataclasses.replace(eq, build=lambda n: (eq.build(n)[0], rhs_at(n)))


@pytest.mark.parametrize("index", range(len(seedcheck.seed_equations())))
def test_a_correct_variant_holds_and_a_wrong_variant_is_wrong(index):
    """The negative control, per equation: the verdict follows the math fed in."""
    eq = seedcheck.seed_equations()[index]
    found = seedcheck.decide(eq, CACHE)
    if found.verdict == WRONG:
        right = _variant(eq, lambda n: seedcheck.derived_identity(eq, n))
    else:
        order = found.reading  # each n's reading made once (decide builds each n again)
        right = _variant(
            eq, functools.cache(lambda n: list(seedcheck.readings(eq.build(n)[1]))[order][1])
        )
    assert seedcheck.decide(right, CACHE).verdict == HOLDS

    wrong = _variant(eq, lambda n: _mutate(eq.build(n)[1]))
    assert _mutate(eq.build(eq.at[0])[1]) is not None
    assert seedcheck.decide(wrong, CACHE).verdict == WRONG


def test_verdicts_come_from_the_engine(monkeypatch):
    """With an engine that proves nothing, nothing holds, and derive's own fallback is refused."""
    monkeypatch.setattr(seedcheck.proof, "identical", lambda lhs, rhs: (False, "no"))
    eq = _equations()["composition f2"]
    with pytest.raises(RuntimeError, match="derive's own identity failed"):
        seedcheck.decide(eq, {})


def test_a_different_loss_is_noticed(monkeypatch):
    """If the network's loss were 3‖Ŷ - Y‖², 2(Ŷ - Y) is no longer its derivative: both the
    seed's form and derive's are rejected (and derive refuses to print a correction)."""
    forward = seedcheck.Network.forward

    def tripled(self, start):
        f = forward(self, start)
        top = 2 * self.depth + 1
        return {**f, top: 3 * f[top]}

    monkeypatch.setattr(seedcheck.Network, "forward", tripled)
    eq = _equations()["loss derivative ∂f5/∂f4"]
    with pytest.raises(RuntimeError):  # derive's own 2(Ŷ - Y) fails against that loss too
        seedcheck.decide(eq, {})


def test_json_on_the_command_line(verdicts, tmp_path, monkeypatch, capsys):
    """The command line prints seedcheck.check()'s verdicts (the module's, decided once: the
    fixture's) as JSON, and writes nothing."""
    monkeypatch.chdir(tmp_path)
    asked = []
    monkeypatch.setattr(seedcheck, "check", lambda: asked.append(True) or verdicts)
    assert cli.main(["--seed-check", "--json"]) == 0
    assert asked == [True]
    out = capsys.readouterr().out
    assert out == seedcheck.as_json(verdicts)
    rows = json.loads(out)
    assert len(rows) == len(seedcheck.seed_equations())
    for row in rows:
        assert row["verdict"] in (HOLDS, REORDERED, WRONG)
        assert ("correct" in row) == (row["verdict"] != HOLDS)
        assert row["seed"] and "=" in row["seed"]
    assert not list(tmp_path.iterdir())  # nothing written


def test_table_names_each_verdict(verdicts):
    text = seedcheck.table(verdicts)
    for v in verdicts:
        assert v.equation.what in text
    assert "correct: f_4 = a(a(f_0 W_1 + b_1) W_2 + b_2)" in text


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_latex_section_compiles(verdicts, tmp_path):
    body = seedcheck.latex_section(verdicts)
    assert r"\section" not in body  # the document places it under its own heading
    doc = (
        "\\documentclass{article}\n\\usepackage{amsmath,amssymb}\n\\begin{document}\n"
        + body
        + "\\end{document}\n"
    )
    (tmp_path / "s.tex").write_text(doc, encoding="utf-8")
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "s.tex"],
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    assert Path(tmp_path / "s.pdf").stat().st_size > 0


def test_readings_count_changes():
    eq = seedcheck.seed_equations()[0]  # f1 = W1 ⋅ f0 + b1: one product, two operands
    counted = list(seedcheck.readings(eq.build(0)[1]))
    assert len(counted) == 3 * 2 * 2
    assert sorted(c for c, _ in counted)[0] == 0
    assert max(c for c, _ in counted) == 3
