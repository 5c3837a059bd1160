"""The canonical names of a network's outputs: its command line and its module name."""

from __future__ import annotations

import hashlib

from . import defaults
from .expr import assert_never
from .layers import AnyLayer, BatchNorm, Dense, Dropout, LayerNorm, Residual
from .model import Network
from .spec import decimal_text

SUBSCRIPT = str.maketrans("0123456789-", "₀₁₂₃₄₅₆₇₈₉₋")


def subscript(text: str | int) -> str:
    """Digits (and a minus) as Unicode subscripts, as comments and pictures write indices."""
    return str(text).translate(SUBSCRIPT)


def layer_item(layer: AnyLayer) -> str:
    """The ``--layers`` item that builds ``layer`` (``spec.parse_items`` reads it back)."""
    match layer:
        case Dense():
            return str(layer.n_out)
        case Residual():
            return f"{layer.n_out}+{'proj' if layer.projection else 'res'}"
        case LayerNorm():
            return "ln"
        case BatchNorm():
            return "bn"
        case Dropout():
            return f"drop:{decimal_text(layer.rate)}"
        case _:
            assert_never(layer)


def layers_text(network: Network) -> str:
    """The ``--layers`` value of ``network``: its widths, or one item per layer."""
    if network.dense:
        return ",".join(map(str, network.sizes))
    return ",".join([str(network.sizes[0]), *(layer_item(layer) for layer in network.layers)])


def spec_command(network: Network) -> str:
    """The canonical command for this network's specification (no ``--name``)."""
    parts = ["python -m derive --layers " + layers_text(network)]
    names = [a.name for a in network.activations]
    chosen = names[:-1] if network.fused else names  # a fused loss fixes the output layer
    if chosen and set(chosen) != {defaults.ACTIVATION}:
        parts.append("--activation " + (chosen[0] if len(set(chosen)) == 1 else ",".join(names)))
    if network.loss.name != defaults.LOSS:
        parts.append(f"--loss {network.loss.name}")
    if network.l2:
        parts.append("--l2")
    return " ".join(parts)


def command_line(network: Network, name: str) -> str:
    """The canonical command that regenerates this module."""
    command = spec_command(network)
    return command if name == default_module_name(network) else f"{command} --name {name}"


def _name_part(item: str) -> str:
    """An item of ``--layers`` as a part of an identifier: 16+res → 16res, drop:0.5 → drop0p5."""
    return item.replace("+", "").replace(":", "").replace(".", "p")


DEFAULT_NAME_LIMIT = 80
"""Longest default module name spelled out in full; longer ones are shortened with a digest."""


def default_module_name(network: Network) -> str:
    """``mlp_20_50_10``; past ``DEFAULT_NAME_LIMIT`` characters ``mlp_118layers_3_to_3_<digest>``.

    The digest is the first 12 hex digits of the SHA-256 of the widths
    (``3,3,...,3``; the ``--layers`` items for other kinds), so the name stays unique and
    always fits a file name.  Other kinds spell their items as identifiers:
    ``20,16+res,ln,drop:0.5,3`` → ``mlp_20_16res_ln_drop0p5_3``.  With ``--l2`` the
    name ends in ``_l2``: that module's ``backprop`` takes ``l2=λ``, so it does not replace
    the module without the penalty.
    """
    suffix = "_l2" if network.l2 else ""
    name = "mlp_" + "_".join(_name_part(item) for item in layers_text(network).split(","))
    if len(name) <= DEFAULT_NAME_LIMIT:
        return name + suffix
    digest = hashlib.sha256(layers_text(network).encode()).hexdigest()[:12]
    return f"mlp_{network.depth}layers_{network.sizes[0]}_to_{network.sizes[-1]}_{digest}{suffix}"
