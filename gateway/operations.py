"""What engineers may ask of a running gateway, whichever way they ask: the MQTT remote desk
and the HTTP API both come here, so one table of commands (name -> least role, handler,
whether it only reads), one set of handlers and one append-only audit log serve both.
Nothing received is ever executed as code or shell; a command name only picks a row of
`COMMANDS`.

Every authenticated request that changes something (and, over MQTT, every read) gets an audit
row. A request not proven to come from whom it names gets a row only as the first of its
kind in a minute; the rest are counted per minute (`refused_unverified`), so junk from
anyone cannot grow the audit log without bound.

A request the gateway will not run raises a `Refused` of its kind (forbidden, not found,
conflict, invalid, unavailable), audited as `refused`. Anything else is a bug: logged with
its traceback, audited as `failed`, and answered as `Failed`, so the requester still gets an
answer and the gateway goes on.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from alarmgw.clock import iso, parse_iso
from alarmgw.diagnostics.assets import asset
from alarmgw.diagnostics.tickets import MOVES, Ticket, moves_from, ticket_json
from alarmgw.model import Device

from .credentials import RANK, Role
from .refusals import Forbidden, Invalid, NotFound, Refused, Unavailable
from .store import MAX_ID, StoreError, TicketNotFound
from .view import SiteView

log = logging.getLogger(__name__)

Handler = Callable[["Operations", dict[str, Any], str], Awaitable[Any]]
# Channels that audit successful reads too: a dashboard reads over HTTP every few seconds,
# and the audit log is append-only; requests over MQTT are rare and each is worth a line.
AUDIT_READS = {"mqtt": True, "http": False}


class Failed(Refused):
    """The gateway's own fault while serving a request (logged with its traceback)."""

    why = "failed"


@dataclass(frozen=True, slots=True)
class Command:
    role: Role  # the least role that may run it
    run: Handler
    reads_only: bool


async def _status(ops: Operations, args: dict[str, Any], user: str) -> Any:
    v = ops.view
    return {
        "site": v.site.config.site.id,
        "name": v.site.config.site.name,
        "at": iso(v.clock.now()),
        "devices": len(v.devices),
        "active_faults": sum(len(f) for f in v.active_faults().values()),
        "open_tickets": len(v.store.tickets.all(include_closed=False)),
        "stats": v.stats(),
    }


async def _devices(ops: Operations, args: dict[str, Any], user: str) -> Any:
    active = ops.view.active_faults()
    return [ops.device_summary(d, active) for d in ops.view.devices]


async def _device(ops: Operations, args: dict[str, Any], user: str) -> Any:
    device_id = _device_arg(ops, args)
    history = ops.view.store.history.of(device_id, 50)
    return {**ops.device_summary(device_id), "history": [{"at": iso(at), "values": v} for at, v in history]}


async def _faults(ops: Operations, args: dict[str, Any], user: str) -> Any:
    return ops.faults()


async def _tickets(ops: Operations, args: dict[str, Any], user: str) -> Any:
    return [ops.ticket(t) for t in ops.view.store.tickets.all(include_closed=bool(args.get("all")))]


async def _ticket(ops: Operations, args: dict[str, Any], user: str) -> Any:
    try:
        return ops.ticket(ops.view.store.tickets.get(_int_arg(args, "id")))
    except TicketNotFound as exc:
        raise NotFound(str(exc)) from exc


async def _poll(ops: Operations, args: dict[str, Any], user: str) -> Any:
    return {"polled": await ops.view.poll_now(_arg(args, "id"))}


async def _selftest(ops: Operations, args: dict[str, Any], user: str) -> Any:
    polled = await ops.view.self_test(_arg(args, "id"))
    values = polled["values"] if isinstance(polled["values"], dict) else {}
    return {
        "device": polled["device"],
        "passed": not values.get("sensor_fault", False),
        "self_test_age_s": values.get("self_test_age_s"),
        "at": polled["at"],
    }


