"""Code generation targets, one package each, and the registry that names them.

A target package exposes ``render(derivation, name) -> str`` and
``spec_command(network) -> str``; registering it here (its ``--target``
name, its package and its default folder) is all the command line needs.
A backend is imported only when it is used.  See backends/README.md.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..derivation import Derivation
    from ..model import Network


@dataclass(frozen=True)
class Backend:
    """How a target names, renders and files its module."""

    render: Callable[[Derivation, str], str]
    spec_command: Callable[[Network], str]
    folder: str


REGISTRY: dict[str, tuple[str, str]] = {
    "numpy": ("derive.backends.numpy", "generated"),
    "array-api": ("derive.backends.array_api", "generated/array_api"),
}
"""``--target`` name → (package, default output folder); the first is the default."""

NAMES = tuple(REGISTRY)
"""What ``--target`` accepts."""


def backend(name: str) -> Backend:
    """The target called ``name``, its package imported now."""
    package, folder = REGISTRY[name]
    module = importlib.import_module(package)
    return Backend(module.render, module.spec_command, folder)
