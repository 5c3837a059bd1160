"""The network as a composition of functions, the seed's f_0 ... f_{2L+1}.

The network is a sequence of layers (``layers.Dense`` today), each contributing
its own steps; for sizes (n_0, ..., n_L) the chain is

    f_0 = X,  f_{2l-1} = z_l = f_{2l-2} W_l + b_l,  f_{2l} = a_l = a(z_l),
    f_{2L+1} = L(f_{2L}, Y)

(with a fused loss, f_{2L+1} = L(f_{2L-1}, Y): the cross-entropy of the link's
output, a function of the logits, whose gradient SymPy derives as Ŷ - Y)

One ``Network`` holds it; the derivation, the proof, the LaTeX and the code
generator all read this one object.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .catalog import Activation, LossFunction
from .expr import Add, Expr, Loss, Penalty, Var
from .layers import (
    INCOMING,
    LOSS,
    PENALTY,
    SEED,
    AnyLayer,
    Dense,
    Step,
    W,
    X,
    Y,
    a,
    adjoint_names,
    b,
    delta,
    numbered,
    z,
)

__all__ = [
    "INCOMING",
    "LOSS",
    "PENALTY",
    "SEED",
    "Network",
    "Step",
    "W",
    "X",
    "Y",
    "a",
    "b",
    "delta",
    "z",
]


@dataclass(frozen=True)
class Network:
    """A fully connected network: layer widths, one activation per layer, a loss."""

    sizes: tuple[int, ...]
    activations: tuple[Activation, ...]
    loss: LossFunction
    l2: bool = False  # the objective is L + λ/2 Σ_l ‖W_l‖_F² (``--l2``)
    layers: tuple[AnyLayer, ...] = field(init=False, repr=False, compare=False)
    """The layers, input side first, built from the widths and activations (all dense today)."""

    def __post_init__(self) -> None:
        if len(self.activations) != self.depth:
            raise ValueError(f"{len(self.activations)} activations given for {self.depth} layers")
        link = self.loss.link
        if link is not None and self.activations[-1] != link:
            raise ValueError(
                f"the {self.loss.name} loss needs {link.name} as the output activation"
            )
        layers = tuple(
            Dense(layer, self.sizes[layer - 1], self.sizes[layer], act)
            for layer, act in enumerate(self.activations, start=1)
        )
        object.__setattr__(self, "layers", layers)  # frozen: set once, derived from the above
        for layer, act in enumerate(self.activations, start=1):
            if not act.entrywise and (layer < self.depth or link != act):
                raise ValueError(
                    f"{act.name} is not entrywise: only the output link of a fused loss"
                )

    @property
    def fused(self) -> bool:
        """True when the loss reads the logits z_L through its link (cross-entropies)."""
        return self.loss.link is not None

    @property
    def depth(self) -> int:
        """L, the number of weight layers."""
        return len(self.sizes) - 1

    def activation(self, layer: int) -> Activation:
        return self.activations[layer - 1]

    def steps(self) -> list[Step]:
        """The chain f_1 ... f_K, in evaluation order: the layers' steps, then the loss.

        Numbered by position: a layer never computes its own f-index.
        """
        chain = [step for layer in self.layers for step in layer.steps()]
        # A fused loss reads the logits z_L (it is the loss of link(z_L)); a_L = Ŷ
        # is still computed, as the prediction and for the fused gradient.
        last = z(self.depth) if self.fused else self.layers[-1].output
        return numbered([*chain, Step(0, LOSS, Loss(last, Y))])

    def f_index(self) -> dict[Var, int]:
        """k of f_k for the input and every layer's step target (X is f_0)."""
        return {X: 0, **{s.target: s.index for s in self.steps() if s.layer is not None}}

    def adjoint_names(self) -> dict[Var, Var]:
        """Each step target whose adjoint is named (z_l) → that name (δ_l)."""
        return adjoint_names(self.steps())

    def penalty_steps(self) -> list[Step]:
        """With ``l2``: P = λ/2 ‖W_1‖² + ... + λ/2 ‖W_L‖² (biases are not penalised); else none.

        The objective is L + P: the derivation seeds both with ∂(L + P)/∂· = 1.
        """
        if not self.l2:
            return []
        total: Expr = Penalty(W(1))
        for layer in range(2, self.depth + 1):
            total = Add(total, Penalty(W(layer)))
        return [Step(len(self.steps()) + 1, PENALTY, total)]

    def parameters(self) -> list[Var]:
        """W_1, b_1, ..., W_L, b_L: each layer's, in order."""
        return [v for layer in self.layers for v in layer.parameters()]
