"""From the chain rule's raw adjoint to the compact form a textbook prints, by stated rules.

The raw output of ``derivation.backward`` for a normalization layer is correct
but long: every spread, every sum and every factor of the chain stays where the
rules put it.  This module rewrites it with the rules below, each a small named
function, applied by a loop until none changes anything:

* expand (the normal form itself): entrywise products distribute over sums and
  differences, scalars move to the front, like terms combine; a spread is the
  identity in index notation (a row times a matrix multiplies every row);
* ``fold_definitions``: a subexpression that is a step's definition becomes the
  step's name, e.g. (v + ε)^{-1/2} = s;
* ``centred_through_normalized``: c = x̂ ⊘ s (from x̂ = c ⊙ s, and s > 0);
* ``sums_are_linear``: Σ(k A + B) = k ΣA + ΣB;
* ``constants_leave_sums``: Σ_a(r ⊙ A) = r ⊙ Σ_a A when r does not vary along a;
* ``sum_of_a_constant``: Σ_a 1 = N, the count along a;
* ``centred_sums_vanish``: Σ_a c = Σ_a x̂ = 0 over the normalized axis a
  (Σ(x - μ) = Σx - N·Σx/N);

then, once: ``collect`` takes the common factor of all terms (the factors every
term has, and the content of the coefficients) in front, and ``abbreviate``
names a product that has a name (ĝ = G ⊙ γ).  An expression holding a node
the normal form does not know is returned unchanged (and is proved as it is).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import reduce

import sympy as sp

from .expr import (
    Add,
    Axis,
    Expr,
    Hadamard,
    InvSqrt,
    Power,
    Scale,
    Spread,
    Sub,
    SumCols,
    SumRows,
    Var,
    total,
)
from .shapes import Shape, constant_along, shape

ONE = sp.Integer(1)


# --- the normal form: a sum of coefficient x monomial ----------------------------


@dataclass(frozen=True)
class Summed:
    """Σ over ``axis`` of a polynomial: one factor of a monomial."""

    axis: Axis
    body: Poly


Factor = Var | InvSqrt | Summed
"""An atom of a monomial: a named matrix, an unnamed radical, or a sum."""


def _key(factor: Factor) -> tuple[int, str]:
    return (2 if isinstance(factor, Summed) else 1 if isinstance(factor, InvSqrt) else 0), repr(
        factor
    )


@dataclass(frozen=True)
class Monomial:
    """An entrywise product of factors with integer exponents (sorted, none zero)."""

    powers: tuple[tuple[Factor, int], ...] = ()

    @staticmethod
    def of(powers: Mapping[Factor, int]) -> Monomial:
        kept = sorted(((f, k) for f, k in powers.items() if k != 0), key=lambda p: _key(p[0]))
        return Monomial(tuple(kept))

    def times(self, other: Monomial) -> Monomial:
        powers = dict(self.powers)
        for f, k in other.powers:
            powers[f] = powers.get(f, 0) + k
        return Monomial.of(powers)

    def degree(self) -> int:
        return sum(k for _, k in self.powers)

    def sums(self) -> int:
        return sum(1 for f, _ in self.powers if isinstance(f, Summed))


@dataclass(frozen=True)
class Poly:
    """Σ coefficient · monomial; coefficients are SymPy scalars in the counts."""

    terms: tuple[tuple[Monomial, sp.Expr], ...] = ()

    @staticmethod
    def of(terms: Mapping[Monomial, sp.Expr]) -> Poly:
        kept = [(mono, sp.cancel(k)) for mono, k in terms.items()]
        kept = [(mono, k) for mono, k in kept if k != 0]
        return Poly(tuple(sorted(kept, key=lambda t: repr(t[0]))))

    @staticmethod
    def atom(factor: Factor, exponent: int = 1) -> Poly:
        return Poly.of({Monomial.of({factor: exponent}): ONE})

    @staticmethod
    def constant(value: sp.Expr) -> Poly:
        return Poly.of({Monomial(): value})

    def plus(self, other: Poly) -> Poly:
        terms = dict(self.terms)
        for mono, k in other.terms:
            terms[mono] = terms.get(mono, 0) + k
        return Poly.of(terms)

    def scaled(self, factor: sp.Expr) -> Poly:
        return Poly.of({mono: k * factor for mono, k in self.terms})

    def times(self, other: Poly) -> Poly:
        terms: dict[Monomial, sp.Expr] = {}
        for m1, k1 in self.terms:
            for m2, k2 in other.terms:
                mono = m1.times(m2)
                terms[mono] = terms.get(mono, 0) + k1 * k2
        return Poly.of(terms)


ZERO = Poly()


class NotPolynomial(Exception):
    """A node the normal form does not cover (the expression then stays raw)."""


def expand(expr: Expr) -> Poly:
    """The normal form of an IR tree of entrywise products, sums, spreads and sums over an axis."""
    if isinstance(expr, (Var, InvSqrt)):
        return Poly.atom(expr)
    if isinstance(expr, Add):
        return expand(expr.left).plus(expand(expr.right))
    if isinstance(expr, Sub):
        return expand(expr.left).plus(expand(expr.right).scaled(-ONE))
    if isinstance(expr, Scale):
        return expand(expr.arg).scaled(expr.factor)
    if isinstance(expr, Hadamard):
        return expand(expr.left).times(expand(expr.right))
    if isinstance(expr, Power):
        base = expand(expr.arg)
        return reduce(Poly.times, [base] * expr.exponent)
    if isinstance(expr, Spread):
        return expand(expr.arg)
    if isinstance(expr, (SumRows, SumCols)):
        axis = Axis.BATCH if isinstance(expr, SumRows) else Axis.FEATURES
        return Poly.atom(Summed(axis, expand(expr.arg)))
    raise NotPolynomial(type(expr).__name__)


# --- what the rules may use about a layer ----------------------------------------


@dataclass(frozen=True)
class Facts:
    """A layer's facts, each a consequence of its steps (``normalization.Normalization.facts``)."""

    shapes: Mapping[Var, Shape]
    counts: Mapping[Axis, sp.Symbol]
    definitions: Mapping[Expr, Var] = field(default_factory=dict)  # step expression -> its name
    centred: Mapping[Var, Axis] = field(default_factory=dict)  # sums to 0 over the axis
    normalized: tuple[Var, Var, Var] | None = None  # (c, x̂, s) with x̂ = c ⊙ s, s > 0
    abbreviations: Mapping[Var, Expr] = field(default_factory=dict)  # names of products
    order: tuple[Var, ...] = ()  # how factors are written, left to right


