"""The generated ``backprop``'s statements: in place, into reused buffers.

``printer.NumpyCode`` prints each identity as one numpy expression, which
allocates a fresh array for every intermediate result.  For speed the
generated ``backprop`` instead writes every result into a buffer: z_l, a_l,
a'(z_l) and δ_l live in a per-call workspace that is reused across calls,
products go through ``np.dot(a, b, out)``, and entrywise formulas from the
catalog are compiled into a chain of ufunc calls that write into their
output (``np.multiply(a, a, g)`` then ``np.subtract(1.0, g, g)`` for
1 − A²).  ``out`` is passed positionally: it is measurably cheaper on small
arrays.  Each group of statements carries the identity it implements.

Anything these patterns do not cover (an activation or loss whose formula
cannot be written as in-place ufuncs) falls back to ``buffer[...] =`` the
expression ``NumpyCode`` prints, so a new catalog entry works at once and is
merely not allocation-free.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sympy as sp

from ... import catalog, model, penalty
from ...derivation import Derivation
from ...expr import (
    ActivateDeriv,
    Add,
    Expr,
    Hadamard,
    LossGrad,
    MatMul,
    PenaltyGrad,
    SumRows,
    Transpose,
    Var,
)
from ...model import Network
from ..python_source import code_name, formatted
from .printer import scalar_code

Printer = Callable[[Expr], str]

UFUNCS = {
    sp.tanh: "tanh",
    sp.exp: "exp",
    sp.log: "log",
    sp.sin: "sin",
    sp.cos: "cos",
    sp.sinh: "sinh",
    sp.cosh: "cosh",
    sp.atan: "arctan",
}
"""SymPy functions that are numpy ufuncs taking a positional ``out``."""


def _number(value: sp.Expr) -> str:
    """A float literal: numpy converts a Python float faster than an int."""
    return repr(float(value))


class Unsupported(Exception):
    """A formula the in-place compiler does not handle; the caller falls back."""


def inplace(expr: sp.Expr, names: dict[sp.Symbol, str], buf: str) -> list[str]:
    """Statements that leave the entrywise ``expr`` in array ``buf``.

    ``names`` maps the formula's symbols to arrays.  Raises ``Unsupported``
    when the formula needs more than one buffer or an unknown function.
    """
    if expr.is_Symbol:
        return [f"np.copyto({buf}, {_atom(expr, names)})"]
    if expr.is_Number:
        return [f"{buf}.fill({_number(expr)})"]
    return _into(expr, names, buf)


def _atom(expr: sp.Expr, names: dict[sp.Symbol, str]) -> str:
    if expr.is_Symbol and expr in names:
        return names[expr]
    if expr.is_Number and expr.is_real:
        return _number(expr)
    raise Unsupported(str(expr))


def _is_atom(expr: sp.Expr, names: dict[sp.Symbol, str]) -> bool:
    return (expr.is_Symbol and expr in names) or (expr.is_Number and expr.is_real)


def _into(expr: sp.Expr, names: dict[sp.Symbol, str], buf: str) -> list[str]:
    """Compile a compound ``expr`` into ``buf`` (which it may overwrite freely)."""
    if expr.func in UFUNCS and len(expr.args) == 1:
        (arg,) = expr.args
        if _is_atom(arg, names):
            return [f"np.{UFUNCS[expr.func]}({_atom(arg, names)}, {buf})"]
        return [*_into(arg, names, buf), f"np.{UFUNCS[expr.func]}({buf}, {buf})"]
    if expr.is_Pow and expr.exp == 2 and _is_atom(expr.base, names):
        base = _atom(expr.base, names)
        return [f"np.multiply({base}, {base}, {buf})"]
    if expr.is_Pow and expr.exp == -1:
        if _is_atom(expr.base, names):
            return [f"np.divide(1.0, {_atom(expr.base, names)}, {buf})"]
        return [*_into(expr.base, names, buf), f"np.divide(1.0, {buf}, {buf})"]
    if expr.is_Add:
        return _fold(expr, names, buf, "add", "subtract")
    if expr.is_Mul:
        return _fold(expr, names, buf, "multiply", "divide")
    raise Unsupported(str(expr))


def _fold(expr: sp.Expr, names: dict[sp.Symbol, str], buf: str, op: str, inverse: str) -> list[str]:
    """An Add or Mul: at most one compound operand goes into ``buf`` first."""
    terms = []  # (inverted, core): core added / multiplied, or subtracted / divided
    for arg in expr.args:
        if op == "add" and arg.is_Mul and arg.args[0] == -1:
            terms.append((True, sp.Mul(*arg.args[1:])))
        elif op == "multiply" and arg.is_Pow and arg.exp == -1:
            terms.append((True, arg.base))
        else:
            terms.append((False, arg))
    compound = [t for t in terms if not _is_atom(t[1], names)]
    if len(compound) > 1:
        raise Unsupported(str(expr))
    constants = [t for t in terms if t[1].is_Number]
    others = [t for t in terms if t not in compound and t not in constants]
    lines: list[str] = []
    if compound:
        inverted, core = compound[0]
        lines += _into(core, names, buf)
        if inverted:
            if constants and not constants[0][0]:
                lines.append(f"np.{inverse}({_number(constants.pop(0)[1])}, {buf}, {buf})")
            elif op == "add":
                lines.append(f"np.negative({buf}, {buf})")
            else:
                lines.append(f"np.divide(1.0, {buf}, {buf})")
        rest = constants + others
    else:
        first = next((t for t in others + constants if not t[0]), None)
        if first is None:
            raise Unsupported(str(expr))
        rest = [t for t in constants + others if t is not first]
        second = rest.pop(0)
        name = inverse if second[0] else op
        lines.append(f"np.{name}({_atom(first[1], names)}, {_atom(second[1], names)}, {buf})")
    for inverted, core in rest:
        lines.append(f"np.{inverse if inverted else op}({buf}, {_atom(core, names)}, {buf})")
    return lines


# --- the plan of the generated backprop -------------------------------------


@dataclass(frozen=True)
class Group:
    """Statements that together implement one identity (the comment)."""

    comment: str
    statements: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    """The workspace and statements of the generated ``backprop``."""

    buffers: tuple[tuple[str, int], ...]  # (name, width): an (m, width) array each
    forward: tuple[Group, ...]
    loss: tuple[Group, ...]
    backward: tuple[Group, ...]
    penalty: tuple[Group, ...] = ()  # with --l2: λ W_l into each ∂/∂W_l, λ/2 Σ ‖W_l‖² into L


def _derivative_code(network: Network, layer: int, buf: str) -> list[str] | None:
    """a'(z_layer) into ``buf`` from the stored a_layer, or None if not possible in place."""
    act = network.activation(layer)
    if not act.entrywise or act.derivative_from_output is None:
        return None
    try:
        return inplace(act.derivative_code_form, {catalog.A: f"a{layer}"}, buf)
    except Unsupported:
        return None


