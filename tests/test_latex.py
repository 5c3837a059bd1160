"""The LaTeX reads like a textbook, compiles cleanly at every depth, and grows linearly."""

from __future__ import annotations

import re
from functools import cache

import pytest
import sympy as sp

from derive import catalog, latex, naming, proof, seedcheck, shards, spec
from derive.derivation import derive
from tests.helpers import HAS_PDFLATEX, compile_latex, layout_problems

FORBIDDEN = ["Lambda", "ArrayContraction", "\\mapsto", "Subs", "Derivative", "_xi", "Dummy"]
JARGON = ["2x2", "a\\_l", "KroneckerDelta", "SymPy diff of", "undefined", "Indexed", "$\\to$", "->"]


def widths(depth: int, first: int = 20, last: int = 10) -> str:
    """Widths that differ from layer to layer, so no run of equal widths is compressed away."""
    return ",".join(map(str, [first, *[3 + (k % 7) for k in range(depth - 1)], last]))


@cache  # a document is read by several tests (its notation, its title, its layout)
def _document(layers: str, activation: str = "tanh", loss: str = "l2", end_to_end: int = 3) -> str:
    derivation = derive(spec.network(layers, activation, loss))
    return latex.document(
        derivation,
        proof.verify(derivation, end_to_end_depth=end_to_end),
        naming.spec_command(derivation.network),
    )


@cache
def _body(layers: str, activation: str = "tanh", loss: str = "l2") -> str:
    derivation = derive(spec.network(layers, activation, loss))
    return latex.document_body(derivation, proof.verify(derivation, end_to_end_depth=0))


@pytest.mark.parametrize("layers", ["4,3", "20,50,10", "3,4,5,6"])
def test_latex_uses_textbook_notation_only(layers):
    text = _document(layers)
    for token in FORBIDDEN + JARGON:
        assert token not in text, token
    depth = len(layers.split(",")) - 1
    assert rf"\mathcal{{L}} = f_{{{2 * depth + 1}}}" in text  # the composition ends in the loss
    assert r"\odot" in text and r"\sigma'(z_{1})" in text and r"^{\top}" in text
    assert r"\frac{\partial \mathcal{L}}{\partial \hat{Y}} &= 2 (\hat{Y} - Y)" in text
    assert "FAILED" not in text and "(proved)" in text
    assert r"\lVert \hat{Y} - Y \rVert_F^2" in text


def test_loss_and_depth_have_distinct_symbols():
    """L is the depth only; the loss is \\mathcal{L} wherever it is differentiated."""
    text = _body("3,4,5,6")
    assert r"$L = 3$" in text
    assert not re.search(r"\\partial L[^_]", text) and "L = f_" not in text
    assert r"\partial \mathcal{L}" in text


def test_title_shows_the_widths_with_dashes():
    assert r"\title{Backpropagation for a 20--50--10 network}" in _document("20,50,10")
    deep = latex.title(spec.network(widths(30)))
    assert "30-layer" in deep and "20 inputs" in deep and "10 outputs" in deep


def test_every_symbol_is_defined_before_its_first_use():
    body = _body("20,50,10")
    table_end = body.index(r"\bottomrule")
    defined = body[:table_end]
    for token in [
        "X",
        "Y",
        r"\hat{Y}",
        "W_l",
        "b_l",
        "z_l",
        "a_l",
        r"\sigma",
        r"\delta_l",
        r"\mathbf{1}",
        "$G$",
        r"\mathcal{L}",
        r"\odot",
        r"^{\top}",
        "$m",
        "n_l",
        "$L = ",
    ]:
        assert token in defined, token
    for used in [r"\delta_{", r"\mathbf{1}^{\top}", "z_{", "a_{", r"\hat{Y}", r"\sigma("]:
        assert body.index(used) > body.index(r"\toprule"), used


def test_shape_table_lists_every_quantity_and_each_factor_on_g():
    body = _body("20,50,10")
    for row in [
        r"$X$ & $m \times n_0$",
        r"$Y$ & $m \times n_L$",
        r"$\hat{Y}$ & $m \times n_L$",
        r"$W_l$ & $n_{l-1} \times n_l$",
        r"$b_l$ & $1 \times n_l$",
        r"$z_l$ & $m \times n_l$",
        r"$a_l$ & $m \times n_l$",
        r"$\delta_l$ & $m \times n_l$",
        r"$\mathbf{1}$ & $m \times 1$",
    ]:
        assert row in body, row
    assert r"= a_{l-1}^{\top} G$ & $m \times n_{l}$ & $n_{l-1} \times n_{l}$" in body
    assert r"= \mathbf{1}^{\top} G$ & $m \times n_{l}$ & $1 \times n_{l}$" in body
    assert r"= G W_{l}^{\top}$ & $m \times n_{l}$ & $m \times n_{l-1}$" in body
    assert r"= G \odot \sigma'(z_{l-1})$ & $m \times n_{l-1}$ & $m \times n_{l-1}$" in body


