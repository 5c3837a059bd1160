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
    Loss,
    LossGrad,
    MatMul,
    Penalty,
    PenaltyGrad,
    SumRows,
    Transpose,
    Var,
)
from ..model import Network


class ArrayPrinter(NumPyPrinter):
    """SymPy's numpy printer with derive's conventions: the arrays' own names, exact
    rationals as decimals, minus terms last.  Each target subclasses it for its namespace."""

    def __init__(self, names: dict[sp.Symbol, str]) -> None:
        super().__init__()
        self._names = names

    def _print_Symbol(self, expr: sp.Symbol) -> str:
        return self._names.get(expr) or super()._print_Symbol(expr)

    def _print_IndexedBase(self, expr: sp.IndexedBase) -> str:
        return self._names.get(expr) or super()._print_IndexedBase(expr)

    def _print_Add(self, expr: sp.Add, order: str | None = None) -> str:
        """Terms with a leading minus last: ``z - lse``, not ``-lse + z``."""
        terms = self._as_ordered_terms(expr, order=order)
        ordered = [t for t in terms if not t.could_extract_minus_sign()]
        ordered += [t for t in terms if t.could_extract_minus_sign()]
        return super()._print_Add(sp.Add(*ordered, evaluate=False), order="none")

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
    if not derivative:
        return act.code_form
    if act.derivative_from_output is not None:
        return act.derivative_code_form
    return catalog.stable(act.derivative)


def helper_args(act: catalog.Activation, derivative: bool) -> list[sp.Symbol]:
    """The helper's arguments: z and/or A, whichever the formula reads."""
    return [s for s in HELPER_ARGS if s in code_form(act, derivative).free_symbols]


class MatrixText:
    """Prints matrix-level trees as one-line Unicode math for code comments."""

    SUB = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")

    def __init__(self, network: Network) -> None:
        self.network = network

    def var(self, v: Var) -> str:
        if v == model.X:
            return "X"
        if v == model.a(self.network.depth):
            return "Ŷ"
        name = {"delta": "δ"}.get(v.kind, v.kind)
        return name if v.layer is None else name + str(v.layer).translate(self.SUB)

    def __call__(self, e: Expr) -> str:
        if isinstance(e, Var):
            return self.var(e)
        if isinstance(e, MatMul):
            return f"{self._operand(e.left)} {self._operand(e.right)}"
        if isinstance(e, Add):
            return f"{self(e.left)} + {self(e.right)}"
        if isinstance(e, Hadamard):
            return f"{self._operand(e.left)} ⊙ {self._operand(e.right)}"
        if isinstance(e, Transpose):
            return f"{self._operand(e.arg)}ᵀ"
        if isinstance(e, SumRows):
            return f"1ᵀ {self._operand(e.arg)}"
        if isinstance(e, Activate):
            return f"a({self(e.arg)})"
        if isinstance(e, ActivateDeriv):
            return f"a'({self(e.arg)})"
        if isinstance(e, LossGrad):
            if self.network.fused:  # the derived fused gradient, e.g. Ŷ - Y
                loss, hat, y = self.network.loss, sp.Symbol("Ŷ"), sp.Symbol("Y")
                names = {catalog.A: hat, catalog.T[catalog.k]: y, catalog.target: y}
                terms = sp.Add.make_args(loss.gradient_from_output.subs(names))
                ordered = sorted(terms, key=lambda t: t.could_extract_minus_sign())
                return f"∂L/∂{self(e.pred)} = {sp.sstr(sp.Add(*ordered, evaluate=False), order='none')}"
            return "∂L/∂Ŷ"
        if isinstance(e, Loss):
            return f"L({self(e.pred)}, {self(e.target)})"
        if isinstance(e, PenaltyGrad):
            return f"λ {self._operand(e.arg)}"
        if isinstance(e, Penalty):
            return f"λ/2 ‖{self(e.arg)}‖²"
        raise TypeError(f"cannot print {type(e).__name__}")

    def _operand(self, e: Expr) -> str:
        text = self(e)
        return (
            text
            if isinstance(e, (Var, Activate, ActivateDeriv, LossGrad, Transpose))
            else f"({text})"
        )


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

    def __init__(self, network: Network) -> None:
        self.network = network

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
        if isinstance(e, Var):
            return code_name(e)
        if isinstance(e, MatMul):
            return f"{self._operand(e.left)} @ {self._operand(e.right)}"
        if isinstance(e, Add):
            return f"{self(e.left)} + {self(e.right)}"
        if isinstance(e, Hadamard):
            if self(e.right) == "1":  # a'(z) = 1: the identity activation
                return self(e.left)
            return f"{self._operand(e.left)} * {self._operand(e.right)}"
        if isinstance(e, Transpose):
            return f"{self._operand(e.arg)}.T"
        if isinstance(e, SumRows):
            return self.sum_rows(e)
        if isinstance(e, Activate):
            act = self.network.activation(e.layer)
            if not self.inline(act, derivative=False):
                return self._call(helper_name(act), [self(e.arg)])  # a helper reads z only
            return self.scalar(
                act.code_form, {catalog.z: self(e.arg), catalog.Z: self._operand(e.arg)}
            )
        if isinstance(e, ActivateDeriv):
            act = self.network.activation(e.layer)
            if act.derivative_from_output is not None and not (
                isinstance(e.arg, Var) and e.arg.kind == "z"
            ):
                raise ValueError("a'(z) through A needs z to be a stored z_l")
            names = {catalog.z: self(e.arg)}
            if act.derivative_from_output is not None:
                names[catalog.A] = code_name(model.a(e.arg.layer))
            if not self.inline(act, derivative=True):
                args = [names[s] for s in helper_args(act, derivative=True)]
                return self._call(helper_name(act, derivative=True), args)
            return self.scalar(code_form(act, derivative=True), names)
        if isinstance(e, LossGrad):
            loss = self.network.loss
            if loss.gradient_from_output is not None:  # fused: through Ŷ = link(z_L)
                return self.scalar(loss.gradient_from_output, self._loss_names(e))
            return self.scalar(loss.gradient, self._loss_names(e))
        if isinstance(e, Loss):
            return self.total(self.scalar(self.network.loss.code_form, self._loss_names(e)))
        raise TypeError(f"cannot emit {type(e).__name__}")

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
    opening, closing = brackets
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
