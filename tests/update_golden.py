"""Rewrite the LaTeX snapshots and regenerate every module in generated/.

Run after an intended change to the printer or the templates, then review
the diff with git before committing it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import test_golden

for snapshot in test_golden.LATEX_SNAPSHOTS:
    body = test_golden._latex_body(test_golden.LATEX_SNAPSHOTS[snapshot])
    (test_golden.LATEX_GOLDEN / snapshot).write_text(body, encoding="utf-8")
    print(f"wrote tests/golden/{snapshot}")
for path in test_golden.GENERATED:
    args = test_golden.header_command(path)
    subprocess.run([sys.executable, "-m", "derive", *args], check=True, cwd=test_golden.ROOT)