def _move(name: str) -> Handler:
    to = MOVES[name]

    async def move(ops: Operations, args: dict[str, Any], user: str) -> Any:
        note = str(args.get("note", ""))[:500]
        made_at = _time_arg(args, "made_at") if "made_at" in args else None
        return ops.ticket(ops.view.move(_int_arg(args, "id"), to, actor=user, note=note, made_at=made_at))

    return move


async def _user_action(ops: Operations, args: dict[str, Any], user: str) -> Any:
    text = _arg(args, "text").strip()
    if not text:
        raise Invalid("text: say what the customer did (it may not be empty)")
    return ops.ticket(ops.view.set_user_action(_int_arg(args, "id"), text, actor=user))


def _service(out: bool) -> Handler:
    async def mark(ops: Operations, args: dict[str, Any], user: str) -> Any:
        return ops.ticket(ops.view.out_of_service(_int_arg(args, "id"), out, actor=user))

    return mark


async def _maintenance(ops: Operations, args: dict[str, Any], user: str) -> Any:
    done = ops.view.store.visits.done()[-20:]
    return {"running": ops.view.visit.status(), "done": [v.head(ops.view.site.config.site.id) for v in done]}


async def _maintenance_start(ops: Operations, args: dict[str, Any], user: str) -> Any:
    hours = args.get("hours", ops.view.site.config.maintenance.max_hours)
    if not isinstance(hours, (int, float)) or isinstance(hours, bool):
        raise Invalid(f"hours: a number, not {str(hours)[:40]!r}")
    row = ops.view.start_visit(user, float(hours))
    return row.head(ops.view.site.config.site.id)


async def _maintenance_finish(ops: Operations, args: dict[str, Any], user: str) -> Any:
    return ops.view.finish_visit(user).report


async def _visit(ops: Operations, args: dict[str, Any], user: str) -> Any:
    row = ops.view.visit_report(_int_arg(args, "id"))
    return row.report or {**row.head(ops.view.site.config.site.id), "running": True}


# The allow-list. Nothing else is ever run.
COMMANDS: dict[str, Command] = {
    "status": Command("viewer", _status, reads_only=True),
    "devices": Command("viewer", _devices, reads_only=True),
    "faults": Command("viewer", _faults, reads_only=True),
    "device": Command("viewer", _device, reads_only=True),
    "tickets": Command("viewer", _tickets, reads_only=True),
    "ticket": Command("viewer", _ticket, reads_only=True),
    "poll": Command("engineer", _poll, reads_only=False),
    "selftest": Command("engineer", _selftest, reads_only=False),
    **{name: Command("engineer", _move(name), reads_only=False) for name in MOVES},
    "user_action": Command("engineer", _user_action, reads_only=False),
    "maintenance": Command("viewer", _maintenance, reads_only=True),
    "visit": Command("viewer", _visit, reads_only=True),
    "maintenance_start": Command("engineer", _maintenance_start, reads_only=False),
    "maintenance_finish": Command("engineer", _maintenance_finish, reads_only=False),
    "out_of_service": Command("engineer", _service(True), reads_only=False),
    "in_service": Command("engineer", _service(False), reads_only=False),
}


def authorise(user: str, role: Role, command: object) -> Command:
    """The command, if it is on the allow-list and `role` may run it; else Forbidden."""
    found = COMMANDS.get(command) if isinstance(command, str) else None
    if found is None:
        raise Forbidden(f"unknown command {str(command)[:40]!r}; allowed: {', '.join(COMMANDS)}")
    if RANK[role] < RANK[found.role]:
        raise Forbidden(f"{user} ({role}) may not {command}; it needs the {found.role} role")
    return found


