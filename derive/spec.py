"""Turning command-line text into a validated ``Network``.

Every value that later reaches generated code passes through here: widths
become bounded ints, names are looked up in the catalog, module names must
be identifiers.  Errors are ``SpecError`` with a one-line message that names
the bad value and what is allowed.
"""

from __future__ import annotations

import builtins
import itertools
import keyword
import pkgutil
import sys
from pathlib import Path

from . import catalog
from .model import Network

MAX_WIDTH = 100_000
"""Widest layer accepted: a 100000 x 100000 float64 matrix is already 80 GB."""

MAX_DEPTH = 200
"""Most weight layers accepted."""

MAX_PARAMETERS = 500_000_000
"""Most weights and biases in all: 4 GB of float64 parameters, before gradients."""


class SpecError(ValueError):
    """A bad command-line value."""


def parse_layers(text: str) -> tuple[int, ...]:
    """``"20,50,10"`` -> (20, 50, 10): at least two positive widths."""
    parts = text.split(",")
    if len(parts) - 1 > MAX_DEPTH:
        raise SpecError(f"--layers: {len(parts) - 1} layers is more than the limit of {MAX_DEPTH}")
    sizes = []
    for part in parts:
        item = part.strip()
        if not item.isdigit() or not item.isascii():
            if len(parts) == 1 and not item:
                break  # nothing at all: say how many widths are needed
            raise SpecError(f"--layers {text!r}: {item!r} is not a positive whole number")
        if len(item.lstrip("0")) > len(str(MAX_WIDTH)):  # also spares int() a huge string
            shown = item if len(item) <= 20 else item[:20] + "..."
            raise SpecError(f"--layers: width {shown} is above the limit of {MAX_WIDTH}")
        width = int(item)
        if width < 1:
            raise SpecError(f"--layers {text!r}: width {width} must be at least 1")
        if width > MAX_WIDTH:
            raise SpecError(f"--layers {text!r}: width {width} is above the limit of {MAX_WIDTH}")
        sizes.append(width)
    if len(sizes) < 2:
        raise SpecError(
            f"--layers {text!r}: give at least two comma-separated widths, e.g. 20,50,10"
        )
    count = sum(n_in * n_out + n_out for n_in, n_out in itertools.pairwise(sizes))
    if count > MAX_PARAMETERS:
        raise SpecError(
            f"--layers {text!r}: {count:,} parameters is above the limit of {MAX_PARAMETERS:,}"
        )
    return tuple(sizes)


def parse_activations(
    text: str, depth: int, link: catalog.Activation | None = None
) -> tuple[catalog.Activation, ...]:
    """One name for every layer, or a comma list with one name per layer.

    ``link`` is a fused loss's output activation (softmax, sigmoid): a single
    name then applies to the hidden layers, and a list must end with it.
    ``name:value`` sets a parameter, e.g. ``leaky_relu:0.2``.
    """
    names = [n.strip() for n in text.split(",")]
    if len(names) not in (1, depth):
        raise SpecError(
            f"--activation {text!r}: {len(names)} names for {depth} layers; give one or {depth}"
        )
    try:
        acts = [catalog.activation(n) for n in names]
    except catalog.UnknownName as err:
        raise SpecError(f"--activation: {err}") from None
    if len(acts) == 1:
        acts = acts * depth
        if link is not None:
            acts[-1] = link
    elif link is not None and acts[-1] != link:
        raise SpecError(
            f"--activation {text!r}: the last layer must be {link.name}, the link of this loss "
            f"(or give one name for the hidden layers)"
        )
    for layer, act in enumerate(acts, start=1):
        if not act.entrywise and (layer < depth or act != link):
            raise SpecError(
                f"--activation {text!r}: {act.name} is only the output of --loss softmax_cross_entropy"
            )
    return tuple(acts)


def parse_loss(text: str) -> catalog.LossFunction:
    try:
        return catalog.loss_function(text)
    except catalog.UnknownName as err:
        raise SpecError(f"--loss: {err}") from None


MAX_NAME = 100
"""Longest module name accepted: with ``.py`` and a temporary suffix it fits any file system."""


def check_module_name(name: str) -> str:
    """A module name that is an identifier and shadows nothing ``import`` would find."""
    if len(name) > MAX_NAME:
        raise SpecError(
            f"--name {name[:20]!r}...: {len(name)} characters is more than the limit of {MAX_NAME}"
        )
    if not name.isidentifier() or not name.isascii():
        raise SpecError(
            f"--name {name!r}: a module name must be a Python identifier (letters, digits, _)"
        )
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        raise SpecError(f"--name {name!r}: a module name cannot be a Python keyword")
    if name.startswith("__") and name.endswith("__"):
        raise SpecError(f"--name {name!r}: dunder names are reserved by Python")
    if name in dir(builtins):
        raise SpecError(f"--name {name!r}: a module name cannot be a Python builtin name")
    shadowed = shadowed_module(name)
    if shadowed is not None:
        raise SpecError(
            f"--name {name!r}: a module of that name would shadow {shadowed}; choose another name"
        )
    return name


def shadowed_module(name: str) -> str | None:
    """What ``import name`` finds today (standard library, built in or installed), or None.

    The current folder is left out: a module derive wrote there before is
    not a reason to refuse writing it again.  Names are compared ignoring
    case, since some file systems do.
    """
    folded = name.casefold()
    for known in (*sys.stdlib_module_names, *sys.builtin_module_names, "numpy"):
        if known.casefold() == folded:
            return f"the standard library module {known!r}" if known != "numpy" else "numpy"
    here = Path.cwd().resolve()
    paths = [p for p in sys.path if p and Path(p).resolve() != here and Path(p).is_dir()]
    for module in pkgutil.iter_modules(paths):
        if module.name.casefold() == folded:
            return f"the installed module {module.name!r}"
    return None


def network(layers: str, activation: str = "tanh", loss: str = "l2", l2: bool = False) -> Network:
    """``l2``: the objective adds the penalty λ/2 Σ_l ‖W_l‖_F² (``--l2``)."""
    sizes = parse_layers(layers)
    loss_function = parse_loss(loss)
    acts = parse_activations(activation, len(sizes) - 1, loss_function.link)
    return Network(sizes, acts, loss_function, l2=bool(l2))
