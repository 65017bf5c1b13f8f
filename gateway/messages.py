"""What the gateway queues for the service centre: pure functions from a change to the outbox
messages that report it. No I/O; the store writes them in the transaction of the change they
report, and the uplink publishes them.

Topic tree under the topic root (default `alarmgw/<site id>`), payloads in docs/schemas/:
  status                  retained `online` / `offline` (Last Will; the uplink's own)
  tickets/<ticket id>     every change of a ticket, QoS 1
  faults/<device id>      every fault raised and cleared, QoS 1
  escalations/<ticket id> a service clock about to break, or broken, QoS 1
  telemetry/<device id>   periodic device state, QoS 0, first to go when the outbox is full
  state/<device id>       retained device state for Home Assistant, only the newest kept
  assets                  retained asset register and maintenance plan, sent at start
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING

from alarmgw.clock import iso
from alarmgw.diagnostics.assets import Asset
from alarmgw.diagnostics.engine import FaultChange
from alarmgw.diagnostics.escalation import Escalation
from alarmgw.diagnostics.maintenance import Visit
from alarmgw.diagnostics.rules import FaultTable
from alarmgw.diagnostics.tickets import Ticket
from alarmgw.model import DeviceKind, Reading

from .payloads import fault_event, telemetry, ticket_event

if TYPE_CHECKING:
    from .store.visits import VisitRow

ESCALATION_SCHEMA = "alarmgw/escalation/1"
ASSETS_SCHEMA = "alarmgw/assets/1"


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    kind: str  # ticket | fault | escalation | telemetry | discovery
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


def dump(doc: object) -> bytes:
    """Compact, key-sorted JSON: the same change always gives the same bytes."""
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def ticket_messages(root: str, ticket: Ticket, action: str, at: datetime) -> list[OutboxMessage]:
    return [OutboxMessage("ticket", f"{root}/tickets/{ticket.id}", dump(ticket_event(ticket, action, at)))]


def fault_messages(
    root: str, site_id: str, changes: Iterable[FaultChange], table: FaultTable, kinds: dict[str, DeviceKind]
) -> list[OutboxMessage]:
    """One message per fault raised or cleared, with its Contact ID and SIA codes."""
    out = []
    for c in changes:
        rule = table.faults[c.fault]
        codes = rule.codes_for(kinds[c.device_id])
        extra = {"title": rule.title, "contact_id": codes.contact_id, "sia": list(codes.sia) if codes.sia else None}
        out.append(OutboxMessage("fault", f"{root}/faults/{c.device_id}", dump(fault_event(site_id, c, extra))))
    return out


def escalation_messages(root: str, site_id: str, e: Escalation) -> list[OutboxMessage]:
    doc = {
        "schema": ESCALATION_SCHEMA,
        "event_id": f"{site_id}:escalation:{e.ticket_id}:{e.clock}:{e.mark_s:g}",
        "site": site_id,
        "ticket": e.ticket_id,
        "device": e.device_id,
        "fault": e.fault,
        "clock": e.clock,
        "mark_s": e.mark_s,
        "breached": e.mark_s == 0,
        "due": iso(e.due),
        "at": iso(e.at),
    }
    return [OutboxMessage("escalation", f"{root}/escalations/{e.ticket_id}", dump(doc))]


def telemetry_messages(root: str, site_id: str, readings: Iterable[Reading]) -> list[OutboxMessage]:
    return [
        OutboxMessage("telemetry", f"{root}/telemetry/{r.device_id}", dump(telemetry(site_id, r)), qos=0)
        for r in readings
    ]


def state_messages(root: str, states: Sequence[tuple[str, bytes]]) -> list[OutboxMessage]:
    """Retained device states (Home Assistant); a newer one replaces a queued older one."""
    return [OutboxMessage("telemetry", f"{root}/state/{d}", p, qos=0, retain=True) for d, p in states]


def discovery_messages(configs: Iterable[tuple[str, bytes]]) -> list[OutboxMessage]:
    """Retained Home Assistant discovery configs; a newer one replaces a queued older one."""
    return [OutboxMessage("discovery", t, p, qos=1, retain=True) for t, p in configs]


def asset_messages(
    root: str,
    site_id: str,
    at: datetime,
    assets: Sequence[Asset],
    warranty_until: date | None,
    visits: Sequence[Visit],
    done: Sequence[VisitRow] = (),
) -> list[OutboxMessage]:
    """The site's asset register and maintenance plan, retained, so the service centre can
    plan across sites (visits due, warranties ending, devices at their rated life), with the
    visits done (`done`: those recorded at the site, oldest first)."""

    def day(d: date | None) -> str | None:
        return d.isoformat() if d else None

    days = [v.started_at.date() for v in done]

    def done_on(v: Visit) -> str | None:
        return day(next((d for d in days if v.opens <= d <= v.closes), None))

    doc = {
        "schema": ASSETS_SCHEMA,
        "site": site_id,
        "at": iso(at),
        "warranty_until": day(warranty_until),
        "visits": [
            {"n": v.n, "kind": v.kind, "opens": day(v.opens), "closes": day(v.closes), "done_on": done_on(v)}
            for v in visits
        ],
        "visits_done": [
            {
                "visit": v.id,
                "started_at": iso(v.started_at),
                "finished_at": iso(v.finished_at or v.started_at),
                "by": v.started_by,
                "ended": v.ended or "finished",
                **{k: int((v.report or {}).get("counts", {}).get(k, 0)) for k in ("tested", "untested", "failed")},
            }
            for v in done[-50:]
        ],
        "devices": [
            {
                "device": a.device_id,
                "kind": a.kind,
                "commissioned_on": day(a.commissioned_on),
                "warranty_until": day(a.warranty_until),
                "end_of_life": day(a.end_of_life),
            }
            for a in assets
        ],
    }
    return [OutboxMessage("assets", f"{root}/assets", dump(doc), qos=1, retain=True)]