def factor_shape(factor: Factor, facts: Facts) -> Shape:
    if isinstance(factor, Summed):
        rows, cols = poly_shape(factor.body, facts)
        return (ONE, cols) if factor.axis is Axis.BATCH else (rows, ONE)
    return shape(factor, facts.shapes)


def monomial_shape(mono: Monomial, facts: Facts) -> Shape:
    return _union(*(factor_shape(f, facts) for f, _ in mono.powers))


def poly_shape(poly: Poly, facts: Facts) -> Shape:
    return _union(*(monomial_shape(mono, facts) for mono, _ in poly.terms))


def _constant_along(factor: Factor, axis: Axis, facts: Facts) -> bool:
    return constant_along(factor_shape(factor, facts), axis)


# --- the rules: each rewrites one factor (None: does not apply) ---------------------

Rule = Callable[[Factor, Facts], Poly | None]


def fold_definitions(factor: Factor, facts: Facts) -> Poly | None:
    """A step's defining expression is replaced by the step's name: (v + ε)^{-1/2} = s."""
    if not isinstance(factor, Summed) and factor in facts.definitions:
        return Poly.atom(facts.definitions[factor])
    return None


def centred_through_normalized(factor: Factor, facts: Facts) -> Poly | None:
    """c = x̂ ⊘ s, since x̂ = c ⊙ s and s > 0."""
    if facts.normalized is None or factor != facts.normalized[0]:
        return None
    _, xhat, s = facts.normalized
    return Poly.of({Monomial.of({xhat: 1, s: -1}): ONE})


def sums_are_linear(factor: Factor, facts: Facts) -> Poly | None:
    """Σ(k A + B) = k ΣA + ΣB: a sum holds one monomial with coefficient 1."""
    if not isinstance(factor, Summed):
        return None
    terms = factor.body.terms
    if len(terms) == 1 and terms[0][1] == ONE:
        return None
    parts = [Poly.atom(Summed(factor.axis, Poly.of({mono: ONE}))).scaled(k) for mono, k in terms]
    return reduce(Poly.plus, parts, ZERO)


def constants_leave_sums(factor: Factor, facts: Facts) -> Poly | None:
    """Σ_a(r ⊙ A) = r ⊙ Σ_a A for every factor r that does not vary along a."""
    if not isinstance(factor, Summed) or len(factor.body.terms) != 1:
        return None
    (mono, k), axis = factor.body.terms[0], factor.axis
    out = {f: e for f, e in mono.powers if _constant_along(f, axis, facts)}
    if not out:
        return None
    rest = Monomial.of({f: e for f, e in mono.powers if f not in out})
    inner = Summed(axis, Poly.of({rest: k}))
    return Poly.of({Monomial.of(out): ONE}).times(Poly.atom(inner))


