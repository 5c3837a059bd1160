"""The exact verification: it proves the derived identities and rejects wrong ones."""

from __future__ import annotations

import dataclasses
import random

import pytest
import sympy as sp

from derive import catalog, model, proof, spec, symbolic_widths
from derive.check import Status
from derive.derivation import derive
from derive.expr import Activate, ActivateDeriv, Hadamard, LossGrad, MatMul, SumRows, Transpose

G = model.delta(2)  # the step lemma's upstream gradient G = ∂L/∂z_2


def _derivation(layers: str):
    return derive(spec.network(layers))


@pytest.mark.parametrize("layers", ["4,3", "20,50,10", "3,4,5,6"])
def test_every_check_passes_for_the_derived_identities(layers):
    checks = proof.verify(_derivation(layers))
    assert [c.name for c in checks] == [
        "output lemma",
        "step lemma",
        "step lemma, any width",
        "induction",
        "activation tanh",
        "loss l2",
        "sum of shards",
        "end to end",
    ]
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]
    assert checks[-1].status is Status.PROVED  # end to end really ran at these depths


def test_networks_deeper_than_the_end_to_end_depth_are_proved_by_induction_and_say_so():
    depth = proof.END_TO_END_DEPTH + 1
    checks = proof.verify(_derivation(",".join(["3"] * (depth + 1))))
    by_name = {c.name: c for c in checks}
    assert by_name["induction"].ok and f"{depth} layers" in by_name["induction"].statement
    assert (
        by_name["end to end"].status is Status.SKIPPED
        and "induction" in by_name["end to end"].method
    )


@pytest.mark.slow
def test_depth_thirty_is_proved_end_to_end_by_default():
    checks = proof.verify(_derivation(",".join(["3"] * 31)))
    by_name = {c.name: c for c in checks}
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]
    assert (
        by_name["end to end"].status is Status.PROVED
        and "30 deltas" in by_name["end to end"].statement
    )


# --- negative controls: each wrong identity must be rejected -----------------

a_prime = ActivateDeriv(1, model.z(1))
STEP_LEMMA_MUTANTS = {
    "no transpose": {model.z(1): Hadamard(MatMul(G, model.W(2)), a_prime)},
    "a instead of a'": {
        model.z(1): Hadamard(MatMul(G, Transpose(model.W(2))), Activate(1, model.z(1)))
    },
    "wrong layer's a'": {
        model.z(1): Hadamard(MatMul(G, Transpose(model.W(2))), ActivateDeriv(2, model.z(1)))
    },
    "weight gradient without transpose": {model.W(2): MatMul(model.a(1), G)},
    "weight gradient from the wrong side": {model.W(2): MatMul(Transpose(G), model.a(1))},
    "bias summed over the wrong axis": {model.b(2): Transpose(SumRows(Transpose(G)))},
    "bias not summed": {model.b(2): G},
}


@pytest.mark.parametrize("mutant", list(STEP_LEMMA_MUTANTS))
def test_symbolic_width_step_lemma_rejects(mutant):
    assert symbolic_widths.check_step_lemma_symbolic().ok
    steps, seeds = proof.step_lemma_chain(2)
    claims = proof.backward(steps, seeds)
    claims = {v: claims[v] for v in (model.z(1), model.W(2), model.b(2))}
    claims.update(STEP_LEMMA_MUTANTS[mutant])
    assert not symbolic_widths.check_step_lemma_symbolic(claims).ok


@pytest.mark.parametrize("mutant", list(STEP_LEMMA_MUTANTS))
def test_step_lemma_rejects(mutant):
    correct = proof.check_step_lemma()
    assert correct.ok
    steps, seeds = proof.step_lemma_chain(2)
    claims = proof.backward(steps, seeds)
    claims = {v: claims[v] for v in (model.z(1), model.W(2), model.b(2))}
    claims.update(STEP_LEMMA_MUTANTS[mutant])
    assert not proof.check_step_lemma(claims).ok


