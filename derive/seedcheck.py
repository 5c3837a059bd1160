"""The seed's own equations, restated exactly and decided by the proof engine.

The seed writes its derivation for one example (its code turns a vector into
one row) in loose notation: ``⋅`` for a matrix product, juxtaposition for the
entrywise product its code computes with ``*``, and no transposes.  Its
shapes are fixed by its text and code: for widths [20, 50, 10], X is a row,
W_1 is 20×50, W_2 is 50×10 and b_l is one row.

Each equation below is restated in that reading as a small expression tree
and decided like every identity in ``derive.proof``: explicit non-square
matrices of symbols, the activation an undefined function, the truth from
SymPy's scalar ``diff`` of the loss (or the seed's code's forward pass, for
the composition), and ``expand(lhs - rhs) == 0`` after ``proof.Atoms``
(``proof.identical``).  A reading whose two sides differ at one rational
point is rejected without expanding: that point is a counterexample.

Verdicts:

* ``holds``: the equation, read as written, is an identity;
* ``holds-reordered``: it is not, but it becomes one once each product's
  order or kind (matrix or entrywise) and the transposes of the layout are
  fixed; the fewest such changes that give an identity are searched for,
  each candidate proved by the engine, and the one found is printed;
* ``wrong``: no such reading holds; derive's own identity for the same
  quantity is printed instead (and proved here too).
"""

from __future__ import annotations

import itertools
import json
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import sympy as sp

from . import catalog, model, proof
from .derivation import Derivation
from .derivation import derive as derive_identities
from .expr import (
    Activate,
    ActivateDeriv,
    Add,
    Expr,
    Hadamard,
    InvSqrt,
    Kind,
    Loss,
    LossGrad,
    MatMul,
    Mean,
    Penalty,
    PenaltyGrad,
    Power,
    Spread,
    Sub,
    SumCols,
    Transpose,
    Var,
    assert_never,
    substitute,
)
from .expr import (
    Scale as DeriveScale,
)
from .expr import (
    SumRows as DeriveSumRows,
)

HOLDS, REORDERED, WRONG = "holds", "holds-reordered", "wrong"

# --- the seed's expressions ----------------------------------------------------


class Node:
    """A seed expression; products keep the operator the seed wrote."""


@dataclass(frozen=True)
class F(Node):
    """f_k, the seed's k-th function of the composition."""

    k: int


@dataclass(frozen=True)
class Z(Node):
    """z_l = f_{2l-1}, the seed's name in its general formulas."""

    layer: int


@dataclass(frozen=True)
class Param(Node):
    """W_l, b_l, the target Y or the prediction Ŷ (kind "W", "b", "Y", "Yhat")."""

    kind: str
    layer: int = 0


@dataclass(frozen=True)
class Grad(Node):
    """∂L/∂q: the true gradient of the loss with respect to q, shaped like q."""

    wrt: Node


@dataclass(frozen=True)
class Plus(Node):
    left: Node
    right: Node


@dataclass(frozen=True)
class Minus(Node):
    left: Node
    right: Node


@dataclass(frozen=True)
class Scale(Node):
    factor: int
    arg: Node


@dataclass(frozen=True)
class Act(Node):
    arg: Node


@dataclass(frozen=True)
class DAct(Node):
    arg: Node


@dataclass(frozen=True)
class NormSq(Node):
    """‖arg‖², the sum of the squares of the entries."""

    arg: Node


@dataclass(frozen=True)
class SumRows(Node):
    """1ᵀ arg: the sum over the batch."""

    arg: Node


@dataclass(frozen=True)
class T(Node):
    arg: Node


@dataclass(frozen=True)
class Prod(Node):
    """A product.  ``op`` is what was written: "dot" (the seed's ⋅), "juxt"
    (juxtaposition), or an explicit "mat" (matrix product) or "had" (entrywise)."""

    left: Node
    right: Node
    op: str


WRITTEN = {"dot": "mat", "juxt": "had", "mat": "mat", "had": "had"}
"""How the seed's operators read as written: ⋅ is a matrix product, juxtaposition entrywise."""


def _children(n: Node) -> tuple[Node, ...]:
    if isinstance(n, (Plus, Minus, Prod)):
        return (n.left, n.right)
    if isinstance(n, (Scale, Act, DAct, NormSq, SumRows, T)):
        return (n.arg,)
    return ()


def _rebuild(n: Node, kids: tuple[Node, ...]) -> Node:
    if isinstance(n, (Plus, Minus, Prod)):
        return replace(n, left=kids[0], right=kids[1])
    if isinstance(n, (Scale, Act, DAct, NormSq, SumRows, T)):
        return replace(n, arg=kids[0])
    return n