def sum_of_a_constant(factor: Factor, facts: Facts) -> Poly | None:
    """Σ_a k = N k, N the count along a."""
    if not isinstance(factor, Summed):
        return None
    if len(factor.body.terms) != 1 or factor.body.terms[0][0] != Monomial():
        return None
    return Poly.constant(factor.body.terms[0][1] * facts.counts[factor.axis])


def centred_sums_vanish(factor: Factor, facts: Facts) -> Poly | None:
    """Σ_a c = Σ_a x̂ = 0 over the normalized axis a (Σ(x - μ) = Σx - N Σx/N)."""
    if not isinstance(factor, Summed) or len(factor.body.terms) != 1:
        return None
    mono, _ = factor.body.terms[0]
    if len(mono.powers) != 1 or mono.powers[0][1] != 1:
        return None
    var = mono.powers[0][0]
    if isinstance(var, Var) and facts.centred.get(var) is factor.axis:
        return ZERO
    return None


RULES: tuple[Rule, ...] = (
    fold_definitions,
    centred_through_normalized,
    sums_are_linear,
    constants_leave_sums,
    sum_of_a_constant,
    centred_sums_vanish,
)


def _inverse(poly: Poly, rule: str) -> Poly:
    if len(poly.terms) != 1:
        raise NotPolynomial(f"{rule} gave a sum under a negative power")
    mono, k = poly.terms[0]
    return Poly.of({Monomial.of({f: -e for f, e in mono.powers}): 1 / k})


def _rewrite(poly: Poly, rule: Rule, facts: Facts, fired: list[str]) -> Poly:
    """``rule`` applied once to every factor, innermost sums first."""
    result = ZERO
    for mono, k in poly.terms:
        term = Poly.constant(k)
        for f, e in mono.powers:
            if isinstance(f, Summed):
                f = Summed(f.axis, _rewrite(f.body, rule, facts, fired))
            replaced = rule(f, facts)
            if replaced is None:
                term = term.times(Poly.atom(f, e))
                continue
            fired.append(rule.__name__)
            if e < 0:  # (k M)^{-e}: only a single term has an inverse
                replaced, e = _inverse(replaced, rule.__name__), -e
            term = term.times(reduce(Poly.times, [replaced] * e))
        result = result.plus(term)
    return result


def normal_form(
    poly: Poly, facts: Facts, rules: tuple[Rule, ...] = RULES
) -> tuple[Poly, list[str]]:
    """The rules applied in turn until a whole pass changes nothing; the names of those that fired."""
    fired: list[str] = []
    for _ in range(100):
        before = poly
        for rule in rules:
            poly = _rewrite(poly, rule, facts, fired)
        if poly == before:
            return poly, fired
    raise RuntimeError("the simplification rules did not reach a fixed point")


# --- back to the IR: collect, abbreviate, print order --------------------------------


def _content(coefficients: list[sp.Expr], counts: list[sp.Symbol]) -> sp.Expr:
    """The common scalar of the coefficients: the gcd of their rationals and the lowest
    power of each count (1/m for m, -1/m, -1/m)."""
    rationals, powers = [], []
    for k in coefficients:
        q, rest = sp.Mul(k).as_coeff_Mul()
        rationals.append(abs(q))
        powers.append(rest.as_powers_dict())
    common: sp.Expr = reduce(sp.gcd, rationals)  # SymPy Rationals: their gcd is one too
    for n in counts:
        low = min(int(p.get(n, 0)) for p in powers)
        common *= n**low
    return common


def collect(poly: Poly, facts: Facts) -> tuple[Monomial, sp.Expr, Poly] | None:
    """(common factors, common scalar, what remains) when there is something to take out."""
    if len(poly.terms) < 2:
        return None
    monos = [mono for mono, _ in poly.terms]
    first = dict(monos[0].powers)
    common: dict[Factor, int] = {}
    for f, e in first.items():
        low = min(dict(m.powers).get(f, 0) for m in monos)
        if low > 0 and not isinstance(f, Summed):
            common[f] = min(e, low)
    scalar = _content([k for _, k in poly.terms], list(facts.counts.values()))
    if not common and scalar == ONE:
        return None
    inverse = Monomial.of({f: -e for f, e in common.items()})
    rest = Poly.of({m.times(inverse): k / scalar for m, k in poly.terms})
    return Monomial.of(common), scalar, rest


