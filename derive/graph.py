"""The computational graph f_0 … f_{2L+1} as Graphviz DOT text, and its rendering.

The DOT text is written here, deterministically (no graphviz package
needed); only turning it into .svg, .png or .pdf needs Graphviz's ``dot``
program.  Forward flow is drawn in solid black; the backward flow of
δ_l = ∂L/∂z_l and of the parameter gradients in dashed red, so the two
directions of backpropagation read apart.  Deep networks show their first
and last layers and one node for the repeated middle, so the picture stays
readable at any depth.
"""

from __future__ import annotations

import re
import subprocess

from .expr import (
    Activate,
    Add,
    Axis,
    Expr,
    Hadamard,
    InvSqrt,
    Kind,
    MatMul,
    Mean,
    Power,
    Scale,
    Spread,
    Sub,
    Var,
    assert_never,
)
from .layers import BatchNorm, Dense, Dropout, LayerNorm, Residual
from .model import Network, X, a, kind_name, z
from .naming import layers_text, subscript
from .tools import need

FORMATS = ("dot", "svg", "png", "pdf")
SHOWN_LAYERS = 2
"""Layers drawn at each end of a network deeper than 2 * SHOWN_LAYERS + 1."""

BACKWARD = 'color="#c0392b", fontcolor="#c0392b", style=dashed, constraint=false'
PARAMETER = 'shape=box, style="rounded,filled", fillcolor="#fff4d6"'
DATA = 'shape=box, style=filled, fillcolor="#e8f0fe"'
OPERATION = "shape=ellipse"


class RenderFailed(Exception):
    """Graphviz's ``dot`` rejected the graph; the message is its error."""


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def shown_layers(depth: int, keep: int = SHOWN_LAYERS) -> list[int]:
    """The layers drawn: all of them, or the first and last ``keep``."""
    if depth <= 2 * keep + 1:
        return list(range(1, depth + 1))
    return [*range(1, keep + 1), *range(depth - keep + 1, depth + 1)]


def dot(network: Network, title: str = "", header: str = "") -> str:
    """The graph as DOT text; ``header`` is a first comment line (``#`` lines are ignored by dot)."""
    if not network.dense:
        return mixed_dot(network, title, header)
    n, depth = network.sizes, network.depth
    layers = shown_layers(depth)
    f = network.f_index()  # node f_k for each step's target, numbered by the network
    top = network.steps()[-1].index  # the loss
    lines = [f"# {header}"] if header else []
    lines += [
        "digraph derive {",
        '  graph [rankdir=LR, fontname="Helvetica", nodesep=0.25, ranksep=0.35, '
        f"labelloc=t, label={_q(title or network_title(network))}];",
        '  node [fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=10];',
        f"  f0 [{DATA}, label={_q(f'f₀ = X{chr(10)}m × {n[0]}')}];",
    ]
    previous = "f0"
    for position, layer in enumerate(layers):
        if position and layer != layers[position - 1] + 1:  # the elided middle
            first, last = layers[position - 1] + 1, layer - 1
            lines.append(
                f"  elided [shape=note, label="
                f"{_q(f'layers {first} … {last}{chr(10)}the same pattern:{chr(10)}z = a W + b, a = act(z)')}];"
            )
            lines.append(f"  {previous} -> elided;")
            back = f"f{f[z(first - 1)]}"
            lines.append(f'  elided -> {back} [label="δ{subscript(first - 1)}", {BACKWARD}];')
            previous = "elided"
        kz, ka, sl = f[z(layer)], f[a(layer)], subscript(layer)
        zn, an = f"f{kz}", f"f{ka}"
        below = "f₀" if layer == 1 else f"a{subscript(layer - 1)}"
        match network.layers[layer - 1]:
            case Dense(activation=activation):
                act = activation.name
            case Residual() | LayerNorm() | BatchNorm() | Dropout():
                raise ValueError("mixed networks are drawn by mixed_dot")
            case _ as other:
                assert_never(other)
        lines += [
            f"  W{layer} [{PARAMETER}, label={_q(f'W{subscript(layer)}{chr(10)}{n[layer - 1]} × {n[layer]}')}];",
            f"  b{layer} [{PARAMETER}, label={_q(f'b{subscript(layer)}{chr(10)}1 × {n[layer]}')}];",
            f"  {zn} [{OPERATION}, label="
            f"{_q(f'f{subscript(kz)} = z{sl}{chr(10)}{below} W{sl} + b{sl}')}];",
            f"  {an} [{OPERATION}, label="
            f"{_q(f'f{subscript(ka)} = a{subscript(layer)}{chr(10)}{act}(z{subscript(layer)})')}];",
            f"  {previous} -> {zn};",
            f"  W{layer} -> {zn};",
            f"  b{layer} -> {zn};",
            f"  {zn} -> {an};",
            f'  {zn} -> W{layer} [label="∂L/∂W{subscript(layer)}", {BACKWARD}];',
            f'  {zn} -> b{layer} [label="∂L/∂b{subscript(layer)}", {BACKWARD}];',
        ]
        if layer > 1:
            back = "elided" if previous == "elided" else f"f{f[z(layer - 1)]}"
            lines.append(f'  {zn} -> {back} [label="δ{subscript(layer - 1)}", {BACKWARD}];')
        previous = an
    last_z = f"f{f[z(depth)]}"
    loss_in = last_z if network.fused else f"f{f[a(depth)]}"
    lines += [
        f"  Y [{DATA}, label={_q(f'Y{chr(10)}m × {n[-1]}')}];",
        f"  f{top} [{OPERATION}, style=bold, label="
        f"{_q(f'f{subscript(top)} = L{chr(10)}{network.loss.name}')}];",
        f"  {loss_in} -> f{top};"
        + ("  # the fused loss reads the logits" if network.fused else ""),
        f"  Y -> f{top};",
        f'  f{top} -> {last_z} [label="δ{subscript(depth)}", {BACKWARD}];',
        "}",
    ]
    return "\n".join(lines) + "\n"


