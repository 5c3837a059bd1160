"""The end-to-end identity at any depth, decided by exact evaluation over a prime field.

Why not expand: after every applied function is mapped to a fresh symbol, each
gradient of the unrolled network is a polynomial (a rational function for the
cross-entropies) whose monomials are the paths through the layers, about
6^(L/2) of them for widths 3, 2, 3, ...; SymPy's diff of the fully nested loss
walks a tree of the same size.  Both explode with depth.

What is done instead, and why it is a proof:

1. The forward chain f_1 ... f_{2L+1} is evaluated on explicit small matrices
   (batch 2, widths 3, 2, 3, ...) one step at a time, and every entry of every
   z_l and a_l becomes a named node: ``z3_01 := a2_00*w3_01 + ... + b3_01``,
   ``a3_01 := a_3(z3_01)``, ``L := loss(a_L, Y)``.  The entries are built by
   the same ``proof.evaluate`` as the lemmas use; each a_l stays an undefined
   function.
2. SymPy's ``diff`` gives every local partial derivative: of each node's
   definition by each node or parameter it reads (``∂a3_01/∂z3_01 =
   Da_3(z3_01)``, ``∂z3_01/∂w3_01 = a2_00``, ``∂L/∂a_L`` from the loss).
3. The left side, ∂L/∂θ for every parameter θ and ∂L/∂z_l for every z_l entry,
   is accumulated from those partials in forward mode over the explicit scalar
   graph: the multivariable chain rule for a composition, entry by entry.  It
   shares nothing with ``derivation``'s matrix rules (no transpose, no bias
   sum, no Hadamard product, reverse order), which are what is being checked.
4. The right side is the derived formula, evaluated by ``proof.evaluate`` with
   each δ_{l+1} it reads abstracted as a named matrix whose entries are defined
   by the previous formula.
5. Every applied function (a_l(u), Da_l(u): one free variable per function and
   structurally distinct argument, as ``proof.Atoms`` does; exp(Σ n_i s_i) as
   Π E_i^n_i, which keeps exp's functional equation) and every parameter gets
   a uniformly random nonzero value in GF(p), p = 2^61 - 1, and both sides are
   computed exactly in that field.

Each entry's difference lhs - rhs is a formal rational function N/Q of those
free variables.  If every inversion succeeded (Q ≠ 0 at the point; a zero is
reported as a failure, never as a pass) then the difference vanishes exactly
when N does.  By the Schwartz–Zippel lemma a nonzero N of total degree d
vanishes at a uniformly random point of (GF(p)*)^n with probability at most
d/(p-1).  The degree bound d is carried through the evaluation (sums and
products of formal fractions), not assumed.  With k independent points a wrong
identity passes with probability at most (d_max/(p-1))^k; a true identity
always passes (unless a denominator vanishes, probability ≤ deg Q/(p-1)).
So this is a randomised decision procedure with one-sided, stated error, and
its cost is linear in the depth.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import sympy as sp

from . import model
from .expr import Expr, Var

PRIME = 2**61 - 1  # a Mersenne prime: exact arithmetic on Python ints
TRIALS = 3  # independent random points


class Vanished(ArithmeticError):
    """A denominator is zero at the random point: the check cannot conclude there."""


# A value in the field with bounds on the degrees of the formal numerator and
# denominator of the rational function that produced it.
Value = tuple[int, int, int]
ONE: Value = (1, 0, 0)


def _add(x: Value, y: Value) -> Value:
    return ((x[0] + y[0]) % PRIME, max(x[1] + y[2], y[1] + x[2]), x[2] + y[2])


def _mul(x: Value, y: Value) -> Value:
    return (x[0] * y[0] % PRIME, x[1] + y[1], x[2] + y[2])


def _inverse(x: Value) -> Value:
    if x[0] == 0:
        raise Vanished
    return (pow(x[0], PRIME - 2, PRIME), x[2], x[1])


def _power(x: Value, k: int) -> Value:
    if k < 0:
        return _inverse(_power(x, -k))
    return (pow(x[0], k, PRIME), k * x[1], k * x[2])


def _rational(q: sp.Rational) -> Value:
    num, den = int(q.p) % PRIME, int(q.q) % PRIME
    if den == 0:
        raise Vanished
    return (num * pow(den, PRIME - 2, PRIME) % PRIME, 0, 0)


@dataclass
class FieldPoint:
    """One random point: every free variable and atom gets a value on first use.

    ``definitions`` maps a named node (an entry of z_l, a_l or δ_l) to the
    expression it stands for; its value is that expression's value.
    """

    rng: random.Random
    definitions: dict[sp.Symbol, sp.Expr]
    _free: dict[tuple[object, ...], int] = field(default_factory=dict)
    _memo: dict[sp.Basic, Value] = field(default_factory=dict)

    def _variable(self, key: tuple[object, ...]) -> Value:
        if key not in self._free:
            self._free[key] = self.rng.randrange(1, PRIME)
        return (self._free[key], 1, 0)

    def __call__(self, expr: sp.Basic) -> Value:
        if expr in self._memo:
            return self._memo[expr]
        value = self._value(expr)
        self._memo[expr] = value
        return value

    def _value(self, expr: sp.Basic) -> Value:
        if isinstance(expr, sp.Rational):
            return _rational(expr)
        if isinstance(expr, sp.Symbol):
            if expr in self.definitions:
                return self(self.definitions[expr])
            return self._variable(("symbol", expr))
        if isinstance(expr, sp.Add):
            total = self(expr.args[0])
            for arg in expr.args[1:]:
                total = _add(total, self(arg))
            return total
        if isinstance(expr, sp.Mul):
            product = self(expr.args[0])
            for arg in expr.args[1:]:
                product = _mul(product, self(arg))
            return product
        if isinstance(expr, sp.Pow) and isinstance(expr.exp, sp.Integer):
            return _power(self(expr.base), int(expr.exp))
        if isinstance(expr, sp.exp):
            return self._exponential(expr)
        if isinstance(expr, sp.Function) and expr.args:  # a_l(u), Da_l(u), log(u), ...
            return self._variable(("function", expr.func.__name__, expr.args))
        raise TypeError(f"cannot evaluate {sp.sstr(expr)} in a finite field")

    def _exponential(self, expr: sp.exp) -> Value:
        """exp(Σ n_i s_i) = Π E_i^n_i for integers n_i; any other exp is an opaque atom."""
        terms = sp.Add.make_args(expr.args[0])
        factors = []
        for term in terms:
            coeff, rest = term.as_coeff_Mul()
            if not (isinstance(coeff, sp.Integer) and isinstance(rest, sp.Symbol)):
                return self._variable(("function", "exp", expr.args))
            factors.append((rest, int(coeff)))
        value = ONE
        for symbol, power in factors:
            value = _mul(value, _power(self._variable(("exp", symbol)), power))
        return value


@dataclass(frozen=True)
class Node:
    """One explicit scalar of the forward chain and SymPy's partials of its definition."""

    symbol: sp.Symbol
    definition: sp.Expr
    partials: tuple[tuple[sp.Symbol, sp.Expr], ...]  # (input, ∂definition/∂input)