class RefusalTally:
    """Refusals counted in memory per (minute, channel, kind) until they are written, and
    which (channel, kind) pairs have had their first refusal in the current minute. Kinds
    and channels are the gateway's own words, so both stay a handful of entries."""

    def __init__(self) -> None:
        self._minute: datetime | None = None
        self._seen: set[tuple[str, str]] = set()
        self._counts: dict[tuple[datetime, str, str], int] = {}

    def note(self, at: datetime, channel: str, kind: str) -> tuple[bool, bool]:
        """Count one refusal: (whether it is the first of its kind this minute, whether
        counts of an earlier minute are waiting to be written)."""
        minute = at.replace(second=0, microsecond=0)
        rolled_over = False
        if minute != self._minute:
            self._minute = minute
            self._seen.clear()
            rolled_over = bool(self._counts)
        key = (minute, channel, kind)
        self._counts[key] = self._counts.get(key, 0) + 1
        first = (channel, kind) not in self._seen
        self._seen.add((channel, kind))
        return first, rolled_over

    def take(self) -> dict[tuple[datetime, str, str], int]:
        """The counts so far, which are then forgotten here."""
        counts, self._counts = self._counts, {}
        return counts


class Operations:
    def __init__(self, view: SiteView) -> None:
        self.view = view
        self._tally = RefusalTally()
        self._assets = {a.device_id: a for a in view.site.config.asset_register()}

    async def perform(self, user: str, role: Role, command: str, args: dict[str, Any], channel: str) -> Any:
        """Authorise, run and audit one request. Raises a `Refused` (audited too) for
        anything it will not or could not do; never anything else."""
        try:
            found = authorise(user, role, command)
            result = await found.run(self, args, user)
        except Refused as exc:
            self.refused(user, command, args, str(exc), channel)
            raise
        except (StoreError, sqlite3.OperationalError) as exc:
            message = f"the gateway's store is busy ({exc}); try again"
            self.refused(user, command, args, message, channel)
            raise Unavailable(message) from exc
        except Exception as exc:
            # A request must never take the gateway down with it, whatever it asked for.
            log.exception("%s request %s from %s failed", channel, command, user)
            message = f"internal error: {type(exc).__name__}"
            self._audit(user, command, args, "failed", message, channel)
            raise Failed(message) from exc
        if not found.reads_only or AUDIT_READS.get(channel, True):
            self._audit(user, command, args, "done", "", channel)
        return result

    def refused(self, user: str, command: str, args: dict[str, Any], message: str, channel: str) -> None:
        """Audit the refusal of an authenticated request (every one gets its row)."""
        self._audit(user, command, args, "refused", message, channel)
        log.warning("%s request %s from %s refused: %s", channel, command, user, message)

    def refused_unverified(
        self, claimed_user: str, claimed_command: str, kind: str, message: str, channel: str
    ) -> None:
        """Audit the refusal of a request not proven to come from whom it names. Anyone can
        send those, as fast as they like: the first of each kind per channel and minute gets
        a row (its user marked unverified) and a log line; the rest are only counted."""
        now = self.view.clock.now()
        first, rolled_over = self._tally.note(now, channel, kind)
        if rolled_over:
            self.flush_refusals()
        if first:
            detail = f"[{kind}] {message}"
            self._audit(claimed_user, claimed_command, {}, "refused", detail, channel, verified=False)
            log.warning(
                "%s request %s from %s (unverified) refused: %s; more %s refusals this minute are only counted",
                channel,
                claimed_command,
                claimed_user,
                message,
                kind,
            )

    def flush_refusals(self) -> None:
        """Add the refusals counted in memory to the store's per-minute counts."""
        counts = self._tally.take()
        try:
            self.view.store.audit.count_refusals(counts)
        except (StoreError, sqlite3.Error) as exc:
            log.error("audit log: lost the counts of %d refusals: %s", sum(counts.values()), exc)

    def _audit(
        self,
        user: str,
        command: str,
        args: dict[str, Any],
        result: str,
        detail: str,
        channel: str,
        *,
        verified: bool = True,
    ) -> None:
        """Append to the audit log; a store that cannot take the line is logged, and the
        requester still gets the answer (a move is in the ticket's own log anyway)."""
        try:
            now = self.view.clock.now()
            self.view.store.audit.append(now, user, command, args, result, detail, channel, verified=verified)
        except (StoreError, sqlite3.Error) as exc:
            log.error("audit log: could not record %s %s by %s (%s): %s", channel, command, user, result, exc)

    # --- shapes shared by the handlers ------------------------------------------------------

    def ticket(self, t: Ticket) -> dict[str, Any]:
        """A ticket as the uplink carries it, plus the moves it may make now."""
        return {**ticket_json(t, self.view.clock.now()), "actions": moves_from(t.state)}

    def faults(self) -> list[dict[str, Any]]:
        """Every active fault, with its device and the ticket that carries it."""
        v = self.view
        open_tickets = v.store.tickets.all(include_closed=False)  # one read serves every fault
        live = {(t.device_id, t.fault): t for t in open_tickets}
        behind = {c: t for t in open_tickets for c in t.casualties}
        out = []
        for dev_id, faults in sorted(v.active_faults().items()):
            d = v.devices.get(dev_id)
            for fault in sorted(faults):
                rule = v.table.faults.get(fault)
                t = live.get((dev_id, fault))
                root = behind.get(dev_id) if t is None else None
                out.append(
                    {
                        "device": dev_id,
                        "fault": fault,
                        "title": rule.title if rule else fault,
                        "kind": d.kind.value if d else None,
                        "location": d.location if d else "",
                        "since": iso(t.opened_at) if t else None,
                        "ticket": t.id if t else root.id if root else None,
                        "behind": root.device_id if root else None,
                    }
                )
        return out

    def device_summary(self, device_id: str, active: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """A device as engineers see it: where it is, what it last said, what is wrong."""
        d = self.view.devices[device_id]
        faults = (self.view.active_faults() if active is None else active).get(d.id, [])
        latest = self.view.latest.get(d.id)
        return {
            "id": d.id,
            "kind": d.kind.value,
            "host": d.host,
            "parent": d.parent,
            "location": d.location,
            "model": d.model,
            "faults": sorted(faults),
            "latest": {"at": iso(latest.at), "values": dict(latest.values)} if latest else None,
            **self.asset_dates(d),
        }

    def asset_dates(self, d: Device) -> dict[str, Any]:
        """Its warranty and rated life; a device learnt at run time has the promise's dates."""
        a = self._assets.get(d.id) or asset(d.id, d.kind.value, d.commissioned_on)
        today = self.view.clock.now().date()
        return {
            "commissioned_on": a.commissioned_on.isoformat() if a.commissioned_on else None,
            "warranty_until": a.warranty_until.isoformat() if a.warranty_until else None,
            "in_warranty": a.in_warranty(today),
            "end_of_life": a.end_of_life.isoformat() if a.end_of_life else None,
        }


def _time_arg(args: dict[str, Any], name: str) -> datetime:
    value = args[name]
    try:
        if not isinstance(value, str) or len(value) > 40:
            raise ValueError(value)
        return parse_iso(value)
    except ValueError:
        raise Invalid(f"{name} must be an ISO 8601 time with its zone, like 2026-12-04T03:00:00Z") from None


def _arg(args: dict[str, Any], name: str) -> str:
    if name not in args:
        raise Invalid(f"missing argument {name!r}")
    return str(args[name])


def _device_arg(ops: Operations, args: dict[str, Any]) -> str:
    device_id = _arg(args, "id")
    if device_id not in ops.view.devices:
        raise NotFound(f"no device {device_id[:64]!r}")
    return device_id


def _int_arg(args: dict[str, Any], name: str) -> int:
    text = _arg(args, name)
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 1 <= value <= MAX_ID:
        raise Invalid(f"argument {name!r} must be a whole number from 1 to {MAX_ID}, not {text[:40]!r}")
    return value
