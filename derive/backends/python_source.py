"""What every Python-source target shares: names, layout, comments, helper signatures.

The numpy and array API backends both print the derivation as Python; these
pieces do not depend on the array library (``ArrayPrinter`` is SymPy's numpy
printer with derive's conventions, each backend subclasses it for its own
namespace).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

import sympy as sp
from sympy.printing.numpy import NumPyPrinter

from .. import catalog, model
from ..expr import (
    Activate,
    ActivateDeriv,
    Add,
    Expr,
    Hadamard,
    InvSqrt,
    Kind,
    Loss,
    LossGrad,
    MatMul,
    Mean,
    Penalty,
    PenaltyGrad,
    Power,
    Scale,
    Spread,
    Sub,
    SumCols,
    SumRows,
    Transpose,
    Var,
    assert_never,
)
from ..layers import WIDTH, Residual
from ..model import Network
from ..naming import subscript


class ArrayPrinter(NumPyPrinter):  # type: ignore[misc]  # SymPy is untyped
    """SymPy's numpy printer with derive's conventions: the arrays' own names, exact
    rationals as decimals, minus terms last.  Each target subclasses it for its namespace."""

    def __init__(self, names: dict[sp.Symbol, str]) -> None:
        super().__init__()
        self._names = names

    def _print_Symbol(self, expr: sp.Symbol) -> str:
        return self._names.get(expr) or str(super()._print_Symbol(expr))

    def _print_IndexedBase(self, expr: sp.IndexedBase) -> str:
        return self._names.get(expr) or str(super()._print_IndexedBase(expr))

    def _print_Add(self, expr: sp.Add, order: str | None = None) -> str:
        """Terms with a leading minus last: ``z - lse``, not ``-lse + z``."""
        terms = self._as_ordered_terms(expr, order=order)
        ordered = [t for t in terms if not t.could_extract_minus_sign()]
        ordered += [t for t in terms if t.could_extract_minus_sign()]
        return str(super()._print_Add(sp.Add(*ordered, evaluate=False), order="none"))

    def _print_Indexed(self, expr: sp.Indexed) -> str:
        """A row entry z[k] is the whole array: numpy broadcasts over the row."""
        return self._names.get(expr.base) or super()._print_Indexed(expr)

    def _print_Float(self, expr: sp.Float) -> str:
        return repr(float(expr))

    def _print_Rational(self, expr: sp.Rational) -> str:
        return catalog.decimal(expr)

    def _print_Relational(self, expr: sp.core.relational.Relational) -> str:
        return f"{self._print(expr.lhs)} {expr.rel_op} {self._print(expr.rhs)}"


def float_constants(expr: sp.Expr) -> sp.Expr:
    """Irrational constant factors (sqrt(2/pi)) as one float literal each.

    A Python float is a "weak" scalar to numpy, so float32 arrays stay
    float32; ``np.sqrt(2)`` would be a float64 scalar and promote them.
    """

    if not expr.args:
        return expr
    if expr.is_number and expr.is_real and not expr.is_Rational:
        return sp.Float(float(expr))
    if expr.is_Mul and expr.free_symbols:
        number, rest = expr.as_independent(*expr.free_symbols, as_Add=False)
        if number.is_real and not number.is_Rational:
            return sp.Mul(sp.Float(float(number)), float_constants(rest), evaluate=False)
    args = tuple(float_constants(arg) for arg in expr.args)
    return expr if args == expr.args else expr.func(*args)


_SIMPLE = r"(?:[A-Za-z_][\w.]*|\d[\w.]*)"
_NEGATED_POWER = re.compile(rf"(^|[\s(\[,])-({_SIMPLE}\*\*-?{_SIMPLE})(?![\w.(\[])")
_HUG = re.compile(rf"(?<![\w.)\]])({_SIMPLE}) \*\* (-?{_SIMPLE})(?![\w.(\[])")


def formatted(code: str) -> str:
    """``code`` laid out as ``ruff format`` lays out an expression.

    Python's own unparser spaces every operator and keeps only needed
    parentheses; ruff then hugs ``**`` between simple operands.
    """
    text = ast.unparse(ast.parse(code, mode="eval"))
    text = _HUG.sub(r"\1**\2", text)
    return _NEGATED_POWER.sub(r"\1-(\2)", text)  # ruff writes -(a**2), not -a**2


def code_name(v: Var) -> str:
    if v == model.X:
        return "x"
    if v == model.Y:
        return "y"
    return v.name


HELPER_ARGS = {catalog.z: "z", catalog.A: "a"}


def helper_name(act: catalog.Activation, derivative: bool = False) -> str:
    base = "_" + re.sub(r"\W", "_", act.name.replace(".", "p"))
    return base + "_derivative" if derivative else base


def code_form(act: catalog.Activation, derivative: bool) -> sp.Expr:
    """What the code evaluates for a(z), or for a'(z) (through A where found)."""
    return act.derivative_code_form if derivative else act.code_form


