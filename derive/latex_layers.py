"""The LaTeX document for a network of mixed layer kinds, and the one entry for every network.

A dense network gets ``latex``'s document, unchanged (the seed's f_{2l-1}, f_{2l} pattern).
Any other network gets, from the same IR: a table of its layers with each step's identity
and shape; the activation and the loss; each kind's block identities for any gradient G
from above, in the generic layer l with shapes (the normalizations' from
``latex_normalization``); this network's identities, layer by layer from the loss down
(a normalization's ∂L/∂a_{l-1} in its compact form, named ā_{l-1}); what was verified.
"""

from __future__ import annotations

import sympy as sp

from . import latex, model
from .check import Check, Status
from .derivation import Derivation, backward
from .expr import Expr, Kind, Loss, Scale, Var, rebuild, substitute
from .latex import LOSS, MatrixLatex, escape
from .layers import AnyLayer, BatchNorm, Dense, Dropout, LayerNorm, Residual, abar
from .model import Network, kind_name
from .proof_layers import block_chain, block_claims, sample_block
from .shapes import Shape, shape
from .spec import decimal_text

FULL_DEPTH = 8
"""Up to this depth every layer's identities are printed; deeper, the first and last few."""

M = sp.Symbol("m")
N_IN, N_OUT = sp.Symbol("n_{l-1}"), sp.Symbol("n_l")


def document_body(derivation: Derivation, checks: list[Check], seed_check: bool = False) -> str:
    """The document's sections, for any network (a dense one: ``latex.document_body``)."""
    if derivation.network.dense:
        return latex.document_body(derivation, checks, seed_check)
    network = derivation.network
    parts = [
        "\\section*{The network}\n",
        layer_table(network),
        "\\section*{Activation and loss}\n",
        latex.activations(network) if network.activations else "",
        latex.loss_section(network),
        "\\section*{Each kind of layer, for any gradient from above}\n",
        kind_sections(network),
        penalty_section(network),
        "\\section*{This network, from the loss down}\n",
        network_identities(derivation),
        "\\section*{What was verified}\n",
        verification(checks, network),
    ]
    return latex.sized_parens("".join(parts))  # the seed's equations are the dense network's


def penalty_section(network: Network) -> str:
    """With ``--l2``: the objective over this network's penalised matrices (``weights``: W_l
    and P_l, not b_l, γ_l, β_l) and what the chain rule adds to their gradients (else '')."""
    from . import penalty
    from .layers import weights

    if not network.l2:
        return ""
    pr = MatrixLatex(network)
    penalised = [pr(w) for layer in network.layers for w in weights(layer)]
    names = {penalty.lam: r"\lambda", penalty.w: "w"}
    entry, gradient = latex.scalar(penalty.ENTRY, names), latex.scalar(penalty.GRADIENT, names)
    norms = " + ".join(rf"\lVert {w} \rVert_F^2" for w in penalised)
    rows = [
        rf"{latex.OBJECTIVE} &= {LOSS} + \frac{{\lambda}}{{2}} \left({norms}\right)",
        rf"\frac{{\partial}}{{\partial w}} \left({entry}\right) &= {gradient}",
    ]
    return (
        "\\section*{The L2 penalty}\n"
        "The objective adds an L2 penalty on the weights $W_l$ and the projections $P_l$ "
        "(not the biases $b_l$, nor a normalization's $\\gamma_l$ and $\\beta_l$: the usual "
        "weight decay) to the loss, $\\lambda \\ge 0$ being a number given at run time; "
        "its entry $"
        + entry
        + "$ is differentiated by SymPy:\n"
        + _align(rows)
        + "No layer's output enters the penalty, so every adjoint below is the loss's; the "
        "chain rule adds $\\lambda W_l$ (and $\\lambda P_l$) to the gradient of each "
        "penalised matrix, and nothing to the others.\n"
    )


def document(
    derivation: Derivation, checks: list[Check], command: str, seed_check: bool = True
) -> str:
    """A standalone document (``latex.document`` for a dense network)."""
    if derivation.network.dense:
        return latex.document(derivation, checks, command, seed_check)
    body = document_body(derivation, checks, seed_check)
    return latex.standalone(title(derivation.network), command, body)


def title(network: Network) -> str:
    if network.dense:
        return latex.title(network)
    kinds = ", ".join(dict.fromkeys(kind_name(x) for x in network.layers))
    return (
        f"Backpropagation for a {network.depth}-layer network ({kinds}; "
        f"{network.sizes[0]} inputs, {network.sizes[-1]} outputs)"
    )


