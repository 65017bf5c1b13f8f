"""Home Assistant discovery through a real mosquitto, checked by a subscriber."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from alarmgw.gateway.runtime import free_port
from tests.broker import Mosquitto
from tests.conftest import harness_for, write_site

pytestmark = pytest.mark.integration  # real peers: sockets, brokers, processes, a browser


async def test_devices_appear_in_home_assistant_with_faults_as_binary_sensors(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    prefix, root = f"ha-{tmp_path.name}", f"gw-{tmp_path.name}"
    extra = (
        f"uplink:\n  broker: {{host: 127.0.0.1, port: {mosquitto.port}}}\n  topic_root: {root}\n"
        f"  telemetry_interval_s: 5\n  home_assistant_prefix: {prefix}\n"
    )
    site = write_site(tmp_path, free_port(), extra=extra)
    seen: dict[str, Any] = {}
    counts: dict[str, int] = {}
    changed = asyncio.Event()

    async def listen(client: aiomqtt.Client) -> None:
        async for m in client.messages:
            raw = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
            seen[m.topic.value] = json.loads(raw) if raw.startswith(b"{") else raw.decode()
            counts[m.topic.value] = counts.get(m.topic.value, 0) + 1
            changed.set()

    async def until(check: Any) -> None:
        async with asyncio.timeout(15):
            while not check():
                changed.clear()
                await changed.wait()

    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
        await client.subscribe(f"{prefix}/#")
        await client.subscribe(f"{root}/#")
        task = asyncio.create_task(listen(client))
        async with harness_for(site) as h:
            await h.start_gateway()
            tamper_cfg = f"{prefix}/binary_sensor/test-site_pir-2/tamper/config"
            battery_cfg = f"{prefix}/sensor/test-site_smoke-1/battery_v/config"
            await until(lambda: tamper_cfg in seen and battery_cfg in seen)
            tamper, battery = seen[tamper_cfg], seen[battery_cfg]
            assert tamper["device_class"] == "tamper" and tamper["availability_topic"] == f"{root}/status"
            assert tamper["state_topic"] == f"{root}/state/pir-2" and tamper["unique_id"] == "test-site_pir-2_tamper"
            assert seen[f"{prefix}/binary_sensor/test-site_pir-2/comm_loss/config"]["device_class"] == "connectivity"
            assert seen[f"{prefix}/binary_sensor/test-site_pir-2/low_battery/config"]["device_class"] == "battery"
            assert battery["device_class"] == "voltage" and battery["unit_of_measurement"] == "V"
            assert f"{prefix}/sensor/test-site_smoke-1/rssi_dbm/config" in seen
            assert not any("alarm_control_panel" in t for t in seen)

            h.sim.inject("pir-2", "tamper")
            await h.cycle(1)
            await until(lambda: seen.get(f"{root}/state/pir-2", {}).get("faults", {}).get("tamper") == "ON")

            before = counts[tamper_cfg]
            await client.publish(f"{prefix}/status", b"online")  # Home Assistant restarted
            await until(lambda: counts[tamper_cfg] > before)
        task.cancel()
