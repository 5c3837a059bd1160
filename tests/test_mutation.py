"""Mutation tests: corrupt the chain rule, a derived identity or the template,
and show that both the proof and the numerical tests notice."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import reference
from helpers import load_module

from derive import derivation, model, proof, spec
from derive.backends.numpy import module as numpy_module
from derive.expr import ActivateDeriv, Hadamard, MatMul, Transpose, substitute

LAYERS = "3,4,2,5"  # non-square everywhere, depth 3


@pytest.fixture
def lemmas_decided_afresh(monkeypatch):
    """A mutant of the code the lemmas are decided by (the chain rule, a catalog rewrite) is
    what no process does: such a test starts as a fresh process, with no lemma proved yet
    (proof._LEMMAS_PROVED, restored afterwards). The tests that mutate a derived identity
    only pose new claims, which are never taken from the cache."""
    monkeypatch.setattr(proof, "_LEMMAS_PROVED", {})


def _module_from(tmp_path, derived, template_source=None, monkeypatch=None):
    if template_source is not None:
        monkeypatch.setattr(numpy_module, "template_source", template_source)
    path = tmp_path / "mutant.py"
    path.write_text(numpy_module.render(derived, "mutant"), encoding="utf-8")
    return load_module(path)


def gradients_agree(module) -> bool:
    """True if the module's gradients match the independent reference."""
    rng = np.random.default_rng(0)
    params = module.init_params(seed=0)
    for _, b in params:
        b += rng.standard_normal(b.shape)
    x, y = rng.standard_normal((6, module.SIZES[0])), rng.standard_normal((6, module.SIZES[-1]))
    try:
        _, grads = module.backprop(params, x, y)
    except (ValueError, IndexError):  # a mutant may not even have consistent shapes
        return False
    _, ref = reference.backprop(params, x, y)
    return all(
        g.shape == r.shape and np.allclose(g, r, rtol=1e-9, atol=1e-12)
        for pair, ref_pair in zip(grads, ref, strict=True)
        for g, r in zip(pair, ref_pair, strict=True)
    )


def _pull_without_transpose(original):
    """The chain rule with one mutation: a product's left operand loses its transpose."""

    def mutant(expr, adjoint, into):
        if isinstance(expr, MatMul):
            mutant(expr.left, MatMul(adjoint, expr.right), into)
            mutant(expr.right, MatMul(Transpose(expr.left), adjoint), into)
        else:
            original(expr, adjoint, into)

    return mutant


def proof_holds(derived) -> bool:
    return all(check.ok for check in proof.verify(derived))


def test_unmutated_pipeline_passes_both(tmp_path):
    derived = derivation.derive(spec.network(LAYERS))
    assert proof_holds(derived)
    assert gradients_agree(_module_from(tmp_path, derived))


def test_chain_rule_without_transpose_fails_proof_and_numerics(
    tmp_path, monkeypatch, lemmas_decided_afresh
):
    monkeypatch.setattr(derivation, "pull", _pull_without_transpose(derivation.pull))
    derived = derivation.derive(spec.network(LAYERS))
    failed = [c.name for c in proof.verify(derived) if not c.ok]
    assert "step lemma" in failed
    assert not gradients_agree(_module_from(tmp_path, derived))


@pytest.mark.parametrize("layer", [1, 2])
def test_identity_with_a_swapped_layer_index_fails_proof_and_numerics(tmp_path, layer):
    good = derivation.derive(spec.network(LAYERS))
    deltas = dict(good.deltas)
    # δ_l = (δ_{l+1} W_{l+1}ᵀ) ⊙ a'(z_l) written with W_l instead of W_{l+1}
    deltas[layer] = substitute(deltas[layer], {model.W(layer + 1): model.W(layer)})
    bad = dataclasses.replace(good, deltas=deltas)
    assert deltas[layer] != good.deltas[layer]
    assert not proof_holds(bad)
    assert not gradients_agree(_module_from(tmp_path, bad))


def test_identity_with_the_wrong_layers_activation_fails_the_proof():
    """With one activation everywhere the numbers cannot tell, but the proof can."""
    good = derivation.derive(spec.network(LAYERS))
    deltas = dict(good.deltas)
    # δ_1 = (δ_2 W_2ᵀ) ⊙ a_2'(z_1): the derivative of layer 2's activation
    deltas[1] = Hadamard(
        MatMul(model.delta(2), Transpose(model.W(2))), ActivateDeriv(2, model.z(1))
    )
    assert deltas[1] != good.deltas[1]
    assert not proof_holds(dataclasses.replace(good, deltas=deltas))


def test_corrupted_template_fails_the_numerical_tests(tmp_path, monkeypatch):
    real = numpy_module.template_source("module.py.jinja")
    corrupted = real.replace("    return value, out\n", "    return value, out[::-1]\n")
    assert corrupted != real
    derived = derivation.derive(spec.network(LAYERS))
    source = numpy_module.template_source  # the included training runtime stays as it is
    module = _module_from(
        tmp_path,
        derived,
        lambda name: corrupted if name == "module.py.jinja" else source(name),
        monkeypatch,
    )
    assert not gradients_agree(module)


def test_corrupted_tanh_rewrite_fails_proof_and_numerics(
    tmp_path, monkeypatch, lemmas_decided_afresh
):
    from derive import catalog

    tanh = catalog.activation("tanh")
    monkeypatch.setattr(type(tanh), "derivative_from_output", property(lambda self: 1 - catalog.A))
    derived = derivation.derive(spec.network(LAYERS))
    assert not all(c.ok for c in proof.verify(derived) if c.name == "activation tanh")
    assert not gradients_agree(_module_from(tmp_path, derived))


def test_cli_exits_1_and_writes_nothing_when_a_proof_fails(
    tmp_path, monkeypatch, capsys, lemmas_decided_afresh
):
    from derive import cli

    monkeypatch.setattr(derivation, "pull", _pull_without_transpose(derivation.pull))
    code = cli.main(["--layers", "3,4,2", "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 1
    assert "FAILED   step lemma" in captured.out and "nothing written" in captured.err
    assert not (tmp_path / "out").exists()


DEEP_LAYERS = "3,4,2,5,3,4,2"  # depth 6: the end-to-end check evaluates over a prime field


@pytest.mark.parametrize("layer", [1, 3, 5])
def test_a_swapped_layer_index_fails_end_to_end_at_depth_six(tmp_path, layer):
    good = derivation.derive(spec.network(DEEP_LAYERS))
    assert all(c.ok for c in proof.verify(good))
    deltas = dict(good.deltas)
    deltas[layer] = substitute(deltas[layer], {model.W(layer + 1): model.W(layer)})
    bad = dataclasses.replace(good, deltas=deltas)
    failed = {c.name: c for c in proof.verify(bad) if not c.ok}
    assert "end to end" in failed and "randomised exact" in failed["end to end"].method
    assert not gradients_agree(_module_from(tmp_path, bad))


def test_the_wrong_layers_activation_fails_end_to_end_at_depth_six():
    good = derivation.derive(spec.network(DEEP_LAYERS, "tanh,relu,tanh,gelu,sigmoid,tanh"))
    deltas = dict(good.deltas)
    deltas[4] = Hadamard(
        MatMul(model.delta(5), Transpose(model.W(5))), ActivateDeriv(5, model.z(4))
    )
    failed = [c.name for c in proof.verify(dataclasses.replace(good, deltas=deltas)) if not c.ok]
    assert "end to end" in failed
