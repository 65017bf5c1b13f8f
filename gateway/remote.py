"""Remote commands for engineers, over the service centre's broker (MQTT 5 request /
response): a fixed allow-list, each request authenticated (Ed25519, `remote_auth`),
authorised, fresh, meant for this site and used once. Every authenticated request goes to the
append-only audit log; refusals of requests that prove nothing are counted per minute, with a
row for the first of each kind (`Operations.refused_unverified`). Nothing received is ever
executed as code or shell; a command name only picks a row of the operations' table.

Requests arrive on `<topic_root>/cmd`; the answer goes to the request's response topic, which
must lie under `<topic_root>/cmd/reply/` (so nobody can make the gateway publish on its own
ticket or status topics, or another site's), with its correlation data: {"ok": true,
"result": ...} or {"ok": false, "error": "..."}. Every request gets an answer, even when the
gateway's store is busy ("try again"), and no payload, however hostile, stops the desk.
What a command does is `operations.Operations`, shared with the HTTP API.
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
from alarmgw.drivers.mqtt_link import SUBSCRIBE_QOS, BrokerSpec, payload_bytes, stay_connected
from alarmgw.tasks import raise_if_cancelling

from .credentials import Users, UsersFile, UsersFileError
from .operations import Operations
from .refusals import Refused
from .remote_auth import Unverified, verify
from .store import StoreError

log = logging.getLogger(__name__)

# Requests waiting to be handled: engineers send a few a minute; a flood of junk waits here,
# at most this many (64 KiB each at worst, 4 MiB), and past it is dropped by the client.
QUEUED_REQUESTS = 64

MAX_REPLY_TOPIC = 256  # characters; the engineer's tool uses about 80
MAX_CORRELATION = 64  # bytes of correlation data echoed back; the tool sends 16
COUNTS_FLUSH_S = 60.0  # refusals counted in memory reach the store at least this often


class RemoteDesk:
    def __init__(
        self, ops: Operations, broker: BrokerSpec, topic_root: str, users: Users, max_skew_s: float = 60.0
    ) -> None:
        self.ops = ops
        self.broker = broker
        self.root = topic_root.rstrip("/")
        self.topic = f"{self.root}/cmd"
        self.reply_prefix = f"{self.topic}/reply/"
        self.users = UsersFile(users)
        self.max_skew_s = max_skew_s
        self.subscribed = asyncio.Event()
        self.handled = 0
        self.unanswered = 0  # requests with no usable response topic
        if users.legacy():
            log.warning(
                "users file: %s sign with a shared secret (legacy HMAC): whoever holds this box's users "
                "file can sign as them; give each a key pair (`alarmgw keygen NAME`)",
                ", ".join(users.legacy()),
            )

    # --- one request ------------------------------------------------------------------------

    async def handle(self, payload: bytes) -> dict[str, Any]:
        """Verify, then run through the gateway's operations (which authorise and audit).
        Always an answer, never an exception."""
        view = self.ops.view
        now = view.clock.now()
        forget = now - timedelta(seconds=2 * self.max_skew_s)
        try:
            req = verify(
                payload,
                self.users.current(),
                self.root,
                now,
                self.max_skew_s,
                lambda n: view.store.audit.claim_nonce(n, now, forget),
            )
        except Unverified as exc:
            self.ops.refused_unverified(exc.user, exc.command, exc.kind, str(exc), "mqtt")
            return {"ok": False, "error": str(exc)}
        except UsersFileError as exc:
            self.ops.refused_unverified("?", "?", "users_file", str(exc), "mqtt")
            return {"ok": False, "error": str(exc)}
        except (StoreError, sqlite3.Error) as exc:
            log.warning("remote request not checked: the store is busy: %s", exc)
            return {"ok": False, "error": f"the gateway's store is busy ({exc}); try again"}
        try:
            result = await self.ops.perform(req.user, req.role, req.command, req.args, "mqtt")
        except Refused as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, "result": result}

    def reply_topic(self, props: object) -> str | None:
        """Where the answer may go: the request's response topic if it lies under this site's
        `cmd/reply/` and is a valid topic to publish on; else None."""
        topic = getattr(props, "ResponseTopic", None)
        if not isinstance(topic, str) or not topic.startswith(self.reply_prefix):
            return None
        if len(topic) > MAX_REPLY_TOPIC or len(topic) == len(self.reply_prefix):
            return None
        if any(c in topic for c in "+#\x00"):
            return None
        return topic

    # --- the broker -------------------------------------------------------------------------

    async def run(self) -> None:
        async def session(client: aiomqtt.Client) -> None:
            await client.subscribe(self.topic, qos=SUBSCRIBE_QOS)
            self.subscribed.set()
            async for m in client.messages:
                try:
                    await self._answer(client, m)
                except aiomqtt.MqttError:
                    raise  # the connection is gone: reconnect
                except Exception:
                    # A bug must not take the desk down, nor lock engineers out while it restarts.
                    log.exception("remote desk: a request could not be answered")
                # The answer's publish (wait_for inside aiomqtt) may have eaten a cancellation.
                raise_if_cancelling()

        view = self.ops.view
        try:
            async with asyncio.TaskGroup() as tg:
                flusher = tg.create_task(self._flush_counts())
                try:
                    await stay_connected(
                        self.broker,
                        session,
                        view.clock,
                        name="remote desk",
                        backoff=Backoff(1.0, 60.0),
                        on_down=self.subscribed.clear,
                        max_queued=QUEUED_REQUESTS,
                    )
                finally:
                    flusher.cancel()
        finally:
            self.ops.flush_refusals()

    async def _flush_counts(self) -> None:
        clock = self.ops.view.clock
        while True:
            await clock.sleep_until(clock.monotonic() + COUNTS_FLUSH_S)
            self.ops.flush_refusals()

    async def _answer(self, client: aiomqtt.Client, m: aiomqtt.Message) -> None:
        reply = await self.handle(payload_bytes(m))
        self.handled += 1
        props = m.properties
        topic = self.reply_topic(props)
        if topic is None:
            # Not a warning each time: anyone may send these, as often as they like.
            self.unanswered += 1
            log.debug("remote request without a usable response topic under %s: not answered", self.reply_prefix)
            return
        out = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        correlation = getattr(props, "CorrelationData", None)
        if isinstance(correlation, bytes) and len(correlation) <= MAX_CORRELATION:
            out.CorrelationData = correlation
        await client.publish(topic, json.dumps(reply, default=str).encode(), qos=1, properties=out)
