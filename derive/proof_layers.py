"""Exact proofs for networks of mixed layer kinds: each block's lemma, the induction, end to end.

A block is one layer's own steps fed by an arbitrary upstream gradient G = ∂L/∂a_l
(``block_chain``): for a dense layer z_l, a_l; a residual z_l, h_l, a_l = h_l + a_{l-1}
(+ a_{l-1} P_l); a dropout a_l = a_{l-1} ⊙ M_l / (1 - p).  ``check_block_lemma`` decides,
at concrete non-square sizes with every entry a symbol, the activations undefined
functions, the mask's entries and the rate p symbols, and G the partials of an undefined
function g of a_l's entries, that the chain rule's ∂/∂a_{l-1} and parameter gradients
equal the scalar chain rule's derivative of g(a_l) (plus the penalty with ``--l2``;
``engine.directional_derivative``).  The
normalizations' lemma is ``proof_normalization``'s (radicals as positive atoms).

The induction (``check_blocks_are_lemma_instances``): walking down from the loss, each
layer's derived identities are, tree for tree, its block lemma with G replaced by what
arrives from the layer above (the loss's gradient at the top); what the lemma sends to
a_{l-1} is what arrives at the layer below.  End to end (``check_end_to_end_mixed``): the
whole network at small widths, the scalar derivative of the unrolled loss against every
parameter gradient, the radicals of normalizations reduced as in ``engine``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import sympy as sp

from . import engine, model, proof
from .catalog import LossFunction
from .check import Check
from .derivation import ONE, Derivation, backward
from .expr import Add, Expr, Kind, Loss, Penalty, Var, assert_never, substitute
from .layers import (
    BATCH,
    PENALTY,
    WIDTH,
    AnyLayer,
    BatchNorm,
    Dense,
    Dropout,
    LayerNorm,
    Residual,
    Step,
    numbered,
    weights,
)
from .model import Network, kind_name
from .proof import (
    Env,
    GenericActivation,
    Semantics,
    evaluate,
    generic_semantics,
    penalty_of,
    symbols_matrix,
)

RATE = sp.Symbol("p", nonnegative=True)
"""The dropout rate in the lemma: a symbol, so the lemma holds for every p (with p ≠ 1)."""

LEMMA_BATCH = 2
"""m in a block lemma; widths 3 -> 2 (a projection, a dense layer) or 3 (width kept)."""


def block_chain(
    layer: AnyLayer, penalty: bool = False, logits: bool = False
) -> tuple[list[Step], dict[Var, Expr]]:
    """The layer's own steps fed by G = ∂L/∂(its output) (``logits``: a dense layer fed at z_l,
    the fused loss's case), plus λ/2 ‖·‖² of its weights with ``penalty``."""
    steps = list(layer.steps())
    top = model.z(layer.index) if logits else layer.output
    seeds: dict[Var, Expr] = {top: model.INCOMING}
    penalised = weights(layer) if penalty else ()
    if penalised:
        total: Expr = Penalty(penalised[0])
        for weight in penalised[1:]:
            total = Add(total, Penalty(weight))
        steps.append(Step(0, PENALTY, total))
        seeds[PENALTY] = ONE
    return numbered(steps), seeds


def sample_block(kind: str) -> AnyLayer:
    """The layer a block lemma is proved on, at index 2: "dense", "res", "proj" or "drop"."""
    from .catalog import activation

    act = activation("tanh")  # replaced by an undefined function in the proof
    if kind == "dense":
        return Dense(2, 3, 2, act)
    if kind == "res":
        return Residual(2, 3, 3, act)
    if kind == "proj":
        return Residual(2, 3, 2, act, projection=True)
    if kind == "drop":
        return Dropout(2, 3, RATE)
    raise ValueError(f"no block lemma for {kind!r}")


def _n_in(layer: AnyLayer) -> int:
    match layer:
        case Dense() | Residual():
            return layer.n_in
        case LayerNorm() | BatchNorm() | Dropout():
            return layer.width
        case _:
            assert_never(layer)


