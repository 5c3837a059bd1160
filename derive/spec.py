"""Turning command-line text into a validated ``Network``.

Every value that later reaches generated code passes through here: widths
become bounded ints, names are looked up in the catalog, module names must
be identifiers.  Errors are ``SpecError`` with a one-line message that names
the bad value and what is allowed.
"""

from __future__ import annotations

import builtins
import inspect
import itertools
import keyword
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import sympy as sp

from . import catalog
from .layers import AnyLayer, BatchNorm, Dense, Dropout, LayerNorm, Residual
from .layers import width as layers_width
from .model import Network

MAX_WIDTH = 100_000
"""Widest layer accepted: a 100000 x 100000 float64 matrix is already 80 GB."""

MAX_DEPTH = 200
"""Most weight layers accepted."""

MAX_PARAMETERS = 500_000_000
"""Most weights and biases in all: 4 GB of float64 parameters, before gradients."""


class SpecError(ValueError):
    """A bad command-line value."""


KINDS = "a width (20), N+res, N+proj, ln, bn or drop:P"
"""What a --layers item may be, as the errors say it."""

MAX_RATE_TEXT = 20
"""Longest dropout rate accepted, in characters (``drop:0.125`` is 5)."""


@dataclass(frozen=True)
class LayerItem:
    """One item of ``--layers`` after the input width: a layer of kind ``kind``.

    ``kind`` is "dense" (an integer N), "res" (N+res), "proj" (N+proj), "ln", "bn" or
    "drop" (drop:P); ``width`` is N for the first three, ``rate`` P for dropout.
    """

    kind: str
    width: int | None = None
    rate: sp.Rational | None = None


def _width(item: str, text: str) -> int:
    if len(item.lstrip("0")) > len(str(MAX_WIDTH)):  # also spares int() a huge string
        shown = item if len(item) <= 20 else item[:20] + "..."
        raise SpecError(f"--layers: width {shown} is above the limit of {MAX_WIDTH}")
    width = int(item)
    if width < 1:
        raise SpecError(f"--layers {text!r}: width {width} must be at least 1")
    if width > MAX_WIDTH:
        raise SpecError(f"--layers {text!r}: width {width} is above the limit of {MAX_WIDTH}")
    return width


def _digits(item: str) -> bool:
    return item.isdigit() and item.isascii()


def _rate(item: str, text: str) -> sp.Rational:
    """``drop:0.25`` → 1/4, exactly; a rate must be a decimal in [0, 1)."""
    value = item.partition(":")[2]
    whole, _, fraction = value.partition(".")
    decimal = (
        0 < len(value) <= MAX_RATE_TEXT
        and (whole == "" or _digits(whole))
        and (fraction == "" or _digits(fraction))
        and (whole + fraction) != ""
    )
    if not decimal:
        raise SpecError(f"--layers {text!r}: {item!r} needs a rate P in [0, 1), e.g. drop:0.5")
    rate = sp.Rational(value)
    if not 0 <= rate < 1:
        raise SpecError(f"--layers {text!r}: dropout rate {value} is outside [0, 1)")
    return rate


def parse_items(text: str) -> tuple[int, tuple[LayerItem, ...]]:
    """``"20,50,50+res,ln,10"`` -> (20, the items after it): the input width, then one
    item per layer."""
    parts = text.split(",")
    if len(parts) - 1 > MAX_DEPTH:
        raise SpecError(f"--layers: {len(parts) - 1} layers is more than the limit of {MAX_DEPTH}")
    items: list[LayerItem] = []
    for part in parts:
        item = part.strip()
        base, plus, suffix = item.partition("+")
        if _digits(item):
            items.append(LayerItem("dense", _width(item, text)))
        elif plus and _digits(base) and suffix in ("res", "proj"):
            items.append(LayerItem(suffix, _width(base, text)))
        elif item in ("ln", "bn"):
            items.append(LayerItem(item))
        elif item.partition(":")[0] == "drop":
            items.append(LayerItem("drop", rate=_rate(item, text)))
        elif len(parts) == 1 and not item:
            break  # nothing at all: say how many widths are needed
        else:
            raise SpecError(
                f"--layers {text!r}: {item!r} is not a positive whole number or a layer ({KINDS})"
            )
    if len(items) < 2:
        raise SpecError(
            f"--layers {text!r}: give at least two comma-separated widths, e.g. 20,50,10"
        )
    if items[0].kind != "dense":
        raise SpecError(
            f"--layers {text!r}: the first item is the input width, not {parts[0].strip()!r}"
        )
    assert items[0].width is not None
    return items[0].width, tuple(items[1:])


