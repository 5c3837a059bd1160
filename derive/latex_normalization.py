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
    Hadamard,
    InvSqrt,
    Mean,
    Power,
    Scale,
    Spread,
    Sub,
    SumCols,
    SumRows,
    Var,
    rebuild,
)
from .normalization import EPS, Normalization, derive_normalization
from .shapes import shape

NAMES = {
    "mu": r"\mu",
    "c": "c",
    "v": r"\sigma^{2}",
    "s": "s",
    "xhat": r"\hat{x}",
    "gamma": r"\gamma",
    "beta": r"\beta",
    "ghat": r"\hat{G}",
}
"""The layer's variables as a lecture writes them (the layer index is dropped)."""


class NormalizationLatex:
    """Prints the IR of one normalization layer; adjoints print as \\overline{·}."""

    def __init__(self, layer: Normalization) -> None:
        self.layer = layer

    def var(self, v: Var) -> str:
        if v == self.layer.x:
            return "x"
        if v == self.layer.y:
            return "y"
        if v == model.INCOMING:
            return "G"
        if v.kind.startswith("d:"):
            return rf"\overline{{{self.var(Var(v.kind[2:], v.layer))}}}"
        return NAMES.get(v.kind, v.name)

    def __call__(self, e: Expr) -> str:
        if isinstance(e, Var):
            return self.var(e)
        if isinstance(e, Add):
            return f"{self(e.left)} + {self(e.right)}"
        if isinstance(e, Sub):
            right = self(e.right)
            if isinstance(e.right, (Add, Sub)):
                right = rf"\left({right}\right)"
            return f"{self(e.left)} - {right}"
        if isinstance(e, Hadamard):
            return rf"{self._factor(e.left)} \odot {self._factor(e.right)}"
        if isinstance(e, Scale):
            return self._scale(e)
        if isinstance(e, Spread):
            return self(e.arg)
        if isinstance(e, SumRows):
            return rf"\mathbf{{1}}_m^{{\top}} {self._factor(e.arg, power=True)}"
        if isinstance(e, SumCols):
            return rf"{self._factor(e.arg, power=True)} \mathbf{{1}}_n"
        if isinstance(e, Mean):
            summed = SumRows(e.arg) if e.axis is Axis.BATCH else SumCols(e.arg)
            return rf"\frac{{1}}{{{sp.latex(e.count)}}} {self(summed)}"
        if isinstance(e, Power):
            return rf"{self._factor(e.arg, power=True)}^{{{e.exponent}}}"
        if isinstance(e, InvSqrt):
            return rf"\frac{{1}}{{\sqrt{{{self(e.arg)} + {sp.latex(e.eps)}}}}}"
        raise TypeError(f"cannot print {type(e).__name__}")

    def _scale(self, e: Scale) -> str:
        numerator, denominator = sp.fraction(sp.nsimplify(e.factor))
        if numerator.could_extract_minus_sign():
            return "-" + self._scale(Scale(e.arg, -e.factor))
        if e.factor == 1:
            return self(e.arg)
        if denominator != 1 and isinstance(e.arg, (Var, Hadamard, Spread)):
            top = self(e.arg) if numerator == 1 else f"{sp.latex(numerator)} {self._factor(e.arg)}"
            return rf"\frac{{{top}}}{{{sp.latex(denominator)}}}"
        return f"{sp.latex(e.factor)} {self._factor(e.arg, power=True)}"

    def _factor(self, e: Expr, power: bool = False) -> str:
        """``e`` as an operand: of ⊙ (``power=False``), or of a power, a sum or a scalar."""
        while isinstance(e, Spread):
            e = e.arg
        text = self(e)
        atomic = isinstance(e, Var) or (isinstance(e, InvSqrt) and not power)
        if not power:
            atomic |= isinstance(e, (SumRows, SumCols, Hadamard, Power))
            atomic |= isinstance(e, Scale) and text.startswith(r"\frac")
        return text if atomic else rf"\left({text}\right)"


def _align(rows: list[str]) -> str:
    return "\\begin{align*}\n" + " \\\\\n".join(rows) + "\n\\end{align*}\n"


def _shape_text(layer: Normalization, e: Expr) -> str:
    rows, cols = shape(e, layer.shapes())
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
    steps = layer.steps()
    pending: dict[Var, list[Expr]] = {layer.y: [model.INCOMING]}
    result: list[tuple[Var, Expr]] = []
    for step in reversed(steps):
        parts = pending.pop(step.target)
        if step.target != layer.y:
            total = parts[0]
            for part in parts[1:]:
                total = Add(total, part)
            result.append((step.target, total))
        named = (
            model.INCOMING
            if step.target == layer.y
            else Var(f"d:{step.target.kind}", step.target.layer)
        )
        pull(step.expr, named, pending)
    for var in (layer.x, layer.gamma, layer.beta):
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
    ghat = layer.var("ghat")
    uses_ghat = any(ghat.name in repr(s.expr) for s in compact.values())
    backward = [rf"\overline{{{pr(v)}}} &= {pr(s.expr)}" for v, s in compact.items()]
    if uses_ghat:
        backward.insert(0, rf"{pr(ghat)} &= {pr(layer.facts().abbreviations[ghat])}")
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
        r"Notation: $\odot$ is the entrywise product; $\mathbf{1}_m^{\top} M$ sums the rows of "
        r"$M$, $M \mathbf{1}_n$ its columns; a row (column) next to an $m \times n$ matrix is "
        "repeated down the batch (across the features).\n"
        + "".join(equations(layer) for layer in layers)
        + "\\end{document}\n"
    )
