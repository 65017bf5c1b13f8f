"""From fault changes to tickets: one ticket per (device, fault) episode."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from alarmgw.diagnostics.diagnosis import MAX_SAMPLES, Causes, diagnose, load_causes
from alarmgw.diagnostics.engine import FaultChange, FaultCleared, FaultRaised
from alarmgw.diagnostics.rules import FaultTable
from alarmgw.diagnostics.sla import PROMISE, ServicePolicy, in_warranty
from alarmgw.diagnostics.tickets import Ticket, impact_of
from alarmgw.model import Device

from .config import SiteInfo
from .store.records import History
from .store.tickets import Tickets


@dataclass(frozen=True, slots=True)
class TicketChange:
    """What a fault change does to a ticket, before it is written: the ticket as it should
    be stored (id None for a new one), the action for its log, when, and why."""

    action: str  # opened | recurred | restored | casualty
    ticket: Ticket
    at: datetime
    note: str = ""


class TicketDesk:
    """Decides what each fault change does to the tickets: opens one, updates one, or nothing.
    It reads the store and writes nothing; the caller writes the change with the fault event
    in one transaction."""

    def __init__(
        self,
        tickets: Tickets,
        history: History,
        site: SiteInfo,
        devices: Mapping[str, Device],
        table: FaultTable,
        policy: ServicePolicy = PROMISE,
        causes: Causes | None = None,
    ) -> None:
        self.tickets = tickets
        self.history = history
        self.site = site
        self.devices = devices
        self.table = table
        self.policy = policy
        self.causes = causes or load_causes()

    def apply(self, change: FaultChange) -> TicketChange | None:
        """What recording this fault change does to the tickets, if anything."""
        if isinstance(change, FaultCleared):
            return self._restore(change)
        return self._raise(change)

    def _raise(self, fault: FaultRaised) -> TicketChange | None:
        if fault.root_id is not None and fault.root_fault is not None:
            root = self.tickets.live(fault.root_id, fault.root_fault)
            if root is not None:
                updated = root.with_casualty(fault.device_id)
                if updated is root:
                    return None
                return TicketChange(
                    "casualty", updated, fault.raised_at, f"{fault.device_id} lost behind {fault.root_id}"
                )
        live = self.tickets.live(fault.device_id, fault.fault)
        if live is not None:
            if live.fault_active:
                return None  # already known, e.g. raised again after a restart
            return TicketChange(
                "recurred", live.recurred(), fault.raised_at, "fault came back before the ticket was closed"
            )
        ticket = self._new_ticket(fault)
        return TicketChange("opened", ticket, fault.raised_at, ticket.title)

    def _new_ticket(self, fault: FaultRaised) -> Ticket:
        device = self.devices[fault.device_id]
        rule = self.table.faults[fault.fault]
        codes = rule.codes_for(device.kind)
        commissioned = device.commissioned_on or self.site.commissioned_on
        # Enough history for a trend: MAX_SAMPLES is weeks at the default sampling interval.
        history = [*self.history.of(device.id, limit=MAX_SAMPLES), (fault.raised_at, fault.evidence)]
        parent = self.tickets.live(device.parent, "comm_loss") if device.parent else None
        found = diagnose(
            self.causes,
            fault.fault,
            history,
            parent_lost=parent is not None and parent.fault_active,
            device_kind=device.kind.value,
        )
        return Ticket(
            id=None,
            site_id=self.site.id,
            device_id=device.id,
            device_kind=device.kind.value,
            fault=fault.fault,
            title=rule.title,
            location=device.location,
            area=self.site.area,
            repair_class=found.repair,  # the part the fix needs sets the repair clock
            impact=impact_of(fault.fault, device.kind.value, len(fault.affected)),
            opened_at=fault.detected_at,
            raised_at=fault.raised_at,
            contact_id=codes.contact_id,
            sia=codes.sia,
            affected=fault.affected,
            evidence=_evidence(fault),
            cause=found.cause,
            diagnosis=found.as_dict(),
            in_warranty=in_warranty(commissioned, fault.detected_at.date(), self.policy),
        )

    def _restore(self, cleared: FaultCleared) -> TicketChange | None:
        live = self.tickets.live(cleared.device_id, cleared.fault)
        if live is None or not live.fault_active:
            return None
        return TicketChange("restored", live.restored(cleared.at), cleared.at, "fault condition gone")


def _evidence(fault: FaultRaised) -> dict[str, float | int | bool]:
    """The readings that matter to a person, not the whole slot."""
    keep = (
        "battery_v",
        "battery_pct",
        "link_quality",
        "bus_error_rate",
        "battery_low",
        "rssi_dbm",
        "link_age_s",
        "link_lost",
        "tamper",
        "mains_fail",
        "jamming",
        "sensor_fault",
        "fire_trouble",
        "contamination_pct",
        "battery_missing",
    )
    return {k: v for k, v in fault.evidence.items() if k in keep}
