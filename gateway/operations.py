"""What engineers may ask of a running gateway, whichever way they ask: the MQTT remote desk
and the HTTP API both come here, so one allow-list (`remote_auth.COMMANDS`), one set of
handlers and one append-only audit log serve both. Nothing received is ever executed as code
or shell; a command name only picks one of the handlers below.
"""

from __future__ import annotations

import logging
from typing import Any

from alarmgw.diagnostics.tickets import MOVES, Ticket, TicketError, moves_from

from .payloads import ticket_json
from .remote_auth import COMMANDS, Refused, Role, authorise
from .store import MAX_ID, StoreError, TicketNotFound, iso
from .ticketing import move_ticket

log = logging.getLogger(__name__)


class Refusal(Refused):
    """A request that was not run, with why: forbidden | not_found | conflict | invalid, or
    failed (the gateway's own fault: logged with its traceback, the gateway goes on)."""

    def __init__(self, message: str, why: str) -> None:
        super().__init__(message)
        self.why = why


def refusal(exc: Exception) -> Refusal:
    """The requester's view of an error raised while checking or running a request."""
    if isinstance(exc, Refusal):
        return exc
    message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    if isinstance(exc, KeyError | TicketNotFound):
        return Refusal(message, "not_found")
    if isinstance(exc, TicketError):
        return Refusal(message, "conflict")
    if isinstance(exc, Refused):
        return Refusal(message, "forbidden")
    return Refusal(message, "invalid")


REFUSED = (Refused, TicketError, StoreError, KeyError, ValueError)


class Operations:
    def __init__(self, gateway: Any) -> None:
        self.gw = gateway  # gateway.service.Gateway (not imported: it imports us)

    async def perform(
        self,
        user: str,
        command: str,
        args: dict[str, Any],
        channel: str,
        role: Role | None = None,
        audit_read: bool = True,
    ) -> Any:
        """Authorise (when a role is given; the MQTT desk checks signed requests itself), run
        and audit one request. Raises `Refusal`, audited too, for anything it will not do.
        `audit_read=False` leaves successful viewer requests out of the audit log."""
        try:
            if role is not None:
                authorise(user, role, command)
            result = await self._run(user, command, args)
        except REFUSED as exc:
            why = refusal(exc)
            self.refused(user, command, args, str(why), channel)
            raise why from exc
        except Exception as exc:
            # A request must never take the gateway down with it, whatever it asked for.
            log.exception("%s request %s from %s failed", channel, command, user)
            message = f"internal error: {type(exc).__name__}"
            self.gw.store.audit(self.gw.clock.now(), user, command, args, "failed", message, channel)
            raise Refusal(message, "failed") from exc
        if audit_read or COMMANDS[command] != "viewer":
            self.gw.store.audit(self.gw.clock.now(), user, command, args, "done", "", channel)
        return result

    def refused(self, user: str, command: str, args: dict[str, Any], message: str, channel: str) -> None:
        self.gw.store.audit(self.gw.clock.now(), user, command, args, "refused", message, channel)
        log.warning("%s request %s from %s refused: %s", channel, command, user, message)

    async def _run(self, user: str, command: str, args: dict[str, Any]) -> Any:
        gw = self.gw
        now = gw.clock.now()
        if command == "status":
            return {
                "site": gw.site.config.site.id,
                "name": gw.site.config.site.name,
                "at": iso(now),
                "devices": len(gw.devices),
                "active_faults": len(gw.diagnoser.active()),
                "open_tickets": len(gw.store.tickets(include_closed=False)),
                "stats": gw.stats(),
            }
        if command == "devices":
            active = self.active_faults()
            return [self.device_summary(d.id, active) for d in gw.devices.values()]
        if command == "device":
            d = gw.devices[_arg(args, "id")]
            return {
                **self.device_summary(d.id),
                "history": [{"at": iso(at), "values": v} for at, v in gw.store.history_of(d.id, 50)],
            }
        if command == "faults":
            return self.faults()
        if command == "tickets":
            return [self.ticket(t) for t in gw.store.tickets(include_closed=bool(args.get("all")))]
        if command == "ticket":
            return self.ticket(gw.store.get(_int_arg(args, "id")))
        if command == "poll":
            return {"polled": await gw.poll_now(_arg(args, "id"))}
        if command == "selftest":
            polled = await gw.self_test(_arg(args, "id"))
            values = polled["values"] if isinstance(polled["values"], dict) else {}
            return {
                "device": polled["device"],
                "passed": not values.get("sensor_fault", False),
                "self_test_age_s": values.get("self_test_age_s"),
                "at": polled["at"],
            }
        if command in MOVES:
            note = str(args.get("note", ""))[:500]
            return self.ticket(move_ticket(gw.store, _int_arg(args, "id"), MOVES[command], now, actor=user, note=note))
        raise Refused(f"unknown command {command!r}")  # unreachable: the allow-list is checked first

    def ticket(self, t: Ticket) -> dict[str, Any]:
        """A ticket as the uplink carries it, plus the moves it may make now."""
        return {**ticket_json(t, self.gw.clock.now()), "actions": moves_from(t.state)}

    def faults(self) -> list[dict[str, Any]]:
        """Every active fault, with its device and the ticket that carries it."""
        gw = self.gw
        open_tickets = gw.store.tickets(include_closed=False)  # one read serves every fault
        live = {(t.device_id, t.fault): t for t in open_tickets}
        behind = {c: t for t in open_tickets for c in t.casualties}
        out = []
        for dev_id, fault in sorted(gw.diagnoser.active()):
            d = gw.devices.get(dev_id)
            rule = gw.table.faults.get(fault)
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

    def active_faults(self) -> dict[str, list[str]]:
        active: dict[str, list[str]] = {}
        for dev, fault in self.gw.diagnoser.active():
            active.setdefault(dev, []).append(fault)
        return active

    def device_summary(self, device_id: str, active: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """A device as engineers see it: where it is, what it last said, what is wrong."""
        gw = self.gw
        d = gw.devices[device_id]
        faults = (self.active_faults() if active is None else active).get(d.id, [])
        latest = gw.latest.get(d.id)
        return {
            "id": d.id,
            "kind": d.kind.value,
            "host": d.host,
            "parent": d.parent,
            "location": d.location,
            "model": d.model,
            "faults": sorted(faults),
            "latest": {"at": iso(latest.at), "values": dict(latest.values)} if latest else None,
        }


def _arg(args: dict[str, Any], name: str) -> str:
    if name not in args:
        raise ValueError(f"missing argument {name!r}")
    return str(args[name])


def _int_arg(args: dict[str, Any], name: str) -> int:
    text = _arg(args, name)
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 1 <= value <= MAX_ID:
        raise ValueError(f"argument {name!r} must be a whole number from 1 to {MAX_ID}, not {text[:40]!r}")
    return value