def _activation_code(network: Network, layer: int, source: str, buf: str) -> list[str] | None:
    act = network.activation(layer)
    if not act.entrywise:
        return None
    try:
        return inplace(act.code_form, {catalog.z: source}, buf)
    except Unsupported:
        return None


def plan(derivation: Derivation, printer: Printer, text: Printer) -> Plan:
    """Lay out buffers and statements; ``printer`` is NumpyCode and ``text`` MatrixText."""
    network = derivation.network
    depth = network.depth
    buffers: list[tuple[str, int]] = []
    forward: list[Group] = []
    # z_l is computed into a_l's buffer and overwritten by a(z_l) when the
    # backward pass reads a'(z_l) from a_l alone; otherwise z_l keeps its own.
    in_place: dict[int, bool] = {}
    for layer in range(1, depth + 1):
        width = network.sizes[layer]
        fused_output = network.fused and layer == depth  # the loss reads z_L itself
        in_place[layer] = (
            not fused_output
            and _derivative_code(network, layer, "g") is not None
            and _activation_code(network, layer, f"a{layer}", f"a{layer}") is not None
        )
        buffers.append((f"a{layer}", width))
        if not in_place[layer]:
            buffers.append((f"z{layer}", width))
        buffers.append((f"g{layer}", width))
        buffers.append((f"delta{layer}", width))
    for step in network.steps():
        if step.target == model.LOSS:
            continue
        layer = step.target.layer
        comment = f"f{step.index} = {text(step.target)} = {text(step.expr)}"
        if step.target.kind == "z":
            buf = f"a{layer}" if in_place[layer] else f"z{layer}"
            prev = code_name(model.a(layer - 1))
            # The bias goes onto every row through g_l (free until the backward
            # pass): a broadcasting np.add allocates an iterator buffer and is
            # slower than np.copyto plus a plain add on large batches.
            statements = (
                f"np.dot({prev}, W{layer}, {buf})",
                f"np.copyto(g{layer}, b{layer})",
                f"np.add({buf}, g{layer}, {buf})",
            )
            forward.append(Group(comment, statements))
        else:
            source = f"a{layer}" if in_place[layer] else f"z{layer}"
            code = _activation_code(network, layer, source, f"a{layer}")
            if code is None:
                code = [f"a{layer}[...] = {printer(step.expr)}"]
            forward.append(Group(comment, tuple(code)))
    loss_groups, residual = _loss(network, printer)
    backward: list[Group] = []
    for layer in range(depth, 0, -1):
        d = model.delta(layer)
        backward.append(
            Group(
                f"{text(d)} = {text(derivation.deltas[layer])}",
                tuple(_delta(derivation, layer, in_place, residual, printer)),
            )
        )
        for param in (model.W(layer), model.b(layer)):
            grad = derivation.gradients[param]
            target = f"d{code_name(param)}"
            comment = f"∂L/∂{text(param)} = {text(grad)}"
            data = _data_part(grad)
            if data is not grad:
                comment += f" ({text(grad.right)} is added below when λ > 0)"
            backward.append(Group(comment, (_product(data, target, printer),)))
    return Plan(
        tuple(buffers),
        _laid_out(forward),
        _laid_out(loss_groups),
        _laid_out(backward),
        _penalty(derivation, text),
    )


