"""A layered module's ``backprop`` in place: every statement into a reused buffer.

``layered.plan`` gives each identity as one IR tree; ``NumpyCode`` prints it as one
numpy expression, which allocates every intermediate.  Here each tree is compiled into
ufunc calls that write into their output (``np.subtract(a1, t, c2)``), products into
``np.dot(a, b, out)``, sums over an axis into products with a row or column of ones,
and an entrywise catalog formula through the dense planner's ``inplace``.  Every
statement's result has its own buffer in a workspace reused across calls, and each
gradient is written straight into ``out``.

Why a row or column meets a matrix through a copy: a ufunc broadcasting a (1, n) or
(m, 1) operand allocates an iterator buffer, ``np.copyto`` onto an (m, n) scratch does
not.  What cannot be compiled (a catalog formula ``inplace`` refuses) falls back to
``buffer[...] =`` the printed expression: correct, merely not allocation-free.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import sympy as sp

from ... import catalog
from ...expr import (
    Activate,
    ActivateDeriv,
    Add,
    Axis,
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
)
from ..python_source import MatrixCode, code_form, code_name, formatted
from .planner import Rows, Unsupported, inplace

M = 0
"""The row count of a buffer with one row per example (m, known at call time)."""

Shape = tuple[int, int]
"""(rows, cols) of a buffer; rows ``M`` means m."""


@dataclass(frozen=True)
class Buffer:
    """One workspace array: ``kind`` "f" is the call's dtype, "d" float64, "b" bool."""

    name: str
    shape: Shape
    kind: str = "f"


@dataclass
class Compiled:
    """The in-place statements of one identity, after its comment."""

    comment: str
    lines: list[str] = field(default_factory=list)


def _is_dense_bias_add(left: Shape, right: Shape) -> bool:
    return left[0] == M and right[0] == 1 and left[1] == right[1]


CONSTANT_PREFIX = "num"
"""Names of the workspace's 0-d constants: ``num2`` for 2.0, ``num0p5``, ``num_m1`` (no
IR variable's name starts so: the dense planner's ``c2`` would be layer 2's centred c₂)."""


def constant_name(value: float) -> str:
    text = repr(float(value)).removesuffix(".0")
    return CONSTANT_PREFIX + text.replace("-", "_m").replace(".", "p")