# --- the network ---------------------------------------------------------------------


def _leaves(network: Network) -> dict[Var, Shape]:
    """The shape of every variable the network's steps read or define (m the batch)."""
    shapes: dict[Var, Shape] = {model.X: (M, sp.Integer(network.sizes[0]))}
    for layer, n_in, n_out in zip(network.layers, network.sizes, network.sizes[1:], strict=False):
        rows, cols = sp.Integer(n_in), sp.Integer(n_out)
        for var in layer.parameters():
            shapes[var] = (rows, cols) if var.kind in (Kind.W, Kind.PROJ) else (sp.Integer(1), cols)
        if isinstance(layer, Dropout):
            shapes[layer.mask] = (M, rows)
        for step in layer.steps():
            if isinstance(layer, LayerNorm | BatchNorm):
                stat = layer.var(Kind.MEAN), layer.var(Kind.VARIANCE), layer.var(Kind.INV_STD)
                if step.target in stat:
                    shapes[step.target] = (
                        (M, sp.Integer(1))
                        if isinstance(layer, LayerNorm)
                        else (sp.Integer(1), cols)
                    )
                    continue
            shapes[step.target] = (M, cols)
    return shapes


def _shape_text(value: Shape) -> str:
    return rf"{sp.latex(value[0])} \times {sp.latex(value[1])}"


def layer_table(network: Network) -> str:
    """Each layer's kind, width and steps, with the shape of what each step defines."""
    pr = RatePrinter(network)
    shapes = _leaves(network)
    rows: list[str] = []
    shown = _shown(network)
    for layer in network.layers:
        if layer.index not in shown:
            if rows[-1] != r"&\;\;\vdots":
                rows.append(r"&\;\;\vdots")
            continue
        first = True
        for step in layer.steps():
            note = rf"\text{{layer {layer.index}, {kind_name(layer)}}}" if first else ""
            rows.append(
                rf"{pr(step.target)} &= {pr(step.expr)} && {_shape_text(shapes[step.target])}"
                rf" && {note}"
            )
            first = False
    rates = [
        rf"$p_{{{x.index}}} = {decimal_text(x.rate)}$"
        for x in network.layers
        if isinstance(x, Dropout)
    ]
    acts = ""
    if network.activations:
        acts = (
            r"$\sigma$ is the activation"
            if len(set(network.activations)) == 1
            else r"$\sigma_l$ is layer $l$'s activation"
        ) + " (below). "
    masks = (
        r"$M_l$ is a dropout layer's mask of 0s and 1s (drawn afresh for each batch; a given "
        r"input in the proofs), scaled by $1/(1-p_l)$ with the rate " + ", ".join(rates) + ". "
        if rates
        else ""
    )
    norms = ""
    if any(isinstance(x, LayerNorm | BatchNorm) for x in network.layers):
        norms = (
            r"A normalization's statistics $\mu_l$, $v_l$, $s_l$ are $m \times 1$ columns "
            r"(layer norm, over each row's $n$ features) or $1 \times n$ rows (batch norm, over "
            r"the batch); a row or column next to an $m \times n$ matrix is repeated along it; "
            r"$\epsilon > 0$. "
        )
    return (
        f"The network has $L = {network.depth}$ layers, widths "
        + latex.widths_text(network.sizes)
        + r", and sees a batch of $m$ examples at a time ($X = a_0$ is $m \times "
        + f"{network.sizes[0]}$). Matrices act on rows: $M^{{\\top}}$ is the transpose, "
        r"$M N$ the matrix product, $M \odot N$ the entrywise product, "
        r"$\mathbf{1}^{\top} M$ the sum of the rows of $M$ and $M \mathbf{1}$ of its columns. "
        + acts
        + masks
        + norms
        + "In the order they are evaluated, with the shape of each result:\n"
        + "\\begin{align*}\n"
        + " \\\\\n".join(rows)
        + "\n\\end{align*}\n"
        + rf"and ${LOSS} = {pr(network.steps()[-1].expr)}$ with $\hat{{Y}} = a_{{{network.depth}}}$."
        + "\n"
    )


class RatePrinter(MatrixLatex):
    """``MatrixLatex`` that writes a dropout layer's scale as 1/(1 - p_l), not its value."""

    def __call__(self, e: Expr) -> str:
        return super().__call__(_with_rates(e, self.network))