def penalty_half() -> str:
    """The c of the penalty's value c λ ‖W‖_F², as a literal (0.5), from its entry."""
    half = sp.cancel(penalty.ENTRY / (penalty.lam * penalty.w**2))
    if half.free_symbols:
        raise ValueError(f"the penalty's entry is not c λ w²: {penalty.ENTRY}")
    return _number(half)


def _data_part(grad: Expr) -> Expr:
    """a_{l-1}ᵀ δ_l of a_{l-1}ᵀ δ_l + λ W_l (the penalty's part is emitted apart); else ``grad``."""
    if isinstance(grad, Add) and isinstance(grad.right, PenaltyGrad):
        return grad.left
    return grad


def _penalty(derivation: Derivation, text: Printer) -> tuple[Group, ...]:
    """With ``--l2``, run when λ > 0: each derived λ W_l added to ∂/∂W_l through a scratch
    matrix (``decays[l-1]``), and the penalty's value λ/2 Σ ‖W_l‖_F² added to L.

    The constants come from ``derive.penalty``: c λ W_l with c = ∂(entry)/∂w / (λ w), and
    the value's λ/2 as the entry / (λ w²).
    """
    network = derivation.network
    if not network.l2:
        return ()
    half = penalty_half()
    factor = penalty.FACTOR
    scale = "l2" if factor == 1 else f"{_number(factor)} * l2"
    groups = []
    for layer in range(network.depth, 0, -1):
        grad = derivation.gradients[model.W(layer)]
        if not (isinstance(grad, Add) and grad.right == PenaltyGrad(model.W(layer))):
            raise ValueError(f"∂L/∂W{layer} has no penalty term: {text(grad)}")
        w = text(model.W(layer))
        groups.append(
            Group(
                f"∂L/∂{w} += {text(grad.right)}, and L += λ/2 ‖{w}‖_F²",
                (
                    f"np.multiply(W{layer}, {scale}, decays[{layer - 1}])",
                    f"np.add(dW{layer}, decays[{layer - 1}], dW{layer})",
                    f"value += {half} * l2 * float(np.vdot(W{layer}, W{layer}))",
                ),
            )
        )
    return tuple(groups)


def _laid_out(groups: list[Group]) -> tuple[Group, ...]:
    """Every statement spaced as ``ruff format`` spaces it."""
    return tuple(Group(g.comment, tuple(_statement(s) for s in g.statements)) for g in groups)


def _statement(text: str) -> str:
    if text.startswith("# "):
        return text
    target, sep, value = text.partition(" = ")
    if sep and target.replace("[...]", "").isidentifier():
        return f"{target} = {formatted(value)}"
    return formatted(text)


