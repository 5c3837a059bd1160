"""derive itself is fully typed: ``mypy --strict`` over the package, with pyproject's config.

The runtime files under the numpy backend's ``templates/`` are excluded there and
type-checked alone (tests/test_runtime.py, tests/test_training.py); generated modules are
checked by tests/test_lint.py. This file checks everything else under ``derive/``, once.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mypy import api

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "pyproject.toml"


def _mypy(*args: str) -> tuple[str, int]:
    """mypy in this process, configured by pyproject.toml: (its report, its exit status)."""
    stdout, stderr, status = api.run(["--config-file", str(CONFIG), *args])
    return stdout + stderr, status


def _package_modules() -> list[Path]:
    """Every .py file under derive/ that the config does not exclude."""
    derive = ROOT / "derive"
    return [p for p in derive.rglob("*.py") if "templates" not in p.relative_to(derive).parts]


def test_derive_passes_mypy_strict(monkeypatch: pytest.MonkeyPatch) -> None:
    """The files and the cache (.mypy_cache) are the ones ``mypy`` at the repository root uses."""
    monkeypatch.chdir(ROOT)
    report, status = _mypy()
    assert status == 0, report
    checked = re.search(r"no issues found in (\d+) source files?", report)
    assert checked, report
    assert int(checked.group(1)) == len(_package_modules()), report


def test_the_type_check_rejects_ill_typed_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Negative control: the same harness fails, and --strict comes from the config."""
    monkeypatch.chdir(ROOT)  # the same cache: the standard library is analysed once
    bad = tmp_path / "bad.py"
    bad.write_text(
        'def untyped(x):\n    return x\n\n\ndef count() -> int:\n    return "three"\n',
        encoding="utf-8",
    )
    report, status = _mypy(str(bad))
    assert status == 1, report
    assert "bad.py:1: error: Function is missing a type annotation  [no-untyped-def]" in report
    assert "bad.py:6: error: Incompatible return value type" in report
