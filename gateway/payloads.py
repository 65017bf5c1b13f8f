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
from alarmgw.diagnostics.tickets import Ticket, ticket_json
from alarmgw.model import Reading

TICKET_EVENT_SCHEMA = "alarmgw/ticket-event/1"
FAULT_EVENT_SCHEMA = "alarmgw/fault-event/1"
TELEMETRY_SCHEMA = "alarmgw/telemetry/1"


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
