"""The normalizations in textbook form: forward with shapes, the chain rule link by link,
and the compact backward the simplification reaches — all printed from the IR.

Spreads are not printed: a row (or column) next to an m x n matrix is repeated down
the batch (across the features), as the notation paragraph says.  ``document`` wraps
the equations of both kinds in a standalone LaTeX document (``pdf.compile_pdf``).
"""

from __future__ import annotations

import sympy as sp

from . import model
from .derivation import pull
from .expr import (
    Add,
    Axis,
    Expr,
    Kind,
    Var,
    rebuild,
)
from .latex import MatrixLatex
from .layers import EPS
from .normalization import Normalization, derive_normalization, shapes
from .shapes import shape

NAMES = {
    Kind.MEAN: r"\mu",
    Kind.CENTRED: "c",
    Kind.VARIANCE: r"\sigma^{2}",
    Kind.INV_STD: "s",
    Kind.NORMALIZED: r"\hat{x}",
    Kind.GAMMA: r"\gamma",
    Kind.BETA: r"\beta",
    Kind.NORMALIZED_GRAD: r"\hat{G}",
}
"""The layer's variables as a lecture writes them (the layer index is dropped)."""


class NormalizationLatex(MatrixLatex):
    """``latex.MatrixLatex`` for one normalization layer: its variables by their lecture
    names, x and y for its input and output, and the gradient arriving at its link k
    (``Var(INCOMING, k)``, see ``step_adjoints``) as \\overline{target_k}.  It has no
    network: it prints no loss or activation."""

    def __init__(self, layer: Normalization) -> None:
        self.layer = layer
        self.f_names, self.index, self.f_index = False, str, {}
        self.links = {k: step.target for k, step in enumerate(layer.steps(), start=1)}

    def var(self, v: Var) -> str:
        if v == self.layer.input:
            return "x"
        if v == self.layer.output:
            return "y"
        if v == model.INCOMING:
            return "G"
        if v.kind is Kind.INCOMING and v.layer in self.links:
            return rf"\overline{{{self.var(self.links[v.layer])}}}"
        return NAMES.get(v.kind, v.name)


def _align(rows: list[str]) -> str:
    return "\\begin{align*}\n" + " \\\\\n".join(rows) + "\n\\end{align*}\n"


def _shape_text(layer: Normalization, e: Expr) -> str:
    rows, cols = shape(e, shapes(layer))
    return rf"{sp.latex(rows)} \times {sp.latex(cols)}"


def fold(e: Expr, layer: Normalization) -> Expr:
    """``e`` with every step's definition that occurs in it written as the step's name."""
    names = {step.expr: step.target for step in layer.steps()}
    if e in names:
        return names[e]
    return rebuild(e, tuple(fold(child, layer) for child in e.children()))


def step_adjoints(layer: Normalization) -> list[tuple[Var, Expr]]:
    """Each variable's adjoint, link by link, in terms of the named adjoints above it
    (\\overline{u} = ∂L/∂u), by the chain rule's own ``pull``."""
    pending: dict[Var, list[Expr]] = {layer.output: [model.INCOMING]}
    result: list[tuple[Var, Expr]] = []
    for k, step in reversed(list(enumerate(layer.steps(), start=1))):
        parts = pending.pop(step.target)
        if step.target != layer.output:
            total = parts[0]
            for part in parts[1:]:
                total = Add(total, part)
            result.append((step.target, total))
        named = model.INCOMING if step.target == layer.output else Var(Kind.INCOMING, k)
        pull(step.expr, named, pending)
    for var in (layer.input, layer.gamma, layer.beta):
        total = pending[var][0]
        for part in pending[var][1:]:
            total = Add(total, part)
        result.append((var, total))
    return result


def equations(layer: Normalization) -> str:
    """The layer's forward (with shapes), its chain rule link by link, and the compact backward."""
    pr = NormalizationLatex(layer)
    over = (
        r"over the $n$ features of each row (statistics are $m \times 1$ columns)"
        if layer.axis is Axis.FEATURES
        else r"over the $m$ rows of the batch (statistics are $1 \times n$ rows; the variance "
        r"divides by $m$)"
    )
    forward = [
        rf"{pr(step.target)} &= {pr(step.expr)} && {_shape_text(layer, step.target)}"
        for step in layer.steps()
    ]
    derivation = derive_normalization(layer)
    links = [rf"\overline{{{pr(v)}}} &= {pr(fold(e, layer))}" for v, e in step_adjoints(layer)]
    compact = derivation.compact
    ghat = layer.var(Kind.NORMALIZED_GRAD)
    uses_ghat = any(ghat.name in repr(s.expr) for s in compact.values())
    backward = [rf"\overline{{{pr(v)}}} &= {pr(s.expr)}" for v, s in compact.items()]
    if uses_ghat:
        backward.insert(0, rf"{pr(ghat)} &= {pr(derivation.ghat)}")
    rules = sorted({rule.replace("_", " ") for s in compact.values() for rule in s.rules})
    name = "Layer normalization" if layer.axis is Axis.FEATURES else "Batch normalization"
    return (
        f"\\subsection*{{{name}}}\n"
        f"For an $m \\times n$ input $x$, learned rows $\\gamma$, $\\beta$ ($1 \\times n$) and "
        f"${sp.latex(EPS)} > 0$, normalized {over}:\n"
        + _align(forward)
        + r"With $\overline{u} = \partial \mathcal{L} / \partial u$ and any upstream gradient "
        r"$G = \overline{y}$, the chain rule gives, link by link:"
        + "\n"
        + _align(links)
        + "The simplification (rules: "
        + ", ".join(rules)
        + ") turns these into\n"
        + _align(backward)
        + rf"A constant {'row' if layer.axis is Axis.FEATURES else 'column'} has $\sigma^2 = 0$ "
        rf"and $s = 1/\sqrt{{{sp.latex(EPS)}}}$: the code must keep ${sp.latex(EPS)}$ "
        "inside the root.\n"
    )


def document(layers: list[Normalization]) -> str:
    """A standalone document with the equations of ``layers``."""
    return (
        "\\documentclass{article}\n\\usepackage{amsmath,amssymb}\n"
        "\\usepackage[margin=2cm]{geometry}\n\\allowdisplaybreaks\n"
        "\\begin{document}\n"
        r"Notation: $\odot$ is the entrywise product; $\mathbf{1}^{\top} M$ sums the rows of "
        r"$M$ and $M \mathbf{1}$ its columns ($\mathbf{1}$ a column of ones); a row (column) "
        r"next to an $m \times n$ matrix is "
        "repeated down the batch (across the features).\n"
        + "".join(equations(layer) for layer in layers)
        + "\\end{document}\n"
    )