def _upstream(entries: list[sp.Expr]) -> tuple[sp.Expr, list[sp.Expr]]:
    """g(entries) for an undefined g, and its partials Dg_k(entries): an arbitrary loss above."""
    partials = [sp.Function(f"Dg_{k}") for k in range(len(entries))]

    def fdiff(self: GenericActivation, argindex: int = 1) -> sp.Expr:
        return partials[argindex - 1](*self.args)

    g = type("g", (GenericActivation,), {"nargs": len(entries), "fdiff": fdiff})
    return g(*entries), [d(*entries) for d in partials]


def block_claims(layer: AnyLayer, penalty: bool = False) -> dict[Var, Expr]:
    """What the chain rule derives for the block: its named adjoints (first, from the top),
    then ∂/∂a_{l-1}, the parameters and any other input it reads (a mask)."""
    return backward(*block_chain(layer, penalty))


def check_block_lemma(
    layer: AnyLayer, claims: dict[Var, Expr] | None = None, penalty: bool = False
) -> Check:
    """For any upstream G = ∂L/∂a_l: the block's derived gradients equal the scalar derivative.

    ``claims`` replaces the derived ones (the negative controls)."""
    start = time.perf_counter()
    steps, _ = block_chain(layer, penalty)
    if claims is None:
        claims = block_claims(layer, penalty)
    m, n_in = LEMMA_BATCH, _n_in(layer)
    env: Env = {layer.input: symbols_matrix("x", m, n_in)}
    for var in layer.parameters():
        rows, cols = _parameter_shape(layer, var)
        env[var] = symbols_matrix(var.name, rows, cols)
    if isinstance(layer, Dropout):
        env[layer.mask] = symbols_matrix("mask", m, n_in)
    sem = generic_semantics(LossFunction("none", sp.Integer(0), "", ""))
    for step in steps:
        if step.target != PENALTY:
            env[step.target] = evaluate(step.expr, env, sem)
    scalar, partials = _upstream(list(env[layer.output]))
    if penalty:
        scalar += penalty_of([env[w] for w in weights(layer)])
    out = env[layer.output]
    env[model.INCOMING] = sp.Matrix(out.rows, out.cols, partials)
    ok, why = _decide(env, sem, claims, scalar, steps)
    sizes = f"m={m}, widths {n_in}->{env[layer.output].cols}"
    what = {
        "dense": "δ_l = G ⊙ a'(z_l), ∂L/∂a_{l-1} = δ_l W_lᵀ, ∂L/∂W_l = a_{l-1}ᵀ δ_l, "
        "∂L/∂b_l = 1ᵀ δ_l",
        "residual": "ā_l = G, δ_l = ā_l ⊙ a'(z_l), ∂L/∂a_{l-1} = "
        + ("ā_l P_lᵀ" if isinstance(layer, Residual) and layer.projection else "ā_l")
        + " + δ_l W_lᵀ, ∂L/∂W_l = a_{l-1}ᵀ δ_l, ∂L/∂b_l = 1ᵀ δ_l"
        + (", ∂L/∂P_l = a_{l-1}ᵀ ā_l" if isinstance(layer, Residual) and layer.projection else ""),
        "dropout": "ā_l = G, ∂L/∂a_{l-1} = ā_l ⊙ M_l / (1 - p)",
    }.get(kind_name(layer), "")
    label = kind_name(layer)
    if isinstance(layer, Residual) and layer.projection:
        label = "residual with projection"
    return Check(
        f"{label} lemma",
        f"for any G = ∂L/∂a_l: {what}" + (" (plus λ W for each weight)" if penalty else ""),
        f"exact: chain rule on g(a_l){' + λ/2 Σ w²' if penalty else ''} for undefined g and a, "
        f"{sizes}" + (", mask entries and p symbols" if isinstance(layer, Dropout) else ""),
        ok,
        time.perf_counter() - start,
        why,
    )


