"""Escalation before a service clock breaks: at configurable marks before each clock's due
time (and at the breach itself), once per ticket, clock and mark. Pure arithmetic over
tickets and `now`; the caller remembers what was already sent."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from .sla import PROMISE, ClockState, ServicePolicy
from .tickets import Ticket, TicketState

# Seconds before due at which to escalate, per clock; 0 means "at the breach".
DEFAULT_MARKS: Mapping[str, Sequence[float]] = {
    "response": (1800.0, 600.0, 0.0),  # 30 and 10 minutes before the one-hour response, then at it
    "arrival": (1800.0, 0.0),
    "repair": (6 * 3600.0, 0.0),
    "downtime": (1800.0, 0.0),  # half of the hour the system may be stopped, then at it
}


@dataclass(frozen=True, slots=True)
class Escalation:
    ticket_id: int
    device_id: str
    fault: str
    clock: str
    mark_s: float  # how long before due this mark is; 0 = breached
    due: datetime
    at: datetime  # when the mark was reached

    @property
    def key(self) -> tuple[int, str, float]:
        return (self.ticket_id, self.clock, self.mark_s)

    def describe(self) -> str:
        when = "breached" if self.mark_s == 0 else f"due in {timedelta(seconds=self.mark_s)}"
        what = f"ticket {self.ticket_id} ({self.device_id} {self.fault})"
        return f"{what}: {self.clock} {when}, due {self.due:%Y-%m-%d %H:%M}Z"


def due_escalations(
    tickets: Iterable[Ticket],
    now: datetime,
    marks: Mapping[str, Sequence[float]] = DEFAULT_MARKS,
    sent: set[tuple[int, str, float]] | frozenset[tuple[int, str, float]] = frozenset(),
    policy: ServicePolicy = PROMISE,
) -> list[Escalation]:
    """Marks reached by running clocks of open tickets that were not sent yet.
    Provisional repair clocks (engineer not yet on site) are not escalated: the arrival
    clock speaks for that time."""
    out = []
    for t in tickets:
        if t.id is None or t.state in (TicketState.RESOLVED, TicketState.CLOSED):
            continue
        for c in t.clocks(now, policy):
            if c.stopped_at is not None or c.provisional or c.state is ClockState.NOT_NEEDED:
                continue
            for mark in marks.get(c.name, ()):
                reached = c.due - timedelta(seconds=mark)
                if now >= reached and (t.id, c.name, mark) not in sent:
                    out.append(Escalation(t.id, t.device_id, t.fault, c.name, mark, c.due, reached))
    return sorted(out, key=lambda e: (e.at, e.ticket_id))
