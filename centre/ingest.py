"""An ingest worker: every site's uplink from the broker into PostgreSQL, in batches.

Any number of workers share the stream through MQTT 5 shared subscriptions
(`$share/<group>/<root>/+/tickets/#` ...), each with a persistent session (a stable client
id, clean start off, a session expiry), so what the broker queued for a worker that died
waits for it. A message is acknowledged (PUBACK) only once the batch that holds it has
committed: a worker killed at any moment, or a database that goes away, loses nothing; the
broker sends again what was not acknowledged, and the writes are idempotent.

Acknowledging after commit: aiomqtt 2.5 acknowledges on receipt and has no switch for it;
paho underneath has `manual_ack_set(True)` and `ack(mid, qos)`. aiomqtt keeps its paho client
as `_client`; that one private attribute is all this module uses of aiomqtt's insides
(`_paho` checks it is there, so an aiomqtt that renames it fails at start, loudly).

Memory: the Receive Maximum the worker announces (two batches) should bound what the broker
sends it unacknowledged, but mosquitto 2.0 replays a resumed session's queue past it. So the
queue is bounded here: past `QOS0_QUEUE` waiting, a QoS 0 message (telemetry, which may be
lost) is dropped and counted; past the Receive Maximum and `ingest.max_waiting_bytes` (each
message charged its payload and `MESSAGE_OVERHEAD`), a QoS 1 message is turned away
unacknowledged and the worker reconnects once it has worked off its queue, so that the
broker sends it again. Nothing is lost and memory stays bounded either way; a bound in bytes
takes a backlog of small messages in one go instead of reading it twice.

Statuses and asset registers are subscribed to by every worker, not shared: brokers send
retained messages to a new shared subscription or not (MQTT 5 says not), and the centre
must learn each site's retained `online` / `offline` and its assets when it starts. They are
few, and writing them is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
import psycopg
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from alarmgw.backoff import Backoff
from alarmgw.clock import Clock
from alarmgw.drivers.mqtt_link import BrokerSpec
from alarmgw.tasks import raise_if_cancelling

from . import batch as batches
from .config import IngestConfig, SitesConfig
from .parse import Parsed, dead, parse

log = logging.getLogger(__name__)

SHARED_KINDS = ("tickets/#", "faults/#", "escalations/#", "telemetry/#", "replayed")
# QoS 0 messages waiting beyond the in-flight QoS 1 ones; past it new QoS 0 ones are dropped.
QOS0_QUEUE = 5_000
MAX_RECEIVE = 65_535  # MQTT 5's largest Receive Maximum
MESSAGE_OVERHEAD = 2_048  # bytes a waiting message holds beyond its payload (paho's and aiomqtt's objects)
MAX_PACKET_HEADROOM = 2_048  # topic and properties around the largest payload taken


@dataclass(slots=True)
class Counters:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    dead: int = 0
    batches: int = 0
    dropped_qos0: int = 0  # telemetry dropped because the worker was behind
    overflowed: int = 0  # QoS 1 messages turned away unacknowledged (the broker sends them again)
    db_retries: int = 0
    reconnects: int = 0

    def handled(self) -> int:
        """Messages whose batch has committed (and which are acknowledged)."""
        return self.stored + self.duplicates + self.dead


class IngestWorker:
    """Runs until cancelled: keeps the broker connection, batches, writes, acknowledges."""

    def __init__(
        self,
        broker: BrokerSpec,
        client_id: str,
        ingest: IngestConfig,
        sites: SitesConfig,
        pool: AsyncConnectionPool,
        clock: Clock,
        *,
        backoff: Callable[[], Backoff] = lambda: Backoff(0.5, 30.0),
    ) -> None:
        self.broker = broker
        self.client_id = client_id
        self.cfg = ingest
        self.sites = sites
        self.pool = pool
        self.clock = clock
        self._backoff = backoff
        self.counters = Counters()
        # Escalation events new to the centre, after their batch committed (each once).
        self.on_escalations: Callable[[Sequence[str]], None] | None = None
        self.subscribed = asyncio.Event()  # set once subscribed (for tests and the log)
        self.batch_done = asyncio.Event()  # pulsed after each committed batch
        self.root = ingest.topic_root
        self.book = batches.SiteBook(self.root, sites.area_of)
        # Two batches in flight: one being written while the next one fills.
        self.receive_max = min(MAX_RECEIVE, 2 * ingest.batch_max)
        self._filled = asyncio.Event()
        self._arrived = asyncio.Event()  # set when a message arrives or the connection goes
        self._inbox: deque[paho.MQTTMessage] = deque()  # received, not yet taken into a batch
        self._waiting_bytes = 0  # what the messages waiting to be taken hold, charged as above
        self._resend = False  # messages were turned away unacknowledged: reconnect when idle

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._log_counters())
            tg.create_task(self._stay_connected())

    def topics(self) -> list[str]:
        shared = [f"$share/{self.cfg.group}/{self.root}/+/{k}" for k in SHARED_KINDS]
        return [*shared, f"{self.root}/+/status", f"{self.root}/+/assets"]

    async def _stay_connected(self) -> None:
        backoff = self._backoff()
        while True:
            raise_if_cancelling()
            try:
                client = self._client()
                async with client:
                    backoff.reset()
                    await self._session(client)
            except aiomqtt.MqttError as exc:
                self.subscribed.clear()
                self.counters.reconnects += 1
                delay = backoff.next_delay()
                log.warning(
                    "ingest %s: broker %s:%d: %s; reconnecting in %.1f s",
                    self.client_id,
                    self.broker.host,
                    self.broker.port,
                    exc,
                    delay,
                )
                await self.clock.sleep_until(self.clock.monotonic() + delay)

    def _client(self) -> aiomqtt.Client:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.cfg.session_expiry_s
        props.ReceiveMaximum = self.receive_max
        if self.cfg.announce_max_packet:
            props.MaximumPacketSize = self.cfg.max_payload_bytes + MAX_PACKET_HEADROOM
        b = self.broker
        client = aiomqtt.Client(
            b.host,
            b.port,
            username=b.username,
            password=b.password,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,  # resume the session: what was queued for this worker waits
            keepalive=b.keepalive_s,
            tls_context=b.tls_context(),
            tls_insecure=False if b.uses_tls else None,
            timeout=10,
            properties=props,
            max_queued_incoming_messages=0,  # unbounded there: bounded below, by QoS
        )
        p = _paho(client)
        p.manual_ack_set(True)
        inbox: deque[paho.MQTTMessage] = deque()
        self._inbox = inbox
        self._resend, self._waiting_bytes = False, 0

        def on_message(c: paho.Client, userdata: object, m: paho.MQTTMessage) -> None:
            # In the event loop's thread (aiomqtt reads the socket there). Kept as paho made
            # it, in the worker's own queue: no second object, no queue hand-off per message.
            waiting, cost = len(inbox), len(m.payload) + MESSAGE_OVERHEAD
            if m.qos == 0 and waiting >= QOS0_QUEUE:
                self.counters.dropped_qos0 += 1
                return
            if waiting >= self.receive_max and self._waiting_bytes + cost > self.cfg.max_waiting_bytes:
                # The broker sent past our Receive Maximum (mosquitto 2.0 does so when it
                # replays a resumed session's queue). Not acknowledged, so it stays the
                # broker's; a new connection once the queue is worked off has it sent again.
                self.counters.overflowed += 1
                self._resend = True
                return
            inbox.append(m)
            self._waiting_bytes += cost
            self._arrived.set()
            if len(inbox) >= self.cfg.batch_max:
                self._filled.set()

        gone = p.on_disconnect

        def on_disconnect(*args: Any) -> None:
            gone(*args)  # type: ignore[misc]  # aiomqtt's own, which ends its session
            self._arrived.set()  # the session loop wakes, finds the connection gone

        p.on_message = on_message
        p.on_disconnect = on_disconnect
        return client

    async def _session(self, client: aiomqtt.Client) -> None:
        for topic in self.topics():
            await client.subscribe(topic, qos=1)
        self.subscribed.set()
        log.info("ingest %s: subscribed on %s:%d", self.client_id, self.broker.host, self.broker.port)
        inbox, p = self._inbox, _paho(client)
        while True:
            raise_if_cancelling()
            while not inbox:
                if not p.is_connected():
                    raise aiomqtt.MqttError("disconnected while waiting for messages")
                self._arrived.clear()
                await self._arrived.wait()
            await self._wait_for_more()
            taken = [inbox.popleft() for _ in range(min(self.cfg.batch_max, len(inbox)))]
            self._waiting_bytes -= sum(len(m.payload) + MESSAGE_OVERHEAD for m in taken)
            await self._handle(client, taken)
            if self._resend and not inbox:
                self._resend = False
                log.warning(
                    "ingest %s: more came than the Receive Maximum; reconnecting to have it again", self.client_id
                )
                return  # a new connection: the broker sends again what it holds unacknowledged

    async def _wait_for_more(self) -> None:
        """Until the batch can be full or `batch_wait_s` has passed. Waiting on an event, not
        on the queue itself, so that no message is ever taken and then lost to a timeout."""
        if len(self._inbox) >= self.cfg.batch_max:
            return
        self._filled.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.cfg.batch_wait_s):
                await self._filled.wait()

    async def _handle(self, client: aiomqtt.Client, taken: list[paho.MQTTMessage]) -> None:
        received_at = self.clock.now()
        incoming = []
        for m in taken:
            topic, payload = m.topic, bytes(m.payload)
            parsed = parse(self.root, topic, payload, self.cfg.max_payload_bytes)
            if not self.sites.accept_unlisted:
                parsed = self._known(topic, payload, parsed)
            incoming.append(batches.Incoming(topic, payload, parsed))
        self.counters.received += len(taken)
        written = await self._write(incoming, received_at)
        p = _paho(client)
        for m in taken:
            if m.qos > 0:
                p.ack(m.mid, m.qos)  # after the commit; on a lost connection the broker resends
        c = self.counters
        c.batches += 1
        c.stored += written.stored
        c.duplicates += written.duplicates
        c.dead += written.dead
        for reason in written.reasons[:3]:
            log.info("ingest %s: dead letter: %s", self.client_id, reason)
        for low in written.parts_low:
            log.warning("ingest %s: spare parts: %s", self.client_id, low.describe())
        if written.escalations and self.on_escalations is not None:
            self.on_escalations(written.escalations)
        self.batch_done.set()
        self.batch_done.clear()

    def _known(self, topic: str, payload: bytes, parsed: list[Parsed]) -> list[Parsed]:
        """The message, or a dead letter if it comes from a site the file does not list."""
        for p in parsed:
            site = getattr(p, "site_id", None)
            if site is not None and site not in self.sites.areas:
                return [dead(topic, f"unknown site {site!r} (not under sites.areas)", payload)]
        return parsed

    async def _write(self, incoming: list[batches.Incoming], received_at: datetime) -> batches.Written:
        """One transaction; while the database is away, wait and try again (nothing is
        acknowledged before it commits, so the broker holds the rest)."""
        backoff = self._backoff()
        while True:
            try:
                async with self.pool.connection() as conn:
                    return await batches.write(conn, incoming, received_at, self.book)
            except (psycopg.OperationalError, PoolTimeout) as exc:
                self.counters.db_retries += 1
                delay = backoff.next_delay()
                log.warning("ingest %s: database: %s; batch again in %.1f s", self.client_id, _line(exc), delay)
                await self.clock.sleep_until(self.clock.monotonic() + delay)

    async def _log_counters(self) -> None:
        while True:
            await self.clock.sleep_until(self.clock.monotonic() + self.cfg.log_every_s)
            log.info("ingest %s: %s", self.client_id, " ".join(f"{k}={v}" for k, v in asdict(self.counters).items()))


def _paho(client: aiomqtt.Client) -> paho.Client:
    inner = getattr(client, "_client", None)
    if not isinstance(inner, paho.Client) or not hasattr(inner, "manual_ack_set"):
        raise RuntimeError("this aiomqtt keeps no paho client as _client: cannot acknowledge after commit")
    return inner


def _line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
