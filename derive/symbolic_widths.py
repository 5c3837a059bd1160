"""The step lemma for symbolic widths: one proof for every m, n_{l-1} and n_l.

The explicit check in ``proof`` uses small concrete widths.  Here every
matrix entry is a SymPy ``Indexed`` symbol with symbolic bounds, products are
``Sum``s over symbolic ranges, and SymPy's differentiation of an ``Indexed``
by an ``Indexed`` yields ``KroneckerDelta``s that ``doit`` sums away.  The
vector-Jacobian product Σ_{i,j} G_{ij} ∂(z_l)_{ij}/∂θ is compared with the
derived formula's entry (r, s) for an arbitrary upstream gradient G.

Index ranges are stated by substitution: with m = r + 1 + u (u ≥ 0) the
entry r is in range by construction, so no Piecewise range condition is left.
"""

from __future__ import annotations

import itertools
import time

import sympy as sp

from . import model
from .check import Check
from .derivation import backward, step_lemma_chain
from .expr import (
    Activate,
    ActivateDeriv,
    Add,
    Expr,
    Hadamard,
    InvSqrt,
    Loss,
    LossGrad,
    MatMul,
    Mean,
    Penalty,
    PenaltyGrad,
    Power,
    Scale,
    Spread,
    Sub,
    SumCols,
    SumRows,
    Transpose,
    Var,
    assert_never,
    substitute,
)

m, p, n = sp.symbols("m n_prev n_l", integer=True, positive=True)
r, s = sp.symbols("r s", integer=True, nonnegative=True)


def _a(layer: int) -> sp.Function:
    """Layer l's activation: undefined, and distinct per layer."""
    return sp.Function(f"a_{layer}")


class _Entries:
    """Entry (row, col) of an expression tree, with Sums over symbolic ranges."""

    def __init__(self, shapes: dict[Var, tuple[sp.Expr, sp.Expr]]) -> None:
        self.shapes = shapes
        self.bases = {v: sp.IndexedBase(v.name) for v in shapes}
        self._fresh = (
            sp.Symbol(f"k{i}", integer=True, nonnegative=True) for i in itertools.count()
        )

    def shape(self, e: Expr) -> tuple[sp.Expr, sp.Expr]:
        match e:
            case Var():
                return self.shapes[e]
            case MatMul(left, right):
                return self.shape(left)[0], self.shape(right)[1]
            case Transpose(arg):
                rows, cols = self.shape(arg)
                return cols, rows
            case SumRows(arg):
                return sp.Integer(1), self.shape(arg)[1]
            case Add(left, _) | Hadamard(left, _):
                return self.shape(left)
            case Activate(_, arg) | ActivateDeriv(_, arg) | PenaltyGrad(arg):
                return self.shape(arg)
            case Loss() | LossGrad() | Penalty():
                raise ValueError(f"{type(e).__name__}: the step lemma has no loss or penalty")
            case Sub() | Scale() | SumCols() | Mean() | Spread() | Power() | InvSqrt():
                raise ValueError(f"{type(e).__name__}: a normalization's node, no symbolic width")
            case _:
                assert_never(e)

    def __call__(self, e: Expr, row: sp.Expr, col: sp.Expr) -> sp.Expr:
        match e:
            case Var():
                rows, _ = self.shapes[e]
                return self.bases[e][col] if rows == 1 else self.bases[e][row, col]
            case MatMul(left, right):
                k = next(self._fresh)
                inner, rows_right = self.shape(left)[1], self.shape(right)[0]
                if inner != rows_right:
                    raise sp.ShapeError(f"cannot multiply: {inner} columns by {rows_right} rows")
                return sp.Sum(self(left, row, k) * self(right, k, col), (k, 0, inner - 1))
            case Add(left, right):
                return self(left, row, col) + self(right, row, col)
            case Hadamard(left, right):
                return self(left, row, col) * self(right, row, col)
            case Transpose(arg):
                return self(arg, col, row)
            case SumRows(arg):
                i = next(self._fresh)
                return sp.Sum(self(arg, i, col), (i, 0, self.shape(arg)[0] - 1))
            case Activate(layer, arg):
                return _a(layer)(self(arg, row, col))
            case ActivateDeriv(layer, arg):
                x = self(arg, row, col)
                return sp.Derivative(_a(layer)(x), x)
            case Loss() | LossGrad() | Penalty() | PenaltyGrad():
                # the penalty's part is proved apart (check_penalty_symbolic)
                raise ValueError(
                    f"{type(e).__name__}: no symbolic-width entries (not in the lemma)"
                )
            case Sub() | Scale() | SumCols() | Mean() | Spread() | Power() | InvSqrt():
                # the normalizations are proved at concrete sizes (proof_normalization)
                raise ValueError(f"{type(e).__name__}: a normalization's node, no symbolic width")
            case _:
                assert_never(e)


def _canonical(expr: sp.Expr) -> sp.Expr:
    """Rename every summation index to k0, k1, ... in order, and pull out constants."""
    counter = itertools.count()

    def rename(e: sp.Basic) -> sp.Basic:
        if isinstance(e, sp.Sum):
            body, limits = e.function, list(e.limits)
            for idx, (var, low, high) in enumerate(limits):
                fresh = sp.Symbol(f"_k{next(counter)}", integer=True, nonnegative=True)
                body = body.xreplace({var: fresh})
                limits[idx] = (fresh, low, high)
            return sp.Sum(rename(body), *limits)
        if not e.args:
            return e
        return e.func(*(rename(a) for a in e.args))

    return sp.factor_terms(rename(sp.expand(expr)))