SKIP = 'color="#1f6feb", fontcolor="#1f6feb", penwidth=1.6'
"""A residual block's skip connection: drawn in blue, around its dense branch."""
KIND_FILL = {
    "dense": "#ffffff",
    "residual": "#eef7ee",
    "layer norm": "#f3ecfa",
    "batch norm": "#f3ecfa",
    "dropout": "#f2f2f2",
}
"""Each kind's cluster background, so the layers read apart."""

_NAMES = {
    Kind.HIDDEN: "h",
    Kind.OUTPUT_GRAD: "ā",
    Kind.PROJ: "P",
    Kind.MEAN: "μ",
    Kind.VARIANCE: "v",
    Kind.NORMALIZED: "x̂",
    Kind.NORMALIZED_GRAD: "ĝ",
    Kind.GAMMA: "γ",
    Kind.BETA: "β",
    Kind.DELTA: "δ",
}


def _name(v: Var) -> str:
    if v == X:
        return "X"
    base = _NAMES.get(v.kind, v.kind.value)
    return base if v.layer is None else base + subscript(v.layer)


def _text(e: Expr, network: Network) -> str:
    """A step's formula in plain text for a node label."""
    match e:
        case Var():
            return _name(e)
        case MatMul(left, right):
            return f"{_text(left, network)} {_text(right, network)}"
        case Add(left, right):
            return f"{_text(left, network)} + {_text(right, network)}"
        case Sub(left, right):
            return f"{_text(left, network)} − {_text(right, network)}"
        case Hadamard(left, right):
            return f"{_text(left, network)} ⊙ {_text(right, network)}"
        case Activate(layer, arg):
            return f"{network.activation(layer).name}({_text(arg, network)})"
        case Mean(arg, axis, _):
            return f"mean over the {'batch' if axis is Axis.BATCH else 'features'} of {_text(arg, network)}"
        case Spread(arg):
            return _text(arg, network)
        case Power(arg, exponent):
            return f"{_text(arg, network)}^{exponent}"
        case InvSqrt(arg, _):
            return f"1/√({_text(arg, network)} + ε)"
        case Scale(arg, factor):
            return f"({_text(arg, network)}) · {factor}"
        case _:
            return type(e).__name__


def _reads(e: Expr) -> list[Var]:
    """The variables an expression reads, in order, once each."""
    found: dict[Var, None] = {}
    stack = [e]
    while stack:
        node = stack.pop(0)
        if isinstance(node, Var):
            found[node] = None
        else:
            stack[:0] = list(node.children())
    return list(found)


