"""The derivation as LaTeX that reads like a textbook, at any depth.

Every identity printed comes from the model, the derivation and the proof
results; the notation table and the sentences of "What was verified" are
the only prose.  Matrix-level trees are printed by ``MatrixLatex``; scalar
formulas from the catalog by ``ScalarLatex``, a small subclass of SymPy's
printer.

Notation: the loss is \\mathcal{L}, the depth L, activation functions
\\sigma_l (or \\sigma when every layer has the same one), layer outputs a_l.
The document's length does not grow with the square of the depth: the
seed's chain products are written out for the last two layers only, the
recursive pattern once, and long lists are elided.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import sympy as sp
from sympy.printing.latex import LatexPrinter

from . import catalog, model, penalty
from .check import Check, Status
from .derivation import ONE, Derivation, backward, output_lemma_chain, pull, step_lemma_chain
from .expr import (
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
    assert_never,
    substitute,
)
from .layers import Dense, Residual
from .model import Network
from .version import __version__

if TYPE_CHECKING:  # seedcheck is imported when its section is asked for
    from .seedcheck import Verdict

LOSS = r"\mathcal{L}"
OBJECTIVE = r"\mathcal{J}"
"""With ``--l2``: the loss plus the penalty, 𝓛 + λ/2 Σ_l ‖W_l‖_F²."""
"""The loss's symbol; L is the depth."""

YHAT = r"\hat{Y}"

FULL_DEPTH = 4
"""Networks up to this depth get every layer listed; deeper ones are elided."""

FULL_UNROLL_DEPTH = 3
"""The unrolled prediction is written out in full up to this depth."""

TALL = (r"\frac", r"\sum", r"\prod", r"\begin", r"\left(")
"""Constructs taller than a line of text: only parentheses around them grow."""


def sized_parens(text: str) -> str:
    r"""Plain ( ) around flat content, \left( \right) only around tall content.

    SymPy and the matrix printer emit \left( \right) everywhere, which makes
    2(\hat{Y} - Y) get larger parentheses than 2(f_4 - Y); one rule for the
    whole document keeps sizes matched.
    """
    out: list[str] = []
    opens: list[int] = []
    pos = 0
    for match in re.finditer(r"\\left\(|\\right\)", text):
        out.append(text[pos : match.start()])
        pos = match.end()
        if match.group() == r"\left(":
            opens.append(len(out))
            out.append(r"\left(")
            continue
        start = opens.pop()
        tall = any(token in "".join(out[start + 1 :]) for token in TALL)
        out[start] = r"\left(" if tall else "("
        out.append(r"\right)" if tall else ")")
    out.append(text[pos:])
    if opens:
        raise ValueError("unbalanced \\left( in generated LaTeX")
    return "".join(out)


def _short_decimal(value: sp.Rational) -> bool:
    """True for p/q with a finite decimal expansion and q > 2 (0.2, 0.044715; not 1/2)."""
    q = int(value.q)
    if q <= 2:
        return False
    for prime in (2, 5):
        while q % prime == 0:
            q //= prime
    return q == 1


def readable(expr: sp.Expr) -> sp.Expr:
    """Rationals with a short decimal form as decimals: 0.044715 z, not 8943 z/200000."""
    return expr.replace(
        lambda e: isinstance(e, sp.Rational) and not e.is_Integer and _short_decimal(e),
        lambda e: sp.Float(catalog.decimal(e), 15),
    )


class ScalarLatex(LatexPrinter):  # type: ignore[misc]  # SymPy is untyped
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
        return str(super()._print_Symbol(expr, style))

    def _print_Float(self, expr: sp.Float) -> str:
        return catalog.decimal(sp.Rational(str(expr)))


def scalar(expr: sp.Expr, names: dict[sp.Symbol, str] | None = None) -> str:
    return str(ScalarLatex(names).doprint(readable(expr)))


U = sp.Symbol("u", real=True)
"""An abbreviation for a long argument of tanh or exp (gelu's)."""


def abbreviate(*exprs: sp.Expr) -> tuple[list[sp.Expr], sp.Expr | None]:
    """Replace a long inner argument shared by ``exprs`` by u, if there is one."""
    candidates = [
        f.args[0] for e in exprs for f in e.atoms(sp.tanh, sp.exp) if sp.count_ops(f.args[0]) > 3
    ]
    if not candidates:
        return list(exprs), None
    inner = max(candidates, key=sp.count_ops)
    return [e.subs(inner, U) for e in exprs], inner


KIND_LATEX = {
    Kind.HIDDEN: "h",
    Kind.OUTPUT_GRAD: r"\bar{a}",
    Kind.PROJ: "P",
    Kind.MASK: "M",
    Kind.GAMMA: r"\gamma",
    Kind.BETA: r"\beta",
    Kind.MEAN: r"\mu",
    Kind.CENTRED: "c",
    Kind.VARIANCE: "v",
    Kind.INV_STD: "s",
    Kind.NORMALIZED: r"\hat{x}",
    Kind.NORMALIZED_GRAD: r"\hat{g}",
}
"""How the other layer kinds' variables print (with their layer as a subscript)."""


