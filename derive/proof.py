"""Exact verification of the derived identities against the scalar chain rule.

Method: give every matrix small, non-square, explicit entries that are SymPy
symbols; leave each activation an undefined function (so an identity that
holds holds for every activation); differentiate the explicit scalar loss by
the scalar chain rule, node by node on SymPy's expression tree
(``engine.directional_derivative``, tested against SymPy's ``diff``); evaluate
the claimed matrix formula on the same entries; map every applied function and derivative to a fresh symbol (equal
arguments give equal symbols); and decide ``expand(lhs - rhs) == 0``.  That is
a decision procedure for polynomial identity, so a wrong formula is rejected,
not merely unlikely to pass.

Any depth is covered by induction on the chain: the output lemma (the base),
the one-layer step lemma for an arbitrary upstream gradient G (the step), and
a structural check that every layer's derived identity *is* the step lemma's
formula at that layer.  An end-to-end check of the whole network at small
widths runs on top: by expansion up to depth ``EXPAND_DEPTH``, deeper by exact
evaluation at random points of a prime field (``proof_unrolled``, a randomised
decision procedure whose error bound is computed and printed), up to
``END_TO_END_DEPTH`` layers by default.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import sympy as sp

from . import catalog, engine, model, penalty
from .catalog import (
    A,
    Activation,
    LossFunction,
    rewrite_holds,
    same,
    stable,
    target,
)
from .check import Check
from .derivation import Derivation, backward, output_lemma_chain, step_lemma_chain
from .expr import (
    Activate,
    ActivateDeriv,
    Add,
    Axis,
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
    Scale,
    Spread,
    Sub,
    SumCols,
    SumRows,
    Transpose,
    Var,
    assert_never,
)
from .layers import adjoint_names
from .model import Network, Step
from .report import plain
from .symbolic_widths import check_penalty_symbolic, check_step_lemma_symbolic

Env = dict[Var, sp.Matrix]

# The decision procedure's leaf (``engine``), under the proof's names as before.
Atoms = engine.Atoms
GenericActivation = engine.GenericActivation
_loss_matrix = engine._loss_matrix
claimed_gradient = engine.claimed_gradient
generic_activation = engine.generic_activation
identical = engine.identical
symbols_matrix = engine.symbols_matrix
matmul = engine.matmul
targets = engine.targets


# --- explicit evaluation -----------------------------------------------------


@dataclass(frozen=True)
class Semantics:
    """How activations and the loss read on explicit SymPy matrices."""

    activation: Callable[[int], Callable[[sp.Expr], sp.Expr]]
    derivative: Callable[[int], Callable[[sp.Expr], sp.Expr]]
    loss: LossFunction
    penalty_gradient: sp.Expr = penalty.GRADIENT  # λ w: how PenaltyGrad reads, entry by entry
    sizes: Mapping[sp.Symbol, int] = field(default_factory=dict)  # counts m, n: their values


def generic_semantics(loss: LossFunction) -> Semantics:
    """Each layer's activation an arbitrary function a_l; its derivative Da_l."""
    return Semantics(
        lambda layer: generic_activation(layer)[0],
        lambda layer: generic_activation(layer)[1],
        loss,
    )


def _broadcast(left: sp.Matrix, right: sp.Matrix) -> sp.Matrix:
    if right.rows == 1 and left.rows != 1:
        right = matmul(sp.ones(left.rows, 1), right)
    if left.shape != right.shape:
        raise sp.ShapeError(f"cannot add {left.shape} and {right.shape}")
    return left + right