class Compiler:
    """Compiles statements into buffers; collects the workspace they need.

    ``shapes`` holds the shape of every array the statements read (x, y, params,
    and each statement's target as it is compiled).
    """

    def __init__(self, code: MatrixCode, shapes: dict[str, Shape]) -> None:
        self.code = code
        self.shapes = dict(shapes)
        self.buffers: dict[str, Buffer] = {}
        self.ones_cols: set[int] = set()
        self.constants: dict[str, float] = {}
        self._scratch: dict[Shape, int] = {}

    # --- the workspace ---------------------------------------------------------

    def buffer(self, name: str, shape: Shape, kind: str = "f") -> str:
        if name not in self.buffers:
            self.buffers[name] = Buffer(name, shape, kind)
        self.shapes[name] = shape
        return name

    def scratch(self, shape: Shape) -> str:
        """A buffer of ``shape`` free until the end of the current statement."""
        k = self._scratch.get(shape, 0)
        self._scratch[shape] = k + 1
        rows = "m" if shape[0] == M else str(shape[0])
        return self.buffer(f"t{rows}x{shape[1]}_{k}", shape)

    def _release(self) -> None:
        self._scratch = {}

    def constant(self, value: sp.Expr) -> str:
        """A number as a 0-d array of the workspace (a short one), else a float literal."""
        number = float(value)
        name = constant_name(number)
        if len(name) > len(CONSTANT_PREFIX) + 4:
            return repr(number)
        self.constants[name] = number
        return name

    # --- shapes ------------------------------------------------------------------

    def shape(self, e: Expr) -> Shape:
        match e:
            case Var():
                return self.shapes[code_name(e)]
            case MatMul(left, right):
                return (self.shape(left)[0], self.shape(right)[1])
            case Transpose(arg):
                rows, cols = self.shape(arg)
                return (cols, rows)
            case SumRows(arg):
                return (1, self.shape(arg)[1])
            case SumCols(arg):
                return (self.shape(arg)[0], 1)
            case Mean(arg, axis):
                rows, cols = self.shape(arg)
                return (1, cols) if axis is Axis.BATCH else (rows, 1)
            case Add(left, right) | Sub(left, right) | Hadamard(left, right):
                a, b = self.shape(left), self.shape(right)
                return (min(a[0], b[0]) if M in (a[0], b[0]) else a[0], max(a[1], b[1]))
            case (
                Scale(arg)
                | Power(arg)
                | InvSqrt(arg)
                | Activate(_, arg)
                | ActivateDeriv(_, arg)
                | Spread(arg)
            ):
                return self.shape(arg)
            case LossGrad(pred):
                return self.shape(pred)
            case Loss() | Penalty() | PenaltyGrad():
                return (1, 1)
        raise Unsupported(type(e).__name__)

    # --- statements --------------------------------------------------------------

    def statement(self, target: str, e: Expr, comment: str, fallback: str) -> Compiled:
        """``target`` ← ``e``; ``fallback`` is the printed expression."""
        shape = self.shape(e)
        self.shapes[target] = shape
        done = Compiled(comment)
        try:
            done.lines = self.into(e, target, shape)
        except Unsupported:
            done.lines = [f"{target}[...] = {fallback}"]
        self._release()
        return done

    def operand(self, e: Expr, shape: Shape, lines: list[str]) -> str:
        """The name of an array holding ``e`` at ``shape`` (a row or column spread by a
        copy onto a scratch), after the ``lines`` that compute it."""
        while isinstance(e, Spread):
            e = e.arg
        if isinstance(e, Var):
            name = code_name(e)
        else:
            own = self.shape(e)
            name = self.scratch(own)
            lines += self.into(e, name, own)
        if self.shapes[name] != shape:
            spread = self.scratch(shape)
            lines.append(f"np.copyto({spread}, {name})")
            return spread
        return name

    def into(self, e: Expr, out: str, shape: Shape) -> list[str]:
        """Lines leaving ``e`` in the array ``out`` of ``shape``."""
        lines: list[str] = []
        match e:
            case Var():
                return [f"np.copyto({out}, {code_name(e)})"]
            case Spread(arg):
                return self.into(arg, out, shape)
            case MatMul(left, right):
                a = self._factor(left, lines)
                b = self._factor(right, lines)
                return [*lines, f"np.dot({a}, {b}, {out})"]
            case SumRows(arg):
                a = self._plain(arg, lines)
                return [*lines, f"np.dot(ones, {a}, {out})"]
            case SumCols(arg):
                a = self._plain(arg, lines)
                n = self.shapes[a][1]
                self.ones_cols.add(n)
                return [*lines, f"np.dot({a}, ones{n}, {out})"]
            case Mean(arg, axis, count):
                total = SumRows(arg) if axis is Axis.BATCH else SumCols(arg)
                lines = self.into(total, out, shape)
                return [*lines, f"np.multiply({out}, {self._scalar(1 / count)}, {out})"]
            case Add(left, right) | Sub(left, right) | Hadamard(left, right):
                if isinstance(e, Hadamard) and self.code(right) == "1":  # a'(z) = 1
                    return self.into(left, out, shape)
                op = {Add: "add", Sub: "subtract", Hadamard: "multiply"}[type(e)]
                return self._binary(op, left, right, out, shape)
            case Scale(arg, factor):
                source, lines = self._source(arg, out, shape)
                if factor == -1:
                    return [*lines, f"np.negative({source}, {out})"]
                return [*lines, f"np.multiply({source}, {self._scalar(factor)}, {out})"]
            case Power(arg, exponent):
                a = self._plain(arg, lines)
                if exponent == 2:
                    return [*lines, f"np.multiply({a}, {a}, {out})"]
                return [*lines, f"np.power({a}, {exponent}, {out})"]
            case InvSqrt(arg):  # 1/√(v + ε)
                source, lines = self._source(arg, out, shape)
                return [
                    *lines,
                    f"np.add({source}, {self.code.EPS}, {out})",
                    f"np.sqrt({out}, {out})",
                    f"np.divide({self.constant(sp.Integer(1))}, {out}, {out})",
                ]
            case Activate(layer, arg):
                act = self.code.network.activation(layer)
                z = self._plain(arg, lines)
                rows = None
                if not act.entrywise:
                    rows = Rows(self.scratch((shape[0], 1)), self.scratch(shape))
                names: dict[sp.Basic, str] = {catalog.z: z, catalog.Z: z}
                return [*lines, *inplace(act.code_form, names, out, self.constant, rows)]
            case ActivateDeriv(layer, arg):
                act = self.code.network.activation(layer)
                names = {catalog.z: self._plain(arg, lines)}
                if act.derivative_from_output is not None:
                    match arg:
                        case Var(Kind.Z, int(index)):
                            names[catalog.A] = code_name(self.code._activated(index))
                        case _:
                            raise Unsupported("a'(z) through A needs a stored z_l")
                return [*lines, *inplace(code_form(act, True), names, out, self.constant)]
            case LossGrad():
                loss = self.code.network.loss
                form = loss.gradient_from_output
                if form is None:
                    form = loss.gradient
                return inplace(form, self.code._loss_names(e), out, self.constant)
        raise Unsupported(type(e).__name__)

    def loss(self, e: Loss, shape: Shape) -> list[str]:
        """``value`` = the loss, its entries summed from a scratch."""
        names = self.code._loss_names(e)
        loss = self.code.network.loss
        entries = self.scratch(shape)
        rows = Rows(self.scratch((shape[0], 1)), self.scratch(shape))
        try:
            lines = inplace(loss.code_form, names, entries, self.constant, rows)
            lines.append(f"value = float(np.add.reduce({entries}, None))")
        except Unsupported:
            lines = self._squared(e, entries)
        self._release()
        return lines

    def _squared(self, e: Loss, entries: str) -> list[str]:
        """A loss c ‖Ŷ − Y‖² (c free of Ŷ and Y): r = Ŷ − Y, then c rᵀr by ``np.vdot``."""
        loss = self.code.network.loss
        r = catalog.pred - catalog.target
        c_value = sp.cancel(sp.expand(loss.scale * loss.entry) / sp.expand(r**2))
        if c_value.free_symbols & {catalog.pred, catalog.target}:
            raise Unsupported(str(loss.code_form))
        names = self.code._loss_names(e)
        pred, target = names[catalog.pred], names[catalog.target]
        scale = "" if c_value == 1 else f" * {self.code.scalar(c_value, names)}"
        return [
            f"np.subtract({pred}, {target}, {entries})",
            f"value = float(np.vdot({entries}, {entries})){scale}",
        ]

    def _source(self, arg: Expr, out: str, shape: Shape) -> tuple[str, list[str]]:
        """An array holding ``arg`` at ``out``'s shape for an entrywise op into ``out``:
        a variable of that shape itself (no copy), else ``out`` after computing it."""
        while isinstance(arg, Spread) and self.shape(arg.arg) == shape:
            arg = arg.arg
        if isinstance(arg, Var) and self.shape(arg) == shape:
            return code_name(arg), []
        return out, self._first(arg, out, shape)

    def _first(self, arg: Expr, out: str, shape: Shape) -> list[str]:
        """``arg`` into ``out`` when it has ``out``'s shape, else spread onto it."""
        lines: list[str] = []
        name = self.operand(arg, shape, lines) if self.shape(arg) != shape else None
        if name is None:
            return self.into(arg, out, shape)
        return [*lines, f"np.copyto({out}, {name})"]

    def _plain(self, e: Expr, lines: list[str]) -> str:
        """The name of an array holding ``e`` at its own shape."""
        return self.operand(e, self.shape(e), lines)

    def _factor(self, e: Expr, lines: list[str]) -> str:
        """A product's operand: an array or its transpose (BLAS reads either)."""
        if isinstance(e, Transpose):
            return f"{self._plain(e.arg, lines)}.T"
        return self._plain(e, lines)

    def _binary(self, op: str, left: Expr, right: Expr, out: str, shape: Shape) -> list[str]:
        """``out`` = left op right: a compound operand of ``out``'s shape is computed in
        ``out`` itself, the other in a scratch."""
        lines: list[str] = []
        compound = [
            side
            for side in (left, right)
            if not isinstance(side, Var | Spread) and self.shape(side) == shape
        ]
        if compound:
            inner = compound[0]
            lines += self.into(inner, out, shape)
            a = out if inner is left else self.operand(left, shape, lines)
            b = out if inner is right else self.operand(right, shape, lines)
            if a == b == out:  # the same tree on both sides
                b = out
        else:
            a = self.operand(left, shape, lines)
            b = self.operand(right, shape, lines)
        return [*lines, f"np.{op}({a}, {b}, {out})"]

    def _scalar(self, factor: sp.Expr) -> str:
        """A scale factor: a workspace constant when a plain number with a short name,
        else its code (a Python float, which numpy treats as weak: float32 stays)."""
        factor = sp.sympify(factor)
        if factor.is_Number:
            return self.constant(factor)
        return self.code._factor(factor)


