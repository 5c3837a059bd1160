"""Printing the derivation as array API code: ``xp.`` functions only.

The numpy target's printer writes numpy idioms the array API standard does
not have (``np.logaddexp.reduce``, ``.astype``, scalars in ``np.where``);
this one writes the standard's functions, with every constant operand of a
function made an array of the operand's own dtype (``xp.full_like``), since
the 2023.12 standard allows Python scalars only in operators, and JAX would
promote a float32 ``where(c, 1, 0.01)`` to float64.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sympy as sp
from sympy.codegen.numpy_nodes import logaddexp

from ... import catalog, model
from ...derivation import Derivation
from ...expr import (
    Axis,
    Mean,
    SumCols,
    SumRows,
)
from ...model import Network
from ..python_source import (
    HELPER_ARGS,
    ArrayPrinter,
    Line,
    MatrixCode,
    MatrixText,
    code_form,
    code_name,
    float_constants,
    formatted,
    helper_args,
    helper_name,
)

STANDARD = frozenset(
    """abs acos acosh asin asinh atan atan2 atanh cos cosh exp expm1 log log1p log2 log10
    logaddexp maximum minimum sign sin sinh sqrt square tan tanh where sum max min
    full_like zeros_like ones_like pow e pi""".split()
)
"""The array API names the printer may write; anything else is refused."""

_RENAMED = {"arctan": "atan", "arcsin": "asin", "arccos": "acos", "arctanh": "atanh"}
_RENAMED |= {"arcsinh": "asinh", "arccosh": "acosh", "power": "pow", "arctan2": "atan2"}
_DOTTED = re.compile(r"\b([A-Za-z_]\w*)\.([A-Za-z_]\w*)")


class NotInStandard(ValueError):
    """A formula that needs a function the array API standard lacks."""


class _ArrayApi(ArrayPrinter):
    """SymPy's numpy printer, writing the array API's ``xp.`` names."""

    def _module_format(self, fqn: str, register: bool = True) -> str:
        name = super()._module_format(fqn, register).replace("numpy.", "xp.", 1)
        head, _, tail = name.rpartition(".")
        return f"{head}.{_RENAMED.get(tail, tail)}" if head == "xp" else name

    def _like(self, expr: sp.Expr) -> str:
        """An array the expression reads, whose dtype and shape constants take."""
        symbols = sorted(
            (s for s in expr.free_symbols if s in self._names), key=lambda s: self._names[s]
        )
        if not symbols:
            raise NotInStandard(f"{expr} reads no array")
        return self._names[symbols[0]]

    def _operand(self, arg: sp.Expr, like: str) -> str:
        """A function's operand: constants become arrays like ``like``."""
        if arg.is_Number:
            if arg == 0:
                return f"xp.zeros_like({like})"
            return f"xp.full_like({like}, {float(arg)!r})"
        code: str = self._print(arg)
        return code

    def _call(self, name: str, expr: sp.Expr, args: tuple[sp.Expr, ...]) -> str:
        like = self._like(expr)
        return f"xp.{name}({', '.join(self._operand(a, like) for a in args)})"

    def _print_Max(self, expr: sp.Max) -> str:
        return self._call("maximum", expr, expr.args)

    def _print_Min(self, expr: sp.Min) -> str:
        return self._call("minimum", expr, expr.args)

    def _print_logaddexp(self, expr: logaddexp) -> str:
        return self._call("logaddexp", expr, expr.args)

    def _print_Piecewise(self, expr: sp.Piecewise) -> str:
        (upper, cond), (lower, other) = expr.args
        if other != sp.true:
            raise NotInStandard(f"cannot print {expr}")
        like = self._print(cond.lhs)
        return (
            f"xp.where({self._print(cond)}, {self._operand(upper, like)}, "
            f"{self._operand(lower, like)})"
        )

    def _print_LogSumExp(self, expr: catalog.LogSumExp) -> str:
        return f"_logsumexp(xp, {self._print(expr.args[0])})"


def scalar_code(expr: sp.Expr, names: dict[sp.Symbol, str]) -> str:
    """Array API code for a catalog formula, its symbols renamed to array names."""
    code: str = _ArrayApi(names).doprint(float_constants(expr))
    used = set(_DOTTED.findall(code)) - {(name, "T") for name in names.values()}
    outside = sorted(
        f"{head}.{tail}" for head, tail in used if head != "xp" or tail not in STANDARD
    )
    if outside:
        raise NotInStandard(f"{', '.join(outside)} is not in the array API standard ({expr})")
    return code


