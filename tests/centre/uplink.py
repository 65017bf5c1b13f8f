"""Uplink messages exactly as a gateway publishes them, made by the gateway's own code
(gateway/messages.py), so the centre is tested against the real shapes."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from alarmgw.diagnostics.engine import FaultCleared, FaultRaised
from alarmgw.diagnostics.escalation import Escalation
from alarmgw.diagnostics.rules import load_fault_table
from alarmgw.diagnostics.tickets import Ticket, TicketState
from alarmgw.gateway.messages import (
    OutboxMessage,
    escalation_messages,
    fault_messages,
    telemetry_messages,
    ticket_messages,
)
from alarmgw.model import DeviceKind, Reading

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
ROOT = "alarmgw"
FAULTS = load_fault_table()


def root(site: str, prefix: str = ROOT) -> str:
    return f"{prefix}/{site}"


def ticket(site: str, ticket_id: int = 1, version: int = 1, *, device: str = "smoke-1") -> Ticket:
    """A low-battery ticket on a smoke detector, moved along so that it has `version`."""
    t = Ticket(
        ticket_id,
        site,
        device,
        "smoke_detector",
        "low_battery",
        "Low battery",
        "hall ceiling",
        "city",
        "accessory",
        "low: advisory, protection still in place",
        T0,
        T0 + timedelta(seconds=10),
        contact_id=384,
        sia=("XT", "XR"),
        evidence={"battery_v": 2.41},
    )
    moves = [TicketState.ACKNOWLEDGED, TicketState.RESOLVED, TicketState.CLOSED]
    for i in range(version - 1):
        if i < len(moves):
            t = t.moved(moves[i], T0 + timedelta(minutes=5 * (i + 1)))
        else:
            t = dataclasses.replace(t, version=t.version + 1)
    return t


def ticket_message(
    site: str, ticket_id: int = 1, version: int = 1, *, device: str = "smoke-1", prefix: str = ROOT
) -> OutboxMessage:
    t = ticket(site, ticket_id, version, device=device)
    action = "opened" if version == 1 else t.state.value
    return ticket_messages(root(site, prefix), t, action, t.last_stamp())[0]


def fault_message(
    site: str, device: str = "smoke-1", *, cleared: bool = False, n: int = 0, prefix: str = ROOT
) -> OutboxMessage:
    at = T0 + timedelta(seconds=n)
    change = FaultCleared(device, "low_battery", at) if cleared else FaultRaised(device, "low_battery", at, at)
    return fault_messages(root(site, prefix), site, [change], FAULTS, {device: DeviceKind.SMOKE_DETECTOR})[0]


def escalation_message(site: str, ticket_id: int = 1, mark_s: float = 600.0, *, prefix: str = ROOT) -> OutboxMessage:
    e = Escalation(ticket_id, "smoke-1", "low_battery", "response", mark_s, T0 + timedelta(hours=1), T0)
    return escalation_messages(root(site, prefix), site, e)[0]


def telemetry_message(site: str, device: str = "smoke-1", n: int = 0, *, prefix: str = ROOT) -> OutboxMessage:
    r = Reading(device, T0 + timedelta(seconds=n), {"battery_v": 2.9, "rssi": -61, "tamper": False})
    return telemetry_messages(root(site, prefix), site, [r])[0]