class MatrixLatex:
    """Prints matrix-level expression trees.

    ``index`` renames layer numbers (2 -> "l" for the general identities);
    ``f_names`` prints each step's target as the seed's f_k (``Network.f_index``).
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
        self.f_index = network.f_index() if f_names else {}

    def var(self, v: Var) -> str:
        if v == model.X:
            return "f_{0}" if self.f_names else "X"
        if self.f_names and v in self.f_index:
            return f"f_{{{self.f_index[v]}}}"
        if v == model.a(self.output_layer):
            return r"\hat{Y}"
        if v.kind is Kind.LOSS:
            return LOSS
        if v.layer is None:
            return v.name
        if v.kind is Kind.DELTA:
            return rf"\delta_{{{self.index(v.layer)}}}"
        if v.kind in KIND_LATEX:
            return f"{KIND_LATEX[v.kind]}_{{{self.index(v.layer)}}}"
        return f"{v.kind.value}_{{{self.index(v.layer)}}}"

    def act(self, layer: int) -> str:
        return r"\sigma" if self.uniform else rf"\sigma_{{{self.index(layer)}}}"

    def __call__(self, e: Expr) -> str:
        match e:
            case Var():
                return self.var(e)
            case MatMul(left, right):
                return f"{self._factor(left)} {self._factor(right)}"
            case Add(left, right):
                return f"{self(left)} + {self(right)}"
            case Hadamard(left, right):
                return rf"{self._factor(left, hadamard=True)} \odot {self._factor(right, hadamard=True)}"
            case Transpose(arg):
                return rf"{self._factor(arg)}^{{\top}}"
            case SumRows(arg):
                return rf"\mathbf{{1}}^{{\top}} {self._factor(arg)}"
            case Activate(layer, arg):
                return rf"{self.act(layer)}\left({self(arg)}\right)"
            case ActivateDeriv(layer, arg):
                return rf"{self.act(layer)}'\left({self(arg)}\right)"
            case LossGrad(pred, target):
                loss = self.network.loss
                if loss.gradient_from_output is not None:  # fused: δ_L = Ŷ - Y
                    names = {catalog.A: r"\hat{Y}", catalog.target: self(target)}
                    return scalar(
                        loss.gradient_from_output.subs(catalog.T[catalog.k], catalog.target), names
                    )
                names = {catalog.pred: self(pred), catalog.target: self(target)}
                return scalar(loss.gradient, names)
            case Loss(pred, target):
                shown = self(pred)
                if self.network.fused:  # the loss reads z_L through its link: L(link(z_L), Y)
                    shown = self(Activate(self.network.depth, pred))
                return loss_formula(self.network, shown, self(target))
            case PenaltyGrad(arg):
                return rf"\lambda {self._factor(arg)}"
            case Penalty(arg):
                return rf"\frac{{\lambda}}{{2}} \lVert {self(arg)} \rVert_F^2"
            case Sub(left, right):
                shown = self(right)
                return f"{self(left)} - " + (
                    rf"\left({shown}\right)" if isinstance(right, Add | Sub) else shown
                )
            case Scale(arg, factor):
                return self._scale(arg, factor)
            case SumCols(arg):
                return rf"{self._factor(arg)} \mathbf{{1}}"
            case Mean(arg, axis, count):
                summed = SumRows(arg) if axis is Axis.BATCH else SumCols(arg)
                return rf"\frac{{1}}{{{sp.latex(count)}}} {self(summed)}"
            case Spread(arg):  # a row (column) next to a matrix is repeated down (across) it
                return self(arg)
            case Power(arg, exponent):
                return rf"{self._factor(arg)}^{{{exponent}}}"
            case InvSqrt(arg, eps):
                return rf"\frac{{1}}{{\sqrt{{{self(arg)} + {sp.latex(eps)}}}}}"
            case _:
                assert_never(e)

    def _scale(self, arg: Expr, factor: sp.Expr) -> str:
        """k·M as -M, \frac{M}{m} or k M."""
        if factor.could_extract_minus_sign():
            return "-" + self._scale(arg, -factor)
        if factor == 1:
            return self(arg)
        numerator, denominator = sp.fraction(factor)
        if numerator == 1 and isinstance(arg, Var | Hadamard | Spread):
            return rf"\frac{{{self(arg)}}}{{{sp.latex(denominator)}}}"
        return f"{sp.latex(factor)} {self._factor(arg)}"

    def _factor(self, e: Expr, hadamard: bool = False) -> str:
        """``e`` as an operand: parenthesised unless it is atomic."""
        text = self(e)
        match e:
            case Var() | Activate() | ActivateDeriv() | Transpose() | InvSqrt():
                atomic = True
            case Spread(arg):
                return self._factor(arg, hadamard)
            case SumRows() | SumCols() | Power():
                atomic = hadamard
            case Scale():
                atomic = hadamard and text.startswith(r"\frac")
            case LossGrad():
                atomic = hadamard
            case MatMul():
                atomic = not hadamard
            case _:
                atomic = False
        return text if atomic else rf"\left({text}\right)"


def loss_formula(network: Network, pred: str, target: str) -> str:
    r"""The loss of ``pred`` against ``target``; the norm is the Frobenius norm, \lVert\cdot\rVert_F."""
    text = network.loss.latex_template.format(pred=pred, target=target)
    return text.replace(r"\rVert^2", r"\rVert_F^2")


def _align(rows: list[str]) -> str:
    return "\\begin{align*}\n" + " \\\\\n".join(rows) + "\n\\end{align*}\n"


def _f(k: int | str) -> str:
    return f"f_{{{k}}}"


def _partial(num: str, den: str) -> str:
    return rf"\frac{{\partial {num}}}{{\partial {den}}}"


def _layer_list(layers: list[int]) -> str:
    """1, 2, 3, 5 -> "1--3 and 5", in text mode (breakable)."""
    runs: list[list[int]] = []
    for layer in layers:
        if runs and runs[-1][-1] == layer - 1:
            runs[-1].append(layer)
        else:
            runs.append([layer])
    parts = [f"{r[0]}" if len(r) == 1 else f"{r[0]}--{r[-1]}" for r in runs]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def widths_text(sizes: tuple[int, ...]) -> str:
    """n_0 = 20, n_1 = 50, n_2 = 10, with runs of equal widths as n_1 = ... = n_{199} = 50."""
    groups: list[tuple[int, int, int]] = []  # first index, last index, width
    for index, width in enumerate(sizes):
        if groups and groups[-1][2] == width and index == groups[-1][1] + 1:
            groups[-1] = (groups[-1][0], index, width)
        else:
            groups.append((index, index, width))
    parts = []
    for first, last, width in groups:
        if first == last:
            parts.append(f"$n_{{{first}}} = {width}$")
        elif last == first + 1:
            parts.append(f"$n_{{{first}}} = n_{{{last}}} = {width}$")
        else:
            parts.append(rf"$n_{{{first}}} = \dots = n_{{{last}}} = {width}$")
    return ", ".join(parts)


def title(network: Network) -> str:
    n = network.sizes
    if network.depth <= 8:
        return "Backpropagation for a " + "--".join(map(str, n)) + " network"
    return f"Backpropagation for a {network.depth}-layer network ({n[0]} inputs, {n[-1]} outputs)"


# --- the network and its notation -------------------------------------------------


def function_name(act: catalog.Activation) -> str:
    r"""The activation's LaTeX name; the sigmoid is spelled out, as \sigma names every activation."""
    return r"\operatorname{sigmoid}" if act.latex_name == r"\sigma" else act.latex_name