@dataclass(frozen=True)
class Graph:
    """The unrolled network at small widths: nodes in evaluation order, then the loss."""

    nodes: tuple[Node, ...]
    parameters: dict[Var, sp.Matrix]  # W_l, b_l as symbol matrices
    z_entries: dict[Var, sp.Matrix]  # z_l as node symbols: δ_l = ∂L/∂z_l is checked too
    env: dict[Var, sp.Matrix]  # every variable of the chain, as symbols (for the right side)
    loss: sp.Symbol


def _names(name: str, rows: int, cols: int) -> sp.Matrix:
    return sp.Matrix(rows, cols, lambda i, j: sp.Symbol(f"{name}_{i}{j}", real=True))


def build_graph(
    steps: list[model.Step],
    env: dict[Var, sp.Matrix],
    parameters: list[Var],
    evaluate: Callable[[Expr, dict[Var, sp.Matrix]], sp.Matrix],
    objective: Var = model.LOSS,
) -> Graph:
    """Name every entry of every step's result; SymPy differentiates each definition locally.

    ``objective`` is the step whose gradients are taken (the loss, or the loss plus a penalty).
    """
    env = dict(env)
    wrt: set[sp.Symbol] = {s for p in parameters for s in env[p]}
    nodes: list[Node] = []
    z_entries: dict[Var, sp.Matrix] = {}
    loss = sp.Symbol("L")
    for step in steps:
        value = evaluate(step.expr, env)
        if step.target == objective:
            names = sp.Matrix([[loss]])
        else:
            names = _names(step.target.name, value.rows, value.cols)
        for name, definition in zip(names, value, strict=True):
            reads = sorted(definition.free_symbols & wrt, key=str)
            partials = tuple((s, sp.diff(definition, s)) for s in reads)
            nodes.append(Node(name, definition, partials))
            wrt.add(name)
        env[step.target] = names
        if step.adjoint is not None:  # z_l: its adjoint δ_l is a claim too
            z_entries[step.target] = names
    return Graph(tuple(nodes), {p: env[p] for p in parameters}, z_entries, env, loss)