def abbreviate(poly: Poly, facts: Facts, fired: list[str]) -> Poly:
    """A product with a name (ĝ = G ⊙ γ) written as the name, in every term and sum."""
    names = []
    for name, definition in facts.abbreviations.items():
        terms = expand(definition).terms
        if len(terms) == 1 and terms[0][1] == ONE:
            names.append((name, dict(terms[0][0].powers)))

    def mono(m: Monomial) -> Monomial:
        powers = {
            (Summed(f.axis, poly_(f.body)) if isinstance(f, Summed) else f): e for f, e in m.powers
        }
        for name, product in names:
            if all(powers.get(f, 0) >= e for f, e in product.items()):
                for f, e in product.items():
                    powers[f] -= e
                powers[name] = powers.get(name, 0) + 1
                fired.append("abbreviate")
        return Monomial.of(powers)

    def poly_(p: Poly) -> Poly:
        return Poly.of({mono(m): k for m, k in p.terms})

    return poly_(poly)


def _rank(factor: Factor, facts: Facts) -> tuple[int, int, str]:
    order = facts.order.index(factor) if factor in facts.order else len(facts.order)
    return (isinstance(factor, Summed), order, repr(factor))


def _spread_to(expr: Expr, have: Shape, want: Shape, facts: Facts) -> Expr:
    if have[0] != want[0]:
        expr = Spread(expr, Axis.BATCH, facts.counts[Axis.BATCH])
    if have[1] != want[1]:
        expr = Spread(expr, Axis.FEATURES, facts.counts[Axis.FEATURES])
    return expr


def monomial_ir(mono: Monomial, facts: Facts) -> Expr:
    """The product as IR: factors of one shape multiplied first, then spread and multiplied."""
    if not mono.powers:
        raise NotPolynomial("a bare scalar")
    want = monomial_shape(mono, facts)
    groups: dict[Shape, list[Expr]] = {}
    for f, e in sorted(mono.powers, key=lambda p: _rank(p[0], facts)):
        if e < 0:
            raise NotPolynomial(f"a negative power of {f}")
        atom = total(poly_ir(f.body, facts), f.axis) if isinstance(f, Summed) else f
        groups.setdefault(factor_shape(f, facts), []).append(atom if e == 1 else Power(atom, e))
    parts = [
        _spread_to(reduce(Hadamard, group), have, want, facts) for have, group in groups.items()
    ]
    return reduce(Hadamard, parts)


def poly_ir(poly: Poly, facts: Facts) -> Expr:
    """Σ k · monomial as IR, terms with fewer sums and factors first, differences for k < 0."""
    if not poly.terms:
        raise NotPolynomial("zero")
    terms = sorted(
        poly.terms, key=lambda t: (t[0].sums(), t[0].degree(), t[1].could_extract_minus_sign())
    )
    want = poly_shape(poly, facts)
    result: Expr | None = None
    for mono, k in terms:
        negative = result is not None and k.could_extract_minus_sign()
        size = -k if negative else k
        term = _spread_to(monomial_ir(mono, facts), monomial_shape(mono, facts), want, facts)
        term = term if size == ONE else Scale(term, size)
        result = term if result is None else Sub(result, term) if negative else Add(result, term)
    assert result is not None
    return result


@dataclass(frozen=True)
class Simplified:
    """The compact form, the raw form it came from, and the rules that fired (in order)."""

    raw: Expr
    expr: Expr
    rules: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return self.expr != self.raw


def _union(*shapes: Shape) -> Shape:
    rows = next((r for r, _ in shapes if r != ONE), ONE)
    cols = next((c for _, c in shapes if c != ONE), ONE)
    return rows, cols


def _compact(poly: Poly, facts: Facts, fired: list[str]) -> Expr:
    """The normal form as IR: the common factor in front when ``collect`` finds one."""
    collected = collect(poly, facts)
    if collected is None:
        return poly_ir(abbreviate(poly, facts, fired), facts)
    common, scalar, rest = collected
    fired.append("collect")
    inner = poly_ir(abbreviate(rest, facts, fired), facts)
    if not common.powers:
        return Scale(inner, scalar)
    front_shape, inner_shape = monomial_shape(common, facts), poly_shape(rest, facts)
    want = _union(front_shape, inner_shape)
    front = _spread_to(monomial_ir(common, facts), front_shape, want, facts)
    inner = _spread_to(inner, inner_shape, want, facts)
    return Hadamard(front if scalar == ONE else Scale(front, scalar), inner)


def simplify(raw: Expr, facts: Facts, rules: tuple[Rule, ...] = RULES) -> Simplified:
    """The compact form of ``raw`` (spread back to ``raw``'s shape if the rules made every
    term constant along an axis); ``raw`` itself when the normal form does not cover it."""
    try:
        poly, fired = normal_form(expand(raw), facts, rules)
        expr = _compact(poly, facts, fired)
    except NotPolynomial:
        return Simplified(raw, raw, ())
    expr = _spread_to(expr, shape(expr, facts.shapes), shape(raw, facts.shapes), facts)
    return Simplified(raw, expr, tuple(dict.fromkeys(fired)))
