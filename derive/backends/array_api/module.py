"""Module assembly for the array API target: the derivation through one template."""

from __future__ import annotations

import textwrap
from importlib import resources

import jinja2

from ... import catalog
from ...derivation import Derivation
from ...model import Network
from ...naming import command_line, default_module_name
from ...version import __version__
from ..python_source import LINE_LENGTH, header_line, tuple_literal
from . import printer

TEMPLATE = "module.py.jinja"
TARGET = "array-api"
"""The ``--target`` value that selects this backend."""


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(
            lambda name: resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
        ),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def spec_command(network: Network) -> str:
    """The canonical command for this network's specification on this target (no ``--name``)."""
    words = command_line(network, default_module_name(network)).split(" ")
    words.insert(5, f"--target {TARGET}")  # right after --layers n0,...,nL
    return " ".join(words)


def command(derivation: Derivation, name: str) -> str:
    """The canonical command that regenerates this module."""
    network = derivation.network
    words = [spec_command(network)]
    if name != default_module_name(network):
        words.append(f"--name {name}")
    return " ".join(words)


def render(derivation: Derivation, name: str) -> str:
    """The generated array API module's source."""
    network = derivation.network
    if not network.dense:
        return render_layered(derivation, name)
    loss = network.loss
    forward = printer.forward_lines(network)
    backward = printer.backward_lines(derivation)
    helpers = printer.helpers(network)
    loss_code = printer.loss_code(network)
    everything = [line.code for line in forward + backward] + [loss_code]
    everything += [h.result for h in helpers] + [c for h in helpers for _, c in h.lines]
    return (
        _environment()
        .get_template(TEMPLATE)
        .render(
            version=__version__,
            header=header_line(command(derivation, name)),
            template="derive/backends/array_api/" + TEMPLATE,
            loss_doc=textwrap.fill(
                f"* the loss is {loss.name}: {loss.summary};", LINE_LENGTH, subsequent_indent="  "
            ),
            widths_text=textwrap.fill(
                f"Layer widths {', '.join(map(str, network.sizes))}; {network.depth} weight "
                f"layer{'' if network.depth == 1 else 's'}.",
                width=LINE_LENGTH - 4,
            ),
            sizes=network.sizes,
            sizes_literal=tuple_literal(
                [str(n) for n in network.sizes], "SIZES: tuple[int, ...] = "
            ),
            activations_literal=tuple_literal(
                [f'"{a.name}"' for a in network.activations], "ACTIVATIONS: tuple[str, ...] = "
            ),
            depth=network.depth,
            layers=list(range(1, network.depth + 1)),
            loss_name=loss.name,
            loss_code=loss_code,
            forward=forward,
            loss_forward=forward[:-1] if network.fused else forward,  # a fused loss reads z_L
            backward=backward,
            helpers=helpers,
            uses_logsumexp=any("_logsumexp(" in code for code in everything),
            uses_batch=catalog.batch in loss.gradient.free_symbols
            or catalog.batch in loss.scale.free_symbols,
            grads_literal=tuple_literal(
                [f"(dW{layer}, db{layer})" for layer in range(1, network.depth + 1)],
                "    return value, ",
                "[]",
                "    ",
            ),
        )
    )


LAYERED_TEMPLATE = "layered.py.jinja"


def render_layered(derivation: Derivation, name: str) -> str:
    """The module of a network holding layer kinds (``backends/layered``), array API."""
    from .. import layered
    from ..python_source import MatrixText

    network = derivation.network
    fields = layered.template_fields(
        derivation,
        printer.ArrayCode(network),
        MatrixText(network),
        lambda stat: f'_running(xp, state, "{stat}", dtype)',
    )
    helpers = printer.helpers(network)
    everything = [str(line["code"]) for line in fields["forward"] + fields["backward"]]  # type: ignore[operator]
    everything += [str(fields["loss_code"]), *(h.result for h in helpers)]
    everything += [c for h in helpers for _, c in h.lines]
    return (
        _environment()
        .get_template(LAYERED_TEMPLATE)
        .render(
            version=__version__,
            header=header_line(command(derivation, name)),
            template="derive/backends/array_api/" + LAYERED_TEMPLATE,
            eps=repr(layered.EPS),
            momentum=repr(layered.MOMENTUM),
            helpers=helpers,
            uses_logsumexp=any("_logsumexp(" in code for code in everything),
            params_targets=", ".join(fields.pop("param_pairs")),  # type: ignore[arg-type]
            **fields,
        )
    )
