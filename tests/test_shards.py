"""The sum-of-shards lemma: proved for every loss, and wrong weightings are rejected."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from derive import catalog, shards


@pytest.mark.parametrize("loss", list(catalog.LOSSES))
def test_lemma_is_proved_for_every_loss(loss):
    check = shards.check_sum_of_shards(catalog.LOSSES[loss])
    assert check.ok, check.detail
    assert ("m_k/m" in check.statement) == (loss == "mse")


@pytest.mark.parametrize(
    ("loss", "claimed"),
    [
        ("mse", [sp.Rational(1, 3)] * 3),  # the unweighted mean of shard gradients
        ("mse", [sp.Integer(1)] * 3),  # the plain sum, right only for summed losses
        ("l2", [sp.Rational(1, 3)] * 3),
        pytest.param(  # weights of the wrong shards: slow, as cancel must show nonzero
            "softmax_cross_entropy",
            [sp.Rational(3, 6), sp.Rational(2, 6), sp.Rational(1, 6)],
            marks=pytest.mark.slow,
        ),
    ],
)
def test_wrong_weights_are_rejected(loss, claimed):
    check = shards.check_sum_of_shards(catalog.LOSSES[loss], claimed)
    assert not check.ok and check.detail


def test_shard_weights_are_row_fractions_for_means_only():
    assert shards.weights(catalog.LOSSES["mse"], (2, 3, 1)) == [
        sp.Rational(1, 3),
        sp.Rational(1, 2),
        sp.Rational(1, 6),
    ]
    assert shards.weights(catalog.LOSSES["l2"], (2, 3, 1)) == [1, 1, 1]


def test_weighted_shard_gradients_equal_the_full_batch_numerically(make_module):
    module = make_module("4,5,3", "tanh", "mse")
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((9, 4)), rng.standard_normal((9, 3))
    params = module.init_params(1)
    _, full = module.backprop(params, x, y)
    sizes = (2, 3, 4)
    combined = [(np.zeros_like(w), np.zeros_like(b)) for w, b in params]
    unweighted = [(np.zeros_like(w), np.zeros_like(b)) for w, b in params]
    start = 0
    for size, weight in zip(sizes, shards.weights(catalog.LOSSES["mse"], sizes), strict=True):
        rows = slice(start, start + size)
        _, part = module.backprop(params, x[rows], y[rows])
        for (cw, cb), (uw, ub), (pw, pb) in zip(combined, unweighted, part, strict=True):
            cw += float(weight) * pw
            cb += float(weight) * pb
            uw += pw / len(sizes)
            ub += pb / len(sizes)
        start += size
    for (cw, cb), (fw, fb) in zip(combined, full, strict=True):
        np.testing.assert_allclose(cw, fw, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(cb, fb, rtol=1e-12, atol=1e-15)
    assert not np.allclose(unweighted[0][0], full[0][0], rtol=1e-6)
