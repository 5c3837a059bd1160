"""Shared fixtures: generate a module with derive and import it from a file."""

from __future__ import annotations

import pytest
from helpers import ROOT, generate, load_module

__all__ = ["ROOT", "generate", "load_module"]


@pytest.fixture
def make_module(tmp_path):
    return lambda layers, activation="tanh", loss="l2": generate(tmp_path, layers, activation, loss)
