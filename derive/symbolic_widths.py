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

import functools
import itertools
import random
import time
from collections.abc import Callable, Iterable

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
from .layers import Dropout, Residual

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
            case Activate(_, arg) | ActivateDeriv(_, arg) | PenaltyGrad(arg) | Scale(arg, _):
                return self.shape(arg)
            case Loss() | LossGrad() | Penalty():
                raise ValueError(f"{type(e).__name__}: the step lemma has no loss or penalty")
            case Sub() | SumCols() | Mean() | Spread() | Power() | InvSqrt():
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
                (rows, cols), (rows_right, cols_right) = self.shape(left), self.shape(right)
                if cols != cols_right or rows_right not in (rows, 1):  # a bias row broadcasts
                    raise sp.ShapeError(
                        f"cannot add {rows} x {cols} and {rows_right} x {cols_right}"
                    )
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
            case Scale(arg, factor):  # a constant factor, e.g. dropout's 1/(1 - p)
                return factor * self(arg, row, col)
            case Loss() | LossGrad() | Penalty() | PenaltyGrad():
                # the penalty's part is proved apart (check_penalty_symbolic)
                raise ValueError(
                    f"{type(e).__name__}: no symbolic-width entries (not in the lemma)"
                )
            case Sub() | SumCols() | Mean() | Spread() | Power() | InvSqrt():
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


def _equal_any(candidates: Iterable[Callable[[], sp.Expr]], rhs: sp.Expr) -> bool:
    """Some candidate equals rhs: equal canonical forms, else ``simplify`` of a difference.

    Both tests answer True only for equal expressions; the cheap one settles
    the usual case, so ``simplify`` runs only when it does not.  Candidates are
    made one at a time, and none after the first that has equal canonical forms.
    The candidates are one sum in different orders: a difference that is not 0 at
    one point (``_nonzero_at_a_point``) answers False for all of them, without
    ``simplify`` (which could only fail on them: the wrong claims, the controls).
    """
    differences = []
    for make in candidates:
        difference = sp.expand(_canonical(make()) - rhs)
        if difference == 0:
            return True
        if _nonzero_at_a_point(difference):
            return False
        differences.append(difference)
    return any(sp.simplify(d) == 0 for d in differences)


def _nonzero_at_a_point(difference: sp.Expr) -> bool:
    """True only if ``difference`` is not identically 0: its value at one point is not 0.

    The point: every width, index and offset (an integer symbol) a small integer (the
    ranges are substitutions, so every value is in range), the dropout rate 1/3, every
    matrix entry a rational from a fixed generator; the sums then are finite and expand.
    What is left is exact: a polynomial with rational coefficients in the undefined
    activations' values a_l(q), Da_l(q) at rational points, which are independent of one
    another (some function takes any values at finitely many points), so a polynomial
    that expands to non-zero is non-zero for some activation.  Anything else (a SymPy
    ``Derivative``, as the step lemma's a'(x); a symbol not placed; a sum left) answers
    False: nothing is decided here then.
    """
    if difference.has(sp.Derivative, sp.Subs):  # the step lemma's a'(x): not placed
        return False
    matrices = {base.label for base in difference.atoms(sp.IndexedBase)}
    symbols = sorted(difference.free_symbols - difference.atoms(sp.Indexed) - matrices, key=str)
    point: dict[sp.Basic, sp.Expr] = {}
    for k, symbol in enumerate(symbols):
        if symbol.is_integer and symbol.is_nonnegative:
            point[symbol] = sp.Integer(1 + k % 2)
        elif symbol is DROP_RATE:
            point[symbol] = sp.Rational(1, 3)
        else:
            return False
    value = difference.xreplace(point).doit()
    rng = random.Random(2026)  # a fixed point: the same answer on every run
    entries = sorted(value.atoms(sp.Indexed), key=str)
    value = value.xreplace(
        {e: sp.Rational(rng.randint(-40, 40), rng.randint(1, 9)) for e in entries}
    )
    if value.free_symbols or value.has(sp.Sum, sp.Piecewise):
        return False
    return bool(sp.expand(value) != 0)