def evaluate(expr: Expr, env: Env, sem: Semantics) -> sp.Matrix:
    """The explicit SymPy matrix (or 1x1 scalar) that ``expr`` denotes."""
    match expr:
        case Var():
            return env[expr]
        case MatMul(left, right):
            lhs, rhs = evaluate(left, env, sem), evaluate(right, env, sem)
            return matmul(lhs, rhs)
        case Add(left, right):
            return _broadcast(evaluate(left, env, sem), evaluate(right, env, sem))
        case Hadamard(left, right):
            lhs, rhs = evaluate(left, env, sem), evaluate(right, env, sem)
            if lhs.shape != rhs.shape:
                raise sp.ShapeError(f"entrywise product of {lhs.shape} and {rhs.shape}")
            return lhs.multiply_elementwise(rhs)
        case Transpose(arg):
            return evaluate(arg, env, sem).T
        case SumRows(arg):
            inner = evaluate(arg, env, sem)
            return matmul(sp.ones(1, inner.rows), inner)
        case Activate(layer, arg):
            return evaluate(arg, env, sem).applyfunc(sem.activation(layer))
        case ActivateDeriv(layer, arg):
            return evaluate(arg, env, sem).applyfunc(sem.derivative(layer))
        case Loss(pred, target) | LossGrad(pred, target):
            p, y = evaluate(pred, env, sem), evaluate(target, env, sem)
            if p.shape != y.shape:
                raise sp.ShapeError(f"prediction {p.shape} against target {y.shape}")
            return _loss_matrix(sem.loss, p, y, gradient=isinstance(expr, LossGrad))
        case Penalty(arg):
            return sp.Matrix([[penalty_of([evaluate(arg, env, sem)])]])
        case PenaltyGrad(arg):
            gradient = sem.penalty_gradient
            return evaluate(arg, env, sem).applyfunc(lambda e: gradient.subs(penalty.w, e))
        case Sub(left, right):
            lhs, rhs = evaluate(left, env, sem), evaluate(right, env, sem)
            if lhs.shape != rhs.shape:
                raise sp.ShapeError(f"difference of {lhs.shape} and {rhs.shape}")
            return lhs - rhs
        case Scale(arg, factor):
            return evaluate(arg, env, sem) * factor.subs(sem.sizes)
        case SumCols(arg):
            inner = evaluate(arg, env, sem)
            return matmul(inner, sp.ones(inner.cols, 1))
        case Mean(arg, axis, count):
            return _mean(evaluate(arg, env, sem), axis, _count(count, sem))
        case Spread(arg, axis, count):
            return _spread(evaluate(arg, env, sem), axis, _count(count, sem))
        case Power(arg, exponent):
            return evaluate(arg, env, sem).applyfunc(lambda e: e**exponent)
        case InvSqrt(arg, eps):
            half = sp.Rational(-1, 2)
            return evaluate(arg, env, sem).applyfunc(lambda e: sp.Pow(e + eps, half))
        case _:
            assert_never(expr)


def _count(symbol: sp.Symbol, sem: Semantics) -> int:
    if symbol not in sem.sizes:
        raise sp.ShapeError(f"no size given for the count {symbol}")
    return sem.sizes[symbol]


def _mean(inner: sp.Matrix, axis: Axis, count: int) -> sp.Matrix:
    if axis is Axis.BATCH and inner.rows == count:
        return matmul(sp.ones(1, count), inner) / count
    if axis is Axis.FEATURES and inner.cols == count:
        return matmul(inner, sp.ones(count, 1)) / count
    raise sp.ShapeError(f"mean of {count} over the {axis.value} of {inner.shape}")


def _spread(inner: sp.Matrix, axis: Axis, count: int) -> sp.Matrix:
    if axis is Axis.BATCH and inner.rows == 1:
        return matmul(sp.ones(count, 1), inner)
    if axis is Axis.FEATURES and inner.cols == 1:
        return matmul(inner, sp.ones(1, count))
    raise sp.ShapeError(f"spread over the {axis.value} of {inner.shape}")


def penalty_of(weights: list[sp.Matrix]) -> sp.Expr:
    """λ/2 Σ ‖W‖_F² on explicit matrices, from the definition of one entry's term."""
    return sp.Add(*(penalty.ENTRY.subs(penalty.w, e) for matrix in weights for e in matrix))


