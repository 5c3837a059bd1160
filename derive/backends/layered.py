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

With ``--l2`` the chain rule runs over the objective L + P (``Network.penalty_steps``:
P = λ/2 Σ ‖·‖_F² over W_l and each projection P_l, not b_l, γ_l, β_l), so each penalised
gradient comes out as a_{l-1}ᵀ δ_l + λ W_l; the plan emits the loss's part as a statement
and lists the parameter in ``penalised``: the templates add λ W_l (at run-time λ) apart,
as the dense planner does.  A penalised gradient of any other form is refused.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import model, penalty
from ..derivation import backward
from ..expr import Add, Expr, Kind, PenaltyGrad, SumCols, SumRows, Var, rebuild, substitute
from ..layers import (
    AnyLayer,
    BatchNorm,
    Dense,
    Dropout,
    LayerNorm,
    Residual,
    Step,
    W,
    abar,
    numbered,
)
from ..layers import b as bias

if TYPE_CHECKING:
    from ..derivation import Derivation
    from ..model import Network
    from .python_source import MatrixCode, MatrixText

EPS = 1e-05
"""ε of every normalization in a generated module (PyTorch's default)."""
MOMENTUM = 0.1
"""The running statistics' update weight (PyTorch's default)."""


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
    penalised: tuple[Var, ...] = ()
    """With ``--l2``: the parameters whose derived gradient gains λ·itself (W_l, P_l)."""


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
    if network.l2:  # the objective L + P: ∂(L + P)/∂L = ∂(L + P)/∂P = 1
        seeds[model.PENALTY] = model.SEED
    adjoints = backward(steps + network.penalty_steps(), seeds)
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
    penalised: list[Var] = []
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
            match grad:
                case Add(data, PenaltyGrad(penalised_param)) if penalised_param == param:
                    grad = data  # λ·param is added apart, at run-time λ
                    penalised.append(param)
            comment = f"∂L/∂{text(param)} = {text(grad)}"  # type: ignore[operator]
            statements.append(
                Statement(Var(param.kind, param.layer), grad, comment, norm_width(layer))
            )
    gradients = tuple(layer.parameters() for layer in network.layers)
    ordered = tuple(p for group in gradients for p in group if p in penalised)
    if set(ordered) != set(network.weights() if network.l2 else ()):
        raise ValueError(
            "the derived gradients gain λ·itself for "
            f"{', '.join(v.name for v in ordered) or 'no parameter'}, not for the penalised weights"
        )
    return LayeredPlan(tuple(forward), _read_only(statements, gradients), gradients, ordered)


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


# --- what both Python targets' templates read ----------------------------------------


def layer_text(layer: object) -> str:
    """One layer as the module's docstring lists it."""
    if isinstance(layer, Dense | Residual):
        kind = "residual" if isinstance(layer, Residual) else "dense"
        return f"{kind} {layer.n_in}→{layer.n_out} ({layer.activation.name})"
    if isinstance(layer, LayerNorm | BatchNorm):
        return f"{layer.name} {layer.width}"
    if isinstance(layer, Dropout):
        return f"dropout {layer.width} (p = {float(layer.rate)!r})"
    raise ValueError(f"no text for a {type(layer).__name__} layer")


def _penalised_pairs(owners: list[AnyLayer], penalised: tuple[Var, ...]) -> list[int]:
    """The positions in ``params`` of the pairs whose first array is penalised whole: W_l,
    or [W_l | P_l] (‖[W_l | P_l]‖_F² = ‖W_l‖_F² + ‖P_l‖_F²); a pair penalised in part is
    refused."""
    positions = []
    for position, layer in enumerate(owners):
        first: set[Var] = set()  # what the pair's first array holds
        if isinstance(layer, Dense | Residual):
            first = {W(layer.index)}
            if isinstance(layer, Residual) and layer.projection:
                first.add(layer.proj)
        if first and first <= set(penalised):
            positions.append(position)
        elif set(penalised) & (set(layer.parameters()) | first):
            raise ValueError(f"layer {layer.index}'s parameters are penalised in part")
    return positions


def _joined_name(layer: Residual) -> str:
    """The name of a projected block's first parameter, [W_l | P_l] side by side."""
    return f"W{layer.index}{layer.proj.name}"


def _pair_names(layer: object) -> tuple[str, str]:
    """The names of one layer's pair in ``params``.  A residual block with a projection
    holds [W_l | P_l] (n_{l-1} x 2 n_l: both multiply a_{l-1}) and b_l, so that every
    layer keeps one pair and the pair runtime (optimizers, checkpoints, out=) serves it."""
    from .python_source import code_name

    if isinstance(layer, Residual) and layer.projection:
        return (_joined_name(layer), code_name(bias(layer.index)))
    first, second = layer.parameters()  # type: ignore[attr-defined]
    return (code_name(first), code_name(second))


