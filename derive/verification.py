"""Every proof for any network: ``proof.verify`` for a dense one, ``proof_layers`` for the rest.

One entry for the CLI and the Python API; it sits above both provers, so neither imports
the other's caller (``tests/test_imports.py``).
"""

from __future__ import annotations

from . import proof
from .check import Check
from .derivation import Derivation
from .proof_layers import verify_mixed


def verify(derivation: Derivation, end_to_end_depth: int = proof.END_TO_END_DEPTH) -> list[Check]:
    """All checks for one network; end to end only up to ``end_to_end_depth`` layers."""
    if derivation.network.dense:
        return proof.verify(derivation, end_to_end_depth)
    return verify_mixed(derivation, end_to_end_depth)
