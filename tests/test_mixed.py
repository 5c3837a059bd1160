"""Networks of mixed layer kinds: the syntax, the Network, the residual and dropout proofs."""

from __future__ import annotations

import dataclasses
import shlex
import shutil

import pytest
import sympy as sp

import derive as api
from derive import (
    catalog,
    graph,
    latex,
    latex_layers,
    naming,
    proof,
    proof_layers,
    spec,
    symbolic_widths,
    verification,
)
from derive.derivation import Derivation, derive
from derive.expr import ActivateDeriv, Add, Hadamard, MatMul, Transpose
from derive.layers import BatchNorm, Dense, Dropout, LayerNorm, Residual, abar
from derive.model import Network, W, a, delta, z
from tests.cli_helpers import run_cli
from tests.helpers import HAS_PDFLATEX, compile_latex, layout_problems

TANH, RELU = catalog.activation("tanh"), catalog.activation("relu")
L2 = catalog.loss_function("l2")


# --- the Network ---------------------------------------------------------------


def test_the_dense_constructor_is_unchanged():
    network = Network((4, 3, 2), (TANH, RELU), L2)
    assert network.layers == (Dense(1, 4, 3, TANH), Dense(2, 3, 2, RELU))
    assert network.dense and network == spec.network("4,3,2", "tanh,relu")


def test_a_network_of_layers_reads_widths_and_activations_off_its_layers():
    layers = (
        Dense(1, 4, 3, TANH),
        Residual(2, 3, 3, RELU),
        LayerNorm(3, 3),
        Dropout(4, 3, sp.Rational(1, 2)),
        Residual(5, 3, 2, TANH, projection=True),
        BatchNorm(6, 2),
        Dense(7, 2, 2, TANH),
    )
    network = Network.of_layers(layers, L2, l2=True)
    assert network.sizes == (4, 3, 3, 3, 3, 2, 2, 2)
    assert network.activations == (TANH, RELU, TANH, TANH)
    assert not network.dense
    names = ["W1", "b1", "W2", "b2", "gamma3", "beta3", "W5", "b5", "proj5"]
    names += ["gamma6", "beta6", "W7", "b7"]
    assert [v.name for v in network.parameters()] == names
    assert [v.name for v in network.weights()] == ["W1", "W2", "W5", "proj5", "W7"]
    assert [v.name for v in network.inputs()] == ["a0", "M4", "Y"]
    assert network == spec.network(
        "4,3,3+res,ln,drop:0.5,2+proj,bn,2", "tanh,relu,tanh,tanh", l2=True
    )


@pytest.mark.parametrize(
    ("layers", "named"),
    [
        ((Dense(1, 4, 3, TANH), Residual(2, 3, 2, TANH)), "needs a projection (2+proj)"),
        ((Dense(1, 4, 3, TANH), Dropout(2, 3, sp.Rational(1)), Dense(3, 3, 2, TANH)), "rate 1"),
        ((Dense(1, 4, 3, TANH), Dropout(2, 3, sp.Rational(-1, 2)), Dense(3, 3, 2, TANH)), "-1/2"),
        ((Dense(1, 4, 3, TANH), Dropout(2, 3, sp.Rational(1, 2))), "as the last layer"),
        ((Dense(1, 4, 3, TANH), Dense(3, 3, 2, TANH)), "has index 3"),
        ((Dense(1, 4, 3, TANH), Dense(2, 4, 2, TANH)), "reads width 4"),
    ],
)
def test_bad_layers_are_refused_with_one_line(layers, named):
    with pytest.raises(ValueError, match=None) as err:
        Network.of_layers(layers, L2)
    assert named in str(err.value) and "\n" not in str(err.value)


def test_a_fused_loss_needs_a_dense_output_layer():
    ce = catalog.loss_function("softmax_cross_entropy")
    layers = (Dense(1, 4, 3, TANH), Dense(2, 3, 3, catalog.activation("softmax")), LayerNorm(3, 3))
    with pytest.raises(ValueError, match="dense output layer, not of a layer norm layer"):
        Network.of_layers(layers, ce)


# --- the syntax ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        ("784,256,256+res,ln,256+res,ln,10", "DRLRLD"),
        ("20,16,16+res,ln,8", "DRLD"),
        ("4,drop:0.25,3+proj,bn,3", "ORBD"),
        ("3,bn,3", "BD"),
    ],
)
def test_items_build_their_kinds(text, kinds):
    letter = {Dense: "D", Residual: "R", LayerNorm: "L", BatchNorm: "B", Dropout: "O"}
    network = spec.network(text, "relu")
    assert "".join(letter[type(x)] for x in network.layers) == kinds


