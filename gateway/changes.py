"""The one stream of changes a site core publishes, as typed events. Home Assistant states,
InfluxDB, metrics, the uplink's wake-up and the live view all take what they need from it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from alarmgw.diagnostics.engine import FaultCleared, FaultRaised
from alarmgw.diagnostics.escalation import Escalation
from alarmgw.diagnostics.tickets import Ticket
from alarmgw.model import Device, Reading


@dataclass(frozen=True, slots=True)
class ReadingsTaken:
    """A poll's worth of readings, after diagnostics have seen them."""

    readings: Sequence[Reading]


@dataclass(frozen=True, slots=True)
class TicketEvent:
    """A ticket was stored: opened, or changed by the gateway or a person."""

    action: str  # opened | recurred | restored | casualty | acknowledged | dispatched | ...
    ticket: Ticket
    at: datetime


@dataclass(frozen=True, slots=True)
class TelemetryDue:
    """The periodic moment to report every device's state."""

    at: datetime


@dataclass(frozen=True, slots=True)
class DevicesJoined:
    """Devices the site file does not name joined while running (paired on a bridge)."""

    devices: Sequence[Device]


@dataclass(frozen=True, slots=True)
class VisitEnded:
    """A maintenance visit ended (finished, expired, or finished from the command line)."""

    visit_id: int
    at: datetime


Change = (
    ReadingsTaken | FaultRaised | FaultCleared | TicketEvent | Escalation | TelemetryDue | DevicesJoined | VisitEnded
)
