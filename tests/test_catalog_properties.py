"""Property: for random depths 1-4, widths 1-7, per-layer activation lists and
losses, the generated module's gradients match central differences."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from helpers import (
    ACTS,
    FUSED,
    LOSSES,
    assert_grads_close,
    catalog_module,
    central_differences,
    targets,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


@st.composite
def networks(draw):
    depth = draw(st.integers(1, 4))
    sizes = draw(st.lists(st.integers(1, 7), min_size=depth + 1, max_size=depth + 1))
    loss = draw(st.sampled_from(LOSSES))
    acts = draw(
        st.lists(
            st.sampled_from([*ACTS, "leaky_relu:0.3", "elu:0.5"]), min_size=depth, max_size=depth
        )
    )
    if loss in FUSED:
        acts[-1] = "softmax" if loss == "softmax_cross_entropy" else "sigmoid"
    return sizes, acts, loss, draw(st.integers(0, 2**32 - 1))


def _gradients_match_finite_differences(case):
    sizes, acts, loss, seed = case
    mod = catalog_module(",".join(map(str, sizes)), ",".join(acts), loss)
    rng = np.random.default_rng(seed)
    params = [
        (rng.standard_normal((a, b)) / np.sqrt(a), rng.standard_normal((1, b)))
        for a, b in itertools.pairwise(sizes)
    ]
    x = rng.standard_normal((3, sizes[0]))
    y = targets(loss, rng, 3, sizes[-1])
    _, grads = mod.backprop(params, x, y)
    assert_grads_close(
        grads, central_differences(lambda p: mod.loss(p, x, y), params), rtol=1e-5, atol=1e-6
    )


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks())
def test_gradients_match_finite_differences(case):
    """10 random networks in the default run (each is derived and rendered: ~0.2 s), 90 more in
    the slow run; every activation x loss pair is checked against finite differences by default
    in test_catalog.py (test_every_pair_matches_reference_and_finite_differences)."""
    _gradients_match_finite_differences(case)


@pytest.mark.slow
@settings(max_examples=90, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks())
def test_gradients_match_finite_differences_on_more_networks(case):
    _gradients_match_finite_differences(case)
