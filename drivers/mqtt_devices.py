"""Devices that publish over MQTT: every message goes through a router and what it says is
ingested at once, as a reading stamped with the time it came. A message is evidence once:
nothing is read out again on a schedule, so a fault's count debounce counts messages and
its `raise_after_s` needs messages spanning that long.

What the schedule does give (`judge()`) is the feed's own verdict on each link, for the
bridge and every device it knows: `link_lost` once a device has not been heard for longer
than its window, or its availability says offline; for the bridge, when it says offline,
or the broker has been out of reach (or the bridge silent) for longer than its window.
Silence counts only while the feed can hear: while the broker is out of reach or the
bridge is offline its devices' clocks stand still, and the bridge's fault covers them.

A message that cannot be understood is counted and logged with its topic, and changes
nothing; the feed goes on, whatever the message held.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from alarmgw.clock import Clock
from alarmgw.model import Device, Reading

from .json_map import PayloadError
from .mqtt_link import BrokerSpec, subscribe_forever

log = logging.getLogger(__name__)

# Anything on the site network can publish on the device broker, so a flood of bad messages
# must not become a flood of log lines (journald drops a service's lines past its rate
# limit, the useful ones with them): the first LOG_BURST malformed messages of each
# LOG_WINDOW_S are logged one by one, the rest counted in `malformed` and summed up.
LOG_BURST = 10
LOG_WINDOW_S = 60.0

Values = Mapping[str, float | int | bool]


@dataclass(frozen=True, slots=True)
class Heard:
    """A device's own message, and the field values it held."""

    device_id: str
    values: Values


@dataclass(frozen=True, slots=True)
class Availability:
    """The bridge's word on a device, or on itself: online or offline."""

    device_id: str
    online: bool


@dataclass(frozen=True, slots=True)
class Learnt:
    """Devices the bridge told of that the site did not know."""

    devices: tuple[Device, ...]


Routed = Heard | Availability | Learnt


# The connection for large_subscriptions: a 2 MiB device list plus topic and headers, and
# only a few of them waiting at once (4 x 2 MiB), instead of the device states' 2,000.
LARGE_PACKET = 2 * 1024 * 1024 + 1024
LARGE_QUEUED = 4


class Router(Protocol):
    bridge_id: str
    bridge_window_s: float
    windows: dict[str, float | None]  # device id -> supervision window, s (None: not by silence)

    @property
    def subscriptions(self) -> list[str]: ...

    @property
    def large_subscriptions(self) -> list[str]:
        """Topics whose messages may be up to LARGE_PACKET (a bridge's device list); they
        come on a connection of their own, so the big packet size is not everyone's."""
        ...

    def route(self, topic: str, payload: bytes) -> list[Routed]: ...


class LinkWatch:
    """Link verdicts of one bridge and its devices from when each was last heard; pure
    (monotonic seconds are passed in)."""

    def __init__(self, router: Router, start: float) -> None:
        self.router = router
        self.connected = False  # subscribed on the broker
        self.bridge_online: bool | None = None  # what bridge/state said on this connection
        self._bridge_ok = start  # last moment the bridge was known to be well
        self._listened = 0.0  # seconds of listening before _since
        self._since: float | None = None  # listening since (None: deaf)
        self._heard: dict[str, float] = {}  # device -> listening clock when last heard
        self._offline: set[str] = set()  # devices whose availability says offline

    def _clock(self, at: float) -> float:
        return self._listened + (at - self._since if self._since is not None else 0.0)

    def _listen(self, at: float) -> None:
        on = self.connected and self.bridge_online is not False
        if on and self._since is None:
            self._since = at
        elif not on and self._since is not None:
            self._listened, self._since = self._clock(at), None

    def _bridge_lost(self, at: float) -> bool:
        if self.bridge_online is False:
            return True
        if self.connected and self.bridge_online:
            self._bridge_ok = at
            return False
        return at - self._bridge_ok > self.router.bridge_window_s

    def broker(self, up: bool, at: float) -> None:
        """The subscription came up, or the connection went down."""
        if not up and self.connected and self.bridge_online:
            self._bridge_ok = at  # well until this moment
        self.connected = up
        self.bridge_online = None  # a new connection says it again (retained)
        self._listen(at)

    def heard(self, device_id: str, at: float) -> None:
        self._heard[device_id] = self._clock(at)
        if self.bridge_online is not False:
            self._bridge_ok = at  # the bridge relayed it

    def availability(self, device_id: str, online: bool, at: float) -> None:
        if device_id == self.router.bridge_id:
            self.bridge_online = online
            self._listen(at)
        elif online:
            self._offline.discard(device_id)
        else:
            self._offline.add(device_id)

    def adopted(self, device_id: str, at: float) -> None:
        """A device new to the site is judged from now."""
        self._heard.setdefault(device_id, self._clock(at))

    def lost(self, device_id: str, at: float) -> bool:
        """Whether the link of the bridge or one of its devices is lost now."""
        if device_id == self.router.bridge_id:
            return self._bridge_lost(at)
        if device_id in self._offline:
            return True
        window = self.router.windows.get(device_id)
        return window is not None and self._clock(at) - self._heard.get(device_id, 0.0) > window

    def verdicts(self, at: float) -> dict[str, bool]:
        """`link_lost` of the bridge and of every device it has."""
        ids = [self.router.bridge_id, *self.router.windows]
        return {d: self.lost(d, at) for d in ids}