def _compare(
    env: Env,
    sem: Semantics,
    claims: dict[Var, Expr],
    scalar: sp.Expr,
    names: dict[Var, Var],
    deltas_checked: bool = True,
    one_pass: bool = False,
) -> tuple[bool, str]:
    """Check each claim ∂scalar/∂var = formula against the scalar derivative, entry by
    entry; δ_l's value feeds later claims.

    ``one_pass``: one directional derivative of the scalar for all entries at once
    (``engine.identical_gradient``, the same decision): faster on the unrolled
    network, slower on the lemmas' small scalars.

    ``names`` gives the named adjoints (z_l → δ_l, ``Network.adjoint_names``).

    With ``deltas_checked=False`` (end to end, where z_l's entries are
    expressions, not symbols one can differentiate by) a δ is only evaluated
    and is proved through the parameter gradients that use it.
    """
    env = dict(env)
    checked = []
    for var, formula in claims.items():
        try:
            value = evaluate(formula, env, sem)
        except sp.ShapeError as err:
            return False, f"{var.name}: {err}"
        is_delta = var in names
        if is_delta:
            env[names[var]] = value
        if deltas_checked or not is_delta:
            checked.append((var.name, env[var], value))
    if one_pass:
        return engine.identical_gradient(scalar, checked)
    for name, entries, value in checked:
        ok, why = identical(
            entries.applyfunc(lambda s: engine.directional_derivative(scalar, {s: sp.S.One})),
            value,
        )
        if not ok:
            return False, f"{name}: {why}"
    return True, ""


# --- the checks --------------------------------------------------------------

LEMMA_SHAPE = (2, 3, 2)  # batch m, width below p, width above n: non-square


_LEMMAS_PROVED: dict[tuple[object, ...], Check] = {}
"""The default lemmas already proved in this process, by what each claim depends on (the
output lemma: the depth, the loss; the step lemma: the penalty; an activation's or a loss's
code forms: the catalog entry; end to end: the chain, the claims, the loss, the penalty), as
``_SHARDS_PROVED``: a grid search or a notebook deriving many networks decides each once.
A claim, form or assumption passed in (the negative controls) is always decided afresh, and a
failure is never kept."""


def _proved_once(key: tuple[object, ...], decide: Callable[[], Check]) -> Check:
    if key not in _LEMMAS_PROVED:
        check = decide()
        if not check.ok:
            return check
        _LEMMAS_PROVED[key] = check
    return _LEMMAS_PROVED[key]


def check_output_lemma(
    network: Network, claims: dict[Var, Expr] | None = None, assume: bool = True
) -> Check:
    """Base case: δ_L = ∂L/∂Ŷ ⊙ a'(z_L), for any activation.

    With a fused loss: δ_L = Ŷ - Y for the loss's own link, from the scalar derivative
    of the loss of link(z_L), under the loss's assumption on the targets
    (``assume=False`` drops it, to show that it is needed).
    """
    if claims is None and assume:
        key = ("output lemma", network.depth, network.fused, network.loss)
        return _proved_once(key, lambda: _output_lemma(network, None, assume))
    return _output_lemma(network, claims, assume)


def _output_lemma(network: Network, claims: dict[Var, Expr] | None, assume: bool) -> Check:
    start = time.perf_counter()
    depth = network.depth
    fused = network.fused
    steps, seeds = output_lemma_chain(depth, fused)
    if claims is None:
        claims = {model.z(depth): backward(steps, seeds)[model.z(depth)]}
    m, _, n = LEMMA_SHAPE
    if network.loss.rowwise:
        n = 3  # a softmax over 3 outputs: no coincidence of 2 can help
    env: Env = {
        model.z(depth): symbols_matrix("z", m, n),
        model.Y: targets(network.loss, m, n, assume),
    }
    sem = generic_semantics(network.loss)
    for step in steps:
        env[step.target] = evaluate(step.expr, env, sem)
    ok, why = _compare(env, sem, claims, env[model.LOSS][0, 0], adjoint_names(steps))
    if network.loss.link is not None:  # fused
        link = network.loss.link.name
        statement = (
            f"δ_L = ∂L/∂z_L = {plain(network.loss.gradient_from_output)} with A = {link}(z_L)"
        )
        method = (
            f"exact: chain rule on the {network.loss.name} loss of {link}(z_L), {m}x{n} symbols"
        )
        if network.loss.assumption:
            method += ", targets with rows summing to 1" if assume else ", targets unconstrained"
    else:
        statement = "δ_L = ∂L/∂Ŷ ⊙ a'(z_L)"
        method = f"exact: chain rule on the {network.loss.name} loss, {m}x{n} symbols, a undefined"
    return Check("output lemma", statement, method, ok, time.perf_counter() - start, why)


