"""Networks with layer kinds for the emission tests, built by hand until ``Network`` takes kinds."""

from __future__ import annotations

from derive import catalog
from derive.layers import BatchNorm, Dense, LayerNorm
from derive.model import Network


def hand_built(sizes, kinds, activation="tanh", output="identity", loss="l2"):
    """A Network whose layers are ``kinds`` ("dense", "layer_norm", "batch_norm") in order;
    a norm keeps the width (its entry in ``sizes`` repeats the one below)."""
    acts = []
    for k, kind in enumerate(kinds, start=1):
        name = output if k == len(kinds) else activation if kind == "dense" else "identity"
        acts.append(catalog.ACTIVATIONS[name])
    net = Network(tuple(sizes), tuple(acts), catalog.LOSSES[loss])
    layers = []
    for k, kind in enumerate(kinds, start=1):
        if kind == "dense":
            layers.append(Dense(k, sizes[k - 1], sizes[k], acts[k - 1]))
        else:
            assert sizes[k] == sizes[k - 1]
            layers.append((LayerNorm if kind == "layer_norm" else BatchNorm)(k, sizes[k]))
    object.__setattr__(net, "layers", tuple(layers))
    return net