def _generic_printer(network: Network, names: dict[int, str]) -> MatrixLatex:
    return MatrixLatex(network, index=lambda k: names[k], output_layer=-1)


def notation(network: Network) -> str:
    """Every symbol, with its shape, before any formula uses it."""
    pr = _generic_printer(network, {2: "l", 1: "l-1"})
    layer_step = step_lemma_chain(2)[0][1]  # z_l = a_{l-1} W_l + b_l
    act = r"\sigma" if pr.uniform else r"\sigma_l"
    rows = [
        ("$X$", r"$m \times n_0$", "the input batch, one example per row; also written $a_0$"),
        ("$Y$", r"$m \times n_L$", "the targets, one row per example"),
        ("$W_l$", r"$n_{l-1} \times n_l$", "the weights of layer $l$"),
        (
            "$b_l$",
            r"$1 \times n_l$",
            "the bias of layer $l$, one row added to every row of the batch",
        ),
        (
            "$z_l$",
            r"$m \times n_l$",
            f"the pre-activation, $z_l = {pr(layer_step.expr)}$",
        ),
        (
            f"${act}$",
            r"$\mathbb{R} \to \mathbb{R}$",
            "the activation function"
            + ("" if pr.uniform else " of layer $l$")
            + ", applied to each entry"
            + (
                " (softmax: to each row)"
                if any(not a.entrywise for a in network.activations)
                else ""
            ),
        ),
        (
            "$a_l$",
            r"$m \times n_l$",
            f"the output of layer $l$, $a_l = {pr(Activate(2, model.z(2)))}$",
        ),
        (r"$\hat{Y}$", r"$m \times n_L$", "the prediction, $\\hat{Y} = a_L$"),
        (f"${LOSS}$", "scalar", "the loss, a number"),
        (
            r"$\delta_l$",
            r"$m \times n_l$",
            rf"$\partial {LOSS} / \partial z_l$, the gradient of the loss with respect to $z_l$",
        ),
        (
            r"$\mathbf{1}$",
            r"$m \times 1$",
            r"a column of ones: $\mathbf{1}^{\top} M$ sums the rows of $M$",
        ),
        (
            "$G$",
            "that of $f_k$",
            rf"$\partial {LOSS} / \partial f_k$, the gradient arriving at a chain-rule factor "
            r"$\partial f_k / \partial \cdot$ (the $f_k$ are defined just below)",
        ),
    ]
    table = (
        "\\begin{center}\n\\begin{tabular}{@{}l l p{0.62\\textwidth}@{}}\n\\toprule\n"
        "symbol & shape & meaning \\\\\n\\midrule\n"
        + "".join(f"{a} & {b} & {c} \\\\\n" for a, b, c in rows)
        + "\\bottomrule\n\\end{tabular}\n\\end{center}\n"
    )
    n = network.sizes
    return (
        f"The network has $L = {network.depth}$ "
        + ("layer" if network.depth == 1 else "layers")
        + " of weights, layer widths "
        + widths_text(n)
        + ", and sees a batch of $m$ examples at a time. "
        r"Matrices act on rows: $M^{\top}$ is the transpose of $M$, $M N$ the matrix product, "
        r"and $M \odot N$ the entrywise product of two matrices of the same shape. "
        f"For $l = 1, \\dots, L$:\n{table}"
    )


def composition(network: Network) -> str:
    """The seed's f_0 ... f_{2L+1}, with the middle layers elided when deep."""
    pr = MatrixLatex(network, f_names=True)
    rows = [r"f_{0} &= X"]
    elide = network.depth > FULL_DEPTH
    for step in network.steps():
        if elide and step.layer is not None and 2 < step.layer < network.depth - 1:
            if rows[-1] != r"&\;\;\vdots":
                rows.append(r"&\;\;\vdots")
            continue
        name = rf"{LOSS} = {_f(step.index)}" if step.target == model.LOSS else _f(step.index)
        rows.append(rf"{name} &= {pr(step.expr)}")
    rows[-2] += r" = \hat{Y}"
    return _align(rows)


def unrolled_prediction(network: Network) -> str:
    """Ŷ as one nested formula; past a few layers, the middle is elided."""
    depth = network.depth
    definitions = {s.target: s.expr for s in network.steps() if s.target != model.LOSS}
    pr = MatrixLatex(network, output_layer=-1)
    if depth <= FULL_UNROLL_DEPTH:
        expr: Expr = model.a(depth)
        previous = None
        while previous != expr:
            previous, expr = expr, substitute(expr, definitions)
        return _align([rf"\hat{{Y}} &= {pr(expr)}"])
    top: Expr = model.a(depth)
    for layer in (depth, depth - 1):
        top = substitute(top, {model.a(layer): definitions[model.a(layer)]})
        top = substitute(top, {model.z(layer): definitions[model.z(layer)]})
    bottom = substitute(definitions[model.a(1)], definitions)
    hole = pr(model.a(depth - 2))
    text = pr(top).replace(hole, rf"\cdots {pr(bottom)} \cdots", 1)
    return (
        _align([rf"\hat{{Y}} &= {text}"])
        + f"where the dots stand for layers $2$ to ${depth - 2}$, each of the same form.\n"
    )


# --- activation and loss -------------------------------------------------------------


def _distinct_activations(network: Network) -> list[tuple[list[int], catalog.Activation]]:
    seen: dict[catalog.Activation, list[int]] = {}
    for layer in network.layers:
        if isinstance(layer, Dense | Residual):  # the kinds with an activation
            seen.setdefault(layer.activation, []).append(layer.index)
    return [(layers, act) for act, layers in seen.items()]