class _MissingFactorTwo(catalog.LossFunction):
    """The l2 loss claiming ∂L/∂Ŷ = Ŷ - Y (the factor 2 dropped)."""

    @property
    def gradient(self) -> sp.Expr:
        return catalog.pred - catalog.target


def test_output_lemma_rejects_a_missing_factor_two():
    network = spec.network("4,3")
    assert proof.check_output_lemma(network).ok
    l2 = network.loss
    wrong = dataclasses.replace(
        network, loss=_MissingFactorTwo(l2.name, l2.entry, l2.latex_template, l2.summary)
    )
    assert not proof.check_output_lemma(wrong).ok


def test_output_lemma_rejects_a_instead_of_a_prime():
    network = spec.network("4,3")
    claim = Hadamard(LossGrad(model.a(1), model.Y), Activate(1, model.z(1)))
    assert not proof.check_output_lemma(network, {model.z(1): claim}).ok


def test_induction_rejects_a_layer_that_is_not_the_lemma():
    good = _derivation("3,4,5,6")
    assert proof.check_layers_are_lemma_instances(good).ok
    deltas = dict(good.deltas)
    deltas[1] = Hadamard(
        MatMul(model.delta(2), Transpose(model.W(3))), ActivateDeriv(1, model.z(1))
    )
    bad = dataclasses.replace(good, deltas=deltas)
    check = proof.check_layers_are_lemma_instances(bad)
    assert not check.ok and "delta1" in check.detail


@pytest.mark.parametrize("layers", ["20,50,10", "3,4,5,6"])
def test_end_to_end_rejects_a_wrong_layer_weight(layers):
    good = _derivation(layers)
    assert proof.check_end_to_end(good).ok
    deltas = dict(good.deltas)
    # δ_1 built with W_1 instead of W_2: square-free widths make it a shape error or a wrong value
    deltas[1] = Hadamard(
        MatMul(model.delta(2), Transpose(model.W(1))), ActivateDeriv(1, model.z(1))
    )
    assert not proof.check_end_to_end(dataclasses.replace(good, deltas=deltas)).ok


def test_end_to_end_rejects_a_wrong_activation_layer():
    good = _derivation("3,4,5,6")
    deltas = dict(good.deltas)
    deltas[2] = Hadamard(
        MatMul(model.delta(3), Transpose(model.W(3))), ActivateDeriv(1, model.z(2))
    )
    assert not proof.check_end_to_end(dataclasses.replace(good, deltas=deltas)).ok


def test_identical_distinguishes_functions_and_arguments():
    a, b = sp.Function("a_1"), sp.Function("a_2")
    x, y = sp.symbols("x y")
    assert proof.identical(sp.Matrix([[a(x) * 2]]), sp.Matrix([[a(x) + a(x)]]))[0]
    assert not proof.identical(sp.Matrix([[a(x)]]), sp.Matrix([[b(x)]]))[0]
    assert not proof.identical(sp.Matrix([[a(x)]]), sp.Matrix([[a(y)]]))[0]
    xi = sp.Dummy("xi")
    da = sp.Derivative(a(xi), xi).subs(xi, x + y)
    assert proof.identical(sp.Matrix([[sp.diff(a(x + y), x)]]), sp.Matrix([[da]]))[0]
    assert not proof.identical(sp.Matrix([[sp.diff(a(x + y), x)]]), sp.Matrix([[a(x + y)]]))[0]


def test_activation_rewrite_check_rejects_a_wrong_rewrite():
    tanh = catalog.activation("tanh")
    assert catalog.rewrite_holds(tanh, 1 - catalog.A**2)
    assert not catalog.rewrite_holds(tanh, 1 - catalog.A)


