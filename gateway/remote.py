"""Remote commands for engineers, over the service centre's broker (MQTT 5 request /
response): a fixed allow-list, each request authenticated, authorised, fresh and used once,
and every request — run or refused — written to the append-only audit log. Nothing received
is ever executed as code or shell; a command name only picks a row of the operations' table.

Requests arrive on `<topic_root>/cmd`; the answer goes to the request's response topic with
its correlation data: {"ok": true, "result": ...} or {"ok": false, "error": "..."}. Every
request gets an answer, even when the gateway's store is busy ("try again"). What a command
does is `operations.Operations`, shared with the HTTP API.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from datetime import timedelta
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from alarmgw.backoff import Backoff
from alarmgw.drivers.mqtt_link import BrokerSpec, payload_bytes, stay_connected

from .credentials import Users
from .operations import Operations
from .refusals import Refused
from .remote_auth import verify
from .store import StoreError

log = logging.getLogger(__name__)


class RemoteDesk:
    def __init__(
        self, ops: Operations, broker: BrokerSpec, topic_root: str, users: Users, max_skew_s: float = 60.0
    ) -> None:
        self.ops = ops
        self.broker = broker
        self.topic = f"{topic_root.rstrip('/')}/cmd"
        self.users = users
        self.max_skew_s = max_skew_s
        self.subscribed = asyncio.Event()
        self.handled = 0

    # --- one request ------------------------------------------------------------------------

    async def handle(self, payload: bytes) -> dict[str, Any]:
        """Verify, then run through the gateway's operations (which authorise and audit).
        Always an answer, never an exception."""
        view = self.ops.view
        now = view.clock.now()
        forget = now - timedelta(seconds=2 * self.max_skew_s)
        try:
            user, role, command, args = verify(
                payload, self.users, now, self.max_skew_s, lambda n: view.store.audit.claim_nonce(n, now, forget)
            )
        except Refused as exc:
            who, what = _claimed(payload)
            self.ops.refused(who, what, {}, str(exc), "mqtt")
            return {"ok": False, "error": str(exc)}
        except (StoreError, sqlite3.Error) as exc:
            log.warning("remote request not checked: the store is busy: %s", exc)
            return {"ok": False, "error": f"the gateway's store is busy ({exc}); try again"}
        try:
            result = await self.ops.perform(user, role, command, args, "mqtt")
        except Refused as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, "result": result}

    # --- the broker -------------------------------------------------------------------------

    async def run(self) -> None:
        async def session(client: aiomqtt.Client) -> None:
            await client.subscribe(self.topic, qos=1)
            self.subscribed.set()
            async for m in client.messages:
                await self._answer(client, m)

        view = self.ops.view
        await stay_connected(
            self.broker,
            session,
            view.clock,
            name="remote desk",
            backoff=Backoff(1.0, 60.0),
            on_down=self.subscribed.clear,
        )

    async def _answer(self, client: aiomqtt.Client, m: aiomqtt.Message) -> None:
        reply = await self.handle(payload_bytes(m))
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


def _claimed(payload: bytes) -> tuple[str, str]:
    """Who and what a refused request claimed to be, for the audit log."""
    try:
        doc = json.loads(payload)
        return str(doc.get("user", "?"))[:64], str(doc.get("command", "?"))[:64]
    except (ValueError, AttributeError):
        return "?", "?"