@dataclass
class Sides:
    """The symbolic right side of every claim, with each δ abstracted by name."""

    claims: list[tuple[Var, sp.Matrix]]  # (variable, claimed ∂L/∂variable) in claim order
    definitions: dict[sp.Symbol, sp.Expr]  # δ_l's entry names -> their claimed values


def gradients(graph: Graph, point: FieldPoint) -> tuple[dict[sp.Symbol, int], tuple[int, int]]:
    """∂L/∂s for every parameter entry and z entry s, by forward accumulation.

    Returns the values and one (numerator, denominator) degree bound valid for
    all of them.
    """
    seeds = {s for m in graph.parameters.values() for s in m}
    seeds |= {s for m in graph.z_entries.values() for s in m}
    tangent: dict[sp.Symbol, dict[sp.Symbol, int]] = {s: {s: 1} for s in seeds}
    degree: dict[sp.Symbol, tuple[int, int]] = {s: (0, 0) for s in seeds}
    for node in graph.nodes:
        total: dict[sp.Symbol, int] = dict(tangent.get(node.symbol, {}))
        bound = degree.get(node.symbol)
        for source, partial in node.partials:
            factor = point(partial)
            term = (factor[1] + degree[source][0], factor[2] + degree[source][1])
            if bound is None:
                bound = term
            else:
                bound = (max(bound[0] + term[1], term[0] + bound[1]), bound[1] + term[1])
            for seed, value in tangent[source].items():
                total[seed] = (total.get(seed, 0) + factor[0] * value) % PRIME
        tangent[node.symbol] = total
        degree[node.symbol] = bound if bound is not None else (0, 0)
    return tangent[graph.loss], degree[graph.loss]


@dataclass(frozen=True)
class Outcome:
    ok: bool
    detail: str
    error_bound: float  # probability that a wrong identity passes, at most


def decide(graph: Graph, sides: Sides, rng: random.Random, trials: int = TRIALS) -> Outcome:
    """Compare both sides at ``trials`` independent random points of GF(p)."""
    definitions = {node.symbol: node.definition for node in graph.nodes}
    definitions.update(sides.definitions)
    worst_degree = 0
    for _ in range(trials):
        point = FieldPoint(rng, definitions)
        try:
            lhs, (lhs_num, lhs_den) = gradients(graph, point)
            for var, claimed in sides.claims:
                entries = graph.parameters[var] if var in graph.parameters else graph.z_entries[var]
                if claimed.shape != entries.shape:
                    return Outcome(
                        False, f"{var.name}: shape {claimed.shape}, expected {entries.shape}", 1.0
                    )
                for index, (symbol, formula) in enumerate(zip(entries, claimed, strict=True)):
                    rhs = point(formula)
                    if (lhs.get(symbol, 0) - rhs[0]) % PRIME:
                        i, j = divmod(index, entries.cols)
                        return Outcome(False, f"{var.name}: entry ({i}, {j}) differs", 1.0)
                    # N of lhs - rhs = lhs_N rhs_Q - rhs_N lhs_Q
                    worst_degree = max(worst_degree, lhs_num + rhs[2], rhs[1] + lhs_den)
        except Vanished:
            return Outcome(False, "a denominator vanished at the random point; run again", 1.0)
    return Outcome(True, "", (max(worst_degree, 1) / (PRIME - 1)) ** trials)


def bound_text(bound: float) -> str:
    """The error bound rounded up to one digit, e.g. ``1e-49`` (plain ASCII: LaTeX prints it too)."""
    if bound >= 1:
        return "1"
    if bound <= 0:  # below the smallest float: say no more than that
        return "1e-300"
    exponent = math.floor(math.log10(bound))
    digit = math.ceil(bound / 10**exponent - 1e-9)
    return f"{digit}e{exponent}" if digit < 10 else f"1e{exponent + 1}"
