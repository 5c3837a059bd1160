"""Printing the derivation as numpy code: one expression per identity.

Each line of the generated forward pass is printed from the same expression
trees the proof checked and the LaTeX shows, and carries a comment with the
identity it implements.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ... import catalog, model
from ...expr import (
    Activate,
    Axis,
    Mean,
    SumCols,
    SumRows,
    Transpose,
    Var,
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


class NumpyPrinter(ArrayPrinter):
    """SymPy's numpy printer, writing ``np.`` and the arrays' own names."""

    def _module_format(self, fqn: str, register: bool = True) -> str:
        name: str = super()._module_format(fqn, register)
        return name.replace("numpy.", "np.")

    def _print_LogSumExp(self, expr: catalog.LogSumExp) -> str:
        return f"np.logaddexp.reduce({self._print(expr.args[0])}, axis=1, keepdims=True)"

    def _print_Min(self, expr: sp.Min) -> str:
        return f"np.minimum({', '.join(self._print(a) for a in expr.args)})"

    def _print_Max(self, expr: sp.Max) -> str:
        return f"np.maximum({', '.join(self._print(a) for a in expr.args)})"

    def _print_Piecewise(self, expr: sp.Piecewise) -> str:
        """``np.where``; constant branches take the dtype of the tested array."""
        (upper, cond), (lower, other) = expr.args
        if other != sp.true:
            raise ValueError(f"cannot print {expr}")
        code = f"np.where({self._print(cond)}, {self._print(upper)}, {self._print(lower)})"
        if not (upper.free_symbols or lower.free_symbols):
            code += f".astype({self._print(cond.lhs)}.dtype)"
        return code


def scalar_code(expr: sp.Expr, names: dict[sp.Symbol, str]) -> str:
    """numpy code for a catalog formula, its symbols renamed to array names."""
    code: str = NumpyPrinter(names).doprint(float_constants(expr))
    return code


INLINE_LIMIT = 32
"""Activation code longer than this goes into a helper function, so lines stay short."""


def inline(act: catalog.Activation, derivative: bool) -> bool:
    if not act.entrywise:
        return True
    return (
        len(scalar_code(code_form(act, derivative), {catalog.z: "z1", catalog.A: "a1"}))
        <= INLINE_LIMIT
    )


@dataclass(frozen=True)
class Helper:
    """A module-level function computing a long activation formula."""

    name: str
    args: str
    doc: str
    lines: list[tuple[str, str]]  # (name, code) of intermediate values
    result: str


def helpers(network: Network) -> list[Helper]:
    """Helpers for every activation formula too long to inline, in layer order.

    Common subexpressions become named lines (SymPy's ``cse``, which is
    deterministic for a given expression).
    """
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
            args = ", ".join(f"{HELPER_ARGS[s]}: Array" for s in helper_args(act, derivative))
            lines = [(str(s), formatted(scalar_code(e, names))) for s, e in shared]
            result_code = formatted(scalar_code(result, names))
            out.append(Helper(helper_name(act, derivative), args, doc, lines, result_code))
    return out


class NumpyCode(MatrixCode):
    """Prints matrix-level trees as numpy expressions."""

    ATOMIC = (Var, Transpose, SumRows, SumCols, Mean, Activate)

    def scalar(self, expr: sp.Expr, names: dict[sp.Symbol, str]) -> str:
        return scalar_code(expr, names)

    def inline(self, act: catalog.Activation, derivative: bool) -> bool:
        return inline(act, derivative)

    def sum_rows(self, e: SumRows) -> str:
        return f"{self._operand(e.arg)}.sum(axis=0, keepdims=True)"

    def total(self, entries: str) -> str:
        return f"float(np.sum({entries}))"

    def sum_cols(self, e: SumCols) -> str:
        return f"{self._operand(e.arg)}.sum(axis=1, keepdims=True)"

    def mean(self, e: Mean) -> str:
        axis = 0 if e.axis is Axis.BATCH else 1
        return f"{self._operand(e.arg)}.mean(axis={axis}, keepdims=True)"

    def sqrt(self, code: str) -> str:
        return f"np.sqrt({code})"


def forward_lines(network: Network) -> list[Line]:
    text, code = MatrixText(network), NumpyCode(network)
    lines = []
    for step in network.steps():
        if step.target == model.LOSS:
            continue
        k = step.index
        lines.append(
            Line(
                code_name(step.target),
                formatted(code(step.expr)),
                f"f{k} = {text(step.target)} = {text(step.expr)}",
            )
        )
    return lines
