"""The uplink to the service centre: the durable outbox published in order over MQTT 5.

Everything the centre must see is written to the outbox (SQLite) in the same transaction as
the change it reports, by whoever makes the change (see gateway/messages.py for the topic
tree), and leaves it only when the broker has acknowledged it (PUBACK, QoS 1): delivery is
at least once, in order, across broker outages and gateway restarts. The gateway's
availability is one retained topic with a Last Will, so the centre sees a gateway that
drops off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import aiomqtt

from alarmgw.backoff import Backoff
from alarmgw.clock import Clock, iso
from alarmgw.drivers.mqtt_link import SUBSCRIBE_QOS, BrokerSpec, payload_bytes, stay_connected
from alarmgw.tasks import raise_if_cancelling

from .store.outbox import Outbox

log = logging.getLogger(__name__)

BATCH = 200
# The uplink receives only Home Assistant's status (when it watches it): a few messages.
QUEUED_INCOMING = 64
# Another process (the tickets command line) may queue a message without waking us: look at
# the outbox this often when nothing has woken the uplink. One indexed COUNT, so cheap.
RECHECK_S = 5.0


class Uplink:
    def __init__(
        self,
        broker: BrokerSpec,
        topic_root: str,
        outbox: Outbox,
        clock: Clock,
        *,
        backoff: Backoff | None = None,
        ha_prefix: str | None = None,
        on_ha_online: Callable[[], None] | None = None,
    ) -> None:
        self.broker = broker
        self.root = topic_root.rstrip("/")
        self.outbox = outbox
        self.clock = clock
        self.backoff = backoff or Backoff(1.0, 60.0)
        self.ha_prefix = ha_prefix  # watch `<prefix>/status` and call `on_ha_online` when it says online
        self.on_ha_online = on_ha_online
        self._wake = asyncio.Event()
        self.connected = asyncio.Event()
        self.published = 0
        self.published_event = asyncio.Event()  # pulsed after each delivered message

    def wake(self) -> None:
        """Something was queued: deliver it now rather than at the next look."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver the outbox until cancelled, reconnecting with backoff."""
        status = f"{self.root}/status"

        async def session(client: aiomqtt.Client) -> None:
            await client.publish(status, b"online", qos=1, retain=True)
            self.connected.set()
            log.info("uplink connected to %s:%d, outbox %d", self.broker.host, self.broker.port, self.outbox.depth())
            if self.ha_prefix is None:
                await self._drain(client)
                return
            await client.subscribe(f"{self.ha_prefix}/status", qos=SUBSCRIBE_QOS)
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._drain(client))
                    tg.create_task(self._watch_home_assistant(client))
            except* aiomqtt.MqttError as group:
                raise group.exceptions[0] from None  # a lost connection, handled like any other

        await stay_connected(
            self.broker,
            session,
            self.clock,
            name="uplink",
            will=aiomqtt.Will(status, b"offline", qos=1, retain=True),
            backoff=self.backoff,
            on_down=self.connected.clear,
            max_queued=QUEUED_INCOMING,
        )

    async def _watch_home_assistant(self, client: aiomqtt.Client) -> None:
        async for m in client.messages:
            if m.topic.value == f"{self.ha_prefix}/status" and payload_bytes(m) == b"online":
                log.info("Home Assistant is online: sending discovery again")
                if self.on_ha_online is not None:
                    self.on_ha_online()
                    self.wake()

    async def _drain(self, client: aiomqtt.Client) -> None:
        replayed = False
        while True:
            raise_if_cancelling()
            self._wake.clear()
            batch = self.outbox.batch(BATCH)
            if not batch and not replayed:
                # Everything queued while away is delivered: the service centre may take the
                # site as whole again (its dark-site ticket restores on this, not on `online`).
                stamp = iso(self.clock.now()).encode()
                await client.publish(f"{self.root}/replayed", stamp, qos=1, retain=True)
                replayed = True
            for seq, m in batch:
                await client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain)
                raise_if_cancelling()
                self.outbox.done(seq)
                self.published += 1
                self.published_event.set()
                self.published_event.clear()
            if not batch:
                await self._idle()

    async def _idle(self) -> None:
        """Until woken, or until it is time to look at the outbox again."""
        woken = asyncio.ensure_future(self._wake.wait())
        look = asyncio.ensure_future(self.clock.sleep_until(self.clock.monotonic() + RECHECK_S))
        try:
            await asyncio.wait((woken, look), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for f in (woken, look):
                f.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await f
