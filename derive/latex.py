"""The derivation as LaTeX that reads like a textbook.

Everything printed comes from the model, the derivation and the proof
results; nothing here restates the math by hand.  Matrix-level trees are
printed by ``MatrixLatex``; scalar formulas from the catalog by
``ScalarLatex``, a small subclass of SymPy's printer.
"""

from __future__ import annotations

from collections.abc import Callable

import sympy as sp
from sympy.printing.latex import LatexPrinter

from . import __version__, catalog, model
from .derivation import ONE, Derivation, backward, output_lemma_chain, pull, step_lemma_chain
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
    substitute,
)
from .model import Network
from .proof import Check


class ScalarLatex(LatexPrinter):
    """SymPy's printer with the catalog's symbols given their textbook names."""

    def __init__(self, names: dict[sp.Symbol, str] | None = None) -> None:
        super().__init__()
        self._names = {
            catalog.pred: r"\hat{Y}",
            catalog.target: "Y",
            catalog.batch: "m",
            catalog.outputs: "n_L",
            **(names or {}),
        }

    def _print_Symbol(self, expr: sp.Symbol, style: str = "plain") -> str:
        if expr in self._names:
            return self._names[expr]
        return super()._print_Symbol(expr, style)


def scalar(expr: sp.Expr, names: dict[sp.Symbol, str] | None = None) -> str:
    return ScalarLatex(names).doprint(expr)


INCOMING = Var("G")
"""The gradient arriving from the left when a local chain-rule factor is printed."""


class MatrixLatex:
    """Prints matrix-level expression trees.

    ``index`` renames layer numbers (2 -> "l" for the general identities);
    ``f_names`` prints z_l and a_l as the seed's f_{2l-1} and f_{2l}.
    """

    def __init__(
        self,
        network: Network,
        f_names: bool = False,
        index: Callable[[int], str] = str,
        output_layer: int | None = None,
    ) -> None:
        self.network = network
        self.f_names = f_names
        self.index = index
        self.output_layer = network.depth if output_layer is None else output_layer
        self.uniform = len(set(network.activations)) == 1

    def var(self, v: Var) -> str:
        if v.kind == "a" and v.layer == 0:
            return "f_0" if self.f_names else "X"
        if self.f_names and v.kind in ("z", "a"):
            k = 2 * v.layer - (1 if v.kind == "z" else 0)
            return f"f_{{{k}}}"
        if v.kind == "a" and v.layer == self.output_layer:
            return r"\hat{Y}"
        if v.kind == "delta":
            return rf"\delta_{{{self.index(v.layer)}}}"
        if v.kind == "G":
            return "G"
        if v.layer is None:
            return v.kind
        return f"{v.kind}_{{{self.index(v.layer)}}}"

    def act(self, layer: int) -> str:
        return "a" if self.uniform else f"a_{{{self.index(layer)}}}"

    def __call__(self, e: Expr) -> str:
        if isinstance(e, Var):
            return self.var(e)
        if isinstance(e, MatMul):
            return f"{self._factor(e.left)} {self._factor(e.right)}"
        if isinstance(e, Add):
            return f"{self(e.left)} + {self(e.right)}"
        if isinstance(e, Hadamard):
            return rf"{self._factor(e.left, hadamard=True)} \odot {self._factor(e.right, hadamard=True)}"
        if isinstance(e, Transpose):
            return rf"{self._factor(e.arg)}^{{\top}}"
        if isinstance(e, SumRows):
            return rf"\mathbf{{1}}^{{\top}} {self._factor(e.arg)}"
        if isinstance(e, Activate):
            return rf"{self.act(e.layer)}\left({self(e.arg)}\right)"
        if isinstance(e, ActivateDeriv):
            return rf"{self.act(e.layer)}'\left({self(e.arg)}\right)"
        if isinstance(e, LossGrad):
            loss = self.network.loss
            if loss.gradient_from_output is not None:  # fused: δ_L = Ŷ - Y
                names = {catalog.A: r"\hat{Y}", catalog.target: self(e.target)}
                return scalar(
                    loss.gradient_from_output.subs(catalog.T[catalog.k], catalog.target), names
                )
            names = {catalog.pred: self(e.pred), catalog.target: self(e.target)}
            return scalar(loss.gradient, names)
        if isinstance(e, Loss):
            pred = self(e.pred)
            if self.network.fused:  # the loss reads z_L through its link: L(link(z_L), Y)
                pred = self(Activate(self.network.depth, e.pred))
            return self.network.loss.latex_template.format(pred=pred, target=self(e.target))
        raise TypeError(f"cannot print {type(e).__name__}")

    def _factor(self, e: Expr, hadamard: bool = False) -> str:
        """``e`` as an operand: parenthesised unless it is atomic."""
        text = self(e)
        atomic = isinstance(e, (Var, Activate, ActivateDeriv, Transpose))
        if isinstance(e, LossGrad) and hadamard:
            atomic = True
        if isinstance(e, MatMul) and not hadamard:
            atomic = True
        return text if atomic else rf"\left({text}\right)"


