"""The faster generic activations of the proof still decide the identities."""

from __future__ import annotations

import dataclasses

import pytest

from derive import model, proof, spec
from derive.derivation import derive
from derive.expr import ActivateDeriv, Hadamard, MatMul, SumRows, Transpose


@pytest.fixture(scope="module")
def derivation():
    return derive(spec.network("4,3,2"))


def test_derived_identities_are_proved(derivation):
    checks = [proof.check_output_lemma(derivation.network), proof.check_step_lemma()]
    checks.append(proof.check_end_to_end(derivation))
    assert all(c.ok for c in checks), [c.detail for c in checks if not c.ok]


def wrong_deltas(derivation):
    w2t = MatMul(model.delta(2), Transpose(model.W(2)))
    yield "a' dropped", w2t
    yield "a' of the wrong layer", Hadamard(w2t, ActivateDeriv(2, model.z(1)))
    yield "a' at the wrong point", Hadamard(w2t, ActivateDeriv(1, model.a(1)))


@pytest.mark.parametrize("case", range(3))
def test_wrong_delta_is_rejected(derivation, case):
    name, delta = list(wrong_deltas(derivation))[case]
    deltas = dict(derivation.deltas)
    deltas[1] = delta
    check = proof.check_end_to_end(dataclasses.replace(derivation, deltas=deltas))
    assert not check.ok, name


def test_generic_activation_is_one_object_per_layer():
    assert proof.generic_activation(3) is proof.generic_activation(3)
    assert proof.generic_activation(3)[0] is not proof.generic_activation(4)[0]


G = model.delta(2)
STEP_CLAIMS = {
    model.z(1): Hadamard(MatMul(G, Transpose(model.W(2))), ActivateDeriv(1, model.z(1))),
    model.W(2): MatMul(Transpose(model.a(1)), G),
    model.b(2): SumRows(G),
}
WRONG_STEP_CLAIMS = {
    "a' dropped": (model.z(1), MatMul(G, Transpose(model.W(2)))),
    "a' of the wrong layer": (
        model.z(1),
        Hadamard(MatMul(G, Transpose(model.W(2))), ActivateDeriv(2, model.z(1))),
    ),
    "bias gradient without the sum": (model.b(2), G),
    "weight gradient transposed": (model.W(2), MatMul(Transpose(G), model.a(1))),
}


def test_step_lemma_with_generic_upstream_loss_proves_the_claims():
    assert proof.check_step_lemma(STEP_CLAIMS).ok


@pytest.mark.parametrize("name", list(WRONG_STEP_CLAIMS))
def test_step_lemma_rejects_a_wrong_claim(name):
    var, wrong = WRONG_STEP_CLAIMS[name]
    assert not proof.check_step_lemma({**STEP_CLAIMS, var: wrong}).ok