def check_step_lemma(
    claims: dict[Var, Expr] | None = None,
    layer: int = 2,
    penalty: bool = False,
    penalty_gradient: sp.Expr | None = None,
) -> Check:
    """Induction step: for any upstream gradient G = ∂L/∂z_l,
    δ_{l-1} = (G W_lᵀ) ⊙ a'(z_{l-1}), ∂L/∂W_l = a_{l-1}ᵀ G, ∂L/∂b_l = 1ᵀ G.

    With ``penalty`` the objective is g(z_l) + λ/2 ‖W_l‖_F², written out from
    ``derive.penalty``'s entry with λ a symbol, and ∂/∂W_l gains λ W_l (the
    biases nothing).  ``penalty_gradient`` replaces λ w as the claimed
    entry of PenaltyGrad (tests: a wrong factor must be rejected).
    """
    if claims is None and penalty_gradient is None:
        key = ("step lemma", layer, penalty)
        return _proved_once(key, lambda: _step_lemma(None, layer, penalty, None))
    return _step_lemma(claims, layer, penalty, penalty_gradient)


def _step_lemma(
    claims: dict[Var, Expr] | None,
    layer: int,
    penalty: bool,
    penalty_gradient: sp.Expr | None,
) -> Check:
    start = time.perf_counter()
    steps, seeds = step_lemma_chain(layer, penalty)
    if claims is None:
        claims = backward(steps, seeds)
        claims = {v: claims[v] for v in (model.z(layer - 1), model.W(layer), model.b(layer))}
    m, p, n = LEMMA_SHAPE
    env: Env = {
        model.z(layer - 1): symbols_matrix("z", m, p),
        model.W(layer): symbols_matrix("w", p, n),
        model.b(layer): symbols_matrix("b", 1, n),
    }
    sem = generic_semantics(LossFunction("none", sp.Integer(0), "", ""))
    if penalty_gradient is not None:
        sem = replace(sem, penalty_gradient=penalty_gradient)
    for step in steps:
        env[step.target] = evaluate(step.expr, env, sem)
    # An arbitrary loss upstream: an arbitrary function g of every entry of
    # z_l, whose partial derivatives are the arbitrary functions Dg_k.
    upper = list(env[model.z(layer)])
    partials = [sp.Function(f"Dg_{k}") for k in range(m * n)]

    def fdiff(self: GenericActivation, argindex: int = 1) -> sp.Expr:
        return partials[argindex - 1](*self.args)

    g = type("g", (GenericActivation,), {"nargs": m * n, "fdiff": fdiff})
    scalar = g(*upper)
    if penalty:
        scalar += penalty_of([env[model.W(layer)]])
    env[model.delta(layer)] = sp.Matrix(m, n, [d(*upper) for d in partials])
    ok, why = _compare(env, sem, claims, scalar, adjoint_names(steps))
    if penalty:
        return Check(
            "penalty lemma",
            "for any G = ∂L/∂z_l, with λ/2 ‖W_l‖² added: ∂/∂W_l = a_{l-1}ᵀ G + λ W_l, "
            "∂/∂b_l = 1ᵀ G, δ_{l-1} unchanged",
            f"exact: chain rule on g(z_l) + λ/2 Σ w_ij² for undefined g and a, λ a symbol, "
            f"m={m}, widths {p}->{n}",
            ok,
            time.perf_counter() - start,
            why,
        )
    return Check(
        "step lemma",
        "for any G = ∂L/∂z_l: δ_{l-1} = (G W_lᵀ) ⊙ a'(z_{l-1}), ∂L/∂W_l = a_{l-1}ᵀ G, ∂L/∂b_l = 1ᵀ G",
        f"exact: chain rule on g(z_l) for undefined g and a, m={m}, widths {p}->{n}",
        ok,
        time.perf_counter() - start,
        why,
    )


