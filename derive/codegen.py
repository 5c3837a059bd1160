"""Emit a standalone numpy module from the derivation, through Jinja2.

Each line of the generated forward and backward pass is printed from the
same expression trees the proof checked and the LaTeX shows, and carries a
comment with the identity it implements.  Output depends only on the
network (no timestamps, no ordering from ``cse`` or dict iteration), so the
same input gives byte-identical files.
"""

from __future__ import annotations

import ast
import hashlib
import re
import textwrap
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    import jinja2

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

    def _print_LogSumExp(self, expr: catalog.LogSumExp) -> str:
        return f"np.logaddexp.reduce({self._print(expr.args[0])}, axis=1, keepdims=True)"

    def _print_Float(self, expr: sp.Float) -> str:
        return repr(float(expr))

    def _print_Rational(self, expr: sp.Rational) -> str:
        return catalog.decimal(expr)

    def _print_Relational(self, expr: sp.core.relational.Relational) -> str:
        return f"{self._print(expr.lhs)} {expr.rel_op} {self._print(expr.rhs)}"

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


def _float_constants(expr: sp.Expr) -> sp.Expr:
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
            return sp.Mul(sp.Float(float(number)), _float_constants(rest), evaluate=False)
    args = tuple(_float_constants(arg) for arg in expr.args)
    return expr if args == expr.args else expr.func(*args)


def scalar_code(expr: sp.Expr, names: dict[sp.Symbol, str]) -> str:
    """numpy code for a catalog formula, its symbols renamed to array names."""
    return _Numpy(names).doprint(_float_constants(expr))


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


INLINE_LIMIT = 32
"""Activation code longer than this goes into a helper function, so lines stay short."""

_ARGS = {catalog.z: "z", catalog.A: "a"}


def helper_name(act: catalog.Activation, derivative: bool = False) -> str:
    base = "_" + re.sub(r"\W", "_", act.name.replace(".", "p"))
    return base + "_derivative" if derivative else base


def _form(act: catalog.Activation, derivative: bool) -> sp.Expr:
    """What the code evaluates for a(z), or for a'(z) (through A where found)."""
    if not derivative:
        return act.code_form
    if act.derivative_from_output is not None:
        return act.derivative_code_form
    return catalog.stable(act.derivative)


def helper_args(act: catalog.Activation, derivative: bool) -> list[sp.Symbol]:
    """The helper's arguments: z and/or A, whichever the formula reads."""
    return [s for s in _ARGS if s in _form(act, derivative).free_symbols]


