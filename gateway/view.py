"""What the faces of a gateway (remote desk, HTTP API, metrics, dashboard, live view) may see
of its site core: a small typed Protocol, so that no face needs the core's class, and the
core needs none of theirs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from alarmgw.clock import Clock
from alarmgw.diagnostics.rules import FaultTable
from alarmgw.diagnostics.tickets import Ticket, TicketState
from alarmgw.model import Device, Reading

from .bus import Bus
from .changes import Change
from .maintenance import Visit
from .polling import Link
from .scheduler import PollJob
from .site_file import LoadedSite
from .store import Store
from .store.visits import VisitRow


class SiteView(Protocol):
    @property
    def site(self) -> LoadedSite: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def store(self) -> Store: ...

    @property
    def devices(self) -> Mapping[str, Device]: ...

    @property
    def visit(self) -> Visit: ...

    @property
    def table(self) -> FaultTable: ...

    @property
    def latest(self) -> Mapping[str, Reading]: ...

    @property
    def changes(self) -> Bus[Change]: ...

    @property
    def jobs(self) -> Sequence[PollJob]: ...

    @property
    def links(self) -> Sequence[Link]: ...

    def stats(self) -> dict[str, int]:
        """Counters since start."""
        ...

    def active_faults(self) -> dict[str, list[str]]:
        """Device -> the faults raised on it now."""
        ...

    async def poll_now(self, device_id: str) -> dict[str, Any]:
        """Poll the device's group at once; raises NotFound or Invalid."""
        ...

    async def self_test(self, device_id: str) -> dict[str, Any]:
        """Run the device's self-test and read the result; raises NotFound or Invalid."""
        ...

    def move(
        self, ticket_id: int, to: TicketState, *, actor: str, note: str = "", made_at: datetime | None = None
    ) -> Ticket:
        """A person moves a ticket; raises NotFound, Conflict or Unavailable."""
        ...

    def set_user_action(self, ticket_id: int, text: str, *, actor: str) -> Ticket:
        """Record what the customer did about the failure; raises NotFound or Unavailable."""
        ...

    def start_visit(self, by: str, hours: float) -> VisitRow:
        """Put the site into maintenance; raises Invalid, Conflict or Unavailable."""
        ...

    def finish_visit(self, by: str, *, ended: str = "finished") -> VisitRow:
        """Close the running visit with its report; raises Conflict or Unavailable."""
        ...

    def visit_report(self, visit_id: int) -> VisitRow:
        """A visit and its report; raises NotFound."""
        ...

    def out_of_service(self, ticket_id: int, out: bool, *, actor: str) -> Ticket:
        """Take the ticket's device out of service or put it back; raises NotFound, Conflict
        or Unavailable."""
        ...
