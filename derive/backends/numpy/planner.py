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

import re
from collections.abc import Callable
from dataclasses import dataclass

import sympy as sp

from ... import catalog, model, penalty
from ...derivation import Derivation
from ...expr import (
    Activate,
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
from ...naming import subscript
from ..python_source import code_name, formatted
from .printer import scalar_code

Printer = Callable[[Expr], str]

ONES = "ones"
"""The workspace's first array, a (1, m) row of ones (``runtime._take_workspace`` makes it
first; ``module`` unpacks it first): 1ᵀ δ_l is ``np.dot(ones, δ_l)``."""

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


def constant_name(value: float) -> str | None:
    """The name of the 0-d array holding ``value`` in the workspace (``two`` for 2.0),
    or None for a value without a short name (it stays a literal)."""
    text = repr(float(value))
    if not re.fullmatch(r"-?\d+\.\d+", text):
        return None
    return "c" + text.replace("-", "m").replace(".", "p").removesuffix("p0")


def constant_value(name: str) -> float:
    """The value ``constant_name`` named."""
    text = name.removeprefix("c").replace("m", "-").replace("p", ".")
    return float(text)


_CONSTANT = re.compile(r"\bcm?\d+(?:p\d+)?\b")
"""A constant's name (``constant_name``) inside a statement."""


def constants_in(statements: list[str]) -> list[float]:
    """The constants named in ``statements``, in increasing order, each once."""
    found = {constant_value(name) for s in statements for name in _CONSTANT.findall(s)}
    return sorted(found)


class Unsupported(Exception):
    """A formula the in-place compiler does not handle; the caller falls back."""


Constant = Callable[[sp.Expr], str]
"""How a number is written as an operand: a literal (``_number``) or an array's name."""


def as_array(value: sp.Expr) -> str:
    """A number as the workspace's 0-d array of it (a ufunc converts a Python float
    on every call, which costs as much as the call on a small batch)."""
    return constant_name(float(value)) or _number(value)


ROWS = sp.Symbol("rows")
"""Stands for a row-wise reduction (LogSumExp) of z inside a formula being compiled."""


@dataclass(frozen=True)
class Rows:
    """Where a row-wise reduction goes: ``reduced``, an (m, 1) buffer, then copied
    onto every column of ``spread``, an (m, n) buffer (a ufunc broadcasting an
    (m, 1) operand allocates an iterator buffer; ``np.copyto`` does not).
    ``ready``: an earlier statement left it there, so it is not computed again."""

    reduced: str
    spread: str
    ready: bool = False


def inplace(
    expr: sp.Expr,
    names: dict[sp.Basic, str],
    buf: str,
    constant: Constant = _number,
    rows: Rows | None = None,
) -> list[str]:
    """Statements that leave the entrywise ``expr`` in array ``buf``.

    ``names`` maps the formula's symbols (and indexed bases) to arrays.  A
    row-wise ``LogSumExp`` of one array is allowed given ``rows``.  Numbers
    are written by ``constant``.  Raises ``Unsupported`` when the formula
    needs more than one buffer or an unknown function.
    """
    lines: list[str] = []
    for lse in sorted(expr.atoms(catalog.LogSumExp), key=str):
        (arg,) = lse.args
        if rows is None or ROWS in names or not _is_atom(arg, names):
            raise Unsupported(str(lse))
        if not rows.ready:
            source = _atom(arg, names, constant)
            lines += [
                f"# {rows.reduced} = log Σ_k exp({source}_k) in each row, put on every column "
                f"of {rows.spread}",
                f"np.logaddexp.reduce({source}, 1, None, {rows.reduced}, keepdims=True)",
                f"np.copyto({rows.spread}, {rows.reduced})",
            ]
        expr = expr.subs(lse, ROWS)
        names = {**names, ROWS: rows.spread}
    if _is_atom(expr, names) and not expr.is_Number:
        return [*lines, f"np.copyto({buf}, {_atom(expr, names, constant)})"]
    if expr.is_Number:
        return [*lines, f"{buf}.fill({_number(expr)})"]
    return [*lines, *_into(expr, names, buf, constant)]


def _atom(expr: sp.Expr, names: dict[sp.Basic, str], constant: Constant = _number) -> str:
    if expr.is_Number and expr.is_real:
        return constant(expr)
    key = expr.base if isinstance(expr, sp.Indexed) else expr
    if key in names:
        return names[key]
    raise Unsupported(str(expr))


def _is_atom(expr: sp.Expr, names: dict[sp.Basic, str]) -> bool:
    if expr.is_Number:
        return bool(expr.is_real)
    key = expr.base if isinstance(expr, sp.Indexed) else expr
    return (key.is_Symbol or isinstance(key, sp.IndexedBase)) and key in names


def _into(expr: sp.Expr, names: dict[sp.Basic, str], buf: str, constant: Constant) -> list[str]:
    """Compile a compound ``expr`` into ``buf`` (which it may overwrite freely)."""
    if expr.func in UFUNCS and len(expr.args) == 1:
        (arg,) = expr.args
        if _is_atom(arg, names):
            return [f"np.{UFUNCS[expr.func]}({_atom(arg, names, constant)}, {buf})"]
        return [*_into(arg, names, buf, constant), f"np.{UFUNCS[expr.func]}({buf}, {buf})"]
    if expr.func in (sp.Max, sp.Min) and len(expr.args) == 2:
        if all(_is_atom(arg, names) for arg in expr.args):
            ufunc = "maximum" if expr.func is sp.Max else "minimum"
            left, right = (_atom(arg, names, constant) for arg in expr.args)
            # out= by keyword: numpy deprecates a positional out for these two
            return [f"np.{ufunc}({left}, {right}, out={buf})"]
    if isinstance(expr, sp.Piecewise) and len(expr.args) == 2:
        (upper, cond), (lower, other) = expr.args
        # 1 where X > 0, else 0: Heaviside's step with H(0) = 0
        if (
            other == sp.true
            and upper == 1
            and lower == 0
            and isinstance(cond, sp.StrictGreaterThan)
            and cond.rhs == 0
            and _is_atom(cond.lhs, names)
        ):
            zero = constant(sp.Integer(0))
            return [f"np.heaviside({_atom(cond.lhs, names, constant)}, {zero}, {buf})"]
    if expr.is_Pow and expr.exp == 2 and _is_atom(expr.base, names):
        base = _atom(expr.base, names, constant)
        return [f"np.multiply({base}, {base}, {buf})"]
    if expr.is_Pow and expr.exp == -1:
        one = constant(sp.Integer(1))
        if _is_atom(expr.base, names):
            return [f"np.divide({one}, {_atom(expr.base, names, constant)}, {buf})"]
        return [*_into(expr.base, names, buf, constant), f"np.divide({one}, {buf}, {buf})"]
    if expr.is_Add:
        return _fold(expr, names, buf, "add", "subtract", constant)
    if expr.is_Mul:
        return _fold(expr, names, buf, "multiply", "divide", constant)
    raise Unsupported(str(expr))


def _fold(
    expr: sp.Expr,
    names: dict[sp.Basic, str],
    buf: str,
    op: str,
    inverse: str,
    constant: Constant,
) -> list[str]:
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
        lines += _into(core, names, buf, constant)
        if inverted:
            if constants and not constants[0][0]:
                lines.append(f"np.{inverse}({constant(constants.pop(0)[1])}, {buf}, {buf})")
            elif op == "add":
                lines.append(f"np.negative({buf}, {buf})")
            else:
                lines.append(f"np.divide({constant(sp.Integer(1))}, {buf}, {buf})")
        rest = constants + others
    else:
        first = next((t for t in others + constants if not t[0]), None)
        if first is None:
            raise Unsupported(str(expr))
        rest = [t for t in constants + others if t is not first]
        second = rest.pop(0)
        name = inverse if second[0] else op
        left, right = _atom(first[1], names, constant), _atom(second[1], names, constant)
        lines.append(f"np.{name}({left}, {right}, {buf})")
    for inverted, core in rest:
        lines.append(
            f"np.{inverse if inverted else op}({buf}, {_atom(core, names, constant)}, {buf})"
        )
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
    constants: tuple[float, ...]  # a 0-d array each, named by ``constant_name``
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
        return inplace(act.derivative_code_form, {catalog.A: f"a{layer}"}, buf, as_array)
    except Unsupported:
        return None


def _activation_code(
    network: Network, layer: int, source: str, buf: str, rows: Rows | None = None
) -> list[str] | None:
    """a(z_layer) into ``buf``; a row-wise one (softmax) only given ``rows``."""
    act = network.activation(layer)
    if not act.entrywise and rows is None:
        return None
    names: dict[sp.Basic, str] = {catalog.z: source, catalog.Z: source}
    try:
        return inplace(act.code_form, names, buf, as_array, rows)
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
    reduced: set[int] = set()  # layers whose row-wise reduction sits in g_l
    for step in network.steps():
        if step.layer is None:  # the loss: its own groups below
            continue
        layer = step.layer
        comment = f"f{step.index} = {text(step.target)} = {text(step.expr)}"
        match step.expr:
            case Add(MatMul(Var() as below, Var() as weights), Var() as bias):  # z_l
                buf = f"a{layer}" if in_place[layer] else f"z{layer}"
                prev, w, b = code_name(below), code_name(weights), code_name(bias)
                statements = (
                    f"np.dot({prev}, {w}, {buf})",
                    "if m == 1:",
                    f"    np.add({buf}, {b}, {buf})",
                    "else:",
                    f"    np.copyto(g{layer}, {b})",
                    f"    np.add({buf}, g{layer}, {buf})",
                )
                forward.append(Group(comment, statements))
            case Activate():  # a_l = σ(z_l)
                source = f"a{layer}" if in_place[layer] else f"z{layer}"
                code = _activation_code(network, layer, source, f"a{layer}")
                # a row-wise a(z_l) (softmax) on a fused output: g_L is free (δ_L = Ŷ − Y)
                if code is None and network.fused and layer == depth:
                    rows = Rows(f"lse{layer}", f"g{layer}")
                    code = _activation_code(network, layer, source, f"a{layer}", rows)
                    if code is not None:
                        buffers.append((f"lse{layer}", 1))
                        reduced.add(layer)
                if code is None:
                    code = [f"a{layer}[...] = {printer(step.expr)}"]
                forward.append(Group(comment, tuple(code)))
            case _:
                raise ValueError(f"no in-place plan for the step {text(step.target)}")
    loss_groups, residual = _loss(network, printer, depth in reduced)
    backward: list[Group] = []
    for owner in reversed(network.layers):
        layer = owner.index
        d = model.delta(layer)
        backward.append(
            Group(
                f"{text(d)} = {text(derivation.deltas[layer])}",
                tuple(_delta(derivation, layer, in_place, residual, printer)),
            )
        )
        for param in owner.parameters():
            grad = derivation.gradients[param]
            target = f"d{code_name(param)}"
            comment = f"∂L/∂{text(param)} = {text(grad)}"
            data = _data_part(grad)
            if isinstance(grad, Add) and data is not grad:
                comment += f" ({text(grad.right)} is added below when λ > 0)"
            if isinstance(grad, SumRows):
                comment += f" (= δ{subscript(layer)} itself when m = 1)"
            backward.append(Group(comment, (_product(data, target, printer),)))
    groups = [_laid_out(forward), _laid_out(loss_groups), _laid_out(backward)]
    constants = constants_in([s for part in groups for g in part for s in g.statements])
    return Plan(
        tuple(buffers),
        tuple(constants),
        forward=groups[0],
        loss=groups[1],
        backward=groups[2],
        penalty=_penalty(derivation, text),
    )


def penalty_half() -> str:
    """The c of the penalty's value c λ ‖W‖_F², as a literal (0.5), from its entry."""
    half = sp.cancel(penalty.ENTRY / (penalty.lam * penalty.w**2))
    if half.free_symbols:
        raise ValueError(f"the penalty's entry is not c λ w²: {penalty.ENTRY}")
    return _number(half)


def _data_part(grad: Expr) -> Expr:
    """a_{l-1}ᵀ δ_l of a_{l-1}ᵀ δ_l + λ W_l (the penalty's part is emitted apart); else ``grad``."""
    match grad:
        case Add(data, PenaltyGrad()):
            return data
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
    if text.startswith(("# ", "if ", "else:")):
        return text
    indent = text[: len(text) - len(text.lstrip(" "))]
    text = text.lstrip(" ")
    target, sep, value = text.partition(" = ")
    if sep and target.replace("[...]", "").isidentifier():
        return f"{indent}{target} = {formatted(value)}"
    return indent + formatted(text)


def _loss_names(network: Network) -> dict[sp.Basic, str]:
    """The arrays a loss formula reads: Ŷ = a_L (or z_L when fused), Y, m and n_L."""
    depth = network.depth
    pred = f"z{depth}" if network.fused else f"a{depth}"
    return {
        catalog.pred: pred,
        catalog.z: pred,
        catalog.Z: pred,
        catalog.A: f"a{depth}",
        catalog.target: "y",
        catalog.T: "y",
        catalog.batch: "m",
        catalog.outputs: str(network.sizes[-1]),
    }


def _loss(
    network: Network, printer: Printer, reduced: bool = False
) -> tuple[list[Group], sp.Expr | None]:
    """The loss value; for a squared error, r = Ŷ − Y is left in δ_L.

    Returns the groups and, when r is left in δ_L, the constant c with
    ∂L/∂Ŷ = c r (so δ_L is finished by scaling and multiplying by a'(z_L)).
    A loss read from z_L (fused) is summed from its entries, computed in δ_L
    (free until the backward pass) reusing the forward pass's row-wise
    reduction when ``reduced`` (g_L holds it on every column).
    """
    loss = network.loss
    depth = network.depth
    value_code = printer(network.steps()[-1].expr)  # L(Ŷ, Y), or L(z_L, Y) when fused
    if network.fused or loss.rowwise:
        names = _loss_names(network)
        rows = Rows(f"lse{depth}", f"g{depth}", ready=reduced)
        try:
            entries = inplace(loss.code_form, names, f"delta{depth}", as_array, rows)
        except Unsupported:
            return [Group(f"L = {loss.name} loss", (f"value = {value_code}",))], None
        statements = (*entries, f"value = float(np.add.reduce(delta{depth}, None))")
        comment = f"L = {loss.name} loss, summed from its entries (left in δ{subscript(depth)})"
        return [Group(comment, statements)], None
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
        Group(f"L = {loss.name} loss, from r = Ŷ − Y (kept in δ{subscript(depth)})", statements)
    ], c_grad