def check_layers_are_lemma_instances(derivation: Derivation) -> Check:
    """Every layer's identity is, term for term, the step lemma at that layer."""
    start = time.perf_counter()
    network = derivation.network
    problems = []
    steps, seeds = output_lemma_chain(network.depth, network.fused)
    if derivation.deltas[network.depth] != backward(steps, seeds)[model.z(network.depth)]:
        problems.append(f"delta{network.depth} is not the output lemma")
    for layer in network.layers:
        lemma = backward(*layer.lemma_chain(network.l2))
        for var in layer.parameters():
            if derivation.gradients[var] != lemma[var]:
                problems.append(f"dL/d{var.name} is not the step lemma")
        below = layer.index - 1
        if below > 0 and derivation.deltas[below] != lemma[model.z(below)]:
            problems.append(f"delta{below} is not the step lemma")
    return Check(
        "induction",
        "the 1 layer instantiates the lemmas"
        if network.depth == 1
        else f"each of the {network.depth} layers instantiates the lemmas",
        "structural: identical expression trees"
        + (" (the penalty lemma for W_l)" if network.l2 else ""),
        not problems,
        time.perf_counter() - start,
        "; ".join(problems),
    )


def end_to_end_widths(depth: int) -> tuple[int, ...]:
    """Small non-square widths: 3, 2, 3, 2, ... so no transpose can hide."""
    return tuple(3 if k % 2 == 0 else 2 for k in range(depth + 1))


def _end_to_end_inputs(network: Network, batch_size: int) -> tuple[tuple[int, ...], Env]:
    widths = end_to_end_widths(network.depth)
    env: Env = {
        model.X: symbols_matrix("x", batch_size, widths[0]),
        model.Y: targets(network.loss, batch_size, widths[-1]),
    }
    for layer in range(1, network.depth + 1):
        env[model.W(layer)] = symbols_matrix(f"w{layer}", widths[layer - 1], widths[layer])
        env[model.b(layer)] = symbols_matrix(f"b{layer}", 1, widths[layer])
    return widths, env


def _end_to_end_claims(derivation: Derivation) -> dict[Var, Expr]:
    claims: dict[Var, Expr] = {}
    for layer in range(derivation.network.depth, 0, -1):
        claims[model.z(layer)] = derivation.deltas[layer]
        claims[model.W(layer)] = derivation.gradients[model.W(layer)]
        claims[model.b(layer)] = derivation.gradients[model.b(layer)]
    return claims


OBJECTIVE = Var(Kind.OBJECTIVE)
"""The penalised objective J = L + λ/2 Σ_l ‖W_l‖_F², end to end."""

_PENALISED = " plus λ/2 Σ ‖W_l‖² (λ a symbol)"


def _objective_steps(network: Network) -> list[Step]:
    """With ``l2``: J = L + λ/2 ‖W_1‖² + ... + λ/2 ‖W_L‖², built here, apart from the model's
    ``penalty_steps``, so that a penalty on the wrong parameters is caught."""
    if not network.l2:
        return []
    total: Expr = model.LOSS
    for layer in range(1, network.depth + 1):
        total = Add(total, Penalty(model.W(layer)))
    return [Step(len(network.steps()) + 1, OBJECTIVE, total)]


EXPAND_DEPTH = 3
"""Up to this depth ``check_end_to_end`` expands (deterministic; CPU time on a shared 2-core VM,
one directional derivative and the polynomial ring: depth 2 0.1 s, 3 0.15 s, 4 0.33 s; the field
method 0.08-0.12 s at depths 2-4); deeper it evaluates over a prime field (randomised, linear
in the depth)."""


