"""Every IR reader handles every node type of ``expr.Node``, and mypy reports one that does not.

(a) A sample of each node class goes through each reader: it is handled, or refused by the
reader's own documented ValueError (a node the reader's domain never holds), never by the
``assert_never`` "no rule" TypeError.  (b) A reader missing one ``case`` is reported by
``mypy --strict``; the same reader with every case is not (so the report is the missing case).
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import replace

import pytest
import sympy as sp

from derive import catalog, latex, proof, symbolic_widths
from derive.backends.array_api.printer import ArrayCode
from derive.backends.numpy.printer import NumpyCode
from derive.backends.python_source import MatrixText
from derive.derivation import ONE, pull
from derive.expr import (
    Activate,
    ActivateDeriv,
    Add,
    Axis,
    Expr,
    Hadamard,
    InvSqrt,
    Loss,
    LossGrad,
    MatMul,
    Mean,
    Node,
    Penalty,
    PenaltyGrad,
    Power,
    Scale,
    Spread,
    Sub,
    SumCols,
    SumRows,
    Transpose,
    rebuild,
)
from derive.layers import EPS
from derive.model import LOSS, Network, W, Y, a, b, z

M, N = sp.Symbol("m", positive=True, integer=True), sp.Symbol("n", positive=True, integer=True)
NETWORK = Network((3, 2), (catalog.activation("tanh"),), catalog.loss_function("l2"))

SAMPLES: dict[type, Expr] = {
    type(z(1)): z(1),
    MatMul: MatMul(a(0), W(1)),
    Add: Add(MatMul(a(0), W(1)), b(1)),
    Hadamard: Hadamard(z(1), a(1)),
    Transpose: Transpose(z(1)),
    SumRows: SumRows(z(1)),
    Activate: Activate(1, z(1)),
    ActivateDeriv: ActivateDeriv(1, z(1)),
    Loss: Loss(a(1), Y),
    LossGrad: LossGrad(a(1), Y),
    Penalty: Penalty(W(1)),
    PenaltyGrad: PenaltyGrad(W(1)),
    # the normalizations' nodes (issue 14)
    Sub: Sub(z(1), a(1)),
    Scale: Scale(z(1), sp.Rational(-1, 2)),
    SumCols: SumCols(z(1)),
    Mean: Mean(z(1), Axis.FEATURES, N),
    Spread: Spread(b(1), Axis.BATCH, M),
    Power: Power(z(1), 2),
    InvSqrt: InvSqrt(z(1), EPS),
}


def _evaluate(e: Expr) -> object:
    m, p, n = 2, 3, 2
    env = {
        a(0): proof.symbols_matrix("x", m, p),
        W(1): proof.symbols_matrix("w", p, n),
        b(1): proof.symbols_matrix("b", 1, n),
        z(1): proof.symbols_matrix("z", m, n),
        a(1): proof.symbols_matrix("y_hat", m, n),
        Y: proof.symbols_matrix("y", m, n),
    }
    sem = replace(proof.generic_semantics(NETWORK.loss), sizes={M: m, N: n})
    return proof.evaluate(e, env, sem)


def _entries() -> symbolic_widths._Entries:
    m, p, n = symbolic_widths.m, symbolic_widths.p, symbolic_widths.n
    one = sp.Integer(1)
    shapes = {a(0): (m, p), W(1): (p, n), b(1): (one, n), z(1): (m, n), a(1): (m, n), Y: (m, n)}
    return symbolic_widths._Entries(shapes)


def _pull(e: Expr) -> object:
    into: dict = {}
    pull(e, ONE if isinstance(e, Loss | Penalty) else LOSS, into)
    return into


READERS: dict[str, Callable[[Expr], object]] = {
    "derivation.pull": _pull,
    "proof.evaluate": _evaluate,
    "symbolic_widths entries": lambda e: _entries()(e, sp.Symbol("r"), sp.Symbol("s")),
    "symbolic_widths shape": lambda e: _entries().shape(e),
    "latex.MatrixLatex": lambda e: latex.MatrixLatex(NETWORK)(e),
    "latex._shape": lambda e: latex._shape(e, {1: "l", 0: "l-1"}, ("m", "n_l")),
    "python_source.MatrixText": lambda e: MatrixText(NETWORK)(e),
    "numpy NumpyCode": lambda e: NumpyCode(NETWORK)(e),
    "array_api ArrayCode": lambda e: ArrayCode(NETWORK)(e),
    "expr.rebuild": lambda e: rebuild(e, e.children()),
}

NORMALIZATION_NODES = (Sub, Scale, SumCols, Mean, Spread, Power, InvSqrt)

REFUSED = (
    {
        # (reader, node): what the reader's domain excludes, refused by name with a ValueError
        ("derivation.pull", cls)
        for cls in (Transpose, SumRows, SumCols, ActivateDeriv, LossGrad, PenaltyGrad)
    }
    | {
        # the normalizations: proved at concrete sizes only (both Python targets emit them);
        # a constant Scale is dropout's 1/(1 - p), which the symbolic widths take
        (reader, cls)
        for reader in (
            "symbolic_widths entries",
            "symbolic_widths shape",
            "latex._shape",
        )
        for cls in NORMALIZATION_NODES
        if not (cls is Scale and reader.startswith("symbolic_widths"))
    }
    | {
        ("symbolic_widths entries", Loss),
        ("symbolic_widths entries", LossGrad),
        ("symbolic_widths entries", Penalty),
        ("symbolic_widths entries", PenaltyGrad),
        ("symbolic_widths shape", Loss),
        ("symbolic_widths shape", LossGrad),
        ("symbolic_widths shape", Penalty),
        ("latex._shape", Loss),
        ("latex._shape", LossGrad),
        ("latex._shape", Penalty),
        ("numpy NumpyCode", Penalty),
        ("numpy NumpyCode", PenaltyGrad),
        ("array_api ArrayCode", Penalty),
        ("array_api ArrayCode", PenaltyGrad),
    }
)


def test_every_node_class_has_a_sample():
    assert set(SAMPLES) == set(typing.get_args(Node))


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("node", sorted(typing.get_args(Node), key=lambda c: c.__name__))
def test_reader_handles_node(reader, node):
    sample = SAMPLES[node]
    if (reader, node) in REFUSED:
        with pytest.raises(ValueError, match=node.__name__):
            READERS[reader](sample)
    else:
        assert READERS[reader](sample) is not None


def test_a_foreign_node_hits_the_no_rule_path():
    """The ``case _`` arm is live: an object outside the union is refused with a TypeError."""

    class Stray:
        def children(self) -> tuple:
            return ()

    with pytest.raises(TypeError, match="no rule for Stray"):
        latex.MatrixLatex(NETWORK)(Stray())  # type: ignore[arg-type]


READER = """
from derive.expr import (
    Activate, ActivateDeriv, Add, Expr, Hadamard, Loss, LossGrad, MatMul, Penalty, PenaltyGrad,
    SumRows, Transpose, Var, assert_never, Sub, Scale, SumCols, Mean, Spread, Power, InvSqrt,
)


