"""The decision procedure's leaf: explicit loss matrices, fresh symbols for applied
functions, and the entrywise decision ``identical``.

``proof`` (the lemmas and the end-to-end check) and ``shards`` (the sum-of-shards
lemma) both decide identities with it; it imports neither of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

import sympy as sp
from sympy.core.function import AppliedUndef, ArgumentIndexError
from sympy.polys.domains import QQ
from sympy.polys.polyerrors import CoercionFailed
from sympy.polys.rings import PolyElement, PolyRing, ring

from . import catalog
from .catalog import A, LossFunction, batch, outputs, target


class GenericActivation(sp.Function):  # type: ignore[misc]  # SymPy has no types: its classes are Any
    """An arbitrary activation a_l, whose derivative is the arbitrary function Da_l.

    (The step lemma's arbitrary upstream loss g of many arguments is one too.)

    SymPy's chain rule applies to it as to any function; only the derivative
    is an opaque applied function Da_l(arg) instead of the
    ``Subs(Derivative(a_l(ξ), ξ), ξ, arg)`` an undefined function gets, which
    SymPy builds and compares much more slowly (the end-to-end check runs
    about twice as fast).  ``Atoms`` maps both a_l(arg) and Da_l(arg) to free
    symbols, so an identity still has to hold for every a_l and every a_l'.
    """

    nargs = 1


_GENERIC: dict[int, tuple[type[GenericActivation], sp.FunctionClass]] = {}


def generic_activation(layer: int) -> tuple[type[GenericActivation], sp.FunctionClass]:
    """(a_l, Da_l) for ``layer``, the same objects on every call."""
    if layer not in _GENERIC:
        derivative = sp.Function(f"Da_{layer}")

        def fdiff(self: GenericActivation, argindex: int = 1) -> sp.Expr:
            return derivative(self.args[0])

        activation = type(f"a_{layer}", (GenericActivation,), {"fdiff": fdiff})
        _GENERIC[layer] = (activation, derivative)
    return _GENERIC[layer]


def matmul(lhs: sp.Matrix, rhs: sp.Matrix) -> sp.Matrix:
    """lhs · rhs, each entry Σ_k lhs_ik rhs_kj as one ``Add``.

    SymPy's own product of matrices of expressions also multiplies every entry by 0 to
    find infinities (0 · ∞ = nan), which asks the assumptions system whether each nested
    entry is finite: most of the time spent building the unrolled network.
    """
    if lhs.cols != rhs.rows:
        raise sp.ShapeError(f"cannot multiply {lhs.shape} by {rhs.shape}")
    inner = range(lhs.cols)
    return sp.Matrix(
        lhs.rows,
        rhs.cols,
        [
            sp.Add(*(lhs[i, k] * rhs[k, j] for k in inner))
            for i in range(lhs.rows)
            for j in range(rhs.cols)
        ],
    )


def claimed_gradient(loss: LossFunction) -> sp.Expr:
    """The loss gradient as the generated code computes it (fused: through the link's A)."""
    if loss.link is None or loss.gradient_from_output is None:
        return loss.gradient
    return loss.gradient_from_output.subs(A, loss.link.definition)


@lru_cache(maxsize=256)
def _entry_formula(loss: LossFunction, gradient: bool, rows: int, cols: int) -> sp.Expr:
    """The entry's (or row's) loss or claimed gradient at m = rows, n_L = cols; a row loss's
    sums over the row written out (``doit``: the same every time, so computed once)."""
    formula = (claimed_gradient(loss) if gradient else loss.logit_entry).subs(
        {batch: rows, outputs: cols}
    )
    return formula.doit() if loss.rowwise else formula


def _loss_matrix(loss: LossFunction, p: sp.Matrix, y: sp.Matrix, gradient: bool) -> sp.Matrix:
    """L (1x1) or its claimed gradient, on explicit matrices: p is Ŷ, or z_L if fused."""
    formula = _entry_formula(loss, gradient, p.rows, p.cols)
    if loss.rowwise:  # one row at a time: Z[1..n], T[1..n] are that row's entries

        def at(r: int, c: int | None) -> sp.Expr:
            # xreplace: Z[j], T[j] and k are replaced as they stand, all at once (subs looks for
            # each inside every entry of p, nested expressions end to end: 9x slower)
            names = {catalog.Z[col + 1]: p[r, col] for col in range(p.cols)}
            names |= {catalog.T[col + 1]: y[r, col] for col in range(p.cols)}
            here = formula if c is None else formula.xreplace({catalog.k: sp.Integer(c + 1)})
            return here.xreplace(names)

        if gradient:
            return sp.Matrix(p.rows, p.cols, lambda r, c: at(r, c))
        return sp.Matrix([[sum((at(r, None) for r in range(p.rows)), sp.Integer(0))]])
    arg = loss.argument
    # xreplace: both are plain symbols, replaced at once (subs is several times slower)
    if gradient:
        return sp.Matrix(
            p.rows, p.cols, lambda r, c: formula.xreplace({arg: p[r, c], target: y[r, c]})
        )
    total = sp.Add(
        *(
            formula.xreplace({arg: p[r, c], target: y[r, c]})
            for r in range(p.rows)
            for c in range(p.cols)
        )
    )
    return sp.Matrix([[total]])


def targets(loss: LossFunction, rows: int, cols: int, assume: bool = True) -> sp.Matrix:
    """Symbolic targets; under the loss's assumption (Σ_i y_i = 1), the last column is solved for."""
    y = symbols_matrix("y", rows, cols)
    if loss.assumption and assume:
        for r in range(rows):
            y[r, cols - 1] = 1 - sum(y[r, : cols - 1])
    return y


def symbols_matrix(name: str, rows: int, cols: int) -> sp.Matrix:
    return sp.Matrix(rows, cols, lambda i, j: sp.Symbol(f"{name}_{i}{j}", real=True))


# --- the decision procedure --------------------------------------------------


class Atoms:
    """Maps applied undefined functions and their derivatives to fresh symbols.

    Two atoms get the same symbol exactly when they are the same function (or
    the same partial derivative of it) at structurally equal arguments.  Since
    the fresh symbols are then free, ``expand(lhs - rhs) == 0`` holds only if
    the identity holds for every function and every derivative value.
    """

    def __init__(self) -> None:
        self._symbols: dict[tuple[object, ...], sp.Symbol] = {}
        self._cache: dict[sp.Basic, sp.Basic] = {}

    def _symbol(self, key: tuple[object, ...]) -> sp.Symbol:
        if key not in self._symbols:
            self._symbols[key] = sp.Symbol(f"_atom{len(self._symbols)}")
        return self._symbols[key]

    def __call__(self, expr: sp.Basic) -> sp.Basic:
        if expr in self._cache:
            return self._cache[expr]
        result = self._map(expr)
        self._cache[expr] = result
        return result

    def _partial(
        self, applied: sp.Basic, var: sp.Basic, point: dict[sp.Basic, sp.Basic]
    ) -> sp.Symbol:
        if not isinstance(applied, AppliedUndef):
            raise TypeError(f"unexpected derivative of {applied}")
        args = applied.args
        slot = args.index(var)
        full = tuple(self(point.get(arg, arg)) for arg in args)
        return self._symbol(("d", applied.func.__name__, slot, full))

    def _map(self, expr: sp.Basic) -> sp.Basic:
        if isinstance(expr, sp.Subs):
            deriv = expr.expr
            if (
                not isinstance(deriv, sp.Derivative)
                or len(deriv.variable_count) != 1
                or deriv.variable_count[0][1] != 1
            ):
                raise TypeError(f"unexpected substituted derivative {expr}")
            point = dict(zip(expr.variables, expr.point, strict=True))
            return self._partial(deriv.expr, deriv.variables[0], point)
        if isinstance(expr, sp.Derivative):
            if len(expr.variable_count) != 1 or expr.variable_count[0][1] != 1:
                raise TypeError(f"unexpected higher derivative {expr}")
            return self._partial(expr.expr, expr.variables[0], {})
        if isinstance(expr, (AppliedUndef, GenericActivation)):
            return self._symbol(("f", expr.func.__name__, tuple(self(a) for a in expr.args)))
        if not expr.args:
            return expr
        return expr.func(*(self(a) for a in expr.args))


def polynomial_is_zero(expr: sp.Expr) -> bool | None:
    """Whether ``expr``, a polynomial in its free symbols with rational coefficients, is 0;
    None when it is not such a polynomial (exp, log, a division, a float, a radical...).

    The expression is rebuilt in SymPy's sparse polynomial ring over QQ (exact
    arithmetic on a dict of monomials): the normal form that ``expand`` reaches,
    so the answer is ``expand(expr) == 0``, found several times faster.
    """
    if not expr.free_symbols:
        return bool(expr == 0) if expr.is_Rational and not expr.has(sp.Float) else None
    polynomial = _polynomial(expr)
    return None if polynomial is None else not polynomial


def _polynomial(expr: sp.Expr) -> PolyElement | None:
    """``expr`` as an element of the sparse polynomial ring over QQ in its free symbols, or
    None when it is not a polynomial there (``polynomial_is_zero``)."""
    if expr.has(sp.Float):  # QQ would read 0.5 as 1/2: leave floats to expand
        return None
    symbols = tuple(expr.free_symbols)
    if not symbols:
        return None
    try:
        return ring(symbols, QQ)[0].from_expr(expr)
    except ValueError:  # not a polynomial in the symbols over QQ
        return None


def _first_differing(
    difference: PolyElement, tangent_of: Mapping[sp.Symbol, tuple[str, int, int]]
) -> tuple[str, int, int] | None:
    """The first claimed entry (in the claims' order) whose coefficient in ``difference``, a
    nonzero polynomial Σ_k t_k (∂_k - F_k), is not 0; None if a monomial is not of degree 1
    in the tangents t_k (the expression path then says which term)."""
    slots = [
        (index, tangent_of[symbol])
        for index, symbol in enumerate(difference.ring.symbols)
        if symbol in tangent_of
    ]
    differing = set()
    for monomial in difference.itermonoms():
        present = [(monomial[index], key) for index, key in slots if monomial[index]]
        if len(present) != 1 or present[0][0] != 1:
            return None
        differing.add(present[0][1])
    return next(key for key in tangent_of.values() if key in differing)


def identical(lhs: sp.Matrix, rhs: sp.Matrix) -> tuple[bool, str]:
    """Decide lhs == rhs entrywise, for every value of every undefined function."""
    if lhs.shape != rhs.shape:
        return False, f"shape {rhs.shape}, expected {lhs.shape}"
    atoms = Atoms()
    for i in range(lhs.rows):
        for j in range(lhs.cols):
            difference = atoms(lhs[i, j]) - atoms(rhs[i, j])
            zero = polynomial_is_zero(difference)
            if zero is False:
                return False, f"entry ({i}, {j}) differs"
            if zero:
                continue
            difference = sp.expand(difference)
            # exp and log of the entries (the cross-entropies) make it a rational
            # function in the exponentials, which ``cancel`` decides exactly.
            if difference != 0 and difference.has(sp.exp, sp.log):
                difference = sp.cancel(sp.together(difference))
            if difference != 0:
                return False, f"entry ({i}, {j}) differs"
    return True, ""


def directional_derivative(expr: sp.Expr, tangents: Mapping[sp.Symbol, sp.Expr]) -> sp.Expr:
    """Σ_k t_k ∂expr/∂θ_k for the symbols θ_k of ``tangents`` (θ_k → t_k), by the chain rule
    applied node by node (forward mode), each shared subexpression once.

    Why not ``sp.diff``: SymPy builds a ``Derivative`` at every node and asks its
    assumptions system about each result (``is_zero``, ``is_finite`` for ``0 * log``),
    about half of the proof's time.  The rules here are the textbook ones (sum,
    product, power, and SymPy's own ``fdiff`` for the partials of an applied
    function); any other node, or a function whose derivative SymPy defines some other
    way, is handed to ``sp.diff`` itself.  tests/test_chain_rule.py compares the result with
    ``sp.diff`` on every scalar the proofs differentiate for three networks.
    """
    zero = sp.S.Zero
    memo: dict[sp.Basic, sp.Expr] = {}

    def d(e: sp.Basic) -> sp.Expr:
        hit = memo.get(e)
        if hit is None:
            hit = memo[e] = rule(e)
        return hit

    def rule(e: sp.Basic) -> sp.Expr:
        if e in tangents:
            return tangents[e]
        args = e.args
        if not args:  # a symbol that is not differentiated, a number
            return zero
        if e.is_Add:
            return sp.Add(*(d(a) for a in args))
        if e.is_Mul:
            terms = []
            for i, a in enumerate(args):
                da = d(a)
                if da is not zero:
                    terms.append(sp.Mul(*args[:i], da, *args[i + 1 :]))
            return sp.Add(*terms)
        if e.is_Pow:
            base, exp = args
            db, de = d(base), d(exp)
            terms = []
            if db is not zero:  # SymPy's own form (``Pow._eval_derivative``): e · exp / base
                terms.append(sp.Mul(e, db, exp, sp.Pow(base, -1)))
            if de is not zero:
                terms.append(e * sp.log(base) * de)
            return sp.Add(*terms)
        if isinstance(e, sp.Function) and type(e)._eval_derivative is sp.Function._eval_derivative:
            terms = []
            for i, a in enumerate(args, 1):
                da = d(a)
                if da is zero:
                    continue
                try:
                    partial = e.fdiff(i)
                except ArgumentIndexError:
                    partial = sp.Function.fdiff(e, i)
                terms.append(partial * da)
            return sp.Add(*terms)
        eps = sp.Dummy("epsilon")  # anything else: SymPy's diff along the same direction
        moved = {s: s + eps * t for s, t in tangents.items()}
        return sp.diff(e.xreplace(moved), eps).subs(eps, 0)

    return d(expr)


def identical_gradient(
    scalar: sp.Expr, claims: list[tuple[str, sp.Matrix, sp.Matrix]]
) -> tuple[bool, str]:
    """Decide ∂scalar/∂θ = F_θ for every entry θ of every (name, entries, claimed) in
    ``claims``, for every value of every undefined function, with one walk of the scalar.

    The entries θ_k must be distinct symbols.  ``directional_derivative`` gives
    Σ_k t_k ∂scalar/∂θ_k, linear in fresh symbols t_k.  It equals Σ_k t_k F_k
    identically exactly when every coefficient does, i.e. ∂scalar/∂θ_k = F_k
    for every k: the decision of ``identical`` entry by entry, read off the
    coefficients, while the scalar is walked once instead of once per entry.
    """
    tangent_of: dict[sp.Symbol, tuple[str, int, int]] = {}
    tangents: dict[sp.Symbol, sp.Expr] = {}
    claimed = []
    for name, entries, value in claims:
        if entries.shape != value.shape:
            return False, f"{name}: shape {value.shape}, expected {entries.shape}"
        for i in range(entries.rows):
            for j in range(entries.cols):
                entry = entries[i, j]
                if not isinstance(entry, sp.Symbol) or entry in tangents:
                    raise ValueError(f"{name}: entry ({i}, {j}) is not a fresh symbol: {entry}")
                tangent = sp.Dummy(f"t_{entry.name}")
                tangent_of[tangent] = (name, i, j)
                tangents[entry] = tangent
                claimed.append(tangent * value[i, j])
    derivative = directional_derivative(scalar, tangents)
    atoms = Atoms()
    difference = atoms(derivative) - atoms(sp.Add(*claimed))
    polynomial = _polynomial(difference)
    if polynomial is not None:  # the ring says which entry differs, without ``expand``
        if not polynomial:
            return True, ""
        differing = _first_differing(polynomial, tangent_of)
        if differing is not None:
            name, i, j = differing
            return False, f"{name}: entry ({i}, {j}) differs"
    difference = sp.expand(difference)  # which entry differs, or exp and log to cancel
    if difference == 0:
        return True, ""
    coefficients: dict[tuple[str, int, int], list[sp.Expr]] = {}
    for term in sp.Add.make_args(difference):
        present = [t for t in term.free_symbols if t in tangent_of]
        if len(present) != 1:  # not linear in the tangents: cannot be Σ_k t_k F_k
            return False, f"a term with {len(present)} tangents differs"
        coefficients.setdefault(tangent_of[present[0]], []).append(term / present[0])
    for key in tangent_of.values():  # in the claims' order: the first differing entry
        entry_difference = sp.Add(*coefficients.get(key, []))
        # exp and log (the cross-entropies): a rational function in the exponentials
        if entry_difference != 0 and entry_difference.has(sp.exp, sp.log):
            entry_difference = sp.cancel(sp.together(entry_difference))
        if entry_difference != 0:
            name, i, j = key
            return False, f"{name}: entry ({i}, {j}) differs"
    return True, ""


# --- square roots (the normalizations) ----------------------------------------------


class Radicals:
    """Maps every half-integer power b^{k/2} to t_b^k, one positive atom t_b = √b per base.

    Bases are keyed by their expanded form, so the same √(v_i + ε) built two ways (by
    the IR's evaluator and by an independent forward) is one atom.  The relation
    t_b² = b is kept in ``relations`` for ``reduce``: with it, the decision is exact
    for every value of the entries at which the bases are positive.
    """

    def __init__(self) -> None:
        self._atoms: dict[sp.Expr, sp.Symbol] = {}

    def atom(self, base: sp.Expr) -> sp.Symbol:
        key = sp.expand(base)
        if key not in self._atoms:
            self._atoms[key] = sp.Symbol(f"_root{len(self._atoms)}", positive=True)
        return self._atoms[key]

    def __call__(self, expr: sp.Expr) -> sp.Expr:
        return expr.replace(
            lambda e: e.is_Pow and e.exp.is_Rational and e.exp.q == 2,
            lambda e: self.atom(e.base) ** (2 * e.exp),
        )

    def reduce(self, numerator: sp.Expr) -> sp.Expr:
        """A polynomial in the atoms with every t² replaced by its base: linear in each t."""
        result = sp.expand(numerator)
        for base, t in self._atoms.items():
            poly = sp.Poly(result, t)
            result = sp.expand(
                sum(
                    (c * base ** (k // 2) * t ** (k % 2) for (k,), c in poly.terms()),
                    sp.Integer(0),
                )
            )
        return result


class RadicalRing:
    """Polynomial-ring arithmetic (``sympy.polys.rings``) for the decision with radicals.

    Every power b^{k/2} of a base b (k odd, or k < 0) becomes an atom: t_b^k for k > 0 and
    s_b^{-k} for k < 0, with t_b = √b and s_b = 1/√b (so b^{-1} = s_b²); bases are keyed by
    their expanded form, so √(v_i + ε) built by the IR and by an independent forward are one
    atom.  Both sides of an entry are then polynomials over QQ in the entries' symbols and
    the atoms, and their difference d is put in normal form by ring operations only: for
    each base, d times t_b^N (N the highest power of s_b in d; t_b > 0) with s_b^a t_b^N =
    t_b^{N-a}, then t_b^{2q+r} = b^q t_b^r.  What remains is linear in each t_b, and is 0
    exactly when d is (the independence argument of ``identical_with_radicals``).
    """

    def __init__(self) -> None:
        self.bases: dict[sp.Expr, tuple[sp.Symbol, sp.Symbol]] = {}
        self._mapped: dict[sp.Basic, sp.Basic] = {}

    def _atoms(self, base: sp.Expr) -> tuple[sp.Symbol, sp.Symbol]:
        key = sp.expand(base)
        if key not in self.bases:
            k = len(self.bases)
            self.bases[key] = (
                sp.Symbol(f"_root{k}", positive=True),
                sp.Symbol(f"_invroot{k}", positive=True),
            )
        return self.bases[key]

    def map(self, expr: sp.Basic) -> sp.Basic:
        """``expr`` with every b^{k/2} (k odd or negative) replaced by its atom's power."""
        if expr in self._mapped:
            return self._mapped[expr]
        result = expr
        if expr.is_Pow and expr.exp.is_Rational and expr.exp.q <= 2:
            k = int(2 * expr.exp)
            if k < 0 or k % 2:
                t, inverse = self._atoms(self.map(expr.base))
                result = t**k if k > 0 else inverse ** (-k)
            else:
                result = self.map(expr.base) ** expr.exp
        elif expr.args:
            result = expr.func(*(self.map(a) for a in expr.args))
        self._mapped[expr] = result
        return result

    def decide(self, lhs: sp.Matrix, rhs: sp.Matrix) -> tuple[bool, str] | None:
        """``identical_with_radicals``' answer, or None when an entry is not a polynomial in
        symbols and atoms (exp, log, a division by a symbol): the caller decides it."""
        left = [self.map(e) for e in lhs]
        right = [self.map(e) for e in rhs]
        atoms = [a for pair in self.bases.values() for a in pair]
        symbols = set().union(*(e.free_symbols for e in [*left, *right, *self.bases]))
        symbols -= set(atoms)
        gens = [*sorted(symbols, key=str), *atoms]
        if not gens:
            gens = [sp.Dummy("unused")]
        poly_ring = PolyRing(gens, QQ)
        try:
            pairs = [
                (poly_ring.from_expr(a), poly_ring.from_expr(b))
                for a, b in zip(left, right, strict=True)
            ]
            bases = [
                (poly_ring.from_expr(b), poly_ring(t), poly_ring(s))
                for b, (t, s) in self.bases.items()
            ]
        except (ValueError, CoercionFailed):
            return None
        cols = lhs.cols
        for index, (a, b) in enumerate(pairs):
            difference = a - b
            for base, t, inverse in bases:
                if not difference:
                    break
                difference = _normal_form(difference, base, t, inverse)
            if difference:
                return False, f"entry ({index // cols}, {index % cols}) differs"
        return True, ""


def _normal_form(
    poly: PolyElement, base: PolyElement, t: PolyElement, inverse: PolyElement
) -> PolyElement:
    """``poly`` times t^N (N its degree in s = 1/t), s t = 1 and t² = ``base`` applied."""
    poly_ring = poly.ring
    t_index, s_index = poly_ring.gens.index(t), poly_ring.gens.index(inverse)
    top = max(monomial[s_index] for monomial in poly.itermonoms())
    by_half: dict[int, dict[tuple[int, ...], object]] = {}
    for monomial, coefficient in poly.iterterms():
        exponents = list(monomial)
        power = exponents[t_index] + top - exponents[s_index]
        exponents[s_index] = 0
        exponents[t_index] = power % 2
        by_half.setdefault(power // 2, {})[tuple(exponents)] = coefficient
    result = poly_ring.zero
    power_of_base = poly_ring.one
    for half in range(max(by_half) + 1):
        if half in by_half:
            result += poly_ring.from_dict(by_half[half]) * power_of_base
        power_of_base = power_of_base * base
    return result


def identical_with_radicals(lhs: sp.Matrix, rhs: sp.Matrix) -> tuple[bool, str]:
    """Decide lhs == rhs entrywise where the entries hold square roots √b of polynomials.

    Each √b becomes a positive atom t (``Radicals``); a difference that does not expand to
    0 is brought over one denominator and its numerator reduced modulo t² = b.  Both steps
    only substitute equals, so "equal" is sound.  What remains is linear in each t, and
    products of roots of bases that are multiplicatively independent modulo squares are
    linearly independent over the rational functions, so "differs" is exact for such bases
    (the normalizations' v_i + ε are: each is of degree 1 in ε, hence irreducible, and
    they are distinct); for other bases it can only err towards "differs".

    The same decision runs in polynomial-ring arithmetic first (``RadicalRing``: no
    ``expand``/``together`` of SymPy expressions, 2-3x faster on the normalizations'
    lemmas); entries that are not polynomials in symbols and atoms (exp, log) take the
    expression path below.
    """
    if lhs.shape != rhs.shape:
        return False, f"shape {rhs.shape}, expected {lhs.shape}"
    decided = RadicalRing().decide(lhs, rhs)  # ring arithmetic: the fast path
    if decided is not None:
        return decided
    radicals = Radicals()
    for i in range(lhs.rows):
        for j in range(lhs.cols):
            difference = sp.expand(radicals(lhs[i, j]) - radicals(rhs[i, j]))
            if difference != 0:
                numerator, _ = sp.fraction(sp.together(difference))
                difference = radicals.reduce(numerator)
            if difference != 0:
                return False, f"entry ({i}, {j}) differs"
    return True, ""
