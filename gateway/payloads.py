"""What the gateway says about tickets and faults to scripts and to the service centre.

The same JSON serves `alarmgw tickets list --json` and the uplink; its JSON Schemas are in
docs/schemas/. Every event carries an `event_id` that is stable across re-deliveries, so
consumers of the at-least-once uplink can drop duplicates.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from alarmgw.clock import iso
from alarmgw.diagnostics.engine import FaultChange, FaultRaised
from alarmgw.diagnostics.tickets import Ticket
from alarmgw.model import Reading

TICKET_EVENT_SCHEMA = "alarmgw/ticket-event/1"
FAULT_EVENT_SCHEMA = "alarmgw/fault-event/1"
TELEMETRY_SCHEMA = "alarmgw/telemetry/1"


def ticket_json(t: Ticket, now: datetime) -> dict[str, object]:
    """A ticket for scripts: every stamp and clock due time in ISO 8601 UTC."""
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
        "version": t.version,
    }


def ticket_event(t: Ticket, action: str, at: datetime) -> dict[str, object]:
    """One change of one ticket; (site, id, version) identifies it."""
    return {
        "schema": TICKET_EVENT_SCHEMA,
        "event_id": f"{t.site_id}:ticket:{t.id}:{t.version}",
        "site": t.site_id,
        "action": action,
        "at": iso(at),
        "ticket": ticket_json(t, at),
    }


def fault_event(site_id: str, change: FaultChange, codes: Mapping[str, object]) -> dict[str, object]:
    raised = isinstance(change, FaultRaised)
    at = change.detected_at if isinstance(change, FaultRaised) else change.at
    state = "raised" if raised else "cleared"
    return {
        "schema": FAULT_EVENT_SCHEMA,
        "event_id": f"{site_id}:fault:{change.device_id}:{change.fault}:{state}:{iso(at)}",
        "site": site_id,
        "device": change.device_id,
        "fault": change.fault,
        "state": state,
        "at": iso(at),
        **codes,
    }


def telemetry(site_id: str, reading: Reading) -> dict[str, object]:
    return {
        "schema": TELEMETRY_SCHEMA,
        "site": site_id,
        "device": reading.device_id,
        "at": iso(reading.at),
        "values": dict(reading.values),
    }
