"""The faster generic activations of the proof still decide the identities."""

from __future__ import annotations

import dataclasses

import pytest
import sympy as sp

from derive import engine, model, proof, spec
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


# --- the one-pass gradient decision and the polynomial-ring zero test ---------

x, y, u = sp.symbols("x y u", real=True)
a = engine.generic_activation(1)[0]
SCALAR = a(x * y + u) ** 2 + x**3 * u
ENTRIES = sp.Matrix([[x, y, u]])
DA = engine.generic_activation(1)[1](x * y + u)
GRADIENT = sp.Matrix([[2 * a(x * y + u) * DA * y + 3 * x**2 * u, 2 * a(x * y + u) * DA * x]])


def test_identical_gradient_proves_every_entry_in_one_pass():
    right = GRADIENT.row_join(sp.Matrix([[2 * a(x * y + u) * DA + x**3]]))
    assert engine.identical_gradient(SCALAR, [("θ", ENTRIES, right)]) == (True, "")


@pytest.mark.parametrize("entry", range(3))
def test_identical_gradient_names_the_entry_that_differs(entry):
    right = GRADIENT.row_join(sp.Matrix([[2 * a(x * y + u) * DA + x**3]]))
    wrong = right.copy()
    wrong[0, entry] += x * y  # one entry off by a polynomial
    assert engine.identical_gradient(SCALAR, [("θ", ENTRIES, wrong)]) == (
        False,
        f"θ: entry (0, {entry}) differs",
    )


def test_identical_gradient_rejects_a_wrong_shape_and_an_entry_that_is_no_symbol():
    assert engine.identical_gradient(SCALAR, [("θ", ENTRIES, GRADIENT)])[0] is False
    with pytest.raises(ValueError, match="not a fresh symbol"):
        engine.identical_gradient(SCALAR, [("θ", sp.Matrix([[x + y]]), sp.Matrix([[1]]))])


def test_identical_gradient_cancels_exponentials_per_entry():
    scalar = sp.log(1 + sp.exp(x * y))
    sigmoid = 1 / (1 + sp.exp(-x * y))  # = exp(xy) / (1 + exp(xy)): equal only after cancel
    assert engine.identical_gradient(
        scalar, [("θ", sp.Matrix([[x, y]]), sp.Matrix([[y * sigmoid, x * sigmoid]]))]
    ) == (True, "")
    assert engine.identical_gradient(
        scalar, [("θ", sp.Matrix([[x, y]]), sp.Matrix([[y * sigmoid, y * sigmoid]]))]
    ) == (False, "θ: entry (0, 1) differs")


@pytest.mark.parametrize(
    ("expr", "zero"),
    [
        ((x + y) ** 2 - x**2 - 2 * x * y - y**2, True),
        ((x + y) ** 2 - x**2 - y**2, False),
        (sp.Rational(1, 2) * x - x / 2, True),
        (sp.Rational(1, 3) * x * u - x * u / 2, False),
        (sp.Integer(0), True),
        (sp.Integer(3), False),
        (sp.exp(x) - sp.exp(x) * 1, True),  # SymPy already folded it to 0
        (sp.exp(x) * sp.exp(y) - sp.exp(x + y), None),  # not a polynomial: expand decides
        (x / y - 1, None),
        (sp.Float(0.5) * x - y / 2, None),  # floats are left to expand
        (sp.sqrt(2) * x, None),
    ],
)
def test_polynomial_is_zero_decides_polynomials_and_refuses_the_rest(expr, zero):
    assert engine.polynomial_is_zero(expr) is zero
    if zero is not None:
        assert zero == (sp.expand(expr) == 0)  # the same answer as expand