def mixed_dot(network: Network, title: str = "", header: str = "") -> str:
    """The graph of a network of mixed kinds: one cluster per layer, its steps as nodes, its
    parameters as boxes, skip connections in blue, the named adjoints and parameter
    gradients dashed red."""
    n = network.sizes
    f = network.f_index()
    node = {var: f"f{k}" for var, k in f.items()}
    top = network.steps()[-1].index
    lines = [f"# {header}"] if header else []
    lines += [
        "digraph derive {",
        '  graph [rankdir=LR, fontname="Helvetica", nodesep=0.25, ranksep=0.35, '
        f"labelloc=t, label={_q(title or network_title(network))}];",
        '  node [fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=10];',
        f"  f0 [{DATA}, label={_q(f'f₀ = X{chr(10)}m × {n[0]}')}];",
    ]
    for layer, width in zip(network.layers, n[1:], strict=True):
        kind = kind_name(layer)
        lines.append(f"  subgraph cluster_{layer.index} {{")
        lines.append(
            f'    style="rounded,filled"; fillcolor="{KIND_FILL[kind]}"; color="#999999"; '
            f"label={_q(f'layer {layer.index}: {kind}, width {width}')};"
        )
        for step in layer.steps():
            k = f[step.target]
            lines.append(
                f"    f{k} [{OPERATION}, label="
                f"{_q(f'f{subscript(k)} = {_name(step.target)}{chr(10)}{_text(step.expr, network)}')}];"
            )
        lines.append("  }")
        first = layer.steps()[0].target
        for step in layer.steps():
            target = node[step.target]
            for var in _reads(step.expr):
                if var in layer.parameters():
                    shape = "1 × " + str(width)
                    if var.kind in (Kind.W, Kind.PROJ):
                        shape = f"{n[layer.index - 1]} × {width}"
                    lines.append(
                        f"  {var.name} [{PARAMETER}, label={_q(f'{_name(var)}{chr(10)}{shape}')}];"
                    )
                    lines.append(f"  {var.name} -> {target};")
                    grad = f"∂L/∂{_name(var)}"
                    lines.append(f'  {target} -> {var.name} [label="{grad}", {BACKWARD}];')
                elif isinstance(layer, Dropout) and var == layer.mask:
                    label = f"{_name(var)}{chr(10)}m × {width}, 0/1, rate {layer.rate}"
                    lines.append(f"  {var.name} [{DATA}, label={_q(label)}];")
                    lines.append(f"  {var.name} -> {target};")
                elif var in node:
                    skip = (
                        isinstance(layer, Residual)
                        and var == layer.input
                        and step.target == layer.output
                    )
                    style = f' [label="skip", {SKIP}]' if skip else ""
                    lines.append(f"  {node[var]} -> {target}{style};")
        if layer.index > 1:  # what the layer sends down, through the names it gives
            names = ", ".join(_name(x.adjoint) for x in layer.steps() if x.adjoint is not None)
            label = f"∂L/∂{_name(layer.input)}" + (f" (via {names})" if names else "")
            lines.append(f"  {node[first]} -> {node[layer.input]} [label={_q(label)}, {BACKWARD}];")
    loss_in = node[z(network.depth)] if network.fused else node[network.layers[-1].output]
    lines += [
        f"  Y [{DATA}, label={_q(f'Y{chr(10)}m × {n[-1]}')}];",
        f"  f{top} [{OPERATION}, style=bold, label="
        f"{_q(f'f{subscript(top)} = L{chr(10)}{network.loss.name}')}];",
        f"  {loss_in} -> f{top};",
        f"  Y -> f{top};",
        f'  f{top} -> {loss_in} [label="∂L/∂{"z" if network.fused else "a"}{subscript(network.depth)}", {BACKWARD}];',
        "}",
    ]
    return "\n".join(lines) + "\n"


def network_title(network: Network) -> str:
    acts = ", ".join(dict.fromkeys(a.name for a in network.activations))
    n = network.sizes
    widths = "–".join(map(str, n)) if len(n) <= 8 else f"{n[0]}–{n[1]}–…–{n[-1]}"
    if not network.dense:
        widths = layers_text(network) if len(n) <= 12 else f"{n[0]}, …, {n[-1]}"
    if len(n) > 8:
        widths += f" ({network.depth} layers)"
    return (
        f"{widths} network, {acts}, {network.loss.name} loss: "
        "forward (solid), backward δ and gradients (dashed red)"
    )


def format_of(path: str) -> str:
    """The output format named by a file's extension; ValueError for any other."""
    suffix = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    if suffix not in FORMATS:
        raise ValueError(f"--graph-out {path!r}: the name must end in .dot, .svg, .png or .pdf")
    return suffix


def render(dot_text: str, fmt: str) -> bytes:
    """DOT text rendered by Graphviz's ``dot`` to svg, png or pdf bytes."""
    if fmt == "dot":
        return dot_text.encode("utf-8")
    program = need("dot", f"a .{fmt} graph (a .dot file does not)")
    done = subprocess.run(
        [program, f"-T{fmt}"], input=dot_text.encode("utf-8"), capture_output=True, timeout=120
    )
    if done.returncode != 0:
        raise RenderFailed(f"dot failed: {done.stderr.decode(errors='replace').strip()}")
    if fmt == "pdf":  # the same graph gives the same bytes: fix cairo's clock time, same length
        return _CREATION_DATE.sub(lambda m: b"0" * len(m[0]), done.stdout)
    return done.stdout


_CREATION_DATE = re.compile(rb"(?<=/CreationDate \(D:)[0-9]+")
