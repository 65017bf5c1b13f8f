"""Downtime while a component is repaired or replaced: the promise says the system stops for
less than one hour.

A ticket's device is watched while the engineer is on site (and for as long as a downtime
it started runs): when it has not been heard for its window, the ticket's downtime starts at
its last reading (or at the engineer's arrival, for a device already silent then); the first
reading after that ends it. An engineer may also take the device out of service by hand;
then readings end nothing until they put it back in service.

`heard_at` is pure; `DowntimeWatch` keeps, for the few devices being watched, when each was
last heard, and writes each start and end as a new version of the ticket.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta

from alarmgw.clock import iso
from alarmgw.diagnostics.tickets import Ticket
from alarmgw.model import Reading

from .store import Store

log = logging.getLogger(__name__)

# Values that say the device was not heard, whatever else the reading carries.
NOT_HEARD = ("link_lost", "unmonitored", "slot_refused")


def heard_at(r: Reading) -> datetime | None:
    """When the device itself was last heard, by this reading: its time, less the age of
    the host's last radio contact with it; None when the reading says it is not heard."""
    v = r.values
    if not v or any(v.get(k) is True for k in NOT_HEARD) or v.get("present") is False:
        return None
    age = v.get("link_age_s")
    if isinstance(age, (int, float)) and not isinstance(age, bool) and age > 0:
        return r.at - timedelta(seconds=float(age))
    return r.at


class DowntimeWatch:
    """`gone_s(device)`: how long a device may go unheard before it counts as gone.
    `write(ticket, action, at, note)` stores a new version of a ticket, publishes it and
    returns it as stored (None if the store could not take it: the next look tries again)."""

    def __init__(
        self,
        store: Store,
        gone_s: Callable[[str], float],
        write: Callable[[Ticket, str, datetime, str], Ticket | None],
    ) -> None:
        self._store = store
        self._gone_s = gone_s
        self._write = write
        self._tickets: dict[str, Ticket] = {}  # device -> its ticket being watched
        self._heard: dict[str, datetime] = {}  # device -> last heard, for watched devices only
        # device -> when it was put back in service: only a reading heard after it ends the downtime
        self._back_in: dict[str, datetime] = {}

    def watched(self) -> Mapping[str, Ticket]:
        return self._tickets

    def heard(self, readings: Sequence[Reading]) -> None:
        """Readings arrived: note when each watched device was heard; one that is back ends
        its ticket's downtime."""
        tickets = self._tickets
        for r in readings:
            t = tickets.get(r.device_id)
            if t is None:
                continue
            at = heard_at(r)
            if at is None:
                continue
            if at > self._heard.get(r.device_id, at - timedelta(seconds=1)):
                self._heard[r.device_id] = at
            after = self._back_in.get(r.device_id, t.down_since)
            if t.down and not t.out_of_service and after is not None and at > after:
                self._keep(self._write(t.came_back(at), "back", at, f"{t.device_id} heard again at {iso(at)}"))

    def look(self, now: datetime, latest: Mapping[str, Reading]) -> None:
        """Take up the tickets to watch from the store, and start the downtime of each whose
        device has been gone longer than its window."""
        # One ticket per device carries its downtime: one whose downtime runs, else the newest.
        found = {t.device_id: t for t in sorted(self._store.tickets.watched_for_downtime(), key=_running_last)}
        for device, t in found.items():
            if device not in self._heard:
                reading = latest.get(device)
                seen = heard_at(reading) if reading is not None else None
                since = t.on_site_at or t.opened_at
                self._heard[device] = max(seen, since) if seen is not None else since
        for device, t in found.items():
            was = self._tickets.get(device)
            if was is not None and was.id == t.id and was.out_of_service and not t.out_of_service:
                self._back_in[device] = now
        for device in set(self._heard) - set(found):
            del self._heard[device]
            self._back_in.pop(device, None)
        self._tickets = found
        for device, t in found.items():
            if t.down or t.on_site_at is None:
                continue
            since = max(self._heard[device], t.on_site_at)
            if (now - since).total_seconds() > self._gone_s(device):
                self._keep(self._write(t.went_down(since), "down", now, f"{device} not heard since {iso(since)}"))

    def _keep(self, stored: Ticket | None) -> None:
        if stored is not None:
            self._tickets[stored.device_id] = stored

    def last_heard(self, device_id: str, now: datetime) -> datetime:
        """When the device was last heard, if it is watched and gone; else now."""
        at = self._heard.get(device_id)
        if at is None or (now - at).total_seconds() <= self._gone_s(device_id):
            return now
        return at


def _running_last(t: Ticket) -> tuple[bool, int]:
    return (t.down, t.id or 0)