def activations(network: Network) -> str:
    uniform = len(set(network.activations)) == 1
    text = ""
    for layers, act in _distinct_activations(network):
        name = r"\sigma" if uniform else r"\sigma_l"
        if not uniform and len(layers) == 1:
            name = rf"\sigma_{{{layers[0]}}}"
        if not uniform:
            which = "Layer" if len(layers) == 1 else "Layers"
            verb = "uses" if len(layers) == 1 else "use"
            text += f"{which} {_layer_list(layers)} {verb} ${function_name(act)}$:\n"
        if not act.entrywise:
            text += _align(
                [rf"{name}(z)_k &= {scalar(act.definition)} \quad\text{{for each row }} z"]
            )
            continue
        rewrite = act.derivative_from_output
        (definition, derivative, *rest), inner = abbreviate(
            act.definition, act.derivative, *([] if rewrite is None else [rewrite])
        )
        rows = [rf"{name}(z) &= {scalar(definition)}", rf"{name}'(z) &= {scalar(derivative)}"]
        if rest and scalar(rest[0]) != scalar(derivative):  # no "= 1 = 1"
            rows.append(rf"&= {scalar(rest[0])} \quad\text{{with }} A = {name}(z)")
        if inner is not None:
            rows.append(rf"\text{{where }} u &= {scalar(inner)}")
        text += _align(rows)
    if any(isinstance(act.definition, sp.Piecewise) for act in network.activations):
        text += (
            "At a kink the derivative is that of the branch holding the point: every split "
            r"is at $z > 0$, so $\sigma'(0)$ is the left derivative "
            r"(e.g.\ $\operatorname{relu}'(0) = 0$)."
            "\n"
        )
    return text


def fused_loss(network: Network) -> str:
    """The derivation of δ_L = Ŷ - Y for a loss fused with its link."""
    loss, link = network.loss, network.loss.link
    assert link is not None
    if loss.rowwise:
        arg, unit = catalog.Z[catalog.k], "one row"
        output = {catalog.A: "A_{k}"}
        with_a = rf"A_k = {function_name(link)}(z)_k"
    else:
        arg, unit = catalog.z, "one entry"
        output = {catalog.A: "A", catalog.pred: "p"}
        with_a = rf"A = {function_name(link)}(z)"
    names = {catalog.pred: "p"}
    rows = [
        rf"\ell &= {scalar(loss.entry, names)} \quad\text{{({unit}, with }} p = {function_name(link)}(z)\text{{)}}",
        rf"&= {scalar(loss.logit_entry)}",
    ]
    steps = loss.gradient_steps
    rows.append(rf"\frac{{\partial \ell}}{{\partial {scalar(arg)}}} &= {scalar(steps[0])}")
    for step in steps[1:]:
        used = rf" \quad\text{{using }} {loss.assumption}" if loss.assumption else ""
        rows.append(rf"&= {scalar(step)}{used}")
    assert loss.gradient_from_output is not None
    rows.append(rf"&= {scalar(loss.gradient_from_output, output)} \quad\text{{with }} {with_a}")
    return (
        f"The loss is fused with the output activation ${function_name(link)}$: "
        rf"$\ell$ is the loss of {unit} of $z_L$, and SymPy differentiates the loss of the "
        "link's output with respect to the logits $z_L$:\n"
        + _align(rows)
        + r"so $\delta_L = \partial \mathcal{L} / \partial z_L = \hat{Y} - Y$."
        + "\n"
    )


def loss_section(network: Network) -> str:
    pr = MatrixLatex(network)
    loss = loss_formula(network, r"\hat{Y}", "Y")
    text = f"The loss is ${LOSS} = {loss}$"
    if r"\rVert_F" in loss:
        text += r", where $\lVert M \rVert_F^2$ is the sum of the squares of the entries of $M$"
    text += ".\n"
    if network.fused:
        return text + fused_loss(network)
    gradient = pr(LossGrad(model.a(network.depth), model.Y))
    return (
        text
        + "SymPy differentiates it entry by entry; its gradient with respect to the prediction is\n"
        + _align([rf"{_partial(LOSS, YHAT)} &= {gradient}"])
    )


# --- the chain rule ------------------------------------------------------------------


def _local(pr: MatrixLatex, step: model.Step, wrt: Var, factor: str) -> str:
    """One chain link's factor, shown by what it does to the incoming gradient G."""
    into: dict[Var, list[Expr]] = {}
    if step.target == model.LOSS:
        pull(step.expr, ONE, into)
        return rf"{factor} &= {pr(into[wrt][0])}"
    pull(step.expr, model.INCOMING, into)
    return rf"G\,{factor} &= {pr(into[wrt][0])}"


def shown_layers(depth: int) -> list[int]:
    """The layers whose chain products are written out: the last two."""
    return [layer for layer in (depth, depth - 1) if layer >= 1]


def chain_products(network: Network, derivation: Derivation) -> str:
    """The seed's step-by-step products for the last layers, each factor's action once."""
    chain = network.steps()
    steps = {s.index: s for s in chain}
    top = chain[-1].index  # the loss
    f_index = network.f_index()
    factor_var = {k: v for v, k in f_index.items()}
    pr_f = MatrixLatex(network, f_names=True)
    pr = MatrixLatex(network)
    groups: list[str] = []  # one group of rows per layer, a little space between groups
    values: dict[str, str] = {}
    for layer in shown_layers(network.depth):
        products = []
        for param in (model.b(layer), model.W(layer)):
            first = f_index[model.z(layer)]  # the step that reads the parameter
            ks = list(range(top, first, -1))
            if network.fused:  # the loss reads f_{2L-1} = z_L directly
                ks = [k for k in ks if k != top - 1]
            below = {k: k - 2 if network.fused and k == top else k - 1 for k in ks}
            factors = [_partial(_f(k), _f(below[k])) for k in ks]
            factors.append(_partial(_f(first), pr.var(param)))
            for k in ks:
                factor = _partial(_f(k), _f(below[k]))
                values.setdefault(factor, _local(pr_f, steps[k], factor_var[below[k]], factor))
            factor = _partial(_f(first), pr.var(param))
            values.setdefault(factor, _local(pr_f, steps[first], param, factor))
            products.append(rf"{_partial(_f(top), pr.var(param))} &= " + " ".join(factors))
            gradient = derivation.gradients[param]
            if isinstance(gradient, Add) and isinstance(gradient.right, PenaltyGrad):
                gradient = gradient.left  # the loss's part; the penalty's has its own section
            products.append(rf"&= {pr(derivation.unrolled(gradient))}")
        groups.append(" \\\\\n".join(products))
    layers = shown_layers(network.depth)
    which = (
        f"its only layer, ${layers[0]}$"
        if len(layers) == 1
        else f"the last layers, ${layers[0]}$ and ${layers[1]}$"
    )
    return (
        f"Write the loss as $f_{{{top}}} = {LOSS}$. By the chain rule the gradient with respect "
        "to a parameter is the product of the local derivatives from the loss down to that "
        f"parameter. For {which}:\n"
        + "\\begin{align*}\n"
        + " \\\\[6pt]\n".join(groups)
        + "\n\\end{align*}\n"
        + "Read from the left, the first factor is the loss's gradient and each further "
        "factor acts on the gradient $G$ it receives from the left:\n"
        + _align(list(values.values()))
    )


