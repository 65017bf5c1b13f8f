"""Remote-diagnosis tickets: one per fault episode, with a lifecycle table.

States run open -> acknowledged (the response) -> dispatched -> on_site (the arrival) ->
resolved -> closed. A fault fixed remotely may go acknowledged -> resolved. Each state has
its stamp; an illegal move raises `IllegalTransition`. A fault that restores marks the
ticket restored; only a person closes it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from alarmgw.clock import iso

from .sla import PROMISE, Area, ClockStatus, RepairClass, ServicePolicy, Stamps, clocks, downtime_clock


class TicketState(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    DISPATCHED = "dispatched"
    ON_SITE = "on_site"
    RESOLVED = "resolved"
    CLOSED = "closed"


# The whole lifecycle: state -> states it may move to.
TRANSITIONS: Mapping[TicketState, frozenset[TicketState]] = {
    TicketState.OPEN: frozenset({TicketState.ACKNOWLEDGED}),
    TicketState.ACKNOWLEDGED: frozenset({TicketState.DISPATCHED, TicketState.RESOLVED}),
    TicketState.DISPATCHED: frozenset({TicketState.ON_SITE}),
    TicketState.ON_SITE: frozenset({TicketState.RESOLVED}),
    TicketState.RESOLVED: frozenset({TicketState.CLOSED}),
    TicketState.CLOSED: frozenset(),
}

# What people call each move (CLI, remote commands) -> the state it moves to.
MOVES: Mapping[str, TicketState] = {
    "ack": TicketState.ACKNOWLEDGED,
    "dispatch": TicketState.DISPATCHED,
    "arrive": TicketState.ON_SITE,
    "resolve": TicketState.RESOLVED,
    "close": TicketState.CLOSED,
}


def moves_from(state: TicketState) -> list[str]:
    """The names of the moves a ticket in `state` may make now."""
    return [name for name, to in MOVES.items() if to in TRANSITIONS[state]]


# Ticket attribute that stamps entering each state.
STAMP = {
    TicketState.ACKNOWLEDGED: "acknowledged_at",
    TicketState.DISPATCHED: "dispatched_at",
    TicketState.ON_SITE: "on_site_at",
    TicketState.RESOLVED: "resolved_at",
    TicketState.CLOSED: "closed_at",
}


class TicketError(Exception):
    """Base of ticket errors."""


class IllegalTransition(TicketError):
    def __init__(self, ticket_id: int | None, state: TicketState, to: TicketState) -> None:
        allowed = ", ".join(sorted(TRANSITIONS[state])) or "nothing (closed)"
        super().__init__(f"ticket {ticket_id}: cannot go from {state} to {to}; from {state} it may go to {allowed}")


@dataclass(frozen=True, slots=True)
class Ticket:
    """A failure report with what the service rules ask of one: cause, time, nature, type,
    location, degree of impact and what the user has already done."""

    id: int | None
    site_id: str
    device_id: str
    device_kind: str
    fault: str
    title: str  # nature of the fault
    location: str
    area: Area
    repair_class: RepairClass
    impact: str  # degree of impact, in words
    opened_at: datetime  # detection time: the first observation of the fault
    raised_at: datetime  # when the debounce confirmed it
    contact_id: int | None = None
    sia: tuple[str, str] | None = None
    state: TicketState = TicketState.OPEN
    acknowledged_at: datetime | None = None
    dispatched_at: datetime | None = None
    on_site_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    fault_active: bool = True
    restored_at: datetime | None = None
    occurrences: int = 1
    affected: tuple[str, ...] = ()  # devices behind the root cause
    casualties: tuple[str, ...] = ()  # of those, the ones seen lost
    evidence: Mapping[str, float | int | bool] = field(default_factory=dict)
    cause: str = ""
    diagnosis: Mapping[str, object] = field(default_factory=dict)  # cause, fix, part, repair, evidence
    user_action: str = ""
    in_warranty: bool | None = None
    # Downtime while the component is replaced: from the last reading before it went away to
    # the first one after it is back. `out_of_service`: an engineer said it is out (readings
    # do not end the downtime until they say it is back in service).
    down_since: datetime | None = None
    back_at: datetime | None = None
    out_of_service: bool = False
    version: int = 1  # bumped on every change, so consumers can order and de-duplicate

    def clocks(self, now: datetime, policy: ServicePolicy = PROMISE) -> tuple[ClockStatus, ...]:
        stamps = Stamps(self.opened_at, self.acknowledged_at, self.on_site_at, self.resolved_at)
        three = clocks(stamps, self.area, self.repair_class, now, policy)
        down = downtime_clock(self.down_since, self.back_at, now, policy)
        return three if down is None else (*three, down)

    @property
    def down(self) -> bool:
        """The component is away now: its downtime runs."""
        return self.down_since is not None and self.back_at is None

    def went_down(self, since: datetime) -> Ticket:
        """The device went away at `since` (its last reading). A ticket has one downtime
        window, from the first time its device went away to the last time it came back."""
        if self.down:
            return self
        first = since if self.down_since is None else self.down_since
        return dataclasses.replace(self, down_since=first, back_at=None, version=self.version + 1)

    def came_back(self, at: datetime) -> Ticket:
        """The first reading after it went away (ignored while marked out of service)."""
        if not self.down or self.out_of_service:
            return self
        return dataclasses.replace(self, back_at=max(at, self.down_since or at), version=self.version + 1)

    def marked_out(self, last_heard: datetime) -> Ticket:
        """An engineer takes the device out of service; its downtime runs from its last reading."""
        since = last_heard if self.down_since is None else self.down_since
        return dataclasses.replace(self, out_of_service=True, down_since=since, back_at=None, version=self.version + 1)

    def marked_in(self) -> Ticket:
        """Back in service: the next reading of the device ends the downtime."""
        return dataclasses.replace(self, out_of_service=False, version=self.version + 1)

    def moved(self, to: TicketState, at: datetime) -> Ticket:
        """This ticket after moving to `to` at `at`; raises IllegalTransition."""
        if to not in TRANSITIONS[self.state]:
            raise IllegalTransition(self.id, self.state, to)
        stamps = {STAMP[to]: at}
        return dataclasses.replace(self, state=to, version=self.version + 1, **stamps)  # type: ignore[arg-type]

    def last_stamp(self) -> datetime:
        """When this ticket last moved: opened, or its latest lifecycle stamp."""
        stamps: list[datetime | None] = [getattr(self, name) for name in STAMP.values()]
        return max([self.opened_at, *(s for s in stamps if s is not None)])

    def restored(self, at: datetime) -> Ticket:
        return dataclasses.replace(self, fault_active=False, restored_at=at, version=self.version + 1)

    def recurred(self) -> Ticket:
        """The same fault came back before the ticket was closed: same episode."""
        return dataclasses.replace(
            self, fault_active=True, restored_at=None, occurrences=self.occurrences + 1, version=self.version + 1
        )

    def with_casualty(self, device_id: str) -> Ticket:
        if device_id in self.casualties:
            return self
        return dataclasses.replace(self, casualties=(*self.casualties, device_id), version=self.version + 1)


def impact_of(fault: str, device_kind: str, affected: int) -> str:
    """Degree of impact in the words a dispatcher uses."""
    # Faults that leave the gateway without word of the device (and of those behind it).
    cut_off = fault in ("comm_loss", "slot_refused", "unmonitored")
    if cut_off and device_kind == "host":
        return f"critical: site unmonitored, {affected} devices unreachable"
    if cut_off and affected:
        return f"high: {affected} devices behind it unreachable"
    if device_kind == "smoke_detector" and (cut_off or fault in ("fire_trouble", "sensor_fault")):
        return "high: fire detection lost at this point"
    if cut_off or fault in ("rf_jamming", "mains_loss", "tamper", "sensor_fault"):
        return "medium: protection degraded"
    return "low: advisory, protection still in place"


def ticket_json(t: Ticket, now: datetime) -> dict[str, object]:
    """A ticket as JSON for scripts, the uplink and the service centre: every stamp and clock
    due time in ISO 8601 UTC."""
    clocks = {}
    for c in t.clocks(now):
        clocks[c.name] = {
            "due": iso(c.due),
            "state": c.state.value,
            "remaining_s": round(c.remaining_s, 1),
            "stopped_at": iso(c.stopped_at) if c.stopped_at else None,
            "provisional": c.provisional,
        }
    stamps = {
        k: (iso(v) if v else None)
        for k, v in (
            ("acknowledged_at", t.acknowledged_at),
            ("dispatched_at", t.dispatched_at),
            ("on_site_at", t.on_site_at),
            ("resolved_at", t.resolved_at),
            ("closed_at", t.closed_at),
            ("restored_at", t.restored_at),
            ("down_since", t.down_since),
            ("back_at", t.back_at),
        )
    }
    return {
        "id": t.id,
        "site": t.site_id,
        "device": t.device_id,
        "device_kind": t.device_kind,
        "fault": t.fault,
        "title": t.title,
        "state": t.state.value,
        "opened_at": iso(t.opened_at),
        "raised_at": iso(t.raised_at),
        **stamps,
        "clocks": clocks,
        "fault_active": t.fault_active,
        "occurrences": t.occurrences,
        "location": t.location,
        "impact": t.impact,
        "repair_class": t.repair_class,
        "contact_id": t.contact_id,
        "sia": list(t.sia) if t.sia else None,
        "affected": list(t.affected),
        "casualties": list(t.casualties),
        "evidence": dict(t.evidence),
        "cause": t.cause,
        "diagnosis": dict(t.diagnosis),
        "user_action": t.user_action,
        "in_warranty": t.in_warranty,
        "out_of_service": t.out_of_service,
        "version": t.version,
    }