# --- printing ----------------------------------------------------------------


@dataclass(frozen=True)
class Names:
    """How layer and f indices print: digits for the seed's network, n-1 etc. in general."""

    layer: Callable[[int], str] = str
    f: Callable[[int], str] = str
    loss: str = "f_5"


def relative_names(n: int, letter: str = "n") -> Names:
    """Print layer ``n - j`` as "n-j" and f_{2n-d} as "f_{2n-d}"."""

    def layer(k: int) -> str:
        return letter if k == n else f"{letter}-{n - k}" if k < n else f"{letter}+{k - n}"

    def f(k: int) -> str:
        d = 2 * n - k
        return f"2{letter}" if d == 0 else f"2{letter}-{d}" if d > 0 else f"2{letter}+{-d}"

    return Names(layer, f, "L")


def _paren(text: str) -> str:
    """Parentheses sized to their content: plain ones unless a fraction is inside."""
    return rf"\left({text}\right)" if r"\frac" in text else f"({text})"


def latex(n: Node, names: Names = Names()) -> str:
    """The expression in LaTeX, each product printed with its operator."""
    if isinstance(n, F):
        return f"f_{{{names.f(n.k)}}}"
    if isinstance(n, Z):
        return f"z_{{{names.layer(n.layer)}}}"
    if isinstance(n, Param):
        if n.kind == "Yhat":
            return r"\hat{Y}"
        return "Y" if n.kind == "Y" else f"{n.kind}_{{{names.layer(n.layer)}}}"
    if isinstance(n, Grad):
        return rf"\frac{{\partial {names.loss}}}{{\partial {latex(n.wrt, names)}}}"
    if isinstance(n, Plus):
        return f"{latex(n.left, names)} + {latex(n.right, names)}"
    if isinstance(n, Minus):
        return f"{latex(n.left, names)} - {_operand(n.right, names)}"
    if isinstance(n, Scale):
        return f"{n.factor}{_paren(latex(n.arg, names))}"
    if isinstance(n, Act):
        return f"a{_paren(latex(n.arg, names))}"
    if isinstance(n, DAct):
        return f"a'{_paren(latex(n.arg, names))}"
    if isinstance(n, NormSq):
        return rf"\left\lVert {latex(n.arg, names)} \right\rVert^{{2}}"
    if isinstance(n, SumRows):
        return rf"\mathbf{{1}}^{{\top}} {_operand(n.arg, names)}"
    if isinstance(n, T):
        return rf"{_operand(n.arg, names)}^{{\top}}"
    if isinstance(n, Prod):
        sign = {"dot": r" \cdot ", "juxt": " ", "mat": " ", "had": r" \odot "}[n.op]
        left = latex(n.left, names) if _chains(n.left, n) else _operand(n.left, names)
        return left + sign + _operand(n.right, names)
    raise TypeError(f"cannot print {type(n).__name__}")


def _chains(child: Node, parent: Prod) -> bool:
    """A left operand that needs no parentheses: the seed's own left-to-right chains."""
    if not isinstance(child, Prod):
        return not isinstance(child, (Plus, Minus))
    written = {"dot", "juxt"}
    return child.op == parent.op or (child.op in written and parent.op in written)


def _operand(n: Node, names: Names) -> str:
    text = latex(n, names)
    atomic = isinstance(n, (F, Z, Param, Grad, Act, DAct, Scale, NormSq, T))
    return text if atomic else _paren(text)


# --- the seed's network, explicitly --------------------------------------------