def laid_out(lines: list[str]) -> list[str]:
    """Each line as ``ruff format`` writes it."""
    laid = []
    for line in lines:
        target, sep, value = line.partition(" = ")
        if line.startswith("#"):
            laid.append(line)
        elif sep and target.replace("[...]", "").isidentifier():
            laid.append(f"{target} = {formatted(value)}")
        else:
            laid.append(formatted(line))
    return laid


Printer = Callable[[Expr], str]


def _param_shapes(network: object) -> dict[str, Shape]:
    from ...layers import BatchNorm, Dense, LayerNorm, Residual

    shapes: dict[str, Shape] = {}
    for layer in network.layers:  # type: ignore[attr-defined]
        if isinstance(layer, Dense | Residual):
            shapes[f"W{layer.index}"] = (layer.n_in, layer.n_out)
            shapes[f"b{layer.index}"] = (1, layer.n_out)
            if isinstance(layer, Residual) and layer.projection:
                shapes[code_name(layer.proj)] = (layer.n_in, layer.n_out)
        elif isinstance(layer, LayerNorm | BatchNorm):
            for param in layer.parameters():
                shapes[code_name(param)] = (1, layer.width)
    return shapes


def backprop_fields(
    network: object, the_plan: object, code: MatrixCode, gradient_names: set[Var]
) -> dict[str, object]:
    """What the layered template's in-place ``backprop`` reads: the workspace's layout and
    unpacking, and the forward, loss and backward groups (comment, lines)."""
    from ...layers import BatchNorm, Residual, W

    sizes = network.sizes  # type: ignore[attr-defined]
    shapes = {"x": (M, sizes[0]), "y": (M, sizes[-1]), **_param_shapes(network)}
    compiler = Compiler(code, shapes)
    for layer in network.layers:  # type: ignore[attr-defined]
        if isinstance(layer, Residual) and layer.projection:  # copied out of [W_l | P_l]
            for param in (W(layer.index), layer.proj):
                compiler.buffer(code_name(param), shapes[code_name(param)])
    forward: list[Compiled] = []
    for statement in the_plan.forward:  # type: ignore[attr-defined]
        code.at_width(statement.width or 1)
        target = code_name(statement.target)
        group_lines: list[str] = []
        if statement.mask is not None:
            layer = statement.mask.index
            shape = compiler.shape(statement.mask.input)
            mask = compiler.buffer(f"M{layer}", shape)
            drawn = compiler.buffer(f"drawn{layer}", shape, "d")
            kept = compiler.buffer(f"kept{layer}", shape, "b")
            group_lines.append(f"_mask_into(masks, {layer}, {mask}, {drawn}, {kept})")
        compiler.buffer(target, compiler.shape(statement.expr))
        group = compiler.statement(target, statement.expr, statement.comment, code(statement.expr))
        group.lines = group_lines + group.lines
        forward.append(group)
    batch_norms = []
    for layer in network.layers:  # type: ignore[attr-defined]
        if isinstance(layer, BatchNorm):
            row = compiler.buffer(f"running{layer.index}", (1, layer.width), "d")
            batch_norms.append({"layer": layer.index, "row": row})
    loss_step = network.steps()[-1]  # type: ignore[attr-defined]
    pred_shape = (M, sizes[-1])
    loss_lines = compiler.loss(loss_step.expr, pred_shape)
    backward: list[Compiled] = []
    joined = {
        f"d{code_name(param)}"
        for layer in network.layers  # type: ignore[attr-defined]
        if isinstance(layer, Residual) and layer.projection
        for param in (W(layer.index), layer.proj)
    }
    for statement in the_plan.backward:  # type: ignore[attr-defined]
        code.at_width(statement.width or 1)
        is_gradient = statement.target in gradient_names and statement.comment.startswith("∂L/∂")
        target = ("d" if is_gradient else "") + code_name(statement.target)
        if isinstance(statement.expr, Var) and not is_gradient:
            compiler.shapes[target] = compiler.shape(statement.expr)
            group = Compiled(statement.comment, [f"{target} = {code_name(statement.expr)}"])
        else:
            shape = compiler.shape(statement.expr)
            if is_gradient and target not in joined:  # written straight into out
                compiler.shapes[target] = shapes[target[1:]]
            else:
                compiler.buffer(target, shape)
            group = compiler.statement(
                target, statement.expr, statement.comment, code(statement.expr)
            )
        backward.append(group)
    named_constants = sorted(compiler.constants.items(), key=lambda item: item[1])
    buffers = list(compiler.buffers.values())
    ones_cols = sorted(compiler.ones_cols)
    copied = sorted(n for n in compiler.buffers if n in shapes)  # W_l, P_l out of [W_l | P_l]
    order = [copied, *(g.lines for g in forward)]
    order += [[f"{b['row']} mu{b['layer']} v{b['layer']}"] for b in batch_norms]
    order += [loss_lines, *(g.lines for g in backward)]
    for param in the_plan.penalised:  # type: ignore[attr-defined]
        name = code_name(param)  # with --l2: λ W_l into a scratch, added to ∂L/∂W_l
        compiler.buffer(f"decay_{name}", shapes[name])
        order.append([f"decay_{name} d{name} {name}"])
    buffers = list(compiler.buffers.values())
    order.append(sorted(joined))  # the projection's halves, copied into out at the end
    read = {name for lines in order for line in lines for name in re.findall(r"\w+", line)}
    buffers = [b for b in buffers if b.name in read]  # a scratch a fallback left unused
    slots, layout = share_slots(buffers, order)
    unpacked = ["ones", *(f"ones{n}" for n in ones_cols), *(b.name for b in buffers)]
    named_constants = [(name, value) for name, value in named_constants if name in read]
    unpacked += [name for name, _ in named_constants]
    return {
        "ws_layout": layout,
        "ws_slots": slots,
        "ws_ones_columns": ones_cols,
        "ws_constants": [value for _, value in named_constants],
        "ws_unpacked": unpacked,
        "inplace_forward": [{"comment": g.comment, "lines": laid_out(g.lines)} for g in forward],
        "inplace_loss": laid_out(loss_lines),
        "inplace_backward": [{"comment": g.comment, "lines": laid_out(g.lines)} for g in backward],
        "inplace_batch_norms": batch_norms,
    }