def _equal_any(candidates: list[sp.Expr], rhs: sp.Expr) -> bool:
    """Some candidate equals rhs: equal canonical forms, else ``simplify`` of a difference.

    Both tests answer True only for equal expressions; the cheap one settles
    the usual case, so ``simplify`` runs only when it does not.
    """
    differences = [sp.expand(_canonical(c) - rhs) for c in candidates]
    return any(d == 0 for d in differences) or any(sp.simplify(d) == 0 for d in differences)


def check_step_lemma_symbolic(claims: dict[Var, Expr] | None = None, layer: int = 2) -> Check:
    """Σ_{i,j} G_ij ∂(z_l)_ij/∂θ_rs equals the claimed formula's entry (r, s), all widths."""
    start = time.perf_counter()
    steps, seeds = step_lemma_chain(layer)
    if claims is None:
        derived = backward(steps, seeds)
        claims = {v: derived[v] for v in (model.z(layer - 1), model.W(layer), model.b(layer))}
    below, upstream = model.z(layer - 1), model.delta(layer)
    shapes = {
        below: (m, p),
        model.a(layer - 1): (m, p),
        model.W(layer): (p, n),
        model.b(layer): (sp.Integer(1), n),
        upstream: (m, n),
    }
    entries = _Entries(shapes)
    i, j = sp.symbols("i j", integer=True, nonnegative=True)
    activation = {model.a(layer - 1): Activate(layer - 1, below)}  # a_{l-1} = a(z_{l-1})
    upper = substitute(next(st for st in steps if st.target == model.z(layer)).expr, activation)
    problems = []
    for var, formula in claims.items():
        rows, cols = shapes[var]
        row = sp.Integer(0) if rows == 1 else r
        u, t = sp.symbols("u t", integer=True, nonnegative=True)
        ranges = {rows: row + 1 + u, cols: s + 1 + t} if rows != 1 else {cols: s + 1 + t}
        target = entries.bases[var][s] if rows == 1 else entries.bases[var][row, s]
        summand = entries(upstream, i, j) * sp.diff(entries(upper, i, j), target)
        try:
            claim = entries(substitute(formula, activation), row, s)
        except KeyError as err:
            problems.append(f"{var.name}: unknown matrix {err}")
            continue
        except sp.ShapeError as err:
            problems.append(f"{var.name}: {err}")
            continue
        rhs = _canonical(claim.subs(ranges).doit())
        # A finite double sum may be taken in either order; KroneckerDelta
        # collapses only when its index is summed innermost, so try both.
        orders = [((i, 0, m - 1), (j, 0, n - 1)), ((j, 0, n - 1), (i, 0, m - 1))]
        sums = [sp.Sum(summand, *order).subs(ranges).doit() for order in orders]
        if not _equal_any(sums, rhs):
            problems.append(f"{var.name}: differs")
    return Check(
        "step lemma, any width",
        "the step lemma for symbolic m, n_{l-1}, n_l",
        "exact: Indexed entries, Sum over symbolic ranges, KroneckerDelta summed by SymPy",
        not problems,
        time.perf_counter() - start,
        "; ".join(problems),
    )


def check_penalty_symbolic(gradient: sp.Expr | None = None) -> Check:
    """∂/∂(W_l)_rs of λ/2 Σ_ij (W_l)_ij² is the derived penalty part's entry (r, s), all widths.

    The derived part is the ``PenaltyGrad`` the chain rule puts into ∂/∂W_l of the penalised
    step lemma; its entry is ``gradient`` (default ``penalty.GRADIENT``, λ w) at (W_l)_rs.
    """
    from . import penalty

    start = time.perf_counter()
    gradient = penalty.GRADIENT if gradient is None else gradient
    weights = model.W(2)
    derived = backward(*step_lemma_chain(2, penalty=True))[weights]
    problems = []
    if not (isinstance(derived, Add) and derived.right == PenaltyGrad(weights)):
        problems.append(f"{weights.name}: the derived gradient has no penalty term")
    base = sp.IndexedBase(weights.name)
    i, j = sp.symbols("i j", integer=True, nonnegative=True)
    u, t = sp.symbols("u t", integer=True, nonnegative=True)
    total = sp.Sum(penalty.ENTRY.subs(penalty.w, base[i, j]), (j, 0, n - 1), (i, 0, p - 1))
    lhs = sp.diff(total, base[r, s]).subs({p: r + 1 + u, n: s + 1 + t}).doit()
    if sp.simplify(lhs - gradient.subs(penalty.w, base[r, s])) != 0:
        problems.append(f"{weights.name}: differs")
    return Check(
        "penalty lemma, any width",
        "∂/∂(W_l)_rs of λ/2 Σ_ij (W_l)_ij² = λ (W_l)_rs for symbolic n_{l-1}, n_l",
        "exact: Indexed entries, Sum over symbolic ranges, KroneckerDelta summed by SymPy, "
        "λ a symbol",
        not problems,
        time.perf_counter() - start,
        "; ".join(problems),
    )