def check_end_to_end(
    derivation: Derivation,
    batch_size: int = 2,
    method: str = "auto",
    rng: random.Random | None = None,
) -> Check:
    """The whole network at the user's depth, on small explicit matrices.

    ``method``: "expand" (the scalar derivative of the nested loss, ``expand`` to 0:
    deterministic, exponential in the depth), "field" (``proof_unrolled``:
    exact evaluation over GF(2^61 - 1) at random points, error bound stated,
    linear in the depth) or "auto" (expand up to ``EXPAND_DEPTH``).
    ``rng`` fixes the random points (tests); by default they come from the OS.

    Decided once per process for the same identity (``_LEMMAS_PROVED``), unless ``rng`` is
    given: the activations are undefined functions a_l and the widths depend on the depth
    only, so networks that differ in their activations or widths but not in their chain,
    claims, loss and penalty pose the same identity (e.g. every catalog activation with one
    loss at one depth).
    """
    if method == "auto":
        method = "expand" if derivation.network.depth <= EXPAND_DEPTH else "field"
    if method not in ("expand", "field"):
        raise ValueError(f"unknown end-to-end method {method!r}")
    if rng is None:
        return _proved_once(
            _end_to_end_key(derivation, batch_size, method),
            lambda: _check_end_to_end(derivation, batch_size, method, None),
        )
    return _check_end_to_end(derivation, batch_size, method, rng)


def _end_to_end_key(derivation: Derivation, batch_size: int, method: str) -> tuple[object, ...]:
    """Everything the end-to-end decision and its text depend on."""
    network = derivation.network
    return (
        "end to end",
        method,
        batch_size,
        network.loss,
        network.l2,
        tuple(network.steps()),
        tuple(network.parameters()),
        tuple(_end_to_end_claims(derivation).items()),
    )


def _check_end_to_end(
    derivation: Derivation, batch_size: int, method: str, rng: random.Random | None
) -> Check:
    if method == "field":
        return _check_end_to_end_field(derivation, batch_size, rng)
    start = time.perf_counter()
    network = derivation.network
    widths, env = _end_to_end_inputs(network, batch_size)
    sem = generic_semantics(network.loss)
    for step in network.steps():
        env[step.target] = evaluate(step.expr, env, sem)
    claims = _end_to_end_claims(derivation)
    # Each δ_l is evaluated and proved through the gradients of W_l and b_l
    # that use it (z_l's entries are expressions here, not symbols).
    scalar = env[model.LOSS][0, 0]
    if network.l2:  # the objective, written out here from the penalty's definition
        scalar += penalty_of([env[model.W(layer)] for layer in range(1, network.depth + 1)])
    ok, why = _compare(
        env, sem, claims, scalar, network.adjoint_names(), deltas_checked=False, one_pass=True
    )
    return Check(
        "end to end",
        f"all {len(network.parameters())} parameter gradients of the depth-{network.depth} network"
        + (" with the L2 penalty" if network.l2 else ""),
        f"exact: chain rule on the unrolled loss{_PENALISED if network.l2 else ''}, "
        f"batch {batch_size}, widths {widths}, a_l undefined",
        ok,
        time.perf_counter() - start,
        why,
    )


