"""Devices that publish over MQTT: every message goes through a router into a latch of
each device's last known state, ingested at once; the latch is read out again on a
schedule so count-based debounce works as it does for polled devices.

A message that cannot be understood is counted and logged with its topic, and changes
nothing; the feed goes on, whatever the message held.
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

# Anything on the site network can publish on the device broker, so a flood of bad messages
# must not become a flood of log lines (journald drops a service's lines past its rate
# limit, the useful ones with them): the first LOG_BURST malformed messages of each
# LOG_WINDOW_S are logged one by one, the rest counted in `malformed` and summed up.
LOG_BURST = 10
LOG_WINDOW_S = 60.0


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
        self._log_window_start = float("-inf")  # monotonic s
        self._logged = 0  # malformed messages logged in this window
        self._unlogged = 0  # and those only counted

    @property
    def subscriptions(self) -> list[str]:
        return [t for r in self.routers for t in r.subscriptions]

    def on_message(self, topic: str, payload: bytes) -> None:
        """Take one message: its readings are latched and handed on, or it is malformed
        (counted, logged, nothing of it taken). Never raises for anything a payload holds."""
        self.messages += 1
        now = self._clock.now()
        readings = []
        for router in self.routers:
            try:
                routed = router.route(topic, payload)
            except PayloadError as exc:
                self._malformed(topic, str(exc))
                return
            except Exception:  # a bug in a router: logged with its traceback, the feed goes on
                self._malformed(topic, "could not be routed (a bug)", bug=True)
                return
            for device_id, values in routed:
                if values:
                    self.latched.setdefault(device_id, {}).update(values)
                    readings.append(Reading(device_id, now, values))
        if readings:
            self._on_readings(readings)

    def _malformed(self, topic: str, why: str, *, bug: bool = False) -> None:
        self.malformed += 1
        now = self._clock.monotonic()
        if now - self._log_window_start >= LOG_WINDOW_S:
            if self._unlogged:
                log.warning(
                    "%d more malformed messages in %.0f s not logged one by one (counted in mqtt_malformed)",
                    self._unlogged,
                    LOG_WINDOW_S,
                )
            self._log_window_start, self._logged, self._unlogged = now, 0, 0
        if self._logged < LOG_BURST:
            self._logged += 1
            log.log(logging.ERROR if bug else logging.WARNING, "malformed message on %s: %s", topic, why, exc_info=bug)
        else:
            self._unlogged += 1

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
