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
from .expr import Add, Expr, Loss, Penalty, Var, assert_never
from .layers import (
    INCOMING,
    LOSS,
    PENALTY,
    SEED,
    AnyLayer,
    BatchNorm,
    Dense,
    Dropout,
    LayerNorm,
    Residual,
    Step,
    W,
    X,
    Y,
    a,
    abar,
    adjoint_names,
    b,
    delta,
    numbered,
    weights,
    width,
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
    "abar",
    "b",
    "delta",
    "z",
]


@dataclass(frozen=True)
class Network:
    """A network: widths, one activation per dense or residual layer, a loss.

    ``Network(sizes, activations, loss, l2)`` is a fully connected network (every
    layer ``Dense``), as before.  ``Network.of_layers(layers, loss, l2)`` holds any
    sequence of layer kinds (``layers.AnyLayer``); then ``sizes`` are the widths
    n_0 … n_L after each layer and ``activations`` those of the dense and residual
    layers, in order (normalization and dropout layers have none).
    """

    sizes: tuple[int, ...]
    activations: tuple[Activation, ...]
    loss: LossFunction
    l2: bool = False  # the objective is L + λ/2 Σ_l ‖W_l‖_F² (``--l2``)
    layers: tuple[AnyLayer, ...] = field(default=(), repr=False)
    """The layers, input side first; left empty, built from the widths and activations
    (all dense)."""

    def __post_init__(self) -> None:
        if not self.layers:
            if len(self.activations) != self.depth:
                raise ValueError(
                    f"{len(self.activations)} activations given for {self.depth} layers"
                )
            layers = tuple(
                Dense(layer, self.sizes[layer - 1], self.sizes[layer], act)
                for layer, act in enumerate(self.activations, start=1)
            )
            object.__setattr__(self, "layers", layers)  # frozen: set once, from the above
        else:
            _check_layers(self.sizes, self.activations, self.layers)
        link = self.loss.link
        if link is not None:
            last = self.layers[-1]
            if not isinstance(last, Dense):
                raise ValueError(
                    f"the {self.loss.name} loss reads the logits of a dense output layer, "
                    f"not of a {kind_name(last)} layer"
                )
            if last.activation != link:
                raise ValueError(
                    f"the {self.loss.name} loss needs {link.name} as the output activation"
                )
        for layer in self.layers:
            if isinstance(layer, Dense | Residual) and not layer.activation.entrywise:
                if layer.index < self.depth or link != layer.activation:
                    raise ValueError(
                        f"{layer.activation.name} is not entrywise: only the output link "
                        "of a fused loss"
                    )

    @classmethod
    def of_layers(
        cls, layers: tuple[AnyLayer, ...], loss: LossFunction, l2: bool = False
    ) -> Network:
        """A network of any layer kinds; the widths and activations are read off the layers."""
        if not layers:
            raise ValueError("a network needs at least one layer")
        first = layers[0]
        n_in = first.n_in if isinstance(first, Dense | Residual) else first.width
        sizes = (n_in, *(width(layer) for layer in layers))
        acts = tuple(layer.activation for layer in layers if isinstance(layer, Dense | Residual))
        return cls(sizes, acts, loss, l2, tuple(layers))

    @property
    def dense(self) -> bool:
        """True when every layer is ``Dense`` (the fully connected network of the seed)."""
        return all(isinstance(layer, Dense) for layer in self.layers)

    @property
    def fused(self) -> bool:
        """True when the loss reads the logits z_L through its link (cross-entropies)."""
        return self.loss.link is not None

    @property
    def depth(self) -> int:
        """L, the number of layers (of weight layers, for a dense network)."""
        return len(self.sizes) - 1

    def activation(self, layer: int) -> Activation:
        """σ_l of dense or residual layer l."""
        found = self.layers[layer - 1]
        if not isinstance(found, Dense | Residual):
            raise ValueError(f"layer {layer} is a {kind_name(found)} layer: it has no activation")
        return found.activation

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
        penalised = self.weights()
        if not penalised:
            return []
        total: Expr = Penalty(penalised[0])
        for weight in penalised[1:]:
            total = Add(total, Penalty(weight))
        return [Step(len(self.steps()) + 1, PENALTY, total)]

    def weights(self) -> list[Var]:
        """The matrices ``--l2`` penalises, in layer order: W_l (and a projection's P_l)."""
        return [w for layer in self.layers for w in weights(layer)]

    def inputs(self) -> list[Var]:
        """What the chain reads besides parameters: X, Y and each dropout layer's mask."""
        masks = [layer.mask for layer in self.layers if isinstance(layer, Dropout)]
        return [X, *masks, Y]

    def parameters(self) -> list[Var]:
        """W_1, b_1, ..., W_L, b_L: each layer's, in order (``layer.parameters()``)."""
        return [v for layer in self.layers for v in layer.parameters()]


def kind_name(layer: AnyLayer) -> str:
    """The kind as the errors and the documents say it."""
    match layer:
        case Dense():
            return "dense"
        case Residual():
            return "residual"
        case LayerNorm():
            return "layer norm"
        case BatchNorm():
            return "batch norm"
        case Dropout():
            return "dropout"
        case _:
            assert_never(layer)


def _check_layers(
    sizes: tuple[int, ...], activations: tuple[Activation, ...], layers: tuple[AnyLayer, ...]
) -> None:
    """The layers chain: indices by position, each reads the width the one below gives, and
    each kind's own condition holds (one-line errors naming the layer and the bad value)."""
    if len(sizes) != len(layers) + 1:
        raise ValueError(f"{len(sizes)} widths given for {len(layers)} layers")
    acts = tuple(layer.activation for layer in layers if isinstance(layer, Dense | Residual))
    if acts != activations:
        raise ValueError(
            f"{len(activations)} activations given; the layers' are "
            + ",".join(act.name for act in acts)
        )
    for position, layer in enumerate(layers, start=1):
        name = f"layer {position} ({kind_name(layer)})"
        if layer.index != position:
            raise ValueError(f"{name} has index {layer.index}")
        n_in = sizes[position - 1]
        if width(layer) != sizes[position]:
            raise ValueError(f"{name} has width {width(layer)}, not {sizes[position]}")
        match layer:
            case Dense() | Residual():
                if layer.n_in != n_in:
                    raise ValueError(
                        f"{name} reads width {layer.n_in}, the layer below gives {n_in}"
                    )
                if isinstance(layer, Residual) and not layer.projection and n_in != layer.n_out:
                    raise ValueError(
                        f"{name}: a skip connection from width {n_in} to {layer.n_out} needs "
                        f"a projection ({layer.n_out}+proj)"
                    )
            case LayerNorm() | BatchNorm():
                if layer.width != n_in:
                    raise ValueError(f"{name} has width {layer.width}, its input {n_in}")
                if isinstance(layer, LayerNorm) and n_in == 1:
                    raise ValueError(
                        f"{name} on a width of 1: each row's one feature is its own mean, "
                        "so the output is β whatever the input"
                    )
            case Dropout():
                if layer.width != n_in:
                    raise ValueError(f"{name} has width {layer.width}, its input {n_in}")
                rate = layer.rate
                if rate.is_number and not (0 <= rate < 1):
                    raise ValueError(f"{name}: rate {rate} is outside [0, 1)")
                if position == len(layers):
                    raise ValueError(
                        f"{name} as the last layer: the loss would compare masked predictions"
                    )
            case _:
                assert_never(layer)