def test_activation_functions_and_layer_outputs_have_distinct_symbols():
    body = _body("4,3,3,2", "sigmoid,relu,tanh")
    assert r"\sigma_{1}(z) &=" in body and r"\sigma_{1}(f_{1})" in body
    assert r"a_l = \sigma_{l}(z_{l})" in body
    assert not re.search(r"(?<!\\sigm)a_\{1\}(\(z\)|')", body)  # a_1 is never a function
    assert r"\operatorname{sigmoid}" in body  # the sigmoid is not a second \sigma


def test_constants_are_readable_and_no_row_repeats_its_value():
    gelu = _body("4,3", "gelu")
    assert "0.044715" in gelu and "8943" not in gelu
    leaky = _body("4,3", "leaky_relu:0.2")
    assert "0.2 z" in leaky and r"\frac{z}{5}" not in leaky
    identity = _body("4,3", "identity")
    assert r"\sigma'(z) &= 1" in identity
    assert not re.search(r"&= 1 \\quad\\text\{with", identity)  # no "= 1 = 1"


def test_softmax_gradient_is_written_per_entry():
    body = _body("4,3,3", "relu", "softmax_cross_entropy")
    assert r"A_{k} - {Y}_{k} \quad\text{with } A_k = \operatorname{softmax}(z)_k" in body
    assert "A - {Y}_{k}" not in body


def test_parentheses_grow_only_around_tall_content():
    body = _body("20,50,10")
    assert r"2 (\hat{Y} - Y)" in body and r"2 (f_{4} - Y)" in body
    for match in re.finditer(r"\\left\(", body):
        inner = body[match.end() : body.index(r"\right)", match.end())]
        assert any(tall in inner for tall in latex.TALL), inner


def test_sized_parens_keeps_tall_and_drops_flat():
    text = r"2 \left(x - y\right) + \left(\frac{1}{2} \left(z\right)\right)"
    assert latex.sized_parens(text) == r"2 (x - y) + \left(\frac{1}{2} (z)\right)"
    with pytest.raises(ValueError):
        latex.sized_parens(r"\left( x")


def test_readable_numbers():
    z = catalog.z
    assert latex.scalar(sp.Rational(1, 5) * z) == "0.2 z"
    assert latex.scalar(z / 2) == r"\frac{z}{2}"  # halves stay fractions
    assert latex.scalar(sp.Rational(1, 3) * z) == r"\frac{z}{3}"  # no finite decimal


def test_chain_products_are_written_once_per_factor_not_per_parameter():
    """Length linear in depth: each factor's action appears once, not once per parameter."""
    body = _body(widths(30))
    assert body.count(r"\frac{\partial f_{61}}{\partial f_{60}} &= 2 (f_{60} - Y)") == 1
    assert body.count(r"G\,\frac{\partial f_{60}}{\partial f_{59}} &=") == 1
    assert r"\frac{\partial f_{61}}{\partial b_{28}}" not in body  # only the last two layers
    prediction = body[body.index("Unrolled") :].split(r"\end{align*}")[0]
    assert r"\cdots" in prediction and prediction.count(r"\sigma(") <= 4


def test_length_is_linear_in_depth():
    sizes = {depth: len(_body(widths(depth))) for depth in (15, 30, 60)}
    per_layer_low = (sizes[30] - sizes[15]) / 15
    per_layer_high = (sizes[60] - sizes[30]) / 30
    assert per_layer_high <= 60 and per_layer_high <= 1.5 * per_layer_low + 10, sizes


def test_depth_200_builds():
    """Regression: depths >= 111 raised RecursionError while unrolling the prediction."""
    derivation = derive(spec.network(widths(200)))
    body = latex.document_body(derivation, [])
    assert r"\delta_{200}" in body and r"\cdots" in body


def test_every_check_gets_a_readers_sentence():
    """Each check the proof runs has its own sentence: no fallback to the developer's text."""
    configs = [
        ("4,3,3", "tanh", "l2"),
        ("4,3,3", ",".join(["relu", "gelu"]), "mse"),
        ("4,3,3", "elu", "softmax_cross_entropy"),
        ("4,3,3,3,2", "leaky_relu,softplus,identity,sigmoid", "sigmoid_binary_cross_entropy"),
    ]
    for layers, act, loss in configs:
        derivation = derive(spec.network(layers, act, loss))
        checks = proof.verify(derivation, end_to_end_depth=1)
        for check in checks:
            heading, sentence = latex.explain(check, derivation.network)
            assert check.method not in sentence and heading != check.name, check.name
            for token in JARGON:
                assert token not in sentence, (check.name, token)