def _shape(e: Expr, names: dict[int, str], g: tuple[str, str]) -> tuple[str, str]:
    """The shape of ``e`` in the generic layer's symbols (G has shape ``g``)."""
    match e:
        case Var(Kind.INCOMING):
            return g
        case Var(Kind.W, int(layer)):
            return f"n_{{{names[layer - 1]}}}", f"n_{{{names[layer]}}}"
        case Var(Kind.B, int(layer)):
            return "1", f"n_{{{names[layer]}}}"
        case Var(Kind.A | Kind.Z | Kind.DELTA, int(layer)):
            return "m", f"n_{{{names[layer]}}}"
        case Var():
            raise ValueError(f"{e.name} is not a variable of the generic layer")
        case MatMul(left, right):
            return _shape(left, names, g)[0], _shape(right, names, g)[1]
        case Transpose(arg):
            rows, cols = _shape(arg, names, g)
            return cols, rows
        case SumRows(arg):
            return "1", _shape(arg, names, g)[1]
        case Add(left, _) | Hadamard(left, _):
            return _shape(left, names, g)
        case Activate(_, arg) | ActivateDeriv(_, arg) | PenaltyGrad(arg):
            return _shape(arg, names, g)
        case Loss() | LossGrad() | Penalty():
            raise ValueError(f"{type(e).__name__} is not a factor of the generic layer")
        case Sub() | Scale() | SumCols() | Mean() | Spread() | Power() | InvSqrt():
            raise ValueError(f"{type(e).__name__} is not a factor of the generic dense layer")
        case _:
            assert_never(e)


def factor_table(network: Network) -> str:
    """What each kind of factor does to G, with shapes, from the chain rule's own rules."""
    names = {2: "l", 1: "l-1", 0: "l-2"}
    pr = _generic_printer(network, names)
    (activate, linear), _ = step_lemma_chain(2)
    kinds = [
        (_partial("f_{2l-1}", "W_l"), linear, model.W(2)),
        (_partial("f_{2l-1}", "b_l"), linear, model.b(2)),
        (_partial("f_{2l-1}", "f_{2l-2}"), linear, model.a(1)),
        (_partial("f_{2l-2}", "f_{2l-3}"), activate, model.z(1)),
    ]
    top = "f_{2L-1}" if network.fused else "f_{2L}"
    first = r"\hat{Y} - Y" if network.fused else _partial(LOSS, r"\hat{Y}")
    rows = [
        f"$\\displaystyle {_partial('f_{2L+1}', top)}$ & $\\displaystyle = {first}$, "
        f"the first $G$ & & $m \\times n_L$ \\\\\n"
    ]
    for factor, step, var in kinds:
        into: dict[Var, list[Expr]] = {}
        pull(step.expr, model.INCOMING, into)
        g = _shape(step.target, names, ("", ""))
        result = _shape(into[var][0], names, g)
        rows.append(
            f"$\\displaystyle G\\,{factor}$ & $= {pr(into[var][0])}$ & "
            f"${g[0]} \\times {g[1]}$ & ${result[0]} \\times {result[1]}$ \\\\\n"
        )
    return (
        "\\par\\noindent\\begin{minipage}{\\linewidth}\n"
        "Each kind of factor, as an operation on the incoming gradient $G$, for any layer $l$:\n"
        "\\begin{center}\n\\renewcommand{\\arraystretch}{2.4}\n"
        "\\begin{tabular}{@{}l l l l@{}}\n\\toprule\n"
        r"factor & value & shape of $G$ & shape of the value \\"
        + "\n\\midrule\n"
        + "".join(rows)
        + "\\bottomrule\n\\end{tabular}\n\\end{center}\n\\end{minipage}\n"
    )


def pattern(network: Network) -> str:
    """The recursive pattern of the products, stated once for every layer."""
    first = rf"\frac{{\partial f_{{2L+1}}}}{{\partial f_{{{'2L-1' if network.fused else '2L'}}}}}"
    prefix = first + ("" if network.fused else r" \frac{\partial f_{2L}}{\partial f_{2L-1}}")
    rows = [
        rf"\delta_L &= {prefix}",
        r"\delta_l &= \frac{\partial f_{2L+1}}{\partial f_{2L}} \cdots "
        r"\frac{\partial f_{2l}}{\partial f_{2l-1}}",
    ]
    if network.fused:
        rows.pop()
        rows.append(
            rf"\delta_l &= {first} \cdots \frac{{\partial f_{{2l}}}}{{\partial f_{{2l-1}}}}"
        )
    rows += [
        rf"{_partial(LOSS, 'W_l')} &= \delta_l \frac{{\partial f_{{2l-1}}}}{{\partial W_l}}, \qquad "
        rf"{_partial(LOSS, 'b_l')} = \delta_l \frac{{\partial f_{{2l-1}}}}{{\partial b_l}}",
    ]
    if network.depth >= 2:
        rows.append(
            r"\delta_{l-1} &= \delta_l \frac{\partial f_{2l-1}}{\partial f_{2l-2}} "
            r"\frac{\partial f_{2l-2}}{\partial f_{2l-3}}"
        )
    return (
        "Every product shares its left part with the one above it: the factors from the loss "
        rf"down to $z_l = f_{{2l-1}}$ multiply to $\delta_l = \partial {LOSS} / \partial z_l$, "
        "so the whole list of factors is never needed again:\n" + _align(rows)
    )


