"""Devices that publish over MQTT: every message goes through a router into a latch of
each device's last known state, ingested at once; the latch is read out again on a
schedule so count-based debounce works as it does for polled devices.

A message that cannot be understood is counted and logged with its topic, and changes
nothing; the feed goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from alarmgw.clock import Clock
from alarmgw.model import Reading

from .json_map import PayloadError
from .mqtt_link import BrokerSpec, subscribe_forever

log = logging.getLogger(__name__)


class Router(Protocol):
    @property
    def subscriptions(self) -> list[str]: ...

    def route(self, topic: str, payload: bytes) -> list[tuple[str, dict[str, float | int | bool]]]: ...


class MqttDeviceFeed:
    def __init__(
        self, routers: Sequence[Router], clock: Clock, on_readings: Callable[[Sequence[Reading]], None]
    ) -> None:
        self.routers = list(routers)
        self._clock = clock
        self._on_readings = on_readings
        self.latched: dict[str, dict[str, float | int | bool]] = {}
        self.messages = 0
        self.malformed = 0
        self.subscribed = asyncio.Event()  # set while the subscriptions are in place

    @property
    def subscriptions(self) -> list[str]:
        return [t for r in self.routers for t in r.subscriptions]

    def on_message(self, topic: str, payload: bytes) -> None:
        self.messages += 1
        now = self._clock.now()
        readings = []
        for router in self.routers:
            try:
                routed = router.route(topic, payload)
            except PayloadError as exc:
                self.malformed += 1
                log.warning("malformed message on %s: %s", topic, exc)
                return
            for device_id, values in routed:
                if values:
                    self.latched.setdefault(device_id, {}).update(values)
                    readings.append(Reading(device_id, now, values))
        if readings:
            self._on_readings(readings)

    def readings(self) -> list[Reading]:
        """The latch as readings, one per device heard from."""
        now = self._clock.now()
        return [Reading(d, now, dict(v)) for d, v in self.latched.items()]

    async def run(self, broker: BrokerSpec) -> None:
        """Subscribe on the site's device broker and take every message, until cancelled;
        reconnects with backoff. `subscribed` is set while the subscriptions hold."""

        async def connected() -> None:
            self.subscribed.set()

        try:
            await subscribe_forever(
                broker,
                self.subscriptions,
                self.on_message,
                self._clock,
                on_connect=connected,
                on_down=self.subscribed.clear,
            )
        finally:
            self.subscribed.clear()
