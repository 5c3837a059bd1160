"""Activations and losses, each defined once as a SymPy expression.

One concern per module: ``symbols`` (what formulas are written in),
``activations`` and ``losses`` (the definitions), ``decide`` (``same``, the
equality decision procedure), ``stable`` (numeric forms for code), ``numbers``
and ``parse`` (exact parameters, ``name:param`` from the command line).  This
module re-exports what the rest of derive reads.

Everything else about an entry is derived from that one definition: its
derivative (``sympy.diff``), the rewrite of the derivative through the
activation's own output A (so generated code can reuse the stored
activation), the numerically stable form the code evaluates, its LaTeX and
its numpy code.  Nothing here is a hand-written derivative, and every derived
form is accepted only after ``same`` decides it equal to what it replaces.

Kinks: a piecewise definition is differentiated branch by branch, so at a
branch point the derivative is that of the branch the point belongs to; every
piecewise entry here splits at ``z > 0``, so a'(0) is the left derivative
(relu'(0) = 0, leaky_relu'(0) = slope, elu'(0) = alpha).
"""

from __future__ import annotations

from .activations import (
    ACTIVATIONS,
    ELU_ALPHA,
    LEAKY_SLOPE,
    PARAMETRIC,
    SOFTMAX,
    Activation,
    elu,
    leaky_relu,
    rewrite_holds,
)
from .decide import SAMPLE_POINTS, same, softmax_form_holds
from .losses import LOSSES, LossFunction, row_loss_form_holds
from .numbers import PARAMETER_DIGITS, PARAMETER_RANGE, UnknownName, decimal
from .parse import activation, loss_function
from .stable import stable
from .symbols import A, LogSumExp, P, T, Z, batch, i, j, k, outputs, pred, target, z

__all__ = [
    "ACTIVATIONS",
    "ELU_ALPHA",
    "LEAKY_SLOPE",
    "LOSSES",
    "PARAMETER_DIGITS",
    "PARAMETER_RANGE",
    "PARAMETRIC",
    "SAMPLE_POINTS",
    "SOFTMAX",
    "A",
    "Activation",
    "LogSumExp",
    "LossFunction",
    "P",
    "T",
    "UnknownName",
    "Z",
    "activation",
    "batch",
    "decimal",
    "elu",
    "i",
    "j",
    "k",
    "leaky_relu",
    "loss_function",
    "outputs",
    "pred",
    "rewrite_holds",
    "row_loss_form_holds",
    "same",
    "softmax_form_holds",
    "stable",
    "target",
    "z",
]
