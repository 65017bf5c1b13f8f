"""Zigbee2MQTT devices through a real mosquitto and the real gateway, on a manual clock:
a broker that goes away is the bridge's comm_loss after its window, and pushed messages
are evidence once."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiomqtt
import pytest

from alarmgw.clock import ManualClock
from alarmgw.gateway.app import Gateway
from alarmgw.gateway.changes import DevicesJoined, ReadingsTaken
from alarmgw.gateway.runtime import free_port
from alarmgw.gateway.site_file import load_site
from alarmgw.model import Reading
from tests.broker import Mosquitto
from tests.conftest import POLL_S, poll_cycles

pytestmark = pytest.mark.integration  # real peers: sockets, brokers, processes, a browser

SITE = """\
site: {{id: z-site}}
store: {{path: tickets.db}}
poll: {{interval_s: {poll}}}
device_broker: {{host: 127.0.0.1, port: {port}}}
zigbee2mqtt:
  - id: zb-bridge
    base_topic: {base}
    devices:
      - {{id: smoke-k, friendly_name: kitchen smoke, kind: smoke_detector}}
      - {{id: pir-h, friendly_name: hall/pir, kind: pir_detector}}
"""
BASE = "z2m-gw"


@contextlib.asynccontextmanager
async def running(tmp_path: Path, port: int, clock: ManualClock) -> AsyncIterator[Gateway]:
    site = tmp_path / "site.yaml"
    site.write_text(SITE.format(port=port, base=BASE, poll=POLL_S))
    gw = await Gateway.open(load_site(site), clock=clock)
    task = asyncio.create_task(gw.run())
    try:
        async with asyncio.timeout(10):
            await gw.core.jobs[0].done.wait()  # the judge's first run: from here the clock moves the jobs
        yield gw
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await gw.aclose()


async def publish(port: int, messages: list[tuple[str, bytes]], *, retain: bool = False) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        for topic, payload in messages:
            await client.publish(f"{BASE}/{topic}", payload, qos=1, retain=retain)


async def heard(gw: Gateway, device_id: str, action: Callable[[], object]) -> None:
    """Run `action` (which publishes) and wait until the gateway took a reading of `device_id`."""
    async with gw.core.changes.subscribe() as changes, asyncio.timeout(10):
        await action()  # type: ignore[misc]
        while True:
            change = await changes.get()
            if isinstance(change, ReadingsTaken) and any(r.device_id == device_id for r in change.readings):
                return


def tickets(gw: Gateway) -> list[tuple[str, str]]:
    return sorted((t.device_id, t.fault) for t in gw.store.tickets.all())


async def subscribed(gw: Gateway) -> None:
    assert gw.core.polling.mqtt_feed is not None
    async with asyncio.timeout(10):
        await gw.core.polling.mqtt_feed.subscribed.wait()


async def test_a_broker_that_goes_away_is_the_bridge_lost_after_its_window(tmp_path: Path) -> None:
    broker = Mosquitto().start()
    clock = ManualClock()
    try:
        async with running(tmp_path, broker.port, clock) as gw:
            await subscribed(gw)
            await heard(gw, "zb-bridge", lambda: publish(broker.port, [("bridge/state", b'{"state":"online"}')]))
            await poll_cycles(gw, clock, 2)
            broker.stop()
            feed = gw.core.polling.mqtt_feed
            assert feed is not None
            async with asyncio.timeout(10):
                await feed.unsubscribed.wait()
            await poll_cycles(gw, clock, round(240 / POLL_S))  # the default bridge window: nothing yet
            assert tickets(gw) == []
            await poll_cycles(gw, clock, 2)
            assert tickets(gw) == [("zb-bridge", "comm_loss")]
            (ticket,) = gw.store.tickets.all()
            assert set(ticket.affected) == {"smoke-k", "pir-h"}
            await poll_cycles(gw, clock, round(3 * 3600 / POLL_S))  # hours without a broker: still one ticket
            assert tickets(gw) == [("zb-bridge", "comm_loss")]
    finally:
        broker.stop()


async def test_a_broker_never_reached_is_the_bridge_lost(tmp_path: Path) -> None:
    clock = ManualClock()
    async with running(tmp_path, free_port(), clock) as gw:
        await poll_cycles(gw, clock, round(240 / POLL_S) + 2)
        assert tickets(gw) == [("zb-bridge", "comm_loss")]


@pytest.fixture
async def gateway(tmp_path: Path, mosquitto: Mosquitto) -> AsyncIterator[tuple[Gateway, ManualClock]]:
    clock = ManualClock()
    async with running(tmp_path, mosquitto.port, clock) as gw:
        await subscribed(gw)
        await heard(gw, "zb-bridge", lambda: publish(mosquitto.port, [("bridge/state", b"online")]))
        yield gw, clock


async def test_one_weak_message_is_not_a_weak_signal(
    gateway: tuple[Gateway, ManualClock], mosquitto: Mosquitto
) -> None:
    gw, clock = gateway
    message = [("kitchen smoke", b'{"battery":100,"linkquality":5,"smoke":false,"tamper":false}')]
    await heard(gw, "smoke-k", lambda: publish(mosquitto.port, message))
    await poll_cycles(gw, clock, 60)  # five minutes of judging what one message said
    assert tickets(gw) == []


async def test_a_test_button_is_no_ticket(gateway: tuple[Gateway, ManualClock], mosquitto: Mosquitto) -> None:
    gw, clock = gateway
    for _ in range(4):
        message = [("kitchen smoke", b'{"battery":100,"battery_low":false,"smoke":true,"test":true}')]
        await heard(gw, "smoke-k", lambda m=message: publish(mosquitto.port, m))  # type: ignore[misc]
        await poll_cycles(gw, clock)
    assert tickets(gw) == []


async def test_a_tuya_low_battery_state_is_a_ticket(gateway: tuple[Gateway, ManualClock], mosquitto: Mosquitto) -> None:
    gw, clock = gateway
    for _ in range(3):
        message = [("hall/pir", b'{"battery_state":"low","occupancy":false,"linkquality":90}')]
        await heard(gw, "pir-h", lambda m=message: publish(mosquitto.port, m))  # type: ignore[misc]
        await poll_cycles(gw, clock)
    assert tickets(gw) == [("pir-h", "low_battery")]
    assert gw.core.stats()["mqtt_malformed"] == 0


async def test_the_views_keep_what_a_device_said_between_link_verdicts(
    gateway: tuple[Gateway, ManualClock], mosquitto: Mosquitto
) -> None:
    gw, clock = gateway
    message = [("kitchen smoke", b'{"battery":87,"linkquality":120,"smoke":false,"tamper":false}')]
    await heard(gw, "smoke-k", lambda: publish(mosquitto.port, message))
    await poll_cycles(gw, clock, 3)  # three link verdicts since
    values = gw.core.latest["smoke-k"].values
    assert (values["battery_pct"], values["link_quality"], values["link_lost"]) == (87, 120, False)


async def test_a_device_paired_on_the_bridge_is_monitored_without_editing_the_site_file(
    gateway: tuple[Gateway, ManualClock], mosquitto: Mosquitto
) -> None:
    gw, clock = gateway
    devices = [
        {
            "ieee_address": "0x00124b0023a1b2c9",
            "type": "EndDevice",
            "friendly_name": "attic smoke",
            "supported": True,
            "disabled": False,
            "definition": {
                "model": "HS1SA",
                "vendor": "HEIMAN",
                "exposes": [
                    {"type": "binary", "name": "smoke", "property": "smoke", "value_on": True, "value_off": False},
                    {"type": "binary", "name": "tamper", "property": "tamper", "value_on": True, "value_off": False},
                    {"type": "numeric", "name": "battery", "property": "battery", "unit": "%"},
                ],
            },
        }
    ]
    async with gw.core.changes.subscribe() as changes, asyncio.timeout(10):
        await publish(mosquitto.port, [("bridge/devices", json.dumps(devices).encode())], retain=True)
        while not isinstance(joined := await changes.get(), DevicesJoined):
            pass
    assert [d.id for d in joined.devices] == ["zb-bridge.attic_smoke"]
    opened = [("attic smoke", b'{"smoke":false,"tamper":true,"battery":90}')]
    await heard(gw, "zb-bridge.attic_smoke", lambda: publish(mosquitto.port, opened))
    await poll_cycles(gw, clock)
    assert tickets(gw) == [("zb-bridge.attic_smoke", "tamper")]
    (t,) = gw.store.tickets.all()
    assert t.device_kind == "smoke_detector"
    await publish(mosquitto.port, [("bridge/devices", b"")], retain=True)  # the broker forgets it


async def test_a_state_the_broker_kept_from_before_is_no_sign_of_life(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """A device set to retain its state has its last message handed to every new subscriber:
    it may be days old. It must neither open a ticket now nor restart the device's window."""
    old = [("kitchen smoke", b'{"battery":80,"tamper":true,"smoke":false}')]
    await publish(mosquitto.port, old, retain=True)
    clock = ManualClock()
    try:
        async with running(tmp_path, mosquitto.port, clock) as gw:
            await subscribed(gw)
            feed = gw.core.polling.mqtt_feed
            assert feed is not None
            # A message sent now arrives after what the broker kept: by then that was taken.
            await heard(gw, "zb-bridge", lambda: publish(mosquitto.port, [("bridge/state", b"online")]))
            assert feed.retained == 1
            await poll_cycles(gw, clock, 3)
            assert tickets(gw) == []
            assert "tamper" not in gw.core.latest.get("smoke-k", Reading("smoke-k", clock.now())).values
    finally:
        await publish(mosquitto.port, [("kitchen smoke", b"")], retain=True)