def general_identities(network: Network) -> str:
    """The recursive identities, printed from the lemmas the proof checks."""
    steps, seeds = output_lemma_chain(network.depth, network.fused)
    base = backward(steps, seeds)[model.z(network.depth)]
    names = {network.depth: "L"}
    pr_base = MatrixLatex(network, index=lambda k: names.get(k, str(k)))
    lemma = backward(*step_lemma_chain(2))
    pr = _generic_printer(network, {2: "l", 1: "l-1"})
    rename = {model.INCOMING: model.delta(2)}
    rows = [rf"\delta_L &= {pr_base(base)}"]
    if network.depth >= 2:
        rows.append(
            rf"\delta_{{l-1}} &= {pr(substitute(lemma[model.z(1)], rename))}"
            r" \qquad (l = L, \dots, 2)"
        )
    rows += [
        rf"{_partial(LOSS, 'W_l')} &= {pr(substitute(lemma[model.W(2)], rename))}",
        rf"{_partial(LOSS, 'b_l')} &= {pr(substitute(lemma[model.b(2)], rename))}",
    ]
    return _align(rows)


def layer_identities(derivation: Derivation) -> str:
    network = derivation.network
    pr = MatrixLatex(network)
    depth = network.depth
    layers = list(range(depth, 0, -1))
    if depth > FULL_DEPTH:
        layers = [depth, depth - 1, 0, 1]  # 0 marks the elided middle
    rows = []
    top = OBJECTIVE if network.l2 else LOSS
    for layer in layers:
        if layer == 0:
            rows.append(r"&\;\;\vdots")
            continue
        rows.append(rf"\delta_{{{layer}}} &= {pr(derivation.deltas[layer])}")
        for param in (model.W(layer), model.b(layer)):
            rows.append(rf"{_partial(top, pr.var(param))} &= {pr(derivation.gradients[param])}")
    return _align(rows)


def penalty_section(derivation: Derivation) -> str:
    """With ``--l2``: the objective, the penalty's own chain rule, and what it adds (else '')."""
    network = derivation.network
    if not network.l2:
        return ""
    names = {penalty.lam: r"\lambda", penalty.w: "w"}
    entry, gradient = scalar(penalty.ENTRY, names), scalar(penalty.GRADIENT, names)
    objective = [
        rf"{OBJECTIVE} &= {LOSS} + \sum_{{l=1}}^{{L}} \frac{{\lambda}}{{2}} "
        r"\lVert W_l \rVert_F^2 = "
        rf"{LOSS} + \sum_{{l=1}}^{{L}} \sum_{{i,j}} {entry}\Big|_{{w = (W_l)_{{ij}}}}",
        rf"\frac{{\partial}}{{\partial w}} \left({entry}\right) &= {gradient}",
    ]
    gradients = [
        rf"{_partial(OBJECTIVE, 'W_l')} &= a_{{l-1}}^{{\top}} \delta_l + \lambda W_l",
        rf"{_partial(OBJECTIVE, 'b_l')} &= \mathbf{{1}}^{{\top}} \delta_l",
    ]
    return (
        "\\section*{The L2 penalty}\n"
        "The objective adds an L2 penalty on the weights (not the biases) to the loss, "
        "$\\lambda \\ge 0$ being a number given at run time:\n"
        + _align(objective)
        + "No $z_l$ enters the penalty, so every $\\delta_l$ above is unchanged; the chain "
        "rule adds the penalty's gradient to each weight's:\n" + _align(gradients)
    )


# --- what was verified -----------------------------------------------------------------


def escape(text: str) -> str:
    """Plain text for LaTeX's text mode."""
    replace = {
        "\\": r"\textbackslash{}",
        "_": r"\_",
        "&": r"\&",
        "%": r"\%",
        "#": r"\#",
        "$": r"\$",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
    }
    return "".join(replace.get(ch, ch) for ch in text)


def _sizes(pattern_: str, method: str) -> tuple[str, ...] | None:
    match = re.search(pattern_, method)
    return match.groups() if match else None


PROOF_NOT_TEST = (
    "Each statement below was proved, not tested. A test compares numbers at a few chosen "
    "points and can miss; here every matrix entry is a free symbol and every activation an "
    "arbitrary function, so two sides that expand to the same polynomial (or whose difference "
    "simplifies to exactly 0) are equal for every value. The reference derivatives come from "
    "the scalar chain rule, applied operation by operation to the loss written out entry by "
    "entry: nothing of the matrix derivation above is reused."
)


_PENALTY_TEXT = r" plus $\frac{\lambda}{2} \sum_l \lVert W_l \rVert_F^2$ ($\lambda$ a symbol)"


