"""Remote commands for engineers, over the service centre's broker (MQTT 5 request /
response): a fixed allow-list, each request authenticated, authorised, fresh and used once,
and every request — run or refused — written to the append-only audit log. Nothing received
is ever executed as code or shell; a command name only picks one of the handlers below.

Requests arrive on `<topic_root>/cmd`; the answer goes to the request's response topic with
its correlation data: {"ok": true, "result": ...} or {"ok": false, "error": "..."}. What a
command does is `operations.Operations`, shared with the HTTP API.
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

from alarmgw.backoff import Backoff
from alarmgw.drivers.mqtt_link import BrokerSpec
from alarmgw.tasks import raise_if_cancelling

from .operations import Operations
from .remote_auth import Refused, Users, verify

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
        self.ops = Operations(gateway)
        self.subscribed = asyncio.Event()
        self.handled = 0

    # --- one request ------------------------------------------------------------------------

    async def handle(self, payload: bytes) -> dict[str, Any]:
        """Verify, then run through the gateway's operations (which authorise and audit).
        Never raises for bad input."""
        store, now = self.gw.store, self.gw.clock.now()
        forget = now - timedelta(seconds=2 * self.max_skew_s)
        try:
            user, command, args = verify(
                payload, self.users, now, self.max_skew_s, lambda n: store.claim_nonce(n, now, forget)
            )
        except Refused as exc:
            who, what = _claimed(payload)
            self.ops.refused(who, what, {}, str(exc), "mqtt")
            return {"ok": False, "error": str(exc)}
        try:
            result = await self.ops.perform(user, command, args, "mqtt")
        except Refused as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, "result": result}

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


def _claimed(payload: bytes) -> tuple[str, str]:
    """Who and what a refused request claimed to be, for the audit log."""
    try:
        doc = json.loads(payload)
        return str(doc.get("user", "?"))[:64], str(doc.get("command", "?"))[:64]
    except (ValueError, AttributeError):
        return "?", "?"