def _check_end_to_end_field(
    derivation: Derivation, batch_size: int, rng: random.Random | None
) -> Check:
    """The unrolled identity decided by ``proof_unrolled`` (see there for why it is a proof)."""
    from . import proof_unrolled as unrolled

    start = time.perf_counter()
    network = derivation.network
    widths, env = _end_to_end_inputs(network, batch_size)
    sem = generic_semantics(network.loss)
    graph = unrolled.build_graph(
        network.steps() + _objective_steps(network),
        env,
        network.parameters(),
        lambda e, env: evaluate(e, env, sem),
        objective=OBJECTIVE if network.l2 else model.LOSS,
    )
    sides = unrolled.Sides([], {})
    rhs_env = dict(graph.env)
    names = network.adjoint_names()
    outcome = None
    for var, formula in _end_to_end_claims(derivation).items():
        try:
            value = evaluate(formula, rhs_env, sem)
        except sp.ShapeError as err:
            outcome = unrolled.Outcome(False, f"{var.name}: {err}", 1.0)
            break
        if var in names:  # δ_l: named, so the formulas below it stay small
            entries = symbols_matrix(names[var].name, value.rows, value.cols)
            sides.definitions.update(zip(entries, value, strict=True))
            rhs_env[names[var]] = entries
            value = entries
        sides.claims.append((var, value))
    if outcome is None:
        outcome = unrolled.decide(graph, sides, rng or random.SystemRandom())
    method = (
        f"randomised exact: SymPy's partials of every explicit entry"
        f"{' of the loss plus λ/2 Σ ‖W_l‖², λ a symbol,' if network.l2 else ''}"
        f" chained in forward mode, "
        f"against the formulas, both computed mod the prime 2**61-1 at {unrolled.TRIALS} "
        f"random points; batch {batch_size}, widths {widths}, a_l undefined; a wrong identity "
        f"passes with probability at most {unrolled.bound_text(outcome.error_bound)}"
    )
    return Check(
        "end to end",
        f"all {len(network.parameters())} parameter gradients and {network.depth} deltas "
        f"of the depth-{network.depth} network" + (" with the L2 penalty" if network.l2 else ""),
        method,
        outcome.ok,
        time.perf_counter() - start,
        outcome.detail,
    )


def check_activation(
    act: Activation,
    rewrite: sp.Expr | None = None,
    code_form: sp.Expr | None = None,
    derivative_code_form: sp.Expr | None = None,
) -> Check:
    """The forms of a(z) and a'(z) the generated code evaluates equal the definition.

    Three claims, each decided by ``catalog.same``: the rewrite of a'(z)
    through A (when found), the stable form of a(z), and the stable form of
    the derivative the code uses.  The optional arguments replace the
    catalog's forms, so that tests can show a wrong one is rejected.
    """
    if rewrite is None and code_form is None and derivative_code_form is None:
        return _proved_once(("activation", act), lambda: _activation(act, None, None, None))
    return _activation(act, rewrite, code_form, derivative_code_form)


def _activation(
    act: Activation,
    rewrite: sp.Expr | None,
    code_form: sp.Expr | None,
    derivative_code_form: sp.Expr | None,
) -> Check:
    start = time.perf_counter()
    if not act.entrywise:  # softmax: its stable form only (the fused loss covers its gradient)
        form = act.code_form if code_form is None else code_form
        ok = catalog.softmax_form_holds(act.definition, form)
        method = "exact: the stable form, with log-sum-exp written out, cancels to the definition"
        return Check(
            f"activation {act.name}",
            f"{act.name} = {plain(form)}",
            method,
            ok,
            time.perf_counter() - start,
        )
    rewrite = act.derivative_from_output if rewrite is None else rewrite
    code_form = act.code_form if code_form is None else code_form
    if derivative_code_form is None:
        derivative_code_form = stable(act.derivative if rewrite is None else rewrite)
    problems = []
    if rewrite is not None and not rewrite_holds(act, rewrite):
        problems.append(f"a'(z) != {plain(rewrite)} with A = a(z)")
    if not same(code_form, act.definition):
        problems.append(f"a(z) != {plain(code_form)}")
    if not same(derivative_code_form.subs(A, act.definition), act.derivative):
        problems.append(f"a'(z) != {plain(derivative_code_form)}")
    if rewrite is None:
        statement = (
            f"{act.name}'(z) is SymPy's derivative of the definition, evaluated from z "
            "(no form through A = a(z) was found)"
        )
        method = "exact: the code's forms of a(z) and a'(z) equal the definition and its "
        method += "derivative: split at 0, rewrite in exp(z), cancel to 0; and at points around 0"
    else:
        statement = f"{act.name}'(z) = {plain(rewrite)} with A = {act.name}(z)"
        method = "exact: substitute A = a(z), split at 0, rewrite in exp(z), cancel to 0; "
        method += "and at points around 0"
    return Check(
        f"activation {act.name}",
        statement,
        method,
        not problems,
        time.perf_counter() - start,
        "; ".join(problems),
    )


