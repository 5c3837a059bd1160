"""The in-place compiler of entrywise formulas (``derive.backends.numpy.planner.inplace``)."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from derive import catalog
from derive.backends.numpy.planner import Unsupported, inplace

z, A = catalog.z, catalog.A


def run(statements: list[str], env: dict[str, np.ndarray], buf: str) -> np.ndarray:
    env = {**env, "np": np, buf: np.full_like(next(iter(env.values())), np.nan)}
    for statement in statements:
        exec(statement, env)
    return env[buf]


FORMULAS = [
    1 - A**2,
    A * (1 - A),
    sp.tanh(z),
    sp.exp(-z),
    1 / (1 + sp.exp(-z)),
    sp.log(1 + sp.exp(z)),
    3 * A - 2,
    -(A**2),
    A - 2 * z,
    2 - A,
    -A,
    A / z,
    2 / (1 + A),
    z - A**2,
    1 / A - 1,
    A * sp.exp(-A),
]


@pytest.mark.parametrize("formula", FORMULAS, ids=str)
def test_compiled_formula_matches_sympy(formula):
    values = {z: np.linspace(-3, 3, 12), A: np.linspace(-0.95, 0.9, 12)}  # no zeros
    names = {z: "zz", A: "aa"}
    statements = inplace(formula, names, "out")
    got = run(statements, {"zz": values[z].copy(), "aa": values[A].copy()}, "out")
    expected = sp.lambdify((z, A), formula, "numpy")(values[z], values[A])
    np.testing.assert_allclose(got, expected, rtol=1e-14, atol=1e-15)
    assert all("out" in s for s in statements)  # each statement writes into the buffer


def test_comparison_catches_a_miscompiled_formula():
    """Negative control: the check above rejects statements computing the wrong thing."""
    values = np.linspace(-0.95, 0.9, 13)
    wrong = run(inplace(1 + A**2, {A: "aa"}, "out"), {"aa": values.copy()}, "out")
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(wrong, 1 - values**2, rtol=1e-14)


def test_inputs_are_not_overwritten():
    aa = np.linspace(-0.5, 0.5, 5)
    run(inplace(A * (1 - A), {A: "aa"}, "out"), {"aa": aa}, "out")
    np.testing.assert_array_equal(aa, np.linspace(-0.5, 0.5, 5))


@pytest.mark.parametrize("formula", [sp.Max(0, z), sp.erf(z), (1 + z) * (2 + sp.exp(z))], ids=str)
def test_unsupported_formulas_are_refused(formula):
    with pytest.raises(Unsupported):
        inplace(formula, {z: "zz"}, "out")