INLINE_LIMIT = 40
"""Formula code longer than this goes into a helper function, so lines stay short."""


def inline(act: catalog.Activation, derivative: bool) -> bool:
    if not act.entrywise:
        return True
    code = scalar_code(code_form(act, derivative), {catalog.z: "z1", catalog.A: "a1"})
    return len(code) <= INLINE_LIMIT


@dataclass(frozen=True)
class Helper:
    """A module-level function computing a long activation formula."""

    name: str
    args: str
    doc: str
    lines: list[tuple[str, str]]  # (name, code) of intermediate values
    result: str


def helpers(network: Network) -> list[Helper]:
    """Helpers for every formula too long to inline (the numpy target's, in ``xp``)."""
    out: list[Helper] = []
    for act in dict.fromkeys(network.activations):
        for derivative in (False, True):
            if inline(act, derivative):
                continue
            form = code_form(act, derivative)
            if not derivative:
                doc = f"{act.name}(z) = {act.summary}."
            elif act.derivative_from_output is not None:
                doc = f"The derivative of {act.name} through A = a(z), as SymPy rewrote and proved it."
            else:
                doc = f"The derivative of {act.name} by SymPy (no form through A = a(z) was found)."
            shared, (result,) = sp.cse(form, symbols=sp.numbered_symbols("t"))
            names = {**HELPER_ARGS, **{s: str(s) for s, _ in shared}}
            args = "".join(f", {HELPER_ARGS[s]}: Array" for s in helper_args(act, derivative))
            lines = [(str(s), formatted(scalar_code(e, names))) for s, e in shared]
            out.append(
                Helper(
                    helper_name(act, derivative),
                    f"xp: Namespace{args}",
                    doc,
                    lines,
                    formatted(scalar_code(result, names)),
                )
            )
    return out


class ArrayCode(MatrixCode):
    """Prints matrix-level trees as array API expressions (``xp`` in scope)."""

    HELPER_FIRST = ("xp",)

    def scalar(self, expr: sp.Expr, names: dict[sp.Symbol, str]) -> str:
        return scalar_code(expr, names)

    def inline(self, act: catalog.Activation, derivative: bool) -> bool:
        return inline(act, derivative)

    def sum_rows(self, e: SumRows) -> str:
        return f"xp.sum({self(e.arg)}, axis=0, keepdims=True)"

    def total(self, entries: str) -> str:
        return f"xp.sum({entries})"

    def sum_cols(self, e: SumCols) -> str:
        return f"xp.sum({self(e.arg)}, axis=1, keepdims=True)"

    def mean(self, e: Mean) -> str:
        axis = 0 if e.axis is Axis.BATCH else 1
        return f"xp.mean({self(e.arg)}, axis={axis}, keepdims=True)"

    def sqrt(self, code: str) -> str:
        return f"xp.sqrt({code})"


def forward_lines(network: Network) -> list[Line]:
    """z_l and a_l, each with the composition step it implements."""
    text, code = MatrixText(network), ArrayCode(network)
    return [
        Line(
            code_name(step.target),
            formatted(code(step.expr)),
            f"f{step.index} = {text(step.target)} = {text(step.expr)}",
        )
        for step in network.steps()
        if step.target != model.LOSS
    ]


def backward_lines(derivation: Derivation) -> list[Line]:
    """δ_l, ∂L/∂W_l and ∂L/∂b_l, last layer first, each with its identity."""
    network = derivation.network
    text, code = MatrixText(network), ArrayCode(network)
    lines = []
    for layer in range(network.depth, 0, -1):
        d = model.delta(layer)
        lines.append(
            Line(
                code_name(d),
                formatted(code(derivation.deltas[layer])),
                f"{text(d)} = {text(derivation.deltas[layer])}",
            )
        )
        for param in (model.W(layer), model.b(layer)):
            grad = derivation.gradients[param]
            lines.append(
                Line(
                    f"d{code_name(param)}",
                    formatted(code(grad)),
                    f"∂L/∂{text(param)} = {text(grad)}",
                )
            )
    return lines


def loss_code(network: Network) -> str:
    """The loss value L(Ŷ, Y) (or L(z_L, Y) when fused) as a 0-d array.

    ``xp.asarray`` because numpy's sum returns a numpy scalar, not an array.
    """
    return formatted(f"xp.asarray({ArrayCode(network)(network.steps()[-1].expr)})")
