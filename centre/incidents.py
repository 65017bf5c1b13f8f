"""Incidents across sites: one line for a storm of the same fault in one area.

A regional power cut makes hundreds of sites report `mains_loss` within minutes. Tickets
of the same fault kind, from sites of the same area, opened within `window_s` of the
first of them, make one incident when they come from at least `min_sites` sites; the rest
stay single tickets. Each site keeps its own ticket and clocks: an incident only groups
what a desk shows.

The window runs from the incident's first ticket, not from its latest one: an incident
spans at most `window_s`, and a ticket just outside starts the next group. A sliding
window would chain the steady trickle of everyday faults in a big area (a low battery
every few minutes) into one incident that never ends.

Pure: sorting, then one pass, O(n log n).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from alarmgw.clock import iso
from alarmgw.diagnostics.tickets import TicketState

# A ticket still being worked on; resolved and closed ones still count to their incident.
STILL_OPEN = frozenset(set(TicketState) - {TicketState.RESOLVED, TicketState.CLOSED})


def _not_bool(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError(f"a number is needed, not {str(value).lower()}")
    return value


class IncidentRules(BaseModel):
    """When tickets of many sites are one incident."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    window_s: Annotated[float, BeforeValidator(_not_bool), Field(ge=1, le=86_400)] = 600.0
    min_sites: Annotated[int, BeforeValidator(_not_bool), Field(ge=2, le=1_000_000)] = 3
    faults: frozenset[str] | None = None  # only these fault kinds are grouped; None: all


DEFAULT_RULES = IncidentRules()


@dataclass(frozen=True, slots=True)
class TicketSummary:
    """What grouping needs of one site's ticket."""

    site_id: str
    ticket_id: int
    area: str  # the site's area ("suburb-north"); empty: never grouped
    fault: str
    opened_at: datetime  # aware (UTC), as tickets are stamped
    state: TicketState

    @property
    def key(self) -> tuple[str, int]:
        return (self.site_id, self.ticket_id)


@dataclass(frozen=True, slots=True)
class Incident:
    fault: str
    area: str
    first_opened: datetime
    last_opened: datetime
    sites: int  # distinct sites; a site may have two tickets in one incident
    still_open: int  # tickets neither resolved nor closed
    tickets: tuple[tuple[str, int], ...]  # (site, ticket), in order of opening

    @property
    def id(self) -> str:
        """Stable for the same first ticket: fault, area and when it began."""
        return f"{self.fault}:{self.area}:{iso(self.first_opened)}"

    def describe(self) -> str:
        return f"{self.fault.replace('_', ' ')}, {self.area}, {self.sites} sites, {self.still_open} open"


@dataclass(frozen=True, slots=True)
class Grouping:
    incidents: tuple[Incident, ...]  # by first opened
    singles: tuple[TicketSummary, ...]  # tickets in no incident, by opening


def group_incidents(tickets: Iterable[TicketSummary], rules: IncidentRules = DEFAULT_RULES) -> Grouping:
    """Tickets grouped into incidents by fault, area and window; the others left single."""
    window = timedelta(seconds=rules.window_s)
    incidents: list[Incident] = []
    singles: list[TicketSummary] = []
    run: list[TicketSummary] = []

    def close() -> None:
        if len({t.site_id for t in run}) >= rules.min_sites:
            incidents.append(_incident(run))
        else:
            singles.extend(run)

    ordered = sorted(tickets, key=lambda t: (t.fault, t.area, t.opened_at, t.site_id, t.ticket_id))
    for t in ordered:
        if not t.area or (rules.faults is not None and t.fault not in rules.faults):
            singles.append(t)
            continue
        head = run[0] if run else None
        if (
            head is not None
            and head.fault == t.fault
            and head.area == t.area
            and t.opened_at - head.opened_at <= window
        ):
            run.append(t)
            continue
        if run:
            close()
        run = [t]
    if run:
        close()
    incidents.sort(key=lambda i: (i.first_opened, i.fault, i.area))
    singles.sort(key=lambda t: (t.opened_at, t.site_id, t.ticket_id))
    return Grouping(tuple(incidents), tuple(singles))


def _incident(run: list[TicketSummary]) -> Incident:
    return Incident(
        fault=run[0].fault,
        area=run[0].area,
        first_opened=run[0].opened_at,
        last_opened=run[-1].opened_at,
        sites=len({t.site_id for t in run}),
        still_open=sum(1 for t in run if t.state in STILL_OPEN),
        tickets=tuple(t.key for t in run),
    )