@pytest.mark.parametrize(
    "text",
    ["784,256,256+res,ln,256+res,ln,10", "4,drop:0.25,3+proj,bn,3", "5,5+res,drop:0.125,2"],
)
@pytest.mark.parametrize("loss", ["l2", "softmax_cross_entropy"])
def test_the_canonical_command_builds_the_same_network(text, loss):
    network = spec.network(text, "relu", loss)
    words = shlex.split(naming.spec_command(network))[3:]
    options = dict(zip(words[::2], words[1::2], strict=True))
    again = spec.network(
        options["--layers"], options.get("--activation", "tanh"), options.get("--loss", "l2")
    )
    assert again == network
    name = naming.default_module_name(network)
    assert name.isidentifier() and name.startswith("mlp_")


def test_module_names_spell_each_item():
    network = spec.network("20,16+proj,ln,drop:0.5,16+res,bn,3")
    assert naming.default_module_name(network) == "mlp_20_16proj_ln_drop0p5_16res_bn_3"
    assert spec.decimal_text(sp.Rational(1, 8)) == "0.125"


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--layers", "4,3+res,2"], "3+res after width 4"),
        (["--layers", "4,1,ln,2"], "ln (layer 2) on a width of 1"),
        (["--layers", "4,drop:1,3"], "dropout rate 1 is outside [0, 1)"),
        (["--layers", "4,drop:1.5,3"], "dropout rate 1.5"),
        (["--layers", "4,drop:-0.1,3"], "'drop:-0.1'"),
        (["--layers", "4,drop:nan,3"], "'drop:nan'"),
        (["--layers", "4,drop,3"], "'drop'"),
        (["--layers", "4,3,drop:0.5"], "as the last layer"),
        (["--layers", "ln,3"], "the first item is the input width"),
        (["--layers", "4,3+foo,2"], "'3+foo'"),
        (["--layers", "4,ln"], "no dense or residual layer"),
        (["--layers", "4,3,ln", "--loss", "softmax_cross_entropy"], "end with a width, not ln"),
        (["--layers", "4,3+res+res,3"], "'3+res+res'"),
        (["--layers", "4,3,3+res,2", "--activation", "tanh,tanh"], "2 names for 3 layers"),
    ],
)
def test_bad_items_exit_2_with_one_line_and_write_nothing(
    tmp_path, monkeypatch, capsys, args, named
):
    monkeypatch.chdir(tmp_path)
    result = run_cli(capsys, *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("derive: error:"), result.stderr
    assert named in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_the_api_takes_items_and_emits_every_kind_with_a_projection(tmp_path):
    derived = api.derive([4, 3, "3+res", "drop:0.5", 2], end_to_end_depth=0)
    assert derived.ok and naming.layers_text(derived.network) == "4,3,3+res,drop:0.5,2"
    assert "def backprop(" in derived.source()  # emitted (tests/test_emit_kinds.py checks it)
    projected = api.derive([4, "3+proj", 2], end_to_end_depth=0)
    source = projected.source()  # the pair ([W1 | P1], b1) (tests/test_emit_kinds.py checks it)
    assert "W1, proj1 = W1proj1[:, :3], W1proj1[:, 3:]" in source
    assert "np.dot(x.T, abar1, dproj1)" in source  # ∂L/∂P_1 = Xᵀ ā_1, from the derivation
    projected.write(tmp_path)
    assert len(list(tmp_path.rglob("*.py"))) == 1


# --- the proofs ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dense", "res", "proj", "drop"])
@pytest.mark.parametrize("penalty", [False, True])
def test_block_lemmas_are_proved(kind, penalty):
    check = proof_layers.check_block_lemma(proof_layers.sample_block(kind), penalty=penalty)
    assert check.ok, check.detail


def test_the_residual_lemma_rejects_a_delta_without_the_skip_term():
    block = proof_layers.sample_block("res")
    claims = proof_layers.block_claims(block)
    assert claims[block.input] == Add(MatMul(delta(2), Transpose(W(2))), abar(2))
    claims[block.input] = MatMul(delta(2), Transpose(W(2)))
    check = proof_layers.check_block_lemma(block, claims)
    assert not check.ok and "a1" in check.detail


def test_the_projection_lemma_rejects_the_skip_term_without_its_projection():
    block = proof_layers.sample_block("proj")
    claims = proof_layers.block_claims(block)
    claims[block.input] = Add(MatMul(delta(2), Transpose(W(2))), abar(2))
    assert not proof_layers.check_block_lemma(block, claims).ok


def test_the_dropout_lemma_rejects_a_missing_scale():
    block = proof_layers.sample_block("drop")
    claims = proof_layers.block_claims(block)
    claims[block.input] = Hadamard(abar(2), block.mask)
    assert not proof_layers.check_block_lemma(block, claims).ok


def _without_skip(derivation: Derivation, layer: int) -> Derivation:
    """δ_layer with the skip term of residual layer+1 dropped (its ā_{layer+1})."""
    named = dict(derivation.named)
    wrong = named[delta(layer)]
    assert isinstance(wrong, Hadamard) and isinstance(wrong.left, Add)
    named[delta(layer)] = Hadamard(wrong.left.left, wrong.right)
    assert abar(layer + 1) not in (wrong.left.left,)
    deltas = {k: named[delta(k)] for k in derivation.deltas}
    return Derivation(derivation.network, deltas, derivation.gradients, named)


def test_the_delta_recursion_shows_the_skip_term():
    derivation = derive(spec.network("3,3,3+res,2"))
    assert derivation.named[delta(1)] == Hadamard(
        Add(MatMul(delta(2), Transpose(W(2))), abar(2)), ActivateDeriv(1, z(1))
    )


def test_induction_and_end_to_end_reject_a_delta_without_the_skip_term():
    derivation = derive(spec.network("3,3,3+res,drop:0.5,2"))
    assert proof_layers.check_blocks_are_lemma_instances(derivation).ok
    assert proof_layers.check_end_to_end_mixed(derivation, batch_size=2).ok
    wrong = _without_skip(derivation, 1)
    assert not proof_layers.check_blocks_are_lemma_instances(wrong).ok
    assert not proof_layers.check_end_to_end_mixed(wrong, batch_size=2).ok


def test_verify_runs_every_kinds_lemma_for_a_mixed_network():
    derivation = derive(spec.network("3,3,3+res,ln,bn,drop:0.5,3+proj,2", l2=True))
    checks = verification.verify(derivation)
    names = [c.name for c in checks]
    for expected in (
        "dense lemma",
        "residual lemma",
        "residual with projection lemma",
        "dropout lemma",
        "layer norm",
        "batch norm",
        "induction",
    ):
        assert expected in names
    assert all(c.ok for c in checks), [(c.name, c.detail) for c in checks if not c.ok]
    skipped = {c.name for c in checks if c.skipped}
    assert skipped == {"sum of shards", "end to end"}  # batch norm couples rows; depth 7


def test_verify_decides_each_block_lemma_once_and_never_keeps_a_failure(monkeypatch):
    """The block lemmas verify runs are decided once per process (in proof._LEMMAS_PROVED,
    which the tests that mutate code clear); a negative control is decided afresh and never
    kept, and a failed lemma is never kept."""
    dense_only = {k: v for k, v in proof._LEMMAS_PROVED.items() if k[0] != "mixed"}
    monkeypatch.setattr(proof, "_LEMMAS_PROVED", dict(dense_only))
    derivation = derive(spec.network("3,3,drop:0.5,2"))  # the cheapest lemmas: dense, dropout
    first = verification.verify(derivation, end_to_end_depth=0)
    mixed = {k for k in proof._LEMMAS_PROVED if k[0] == "mixed"}
    assert mixed == {
        ("mixed", "block lemma", "dense"),
        ("mixed", "block lemma", "drop"),
        ("mixed", "step lemma, any width"),
        ("mixed", "block lemma, any width", "drop"),
    }
    again = {c.name: c for c in verification.verify(derivation, end_to_end_depth=0)}
    for check in first:
        if "lemma" in check.name and check.name != "output lemma":
            assert again[check.name] is check, check.name
    block = proof_layers.sample_block("drop")
    claims = proof_layers.block_claims(block)
    claims[block.input] = Hadamard(abar(2), block.mask)  # without 1/(1 - p)
    assert not proof_layers.check_block_lemma(block, claims).ok
    assert {k for k in proof._LEMMAS_PROVED if k[0] == "mixed"} == mixed
    failed = dataclasses.replace(again["dropout lemma, any width"], ok=False, detail="a1: differs")
    monkeypatch.setattr(symbolic_widths, "check_block_lemma_symbolic", lambda kind: failed)
    monkeypatch.setattr(proof, "_LEMMAS_PROVED", dict(dense_only))
    checks = {c.name: c for c in verification.verify(derivation, end_to_end_depth=0)}
    assert checks["dropout lemma, any width"] is failed
    assert ("mixed", "block lemma, any width", "drop") not in proof._LEMMAS_PROVED
    assert ("mixed", "block lemma", "drop") in proof._LEMMAS_PROVED


@pytest.mark.slow
@pytest.mark.parametrize("text", ["3,3+proj,ln,2", "3,2,bn,2"])
def test_end_to_end_through_a_normalization(text):
    """About a minute each on a loaded machine: SymPy's diff through the roots."""
    derivation = derive(spec.network(text))
    check = proof_layers.check_end_to_end_mixed(derivation, batch_size=2)
    assert check.ok, check.detail
    layer = derivation.network.layers[1]
    gamma = layer.parameters()[0]
    tampered = dict(derivation.gradients)
    tampered[gamma] = Add(derivation.gradients[gamma], derivation.gradients[gamma])
    wrong = Derivation(derivation.network, derivation.deltas, tampered, derivation.named)
    assert not proof_layers.check_end_to_end_mixed(wrong, batch_size=2).ok


def test_the_normalization_layers_are_instances_of_their_lemma():
    derivation = derive(spec.network("3,2,ln,2+res,bn,2"))
    assert proof_layers.check_blocks_are_lemma_instances(derivation).ok
    gamma = next(v for v in derivation.gradients if v.name == "gamma2")
    tampered = dict(derivation.gradients)
    tampered[gamma] = a(2)
    wrong = Derivation(derivation.network, derivation.deltas, tampered, derivation.named)
    assert not proof_layers.check_blocks_are_lemma_instances(wrong).ok


def test_proof_verify_refuses_a_mixed_network():
    """proof.verify's checks are the dense ones: a mixed network goes to verification.verify."""
    with pytest.raises(ValueError, match=r"verification\.verify"):
        proof.verify(derive(spec.network("3,3+res,2")))


# --- the document and the picture ------------------------------------------------


def _document(text: str, **kw) -> tuple[str, str]:
    derivation = derive(spec.network(text, **kw))
    checks = verification.verify(derivation, end_to_end_depth=0)
    command = naming.spec_command(derivation.network)
    return latex_layers.document(derivation, checks, command), command


def test_the_document_prints_each_kind_and_the_skip_term():
    text, _ = _document("5,4,4+res,ln,drop:0.5,3+proj,bn,3", l2=True)
    for heading in (
        "Dense layer",
        "Residual block}",
        "Residual block with a projection",
        "Dropout",
        "Layer normalization",
        "Batch normalization",
    ):
        assert f"\\subsection*{{{heading}" in text
    assert r"h_{l} &= \sigma(z_{l})" in text  # per kind, not one sentence for all
    assert r"\delta_{1} &= (\delta_{2} W_{2}^{\top} + \bar{a}_{2}) \odot \sigma'(z_{1})" in text
    assert r"\bar{a}_{4} &= \delta_{5} W_{5}^{\top} + \bar{a}_{5} P_{5}^{\top}" in text
    assert r"M_{4}" in text and r"P_{5}" in text and r"\gamma_{3}" in text
    assert "FAILED" not in text


def test_a_dense_network_keeps_its_document():
    derivation = derive(spec.network("4,3"))
    checks = verification.verify(derivation, end_to_end_depth=0)
    assert latex_layers.document_body(derivation, checks) == latex.document_body(derivation, checks)


@pytest.mark.skipif(not HAS_PDFLATEX, reason="pdflatex is not installed")
def test_the_mixed_document_compiles_without_overfull_boxes(tmp_path):
    text, _ = _document("5,4,4+res,ln,drop:0.5,3+proj,bn,3")
    pages, hboxes, vboxes = layout_problems(compile_latex(tmp_path, text))
    assert 0 < pages <= 12 and not hboxes and vboxes == 0, (pages, hboxes, vboxes)


def test_the_graph_draws_skip_connections_and_each_kind():
    text = graph.dot(spec.network("5,4,4+res,ln,drop:0.5,3+proj,bn,3"))
    assert text.count('label="skip"') == 2  # the two residual blocks
    for kind in ("dense", "residual", "layer norm", "dropout", "batch norm"):
        assert f": {kind}, width" in text
    assert "M4 [" in text and "proj5 -> f" in text and "gamma3 -> f" in text
    assert graph.dot(spec.network("4,3")) == graph.dot(Network((4, 3), (TANH,), L2))


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz's dot")
def test_the_mixed_graph_renders():
    assert graph.render(graph.dot(spec.network("5,4,4+res,ln,3")), "svg").startswith(b"<?xml")


def test_the_cli_prints_a_mixed_derivation_with_latex(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    result = run_cli(capsys, "--layers", "4,3,3+res,drop:0.5,2", "--latex")
    assert result.returncode == 0, result.stderr
    assert "\\subsection*{Residual block}" in result.stdout
    assert r"\frac{a_{2} \odot M_{3}}{1 - p_{3}}" in result.stdout
    assert list(tmp_path.iterdir()) == []
