"""Derive, prove and load a network's module in memory, cached per specification.

The estimators and ``derive train`` share this; the lead will switch it to
the public in-memory API (``derive.api``) when that lands.  The loaded source
is what derive rendered from a validated specification, never user text.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
from types import ModuleType

from . import codegen, proof, spec
from .derivation import derive


class NotProved(Exception):
    """A network whose derivation failed verification: it is not trained."""


class _InMemoryLoader(importlib.abc.SourceLoader):
    """Loads a module from the source derive rendered."""

    def __init__(self, name: str, source: str) -> None:
        self._name, self._source = name, source

    def get_filename(self, fullname: str) -> str:
        return f"<derive {self._name}>"

    def get_data(self, path: str) -> bytes:
        return self._source.encode("utf-8")


def load_source(name: str, source: str) -> ModuleType:
    """A module object for ``source``, not registered in ``sys.modules``."""
    loader = _InMemoryLoader(name, source)
    module_spec = importlib.util.spec_from_loader(name, loader)
    if module_spec is None:  # pragma: no cover - spec_from_loader returns one for a loader
        raise RuntimeError(f"cannot make a module spec for {name}")
    module = importlib.util.module_from_spec(module_spec)
    loader.exec_module(module)
    return module


@functools.lru_cache(maxsize=64)
def network_module(layers: str, activation: str, loss: str) -> ModuleType:
    """The proved module for ``--layers``, ``--activation`` and ``--loss`` (cached).

    Raises ``spec.SpecError`` for a bad specification and ``NotProved`` if a
    proof fails.
    """
    network = spec.network(layers, activation, loss)
    derivation = derive(network)
    failed = [c for c in proof.verify(derivation) if not c.ok]
    if failed:
        raise NotProved(f"derive could not prove {', '.join(c.name for c in failed)}")
    name = codegen.default_module_name(network)
    return load_source(name, codegen.render(derivation, name))