def _parameter_shape(layer: AnyLayer, var: Var) -> tuple[int, int]:
    n_in = _n_in(layer)
    n_out = layer.n_out if isinstance(layer, Dense | Residual) else n_in
    if var.kind in (Kind.W, Kind.PROJ):
        return n_in, n_out
    return 1, n_out  # b, γ, β: rows


def _decide(
    env: Env, sem: Semantics, claims: dict[Var, Expr], scalar: sp.Expr, steps: list[Step]
) -> tuple[bool, str]:
    """Each claim in order; a named adjoint's value is kept for the claims below it, every
    other claim (a variable whose entries are symbols) is decided against the scalar
    derivative (``engine.directional_derivative``)."""
    names = {s.target: s.adjoint for s in steps if s.adjoint is not None}
    env = dict(env)
    gradients: list[tuple[str, sp.Matrix, sp.Matrix]] = []
    for var, formula in claims.items():
        try:
            value = evaluate(formula, env, sem)
        except sp.ShapeError as err:
            return False, f"{var.name}: {err}"
        if var in names:
            adjoint = names[var]
            assert adjoint is not None
            env[adjoint] = value
            continue
        gradients.append((var.name, env[var], value))
    if not any(_has_root(m) for _, entries, value in gradients for m in (entries, value)):
        # no roots: every gradient in one directional derivative (engine.identical_gradient,
        # the same decision as entry by entry)
        return engine.identical_gradient(scalar, gradients)
    for name, entries, value in gradients:
        expected = entries.applyfunc(
            lambda s: engine.directional_derivative(scalar, {s: sp.Integer(1)})
        )
        ok, why = _identical(expected, value)
        if not ok:
            return False, f"{name}: {why}"
    return True, ""


def _identical(lhs: sp.Matrix, rhs: sp.Matrix) -> tuple[bool, str]:
    """``engine.identical``, or with square roots present, the atoms then the radicals."""
    if not any(m.has(sp.Pow) and _has_root(m) for m in (lhs, rhs)):
        return engine.identical(lhs, rhs)
    atoms = engine.Atoms()
    return engine.identical_with_radicals(lhs.applyfunc(atoms), rhs.applyfunc(atoms))


def _has_root(matrix: sp.Matrix) -> bool:
    return any(p.exp.is_Rational and p.exp.q == 2 for e in matrix for p in e.atoms(sp.Pow))


# --- the induction -------------------------------------------------------------


def check_blocks_are_lemma_instances(derivation: Derivation) -> Check:
    """Every layer's derived identities are its block lemma, G the adjoint from above."""
    start = time.perf_counter()
    network = derivation.network
    problems: list[str] = []
    named = derivation.definitions()
    top = network.layers[-1]
    loss = network.steps()[-1]
    assert isinstance(loss.expr, Loss) and isinstance(loss.expr.pred, Var)
    arriving = backward([loss], {model.LOSS: ONE})[loss.expr.pred]  # the output lemma's G
    for layer in reversed(network.layers):
        logits = network.fused and layer is top
        lemma = backward(*block_chain(layer, network.l2, logits))
        here = {v: substitute(e, {model.INCOMING: arriving}) for v, e in lemma.items()}
        for step in layer.steps():
            if step.adjoint is not None and named.get(step.adjoint) != here[step.target]:
                problems.append(f"{step.adjoint.name} is not the {kind_name(layer)} lemma")
        for var in layer.parameters():
            if derivation.gradients[var] != here[var]:
                problems.append(f"dL/d{var.name} is not the {kind_name(layer)} lemma")
        arriving = here[layer.input]
    kinds = ", ".join(dict.fromkeys(kind_name(x) for x in network.layers))
    return Check(
        "induction",
        f"each of the {network.depth} layers ({kinds}) instantiates its block lemma, fed by "
        "the adjoint the layer above sends down",
        "structural: identical expression trees" + (" (with the penalty)" if network.l2 else ""),
        not problems,
        time.perf_counter() - start,
        "; ".join(problems),
    )