def printer_scalar(expr: sp.Expr, names: dict[sp.Symbol, str]) -> str:
    """A loss constant as code: a float literal, or a formula in m and n_L."""
    if expr.is_Number:
        return _number(expr)
    return scalar_code(expr, names)


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
    through_output = network.loss.gradient_from_output
    if isinstance(expr, LossGrad) and network.fused and through_output is not None:
        try:  # δ_L = ∂L/∂z_L through Ŷ (Ŷ − Y for a link with its matching loss)
            return inplace(through_output, _loss_names(network), buf, as_array)
        except Unsupported:
            return fallback
    if not (isinstance(expr, Hadamard) and isinstance(expr.right, ActivateDeriv)):
        return fallback
    act = network.activation(layer)
    deriv = _derivative_code(network, layer, g) if in_place[layer] else None
    names = {catalog.z: f"z{layer}", catalog.A: f"a{layer}"}
    form = act.derivative_code_form
    if deriv is None:  # z_l has its own buffer: a'(z) from z may compile where A's form cannot
        for form in (catalog.stable(act.derivative), act.derivative_code_form):
            try:
                deriv = inplace(form, names, g, as_array)
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
        factor = as_array(residual) if residual.is_Number else printer_scalar(residual, names)
        scale = [] if residual == 1 else [f"np.multiply({buf}, {factor}, {buf})"]
        return [*deriv, *scale, f"np.multiply({buf}, {g}, {buf})"]
    match left:
        case MatMul(Var() as above, Transpose(Var() as w)):
            return [
                f"np.dot({code_name(above)}, {code_name(w)}.T, {buf})",
                *deriv,
                f"np.multiply({buf}, {g}, {buf})",
            ]
    return fallback


def _product(grad: Expr, target: str, printer: Printer) -> str:
    """∂L/∂W_l = a_{l-1}ᵀ δ_l or ∂L/∂b_l = 1ᵀ δ_l, into the gradient array.

    ``target`` is None in the plain call: the product then makes the array.
    1ᵀ δ_l is the column sum of δ_l, which for one row is δ_l itself: copied
    by ``np.positive``, a ufunc that, like ``np.dot``, writes into ``target``
    or makes a new array.
    """
    match grad:
        case MatMul(Transpose(Var() as below), Var() as delta):
            return f"{target} = np.dot({code_name(below)}.T, {code_name(delta)}, {target})"
        case SumRows(Var() as delta):
            return (
                f"{target} = np.positive({code_name(delta)}, {target}) if m == 1 "
                f"else np.dot({ONES}, {code_name(delta)}, {target})"
            )
    return f"{target} = np.positive({printer(grad)}, {target})"