class MqttDeviceFeed:
    def __init__(
        self,
        routers: Sequence[Router],
        clock: Clock,
        on_readings: Callable[[Sequence[Reading]], None],
        *,
        adopt: Callable[[Sequence[Device]], None] | None = None,
    ) -> None:
        """`adopt` takes the devices a bridge tells of that the site did not know, before
        any reading of theirs is handed on."""
        self.routers = list(routers)
        self._clock = clock
        self._on_readings = on_readings
        self._adopt = adopt
        start = clock.monotonic()
        self.watches = [LinkWatch(r, start) for r in self.routers]
        self.latched: dict[str, dict[str, float | int | bool]] = {}  # last values heard, per device
        self.messages = 0
        self.malformed = 0
        self.retained = 0  # device states the broker kept from before: no sign of life now
        self.subscribed = asyncio.Event()  # set while the subscriptions are in place
        self.unsubscribed = asyncio.Event()  # and this while they are not
        self.unsubscribed.set()
        self._log_window_start = float("-inf")  # monotonic s
        self._logged = 0  # malformed messages logged in this window
        self._unlogged = 0  # and those only counted

    @property
    def subscriptions(self) -> list[str]:
        return [t for r in self.routers for t in r.subscriptions]

    def on_message(self, topic: str, payload: bytes, retained: bool = False) -> None:
        """Take one message: what it says is handed on, or it is malformed (counted,
        logged, nothing of it taken). Never raises for anything a payload holds. A device
        state the broker kept (`retained`) was said at some time before, so it is neither
        a reading nor a sign of life now; a retained device list or availability is the
        bridge's current word, and is taken."""
        self.messages += 1
        now, at = self._clock.now(), self._clock.monotonic()
        readings = []
        for router, watch in zip(self.routers, self.watches, strict=True):
            try:
                routed = router.route(topic, payload)
            except PayloadError as exc:
                self._malformed(topic, str(exc))
                return
            except Exception:  # a bug in a router: logged with its traceback, the feed goes on
                self._malformed(topic, "could not be routed (a bug)", bug=True)
                return
            for said in routed:
                if isinstance(said, Learnt):
                    self._adopted(said.devices, watch, at)
                elif isinstance(said, Availability):
                    watch.availability(said.device_id, said.online, at)
                    readings.append(Reading(said.device_id, now, {"link_lost": watch.lost(said.device_id, at)}))
                elif retained:
                    self.retained += 1
                else:
                    watch.heard(said.device_id, at)
                    if said.values:
                        self.latched.setdefault(said.device_id, {}).update(said.values)
                        readings.append(Reading(said.device_id, now, dict(said.values)))
        if readings:
            self._on_readings(readings)

    def _adopted(self, devices: Sequence[Device], watch: LinkWatch, at: float) -> None:
        for d in devices:
            watch.adopted(d.id, at)
        if self._adopt is not None:
            try:
                self._adopt(devices)
            except Exception:  # the feed goes on; the devices stay supervised here
                log.exception("could not adopt %s", ", ".join(d.id for d in devices))

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

    def broker_up(self) -> None:
        """The subscriptions are in place: silence counts from now."""
        self.subscribed.set()
        self.unsubscribed.clear()
        for w in self.watches:
            w.broker(True, self._clock.monotonic())

    def broker_down(self) -> None:
        """The connection is gone: nothing is heard until it is back."""
        self.subscribed.clear()
        self.unsubscribed.set()
        for w in self.watches:
            w.broker(False, self._clock.monotonic())

    def judge(self) -> list[Reading]:
        """The link verdict of every bridge and device, now; nothing else is repeated."""
        now, at = self._clock.now(), self._clock.monotonic()
        return [Reading(d, now, {"link_lost": lost}) for w in self.watches for d, lost in w.verdicts(at).items()]

    async def run(self, broker: BrokerSpec) -> None:
        """Subscribe on the site's device broker and take every message, until cancelled;
        reconnects with backoff. `subscribed` is set while the subscriptions hold. The
        large topics have a connection of their own."""
        large = {t for r in self.routers for t in r.large_subscriptions}

        async def connected() -> None:
            self.broker_up()

        def small(topic: str, payload: bytes, retained: bool) -> None:
            if topic not in large:  # comes on the other connection, whole
                self.on_message(topic, payload, retained)

        states = subscribe_forever(
            broker, self.subscriptions, small, self._clock, on_connect=connected, on_down=self.broker_down
        )
        lists = subscribe_forever(
            broker,
            sorted(large),
            self.on_message,
            self._clock,
            name="device lists",
            max_queued=LARGE_QUEUED,
            max_packet=LARGE_PACKET,
        )
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(states, name="device feed")
                if large:
                    tasks.create_task(lists, name="device lists")
                else:
                    lists.close()
        finally:
            self.broker_down()
