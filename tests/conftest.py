"""Shared fixtures: generate a module with derive and import it from a file."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path

import pytest

from derive import naming, spec
from derive.backends.numpy import module as numpy_module
from derive.derivation import derive

ROOT = Path(__file__).resolve().parent.parent
_LOADED = itertools.count()


def load_module(path: Path, name: str | None = None):
    """Import a generated module from its file, under a unique name."""
    name = name or f"_derive_test_{path.stem}_{next(_LOADED)}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    module_spec.loader.exec_module(module)
    return module


def generate(tmp_path: Path, layers: str, activation: str = "tanh", loss: str = "l2"):
    """Render a module for the spec into tmp_path and import it."""
    network = spec.network(layers, activation, loss)
    name = naming.default_module_name(network)
    path = tmp_path / f"{name}.py"
    path.write_text(numpy_module.render(derive(network), name), encoding="utf-8")
    return load_module(path)


@pytest.fixture
def make_module(tmp_path):
    return lambda layers, activation="tanh", loss="l2": generate(tmp_path, layers, activation, loss)
