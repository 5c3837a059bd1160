"""The network as a composition of functions, the seed's f_0 ... f_{2L+1}.

For sizes (n_0, ..., n_L) the chain is

    f_0 = X,  f_{2l-1} = z_l = f_{2l-2} W_l + b_l,  f_{2l} = a_l = a(z_l),
    f_{2L+1} = L(f_{2L}, Y)

(with a fused loss, f_{2L+1} = L(f_{2L-1}, Y): the cross-entropy of the link's
output, a function of the logits, whose gradient SymPy derives as Ŷ - Y)

One ``Network`` holds it; the derivation, the proof, the LaTeX and the code
generator all read this one object.
"""

from __future__ import annotations

from dataclasses import dataclass

from .catalog import Activation, LossFunction
from .expr import Activate, Add, Expr, Loss, MatMul, Penalty, Var


@dataclass(frozen=True)
class Step:
    """One link of the chain: ``target = expr``; ``index`` is k in f_k."""

    index: int
    target: Var
    expr: Expr


LOSS = Var("L")
PENALTY = Var("P")
"""The L2 penalty λ/2 Σ_l ‖W_l‖_F², added to the loss with ``--l2``."""
X = Var("a", 0)
Y = Var("Y")
INCOMING = Var("G")
"""The gradient arriving from above in a one-step lemma (G = ∂L/∂z_l), and in printed chain-rule factors."""


def W(layer: int) -> Var:
    return Var("W", layer)


def b(layer: int) -> Var:
    return Var("b", layer)


def z(layer: int) -> Var:
    return Var("z", layer)


def a(layer: int) -> Var:
    """The activation of ``layer``; a(0) is the input X."""
    return Var("a", layer)


def delta(layer: int) -> Var:
    return Var("delta", layer)


@dataclass(frozen=True)
class Network:
    """A fully connected network: layer widths, one activation per layer, a loss."""

    sizes: tuple[int, ...]
    activations: tuple[Activation, ...]
    loss: LossFunction
    l2: bool = False  # the objective is L + λ/2 Σ_l ‖W_l‖_F² (``--l2``)

    def __post_init__(self) -> None:
        if len(self.activations) != self.depth:
            raise ValueError(f"{len(self.activations)} activations given for {self.depth} layers")
        link = self.loss.link
        if link is not None and self.activations[-1] != link:
            raise ValueError(
                f"the {self.loss.name} loss needs {link.name} as the output activation"
            )
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
        """The chain f_1 ... f_{2L+1}, in evaluation order."""
        chain: list[Step] = []
        for layer in range(1, self.depth + 1):
            chain.append(
                Step(2 * layer - 1, z(layer), Add(MatMul(a(layer - 1), W(layer)), b(layer)))
            )
            chain.append(Step(2 * layer, a(layer), Activate(layer, z(layer))))
        # A fused loss reads the logits z_L (it is the loss of link(z_L)); a_L = Ŷ
        # is still computed, as the prediction and for the fused gradient.
        last = z(self.depth) if self.fused else a(self.depth)
        chain.append(Step(2 * self.depth + 1, LOSS, Loss(last, Y)))
        return chain

    def penalty_steps(self) -> list[Step]:
        """With ``l2``: P = λ/2 ‖W_1‖² + ... + λ/2 ‖W_L‖² (biases are not penalised); else none.

        The objective is L + P: the derivation seeds both with ∂(L + P)/∂· = 1.
        """
        if not self.l2:
            return []
        total: Expr = Penalty(W(1))
        for layer in range(2, self.depth + 1):
            total = Add(total, Penalty(W(layer)))
        return [Step(2 * self.depth + 2, PENALTY, total)]

    def parameters(self) -> list[Var]:
        """W_1, b_1, ..., W_L, b_L."""
        return [v for layer in range(1, self.depth + 1) for v in (W(layer), b(layer))]
