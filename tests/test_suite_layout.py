"""The suite's own layout: test modules share code through tests/helpers.py, never each other."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def imported_test_modules(source: str) -> set[str]:
    """Names of test modules (test_*) that ``source`` imports, in any import form."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):  # from test_x import y; from tests import test_x
            names = [node.module or "", *(alias.name for alias in node.names)]
        else:
            continue
        found |= {name for name in names if name.split(".")[-1].startswith("test_")}
    return found


def test_no_test_module_imports_another():
    sources = [*sorted(TESTS.glob("test_*.py")), TESTS / "update_golden.py"]
    assert len(sources) > 10
    importers = {
        path.name: imported
        for path in sources
        if (imported := imported_test_modules(path.read_text(encoding="utf-8")))
    }
    assert importers == {}


def test_each_import_form_of_a_test_module_is_seen():
    """Negative control: the check above does see a test module imported."""
    assert imported_test_modules("import test_catalog\n") == {"test_catalog"}
    assert imported_test_modules("from test_catalog import ACTS\n") == {"test_catalog"}
    assert imported_test_modules("import tests.test_cli as c\n") == {"tests.test_cli"}
    assert imported_test_modules("from . import test_cli\n") == {"test_cli"}
    assert imported_test_modules("from tests import test_cli\n") == {"test_cli"}
    assert imported_test_modules("import helpers\nfrom helpers import ROOT\n") == set()