def depth(e: Expr) -> int:
    match e:
        case Var():
            return 0
        case MatMul(left, right) | Add(left, right) | Hadamard(left, right) | Sub(left, right):
            return 1 + max(depth(left), depth(right))
        case Loss(left, right) | LossGrad(left, right):
            return 1 + max(depth(left), depth(right))
        case Transpose(arg) | SumRows(arg) | Penalty(arg) | PenaltyGrad(arg) | SumCols(arg):
            return 1 + depth(arg)
        case Scale(arg) | Mean(arg) | Spread(arg) | Power(arg) | InvSqrt(arg):
            return 1 + depth(arg)
        case Activate(_, arg){deriv}:
            return 1 + depth(arg)
        case _:
            assert_never(e)
"""


@pytest.mark.parametrize("complete", [True, False], ids=["every case", "ActivateDeriv missing"])
def test_mypy_reports_a_reader_missing_a_case(tmp_path, tmp_path_factory, monkeypatch, complete):
    api = pytest.importorskip("mypy.api")
    source = tmp_path / "reader.py"
    source.write_text(READER.replace("{deriv}", " | ActivateDeriv(_, arg)" if complete else ""))
    monkeypatch.setenv("MYPYPATH", str(latex.__file__).rsplit("/derive/", 1)[0])
    monkeypatch.chdir(tmp_path)  # no project config: only --strict
    cache = tmp_path_factory.getbasetemp() / "mypy-cache"  # shared: typeshed is read once
    out, err, status = api.run(
        [str(source), "--strict", "--python-version", "3.10", "--cache-dir", str(cache)]
    )
    if complete:
        assert status == 0, out + err
    else:
        assert status == 1, out + err
        assert 'Argument 1 to "assert_never" has incompatible type "ActivateDeriv"' in out, out
