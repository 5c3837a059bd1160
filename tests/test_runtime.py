"""The numpy module's static runtime (backends/numpy/templates/runtime.py), included section by section."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from derive.backends.numpy import module as numpy_module

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ROOT / "derive" / "backends" / "numpy" / "templates" / "runtime.py"


def _ruff(*args: str) -> int:
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    return subprocess.run([ruff, *args, "--config", str(ROOT / "pyproject.toml")]).returncode


def test_runtime_file_is_linted_and_formatted():
    """Typed by tests/test_lint.py's one mypy run, with every generated module."""
    assert _ruff("check", "--no-cache", str(RUNTIME)) == 0
    assert _ruff("format", "--check", "--no-cache", str(RUNTIME)) == 0


def test_every_section_is_in_every_generated_module():
    """A dense module holds every runtime section; a module with layer kinds (from
    layered.py.jinja) the arrays, npy_headers and workspace_pool sections and every section of
    layered_runtime.py."""
    sections = numpy_module.runtime_sections()
    assert set(sections) == {
        "checks",
        "arrays",
        "params_io",
        "npy_headers",
        "workspace_pool",
        "workspace",
        "names",
    }
    layered = numpy_module.layered_sections()
    assert set(layered) == {"params", "state", "io", "out", "workspace", "masks"}
    kinds = 0
    for path in (ROOT / "generated").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        if "templates/layered.py.jinja" in text.splitlines()[1]:
            kinds += 1
            wanted = {
                "arrays": sections["arrays"],
                "npy_headers": sections["npy_headers"],
                "workspace_pool": sections["workspace_pool"],
                **layered,
            }
        else:
            wanted = sections
        for name, body in wanted.items():
            assert body and body in text, (path.name, name)
    assert kinds >= 1  # generated/ holds an example with layer kinds


def test_the_layered_runtime_is_linted_and_formatted():
    """Typed on its own by tests/test_lint.py's one mypy run."""
    layered = RUNTIME.parent / "layered_runtime.py"
    assert _ruff("check", "--no-cache", str(layered)) == 0
    assert _ruff("format", "--check", "--no-cache", str(layered)) == 0


def test_a_changed_section_changes_the_rendered_module(monkeypatch):
    """Negative control: the module really comes from runtime.py, not a copy in the template."""
    from derive import spec
    from derive.derivation import derive

    real = numpy_module.template_source
    marker = "# ---- runtime: names ----\n"

    def edited(name: str) -> str:
        text = real(name)
        return text.replace(marker, marker + "_EDITED = 1\n\n\n") if name == "runtime.py" else text

    derived = derive(spec.network("4,3"))
    before = numpy_module.render(derived, "m")
    monkeypatch.setattr(numpy_module, "template_source", edited)
    after = numpy_module.render(derived, "m")
    assert "_EDITED = 1" not in before and "_EDITED = 1" in after


def test_a_missing_section_is_an_error(monkeypatch):
    import jinja2

    from derive import spec
    from derive.derivation import derive

    real = numpy_module.template_source
    monkeypatch.setattr(
        numpy_module,
        "template_source",
        lambda name: (
            real(name).replace("# ---- runtime: names ----\n", "")
            if name == "runtime.py"
            else real(name)
        ),
    )
    with pytest.raises(jinja2.UndefinedError):
        numpy_module.render(derive(spec.network("4,3")), "m")
