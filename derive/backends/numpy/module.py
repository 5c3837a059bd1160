"""The numpy target: the derivation assembled into a standalone module through Jinja2.

Output depends only on the network (no timestamps, no ordering from ``cse``
or dict iteration), so the same input gives byte-identical files.
"""

from __future__ import annotations

import functools
import re
import textwrap
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING

from ... import catalog
from ...derivation import Derivation
from ...model import Network
from ...naming import command_line, default_module_name, spec_command
from ...version import __version__
from ..layered import EPS, MOMENTUM
from ..python_source import (
    LINE_LENGTH,
    LINT_LINE_LENGTH,
    MatrixText,
    formatted,
    header_line,
    tuple_literal,
)
from . import planner
from .printer import NumpyCode, forward_lines, helpers

if TYPE_CHECKING:
    import jinja2

__all__ = ["TARGET", "default_module_name", "render", "spec_command"]

TARGET = "numpy"
"""The ``--target`` value that selects this backend (the default)."""

TEMPLATE = "module.py.jinja"
TEMPLATES = "templates"
"""The folder, inside this package, of the template and the runtime files it includes."""


def _environment() -> jinja2.Environment:
    return _environment_reading(template_source)


@functools.cache
def _environment_reading(source: Callable[[str], str]) -> jinja2.Environment:
    """One environment per template reader, so each template is compiled once per process
    (0.09 s a render otherwise); a replaced ``template_source`` gets its own."""
    import jinja2  # imported here: runs that print LaTeX only never need it

    return jinja2.Environment(
        loader=jinja2.FunctionLoader(source),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def template_source(name: str) -> str:
    """A template's text, from this package's ``templates`` folder (shipped in the wheel)."""
    # one name per joinpath: Traversable.joinpath takes several only from Python 3.11
    folder = resources.files(__package__).joinpath(TEMPLATES)
    return folder.joinpath(name).read_text(encoding="utf-8")


RUNTIME = "runtime.py"
"""The static runtime the template includes section by section."""

_SECTION = re.compile(r"^# ---- runtime: (\w+) ----\n", re.M)


def runtime_sections() -> dict[str, str]:
    """``runtime.py``'s sections by name, each from its marker line to the next, verbatim."""
    _, *named = _SECTION.split(template_source(RUNTIME))
    return {name: body.rstrip("\n") for name, body in zip(named[::2], named[1::2], strict=True)}


def render(derivation: Derivation, name: str) -> str:
    """The generated module's source."""
    network = derivation.network
    if not network.dense:
        return render_layered(derivation, name)
    loss = network.loss
    return (
        _environment()
        .get_template(TEMPLATE)
        .render(
            version=__version__,
            runtime=runtime_sections(),
            header=header_line(command_line(network, name)),
            loss_doc=textwrap.fill(
                f"* the loss is {loss.name}: {loss.summary};", LINE_LENGTH, subsequent_indent="  "
            ),
            widths_text=textwrap.fill(
                f"Layer widths {', '.join(map(str, network.sizes))}; {network.depth} weight "
                f"layer{'' if network.depth == 1 else 's'}.",
                width=LINE_LENGTH - 4,
            ),
            template=f"derive/backends/numpy/{TEMPLATES}/{TEMPLATE}",
            sizes=network.sizes,
            sizes_literal=tuple_literal(
                [str(n) for n in network.sizes], "SIZES: tuple[int, ...] = "
            ),
            activations_literal=tuple_literal(
                [f'"{a.name}"' for a in network.activations], "ACTIVATIONS: tuple[str, ...] = "
            ),
            depth=network.depth,
            layers=list(range(1, network.depth + 1)),
            activations=[a.name for a in network.activations],
            loss_name=loss.name,
            loss_summary=loss.summary,
            loss_code=formatted(NumpyCode(network)(network.steps()[-1].expr)),
            forward=forward_lines(network),
            loss_forward=forward_lines(network)[: -1 if network.fused else None],
            target_check=_target_check(loss),
            activation_names_literal=tuple_literal(
                [f'"{n}"' for n in accepted_activation_names(network)],
                "_ACTIVATION_NAMES: tuple[str, ...] = ",
            ),
            helpers=helpers(network),
            uses_batch=catalog.batch in loss.gradient.free_symbols
            or catalog.batch in loss.scale.free_symbols,
            l2=network.l2,
            penalty_half=planner.penalty_half(),
            **_fast_fields(derivation),
        )
    )


def _target_check(loss: catalog.LossFunction) -> str:
    """What the module checks of the targets before it trusts the fused δ_L = Ŷ − Y.

    softmax's derivation uses Σ_k y_k = 1 (``row_sums``); the sigmoid's δ_L holds for
    any y, but outside [0, 1] the loss is unbounded below (``unit_interval``).
    """
    if loss.link is None:
        return ""
    return "row_sums" if loss.rowwise else "unit_interval"


def accepted_activation_names(network: Network) -> list[str]:
    """The names ``NN(sizes, activation)`` accepts: as ``--activation`` takes them."""
    names = [a.name for a in network.activations]
    chosen = names[:-1] if network.fused else names
    accepted = [",".join(names)]
    if chosen:
        accepted.insert(0, ",".join(chosen))
        if len(set(chosen)) == 1:
            accepted.insert(0, chosen[0])
    return list(dict.fromkeys(accepted))


def _unpack_target(names: list[str], rest: str, indent: int = 4) -> str:
    """The left side of ``names = ...`` indented by ``indent``, as ``ruff format`` lays it out."""
    inline = ", ".join(names)
    if len(names) == 1 and names[0].startswith("("):  # one (W1, b1) pair: a 1-tuple of it
        inline = f"({inline},)"
    if indent + len(inline) + len(rest) <= LINE_LENGTH:
        return inline
    inner = " " * (indent + 4)
    return "(\n" + "".join(f"{inner}{name},\n" for name in names) + " " * indent + ")"


def _fast_fields(derivation: Derivation) -> dict[str, object]:
    """Template fields of the in-place ``backprop`` (see ``planner``)."""
    network = derivation.network
    plan = planner.plan(derivation, NumpyCode(network), MatrixText(network))
    constants = [name for value in plan.constants if (name := planner.constant_name(value))]
    names = [planner.ONES, *(name for name, _ in plan.buffers), *constants]
    widths = [str(width) for _, width in plan.buffers]
    layers = range(1, network.depth + 1)
    return {
        "plan": plan,
        "workspace_targets": _unpack_target(names, " = ws[1]"),
        "workspace_widths": tuple_literal(widths, "_WORKSPACE_WIDTHS = "),
        "constants_literal": tuple_literal(
            [repr(value) for value in plan.constants], "_CONSTANTS: tuple[float, ...] = "
        ),
        "params_targets": _unpack_target(
            [f"(W{layer}, b{layer})" for layer in layers], " = params", 8
        ),
        "out_targets": _unpack_target(
            [f"(dW{layer}, db{layer})" for layer in layers], " = out", 12
        ),
        "no_grads": _unpack_target(
            [f"(dW{layer}, db{layer})" for layer in layers], " = _NO_GRADS", 8
        ),
        "grads_literal": tuple_literal(
            [f"(dW{layer}, db{layer})" for layer in layers], "        out = ", "[]", "        "
        ),
        "fast_conditions": _fast_conditions(network),
        "owner_ids": tuple_literal(
            [f"id({kind}{layer})" for layer in layers for kind in ("dW", "db")],
            "            owners = ",
            "{}",
            "            ",
        ),
        "out_conditions": _out_conditions(network),
    }


def _out_conditions(network: Network) -> list[str]:
    """The common case of ``out``, one test each: what ``_check_out`` and
    ``_surely_apart`` accept at once, inlined.

    Every output owns its memory (so distinct outputs are disjoint); no input
    is an output or a view of one, and every input's base, if any, owns its
    memory.  Anything else goes to ``_check_out``.  (No tuple of ids is built:
    a call with ``out=`` makes no objects beyond the small set ``owners``.)
    """
    sizes = network.sizes
    conditions = [f"len(owners) == {2 * network.depth}"]
    inputs = ["x", "y"]
    for layer in range(1, network.depth + 1):
        shapes = {"W": f"({sizes[layer - 1]}, {sizes[layer]})", "b": f"(1, {sizes[layer]})"}
        for kind in "Wb":
            name = f"d{kind}{layer}"
            conditions += [
                f"type({name}) is np.ndarray",
                f"{name}.base is None",
                f"{name}.dtype is dtype",
                f"{name}.shape == {shapes[kind]}",
                f"{name}.flags.c_contiguous",
                f"{name}.flags.writeable",
            ]
            inputs.append(f"{kind}{layer}")
    for name in inputs:
        conditions += [
            f"id({name}) not in owners",
            f"id({name}.base) not in owners",
            f'({name}.base is None or getattr({name}.base, "base", 0) is None)',
        ]
    return conditions


def _fast_conditions(network: Network) -> list[str]:
    """The common case of ``backprop``'s inputs, one test each, for one inlined condition.

    Only exact types and the dtypes' canonical objects pass (``is``): anything
    else goes to the step-by-step checks, which accept what they can and name
    what they cannot.
    """
    sizes = network.sizes
    conditions = [
        f"len(params) == {network.depth}",
        "(dtype is _FLOAT64 or dtype is _FLOAT32)",
        "type(x) is np.ndarray",
        f"x.shape == (m, {sizes[0]})",
        "type(y) is np.ndarray",
        "y.dtype is dtype",
        f"y.shape == (m, {sizes[-1]})",
    ]
    for layer in range(1, network.depth + 1):
        shapes = {"W": f"({sizes[layer - 1]}, {sizes[layer]})", "b": f"(1, {sizes[layer]})"}
        for kind in "Wb":
            name = f"{kind}{layer}"
            conditions += [
                f"type({name}) is np.ndarray",
                f"{name}.dtype is dtype",
                f"{name}.shape == {shapes[kind]}",
            ]
    return conditions


# --- a network with layer kinds (``backends/layered``) ---------------------------------

LAYERED_TEMPLATE = "layered.py.jinja"
LAYERED_RUNTIME = "layered_runtime.py"
_LAYERED_SECTION = re.compile(r"^# ---- layered: (\w+) ----\n", re.M)


def layered_sections() -> dict[str, str]:
    """``layered_runtime.py``'s sections by name, verbatim."""
    _, *named = _LAYERED_SECTION.split(template_source(LAYERED_RUNTIME))
    return {name: body.rstrip("\n") for name, body in zip(named[::2], named[1::2], strict=True)}


def render_layered(derivation: Derivation, name: str) -> str:
    """The generated module of a network holding layer kinds: ``layered``'s plan."""
    from .. import layered

    network = derivation.network
    text = MatrixText(network)
    fields = layered.template_fields(
        derivation,
        NumpyCode(network),
        text,
        lambda stat: f'_running(state, "{stat}", dtype)',
    )
    fields |= _inplace_fields(network, layered.plan(network, text), fields["projections"])  # type: ignore[arg-type]
    return (
        _environment()
        .get_template(LAYERED_TEMPLATE)
        .render(
            version=__version__,
            runtime=runtime_sections(),
            layered=layered_sections(),
            header=header_line(command_line(network, name)),
            template=f"derive/backends/numpy/{TEMPLATES}/{LAYERED_TEMPLATE}",
            eps=repr(EPS),
            momentum=repr(MOMENTUM),
            helpers=helpers(network),
            params_targets=_unpack_target(fields["param_pairs"], " = params"),  # type: ignore[arg-type]
            grads_targets=_unpack_target(
                [f"(d{pair[1:].replace(', ', ', d')}" for pair in fields.pop("param_pairs")],  # type: ignore[attr-defined]
                " = grads",
            ),
            **fields,
        )
    )


def _inplace_fields(
    network: Network, the_plan: object, projections: list[dict[str, object]]
) -> dict[str, object]:
    """The in-place ``backprop``'s workspace and groups (``layered_inplace``)."""
    from .layered_inplace import backprop_fields

    gradient_names = {p for group in the_plan.gradients for p in group}  # type: ignore[attr-defined]
    fields = backprop_fields(network, the_plan, NumpyCode(network), gradient_names)
    for part in ("inplace_forward", "inplace_backward"):
        for group in fields[part]:  # type: ignore[attr-defined]
            group["comment"] = _comment_lines(group["comment"])
    layout = [f'({rows}, {cols}, "{kind}")' for rows, cols, kind in fields.pop("ws_layout")]  # type: ignore[attr-defined]
    fields["ws_layout_literal"] = tuple_literal(
        layout, "_WORKSPACE: tuple[tuple[int, int, str], ...] = "
    )
    fields["ws_slots_literal"] = tuple_literal(
        [str(k) for k in fields.pop("ws_slots")],  # type: ignore[attr-defined]
        "_SLOTS: tuple[int, ...] = ",
    )
    fields["ws_ones_literal"] = tuple_literal(
        [str(n) for n in fields.pop("ws_ones_columns")],  # type: ignore[attr-defined]
        "_ONES_COLUMNS: tuple[int, ...] = ",
    )
    fields["ws_constants_literal"] = tuple_literal(
        [repr(float(v)) for v in fields.pop("ws_constants")],  # type: ignore[attr-defined]
        "_CONSTANTS: tuple[float, ...] = ",
    )
    fields["halves"] = sorted({int(str(p["n"])) for p in projections})
    fields["ws_targets"] = _unpack_target(fields.pop("ws_unpacked"), " = ws[1]")  # type: ignore[arg-type]
    return fields


def _comment_lines(comment: str) -> list[str]:
    """A statement's identity as comment lines within the lint's line length."""
    return textwrap.wrap(comment, LINT_LINE_LENGTH - 6, break_on_hyphens=False) or [comment]