def test_unknown_check_falls_back_to_its_own_text():
    """Negative control for the test above: an unknown check is not given a made-up sentence."""
    network = spec.network("4,3")
    odd = proof.Check("new_check", "x_1 = y", "exact: something", True, 0.0)
    heading, sentence = latex.explain(odd, network)
    assert heading == r"new\_check" and "exact: something" in sentence


def test_verification_section_reports_failures():
    """Negative control: a failed check is printed as FAILED, not as proved."""
    bad = proof.Check("step lemma", "s", "exact", False, 0.0, "entry (0, 0) differs")
    text = latex.verification([bad], spec.network("4,3"))
    assert "FAILED: entry (0, 0) differs" in text and "(proved)" not in text


def test_layout_problems_reads_a_bad_log():
    """Negative control: the log parser sees overfull boxes and the page count."""
    log = (
        "Overfull \\hbox (75.3pt too wide) in paragraph at lines 3--4\n"
        "Overfull \\hbox (2.0pt too wide) detected at line 9\n"
        "Overfull \\vbox (12.0pt too high) has occurred while \\output is active\n"
        "Output written on d.pdf (99 pages, 12345 bytes).\n"
    )
    assert layout_problems(log) == (99, [75.3], 1)


def _check_layout(
    tmp_path, layers: str, activation: str, loss: str, max_pages: int, end_to_end: int = 3
) -> None:
    text = _document(layers, activation, loss, end_to_end)
    assert "\\allowdisplaybreaks" in text  # long displays may break across pages
    pages, hboxes, vboxes = layout_problems(compile_latex(tmp_path, text))
    assert 0 < pages <= max_pages and not hboxes and vboxes == 0, (pages, hboxes, vboxes)


@pytest.mark.skipif(not HAS_PDFLATEX, reason="pdflatex is not installed")
@pytest.mark.parametrize(
    "layers,activation,loss,end_to_end",
    [
        ("4,3", "tanh", "l2", 3),
        ("20,50,10", "tanh", "l2", 3),
        ("3,4,5,6", "tanh", "l2", 3),
        (widths(30), "tanh", "l2", 3),
        ("4,3,3,2", "elu,gelu,sigmoid", "sigmoid_binary_cross_entropy", 0),
        ("4,3,3,2", "relu", "softmax_cross_entropy", 0),
    ],
    ids=["depth1", "depth2", "depth3", "depth30", "mixed-bce", "softmax"],
)
def test_document_compiles_without_overfull_boxes(tmp_path, layers, activation, loss, end_to_end):
    _check_layout(tmp_path, layers, activation, loss, 10, end_to_end)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_PDFLATEX, reason="pdflatex is not installed")
def test_depth_200_compiles_without_overfull_boxes(tmp_path):
    acts = ["relu", "gelu", "sigmoid", "identity", "elu", "softplus", "leaky_relu:0.2"]
    per_layer = ",".join(acts + ["tanh"] * (199 - len(acts)) + ["softmax"])
    _check_layout(tmp_path, widths(200, 784), per_layer, "softmax_cross_entropy", max_pages=10)
    _check_layout(tmp_path, ",".join(["784"] + ["50"] * 199 + ["10"]), "tanh", "l2", 10)


def test_document_includes_the_seed_check_and_the_body_only_on_request():
    derivation = derive(spec.network("4,3"))
    checks = proof.verify(derivation, end_to_end_depth=0)
    heading = r"\section*{The seed's equations, checked}"
    command = naming.spec_command(derivation.network)
    assert heading in latex.document(derivation, checks, command)
    assert heading not in latex.document(derivation, checks, command, seed_check=False)
    assert heading not in latex.document_body(derivation, checks)
    body = latex.document_body(derivation, checks, seed_check=True)
    section = body[body.index(heading) :]
    # every verdict the engine gave is printed, in the engine's order
    verdicts = seedcheck.check()
    assert section.count(r"\paragraph{") == len(verdicts)
    assert section.count("wrong; the correct identity is") == sum(
        v.verdict == seedcheck.WRONG for v in verdicts
    )


@pytest.mark.parametrize(("loss", "kind"), [("l2", "summed"), ("mse", "mean")])
def test_sum_of_shards_section_names_the_networks_weighting(loss, kind):
    text = latex.sum_of_shards_section(spec.network("4,3", "tanh", loss))
    assert r"\frac{m_k}{m}" in text and rf"\texttt{{{loss}}}, is a {kind} one" in text


def test_sum_of_shards_failure_is_printed_as_failed():
    """Negative control: a wrong weighting's failed check reaches the document as FAILED."""
    network = spec.network("4,3", "tanh", "mse")
    bad = shards.check_sum_of_shards(network.loss, [sp.Integer(1)] * len(shards.SHARDS))
    text = latex.verification([bad], network)
    assert r"\textbf{Gradients over row shards} (FAILED" in text