def _layers(
    text: str, n_in: int, items: tuple[LayerItem, ...], acts: tuple[catalog.Activation, ...]
) -> tuple[AnyLayer, ...]:
    """The layers the items name, each reading the width the one below gives."""
    layers: list[AnyLayer] = []
    activations = iter(acts)
    width = n_in
    for index, item in enumerate(items, start=1):
        layer: AnyLayer
        if item.kind in ("dense", "res", "proj"):
            assert item.width is not None
            act = next(activations)
            if item.kind == "dense":
                layer = Dense(index, width, item.width, act)
            else:
                if item.kind == "res" and item.width != width:
                    raise SpecError(
                        f"--layers {text!r}: {item.width}+res after width {width}: a skip "
                        f"connection between unequal widths needs a projection, "
                        f"{item.width}+proj"
                    )
                layer = Residual(index, width, item.width, act, item.kind == "proj")
        elif item.kind in ("ln", "bn"):
            if item.kind == "ln" and width == 1:
                raise SpecError(
                    f"--layers {text!r}: ln (layer {index}) on a width of 1: a row's one "
                    "feature is its own mean, so the output is β whatever the input"
                )
            layer = (LayerNorm if item.kind == "ln" else BatchNorm)(index, width)
        else:
            assert item.rate is not None
            if index == len(items):
                raise SpecError(
                    f"--layers {text!r}: drop:{decimal_text(item.rate)} as the last layer: "
                    "the loss would compare masked predictions"
                )
            layer = Dropout(index, width, item.rate)
        width = layers_width(layer)
        layers.append(layer)
    return tuple(layers)


def decimal_text(rate: sp.Rational) -> str:
    """A terminating rational as the shortest decimal that names it: 1/4 → ``0.25``."""
    p, q = int(rate.p), int(rate.q)
    digits = 0
    while q * 10**digits % q or (p * 10**digits) % q:
        digits += 1
    text = str(p * 10**digits // q).rjust(digits + 1, "0")
    return text if digits == 0 else f"{text[:-digits]}.{text[-digits:]}"


def _parameter_count(layers: tuple[AnyLayer, ...]) -> int:
    count = 0
    for layer in layers:
        if isinstance(layer, Dense | Residual):
            count += layer.n_in * layer.n_out + layer.n_out
            if isinstance(layer, Residual) and layer.projection:
                count += layer.n_in * layer.n_out
        elif isinstance(layer, LayerNorm | BatchNorm):
            count += 2 * layer.width
    return count


def parse_layers(text: str) -> tuple[int, ...]:
    """``"20,50,10"`` -> (20, 50, 10): the widths n_0 … n_L after each layer, at least two
    (a normalization or dropout item keeps the width below it)."""
    n_in, items = parse_items(text)
    sizes = [n_in]
    for item in items:
        sizes.append(sizes[-1] if item.width is None else item.width)
    count = sum(n_in * n_out + n_out for n_in, n_out in itertools.pairwise(sizes))
    if all(item.kind == "dense" for item in items) and count > MAX_PARAMETERS:
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
    for path in paths:
        found = _module_in(path, folded)
        if found is not None:
            return f"the installed module {found!r}"
    return None


def _module_in(folder: str, folded: str) -> str | None:
    """The module of ``folder`` whose name, case folded, is ``folded``: what
    ``pkgutil.iter_modules([folder])`` lists (a module file, or a folder holding an
    ``__init__``), with only the matching entries inspected (``iter_modules`` opens every
    folder of site-packages: 20 ms of each run here)."""
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return None
    for name in names:
        module = inspect.getmodulename(name)
        if (module or name).casefold() != folded or module == "__init__":
            continue
        if module is None:  # a folder: a package only with an __init__ inside
            path = os.path.join(folder, name)
            if "." in name or not os.path.isdir(path):
                continue
            try:
                inside = os.listdir(path)
            except OSError:
                continue
            if not any(inspect.getmodulename(entry) == "__init__" for entry in inside):
                continue
            module = name
        if "." not in module:
            return module
    return None


def network(layers: str, activation: str = "tanh", loss: str = "l2", l2: bool = False) -> Network:
    """The network ``layers`` names (see ``parse_items``); ``activation`` applies to its dense
    and residual layers.  ``l2``: the objective adds the penalty λ/2 Σ_l ‖W_l‖_F² (``--l2``).

    A network of widths only is built as before (``Network(sizes, activations, loss, l2)``).
    """
    sizes = parse_layers(layers)
    n_in, items = parse_items(layers)
    loss_function = parse_loss(loss)
    activated = sum(item.kind in ("dense", "res", "proj") for item in items)
    if all(item.kind == "dense" for item in items):
        acts = parse_activations(activation, len(sizes) - 1, loss_function.link)
        return Network(sizes, acts, loss_function, l2=bool(l2))
    if activated == 0:
        raise SpecError(f"--layers {layers!r}: no dense or residual layer; give at least one width")
    last = items[-1]
    if loss_function.link is not None and last.kind != "dense":
        raise SpecError(
            f"--layers {layers!r}: --loss {loss_function.name} reads the logits of a dense "
            f"output layer; end with a width, not {last.kind}"
        )
    acts = parse_activations(activation, activated, loss_function.link)
    built = _layers(layers, n_in, items, acts)
    count = _parameter_count(built)
    if count > MAX_PARAMETERS:
        raise SpecError(
            f"--layers {layers!r}: {count:,} parameters is above the limit of {MAX_PARAMETERS:,}"
        )
    try:
        return Network.of_layers(built, loss_function, l2=bool(l2))
    except ValueError as err:  # a rule of Network's that the items above did not catch
        raise SpecError(f"--layers {layers!r}: {err}") from None
