"""Emit a standalone numpy module from the derivation, through Jinja2.

Each line of the generated forward and backward pass is printed from the
same expression trees the proof checked and the LaTeX shows, and carries a
comment with the identity it implements.  Output depends only on the
network (no timestamps, no ordering from ``cse`` or dict iteration), so the
same input gives byte-identical files.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import jinja2
import sympy as sp
from sympy.printing.numpy import NumPyPrinter

from . import __version__, catalog, model
from .derivation import Derivation
from .expr import (
    Activate,
    ActivateDeriv,
    Add,
    Expr,
    Hadamard,
    Loss,
    LossGrad,
    MatMul,
    SumRows,
    Transpose,
    Var,
)
from .model import Network

TEMPLATE = "mlp.py.jinja"


class _Numpy(NumPyPrinter):
    """SymPy's numpy printer, writing ``np.`` and the arrays' own names."""

    def __init__(self, names: dict[sp.Symbol, str]) -> None:
        super().__init__()
        self._names = names

    def _module_format(self, fqn: str, register: bool = True) -> str:
        return super()._module_format(fqn, register).replace("numpy.", "np.")

    def _print_Symbol(self, expr: sp.Symbol) -> str:
        return self._names.get(expr) or super()._print_Symbol(expr)


def scalar_code(expr: sp.Expr, names: dict[sp.Symbol, str]) -> str:
    """numpy code for a catalog formula, its symbols renamed to array names."""
    return _Numpy(names).doprint(expr)


_SIMPLE = r"(?:[A-Za-z_][\w.]*|\d[\w.]*)"
_HUG = re.compile(rf"(?<![\w.)\]])({_SIMPLE}) \*\* (-?{_SIMPLE})(?![\w.(\[])")


def formatted(code: str) -> str:
    """``code`` laid out as ``ruff format`` lays out an expression.

    Python's own unparser spaces every operator and keeps only needed
    parentheses; ruff then hugs ``**`` between simple operands.
    """
    text = ast.unparse(ast.parse(code, mode="eval"))
    return _HUG.sub(r"\1**\2", text)


def code_name(v: Var) -> str:
    if v == model.X:
        return "x"
    if v == model.Y:
        return "y"
    return v.name


class NumpyCode:
    """Prints matrix-level trees as numpy expressions."""

    def __init__(self, network: Network) -> None:
        self.network = network

    def __call__(self, e: Expr) -> str:
        if isinstance(e, Var):
            return code_name(e)
        if isinstance(e, MatMul):
            return f"{self._operand(e.left)} @ {self._operand(e.right)}"
        if isinstance(e, Add):
            return f"{self(e.left)} + {self(e.right)}"
        if isinstance(e, Hadamard):
            return f"{self._operand(e.left)} * {self._operand(e.right)}"
        if isinstance(e, Transpose):
            return f"{self._operand(e.arg)}.T"
        if isinstance(e, SumRows):
            return f"{self._operand(e.arg)}.sum(axis=0, keepdims=True)"
        if isinstance(e, Activate):
            act = self.network.activation(e.layer)
            return scalar_code(act.definition, {catalog.z: self(e.arg)})
        if isinstance(e, ActivateDeriv):
            act = self.network.activation(e.layer)
            rewrite = act.derivative_from_output
            if rewrite is not None and isinstance(e.arg, Var) and e.arg.kind == "z":
                return scalar_code(rewrite, {catalog.A: code_name(model.a(e.arg.layer))})
            return scalar_code(act.derivative, {catalog.z: self(e.arg)})
        if isinstance(e, LossGrad):
            return scalar_code(self.network.loss.gradient, self._loss_names(e))
        if isinstance(e, Loss):
            entry = self.network.loss.scale * self.network.loss.entry
            return f"float(np.sum({scalar_code(entry, self._loss_names(e))}))"
        raise TypeError(f"cannot emit {type(e).__name__}")

    def _loss_names(self, e: Loss | LossGrad) -> dict[sp.Symbol, str]:
        return {
            catalog.pred: self._operand(e.pred),
            catalog.target: self._operand(e.target),
            catalog.batch: "m",
            catalog.outputs: str(self.network.sizes[-1]),
        }

    def _operand(self, e: Expr) -> str:
        text = self(e)
        atomic = isinstance(e, (Var, Transpose, SumRows, Activate))
        return text if atomic else f"({text})"


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
            return "∂L/∂Ŷ"
        if isinstance(e, Loss):
            return f"L({self(e.pred)}, {self(e.target)})"
        raise TypeError(f"cannot print {type(e).__name__}")

    def _operand(self, e: Expr) -> str:
        text = self(e)
        return text if isinstance(e, (Var, Activate, ActivateDeriv, LossGrad, Transpose)) else f"({text})"


@dataclass(frozen=True)
class Line:
    """One statement of the generated code and the identity it implements."""

    target: str
    code: str
    comment: str


def forward_lines(network: Network) -> list[Line]:
    text, code = MatrixText(network), NumpyCode(network)
    lines = []
    for step in network.steps():
        if step.target == model.LOSS:
            continue
        k = step.index
        lines.append(Line(code_name(step.target), formatted(code(step.expr)), f"f{k} = {text(step.target)} = {text(step.expr)}"))
    return lines


def backward_lines(derivation: Derivation) -> list[Line]:
    network = derivation.network
    text, code = MatrixText(network), NumpyCode(network)
    lines = []
    for layer in range(network.depth, 0, -1):
        d = model.delta(layer)
        lines.append(Line(code_name(d), formatted(code(derivation.deltas[layer])), f"{text(d)} = {text(derivation.deltas[layer])}"))
        for param in (model.W(layer), model.b(layer)):
            grad = derivation.gradients[param]
            lines.append(Line(f"d{code_name(param)}", formatted(code(grad)), f"∂L/∂{text(param)} = {text(grad)}"))
    return lines


def command_line(network: Network, name: str) -> str:
    """The canonical command that regenerates this module."""
    parts = ["python -m derive --layers " + ",".join(map(str, network.sizes))]
    names = [a.name for a in network.activations]
    if set(names) != {"tanh"}:
        parts.append("--activation " + (names[0] if len(set(names)) == 1 else ",".join(names)))
    if network.loss.name != "l2":
        parts.append(f"--loss {network.loss.name}")
    if name != default_module_name(network):
        parts.append(f"--name {name}")
    return " ".join(parts)


def default_module_name(network: Network) -> str:
    return "mlp_" + "_".join(map(str, network.sizes))


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


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(_load_template),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def template_dir() -> Path:
    """Where the templates are: shipped inside the package, or the source tree."""
    try:
        packaged = resources.files("derive.templates")
        if packaged.joinpath(TEMPLATE).is_file():
            return Path(str(packaged))
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parent.parent / "templates"


def _load_template(name: str) -> str:
    return (template_dir() / name).read_text(encoding="utf-8")


def render(derivation: Derivation, name: str) -> str:
    """The generated module's source."""
    network = derivation.network
    loss = network.loss
    return _environment().get_template(TEMPLATE).render(
        version=__version__,
        command=command_line(network, name),
        template=f"templates/{TEMPLATE}",
        sizes=network.sizes,
        sizes_literal=tuple_literal([str(n) for n in network.sizes], "SIZES: tuple[int, ...] = "),
        activations_literal=tuple_literal(
            [f'"{a.name}"' for a in network.activations], "ACTIVATIONS: tuple[str, ...] = "
        ),
        depth=network.depth,
        layers=list(range(1, network.depth + 1)),
        activations=[a.name for a in network.activations],
        loss_name=loss.name,
        loss_summary=loss.summary,
        loss_code=formatted(NumpyCode(network)(model.Loss(model.a(network.depth), model.Y))),
        grads_literal=tuple_literal(
            [f"(dW{layer}, db{layer})" for layer in range(1, network.depth + 1)], "return value, ", "[]", "    "
        ),
        forward=forward_lines(network),
        backward=backward_lines(derivation),
        uses_batch=catalog.batch in loss.gradient.free_symbols or catalog.batch in loss.scale.free_symbols,
        **_fast_fields(derivation),
    )


def _unpack_target(names: list[str], rest: str) -> str:
    """The left side of ``names = ...`` at function level, as ``ruff format`` lays it out."""
    inline = ", ".join(names)
    if 4 + len(inline) + len(rest) <= LINE_LENGTH:
        return inline
    return "(\n" + "".join(f"        {name},\n" for name in names) + "    )"


def _fast_fields(derivation: Derivation) -> dict:
    """Template fields of the in-place ``backprop`` (see ``fastcode``)."""
    from . import fastcode  # imports this module

    network = derivation.network
    plan = fastcode.plan(derivation, NumpyCode(network), MatrixText(network))
    names = ["ones", *(name for name, _ in plan.buffers)]
    widths = [str(width) for _, width in plan.buffers]
    layers = range(1, network.depth + 1)
    return {
        "plan": plan,
        "workspace_targets": _unpack_target(names, " = ws[1]"),
        "workspace_widths": tuple_literal(widths, "_WORKSPACE_WIDTHS = "),
        "new_grads_literal": tuple_literal(
            [f"(np.empty_like(W{layer}), np.empty_like(b{layer}))" for layer in layers],
            "        out = ",
            "[]",
            "        ",
        ),
    }
