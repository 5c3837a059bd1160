"""The outcome of one verification: a small leaf type every reader of proofs shares.

The proof modules produce ``Check``s; the console report, the LaTeX document
and the public API read them.  It imports nothing from derive, so readers do
not pull in the proof engine to know what a result is.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Status(enum.Enum):
    """What became of a verification."""

    PROVED = "proved"
    FAILED = "failed"
    SKIPPED = "skipped"  # not run (e.g. above --end-to-end-depth); other checks cover it


@dataclass(frozen=True)
class Check:
    """The outcome of one verification."""

    name: str  # what was verified, e.g. "step lemma"
    statement: str  # the identity, in plain text
    method: str  # how it was verified
    ok: bool  # False only when the verification ran and failed
    seconds: float
    detail: str = ""  # why it failed
    skipped: bool = False  # not run: ``method`` says why

    def __post_init__(self) -> None:
        if self.skipped and not self.ok:
            raise ValueError(f"check {self.name!r} cannot be both skipped and failed")

    @property
    def status(self) -> Status:
        if not self.ok:
            return Status.FAILED
        return Status.SKIPPED if self.skipped else Status.PROVED
