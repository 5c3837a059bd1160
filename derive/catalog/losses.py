"""The losses, each defined once as a SymPy expression; gradients are derived."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import sympy as sp

from .activations import ACTIVATIONS, SOFTMAX, Activation, through
from .decide import same
from .stable import stable
from .symbols import A, P, T, Z, batch, i, k, outputs, pred, target, z


@dataclass(frozen=True)
class LossFunction:
    """A loss summed over batch and outputs, optionally as a mean.

    ``entry`` is the loss of one entry in ``pred`` and ``target`` (or, for a
    row loss, of one row in P[i] and T[i]).  A loss with a ``link`` is fused
    with the output layer's activation: it reads the logits z_L, and its
    gradient ∂L/∂z_L is derived through the link (``assumption`` states what
    the derivation needs of the targets).
    """

    name: str
    entry: sp.Expr
    latex_template: str  # LaTeX of L with {pred} and {target} placeholders
    summary: str
    scale: sp.Expr = field(default=sp.Integer(1))  # 1, or 1/(m n_L) for a mean
    link: Activation | None = None
    targets_sum_to_one: bool = False  # the derivation uses Σ_i y_i = 1 (each row a distribution)

    @property
    def assumption(self) -> str:
        """What the derivation assumes of the targets, in LaTeX ("" for nothing)."""
        return r"\sum_i Y_i = 1" if self.targets_sum_to_one else ""

    @property
    def rowwise(self) -> bool:
        return bool(self.entry.has(sp.Indexed))

    @property
    def argument(self) -> sp.Expr:
        """The symbol the loss is differentiated by: Ŷ's entry, or z (fused)."""
        if self.link is None:
            return pred
        return Z[k] if self.rowwise else z

    @cached_property
    def logit_entry(self) -> sp.Expr:
        """The entry (or row) loss in terms of ``argument``."""
        if self.link is None:
            return self.scale * self.entry
        if self.rowwise:
            # log p_i = z_i - log Σ_j e^{z_j}: exact, as e^{z} > 0 (expand_log's force).
            fused = self.entry.replace(
                lambda e: isinstance(e, sp.Indexed) and e.base == P,
                lambda e: self.link.definition.subs(k, e.indices[0]),
            )
            return sp.expand_log(fused, force=True)
        fused = self.entry.subs(pred, self.link.definition)
        return sp.expand(
            sp.expand_log(fused.replace(sp.log, lambda a: sp.log(sp.together(a))), force=True)
        )

    @cached_property
    def gradient_steps(self) -> list[sp.Expr]:
        """The derivation of ∂L/∂argument, step by step (for the LaTeX)."""
        raw = sp.diff(self.logit_entry, self.argument)
        if not self.rowwise:
            return list(dict.fromkeys([raw, sp.factor_terms(raw)]))
        inside = sp.piecewise_fold(raw.doit())
        if isinstance(inside, sp.Piecewise):  # the branch for 1 <= k <= n_L
            inside = inside.args[0].expr
        linear = inside.replace(lambda e: isinstance(e, sp.Sum), _factor_out_constants)
        if not self.targets_sum_to_one:
            return [linear]
        return [linear, linear.subs(sp.Sum(T[i], (i, 1, outputs)), 1)]  # Σ_i y_i = 1

    @cached_property
    def gradient(self) -> sp.Expr:
        """∂L/∂Ŷ entrywise (or ∂L/∂z_L for a fused loss), derived by SymPy."""
        return self.gradient_steps[-1]

    @cached_property
    def gradient_from_output(self) -> sp.Expr | None:
        """A fused loss's gradient through the link's output A (p − y), if found."""
        if self.link is None:
            return None
        if self.rowwise:
            candidate = self.gradient.subs(self.link.definition, A)
            return candidate if not candidate.has(Z) else None
        for candidate in through(self.link.definition, self.gradient):
            if same(candidate.subs(A, self.link.definition), self.gradient):
                return candidate
        return None

    @cached_property
    def code_form(self) -> sp.Expr:
        """The entry (or row) loss as the code evaluates it: stable, sums dropped."""
        form = stable(self.logit_entry)
        return form.replace(lambda e: isinstance(e, sp.Sum), lambda e: e.function)


def _factor_out_constants(total: sp.Sum) -> sp.Expr:
    """Σ_i c f(i) = c Σ_i f(i) for c free of i (linearity)."""
    ((index, *_),) = total.limits
    constant, rest = sp.Mul(*total.function.as_ordered_factors()).as_independent(
        index, as_Add=False
    )
    return constant * sp.Sum(rest, *total.limits)


def row_loss_form_holds(loss: LossFunction, form: sp.Expr) -> bool:
    """The row loss's code form (its sum over i dropped) is the log-softmax form.

    The code sums ``form`` over every entry, which is Σ_i of it per row.
    """
    restored = sp.Sum(form, (i, 1, outputs))
    expected = loss.logit_entry
    difference = sp.expand((restored.rewrite(sp.log) - expected).doit())
    if difference == 0 or _summands_cancel(difference):
        return True
    return bool(sp.simplify(difference) == 0)


def _summands_cancel(total: sp.Expr) -> bool:
    """Whether ``total`` is a sum of Sums over the same limits whose summands add up to 0
    (Σ f + Σ g = Σ (f + g): exact), found without ``simplify``; False says nothing."""
    summands = []
    limits = set()
    for term in sp.Add.make_args(total):
        coefficient, rest = term.as_coeff_Mul()
        if not isinstance(rest, sp.Sum):
            return False
        summands.append(coefficient * rest.function)
        limits.add(rest.limits)
    return len(limits) == 1 and sp.expand(sp.Add(*summands)) == 0


LOSSES: dict[str, LossFunction] = {
    loss.name: loss
    for loss in [
        LossFunction(
            "l2",
            (pred - target) ** 2,
            r"\lVert {pred} - {target} \rVert^2",
            "sum of squared errors over batch and outputs (the seed's)",
        ),
        LossFunction(
            "mse",
            (pred - target) ** 2,
            r"\frac{{1}}{{m\, n_L}} \lVert {pred} - {target} \rVert^2",
            "mean squared error, the mean over batch and outputs",
            scale=1 / (batch * outputs),
        ),
        LossFunction(
            "sigmoid_binary_cross_entropy",
            -(target * sp.log(pred) + (1 - target) * sp.log(1 - pred)),
            r"-\sum \left(Y \odot \log {pred} + (1 - Y) \odot \log(1 - {pred})\right)",
            "binary cross-entropy of a sigmoid output, summed over batch and outputs; "
            "targets in [0, 1]",
            link=ACTIVATIONS["sigmoid"],
        ),
        LossFunction(
            "softmax_cross_entropy",
            -sp.Sum(T[i] * sp.log(P[i]), (i, 1, outputs)),
            r"-\sum Y \odot \log {pred}",
            "cross-entropy of a softmax output, summed over the batch; "
            "each row of targets sums to 1",
            link=SOFTMAX,
            targets_sum_to_one=True,
        ),
    ]
}