def _summed(
    summand: sp.Expr,
    order: tuple[tuple[sp.Symbol, int, sp.Expr], ...],
    ranges: dict[sp.Expr, sp.Expr],
) -> sp.Expr:
    return sp.Sum(summand, *order).subs(ranges).doit()


def _sum_orders(
    summand: sp.Expr, indices: tuple[sp.Symbol, sp.Symbol], counts: tuple[sp.Expr, sp.Expr]
) -> list[tuple[tuple[sp.Symbol, int, sp.Expr], ...]]:
    """Both orders of the finite double sum, the one that sums a KroneckerDelta's index
    innermost first (only there does SymPy collapse it)."""
    limits = [(index, 0, count - 1) for index, count in zip(indices, counts, strict=True)]
    orders = [tuple(limits), tuple(reversed(limits))]
    in_deltas = {s for d in summand.atoms(sp.KroneckerDelta) for s in d.free_symbols}
    return sorted(orders, key=lambda order: order[0][0] not in in_deltas)


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
        # collapses only when its index is summed innermost: that order first, then the other.
        sums = (
            functools.partial(_summed, summand, order, ranges)
            for order in _sum_orders(summand, (i, j), (m, n))
        )
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


# --- the residual, projection and dropout blocks ------------------------------------

BLOCKS = ("res", "proj", "drop")
"""The block lemmas proved here for all widths (``proof_layers.sample_block``'s kinds).

Layer norm and batch norm are not: their statistics are sums over the symbolic range
inside a square root, 1/√(Σ_k (x_k - μ)²/n + ε), and the exact decision for them
(``proof_normalization``) reduces each radical modulo t² = v + ε over explicit entries;
with a symbolic n there are no explicit entries to reduce, and SymPy cannot sum the
KroneckerDeltas that ∂/∂x_rs leaves inside the root back out of it."""


class _GenericEntries(_Entries):
    """Entries with the activation ``engine.generic_activation``'s a_l, whose derivative is
    the undefined Da_l: SymPy's chain rule through a_l(Σ_k ...) gives Da_l(Σ_k ...) (an
    undefined function's derivative by a sum is not a ``Derivative`` SymPy can build)."""

    def __call__(self, e: Expr, row: sp.Expr, col: sp.Expr) -> sp.Expr:
        from .engine import generic_activation

        match e:
            case Activate(layer, arg):
                return generic_activation(layer)[0](self(arg, row, col))
            case ActivateDeriv(layer, arg):
                return generic_activation(layer)[1](self(arg, row, col))
        return super().__call__(e, row, col)


def _cases(rows: sp.Expr, cols: sp.Expr) -> list[dict[sp.Expr, sp.Expr]]:
    """Substitutions that put entry (r, s) in range for every width, as a cover of cases.

    Distinct rows and cols symbols: rows = r + 1 + u, cols = s + 1 + t (one case).  One
    symbol n for both (a square n x n weight of a residual block): r ≤ s < n and s ≤ r < n,
    i.e. s = r + v or r = s + v, and n = max(r, s) + 1 + t; together every r, s < n.
    """
    u, t, v = sp.symbols("u t v", integer=True, nonnegative=True)
    if rows == 1:
        return [{cols: s + 1 + t}]
    if rows != cols:
        return [{rows: r + 1 + u, cols: s + 1 + t}]
    return [{s: r + v, rows: r + v + 1 + t}, {r: s + v, rows: s + v + 1 + t}]


def _closed(expr: Expr, definitions: dict[Var, Expr]) -> Expr:
    """``expr`` with every named adjoint and intermediate replaced by its definition."""
    previous = None
    while previous != expr:
        previous, expr = expr, substitute(expr, definitions)
    return expr


DROP_RATE = sp.Symbol("p", nonnegative=True)
"""The dropout rate: a symbol (``proof_layers.RATE``'s), so the lemma holds for every p ≠ 1."""