def _readable(expr: sp.Expr) -> str:
    """A catalog formula in plain text, with Ŷ and Y for the prediction and target."""
    names = {
        catalog.pred: sp.Symbol("Ŷ"),
        catalog.target: sp.Symbol("Y"),
        catalog.z: sp.Symbol("z"),
    }
    return plain(expr.xreplace(names), order="rev-lex")


def check_loss(loss: LossFunction, code_form: sp.Expr | None = None) -> Check:
    """The loss the generated code evaluates (its stable form) equals the definition."""
    if code_form is None:
        return _proved_once(("loss", loss), lambda: _loss(loss, None))
    return _loss(loss, code_form)


def _loss(loss: LossFunction, code_form: sp.Expr | None) -> Check:
    start = time.perf_counter()
    form = loss.code_form if code_form is None else code_form
    if loss.rowwise:
        ok = catalog.row_loss_form_holds(loss, form)
    else:
        ok = same(
            form.subs(target, sp.Rational(1, 3)), loss.logit_entry.subs(target, sp.Rational(1, 3))
        )
        ok = ok and sp.expand(sp.diff(form - loss.logit_entry, target, 2)) == 0
        ok = ok and same(sp.diff(form, target), sp.diff(loss.logit_entry, target))
    return Check(
        f"loss {loss.name}",
        f"L = sum of {_readable(form)}",
        "exact: the stable form equals the definition (split in y, rewrite in exp, cancel)",
        ok,
        time.perf_counter() - start,
    )


END_TO_END_DEPTH = 30
"""Default deepest network checked end to end: up to ``EXPAND_DEPTH`` by expansion, deeper
over a prime field (benchmarks/bench_proof.py: depth 8 about 0.5 s, 30 about 2 s quiet)."""


_SHARDS_PROVED: dict[LossFunction, Check] = {}
"""The sum-of-shards lemma, once proved for a loss in this process (it depends on nothing else)."""


def _sum_of_shards(network: Network) -> Check:
    """The sum-of-shards lemma for this network's loss (0.1-0.6 s, any depth)."""
    from .shards import check_sum_of_shards  # shards imports this module

    if network.loss not in _SHARDS_PROVED:
        check = check_sum_of_shards(network.loss)
        if not check.ok:
            return check
        _SHARDS_PROVED[network.loss] = check
    return _SHARDS_PROVED[network.loss]


def verify(derivation: Derivation, end_to_end_depth: int = END_TO_END_DEPTH) -> list[Check]:
    """All checks for one network; end to end only up to ``end_to_end_depth`` layers."""
    network = derivation.network
    if not network.dense:
        raise ValueError(
            "proof.verify proves dense networks; verification.verify proves every layer kind"
        )

    checks = [
        check_output_lemma(network),
        check_step_lemma(),
        _proved_once(("step lemma, any width",), check_step_lemma_symbolic),
    ]
    if network.l2:
        checks += [
            check_step_lemma(penalty=True),
            _proved_once(("penalty lemma, any width",), check_penalty_symbolic),
        ]
    checks.append(check_layers_are_lemma_instances(derivation))
    for act in dict.fromkeys(network.activations):
        checks.append(check_activation(act))
    checks.append(check_loss(network.loss))
    checks.append(_sum_of_shards(network))
    if network.depth <= end_to_end_depth:
        checks.append(check_end_to_end(derivation))
    else:
        checks.append(
            Check(
                "end to end",
                f"depth {network.depth}",
                f"skipped above depth {end_to_end_depth} (--end-to-end-depth); "
                "every depth is covered by the lemmas and the induction",
                True,
                0.0,
                skipped=True,
            )
        )
    return checks