# --- end to end ----------------------------------------------------------------


def end_to_end_widths(network: Network) -> tuple[int, ...]:
    """Small widths the layers accept: dense layers alternate 3, 2 (non-square); with a
    normalization every width after the input is 2 (its lemma's count n is one symbol)."""
    normalized = any(isinstance(x, LayerNorm | BatchNorm) for x in network.layers)
    first = network.layers[0]
    if normalized:  # every normalization at width 2; the input 3 when the first layer maps it
        changes = isinstance(first, Dense) or (isinstance(first, Residual) and first.projection)
        return (3 if changes else 2, *(2 for _ in network.layers))
    widths = [3]
    for layer in network.layers:
        changes = isinstance(layer, Dense) or (isinstance(layer, Residual) and layer.projection)
        widths.append((2 if widths[-1] == 3 else 3) if changes else widths[-1])
    return tuple(widths)


def check_end_to_end_mixed(derivation: Derivation, batch_size: int = 3) -> Check:
    """The scalar derivative of the unrolled loss (plus the penalty) against every parameter
    gradient."""
    start = time.perf_counter()
    network = derivation.network
    env, sem, widths = _end_to_end_env(network, batch_size)
    for step in network.steps():
        env[step.target] = evaluate(step.expr, env, sem)
    scalar = env[model.LOSS][0, 0]
    if network.l2:
        scalar += penalty_of([env[w] for w in network.weights()])
    claims: dict[Var, Expr] = {}
    names = network.adjoint_names()
    by_name = {v: k for k, v in names.items()}
    for name, formula in derivation.definitions().items():
        claims[by_name[name]] = formula
    claims.update(derivation.gradients)
    ok, why = _decide(env, sem, claims, scalar, network.steps())
    return Check(
        "end to end",
        f"all {len(network.parameters())} parameter gradients of the depth-{network.depth} "
        "mixed network" + (" with the L2 penalty" if network.l2 else ""),
        f"exact: chain rule on the unrolled loss, batch {batch_size}, widths {widths}, a_l "
        "undefined, masks and ε symbols, roots as positive atoms",
        ok,
        time.perf_counter() - start,
        why,
    )


def _end_to_end_env(network: Network, batch_size: int) -> tuple[Env, Semantics, tuple[int, ...]]:
    widths = end_to_end_widths(network)
    env: Env = {
        model.X: symbols_matrix("x", batch_size, widths[0]),
        model.Y: engine.targets(network.loss, batch_size, widths[-1]),
    }
    normalized = 2
    for layer, n_in, n_out in zip(network.layers, widths[:-1], widths[1:], strict=True):
        for var in layer.parameters():
            rows, cols = (n_in, n_out) if var.kind in (Kind.W, Kind.PROJ) else (1, n_out)
            env[var] = symbols_matrix(var.name, rows, cols)
        if isinstance(layer, Dropout):
            env[layer.mask] = symbols_matrix(layer.mask.name, batch_size, n_in)
        if isinstance(layer, LayerNorm | BatchNorm):
            normalized = n_in
    sem = generic_semantics(network.loss)
    sem = Semantics(
        sem.activation, sem.derivative, sem.loss, sizes={BATCH: batch_size, WIDTH: normalized}
    )
    return env, sem, widths


# --- everything, for a network of mixed kinds ------------------------------------

MIXED_END_TO_END_DEPTH = 3
"""Deepest mixed network checked end to end by default: the unrolled loss's derivative
grows fast with the depth (the prime-field method of dense networks does not take the
normalizations' roots); every depth is covered by the block lemmas and the induction."""