def share_slots(
    buffers: list[Buffer], order: list[list[str]]
) -> tuple[list[int], list[tuple[int, int, str]]]:
    """Each buffer's slot, and each slot's (rows, cols, kind): buffers of one shape and kind
    share a slot when one's last read comes before the other's first write (``order``:
    the statements' lines in the order they run; a name is read or written where it
    appears).  Fewer, reused arrays: a smaller workspace that stays in cache."""
    aliases = {}
    for lines in order:
        for line in lines:
            target, sep, value = line.partition(" = ")
            if sep and target.isidentifier() and value.isidentifier():
                aliases[target] = value  # ``abar3 = abar4``: one array, two names
    spans: dict[str, list[int]] = {}
    token = re.compile(r"[A-Za-z_]\w*")
    for index, lines in enumerate(order):
        for line in lines:
            for name in token.findall(line):
                name = aliases.get(name, name)
                if name in spans:
                    spans[name][1] = index
                else:
                    spans[name] = [index, index]
    free_after: list[int] = []  # per slot: the last index its occupant is read at
    layout: list[tuple[int, int, str]] = []
    slots = []
    for b in buffers:
        first, last = spans.get(b.name, [-1, len(order)])
        spec = (0 if b.shape[0] == M else b.shape[0], b.shape[1], b.kind)
        for k, (occupied, kind) in enumerate(zip(free_after, layout, strict=True)):
            if kind == spec and occupied < first:
                slots.append(k)
                free_after[k] = last
                break
        else:
            slots.append(len(layout))
            layout.append(spec)
            free_after.append(last)
    return slots, layout