def _loss(network: Network, printer: Printer) -> tuple[list[Group], sp.Expr | None]:
    """The loss value; for a squared error, r = Ŷ − Y is left in δ_L.

    Returns the groups and, when r is left in δ_L, the constant c with
    ∂L/∂Ŷ = c r (so δ_L is finished by scaling and multiplying by a'(z_L)).
    """
    loss = network.loss
    depth = network.depth
    value_code = printer(network.steps()[-1].expr)  # L(Ŷ, Y), or L(z_L, Y) when fused
    if network.fused or loss.rowwise:
        return [Group(f"L = {loss.name} loss", (f"value = {value_code}",))], None
    r = catalog.pred - catalog.target
    full = sp.expand(loss.scale * loss.entry)
    c_value = sp.cancel(full / sp.expand(r**2))
    c_grad = sp.cancel(loss.gradient / r)
    if catalog.pred in c_value.free_symbols | c_grad.free_symbols or catalog.target in (
        c_value.free_symbols | c_grad.free_symbols
    ):
        return [Group(f"L = {loss.name} loss", (f"value = {value_code}",))], None
    names = {catalog.batch: "m", catalog.outputs: str(network.sizes[-1])}
    scale = "" if c_value == 1 else f" * ({printer_scalar(c_value, names)})"
    statements = (
        f"np.subtract(a{depth}, y, delta{depth})",
        f"value = float(np.vdot(delta{depth}, delta{depth})){scale}",
    )
    return [
        Group(f"L = {loss.name} loss, from r = Ŷ − Y (kept in δ{_sub(depth)})", statements)
    ], c_grad


def printer_scalar(expr: sp.Expr, names: dict[sp.Symbol, str]) -> str:
    """A loss constant as code: a float literal, or a formula in m and n_L."""
    if expr.is_Number:
        return _number(expr)
    return scalar_code(expr, names)


def _sub(n: int) -> str:
    """Subscript digits, as the comments write layer indices."""
    return str(n).translate(str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉"))


def _delta(
    derivation: Derivation,
    layer: int,
    in_place: dict[int, bool],
    residual: sp.Expr | None,
    printer: Printer,
) -> list[str]:
    network = derivation.network
    expr = derivation.deltas[layer]
    buf = f"delta{layer}"
    g = f"g{layer}"
    fallback = [f"{buf}[...] = {printer(expr)}"]
    if not (isinstance(expr, Hadamard) and isinstance(expr.right, ActivateDeriv)):
        return fallback
    act = network.activation(layer)
    deriv = _derivative_code(network, layer, g) if in_place[layer] else None
    names = {catalog.z: f"z{layer}", catalog.A: f"a{layer}"}
    form = act.derivative_code_form
    if deriv is None:  # z_l has its own buffer: a'(z) from z may compile where A's form cannot
        for form in (catalog.stable(act.derivative), act.derivative_code_form):
            try:
                deriv = inplace(form, names, g)
                break
            except Unsupported:
                continue
        else:
            return fallback
    formula = scalar_code(form, names)
    deriv = [f"# {g} = a'(z{layer}) = {formatted(formula)}", *deriv]
    left = expr.left
    if isinstance(left, LossGrad):
        if residual is None:
            return fallback
        names = {catalog.batch: "m", catalog.outputs: str(network.sizes[-1])}
        gradient = scalar_code(
            network.loss.gradient, {**names, catalog.pred: f"a{layer}", catalog.target: "y"}
        )
        deriv = [*deriv, f"# ∂L/∂Ŷ = {formatted(gradient)}, with a{layer} - y already in {buf}"]
        scale = (
            []
            if residual == 1
            else [f"np.multiply({buf}, {printer_scalar(residual, names)}, {buf})"]
        )
        return [*deriv, *scale, f"np.multiply({buf}, {g}, {buf})"]
    if (
        isinstance(left, MatMul)
        and isinstance(left.left, Var)
        and isinstance(left.right, Transpose)
    ):
        w = left.right.arg
        return [
            f"np.dot({code_name(left.left)}, {code_name(w)}.T, {buf})",
            *deriv,
            f"np.multiply({buf}, {g}, {buf})",
        ]
    return fallback


def _product(grad: Expr, target: str, printer: Printer) -> str:
    """∂L/∂W_l = a_{l-1}ᵀ δ_l or ∂L/∂b_l = 1ᵀ δ_l, into the gradient array."""
    if (
        isinstance(grad, MatMul)
        and isinstance(grad.left, Transpose)
        and isinstance(grad.left.arg, Var)
    ):
        if isinstance(grad.right, Var):
            return f"np.dot({code_name(grad.left.arg)}.T, {code_name(grad.right)}, {target})"
    if isinstance(grad, SumRows) and isinstance(grad.arg, Var):
        return f"np.dot(ones, {code_name(grad.arg)}, {target})"
    return f"{target}[...] = {printer(grad)}"
