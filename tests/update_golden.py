"""Rewrite the LaTeX snapshots and regenerate every module in generated/.

Run after an intended change to the printer or the templates, then review
the diff with git before committing it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import GENERATED, LATEX_GOLDEN, LATEX_SNAPSHOTS, ROOT, header_command, latex_body

for snapshot, layers in LATEX_SNAPSHOTS.items():
    (LATEX_GOLDEN / snapshot).write_text(latex_body(layers), encoding="utf-8")
    print(f"wrote tests/golden/{snapshot}")
for path in GENERATED:
    subprocess.run([sys.executable, "-m", "derive", *header_command(path)], check=True, cwd=ROOT)
