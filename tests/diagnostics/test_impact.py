"""The degree of impact a dispatcher sorts by; no I/O."""

from __future__ import annotations

import pytest

from alarmgw.diagnostics.tickets import impact_of


@pytest.mark.parametrize(
    ("fault", "kind", "affected", "impact"),
    [
        ("comm_loss", "host", 9, "critical: site unmonitored, 9 devices unreachable"),
        # A host the gateway cannot read, for whatever reason, is as blind as one it cannot reach.
        ("slot_refused", "host", 9, "critical: site unmonitored, 9 devices unreachable"),
        ("unmonitored", "host", 3, "critical: site unmonitored, 3 devices unreachable"),
        ("unmonitored", "repeater", 4, "high: 4 devices behind it unreachable"),
        ("slot_refused", "smoke_detector", 0, "high: fire detection lost at this point"),
        ("unmonitored", "pir_detector", 0, "medium: protection degraded"),
        ("low_battery", "pir_detector", 0, "low: advisory, protection still in place"),
    ],
)
def test_impact(fault: str, kind: str, affected: int, impact: str) -> None:
    assert impact_of(fault, kind, affected) == impact
