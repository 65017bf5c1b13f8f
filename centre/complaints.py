"""Customers' complaints and their two clocks: acknowledged within `acknowledge_within_h`,
resolved within `resolve_within_days`, both from when the complaint was received. Pure:
the clocks of one complaint as of a moment, and the share of clocks met over many."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from alarmgw.clock import iso

Channel = Literal["phone", "fax", "letter", "email", "web", "in_person"]
CLOCKS = ("acknowledge", "resolve")


class ComplaintRules(BaseModel):
    """`desk.complaints` in the centre's file."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    acknowledge_within_h: float = Field(default=24.0, gt=0, le=720)
    resolve_within_days: float = Field(default=10.0, gt=0, le=365)

    def allowance(self, clock: str) -> timedelta:
        if clock == "acknowledge":
            return timedelta(hours=self.acknowledge_within_h)
        return timedelta(days=self.resolve_within_days)


def clock(received: datetime, stopped: datetime | None, allowance: timedelta, now: datetime) -> dict[str, object]:
    """One clock: due, state (running, met, breached), time left (negative once late)."""
    due = received + allowance
    if stopped is not None:
        state = "met" if stopped <= due else "breached"
        left = (due - stopped).total_seconds()
    else:
        state = "running" if now <= due else "breached"
        left = (due - now).total_seconds()
    return {
        "due": iso(due),
        "state": state,
        "remaining_s": round(left, 1),
        "stopped_at": iso(stopped) if stopped else None,
    }


def clocks(
    received: datetime, acknowledged: datetime | None, resolved: datetime | None, rules: ComplaintRules, now: datetime
) -> dict[str, dict[str, object]]:
    return {
        "acknowledge": clock(received, acknowledged, rules.allowance("acknowledge"), now),
        "resolve": clock(received, resolved, rules.allowance("resolve"), now),
    }


def report(all_clocks: Iterable[dict[str, dict[str, object]]]) -> dict[str, dict[str, float | None]]:
    """Per clock: met, breached, running, and the share met among those decided (None when
    none is decided yet)."""
    counts = {name: {"met": 0, "breached": 0, "running": 0} for name in CLOCKS}
    for cs in all_clocks:
        for name in CLOCKS:
            counts[name][str(cs[name]["state"])] += 1
    out: dict[str, dict[str, float | None]] = {}
    for name, c in counts.items():
        decided = c["met"] + c["breached"]
        out[name] = {**{k: float(v) for k, v in c.items()}, "share_met": c["met"] / decided if decided else None}
    return out