def _with_rates(e: Expr, network: Network) -> Expr:
    """``e`` with each dropout's 1/(1 - rate) next to its mask written in the symbol p_l."""
    if isinstance(e, Scale):
        for layer in network.layers:
            if isinstance(layer, Dropout) and e.factor == layer.scale and _reads(e, layer.mask):
                rate = sp.Symbol(f"p_{{{layer.index}}}")
                return Scale(_with_rates(e.arg, network), 1 / (1 - rate))
    if isinstance(e, Var):
        return e
    return rebuild(e, tuple(_with_rates(child, network) for child in e.children()))


def _reads(e: Expr, var: Var) -> bool:
    return e == var or any(_reads(child, var) for child in e.children())


def _shown(network: Network) -> set[int]:
    depth = network.depth
    if depth <= FULL_DEPTH:
        return set(range(1, depth + 1))
    return {1, 2, depth - 2, depth - 1, depth}


# --- each kind, for any G --------------------------------------------------------------


def _generic_shapes(layer: AnyLayer) -> dict[Var, Shape]:
    """The block lemma's variables in m, n_{l-1}, n_l (dropout keeps the width n_l)."""
    same = isinstance(layer, Dropout) or (isinstance(layer, Residual) and not layer.projection)
    n_in = N_OUT if same else N_IN
    full = (M, N_OUT)
    shapes: dict[Var, Shape] = {layer.input: (M, n_in), model.INCOMING: full}
    for var in layer.parameters():
        shapes[var] = (n_in, N_OUT) if var.kind in (Kind.W, Kind.PROJ) else (sp.Integer(1), N_OUT)
    if isinstance(layer, Dropout):
        shapes[layer.mask] = (M, n_in)
    for step in layer.steps():
        shapes[step.target] = full
        if step.adjoint is not None:
            shapes[step.adjoint] = full
    return shapes


KIND_TEXT = {
    "dense": "A dense layer: $z_l = a_{l-1} W_l + b_l$, $a_l = \\sigma(z_l)$.",
    "res": "A residual block between equal widths: the dense branch $h_l = \\sigma(z_l)$ "
    "plus the skip connection $a_{l-1}$. The adjoint $\\bar{a}_l$ of the output is named, "
    "so the skip term shows in $\\partial \\mathcal{L} / \\partial a_{l-1}$, hence in "
    "$\\delta_{l-1}$ of a dense layer below.",
    "proj": "A residual block between unequal widths: the skip connection goes through a "
    "learned projection $P_l$ ($n_{l-1} \\times n_l$).",
    "drop": "Inverted dropout: the mask $M_l$ of 0s and 1s keeps each entry with "
    "probability $1-p$, and $1/(1-p)$ keeps the expected output equal to the input. "
    "The rate $p$ is a symbol here: the identity holds for every $p \\ne 1$.",
}


def kind_sections(network: Network) -> str:
    """Each kind present, in the generic layer l: its steps and its block identities."""
    from . import latex_normalization
    from .normalization import BATCH_NORM, LAYER_NORM

    parts = []
    seen: list[str] = []
    for layer in network.layers:
        match layer:
            case Dense():
                kind = "dense"
            case Residual():
                kind = "proj" if layer.projection else "res"
            case LayerNorm():
                kind = "ln"
            case BatchNorm():
                kind = "bn"
            case Dropout():
                kind = "drop"
        if kind in seen:
            continue
        seen.append(kind)
        if kind in ("ln", "bn"):
            parts.append(latex_normalization.equations(LAYER_NORM if kind == "ln" else BATCH_NORM))
            continue
        parts.append(_block_section(network, kind))
    return "".join(parts)


def _block_section(network: Network, kind: str) -> str:
    block = sample_block(kind)
    pr = MatrixLatex(network, index=lambda k: {2: "l", 1: "l-1"}[k], output_layer=-1)
    shapes = _generic_shapes(block)
    forward = [
        rf"{pr(s.target)} &= {pr(s.expr)} && {_shape_text(shape(s.expr, shapes))}"
        for s in block.steps()
    ]
    claims = block_claims(block)
    names = {s.target: s.adjoint for s in block.steps() if s.adjoint is not None}
    rows = []
    for var, formula in claims.items():
        if var in names:
            named = names[var]
            assert named is not None
            lhs = pr(named)
        elif var == block.input or var in block.parameters():
            lhs = latex._partial(LOSS, pr(var))
        else:
            continue  # the mask's adjoint: not a parameter
        rows.append(rf"{lhs} &= {pr(formula)} && {_shape_text(shape(formula, shapes))}")
    heading = {
        "dense": "Dense layer",
        "res": "Residual block",
        "proj": "Residual block with a projection",
        "drop": "Dropout",
    }[kind]
    return (
        f"\\subsection*{{{heading}}}\n{KIND_TEXT[kind]}\n"
        + _align(forward)
        + rf"For any gradient $G = \partial {LOSS} / \partial a_l$ arriving from above, the "
        "chain rule gives (with the shape of each):\n" + _align(rows)
    )


