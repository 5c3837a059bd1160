"""Shared fixtures: generate a module with derive and import it from a file."""

from __future__ import annotations

import os

# One BLAS thread per test process: the README's command runs one pytest worker per core, so
# OpenBLAS's (and OpenMP's) extra threads only spin against the other worker (measured: the
# thread tests of test_perf_backprop.py took 10.3 CPU-seconds with them, 3.9 without). Set
# before anything imports numpy; a value already in the environment is kept.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import pytest  # noqa: E402
from helpers import ROOT, generate, load_module  # noqa: E402

__all__ = ["ROOT", "generate", "load_module"]


@pytest.fixture
def make_module(tmp_path):
    return lambda layers, activation="tanh", loss="l2": generate(tmp_path, layers, activation, loss)