class Network:
    """The seed's code on explicit symbol matrices: z = x W + b, x = a(z), L = ‖Ŷ - Y‖².

    One undefined activation ``a`` for every layer, as the seed has; its
    derivative is the undefined function ``Da``.
    """

    def __init__(self, widths: tuple[int, ...], batch: int) -> None:
        self.widths, self.batch, self.depth = widths, batch, len(widths) - 1
        self.a, self.da = proof.generic_activation(0)
        self.params: dict[Param, sp.Matrix] = {}
        for layer in range(1, self.depth + 1):
            n_in, n_out = widths[layer - 1], widths[layer]
            self.params[Param("W", layer)] = proof.symbols_matrix(f"w{layer}", n_in, n_out)
            self.params[Param("b", layer)] = proof.symbols_matrix(f"b{layer}", 1, n_out)
        self.params[Param("Y")] = proof.symbols_matrix("y", batch, widths[-1])
        self.f = self.forward({0: proof.symbols_matrix("x", batch, widths[0])})
        self.params[Param("Yhat")] = self.f[2 * self.depth]
        self._gradients: dict[Node, sp.Matrix] = {}

    def forward(self, start: dict[int, sp.Matrix]) -> dict[int, sp.Matrix]:
        """f_k from the lowest given f_k up to the loss f_{2L+1}, as the seed's code computes it."""
        f = dict(start)
        first = max(start)
        for k in range(first + 1, 2 * self.depth + 2):
            layer = (k + 1) // 2
            if k == 2 * self.depth + 1:
                diff = f[k - 1] - self.params[Param("Y")]
                f[k] = sp.Matrix([[sum(e**2 for e in diff)]])
            elif k % 2:  # f_{2l-1} = f_{2l-2} W_l + b_l, b_l added to every row
                ones = sp.ones(self.batch, 1)
                f[k] = (
                    f[k - 1] * self.params[Param("W", layer)]
                    + ones * self.params[Param("b", layer)]
                )
            else:
                f[k] = f[k - 1].applyfunc(self.a)
        return f

    @property
    def loss(self) -> sp.Expr:
        return self.f[2 * self.depth + 1][0, 0]

    def shape(self, leaf: Node) -> tuple[int, int]:
        if isinstance(leaf, Grad):
            return self.shape(leaf.wrt)
        if isinstance(leaf, Z):
            return self.shape(F(2 * leaf.layer - 1))
        if isinstance(leaf, F):
            if leaf.k == 2 * self.depth + 1:
                return (1, 1)
            return (self.batch, self.widths[(leaf.k + 1) // 2])
        if isinstance(leaf, Param):
            rows, cols = self.params[leaf].shape
            return (rows, cols)
        raise TypeError(f"{leaf} is not a leaf")

    def value(self, leaf: Node) -> sp.Matrix:
        if isinstance(leaf, F):
            return self.f[leaf.k]
        if isinstance(leaf, Z):
            return self.f[2 * leaf.layer - 1]
        if isinstance(leaf, Param):
            return self.params[leaf]
        if isinstance(leaf, Grad):
            return self.gradient(leaf.wrt)
        raise TypeError(f"{leaf} is not a leaf")

    def gradient(self, wrt: Node) -> sp.Matrix:
        """∂L/∂wrt by SymPy's scalar diff, entry by entry, shaped like wrt."""
        if wrt not in self._gradients:
            if isinstance(wrt, Param):
                entries, loss, back = self.params[wrt], self.loss, {}
            else:  # an intermediate f_k: make it free symbols, run the rest of the chain
                k = wrt.k if isinstance(wrt, F) else 2 * wrt.layer - 1  # type: ignore[attr-defined]
                rows, cols = self.f[k].shape
                entries = proof.symbols_matrix(f"free{k}_", rows, cols)
                loss = self.forward({k: entries})[2 * self.depth + 1][0, 0]
                back = dict(zip(entries, self.f[k], strict=True))
            grad = entries.applyfunc(lambda s: sp.diff(loss, s))
            self._gradients[wrt] = grad.xreplace(back) if back else grad
        return self._gradients[wrt]


def _broadcast_add(left: sp.Matrix, right: sp.Matrix, sign: int) -> sp.Matrix:
    if right.rows == 1 and left.rows != 1 and right.cols == left.cols:
        right = sp.ones(left.rows, 1) * right
    if left.rows == 1 and right.rows != 1 and right.cols == left.cols:
        left = sp.ones(right.rows, 1) * left
    if left.shape != right.shape:
        raise sp.ShapeError(f"cannot add {left.shape} and {right.shape}")
    return left + sign * right


def evaluate(n: Node, net: Network) -> sp.Matrix:
    """The explicit matrix ``n`` denotes, products read as WRITTEN says."""
    if isinstance(n, (F, Z, Param, Grad)):
        return net.value(n)
    if isinstance(n, (Plus, Minus)):
        sign = 1 if isinstance(n, Plus) else -1
        return _broadcast_add(evaluate(n.left, net), evaluate(n.right, net), sign)
    if isinstance(n, Scale):
        return n.factor * evaluate(n.arg, net)
    if isinstance(n, Act):
        return evaluate(n.arg, net).applyfunc(net.a)
    if isinstance(n, DAct):
        return evaluate(n.arg, net).applyfunc(net.da)
    if isinstance(n, NormSq):
        return sp.Matrix([[sum(e**2 for e in evaluate(n.arg, net))]])
    if isinstance(n, SumRows):
        inner = evaluate(n.arg, net)
        return sp.ones(1, inner.rows) * inner
    if isinstance(n, T):
        return evaluate(n.arg, net).T
    if isinstance(n, Prod):
        left, right = evaluate(n.left, net), evaluate(n.right, net)
        if WRITTEN[n.op] == "mat":
            if left.cols != right.rows:
                raise sp.ShapeError(f"cannot multiply {left.shape} by {right.shape}")
            return left * right
        if left.shape != right.shape:
            raise sp.ShapeError(f"entrywise product of {left.shape} and {right.shape}")
        return left.multiply_elementwise(right)
    raise TypeError(f"cannot evaluate {type(n).__name__}")


def shape(n: Node, net: Network) -> tuple[int, int] | None:
    """The shape ``n`` would have, or None if some operation does not fit: cheap, no algebra."""
    if isinstance(n, (F, Z, Param, Grad)):
        return net.shape(n)
    kids = [shape(c, net) for c in _children(n)]
    if any(k is None for k in kids):
        return None
    if isinstance(n, (Plus, Minus)):
        (lr, lc), (rr, rc) = kids  # type: ignore[misc]
        if lc != rc or (lr != rr and 1 not in (lr, rr)):
            return None
        return (max(lr, rr), lc)
    if isinstance(n, (Scale, Act, DAct)):
        return kids[0]
    if isinstance(n, NormSq):
        return (1, 1)
    if isinstance(n, SumRows):
        return (1, kids[0][1])  # type: ignore[index]
    if isinstance(n, T):
        return kids[0][::-1]  # type: ignore[index]
    if isinstance(n, Prod):
        left, right = kids
        if WRITTEN[n.op] == "mat":
            return (left[0], right[1]) if left[1] == right[0] else None  # type: ignore[index]
        return left if left == right else None
    raise TypeError(f"no shape for {type(n).__name__}")


# --- readings: the product order, kind and transposes ------------------------


def _products(n: Node) -> list[Prod]:
    found = [n] if isinstance(n, Prod) else []
    for c in _children(n):
        found += _products(c)
    return found


def _operands(n: Node) -> list[Node]:
    """Operands of products that are not products themselves: where a transpose may go."""
    found: list[Node] = []
    if isinstance(n, Prod):
        found += [c for c in (n.left, n.right) if not isinstance(c, Prod)]
    for c in _children(n):
        found += _operands(c)
    return found


CHOICES = ("mat", "rmat", "had")
"""Each product may be a matrix product in the written order, reversed, or entrywise."""


def readings(n: Node) -> Iterator[tuple[int, Node]]:
    """Every reading of ``n`` with the number of changes from the written one.

    A reading fixes each product's kind (``CHOICES``) and whether each
    product operand is transposed.  Identity of nodes is by position, so two
    equal subtrees are still read independently.
    """
    prods, opers = _products(n), _operands(n)
    for kinds in itertools.product(CHOICES, repeat=len(prods)):
        for flips in itertools.product((False, True), repeat=len(opers)):
            changes = sum(k != WRITTEN[p.op] for k, p in zip(kinds, prods, strict=True))
            changes += sum(flips)
            kind_of = {id(p): k for p, k in zip(prods, kinds, strict=True)}
            flip_of = {id(o): f for o, f in zip(opers, flips, strict=True)}
            yield changes, _apply(n, kind_of, flip_of)


def _apply(n: Node, kind_of: dict[int, str], flip_of: dict[int, bool]) -> Node:
    def op(c: Node) -> Node:
        new = _apply(c, kind_of, flip_of)
        return T(new) if flip_of.get(id(c)) else new

    if isinstance(n, Prod):
        kind = kind_of[id(n)]
        left, right = op(n.left), op(n.right)
        if kind == "rmat":
            return Prod(right, left, "mat")
        return Prod(left, right, kind)
    return _rebuild(n, tuple(_apply(c, kind_of, flip_of) for c in _children(n)))


# --- equations and verdicts ---------------------------------------------------


@dataclass(frozen=True)
class Equation:
    """One equation the seed writes, restated.

    ``build(n)`` gives (lhs, rhs) at layer index ``n`` (ignored for the
    seed's own network); the equation must hold at every n in ``at``.
    ``derive_unroll`` says how derive's own identity for the lhs is written
    when it is printed as the correction: 0 keeps δ (as ∂L/∂z), 1 expands
    one δ, None expands every δ (and every f_k, for the unrolled prediction).
    """

    what: str
    build: Callable[[int], tuple[Node, Node]]
    general: bool = False
    batch: int = 1
    at: tuple[int, ...] = (0,)
    derive_unroll: int | None = 0
    note: str = ""
    letter: str = "n"  # the seed's name for the layer index


@dataclass(frozen=True)
class Verdict:
    equation: Equation
    verdict: str
    seed: str  # the seed's equation, LaTeX
    correct: str  # LaTeX; empty when the verdict is "holds"
    fixed: tuple[Node, Node] = field(repr=False, default=(F(0), F(0)))  # the identity that holds
    changes: int = 0  # changes from the written reading; -1 when wrong
    reading: int = -1  # the index in ``readings`` of the reading that holds; -1 when wrong
    seconds: float = 0.0

    def as_json(self) -> dict[str, str]:
        out = {"what": self.equation.what, "seed": self.seed, "verdict": self.verdict}
        if self.verdict != HOLDS:
            out["correct"] = self.correct
        return out


SEED_WIDTHS = (3, 2, 4)
"""The seed's depth-2 network (f_0 ... f_5) at small non-square widths."""

GENERAL_WIDTHS = (3, 2, 4, 2)
"""A depth-3 network for the seed's general formulas, checked at every layer n they name."""

MAX_READINGS = 50_000


NetworkCache = dict[tuple[tuple[int, ...], int], Network]
"""Explicit networks by (widths, batch)."""

NETWORKS: NetworkCache = {}
"""The explicit networks, with their gradients, reused by every check in this process."""


def _instance_nets(eq: Equation, cache: NetworkCache) -> list[tuple[int, Network]]:
    widths = GENERAL_WIDTHS if eq.general else SEED_WIDTHS
    key = (widths, eq.batch)
    if key not in cache:
        cache[key] = Network(widths, eq.batch)
    return [(n, cache[key]) for n in eq.at]


def _truth(lhs: Node, net: Network) -> sp.Matrix:
    if isinstance(lhs, (F, Z, Grad)):
        return net.value(lhs)
    raise TypeError(f"no truth for a left-hand side {lhs}")


def _holds_at(lhs: Node, rhs: Node, net: Network) -> bool:
    """Decide lhs = rhs on the explicit network (rhs read as WRITTEN says).

    A value at one rational point that differs is a counterexample, so it
    rejects at once; only a reading that survives it is decided by
    ``proof.identical`` (expand to 0), which alone can say "holds".
    """
    truth = _truth(lhs, net)
    if shape(rhs, net) != truth.shape:
        return False
    claim = evaluate(rhs, net)
    if _differs_at_a_point(truth, claim):
        return False
    return proof.identical(truth, claim)[0]


def _differs_at_a_point(lhs: sp.Matrix, rhs: sp.Matrix) -> bool:
    atoms = proof.Atoms()  # every a(x), Da(x) a free symbol, as the exact decision sees them
    left, right = lhs.applyfunc(atoms), rhs.applyfunc(atoms)
    names = sorted(left.free_symbols | right.free_symbols, key=str)
    rng = random.Random(2026)  # a fixed point: the same verdict path on every run
    point = {s: sp.Rational(rng.randint(-40, 40), rng.randint(1, 9)) for s in names}
    return any(sp.expand((a - b).xreplace(point)) != 0 for a, b in zip(left, right, strict=True))


def decide(eq: Equation, cache: NetworkCache | None = None) -> Verdict:
    """The verdict for one equation, from the engine alone."""
    start = time.perf_counter()
    cache = NETWORKS if cache is None else cache
    names = relative_names(eq.at[0], eq.letter) if eq.general else Names()
    instances = []  # (lhs, every reading of rhs, network) at each layer index n
    for n, net in _instance_nets(eq, cache):
        lhs, rhs = eq.build(n)
        instances.append((lhs, list(readings(rhs)), net))
        if len(instances[-1][1]) > MAX_READINGS:
            raise RuntimeError(f"{eq.what}: too many readings to search")
    lhs, rhs = eq.build(eq.at[0])
    seed = f"{latex(lhs, names)} = {latex(rhs, names)}"
    first = instances[0][1]
    candidates = sorted(
        (changes, order)
        for order, (changes, _) in enumerate(first)
        if all(shape(reads[order][1], net) == net.shape(lh) for lh, reads, net in instances)
    )
    for changes, order in candidates:
        if all(_holds_at(lh, reads[order][1], net) for lh, reads, net in instances):
            fixed = first[order][1]
            verdict = HOLDS if changes == 0 else REORDERED
            correct = "" if changes == 0 else f"{latex(lhs, names)} = {latex(fixed, names)}"
            seconds = time.perf_counter() - start
            return Verdict(eq, verdict, seed, correct, (lhs, fixed), changes, order, seconds)
    for n, net in _instance_nets(eq, cache):
        if not _holds_at(eq.build(n)[0], derived_identity(eq, n), net):
            raise RuntimeError(f"{eq.what}: derive's own identity failed the engine")
    right = derived_identity(eq)
    correct = f"{latex(lhs, names)} = {latex(right, names)}"
    return Verdict(eq, WRONG, seed, correct, (lhs, right), -1, -1, time.perf_counter() - start)


# --- derive's own identity, in the seed's notation ------------------------------


def _derivation(depth: int) -> tuple[model.Network, Derivation]:
    tanh = catalog.activation("tanh")  # any entrywise activation: the trees name only "a"
    network = model.Network(
        tuple(range(2, depth + 3)), (tanh,) * depth, catalog.loss_function("l2")
    )
    return network, derive_identities(network)


def derived_identity(eq: Equation, n: int | None = None) -> Node:
    """derive's identity for the equation's left-hand side, converted to a seed tree."""
    n = eq.at[0] if n is None else n
    lhs, _ = eq.build(n)
    depth = len(GENERAL_WIDTHS if eq.general else SEED_WIDTHS) - 1
    network, derivation = _derivation(depth)
    general = eq.general
    if isinstance(lhs, (F, Z)):
        k = lhs.k if isinstance(lhs, F) else 2 * lhs.layer - 1
        steps = {s.index: s for s in network.steps()}
        expr = steps[k].expr
        if eq.derive_unroll is None:
            definitions = {s.target: s.expr for s in network.steps() if s.target != model.LOSS}
            previous = None
            while previous != expr:
                previous, expr = expr, substitute(expr, definitions)
        return _from_derive(expr, general)
    if isinstance(lhs, Grad) and isinstance(lhs.wrt, Param):
        var = model.W(lhs.wrt.layer) if lhs.wrt.kind == "W" else model.b(lhs.wrt.layer)
        expr = derivation.gradients[var]
        if eq.derive_unroll is None:
            expr = derivation.unrolled(expr)
        else:
            for _ in range(eq.derive_unroll):
                expr = substitute(expr, {model.delta(k): d for k, d in derivation.deltas.items()})
        return _from_derive(expr, general)
    if isinstance(lhs, Grad) and isinstance(lhs.wrt, F) and lhs.wrt.k == 2 * depth:
        return _from_derive(LossGrad(model.a(depth), model.Y), general)
    raise TypeError(f"derive has no identity for {lhs}")


def _from_derive(e: Expr, general: bool) -> Node:
    """A derive expression tree as a seed tree (z_l, a_l as f_k, or z_l, a(z_l) in general).

    f_k is the seed's own numbering of its two-layer chain (z_l = f_{2l-1}, a_l = f_{2l}).
    """
    match e:
        case Var(kind=Kind.Y):
            return Param("Y")
        case Var(kind=Kind.A, layer=0):
            return F(0)
        case Var(kind=Kind.A | Kind.Z | Kind.DELTA | Kind.W | Kind.B, layer=int(layer)):
            if e.kind is Kind.A:
                return Act(Z(layer)) if general else F(2 * layer)
            if e.kind is Kind.Z:
                return Z(layer) if general else F(2 * layer - 1)
            if e.kind is Kind.DELTA:
                return Grad(Z(layer) if general else F(2 * layer - 1))
            return Param(e.kind.value, layer)
        case Var():
            raise ValueError(f"the seed has no counterpart of derive's {e.name}")
        case MatMul():
            return Prod(_from_derive(e.left, general), _from_derive(e.right, general), "mat")
        case Hadamard():
            return Prod(_from_derive(e.left, general), _from_derive(e.right, general), "had")
        case Add():
            return Plus(_from_derive(e.left, general), _from_derive(e.right, general))
        case Transpose():
            return T(_from_derive(e.arg, general))
        case DeriveSumRows():
            return SumRows(_from_derive(e.arg, general))
        case Activate():
            return Act(_from_derive(e.arg, general))
        case ActivateDeriv():
            return DAct(_from_derive(e.arg, general))
        case LossGrad():
            l2 = catalog.loss_function("l2")
            if sp.expand(l2.gradient - 2 * (catalog.pred - catalog.target)) != 0:
                raise ValueError("the l2 gradient is no longer 2(Ŷ - Y)")
            return Scale(2, Minus(_from_derive(e.pred, general), Param("Y")))
        case Loss():
            return NormSq(Minus(_from_derive(e.pred, general), Param("Y")))
        case Penalty() | PenaltyGrad():
            raise ValueError(f"the seed has no weight penalty ({type(e).__name__})")
        case Sub() | DeriveScale() | SumCols() | Mean() | Spread() | Power() | InvSqrt():
            raise ValueError(f"the seed has no normalization ({type(e).__name__})")
        case _:
            assert_never(e)


# --- the seed's equations --------------------------------------------------------


def _seed(lhs: Node, rhs: Node) -> Callable[[int], tuple[Node, Node]]:
    return lambda n: (lhs, rhs)


def _chain(*factors: Node | str) -> Node:
    """A left-to-right product; strings between factors are the written operators."""
    node = factors[0]
    assert isinstance(node, Node)
    for op, right in zip(factors[1::2], factors[2::2], strict=True):
        assert isinstance(op, str) and isinstance(right, Node)
        node = Prod(node, right, op)
    return node


W1, W2, b1, b2 = Param("W", 1), Param("W", 2), Param("b", 1), Param("b", 2)
YHAT, Y = Param("Yhat"), Param("Y")
LOSS_GRAD = Scale(2, Minus(YHAT, Y))
"""The seed's 2(Ŷ - Y)."""

DELTA2 = _chain(LOSS_GRAD, "juxt", DAct(F(3)))
BACK_TO_F1 = _chain(LOSS_GRAD, "juxt", DAct(F(3)), "dot", W2, "dot", DAct(F(1)))


def seed_equations() -> list[Equation]:
    """Every equation the seed writes, in its order, restated in its own reading."""

    def general(build: Callable[[int], tuple[Node, Node]], **kw) -> Equation:  # type: ignore[no-untyped-def]
        return Equation(general=True, build=build, **kw)

    return [
        Equation("composition f1", _seed(F(1), Plus(Prod(W1, F(0), "dot"), b1))),
        Equation("composition f2", _seed(F(2), Act(F(1)))),
        Equation("composition f3", _seed(F(3), Plus(Prod(W2, F(2), "dot"), b2))),
        Equation("composition f4 = Ŷ", _seed(F(4), Act(F(3)))),
        Equation("composition f5, the loss", _seed(F(5), NormSq(Minus(F(4), Y)))),
        Equation(
            "unrolled prediction",
            _seed(F(4), Act(Prod(W2, Plus(Act(Plus(Prod(W1, F(0), "dot"), b1)), b2), "dot"))),
            derive_unroll=None,
        ),
        Equation("loss derivative ∂f5/∂f4", _seed(Grad(F(4)), LOSS_GRAD)),
        Equation("chain product ∂f5/∂b2", _seed(Grad(b2), DELTA2), derive_unroll=None),
        Equation("chain product ∂f5/∂b1", _seed(Grad(b1), BACK_TO_F1), derive_unroll=None),
        Equation(
            "chain product ∂f5/∂W2",
            _seed(Grad(W2), _chain(LOSS_GRAD, "juxt", DAct(F(3)), "juxt", F(2))),
            derive_unroll=None,
        ),
        Equation(
            "shortcut ∂f5/∂W2 through ∂f5/∂b1",
            _seed(Grad(W2), _chain(Grad(b1), "juxt", Act(F(1)))),
        ),
        Equation(
            "chain product ∂f5/∂W1",
            _seed(Grad(W1), _chain(BACK_TO_F1, "juxt", F(0))),
            derive_unroll=None,
        ),
        Equation(
            "shortcut ∂f5/∂W1 through ∂f5/∂b1", _seed(Grad(W1), _chain(Grad(b1), "juxt", F(0)))
        ),
        general(
            what="recursive formula for the bias gradients",
            build=lambda n: (
                Grad(Param("b", n - 1)),
                _chain(Grad(Param("b", n)), "dot", Param("W", n), "dot", DAct(Z(n - 1))),
            ),
            at=(2, 3),
            derive_unroll=1,
        ),
        general(
            what="definition of z_c",
            build=lambda n: (Z(n), Plus(Prod(Param("W", n), F(2 * n - 2), "dot"), Param("b", n))),
            at=(1, 2, 3),
            letter="c",
        ),
        general(
            what="weight-gradient shortcut",
            build=lambda n: (
                Grad(Param("W", n)),
                _chain(Grad(Param("b", n)), "juxt", Act(Z(n - 1))),
            ),
            at=(2, 3),
        ),
        general(
            what="recursive formula, batch of m > 1 rows",
            build=lambda n: (
                Grad(Param("b", n - 1)),
                _chain(Grad(Param("b", n)), "dot", Param("W", n), "dot", DAct(Z(n - 1))),
            ),
            at=(2, 3),
            batch=2,
            derive_unroll=1,
            note="the seed's deltas hold ∂L/∂z_l, which is ∂L/∂b_l only for one example",
        ),
        general(
            what="weight-gradient shortcut, batch of m > 1 rows",
            build=lambda n: (
                Grad(Param("W", n)),
                _chain(Grad(Param("b", n)), "juxt", Act(Z(n - 1))),
            ),
            at=(2, 3),
            batch=2,
            note="the seed's code is right here: it uses the unsummed deltas",
        ),
    ]


def check(equations: list[Equation] | None = None) -> list[Verdict]:
    """Decide every equation (the seed's, unless others are given)."""
    return [decide(eq) for eq in (seed_equations() if equations is None else equations)]


# --- output ------------------------------------------------------------------


def _plain(tex: str) -> str:
    """LaTeX made readable on a terminal: enough to recognise the equation."""
    swaps = [
        (r"\left", ""),
        (r"\right", ""),
        (r"\cdot", "⋅"),
        (r"\odot", "⊙"),
        (r"^{\top}", "ᵀ"),
        (r"\hat{Y}", "Ŷ"),
        (r"\lVert", "‖"),
        (r"\rVert", "‖"),
        (r"\mathbf{1}", "1"),
        ("^{2}", "²"),
        (r"\partial ", "∂"),
    ]
    for old, new in swaps:
        tex = tex.replace(old, new)
    tex = re.sub(
        r"\\frac\{([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}\{([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}", r"\1/\2", tex
    )
    tex = re.sub(
        r"_\{([^{}]*)\}",
        lambda m: "_" + m.group(1) if len(m.group(1)) == 1 else f"_({m.group(1)})",
        tex,
    )
    return " ".join(tex.split())


def table(verdicts: list[Verdict]) -> str:
    """The verdicts as a table for a terminal."""
    lines = []
    for v in verdicts:
        lines.append(f"{v.verdict:16} {v.equation.what}")
        lines.append(f"{'':16}   seed:    {_plain(v.seed)}")
        if v.verdict != HOLDS:
            lines.append(f"{'':16}   correct: {_plain(v.correct)}")
        if v.equation.note:
            lines.append(f"{'':16}   ({v.equation.note})")
    return "\n".join(lines) + "\n"


def as_json(verdicts: list[Verdict]) -> str:
    return json.dumps([v.as_json() for v in verdicts], ensure_ascii=False, indent=2) + "\n"


def _tex_text(text: str) -> str:
    """A name or note written in Unicode (∂f5/∂b2, Ŷ, z_c, m > 1) as LaTeX text with math."""

    def sub(name: str, index: str) -> str:
        return f"{name}_{{{index}}}" if index else name

    text = re.sub(
        r"∂([A-Za-z])_?([0-9a-z]*)/∂([A-Za-z])_?([0-9a-z]*)",
        lambda m: rf"$\partial {sub(m[1], m[2])}/\partial {sub(m[3], m[4])}$",
        text,
    )
    text = re.sub(r"\bf(\d+)\b", r"$f_{\1}$", text)
    text = re.sub(r"\b([a-z])_([a-z])\b", r"$\1_{\2}$", text)
    text = text.replace("Ŷ", r"$\hat{Y}$").replace("m > 1", "$m > 1$")
    return text


def latex_section(verdicts: list[Verdict]) -> str:
    """The section body for the document: each seed equation, its verdict, the fix."""
    words = {
        HOLDS: "holds as written",
        REORDERED: "holds once the product order, kind or transposes are fixed",
        WRONG: "wrong; the correct identity is",
    }
    out = [
        "The seed writes its derivation for one example, a row $f_0$, with $\\cdot$ for a matrix "
        "product and juxtaposition for the entrywise product its code computes. Each of its "
        "equations was restated that way and decided by the same procedure as derive's own "
        "identities; where it fails, the fewest changes of product order, product kind and "
        "transposes that make it hold were searched for and proved, or else derive's identity "
        "for the same quantity is given.\n",
    ]
    for v in verdicts:
        part = f"\\paragraph{{{_tex_text(v.equation.what)}}} The seed's\n\\[ {v.seed} \\]\n"
        part += words[v.verdict]
        if v.verdict == HOLDS:
            part += ".\n"
        else:
            part += f"{':' if v.verdict == WRONG else '; it reads'}\n\\[ {v.correct} \\]\n"
        if v.equation.note:
            part += f"Note: {_tex_text(v.equation.note)}.\n"
        out.append(part)
    return "\n".join(out)


def main(as_json_output: bool = False) -> int:
    """``--seed-check``: print the table (or JSON); exit 0 (the verdicts are the output)."""
    import sys

    verdicts = check()
    sys.stdout.write(as_json(verdicts) if as_json_output else table(verdicts))
    return 0