def _align(rows: list[str]) -> str:
    return "\\begin{align*}\n" + " \\\\\n".join(rows) + "\n\\end{align*}\n"


# --- this network -------------------------------------------------------------------------


def _replace(e: Expr, old: Expr, new: Expr) -> Expr:
    """``e`` with every occurrence of the subtree ``old`` written as ``new``."""
    if e == old:
        return new
    return rebuild(e, tuple(_replace(child, old, new) for child in e.children()))


def _reindex(e: Expr, index: int) -> Expr:
    """A sample layer's (index 2) expression for the layer of ``index``."""
    mapping: dict[Var, Expr] = {}
    stack = [e]
    while stack:
        node = stack.pop()
        if isinstance(node, Var) and node.layer in (1, 2) and node.kind is not Kind.INCOMING:
            mapping[node] = Var(node.kind, index - 2 + node.layer)
        stack.extend(node.children())
    return substitute(e, mapping)


def network_identities(derivation: Derivation) -> str:
    """From the loss down: each layer's named adjoints and gradients, written through the
    names of the layer above; a normalization's ∂L/∂a_{l-1} compact, named ā_{l-1}."""
    from .normalization import BATCH_NORM, LAYER_NORM, derive_normalization

    network = derivation.network
    pr = RatePrinter(network)
    named = derivation.definitions()
    top = network.layers[-1]
    loss = network.steps()[-1]
    assert isinstance(loss.expr, Loss) and isinstance(loss.expr.pred, Var)
    arriving = backward([loss], {model.LOSS: model.SEED})[loss.expr.pred]
    objective = latex.OBJECTIVE if network.l2 else LOSS
    rows: list[str] = []
    shown = _shown(network)
    short: dict[int, Expr] = {}  # layer → the printed name of what arrives at its output
    for layer in reversed(network.layers):
        logits = network.fused and layer is top
        lemma = backward(*block_chain(layer, network.l2, logits))
        here = {v: substitute(e, {model.INCOMING: arriving}) for v, e in lemma.items()}
        printed_in = short.get(layer.index, arriving)
        visible = layer.index in shown
        if not visible and rows and rows[-1] != r"&\;\;\vdots":
            rows.append(r"&\;\;\vdots")

        def show(e: Expr, old: Expr = arriving, new: Expr = printed_in) -> str:
            return pr(_replace(e, old, new) if new != old else e)

        if isinstance(layer, LayerNorm | BatchNorm):
            sample = LAYER_NORM if isinstance(layer, LayerNorm) else BATCH_NORM
            compact = derive_normalization(sample)
            g = {model.INCOMING: printed_in}
            if visible:
                ghat = _reindex(compact.ghat, layer.index)
                uses = any("ghat" in repr(s.expr) for s in compact.compact.values())
                if uses:
                    rows.append(
                        rf"{pr(layer.var(Kind.NORMALIZED_GRAD))} &= {pr(substitute(ghat, g))}"
                    )
                for var, simplified in compact.compact.items():
                    shown_var = _reindex(var, layer.index)
                    lhs = (
                        pr(abar(layer.index - 1))
                        if shown_var == layer.input
                        else latex._partial(objective, pr(shown_var))
                    )
                    if shown_var == layer.input and layer.index == 1:
                        continue  # nothing below the input
                    rows.append(
                        rf"{lhs} &= {pr(substitute(_reindex(simplified.expr, layer.index), g))}"
                    )
            short[layer.index - 1] = abar(layer.index - 1)
        elif visible:
            for step in layer.steps():
                if step.adjoint is not None and step.adjoint in named:
                    if step.adjoint == printed_in:
                        continue  # ā_l was just given by the normalization above
                    rows.append(rf"{pr(step.adjoint)} &= {show(named[step.adjoint])}")
            for var in layer.parameters():
                rows.append(
                    rf"{latex._partial(objective, pr(var))} &= {show(derivation.gradients[var])}"
                )
        arriving = here[layer.input]
    return (
        "Each identity is an instance of its kind's above, with $G$ what the layer above sends "
        r"down; $\bar{a}_l = \partial " + LOSS + r" / \partial a_l$ names what a normalization "
        "sends down, in its compact form.\n" + _align(rows)
    )


# --- what was verified ---------------------------------------------------------------------


