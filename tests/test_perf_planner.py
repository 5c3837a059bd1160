"""The in-place compiler of entrywise formulas (``derive.backends.numpy.planner.inplace``)."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from derive import catalog
from derive.backends.numpy.planner import (
    Rows,
    Unsupported,
    as_array,
    constant_name,
    constant_value,
    constants_in,
    inplace,
)

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
    sp.Max(0, z),
    sp.Min(z, A),
    sp.Piecewise((1, A > 0), (0, True)),
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


UNSUPPORTED = [
    sp.Max(0, 2 * z),
    sp.erf(z),
    (1 + z) * (2 + sp.exp(z)),
    sp.Piecewise((2, z > 0), (0, True)),
]


@pytest.mark.parametrize("formula", UNSUPPORTED, ids=str)
def test_unsupported_formulas_are_refused(formula):
    with pytest.raises(Unsupported):
        inplace(formula, {z: "zz"}, "out")


def test_numbers_as_arrays_compute_the_same_bits_in_both_dtypes():
    """With ``as_array`` each number is a 0-d array of the buffer's dtype, named in
    the statements (``constants_in`` lists them); the results equal the literal form's
    bit for bit, and float32 stays float32."""
    formula = 2 * (1 - A**2) + 0.5
    for dtype in (np.float64, np.float32):
        aa = np.linspace(-0.95, 0.9, 12).astype(dtype)
        literal = run(inplace(formula, {A: "aa"}, "out"), {"aa": aa.copy()}, "out")
        statements = inplace(formula, {A: "aa"}, "out", as_array)
        names = {constant_name(v): np.array(v, dtype) for v in constants_in(statements)}
        assert names and all(name in " ".join(statements) for name in names)
        arrays = run(statements, {"aa": aa.copy(), **names}, "out")
        assert arrays.dtype == dtype
        np.testing.assert_array_equal(arrays, literal)


@pytest.mark.parametrize("value", [1.0, 2.0, 0.5, -1.0, 0.0, 0.2, 10.0])
def test_constant_names_round_trip(value):
    name = constant_name(value)
    assert name.isidentifier() and constant_value(name) == value


def test_a_row_wise_log_sum_exp_goes_through_a_row_buffer():
    """softmax's exp(z - LSE(z)): the reduction once into the (m, 1) buffer, spread
    over a full one; when ready (an earlier statement left it) it is not recomputed."""
    softmax = catalog.activation("softmax").code_form
    zz = np.random.default_rng(0).standard_normal((4, 3))
    names = {z: "zz", catalog.Z: "zz"}
    statements = inplace(softmax, names, "out", rows=Rows("rows", "spread"))
    env = {"zz": zz, "rows": np.full((4, 1), np.nan), "spread": np.full((4, 3), np.nan)}
    got = run(statements, env, "out")
    expected = np.exp(zz - np.logaddexp.reduce(zz, axis=1, keepdims=True))
    np.testing.assert_array_equal(got, expected)
    assert sum("reduce" in s for s in statements) == 1
    again = inplace(softmax, names, "out", rows=Rows("rows", "spread", ready=True))
    assert not any("reduce" in s for s in again)
    with pytest.raises(Unsupported):  # nowhere to put the reduction
        inplace(softmax, names, "out")