async def test_a_bridge_s_device_list_of_hundreds_of_kilobytes_arrives(
    gateway: tuple[Gateway, ManualClock], mosquitto: Mosquitto
) -> None:
    """Zigbee2MQTT's bridge/devices for a hundred devices is a few hundred kilobytes: more than
    any device state may be, so it comes on a connection that takes it."""
    gw, _ = gateway
    smoke = {"type": "binary", "name": "smoke", "property": "smoke", "value_on": True, "value_off": False}
    devices = [
        {
            "ieee_address": f"0x00124b00{i:08x}",
            "type": "EndDevice",
            "friendly_name": f"smoke {i}",
            "supported": True,
            "disabled": False,
            "definition": {"model": "HS1SA", "vendor": "HEIMAN", "description": "x" * 2500, "exposes": [smoke]},
        }
        for i in range(120)
    ]
    payload = json.dumps(devices).encode()
    assert len(payload) > 300_000
    try:
        async with gw.core.changes.subscribe() as changes, asyncio.timeout(10):
            await publish(mosquitto.port, [("bridge/devices", payload)])
            while not isinstance(joined := await changes.get(), DevicesJoined):
                pass
        assert len(joined.devices) == 120
    finally:
        await publish(mosquitto.port, [("bridge/devices", b"")], retain=True)