def _inline(act: catalog.Activation, derivative: bool) -> bool:
    if not act.entrywise:
        return True
    return (
        len(scalar_code(_form(act, derivative), {catalog.z: "z1", catalog.A: "a1"})) <= INLINE_LIMIT
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
            if _inline(act, derivative):
                continue
            form = _form(act, derivative)
            if not derivative:
                doc = f"{act.name}(z) = {act.summary}."
            elif act.derivative_from_output is not None:
                doc = f"The derivative of {act.name} through A = a(z), as SymPy rewrote and proved it."
            else:
                doc = f"The derivative of {act.name} by SymPy (no form through A = a(z) was found)."
            shared, (result,) = sp.cse(form, symbols=sp.numbered_symbols("t"))
            names = {**_ARGS, **{s: str(s) for s, _ in shared}}
            args = ", ".join(f"{_ARGS[s]}: Array" for s in helper_args(act, derivative))
            lines = [(str(s), formatted(scalar_code(e, names))) for s, e in shared]
            result_code = formatted(scalar_code(result, names))
            out.append(Helper(helper_name(act, derivative), args, doc, lines, result_code))
    return out


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
            if self(e.right) == "1":  # a'(z) = 1: the identity activation
                return self(e.left)
            return f"{self._operand(e.left)} * {self._operand(e.right)}"
        if isinstance(e, Transpose):
            return f"{self._operand(e.arg)}.T"
        if isinstance(e, SumRows):
            return f"{self._operand(e.arg)}.sum(axis=0, keepdims=True)"
        if isinstance(e, Activate):
            act = self.network.activation(e.layer)
            if not _inline(act, derivative=False):
                return f"{helper_name(act)}({self(e.arg)})"  # a helper reads z only
            return scalar_code(
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
            if not _inline(act, derivative=True):
                args = ", ".join(names[s] for s in helper_args(act, derivative=True))
                return f"{helper_name(act, derivative=True)}({args})"
            return scalar_code(_form(act, derivative=True), names)
        if isinstance(e, LossGrad):
            loss = self.network.loss
            if loss.gradient_from_output is not None:  # fused: through Ŷ = link(z_L)
                return scalar_code(loss.gradient_from_output, self._loss_names(e))
            return scalar_code(loss.gradient, self._loss_names(e))
        if isinstance(e, Loss):
            return f"float(np.sum({scalar_code(self.network.loss.code_form, self._loss_names(e))}))"
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
            if self.network.fused:  # the derived fused gradient, e.g. Ŷ - Y
                loss, hat, y = self.network.loss, sp.Symbol("Ŷ"), sp.Symbol("Y")
                names = {catalog.A: hat, catalog.T[catalog.k]: y, catalog.target: y}
                terms = sp.Add.make_args(loss.gradient_from_output.subs(names))
                ordered = sorted(terms, key=lambda t: t.could_extract_minus_sign())
                return f"∂L/∂{self(e.pred)} = {sp.sstr(sp.Add(*ordered, evaluate=False), order='none')}"
            return "∂L/∂Ŷ"
        if isinstance(e, Loss):
            return f"L({self(e.pred)}, {self(e.target)})"
        raise TypeError(f"cannot print {type(e).__name__}")

    def _operand(self, e: Expr) -> str:
        text = self(e)
        return (
            text
            if isinstance(e, (Var, Activate, ActivateDeriv, LossGrad, Transpose))
            else f"({text})"
        )


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
        lines.append(
            Line(
                code_name(step.target),
                formatted(code(step.expr)),
                f"f{k} = {text(step.target)} = {text(step.expr)}",
            )
        )
    return lines


def backward_lines(derivation: Derivation) -> list[Line]:
    network = derivation.network
    text, code = MatrixText(network), NumpyCode(network)
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


def spec_command(network: Network) -> str:
    """The canonical command for this network's specification (no ``--name``)."""
    parts = ["python -m derive --layers " + ",".join(map(str, network.sizes))]
    names = [a.name for a in network.activations]
    chosen = names[:-1] if network.fused else names  # a fused loss fixes the output layer
    if chosen and set(chosen) != {"tanh"}:
        parts.append("--activation " + (chosen[0] if len(set(chosen)) == 1 else ",".join(names)))
    if network.loss.name != "l2":
        parts.append(f"--loss {network.loss.name}")
    return " ".join(parts)


def command_line(network: Network, name: str) -> str:
    """The canonical command that regenerates this module."""
    command = spec_command(network)
    return command if name == default_module_name(network) else f"{command} --name {name}"


DEFAULT_NAME_LIMIT = 80
"""Longest default module name spelled out in full; longer ones are shortened with a digest."""


def default_module_name(network: Network) -> str:
    """``mlp_20_50_10``; past ``DEFAULT_NAME_LIMIT`` characters ``mlp_118layers_3_to_3_<digest>``.

    The digest is the first 12 hex digits of the SHA-256 of the widths
    (``3,3,...,3``), so the name stays unique and always fits a file name.
    """
    name = "mlp_" + "_".join(map(str, network.sizes))
    if len(name) <= DEFAULT_NAME_LIMIT:
        return name
    digest = hashlib.sha256(",".join(map(str, network.sizes)).encode()).hexdigest()[:12]
    return f"mlp_{network.depth}layers_{network.sizes[0]}_to_{network.sizes[-1]}_{digest}"


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


def _environment() -> jinja2.Environment:
    import jinja2  # imported here: runs that print LaTeX only never need it

    return jinja2.Environment(
        loader=jinja2.FunctionLoader(template_source),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def template_source(name: str) -> str:
    """A template's text: shipped inside the package, else from the source tree."""
    try:
        packaged = resources.files("derive.templates").joinpath(name)
        if packaged.is_file():
            return packaged.read_text(encoding="utf-8")
    except ModuleNotFoundError:
        pass
    return (Path(__file__).resolve().parent.parent / "templates" / name).read_text(encoding="utf-8")


def render(derivation: Derivation, name: str) -> str:
    """The generated module's source."""
    network = derivation.network
    loss = network.loss
    return (
        _environment()
        .get_template(TEMPLATE)
        .render(
            version=__version__,
            header=header_line(command_line(network, name)),
            loss_doc=textwrap.fill(
                f"* the loss is {loss.name}: {loss.summary};", LINE_LENGTH, subsequent_indent="  "
            ),
            widths_text=textwrap.fill(
                f"Layer widths {', '.join(map(str, network.sizes))}; {network.depth} weight layers.",
                width=LINE_LENGTH - 4,
            ),
            template=f"templates/{TEMPLATE}",
            sizes=network.sizes,
            sizes_literal=tuple_literal(
                [str(n) for n in network.sizes], "SIZES: tuple[int, ...] = "
            ),
            activations_literal=tuple_literal(
                [f'"{a.name}"' for a in network.activations], "ACTIVATIONS: tuple[str, ...] = "
            ),
            depth=network.depth,
            layers=list(range(1, network.depth + 1)),
            activations=[a.name for a in network.activations],
            loss_name=loss.name,
            loss_summary=loss.summary,
            loss_code=formatted(NumpyCode(network)(network.steps()[-1].expr)),
            grads_literal=tuple_literal(
                [f"(dW{layer}, db{layer})" for layer in range(1, network.depth + 1)],
                "return value, ",
                "[]",
                "    ",
            ),
            forward=forward_lines(network),
            loss_forward=forward_lines(network)[: -1 if network.fused else None],
            target_check=_target_check(loss),
            activation_names_literal=tuple_literal(
                [f'"{n}"' for n in accepted_activation_names(network)],
                "_ACTIVATION_NAMES: tuple[str, ...] = ",
            ),
            helpers=helpers(network),
            backward=backward_lines(derivation),
            uses_batch=catalog.batch in loss.gradient.free_symbols
            or catalog.batch in loss.scale.free_symbols,
            **_fast_fields(derivation),
        )
    )


def _target_check(loss: catalog.LossFunction) -> str:
    """What the module checks of the targets before it trusts the fused δ_L = Ŷ − Y.

    softmax's derivation uses Σ_k y_k = 1 (``row_sums``); the sigmoid's δ_L holds for
    any y, but outside [0, 1] the loss is unbounded below (``unit_interval``).
    """
    if loss.link is None:
        return ""
    return "row_sums" if loss.rowwise else "unit_interval"


def accepted_activation_names(network: Network) -> list[str]:
    """The names ``NN(sizes, activation)`` accepts: as ``--activation`` takes them."""
    names = [a.name for a in network.activations]
    chosen = names[:-1] if network.fused else names
    accepted = [",".join(names)]
    if chosen:
        accepted.insert(0, ",".join(chosen))
        if len(set(chosen)) == 1:
            accepted.insert(0, chosen[0])
    return list(dict.fromkeys(accepted))


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
            [
                f"(np.empty(W{layer}.shape, dtype), np.empty(b{layer}.shape, dtype))"
                for layer in layers
            ],
            "        out = ",
            "[]",
            "        ",
        ),
    }
