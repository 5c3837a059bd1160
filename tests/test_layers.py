"""The network is its layers: steps numbered by position, parameters and named adjoints per layer."""

from __future__ import annotations

from derive import catalog
from derive.derivation import backward, derive
from derive.expr import ActivateDeriv, Hadamard, MatMul, Transpose
from derive.layers import Dense, Layer
from derive.model import LOSS, Network, W, a, b, delta, z

TANH, RELU = catalog.activation("tanh"), catalog.activation("relu")


def _network(sizes=(4, 3, 2), acts=(TANH, RELU)) -> Network:
    return Network(sizes, acts, catalog.loss_function("l2"))


def test_layers_are_built_from_the_constructor():
    network = _network()
    assert network.layers == (Dense(1, 4, 3, TANH), Dense(2, 3, 2, RELU))
    layer: Layer = network.layers[0]  # Dense satisfies the protocol (mypy checks this line)
    assert layer.parameters() == (W(1), b(1))
    assert network.parameters() == [W(1), b(1), W(2), b(2)]


def test_steps_are_numbered_by_position():
    network = _network((5, 4, 3, 2), (TANH, RELU, TANH))
    steps = network.steps()
    assert [s.index for s in steps] == list(range(1, len(steps) + 1))
    assert [s.target for s in steps] == [z(1), a(1), z(2), a(2), z(3), a(3), LOSS]
    assert network.f_index() == {a(0): 0, z(1): 1, a(1): 2, z(2): 3, a(2): 4, z(3): 5, a(3): 6}
    assert network.penalty_steps() == []


def test_the_named_adjoints_come_from_the_layers_steps():
    network = _network()
    assert network.adjoint_names() == {z(1): delta(1), z(2): delta(2)}
    assert set(derive(network).deltas) == {1, 2}


def test_an_unnamed_adjoint_stays_a_plain_gradient():
    """Without ``Step.adjoint`` the sweep names nothing: z_2's gradient is not written in δ_2."""
    steps = [s for layer in _network().layers for s in layer.steps()]
    plain = [type(s)(s.index, s.target, s.expr, s.layer) for s in steps]
    named = backward(steps, {a(2): LOSS})
    unnamed = backward(plain, {a(2): LOSS})
    assert named[W(2)] == MatMul(Transpose(a(1)), delta(2))
    assert unnamed[W(2)] == MatMul(Transpose(a(1)), Hadamard(LOSS, ActivateDeriv(2, z(2))))
