"""Remote commands for engineers, over the service centre's broker (MQTT 5 request /
response): a fixed allow-list, each request authenticated, authorised, fresh and used once,
and every request — run or refused — written to the append-only audit log. Nothing received
is ever executed as code or shell; a command name only picks one of the handlers below.

Requests arrive on `<topic_root>/cmd`; the answer goes to the request's response topic with
its correlation data: {"ok": true, "result": ...} or {"ok": false, "error": "..."}.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from alarmgw.tasks import raise_if_cancelling
from diagnostics.tickets import MOVES, TicketError
from drivers.backoff import Backoff
from drivers.mqtt_link import BrokerSpec

from .payloads import ticket_json
from .remote_auth import Refused, Users, verify
from .store import StoreError, iso
from .ticketing import move_ticket

log = logging.getLogger(__name__)


class RemoteDesk:
    def __init__(
        self, gateway: Any, broker: BrokerSpec, topic_root: str, users: Users, max_skew_s: float = 60.0
    ) -> None:
        self.gw = gateway  # gateway.service.Gateway (not imported: it imports us)
        self.broker = broker
        self.topic = f"{topic_root.rstrip('/')}/cmd"
        self.users = users
        self.max_skew_s = max_skew_s
        self.subscribed = asyncio.Event()
        self.handled = 0

    # --- one request ------------------------------------------------------------------------

    async def handle(self, payload: bytes) -> dict[str, Any]:
        """Verify, authorise, run, audit. Never raises for bad input."""
        store, now = self.gw.store, self.gw.clock.now()
        forget = now - timedelta(seconds=2 * self.max_skew_s)
        user, command = "?", "?"
        args: dict[str, Any] = {}
        try:
            user, command, args = verify(
                payload, self.users, now, self.max_skew_s, lambda n: store.claim_nonce(n, now, forget)
            )
            result = await self._run(user, command, args)
        except (Refused, TicketError, StoreError, KeyError, ValueError) as exc:
            who, what = _claimed(payload)
            user = user if user != "?" else who
            command = command if command != "?" else what
            message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
            store.audit(now, user, command, args, "refused", message)
            log.warning("remote %s from %s refused: %s", command, user, message)
            return {"ok": False, "error": message}
        store.audit(now, user, command, args, "done", "")
        return {"ok": True, "result": result}

    async def _run(self, user: str, command: str, args: dict[str, Any]) -> Any:
        gw = self.gw
        now = gw.clock.now()
        if command == "status":
            open_tickets = gw.store.tickets(include_closed=False)
            return {
                "site": gw.site.config.site.id,
                "at": iso(now),
                "devices": len(gw.devices),
                "active_faults": len(gw.diagnoser.active()),
                "open_tickets": len(open_tickets),
                "stats": gw.stats(),
            }
        if command == "devices":
            active: dict[str, list[str]] = {}
            for dev_id, fault in gw.diagnoser.active():
                active.setdefault(dev_id, []).append(fault)
            return [
                {
                    "id": d.id,
                    "kind": d.kind.value,
                    "parent": d.parent,
                    "location": d.location,
                    "faults": sorted(active.get(d.id, [])),
                }
                for d in gw.devices.values()
            ]
        if command == "device":
            d = gw.devices[_arg(args, "id")]
            latest = gw.latest.get(d.id)
            return {
                "id": d.id,
                "kind": d.kind.value,
                "parent": d.parent,
                "location": d.location,
                "latest": {"at": iso(latest.at), "values": dict(latest.values)} if latest else None,
                "history": [{"at": iso(at), "values": v} for at, v in gw.store.history_of(d.id, 50)],
            }
        if command == "tickets":
            return [ticket_json(t, now) for t in gw.store.tickets(include_closed=bool(args.get("all")))]
        if command == "ticket":
            return ticket_json(gw.store.get(int(_arg(args, "id"))), now)
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
            t = move_ticket(gw.store, int(_arg(args, "id")), MOVES[command], now, actor=user, note=note)
            return ticket_json(t, now)
        raise Refused(f"unknown command {command!r}")  # unreachable: verify() checks the allow-list

    # --- the broker -------------------------------------------------------------------------

    async def run(self) -> None:
        backoff = Backoff(1.0, 60.0)
        while True:
            raise_if_cancelling()
            try:
                async with self.broker.client() as client:
                    await client.subscribe(self.topic, qos=1)
                    self.subscribed.set()
                    backoff.reset()
                    async for m in client.messages:
                        await self._answer(client, m)
            except aiomqtt.MqttError as exc:
                self.subscribed.clear()
                delay = backoff.next_delay()
                log.warning("remote desk: %s; retry in %.1f s", exc, delay)
                await self.gw.clock.sleep_until(self.gw.clock.monotonic() + delay)

    async def _answer(self, client: aiomqtt.Client, m: aiomqtt.Message) -> None:
        payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
        reply = await self.handle(payload)
        self.handled += 1
        props = m.properties
        topic = getattr(props, "ResponseTopic", None)
        if not topic:
            log.warning("remote request without a response topic; answered in the audit log only")
            return
        out = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        correlation = getattr(props, "CorrelationData", None)
        if correlation is not None:
            out.CorrelationData = correlation
        await client.publish(topic, json.dumps(reply, default=str).encode(), qos=1, properties=out)


def _arg(args: dict[str, Any], name: str) -> str:
    if name not in args:
        raise ValueError(f"missing argument {name!r}")
    return str(args[name])


def _claimed(payload: bytes) -> tuple[str, str]:
    """Who and what a refused request claimed to be, for the audit log."""
    try:
        doc = json.loads(payload)
        return str(doc.get("user", "?"))[:64], str(doc.get("command", "?"))[:64]
    except (ValueError, AttributeError):
        return "?", "?"