def _align(rows: list[str]) -> str:
    return "\\begin{align*}\n" + " \\\\\n".join(rows) + "\n\\end{align*}\n"


def _f(k: int) -> str:
    return f"f_{{{k}}}"


def _partial(num: str, den: str) -> str:
    return rf"\frac{{\partial {num}}}{{\partial {den}}}"


def composition(network: Network) -> str:
    pr = MatrixLatex(network, f_names=True)
    rows = [r"f_0 &= X"]
    for step in network.steps():
        name = f"L = {_f(step.index)}" if step.target == model.LOSS else _f(step.index)
        rows.append(rf"{name} &= {pr(step.expr)}")
    rows[-2] += r" = \hat{Y}"
    return _align(rows)


def unrolled_prediction(network: Network) -> str:
    definitions = {s.target: s.expr for s in network.steps() if s.target != model.LOSS}
    expr: Expr = model.a(network.depth)
    previous = None
    while previous != expr:
        previous, expr = expr, substitute(expr, definitions)
    pr = MatrixLatex(network, output_layer=-1)
    return _align([rf"\hat{{Y}} &= {pr(expr)}"])


def activations(network: Network) -> str:
    rows = []
    for layer, act in _distinct_activations(network):
        name = "a" if len(set(network.activations)) == 1 else f"a_{{{layer}}}"
        if not act.entrywise:
            rows.append(rf"{name}(z)_k &= {scalar(act.definition)} \quad\text{{over each row}}")
            continue
        rows.append(rf"{name}(z) &= {scalar(act.definition)}")
        rows.append(rf"{name}'(z) &= {scalar(act.derivative)}")
        if act.derivative_from_output is not None:
            rows.append(
                rf"&= {scalar(act.derivative_from_output)} \quad\text{{with }} A = {name}(z)"
            )
    text = _align(rows)
    if any(isinstance(act.definition, sp.Piecewise) for act in network.activations):
        text += (
            "At a kink the derivative is that of the branch holding the point: "
            r"every split is at $z > 0$, so $a'(0)$ is the left derivative (e.g.\ $\operatorname{relu}'(0) = 0$)."
            "\n"
        )
    return text


def fused_loss(network: Network) -> str:
    """The derivation of δ_L = Ŷ - Y for a loss fused with its link."""
    loss, link = network.loss, network.loss.link
    names = {catalog.A: "A"}
    if loss.rowwise:
        entry, arg, unit = loss.entry, catalog.Z[catalog.k], "one row"
    else:
        entry, arg, unit = loss.entry, catalog.z, "one entry"
        names[catalog.pred] = "p"
    rows = [
        rf"\ell &= {scalar(entry, names)} \quad\text{{({unit}, with }} p = {link.latex_name}(z)\text{{)}}",
        rf"&= {scalar(loss.logit_entry)}",
    ]
    steps = loss.gradient_steps
    rows.append(rf"\frac{{\partial \ell}}{{\partial {scalar(arg)}}} &= {scalar(steps[0])}")
    for step in steps[1:]:
        used = rf" \quad\text{{using }} {loss.assumption}" if loss.assumption else ""
        rows.append(rf"&= {scalar(step)}{used}")
    rows.append(
        rf"&= {scalar(loss.gradient_from_output, names)} \quad\text{{with }} A = {link.latex_name}(z)"
    )
    return (
        f"The loss is fused with the output activation ${link.latex_name}$: SymPy differentiates "
        "the loss of the link's output with respect to the logits $z_L$:\n" + _align(rows)
    )


def _distinct_activations(network: Network) -> list[tuple[str, catalog.Activation]]:
    seen: dict[catalog.Activation, list[int]] = {}
    for layer in range(1, network.depth + 1):
        seen.setdefault(network.activation(layer), []).append(layer)
    return [(",".join(map(str, layers)), act) for act, layers in seen.items()]


def chain_products(network: Network, derivation: Derivation) -> str:
    """The seed's step-by-step products, one per parameter, and their values."""
    steps = {s.index: s for s in network.steps()}
    top = 2 * network.depth + 1
    pr_f = MatrixLatex(network, f_names=True)
    pr = MatrixLatex(network)
    out = []
    for param in reversed(network.parameters()):
        first = 2 * param.layer - 1
        ks = list(range(top, first, -1))
        if network.fused:  # the loss reads f_{2L-1} = z_L directly
            ks = [k for k in ks if k != top - 1]
        below = {k: k - 2 if network.fused and k == top else k - 1 for k in ks}
        factors = [_partial(_f(k), _f(below[k])) for k in ks] + [_partial(_f(first), pr.var(param))]
        rows = [rf"{_partial(_f(top), pr.var(param))} &= " + " ".join(factors)]
        values = []
        for k in ks:
            values.append(_local(pr_f, steps[k], below[k], _partial(_f(k), _f(below[k]))))
        values.append(_local(pr_f, steps[first], param, _partial(_f(first), pr.var(param))))
        rows.append(
            r"\text{so } "
            + _partial("L", pr.var(param))
            + " &= "
            + pr(derivation.unrolled(derivation.gradients[param]))
        )
        out.append(
            _align(rows)
            + "where each factor acts on the gradient $G$ arriving from the left:\n"
            + _align(values)
        )
    return "\n".join(out)


