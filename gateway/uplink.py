"""The uplink to the service centre: the durable outbox published in order over MQTT 5.

Everything the centre must see goes through the outbox (SQLite, written in the same
transaction as the ticket change it reports), and leaves it only when the broker has
acknowledged it (PUBACK, QoS 1): delivery is at least once, in order, across broker
outages and gateway restarts. The gateway's availability is one retained topic with a Last
Will, so the centre sees a gateway that drops off.

Topic tree under `topic_root` (default `alarmgw/<site id>`), payloads in docs/schemas/:
  status                  retained `online` / `offline` (Last Will)
  tickets/<ticket id>     every change of a ticket, QoS 1
  faults/<device id>      every fault raised and cleared, QoS 1
  escalations/<ticket id> a service clock about to break, or broken, QoS 1
  telemetry/<device id>   periodic device state, QoS 0, first to go when the outbox is full
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from datetime import datetime

import aiomqtt

from alarmgw.backoff import Backoff
from alarmgw.clock import Clock
from alarmgw.diagnostics.engine import FaultChange
from alarmgw.diagnostics.escalation import Escalation
from alarmgw.diagnostics.rules import FaultTable
from alarmgw.diagnostics.tickets import Ticket
from alarmgw.drivers.mqtt_link import BrokerSpec
from alarmgw.model import DeviceKind, Reading
from alarmgw.tasks import raise_if_cancelling

from .payloads import fault_event, telemetry, ticket_event
from .store import OutboxMessage, Store, iso

log = logging.getLogger(__name__)

BATCH = 200


def _dump(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


class Uplink:
    def __init__(
        self,
        broker: BrokerSpec,
        topic_root: str,
        site_id: str,
        store: Store,
        clock: Clock,
        *,
        backoff: Backoff | None = None,
    ) -> None:
        self.broker = broker
        self.root = topic_root.rstrip("/")
        self.site_id = site_id
        self.store = store
        self.clock = clock
        self.backoff = backoff or Backoff(1.0, 60.0)
        self._wake = asyncio.Event()
        self.ha_prefix: str | None = None
        self.discovery: list[tuple[str, bytes]] = []  # retained configs, sent again when HA restarts
        self.connected = asyncio.Event()
        self.published = 0
        self.published_event = asyncio.Event()  # pulsed after each delivered message
        store.outbox_hook = self.ticket_messages
        store.on_enqueue = self._wake.set

    # --- what goes out ----------------------------------------------------------------------

    def ticket_messages(self, ticket: Ticket, action: str, at: datetime) -> list[OutboxMessage]:
        return [OutboxMessage("ticket", f"{self.root}/tickets/{ticket.id}", _dump(ticket_event(ticket, action, at)))]

    def fault_changes(self, changes: Sequence[FaultChange], table: FaultTable, kinds: dict[str, str]) -> None:
        messages = []
        for c in changes:
            rule = table.faults[c.fault]
            codes = rule.codes_for(DeviceKind(kinds[c.device_id]))
            extra = {"title": rule.title, "contact_id": codes.contact_id, "sia": list(codes.sia) if codes.sia else None}
            messages.append(
                OutboxMessage("fault", f"{self.root}/faults/{c.device_id}", _dump(fault_event(self.site_id, c, extra)))
            )
        self.store.enqueue(messages)

    def escalation_messages(self, e: Escalation) -> list[OutboxMessage]:
        doc = {
            "schema": "alarmgw/escalation/1",
            "event_id": f"{self.site_id}:escalation:{e.ticket_id}:{e.clock}:{e.mark_s:g}",
            "site": self.site_id,
            "ticket": e.ticket_id,
            "device": e.device_id,
            "fault": e.fault,
            "clock": e.clock,
            "mark_s": e.mark_s,
            "breached": e.mark_s == 0,
            "due": iso(e.due),
            "at": iso(e.at),
        }
        return [OutboxMessage("escalation", f"{self.root}/escalations/{e.ticket_id}", _dump(doc))]

    def announce(self) -> None:
        """Queue the Home Assistant discovery configs (retained, so once per start is enough
        unless Home Assistant restarts without a persistent broker)."""
        self.store.enqueue([OutboxMessage("discovery", t, p, qos=1, retain=True) for t, p in self.discovery])

    def device_states(self, states: Sequence[tuple[str, bytes]]) -> None:
        self.store.enqueue(
            [OutboxMessage("telemetry", f"{self.root}/state/{d}", p, qos=0, retain=True) for d, p in states]
        )

    def telemetry(self, readings: Sequence[Reading]) -> None:
        self.store.enqueue(
            [
                OutboxMessage(
                    "telemetry", f"{self.root}/telemetry/{r.device_id}", _dump(telemetry(self.site_id, r)), qos=0
                )
                for r in readings
            ]
        )

    # --- delivery ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Deliver the outbox until cancelled, reconnecting with backoff."""
        status = f"{self.root}/status"
        will = aiomqtt.Will(status, b"offline", qos=1, retain=True)
        while True:
            raise_if_cancelling()
            try:
                async with self.broker.client(will=will) as client:
                    await client.publish(status, b"online", qos=1, retain=True)
                    self.backoff.reset()
                    self.connected.set()
                    log.info(
                        "uplink connected to %s:%d, outbox %d",
                        self.broker.host,
                        self.broker.port,
                        self.store.outbox_depth(),
                    )
                    if self.ha_prefix is None:
                        await self._drain(client)
                    else:
                        await client.subscribe(f"{self.ha_prefix}/status", qos=1)
                        await self._drain_and_watch(client)
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                delay = self.backoff.next_delay()
                log.warning(
                    "uplink %s:%d: %s; outbox %d; retry in %.1f s",
                    self.broker.host,
                    self.broker.port,
                    exc,
                    self.store.outbox_depth(),
                    delay,
                )
                await self.clock.sleep_until(self.clock.monotonic() + delay)

    async def _drain_and_watch(self, client: aiomqtt.Client) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._drain(client))
                tg.create_task(self._watch_home_assistant(client))
        except* aiomqtt.MqttError as group:
            raise group.exceptions[0] from None  # a lost connection, handled like any other

    async def _watch_home_assistant(self, client: aiomqtt.Client) -> None:
        async for m in client.messages:
            if m.topic.value == f"{self.ha_prefix}/status" and m.payload in (b"online", "online"):
                log.info("Home Assistant is online: sending discovery again")
                self.announce()

    async def _drain(self, client: aiomqtt.Client) -> None:
        while True:
            raise_if_cancelling()
            self._wake.clear()
            batch = self.store.outbox_batch(BATCH)
            for seq, m in batch:
                await client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain)
                raise_if_cancelling()
                self.store.outbox_done(seq)
                self.published += 1
                self.published_event.set()
                self.published_event.clear()
            if not batch:
                await self._wake.wait()