def test_a_default_lemma_is_decided_once_and_a_negative_control_always(monkeypatch):
    """The output, step, activation and loss lemmas are decided once per process (their claim
    depends only on the key proof._LEMMAS_PROVED holds); a claim or form passed in is decided
    afresh each time, and a failure is never kept."""
    monkeypatch.setattr(proof, "_LEMMAS_PROVED", {})
    network = spec.network("4,3")  # tanh, l2: the cheapest lemmas of each kind (softmax: +2 s)
    tanh = network.activations[0]
    defaults = [
        lambda: proof.check_output_lemma(network),
        proof.check_step_lemma,
        lambda: proof.check_activation(tanh),
        lambda: proof.check_loss(network.loss),
    ]
    for check in defaults:
        first = check()
        assert first.ok and check() is first
    assert len(proof._LEMMAS_PROVED) == 4
    wrong_claim = {model.z(1): Hadamard(LossGrad(model.a(1), model.Y), Activate(1, model.z(1)))}
    wrong = [
        lambda: proof.check_output_lemma(network, wrong_claim),
        lambda: proof.check_activation(tanh, code_form=2 * tanh.code_form),
        lambda: proof.check_loss(network.loss, code_form=2 * network.loss.code_form),
    ]
    for check in wrong:
        assert not check().ok
    assert len(proof._LEMMAS_PROVED) == 4
    failed = dataclasses.replace(defaults[0](), ok=False)
    monkeypatch.setattr(proof, "_output_lemma", lambda *args: failed)
    monkeypatch.setattr(proof, "_LEMMAS_PROVED", {})
    assert not proof.check_output_lemma(network).ok
    assert proof._LEMMAS_PROVED == {}


def test_end_to_end_is_decided_once_per_identity_and_a_wrong_one_always(monkeypatch):
    """A network that differs only in its activations and widths poses the same end-to-end
    identity (a_l undefined, widths by depth): decided once per process; points given (rng), a
    deeper chain, another loss or wrong claims are decided afresh, and a failure is not kept."""
    monkeypatch.setattr(proof, "_LEMMAS_PROVED", {})
    first = proof.check_end_to_end(_derivation("4,3"))
    assert first.ok
    same = derive(spec.network("3,5", "relu"))
    assert proof.check_end_to_end(same) is first
    assert len(proof._LEMMAS_PROVED) == 1
    again = proof.check_end_to_end(same, rng=random.Random(0), method="field")
    assert again.ok and again is not first
    deeper = proof.check_end_to_end(_derivation("4,3,2"))
    mse = proof.check_end_to_end(derive(spec.network("4,3", "tanh", "mse")))
    assert deeper.ok and mse.ok and len({id(first), id(deeper), id(mse)}) == 3
    assert len(proof._LEMMAS_PROVED) == 3
    good = _derivation("3,4,5,6")
    deltas = dict(good.deltas)
    deltas[2] = Hadamard(
        MatMul(model.delta(3), Transpose(model.W(3))), ActivateDeriv(1, model.z(2))
    )
    wrong = dataclasses.replace(good, deltas=deltas)
    assert not proof.check_end_to_end(wrong).ok and not proof.check_end_to_end(wrong).ok
    assert len(proof._LEMMAS_PROVED) == 3


def test_verify_decides_the_any_width_lemmas_once_per_process(monkeypatch):
    """Their claims depend on nothing verify passes in: decided by the first network only."""
    monkeypatch.setattr(proof, "_LEMMAS_PROVED", {})
    names = ("step lemma, any width", "penalty lemma, any width")
    first = {c.name: c for c in proof.verify(_derivation("4,3"), end_to_end_depth=0)}
    penalised = derive(spec.network("3,4,2", l2=True))
    again = {c.name: c for c in proof.verify(penalised, end_to_end_depth=0)}
    third = {c.name: c for c in proof.verify(penalised, end_to_end_depth=0)}
    assert first[names[0]].ok and again[names[0]] is first[names[0]]
    assert again[names[1]].ok and third[names[1]] is again[names[1]]
