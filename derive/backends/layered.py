"""The statements of a network with layer kinds (norms, residual, dropout), target-neutral.

A dense-only network keeps its own planner (``numpy/planner.py``) and its output byte
for byte.  A network holding another kind is emitted from this plan: every statement
is an IR tree with the identity it implements, printed by a target's ``MatrixCode``.

The backward pass is the chain rule over the whole network (``derivation.backward``)
with one more name per layer: the adjoint of each layer's output, ā_l = ∂L/∂a_l
(``layers.abar``, as residual and dropout layers name it).  So each layer's statements
read only its own ā_l and its own intermediates, as in its one-layer lemma.  A
normalization's input adjoint (ā_{l-1}) is then its lemma's compact form
(``normalization``: the chain rule and ``simplify``, proved by ``proof_normalization``)
with G = ā_l, used only when the raw adjoint the network's chain rule gives is exactly
that lemma's raw adjoint at ā_l; otherwise the raw form is emitted (correct, longer).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import model
from ..derivation import backward
from ..expr import Expr, Kind, SumCols, SumRows, Var, rebuild, substitute
from ..layers import BatchNorm, Dense, Dropout, LayerNorm, Step, abar, numbered

if TYPE_CHECKING:
    from ..model import Network


@dataclass(frozen=True)
class Statement:
    """``target = expr`` for the identity ``comment``; ``width`` is n for a norm's counts.

    ``inference`` is what the statement becomes when not training (a batch norm's
    statistics read its running ones; dropout is the identity), None if unchanged;
    ``mask`` the dropout layer whose mask M_l the statement reads, drawn or given first.
    """

    target: Var
    expr: Expr
    comment: str
    width: int | None = None
    inference: Expr | None = None
    mask: Dropout | None = None


def output_adjoint(layer: int) -> Var:
    """ā_l = ∂L/∂a_l, the adjoint of layer l's output (``layers.abar``: the residual and
    dropout layers name it so themselves)."""
    return abar(layer)


def has_kinds(network: Network) -> bool:
    """True when the network holds a layer other than dense (then this plan emits it)."""
    return any(not isinstance(layer, Dense) for layer in network.layers)


def norm_width(layer: object) -> int | None:
    return layer.width if isinstance(layer, (LayerNorm, BatchNorm)) else None


def _steps(network: Network) -> list[Step]:
    """The network's chain, each layer's output step naming its adjoint ā_l."""
    outputs = {layer.output for layer in network.layers}
    return numbered(
        [
            Step(0, s.target, s.expr, s.layer, s.adjoint)
            if s.target not in outputs or s.adjoint is not None
            else Step(0, s.target, s.expr, s.layer, output_adjoint(s.layer or 0))
            for s in network.steps()
        ]
    )


@dataclass(frozen=True)
class LayeredPlan:
    forward: tuple[Statement, ...]
    backward: tuple[Statement, ...]
    gradients: tuple[tuple[Var, ...], ...]  # each layer's parameters, in layer order


def plan(network: Network, text: object) -> LayeredPlan:
    """Forward and backward statements; ``text`` is ``MatrixText`` for the comments."""
    steps = _steps(network)
    by_layer = {layer.index: layer for layer in network.layers}
    forward = []
    for step in steps:
        if step.layer is None:
            continue
        layer = by_layer[step.layer]
        comment = f"f{step.index} = {text(step.target)} = {text(step.expr)}"  # type: ignore[operator]
        forward.append(
            Statement(
                step.target,
                step.expr,
                comment,
                norm_width(layer),
                _inference(layer, step),
                layer if isinstance(layer, Dropout) else None,
            )
        )
    seeds: dict[Var, Expr] = {model.LOSS: model.SEED}
    adjoints = backward(steps, seeds)
    definitions = dict(adjoints)
    for layer in network.layers:
        if isinstance(layer, (LayerNorm, BatchNorm)):
            definitions |= _compact(layer, adjoints, steps)
    named = {s.target: s.adjoint for s in steps if s.adjoint is not None}
    statements = []
    inputs_of = {
        layer.input: layer
        for layer in network.layers
        if isinstance(layer, (LayerNorm, BatchNorm)) and layer.input in definitions
    }
    sums: dict[Expr, Var] = {}
    for layer in reversed(network.layers):
        own = [s for s in steps if s.layer == layer.index]
        for step in reversed(own):
            name = named.get(step.target)
            if name is None or step.target not in definitions:
                continue
            expr = definitions[step.target]
            expr = _replace(expr, sums)
            comment = f"{text(name)} = {text(expr)}"  # type: ignore[operator]
            statements.append(Statement(name, expr, comment, _width_of(expr, network)))
        if isinstance(layer, (LayerNorm, BatchNorm)) and layer.input in inputs_of:
            # the sums of the norm's compact dx, each once (dγ, dβ reuse them)
            hoisted = hoisted_sums(layer, definitions[layer.input])
            for total, sum_name in hoisted.items():
                comment = f"{text(sum_name)} = {text(total)}"  # type: ignore[operator]
                statements.append(Statement(sum_name, total, comment, layer.width))
            sums |= hoisted
        for param in layer.parameters():
            grad = _replace(definitions[param], sums)
            comment = f"∂L/∂{text(param)} = {text(grad)}"  # type: ignore[operator]
            statements.append(
                Statement(Var(param.kind, param.layer), grad, comment, norm_width(layer))
            )
    gradients = tuple(layer.parameters() for layer in network.layers)
    return LayeredPlan(tuple(forward), _read_only(statements, gradients), gradients)


def _read_only(
    statements: list[Statement], gradients: tuple[tuple[Var, ...], ...]
) -> tuple[Statement, ...]:
    """The statements a gradient needs: a named adjoint no later statement reads is dropped
    (batch norm's compact dx reads ā_l and γ_l, not ĝ_l)."""
    wanted = {param for group in gradients for param in group}
    kept: list[Statement] = []
    needed: set[Var] = set()
    for statement in reversed(statements):
        is_gradient = statement.target in wanted and statement.comment.startswith("∂L/∂")
        if is_gradient or statement.target in needed:
            kept.append(statement)
            needed |= set(_vars(statement.expr))
    return tuple(reversed(kept))


def _width_of(expr: Expr, network: Network) -> int | None:
    """n for the statement's counts: the width of the norm whose variables ``expr`` reads."""
    norms = {
        layer.index: layer.width
        for layer in network.layers
        if isinstance(layer, (LayerNorm, BatchNorm))
    }
    for var in _vars(expr):
        if var.layer in norms and var.kind is not Kind.INCOMING:
            return norms[var.layer]
    return None


def _vars(expr: Expr) -> Iterator[Var]:
    if isinstance(expr, Var):
        yield expr
    for child in expr.children():
        yield from _vars(child)


def _inference(layer: object, step: Step) -> Expr | None:
    """A batch norm's statistics when not training: its running mean and variance; a
    dropout layer passes its input on."""
    if isinstance(layer, Dropout):
        return layer.input
    if isinstance(layer, BatchNorm):
        if step.target == layer.var(Kind.MEAN):
            return layer.var(Kind.RUNNING_MEAN)
        if step.target == layer.var(Kind.VARIANCE):
            return layer.var(Kind.RUNNING_VAR)
    return None


def _compact(
    layer: LayerNorm | BatchNorm, adjoints: dict[Var, Expr], steps: list[Step]
) -> dict[Var, Expr]:
    """The lemma's compact dx, dγ, dβ at G = ā_l, where the network's raw adjoints are the
    lemma's raw ones at ā_l (checked structurally); else nothing (the raw forms stay)."""
    from ..normalization import derive_normalization

    lemma = derive_normalization(type(layer)(layer.index, layer.width))
    at_g = {model.INCOMING: output_adjoint(layer.index)}
    below = {s.target: s for s in steps}.get(layer.input)
    out: dict[Var, Expr] = {}
    for var, simplified in lemma.compact.items():
        raw = substitute(lemma.raw[var], at_g)
        if var == layer.input:
            if below is None or below.adjoint is None or adjoints.get(layer.input) != raw:
                continue
        elif adjoints.get(var) != raw:
            continue
        out[var] = substitute(simplified.expr, at_g)
    return out


def _subtrees(expr: Expr) -> Iterator[Expr]:
    yield expr
    for child in expr.children():
        yield from _subtrees(child)


def _replace(expr: Expr, mapping: dict[Expr, Var]) -> Expr:
    """``expr`` with each subtree in ``mapping`` replaced by its name."""
    if expr in mapping:
        return mapping[expr]
    return rebuild(expr, tuple(_replace(c, mapping) for c in expr.children()))


def hoisted_sums(layer: LayerNorm | BatchNorm, expr: Expr) -> dict[Expr, Var]:
    """The sums over the normalized axis in a compact form, each named once: Σg, Σ(g ⊙ x̂)
    (an empty map when the form holds other sums than these two)."""
    sums = list(dict.fromkeys(e for e in _subtrees(expr) if isinstance(e, (SumRows, SumCols))))
    named: dict[Expr, Var] = {}
    for total in sums:
        reads_xhat = layer.xhat in set(_vars(total))
        kind = Kind.SUM_ADJOINT_XHAT if reads_xhat else Kind.SUM_ADJOINT
        if any(v.kind is kind for v in named.values()):
            return {}
        named[total] = Var(kind, layer.index)
    return named
