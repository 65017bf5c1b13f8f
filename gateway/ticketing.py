"""From fault changes to tickets in the store: one ticket per (device, fault) episode."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

from alarmgw.diagnostics.diagnosis import Causes, diagnose, load_causes
from alarmgw.diagnostics.engine import FaultChange, FaultCleared, FaultRaised
from alarmgw.diagnostics.rules import FaultTable
from alarmgw.diagnostics.sla import PROMISE, ServicePolicy, in_warranty
from alarmgw.diagnostics.tickets import Ticket, TicketState, impact_of
from alarmgw.model import Device

from .config import SiteInfo
from .store import Store

log = logging.getLogger(__name__)


class TicketDesk:
    """Opens, updates and restores tickets as faults come and go."""

    def __init__(
        self,
        store: Store,
        site: SiteInfo,
        devices: Mapping[str, Device],
        table: FaultTable,
        policy: ServicePolicy = PROMISE,
        causes: Causes | None = None,
    ) -> None:
        self.store = store
        self.site = site
        self.devices = devices
        self.table = table
        self.policy = policy
        self.causes = causes or load_causes()

    def apply(self, change: FaultChange) -> Ticket | None:
        """Record one fault change; returns the ticket it created or changed, if any."""
        if isinstance(change, FaultCleared):
            return self._restore(change)
        return self._raise(change)

    def _raise(self, fault: FaultRaised) -> Ticket | None:
        if fault.root_id is not None and fault.root_fault is not None:
            root = self.store.live_ticket(fault.root_id, fault.root_fault)
            if root is not None:
                updated = root.with_casualty(fault.device_id)
                if updated is not root:
                    self.store.update(
                        updated, "casualty", fault.raised_at, note=f"{fault.device_id} lost behind {fault.root_id}"
                    )
                return updated
        live = self.store.live_ticket(fault.device_id, fault.fault)
        if live is not None:
            if live.fault_active:
                return None  # already known, e.g. raised again after a restart
            return self.store.update(
                live.recurred(), "recurred", fault.raised_at, note="fault came back before the ticket was closed"
            )
        return self.store.insert(self._new_ticket(fault))

    def _new_ticket(self, fault: FaultRaised) -> Ticket:
        device = self.devices[fault.device_id]
        rule = self.table.faults[fault.fault]
        codes = rule.codes_for(device.kind)
        commissioned = device.commissioned_on or self.site.commissioned_on
        history = [*self.store.history_of(device.id), (fault.raised_at, fault.evidence)]
        parent = self.store.live_ticket(device.parent, "comm_loss") if device.parent else None
        found = diagnose(self.causes, fault.fault, history, parent_lost=parent is not None and parent.fault_active)
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

    def _restore(self, cleared: FaultCleared) -> Ticket | None:
        live = self.store.live_ticket(cleared.device_id, cleared.fault)
        if live is None or not live.fault_active:
            return None
        return self.store.update(live.restored(cleared.at), "restored", cleared.at, note="fault condition gone")

    def move(self, ticket_id: int, to: TicketState, at: datetime, *, actor: str, note: str = "") -> Ticket:
        return move_ticket(self.store, ticket_id, to, at, actor=actor, note=note)


def move_ticket(store: Store, ticket_id: int, to: TicketState, at: datetime, *, actor: str, note: str = "") -> Ticket:
    """A person moves a ticket along its lifecycle; raises IllegalTransition."""
    moved = store.get(ticket_id).moved(to, at)
    return store.update(moved, to.value, at, actor=actor, note=note)


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