def _proved_once(key: tuple[object, ...], decide: Callable[[], Check]) -> Check:
    """A default block lemma, decided once per process: its claim depends only on the kind
    (``sample_block``), so a notebook or a grid deriving many networks decides it once.  Kept
    in ``proof._LEMMAS_PROVED`` with the dense lemmas (the tests that mutate code clear that
    one dict); a failure is never kept, and a claim passed in (a negative control) never
    comes here."""
    return proof._proved_once(("mixed", *key), decide)


def _lemma_checks(network: Network) -> list[Check]:
    """The block lemma of every kind in the network (with the penalty where it has weights),
    each decided once per process (``_proved_once``)."""
    from . import proof_normalization
    from .normalization import BATCH_NORM, LAYER_NORM
    from .symbolic_widths import BLOCKS, check_block_lemma_symbolic, check_step_lemma_symbolic

    kinds: list[str] = []
    for layer in network.layers:
        match layer:
            case Dense():
                kinds.append("dense")
            case Residual():
                kinds.append("proj" if layer.projection else "res")
            case LayerNorm():
                kinds.append("ln")
            case BatchNorm():
                kinds.append("bn")
            case Dropout():
                kinds.append("drop")
            case _:
                assert_never(layer)
    checks: list[Check] = []
    for kind in dict.fromkeys(kinds):
        if kind in ("ln", "bn"):
            sample = LAYER_NORM if kind == "ln" else BATCH_NORM
            size = proof_normalization.VERIFY_SIZES[sample.axis]  # why: its docstring
            checks.append(proof_normalization.check_normalization(sample, size))
            continue
        block = sample_block(kind)
        checks.append(_proved_once(("block lemma", kind), partial(check_block_lemma, block)))
        if network.l2 and weights(block):
            checks.append(
                _proved_once(
                    ("block lemma", kind, "penalty"),
                    partial(check_block_lemma, block, penalty=True),
                )
            )
        if kind == "dense":
            checks.append(_proved_once(("step lemma, any width",), check_step_lemma_symbolic))
        if kind in BLOCKS:  # every width (the normalizations: symbolic_widths.BLOCKS says why not)
            checks.append(
                _proved_once(
                    ("block lemma, any width", kind),
                    partial(check_block_lemma_symbolic, kind),
                )
            )
    return checks


def verify_mixed(derivation: Derivation, end_to_end_depth: int) -> list[Check]:
    """``proof.verify`` for a network with other kinds than dense layers."""
    from .proof import _sum_of_shards, check_activation, check_loss, check_output_lemma

    network = derivation.network
    checks = [check_output_lemma(network), *_lemma_checks(network)]
    checks.append(check_blocks_are_lemma_instances(derivation))
    for act in dict.fromkeys(network.activations):
        checks.append(check_activation(act))
    checks.append(check_loss(network.loss))
    if any(isinstance(x, BatchNorm) for x in network.layers):
        checks.append(
            Check(
                "sum of shards",
                "not applicable: batch normalization's statistics couple the rows of a batch, "
                "so a shard's gradient is not a share of the batch's",
                "not run: row-chunked (sharded) gradients are wrong for this network",
                True,
                0.0,
                skipped=True,
            )
        )
    else:
        checks.append(_sum_of_shards(network))
    limit = min(end_to_end_depth, MIXED_END_TO_END_DEPTH)
    normalized = any(isinstance(x, LayerNorm | BatchNorm) for x in network.layers)
    if network.depth <= limit and not normalized:
        checks.append(check_end_to_end_mixed(derivation, batch_size=2))
    else:
        why = (
            "not run for a network with a normalization (the exact proof through its roots takes "
            "about 5 CPU-s at depth 3, more per layer: tests/test_mixed.py runs it, marked slow)"
            if normalized
            else f"skipped above depth {limit} for a mixed network (the derivative of the "
            "unrolled loss grows too fast)"
        )
        checks.append(
            Check(
                "end to end",
                f"depth {network.depth}",
                why + "; every depth is covered by the block lemmas and the induction",
                True,
                0.0,
                skipped=True,
            )
        )
    return checks
