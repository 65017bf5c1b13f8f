"""Zigbee2MQTT-style detectors: the simulated devices' state published as a Zigbee2MQTT
bridge would, so the gateway's MQTT side meets the same topics and payload shapes as on
a real site. State is published when it changes and at every report interval anyway;
availability goes `offline` once a device has missed three check-ins (a silent fault)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping

import aiomqtt

from alarmgw.backoff import Backoff
from alarmgw.clock import Clock
from alarmgw.drivers.mqtt_link import BrokerSpec, stay_connected
from alarmgw.model import Device, DeviceKind
from alarmgw.tasks import cancel_and_wait, raise_if_cancelling

from .models import SimSite

log = logging.getLogger(__name__)

MISSED_CHECK_INS = 3
SCAN_S = 1.0


def battery_percent(volts: float) -> int:
    """A CR123A-class cell: 3.0 V and up is full, 2.5 V empty."""
    return max(0, min(100, round((volts - 2.5) / 0.5 * 100)))


def link_quality(rssi_dbm: float) -> int:
    """Zigbee LQI from RSSI: -100 dBm and below is 0, -40 dBm and above 255."""
    return max(0, min(255, round((rssi_dbm + 100) / 60 * 255)))


class Zigbee2MqttBridge:
    def __init__(
        self,
        broker: BrokerSpec,
        base_topic: str,
        bridge: Device,
        devices: Mapping[str, Device],  # friendly name -> device
        site: SimSite,
        clock: Clock,
        t0: float,
    ) -> None:
        self.broker = broker
        self.base = base_topic.rstrip("/")
        self.bridge = bridge
        self.devices = dict(devices)
        self.site = site
        self.clock = clock
        self.t0 = t0
        self._task: asyncio.Task[None] | None = None
        self._last: dict[str, bytes] = {}
        self._last_sent: dict[str, float] = {}
        self.published = 0

    def state(self, device: Device, t: float) -> tuple[dict[str, object], bool]:
        """The device's Zigbee2MQTT state object, and whether it is available."""
        v = self.site.values(device.id, t)
        doc: dict[str, object] = {
            "battery": battery_percent(float(v["battery_v"])),
            "voltage": round(float(v["battery_v"]) * 1000),
            "battery_low": bool(v["battery_low"]),
            "tamper": bool(v["tamper"]),
            "linkquality": link_quality(float(v.get("rssi_dbm", -70))),
        }
        doc["smoke" if device.kind is DeviceKind.SMOKE_DETECTOR else "occupancy"] = False
        available = float(v.get("link_age_s", 0)) <= MISSED_CHECK_INS * self.site.report_interval(device.id)
        return doc, available

    async def _publish_changes(self, client: aiomqtt.Client) -> None:
        t = self.clock.monotonic() - self.t0
        bridge_up = not self.site.offline(self.bridge.id, t)
        await self._send(
            client,
            f"{self.base}/bridge/state",
            json.dumps({"state": "online" if bridge_up else "offline"}).encode(),
            t,
            True,
        )
        if not bridge_up:
            return
        for name, device in self.devices.items():
            doc, available = self.state(device, t)
            state = {"state": "online" if available else "offline"}
            await self._send(client, f"{self.base}/{name}/availability", json.dumps(state).encode(), t, True)
            if available:
                await self._send(
                    client,
                    f"{self.base}/{name}",
                    json.dumps(doc).encode(),
                    t,
                    False,
                    every=self.site.report_interval(device.id),
                )

    async def _send(
        self, client: aiomqtt.Client, topic: str, payload: bytes, t: float, retain: bool, every: float | None = None
    ) -> None:
        due = every is not None and t - self._last_sent.get(topic, -1e9) >= every
        if self._last.get(topic) == payload and not due:
            return
        await client.publish(topic, payload, qos=1, retain=retain)
        self._last[topic] = payload
        self._last_sent[topic] = t
        self.published += 1

    async def _run(self) -> None:
        async def session(client: aiomqtt.Client) -> None:
            self._last.clear()  # a new connection: say everything again
            while True:
                raise_if_cancelling()
                await self._publish_changes(client)
                await self.clock.sleep_until(self.clock.monotonic() + SCAN_S)

        name = f"zigbee2mqtt simulator {self.bridge.id}"
        await stay_connected(self.broker, session, self.clock, name=name, backoff=Backoff(0.5, 5.0))

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"z2m:{self.bridge.id}")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
