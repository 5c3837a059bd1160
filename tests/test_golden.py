"""Generated files never drift: everything in generated/ and the LaTeX snapshots
is regenerated from scratch and compared byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import GENERATED, LATEX_GOLDEN, LATEX_SNAPSHOTS, ROOT, header_command, latex_body

from derive import cli, naming, spec
from derive.backends.numpy import module as numpy_module
from derive.derivation import derive


def regenerate(path: Path) -> str:
    args = cli.build_parser().parse_args(header_command(path))
    network = spec.network(args.layers, args.activation, args.loss, args.l2)
    name = args.name or naming.default_module_name(network)
    assert name == path.stem, f"{path.name} header names module {name}"
    return numpy_module.render(derive(network), name)


def test_generated_folder_is_not_empty():
    assert {p.name for p in GENERATED} >= {"mlp_20_50_10.py", "mlp_4_3.py"}


@pytest.mark.parametrize("path", GENERATED, ids=lambda p: p.name)
def test_generated_file_matches_regeneration(path):
    assert path.read_text(encoding="utf-8") == regenerate(path), (
        f"{path} drifted: regenerate with `{path.read_text().splitlines()[0][2:]}`"
    )


def test_golden_comparison_detects_drift(tmp_path):
    """Negative control: one changed byte in a generated file is caught."""
    original = (ROOT / "generated" / "mlp_4_3.py").read_text(encoding="utf-8")
    tampered = tmp_path / "mlp_4_3.py"
    tampered.write_text(
        original.replace("    return value", "    return  value", 1), encoding="utf-8"
    )
    assert tampered.read_text(encoding="utf-8") != original
    assert tampered.read_text(encoding="utf-8") != regenerate(tampered)


@pytest.mark.parametrize("snapshot", list(LATEX_SNAPSHOTS))
def test_latex_matches_snapshot(snapshot):
    expected = (LATEX_GOLDEN / snapshot).read_text(encoding="utf-8")
    assert latex_body(LATEX_SNAPSHOTS[snapshot]) == expected, (
        f"LaTeX changed; review it, then run `python tests/update_golden.py` to accept {snapshot}"
    )


def test_module_docstring_counts_layers_in_words():
    """'1 weight layer', '2 weight layers' (the checked-in depth-1 module said '1 weight layers')."""
    assert "; 1 weight layer.\n" in (ROOT / "generated" / "mlp_4_3.py").read_text(encoding="utf-8")
    assert "; 2 weight layers.\n" in (ROOT / "generated" / "mlp_20_50_10.py").read_text(
        encoding="utf-8"
    )
