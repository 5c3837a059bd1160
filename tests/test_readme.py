"""The README's usage example runs as written."""

from __future__ import annotations

import os
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