def explain(check: Check, network: Network) -> tuple[str, str]:
    """The reader's heading and sentence for the checks of a mixed network."""
    name = check.name
    if name.endswith(" lemma") and name != "output lemma":
        kind = name.removesuffix(" lemma")
        extra = ""
        if kind == "dropout":
            extra = r", the mask's entries and the rate $p$ symbols"
        return (
            f"One {kind} block, for any gradient from above",
            rf"For every $G = \partial {LOSS} / \partial a_l$ (the partial derivatives of an "
            r"arbitrary function $g$ of all entries of $a_l$), the scalar chain rule differentiated $g(a_l)$"
            + (r" plus the penalty" if "λ" in check.statement else "")
            + r" by every entry of $a_{l-1}$ and of the parameters, with the activation an "
            f"arbitrary function{extra}; the derived identities above expanded to the same "
            "polynomial." + CONTROLS.get(kind, ""),
        )
    if name.endswith(" lemma, any width"):
        kind = name.removesuffix(" lemma, any width")
        widths = r"$n_l = n_{l-1}$" if kind in ("residual", "dropout") else r"$n_{l-1}$, $n_l$"
        return (
            f"One {kind} block, any width",
            rf"The same block for every batch size $m$ and widths {widths} at once, $G$ "
            "arbitrary: entries are indexed symbols, matrix products are sums over symbolic "
            "ranges, and the derivative of one entry by another is 1 when the indices agree and "
            "0 otherwise, which SymPy sums away; what remains is each formula's entry $(r, s)$ "
            "for symbolic $r$ and $s$." + CONTROLS.get(kind, "") + " The normalizations are "
            "proved at fixed sizes only: their statistics put a sum over the symbolic width "
            r"inside $\sqrt{v + \epsilon}$, and the exact reduction of that radical needs "
            "explicit entries.",
        )
    if name in ("layer norm", "batch norm"):
        size = latex._sizes(r"m=(\d+), n=(\d+)", check.method)
        at = f" at $m = {size[0]}$, $n = {size[1]}$" if size else ""
        return (
            f"The {name}",
            rf"The compact $\partial {LOSS} / \partial x$, $\partial {LOSS} / \partial \gamma$, "
            rf"$\partial {LOSS} / \partial \beta$ equal SymPy's derivative of "
            rf"$\sum G \odot y$ (an independent forward pass) and the chain rule's raw output{at}: "
            r"each $\sqrt{v + \epsilon}$ a positive atom $t$, the difference reduced modulo "
            r"$t^2 = v + \epsilon$ to exactly 0; $\epsilon > 0$ keeps it finite for a constant "
            "row or column.",
        )
    if name == "induction":
        return (
            "Every layer",
            f"Walking down from the loss, each of the {network.depth} layers' identities is, "
            "term for term, its kind's block identity with $G$ replaced by what the layer above "
            "sends down. By induction the proofs above cover the whole network.",
        )
    if name == "end to end" and check.status is not Status.SKIPPED:
        size = latex._sizes(r"batch (\d+), widths \(([\d, ]+)\)", check.method)
        on = rf" (batch {size[0]}, widths ${size[1]}$)" if size else ""
        return (
            "The whole network at once",
            f"The scalar chain rule differentiated the loss of the full {network.depth}-layer composition by "
            f"every entry of every parameter{on}, masks symbols, and each result expanded "
            "to the same polynomial as the formulas.",
        )
    if name in ("end to end", "sum of shards") and check.status is Status.SKIPPED:
        return (latex.escape(name.capitalize()), latex.escape("Not run: " + check.method) + ".")
    return latex.explain(check, network)


CONTROLS = {
    "residual": r" The same proof rejects $\partial \mathcal{L} / \partial a_{l-1}$ without "
    r"the skip term $\bar{a}_l$ (tests/test\_mixed.py).",
    "residual with projection": r" It rejects the skip term without its projection "
    r"$P_l^{\top}$.",
    "dropout": r" It rejects the gradient without the scale $1/(1-p)$.",
}
"""The negative control each kind's tests run, as the document states it."""


def verification(checks: list[Check], network: Network) -> str:
    lines = [latex.PROOF_NOT_TEST + "\n\\begin{itemize}"]
    for c in checks:
        heading, sentence = explain(c, network)
        mark = c.status.value
        if c.status is Status.FAILED:
            mark = f"FAILED: {escape(c.detail)}" if c.detail else "FAILED"
        lines.append(rf"\item \textbf{{{heading}}} ({mark}). {sentence}")
    lines.append("\\end{itemize}")
    return "\n".join(lines) + "\n"