def helper_args(act: catalog.Activation, derivative: bool) -> list[sp.Symbol]:
    """The helper's arguments: z and/or A, whichever the formula reads."""
    return [s for s in HELPER_ARGS if s in code_form(act, derivative).free_symbols]


_GREEK = {
    Kind.DELTA: "δ",
    Kind.GAMMA: "γ",
    Kind.BETA: "β",
    Kind.MEAN: "μ",
    Kind.NORMALIZED: "x̂",
    Kind.NORMALIZED_GRAD: "ĝ",
    Kind.OUTPUT_GRAD: "ā",
    Kind.SUM_ADJOINT: "Σg",
    Kind.SUM_ADJOINT_XHAT: "Σgx̂",
    Kind.PROJ: "P",
}
"""Names comments write as a lecture does (the code's names are ``Kind`` values)."""


class MatrixText:
    """Prints matrix-level trees as one-line Unicode math for code comments."""

    def __init__(self, network: Network) -> None:
        self.network = network

    def var(self, v: Var) -> str:
        if v == model.X:
            return "X"
        if v == model.a(self.network.depth):
            return "Ŷ"
        name = _GREEK.get(v.kind, v.kind.value)
        return name if v.layer is None else name + subscript(v.layer)

    def __call__(self, e: Expr) -> str:
        match e:
            case Var():
                return self.var(e)
            case MatMul(left, right):
                return f"{self._operand(left)} {self._operand(right)}"
            case Add(left, right):
                return f"{self(left)} + {self(right)}"
            case Hadamard(left, right):
                return f"{self._operand(left)} ⊙ {self._operand(right)}"
            case Transpose(arg):
                return f"{self._operand(arg)}ᵀ"
            case SumRows(arg):
                return f"1ᵀ {self._operand(arg)}"
            case Activate(_, arg):
                return f"a({self(arg)})"
            case ActivateDeriv(_, arg):
                return f"a'({self(arg)})"
            case LossGrad(pred, _):
                if self.network.loss.gradient_from_output is not None:  # fused, e.g. Ŷ - Y
                    return f"∂L/∂{self(pred)} = {self._fused_gradient()}"
                return "∂L/∂Ŷ"
            case Loss(pred, target):
                return f"L({self(pred)}, {self(target)})"
            case PenaltyGrad(arg):
                return f"λ {self._operand(arg)}"
            case Penalty(arg):
                return f"λ/2 ‖{self(arg)}‖²"
            case Sub(left, right):
                return f"{self(left)} - {self._operand(right)}"
            case Scale(arg, factor):
                return f"{factor} {self._operand(arg)}"
            case SumCols(arg):
                return f"{self._operand(arg)} 1"
            case Mean(arg, axis, count):
                return f"mean over the {axis.value} ({count}) of {self._operand(arg)}"
            case Spread(arg):
                return self(arg)
            case Power(arg, exponent):
                return f"{self._operand(arg)}^{exponent}"
            case InvSqrt(arg, eps):
                return f"1/√({self(arg)} + {'ε' if str(eps) == 'epsilon' else eps})"
            case _:
                assert_never(e)

    def _fused_gradient(self) -> str:
        """The derived fused gradient through Ŷ, as text (Ŷ - Y)."""
        gradient = self.network.loss.gradient_from_output
        assert gradient is not None
        hat, y = sp.Symbol("Ŷ"), sp.Symbol("Y")
        names = {catalog.A: hat, catalog.T[catalog.k]: y, catalog.target: y}
        terms = sp.Add.make_args(gradient.subs(names))
        ordered = sorted(terms, key=lambda t: t.could_extract_minus_sign())
        return str(sp.sstr(sp.Add(*ordered, evaluate=False), order="none"))

    def _operand(self, e: Expr) -> str:
        text = self(e)
        atomic = isinstance(e, (Var, Activate, ActivateDeriv, LossGrad, Transpose))
        return text if atomic else f"({text})"


