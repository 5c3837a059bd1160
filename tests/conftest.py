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


# The README runs the suite as `-n 2 --dist loadfile`: xdist hands each worker one test file
# at a time until none is left, so the wall time is the busier worker's. Its default order
# (most tests first) put test_lint.py's mypy run (25 CPU-s, 9 tests) and test_estimators.py
# (10 tests) among the last files, and the other worker idle while they ran. The heaviest files
# go first instead (CPU-seconds measured on a quiet machine, heaviest first), the many light ones
# fill in at the end; a file missing here only runs later, nothing else changes.
HEAVIEST_FIRST = [
    "test_catalog.py",
    "test_estimators.py",
    "test_lint.py",
    "test_mixed.py",
    "test_training.py",
    "test_penalty.py",
    "test_outputs.py",
    "test_train_cli.py",
    "test_latex.py",
    "test_proof_unrolled.py",
    "test_normalization.py",
    "test_array_api.py",
    "test_cli.py",
    "test_determinism.py",
]


def pytest_configure(config):
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist's --no-loadscope-reorder
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items):
    rank = {name: k for k, name in enumerate(HEAVIEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable within a file