def explain(check: Check, network: Network) -> tuple[str, str]:
    """A reader's heading and one sentence: what was proved and how."""
    pr = MatrixLatex(network)
    sigma = r"\sigma" if pr.uniform else r"\sigma_L"
    name = check.name
    if name == "output lemma":
        size = _sizes(r"(\d+)x(\d+) symbols", check.method)
        on = rf"a ${size[0]} \times {size[1]}$ matrix" if size else "a matrix"
        if network.fused:
            link = network.loss.link
            assert link is not None
            rows = ""
            if network.loss.assumption:
                rows = " and targets whose rows sum to 1"
            return (
                "The output layer",
                rf"$\delta_L = \hat{{Y}} - Y$: the scalar chain rule differentiated the loss of "
                rf"${function_name(link)}(z_L)$ by every entry of {on} $z_L$ of free symbols{rows}, "
                r"and the difference from $\hat{Y} - Y$ simplified to exactly 0 as a rational "
                r"function of the exponentials $e^{z}$, so it holds for every value of the logits.",
            )
        return (
            "The output layer",
            rf"$\delta_L = \partial {LOSS} / \partial \hat{{Y}} \odot {sigma}'(z_L)$: the "
            rf"scalar chain rule differentiated ${LOSS} = {loss_formula(network, YHAT, 'Y')}$ by every entry "
            rf"of {on} $z_L$ of free symbols, with the activation left an arbitrary function, "
            "and both sides expanded to the same polynomial in the entries and the values of the "
            f"activation and its derivative. It holds for every activation.",
        )
    if name == "step lemma":
        size = _sizes(r"m=(\d+), widths (\d+)->(\d+)", check.method)
        on = rf" (batch {size[0]}, $n_{{l-1}} = {size[1]}$, $n_l = {size[2]}$)" if size else ""
        lemma = backward(*step_lemma_chain(2))
        g = _generic_printer(network, {2: "l", 1: "l-1"})
        return (
            "One layer, for any gradient from above",
            rf"For every $G = \partial {LOSS} / \partial z_l$: "
            rf"$\delta_{{l-1}} = {g(lemma[model.z(1)])}$, "
            rf"$\partial {LOSS} / \partial W_l = {g(lemma[model.W(2)])}$ and "
            rf"$\partial {LOSS} / \partial b_l = {g(lemma[model.b(2)])}$. "
            "Everything above the layer was an arbitrary function of all entries of $z_l$ "
            "and the activation an arbitrary function; the scalar chain rule on matrices of free "
            f"symbols{on} and the formulas expanded to the same polynomial. "
            "It holds whatever the layers above compute.",
        )
    if name == "penalty lemma":
        size = _sizes(r"m=(\d+), widths (\d+)->(\d+)", check.method)
        on = rf" (batch {size[0]}, $n_{{l-1}} = {size[1]}$, $n_l = {size[2]}$)" if size else ""
        return (
            "One layer with the L2 penalty",
            rf"With $\frac{{\lambda}}{{2}} \lVert W_l \rVert_F^2$ added to an arbitrary "
            rf"function of $z_l$: $\partial {OBJECTIVE} / \partial W_l = a_{{l-1}}^{{\top}} G "
            rf"+ \lambda W_l$, $\partial {OBJECTIVE} / \partial b_l = \mathbf{{1}}^{{\top}} G$ "
            r"and $\delta_{l-1}$ as before. The scalar chain rule differentiated the sum written out entry by "
            rf"entry, $\lambda$ a symbol{on}, and the formulas expanded to the same polynomial; "
            r"a penalty on the biases or a factor $\lambda/2$ in the gradient is rejected.",
        )
    if name == "penalty lemma, any width":
        return (
            "The penalty, any width",
            r"$\partial / \partial (W_l)_{rs}$ of $\frac{\lambda}{2} \sum_{i,j} (W_l)_{ij}^2$ "
            r"is $\lambda (W_l)_{rs}$ for widths $n_{l-1}$, $n_l$ and $\lambda$ all symbols: "
            "the derivative of one entry by another is 1 when the indices agree and 0 "
            "otherwise, which SymPy sums away.",
        )
    if name == "step lemma, any width":
        return (
            "One layer, any width",
            "The same step for every batch size $m$ and widths $n_{l-1}$, $n_l$ at once: "
            "entries are indexed symbols, matrix products are sums over symbolic ranges, "
            "and the derivative of one entry by another is 1 when the indices agree and 0 "
            "otherwise, which SymPy sums away; what remains is the formula's entry $(r, s)$ "
            "for symbolic $r$ and $s$. This removes the fixed sizes of the previous proof.",
        )
    if name == "induction":
        return (
            "Every layer",
            rf"For each of the {network.depth} layers, $\delta_l$, "
            rf"$\partial {LOSS} / \partial W_l$ and $\partial {LOSS} / \partial b_l$ as printed above are, "
            "term for term, the one-layer identity with its layer number substituted "
            r"(and $\delta_L$ the output layer's). By induction from the output layer down, "
            "the proofs above then cover the whole network, however deep.",
        )
    if name.startswith("activation "):
        act = next((a for a in network.activations if f"activation {a.name}" == name), None)
        if act is not None and not act.entrywise:
            return (
                f"The activation ${function_name(act)}$",
                "The numerically stable form the code evaluates (the row maximum subtracted "
                "before exponentiating) is proved equal to the definition: with the "
                "log-sum-exp written out, their difference cancels to exactly 0.",
            )
        if act is not None:
            split = (
                " on each side of $z = 0$ separately"
                if isinstance(act.definition, sp.Piecewise)
                else ""
            )
            rewrite = act.derivative_from_output
            if rewrite is None:
                what = (
                    f"${function_name(act)}'(z)$ as SymPy derives it (no form through the "
                    "output was found, so the code evaluates it from $z$)"
                )
            else:
                what = (
                    f"${function_name(act)}'(z) = {scalar(rewrite)}$ with $A = {function_name(act)}(z)$, "
                    "the form the code evaluates"
                )
            points = len(catalog.SAMPLE_POINTS)
            return (
                f"The activation ${function_name(act)}$",
                f"{what.capitalize() if not what.startswith('$') else what}: with $A$ replaced by "
                f"its definition, the difference from SymPy's derivative{split}, written in "
                "$e^z$, simplifies to exactly 0, and so does that of the numerically stable "
                "form of the activation the code uses; as an independent check both also agree "
                f"at {points} points around 0.",
            )
    if name.startswith("loss "):
        return (
            "The loss",
            f"The loss as the code evaluates it, in a numerically stable form, equals "
            f"${LOSS} = {loss_formula(network, YHAT, 'Y')}$: their difference, "
            "rewritten in exponentials, simplifies to exactly 0, and so does that of their "
            "derivatives.",
        )
    if name == "end to end":
        if check.status is Status.SKIPPED:
            return (
                "The whole network at once",
                f"Not run for {network.depth} layers (raise "
                r"\texttt{-{}-end-to-end-depth} to run it); the proofs above already "
                "cover every depth.",
            )
        size = _sizes(r"batch (\d+), widths \(([\d, ]+)\)", check.method)
        on = rf" (batch {size[0]}, widths ${size[1]}$)" if size else ""
        return (
            "The whole network at once",
            f"The scalar chain rule differentiated the loss{_PENALTY_TEXT if network.l2 else ''} of the full "
            f"{network.depth}-layer composition by "
            f"every entry of every weight and bias{on}, with a different arbitrary activation "
            "in each layer, and each result expanded to the same polynomial as the formulas. "
            "This catches what a layer-by-layer proof could miss, such as a wrong layer index "
            "or a missing transpose between layers.",
        )
    if name == "sum of shards":
        return explain_sum_of_shards(check, network)
    return escape(name), escape(f"{check.statement} ({check.method})")


