"""``python -m derive``: see ``derive.cli``."""

import sys

from .cli import main

sys.exit(main())