def template_fields(
    derivation: Derivation, code: MatrixCode, text: MatrixText, running: Callable[[str], str]
) -> dict[str, object]:
    """The fields a layered template reads; ``running`` prints the read of a running
    statistic by name."""
    from ..catalog import batch
    from ..model import kind_name
    from .python_source import LINE_LENGTH, code_name, formatted, tuple_literal

    network = derivation.network
    loss = network.loss
    the_plan = plan(network, text)

    def printed(statement: Statement, prefix: str = "") -> dict[str, object]:
        code.at_width(statement.width or 1)
        inference = ""
        match statement.inference:
            case Var(Kind.RUNNING_MEAN | Kind.RUNNING_VAR) as kept:
                inference = running(code_name(kept))
            case None:
                pass
            case other:
                inference = formatted(code(other))
        target, printed_code = prefix + code_name(statement.target), formatted(code(statement.expr))
        line = f"        {target} = {printed_code}  # {statement.comment}"
        if len(f"    {target} = {printed_code}") > LINE_LENGTH:
            raise ValueError(f"the statement for {target} is longer than a line: {printed_code}")
        stat = ""
        if isinstance(statement.inference, Var) and statement.inference.kind in (
            Kind.RUNNING_MEAN,
            Kind.RUNNING_VAR,
        ):
            stat = code_name(statement.inference)
        return {
            "target": target,
            "code": printed_code,
            "comment": statement.comment,
            "inference": inference,
            "above": len(line) > LINE_LENGTH,
            "mask": "" if statement.mask is None else str(statement.mask.index),
            "stat": stat,
        }

    gradient_names = {p for group in the_plan.gradients for p in group}
    backward = [
        printed(s, "d" if s.target in gradient_names and s.comment.startswith("∂L/∂") else "")
        for s in the_plan.backward
    ]
    owners = [layer for layer in network.layers if layer.parameters()]
    pairs = [_pair_names(layer) for layer in owners]
    projected = [layer for layer in owners if isinstance(layer, Residual) and layer.projection]
    shapes = []
    for layer in owners:
        if isinstance(layer, Dense | Residual):
            cols = 2 * layer.n_out if layer in projected else layer.n_out
            shapes.append(f"(({layer.n_in}, {cols}), (1, {layer.n_out}))")
        elif isinstance(layer, LayerNorm | BatchNorm):
            shapes.append(f"((1, {layer.width}), (1, {layer.width}))")
    batch_norms = [layer for layer in network.layers if isinstance(layer, BatchNorm)]
    dropouts = [layer for layer in network.layers if isinstance(layer, Dropout)]
    depth = network.layers[-1].index
    return {
        "layers_text": textwrap.fill(
            "Layers: " + "; ".join(layer_text(layer) for layer in network.layers) + ".",
            width=LINE_LENGTH - 4,
        ),
        "loss_doc": textwrap.fill(
            f"* the loss is {loss.name}: {loss.summary};", LINE_LENGTH, subsequent_indent="  "
        ),
        "sizes": network.sizes,
        "sizes_literal": tuple_literal(
            [str(n) for n in network.sizes], "SIZES: tuple[int, ...] = "
        ),
        "kinds_literal": tuple_literal(
            [f'"{kind_name(layer)}"' for layer in network.layers], "KINDS: tuple[str, ...] = "
        ),
        "names_literal": tuple_literal(
            [f'("{a}", "{b}")' for a, b in pairs], "_NAMES: tuple[tuple[str, str], ...] = "
        ),
        "shapes_literal": tuple_literal(
            shapes, "_SHAPES: tuple[tuple[tuple[int, int], tuple[int, int]], ...] = "
        ),
        "normalizes_literal": tuple_literal(
            [str(not isinstance(layer, Dense | Residual)) for layer in owners],
            "_NORMALIZES: tuple[bool, ...] = ",
        ),
        "batch_norms_literal": tuple_literal(
            [f"({layer.index}, {layer.width})" for layer in batch_norms],
            "_BATCH_NORMS: tuple[tuple[int, int], ...] = ",
        ),
        "batch_norms": [layer.index for layer in batch_norms],
        "dropouts_literal": "{"
        + ", ".join(f"{d.index}: ({d.width}, {float(d.rate)!r})" for d in dropouts)
        + "}",
        "dropouts": bool(dropouts),
        "loss_name": loss.name,
        "loss_code": formatted(code(network.steps()[-1].expr)),
        "uses_batch": batch in loss.gradient.free_symbols or batch in loss.scale.free_symbols,
        "fused": network.fused,
        "pred": f"z{depth}" if network.fused else f"a{depth}",
        "depth": depth,
        "param_pairs": [f"({a}, {b})" for a, b in pairs],
        "projections": [
            {
                "joined": _joined_name(layer),
                "w": code_name(W(layer.index)),
                "proj": code_name(layer.proj),
                "n": layer.n_out,
                "text": f"[{text(W(layer.index))} | {text(layer.proj)}]",
            }
            for layer in projected
        ],
        "l2": network.l2,
        "penalty_half": repr(float(penalty.HALF)),
        "penalty_scale": "l2" if penalty.FACTOR == 1 else f"{float(penalty.FACTOR)!r} * l2",
        "penalised": [{"name": code_name(p), "text": text(p)} for p in the_plan.penalised],
        "penalised_pairs_literal": tuple_literal(
            [str(k) for k in _penalised_pairs(owners, the_plan.penalised)],
            "_PENALISED: tuple[int, ...] = ",
        ),
        "forward": [printed(s) for s in the_plan.forward],
        "backward": backward,
        "grads_literal": tuple_literal(
            [f"(d{a}, d{b})" for a, b in pairs], "    grads: Params = ", "[]", "    "
        ),
        "grads_return": tuple_literal(
            [f"(d{a}, d{b})" for a, b in pairs], "    return value, ", "[]", "    "
        ),
    }