def verification(checks: list[Check], network: Network) -> str:
    lines = [PROOF_NOT_TEST + "\n\\begin{itemize}"]
    for c in checks:
        heading, sentence = explain(c, network)
        if c.status is Status.FAILED:
            mark = f"FAILED: {escape(c.detail)}" if c.detail else "FAILED"
        else:
            mark = c.status.value
        lines.append(rf"\item \textbf{{{heading}}} ({mark}). {sentence}")
    lines.append("\\end{itemize}")
    return "\n".join(lines) + "\n"


# --- the sum of shards and the seed's equations ----------------------------------------


def sum_of_shards_section(network: Network) -> str:
    """The sum-of-shards lemma, for summed and for mean losses (checked in ``verify``)."""
    from .shards import weights

    def names(mean: bool) -> str:
        chosen = [
            rf"\texttt{{{escape(n)}}}"
            for n, loss in catalog.LOSSES.items()
            if (weights(loss, (1, 1))[0] != 1) == mean
        ]
        return ", ".join(chosen)

    mean = weights(network.loss, (1, 1))[0] != 1
    return (
        "\\section*{Gradients over row shards}\n"
        f"Split the $m$ rows of a batch into shards of $m_1 + \\dots + m_K = m$ rows, and let "
        f"${LOSS}_k$ be the loss the same code computes on shard $k$ alone. Each row's "
        "prediction depends on the parameters and that row only, and the loss is a sum over "
        "rows times a factor that depends on $m$ only, so for every parameter $\\theta$\n"
        "\\begin{gather*}\n"
        f"\\frac{{\\partial {LOSS}}}{{\\partial \\theta}} = \\sum_{{k=1}}^{{K}} "
        f"\\frac{{\\partial {LOSS}_k}}{{\\partial \\theta}} "
        "\\quad\\text{for a summed loss,} \\\\\n"
        f"\\frac{{\\partial {LOSS}}}{{\\partial \\theta}} = \\sum_{{k=1}}^{{K}} \\frac{{m_k}}{{m}} "
        f"\\frac{{\\partial {LOSS}_k}}{{\\partial \\theta}} "
        "\\quad\\text{for a mean loss.}\n"
        "\\end{gather*}\n"
        f"The summed losses are {names(False)}; the mean loss is {names(True)}. "
        f"This network's loss, \\texttt{{{escape(network.loss.name)}}}, is a {'mean' if mean else 'summed'} "
        "one. The lemma is what lets "
        "row-chunked data (a Dask array) or several machines give the full-batch gradient; "
        "it is proved for this loss below.\n"
    )


def explain_sum_of_shards(check: Check, network: Network) -> tuple[str, str]:
    """The reader's sentence for ``shards.check_sum_of_shards``."""
    size = _sizes(r"over (\d+) rows and over shards of ([\d, ]+) rows", check.method)
    rows = f"{size[0]} rows" if size else "a batch"
    parts = size[1].split(", ") if size else []
    shards = f"shards of {', '.join(parts[:-1])} and {parts[-1]} rows" if size else "shards"
    return (
        "Gradients over row shards",
        f"The scalar chain rule differentiated the {escape(network.loss.name)} loss of {rows}, every entry of "
        r"the prediction an arbitrary function of a parameter $\theta$, and the weighted sum of "
        f"the derivatives of the same loss over {shards}; the difference simplified to "
        "exactly 0. The shards have unequal sizes, so a wrong weighting cannot cancel out.",
    )


_SEED_VERDICTS: list[Verdict] = []


def seed_check_section() -> str:
    """The seed's equations decided by the engine (about 3 s, once per process)."""
    from . import seedcheck

    if not _SEED_VERDICTS:
        _SEED_VERDICTS.extend(seedcheck.check())
    return "\\section*{The seed's equations, checked}\n" + seedcheck.latex_section(_SEED_VERDICTS)


# --- the document ----------------------------------------------------------------------


def document_body(derivation: Derivation, checks: list[Check], seed_check: bool = False) -> str:
    """The document's sections; ``seed_check`` adds the seed's equations, checked (about 3 s)."""
    network = derivation.network
    parts = [
        "\\section*{The network}\n",
        notation(network),
        "As a composition of functions, in the order they are evaluated:\n",
        composition(network),
        "Unrolled, the prediction is\n",
        unrolled_prediction(network),
        "\\section*{Activation and loss}\n",
        activations(network),
        loss_section(network),
        "\\section*{The chain rule, link by link}\n",
        chain_products(network, derivation),
        factor_table(network),
        "\\section*{The recursive pattern}\n",
        pattern(network),
        "Applying the factors from the table gives the recursive identities:\n",
        general_identities(network),
        penalty_section(derivation),
        "For this network:\n",
        layer_identities(derivation),
        sum_of_shards_section(network),
        "\\section*{What was verified}\n",
        verification(checks, network),
    ]
    parts += [seed_check_section()] if seed_check else []
    return sized_parens("".join(parts))


def document(
    derivation: Derivation, checks: list[Check], command: str, seed_check: bool = True
) -> str:
    """A standalone document; its first line records ``command``, the command that made it.

    It includes the seed's equations, checked, unless ``seed_check`` is False."""
    body = document_body(derivation, checks, seed_check)
    return standalone(title(derivation.network), command, body)


def standalone(heading: str, command: str, body: str) -> str:
    """``body`` as a standalone article titled ``heading``, whose first line records
    ``command``."""
    return (
        f"% Generated by `{command}` (derive {__version__}). Do not edit: regenerate instead.\n"
        "\\documentclass{article}\n"
        "\\usepackage{amsmath,amssymb,booktabs}\n"
        "\\usepackage[margin=2cm]{geometry}\n"
        "\\allowdisplaybreaks\n"
        # derive's marker inside the PDF too (files.py reads it), for pdfTeX only.
        f"\\ifdefined\\pdfinfo\\pdfinfo{{/Subject (Generated by `{command}`)}}\\fi\n"
        f"\\title{{{heading}}}\n\\date{{}}\n"
        "\\begin{document}\n\\maketitle\n" + body + "\\end{document}\n"
    )