class MatrixCode:
    """Prints matrix-level trees as expressions of a Python array target.

    One walk over the IR for every target; a target says only how it prints a
    scalar formula (its SymPy printer), which formulas it inlines, how it sums
    rows and totals the loss, and what its helpers take first (``xp`` or nothing).
    """

    HELPER_FIRST: tuple[str, ...] = ()
    """Arguments every helper call passes before the arrays (the array API's ``xp``)."""

    ATOMIC: tuple[type[Expr], ...] = (Var, Transpose, Activate)
    """Nodes whose printed form needs no parentheses as an operand."""

    EPS = "EPS"
    """The module constant holding a normalization's ε (``InvSqrt``'s symbol)."""

    def __init__(self, network: Network) -> None:
        self.network = network
        self.counts: dict[sp.Symbol, str] = {catalog.batch: "m"}
        """The code of each count a ``Scale`` factor reads: m, and the width n of the layer
        being printed (``at_width``)."""

    def at_width(self, width: int) -> MatrixCode:
        """This printer with n, the count of a normalization's features, read as ``width``."""
        self.counts = {catalog.batch: "m", WIDTH: str(width)}
        return self

    def sum_cols(self, e: SumCols) -> str:
        """The sum over the features, one column (m x 1) kept."""
        raise NotImplementedError

    def mean(self, e: Mean) -> str:
        """The mean over the batch (1 x n kept) or the features (m x 1 kept)."""
        raise NotImplementedError

    def sqrt(self, code: str) -> str:
        """The entrywise square root of ``code``."""
        raise NotImplementedError

    def _factor(self, factor: sp.Expr) -> str:
        """A scale factor (1/m, -1/2, 1/n) in the counts' code; a Python float stays weak."""
        unknown = factor.free_symbols - set(self.counts)
        if unknown:
            raise ValueError(f"the scale factor {factor} reads {sorted(map(str, unknown))}")
        names = dict(self.counts)
        numerator, denominator = sp.fraction(sp.factor(factor))
        code = self.scalar(numerator, names)
        if denominator != 1:
            code = f"{code} / {self._factor(denominator)}"
        return code if re.fullmatch(r"-?[\w.]+", code) else f"({code})"

    def scalar(self, expr: sp.Expr, names: dict[sp.Symbol, str]) -> str:
        raise NotImplementedError

    def inline(self, act: catalog.Activation, derivative: bool) -> bool:
        raise NotImplementedError

    def sum_rows(self, e: SumRows) -> str:
        raise NotImplementedError

    def total(self, entries: str) -> str:
        """The loss: the sum of its entries' code."""
        raise NotImplementedError

    def _call(self, name: str, args: list[str]) -> str:
        return f"{name}({', '.join([*self.HELPER_FIRST, *args])})"

    def __call__(self, e: Expr) -> str:
        match e:
            case Var():
                return code_name(e)
            case MatMul(left, right):
                return f"{self._operand(left)} @ {self._operand(right)}"
            case Add(left, right):
                return f"{self(left)} + {self(right)}"
            case Hadamard(left, right):
                if self(right) == "1":  # a'(z) = 1: the identity activation
                    return self(left)
                return f"{self._operand(left)} * {self._operand(right)}"
            case Transpose(arg):
                return f"{self._operand(arg)}.T"
            case SumRows():
                return self.sum_rows(e)
            case Activate(layer, arg):
                act = self.network.activation(layer)
                if not self.inline(act, derivative=False):
                    return self._call(helper_name(act), [self(arg)])  # a helper reads z only
                return self.scalar(
                    act.code_form, {catalog.z: self(arg), catalog.Z: self._operand(arg)}
                )
            case ActivateDeriv(layer, arg):
                return self._derivative(layer, arg)
            case LossGrad():
                loss = self.network.loss
                if loss.gradient_from_output is not None:  # fused: through Ŷ = link(z_L)
                    return self.scalar(loss.gradient_from_output, self._loss_names(e))
                return self.scalar(loss.gradient, self._loss_names(e))
            case Loss():
                return self.total(self.scalar(self.network.loss.code_form, self._loss_names(e)))
            case Penalty() | PenaltyGrad():
                # the generated code adds the penalty apart, scaled by the run-time λ
                raise ValueError(f"{type(e).__name__} is emitted by the planner's penalty groups")
            case Sub(left, right):  # operands of equal shape, or broadcast by Spread
                return f"{self(left)} - {self._operand(right)}"
            case Scale(arg, factor):
                if factor == 1:
                    return self(arg)
                if factor == -1:
                    return f"-{self._operand(arg)}"
                return f"{self._factor(factor)} * {self._operand(arg)}"
            case SumCols():
                return self.sum_cols(e)
            case Mean():
                return self.mean(e)
            case Spread(arg):  # a row (column) meets a matrix by the library's broadcasting
                return self(arg)
            case Power(arg, exponent):
                return f"{self._operand(arg)}**{exponent}"
            case InvSqrt(arg, _):  # (v + ε)^{-1/2}: ε > 0 keeps a constant row finite
                return f"1.0 / {self.sqrt(f'{self(arg)} + {self.EPS}')}"
            case _:
                assert_never(e)

    def _derivative(self, layer: int, arg: Expr) -> str:
        """a'(z_l), from the stored z_l, or through A = a_l when the catalog found that form."""
        act = self.network.activation(layer)
        names = {catalog.z: self(arg)}
        if act.derivative_from_output is not None:
            match arg:
                case Var(Kind.Z, int(index)):  # A = σ(z_l): a_l, or h_l of a residual block
                    names[catalog.A] = code_name(self._activated(index))
                case _:
                    raise ValueError("a'(z) through A needs z to be a stored z_l")
        if not self.inline(act, derivative=True):
            args = [names[s] for s in helper_args(act, derivative=True)]
            return self._call(helper_name(act, derivative=True), args)
        return self.scalar(code_form(act, derivative=True), names)

    def _activated(self, index: int) -> Var:
        """σ(z_l) as stored: a_l, or h_l of a residual block (whose a_l adds the skip)."""
        layer = self.network.layers[index - 1]
        return layer.hidden if isinstance(layer, Residual) else model.a(index)

    def _loss_names(self, e: Loss | LossGrad) -> dict[sp.Symbol, str]:
        names = {
            catalog.pred: self._operand(e.pred),
            catalog.target: self._operand(e.target),
            catalog.T: self._operand(e.target),
            catalog.batch: "m",
            catalog.outputs: str(self.network.sizes[-1]),
        }
        if self.network.fused:  # the loss reads z_L; its gradient reads Ŷ = a_L
            names |= {catalog.z: self._operand(e.pred), catalog.Z: self._operand(e.pred)}
            names[catalog.A] = code_name(model.a(self.network.depth))
        return names

    def _operand(self, e: Expr) -> str:
        text = self(e)
        if isinstance(e, Spread):
            return self._operand(e.arg)
        return text if isinstance(e, self.ATOMIC) else f"({text})"


@dataclass(frozen=True)
class Line:
    """One statement of the generated code and the identity it implements."""

    target: str
    code: str
    comment: str


LINE_LENGTH = 100
"""The line length the generated code is formatted for (as ``ruff format`` would)."""


def tuple_literal(items: list[str], prefix: str, brackets: str = "()", indent: str = "") -> str:
    """A tuple (or list) literal laid out as ``ruff format`` lays it out after ``prefix``."""
    opening, closing = brackets[0], brackets[1]
    lone_comma = "," if len(items) == 1 and brackets == "()" else ""
    inline = opening + ", ".join(items) + lone_comma + closing
    if len(indent) + len(prefix) + len(inline) <= LINE_LENGTH:
        return inline
    return opening + "\n" + "".join(f"{indent}    {item},\n" for item in items) + indent + closing


LINT_LINE_LENGTH = 120
"""The longest line the linter accepts (``max-line-length`` in pyproject.toml)."""


def header_line(command: str) -> str:
    """The first line of every generated file: what made it (``files.HEADER``)."""
    line = f"# Generated by `{command}`"
    return line if len(line) <= LINT_LINE_LENGTH else f"{line}  # noqa: E501 (the exact command)"
