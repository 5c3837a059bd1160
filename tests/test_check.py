"""``Check``: the verification outcome every reader shares, with a real status."""

from __future__ import annotations

import pytest

from derive import latex, proof, report, spec
from derive.check import Check, Status
from derive.derivation import derive


def test_status_follows_ok_and_skipped():
    assert Check("a", "s", "m", True, 0.0).status is Status.PROVED
    assert Check("a", "s", "m", False, 0.0, "differs").status is Status.FAILED
    assert Check("a", "s", "m", True, 0.0, skipped=True).status is Status.SKIPPED


def test_a_failed_check_cannot_claim_to_be_skipped():
    with pytest.raises(ValueError, match="both skipped and failed"):
        Check("a", "s", "m", False, 0.0, "differs", skipped=True)


def test_a_skipped_check_reads_as_skipped_everywhere_whatever_its_detail():
    """The status, not a sentinel in ``detail``, decides what readers print."""
    network = spec.network("4,3,2")
    checks = proof.verify(derive(network), end_to_end_depth=0)
    skipped = [c for c in checks if c.status is Status.SKIPPED]
    assert [c.name for c in skipped] == ["end to end"] and skipped[0].detail == ""
    assert report.line(skipped[0]).lstrip().startswith("skipped")
    assert r"\textbf{The whole network at once} (skipped)" in latex.verification(checks, network)
    ran = Check("end to end", "depth 2", "exact", True, 0.0, detail="skipped")
    assert report.line(ran).lstrip().startswith("proved")
