"""The README's usage example runs as written."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_python_example_runs(tmp_path):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("```python\nimport numpy as np\n") + len("```python\n")
    example = text[start : text.index("```", start)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", example + "\nprint('ok', value, len(w_grad))"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok ")


def test_readme_sample_output_is_what_a_fresh_clone_prints(tmp_path, monkeypatch, capsys):
    """The "What it prints" block, timings aside, is the real output in a fresh clone."""
    from derive import cli

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("```\n$ python -m derive --layers 20,50,10\n") + len("```\n")
    block = text[start : text.index("```", start)].splitlines()
    assert block[0] == "$ python -m derive --layers 20,50,10"
    (tmp_path / "generated").mkdir()
    shutil.copy(ROOT / "generated" / "mlp_20_50_10.py", tmp_path / "generated")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["--layers", "20,50,10"]) == 0
    printed = capsys.readouterr().out.splitlines()
    timing = re.compile(r"; \d+\.\d\d s\]")
    assert [timing.sub("; s]", line) for line in printed] == [
        timing.sub("; s]", line) for line in block[1:]
    ]


def test_readme_test_command_is_the_one_ci_runs():
    """The quick start's test command is .ci/run's first pytest line, and its slow run adds -m slow."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    command = re.search(r"^`(python -m pytest[^`]*)`$", text, re.MULTILINE)
    assert command, "no test command on a line of its own in README.md"
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if "pytest" in line]
    assert ci == [command[1], f"{command[1]} -m slow"]