def sample_block(kind: str) -> Residual | Dropout:
    """The block at index 2 (``proof_layers.sample_block``'s, whose widths are concrete;
    here only its steps are read, the widths are the symbols of ``check_block_lemma_symbolic``)."""
    from .catalog import activation

    act = activation("tanh")  # replaced by an undefined a_2 with derivative Da_2
    if kind == "res":
        return Residual(2, 3, 3, act)
    if kind == "proj":
        return Residual(2, 3, 2, act, projection=True)
    if kind == "drop":
        return Dropout(2, 3, DROP_RATE)
    raise ValueError(f"no symbolic-width block lemma for {kind!r}")


def block_claims_symbolic(kind: str) -> dict[Var, Expr]:
    """The chain rule's ∂/∂a_{l-1} and parameter gradients of the block (its ``lemma_chain``,
    fed by G = ∂L/∂a_l), through its named adjoints (δ_l, ā_l)."""
    layer = sample_block(kind)
    derived = backward(*layer.lemma_chain())
    return {v: derived[v] for v in (layer.input, *layer.parameters())}


def check_block_lemma_symbolic(kind: str, claims: dict[Var, Expr] | None = None) -> Check:
    """Σ_{i,j} G_ij ∂(a_l)_ij/∂θ_rs equals the claimed gradient's entry (r, s) for the
    residual (equal widths: n x n), projection (n_{l-1} -> n_l) or dropout block, every m
    and width, G = ∂L/∂a_l arbitrary; ``claims`` replaces the derived ones (the controls)."""
    start = time.perf_counter()
    layer = sample_block(kind)
    steps, seeds = layer.lemma_chain()
    derived = backward(steps, seeds)
    if claims is None:
        claims = block_claims_symbolic(kind)
    names = {st.adjoint: derived[st.target] for st in steps if st.adjoint is not None}
    intermediates = {st.target: st.expr for st in steps if st.target != layer.output}
    definitions = {**names, **intermediates}
    output = _closed(next(st.expr for st in steps if st.target == layer.output), intermediates)
    width_in = n if kind in ("res", "drop") else p  # equal widths: one symbol
    shapes: dict[Var, tuple[sp.Expr, sp.Expr]] = {
        layer.input: (m, width_in),
        model.INCOMING: (m, n),
    }
    for var in layer.parameters():
        shapes[var] = (sp.Integer(1), n) if var.kind is model.b(0).kind else (width_in, n)
    if isinstance(layer, Dropout):
        shapes[layer.mask] = (m, n)
    entries = _GenericEntries(shapes)
    i, j = sp.symbols("i j", integer=True, nonnegative=True)
    problems = []
    for var, formula in claims.items():
        rows, cols = shapes[var]
        row = sp.Integer(0) if rows == 1 else r
        target = entries.bases[var][s] if rows == 1 else entries.bases[var][row, s]
        summand = entries(model.INCOMING, i, j) * sp.diff(entries(output, i, j), target)
        try:
            claim = entries(_closed(formula, definitions), row, s)
        except KeyError as err:
            problems.append(f"{var.name}: unknown matrix {err}")
            continue
        except sp.ShapeError as err:
            problems.append(f"{var.name}: {err}")
            continue
        for ranges in _cases(rows, cols):
            rhs = _canonical(claim.subs(ranges).doit())
            sums = (
                functools.partial(_summed, summand.subs(ranges), order, ranges)
                for order in _sum_orders(summand.subs(ranges), (i, j), (m, n))
            )
            if not _equal_any(sums, rhs):
                problems.append(f"{var.name}: differs")
                break
    label = {"res": "residual", "proj": "residual with projection", "drop": "dropout"}[kind]
    widths = "n_l = n_{l-1}" if kind in ("res", "drop") else "n_{l-1}, n_l"
    return Check(
        f"{label} lemma, any width",
        f"the {label} block lemma for symbolic m, {widths}, any G = ∂L/∂a_l",
        "exact: Indexed entries, Sum over symbolic ranges, KroneckerDelta summed by SymPy"
        + (", p a symbol" if kind == "drop" else ""),
        not problems,
        time.perf_counter() - start,
        "; ".join(problems),
    )