def _local(pr: MatrixLatex, step: model.Step, wrt: int | Var, factor: str) -> str:
    """One chain link's factor, shown by what it does to the incoming gradient G."""
    if isinstance(wrt, int):
        wrt = model.X if wrt == 0 else (model.z((wrt + 1) // 2) if wrt % 2 else model.a(wrt // 2))
    into: dict[Var, list[Expr]] = {}
    if step.target == model.LOSS:
        pull(step.expr, ONE, into)
        return rf"{factor} &= {pr(into[wrt][0])}"
    pull(step.expr, INCOMING, into)
    return rf"G\,{factor} &= {pr(into[wrt][0])}"


def general_identities(network: Network) -> str:
    """The recursive identities, printed from the lemmas the proof checks."""
    steps, seeds = output_lemma_chain(network.depth, network.fused)
    base = backward(steps, seeds)[model.z(network.depth)]
    names = {network.depth: "L"}
    pr_base = MatrixLatex(network, index=lambda k: names.get(k, str(k)))
    lemma = backward(*step_lemma_chain(2))
    pr = MatrixLatex(network, index=lambda k: {2: "l", 1: "l-1"}[k], output_layer=-1)
    d = substitute
    rename = {Var("G"): model.delta(2)}
    rows = [
        rf"\delta_L &= {pr_base(base)}",
        rf"\delta_{{l-1}} &= {pr(d(lemma[model.z(1)], rename))}",
        rf"\frac{{\partial L}}{{\partial W_l}} &= {pr(d(lemma[model.W(2)], rename))}",
        rf"\frac{{\partial L}}{{\partial b_l}} &= {pr(d(lemma[model.b(2)], rename))}",
    ]
    return _align(rows)


def layer_identities(derivation: Derivation) -> str:
    network = derivation.network
    pr = MatrixLatex(network)
    rows = []
    for layer in range(network.depth, 0, -1):
        rows.append(rf"\delta_{{{layer}}} &= {pr(derivation.deltas[layer])}")
    for param in reversed(network.parameters()):
        rows.append(rf"{_partial('L', pr.var(param))} &= {pr(derivation.gradients[param])}")
    return _align(rows)


def verification(checks: list[Check]) -> str:
    lines = ["\\begin{itemize}"]
    for c in checks:
        mark = "verified" if c.ok and c.detail != "skipped" else ("skipped" if c.ok else "FAILED")
        text = c.method.replace("_", r"\_").replace("->", r"$\to$")
        name = c.name.replace("_", r"\_")  # leaky_relu, softmax_cross_entropy
        lines.append(rf"\item \textbf{{{name}}} ({mark}): {text}.")
    lines.append("\\end{itemize}")
    return "\n".join(lines) + "\n"


def document_body(derivation: Derivation, checks: list[Check]) -> str:
    network = derivation.network
    n = network.sizes
    shapes = ", ".join(
        rf"W_{{{k}}} \in \mathbb{{R}}^{{{n[k - 1]} \times {n[k]}}}" for k in range(1, len(n))
    )
    parts = [
        "\\section*{The network}\n",
        f"Layer widths ${', '.join(map(str, n))}$ and a batch of $m$ rows: "
        rf"$X \in \mathbb{{R}}^{{m \times {n[0]}}}$, ${shapes}$, each bias $b_l$ is one row added to "
        r"every row of the batch, and $\odot$ is the entrywise product. "
        "The network is a composition of functions:\n",
        composition(network),
        "Unrolled, the prediction is\n",
        unrolled_prediction(network),
        "\\section*{Activation and loss}\n",
        activations(network),
        *(
            [fused_loss(network)]
            if network.fused
            else [
                "The loss's gradient with respect to the prediction is\n",
                _align(
                    [
                        rf"\frac{{\partial L}}{{\partial \hat{{Y}}}} &= {scalar(network.loss.gradient)}"
                    ]
                ),
            ]
        ),
        "\\section*{The chain rule, link by link}\n",
        chain_products(network, derivation),
        "\\section*{The recursive identities}\n",
        r"With $\delta_l = \partial L / \partial z_l$ and $z_l = f_{2l-1}$, $a_l = f_{2l}$, $a_0 = X$:"
        + "\n",
        general_identities(network),
        "For this network:\n",
        layer_identities(derivation),
        "\\section*{What was verified}\n",
        verification(checks),
    ]
    return "".join(parts)


def document(derivation: Derivation, checks: list[Check], command: str) -> str:
    """A standalone document; its first line records ``command``, the command that made it."""
    sizes = ",".join(map(str, derivation.network.sizes))
    return (
        f"% Generated by `{command}` (derive {__version__}). Do not edit: regenerate instead.\n"
        "\\documentclass{article}\n\\usepackage{amsmath,amssymb}\n\\usepackage[margin=2cm]{geometry}\n"
        f"\\title{{Backpropagation for a {sizes} network}}\n\\date{{}}\n"
        "\\begin{document}\n\\maketitle\n" + document_body(derivation, checks) + "\\end{document}\n"
    )
