"""The MQTT client every part of the gateway uses, against a real mosquitto: an oversized
message never reaches the process, it is dropped at the broker."""

from __future__ import annotations

import asyncio

import aiomqtt
import pytest

from alarmgw.drivers.mqtt_link import MAX_INCOMING_PACKET, SUBSCRIBE_QOS, BrokerSpec, payload_bytes
from tests.broker import Mosquitto

pytestmark = pytest.mark.integration  # real peers: sockets, brokers, processes, a browser


async def test_the_broker_keeps_oversized_messages_from_the_gateway(mosquitto: Mosquitto) -> None:
    topic = "mqtt-link-test/oversized"
    async with BrokerSpec("127.0.0.1", mosquitto.port, client_id="mqtt-link-test").client() as ours:
        await ours.subscribe(f"{topic}/#", qos=1)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as sender:
            await sender.publish(f"{topic}/big", b"x" * (4 * MAX_INCOMING_PACKET), qos=1)
            await sender.publish(f"{topic}/small", b"after", qos=1)
        async with asyncio.timeout(10):
            got = []
            async for m in ours.messages:
                got.append((m.topic.value, len(payload_bytes(m))))
                if m.topic.value.endswith("/small"):
                    break
        assert got == [(f"{topic}/small", 5)]  # the big one was dropped by the broker, not read here


async def test_oversized_qos1_messages_never_stop_delivery(mosquitto: Mosquitto) -> None:
    """A broker that drops a QoS 1 message over our packet size may keep its in-flight slot;
    twenty such messages from anyone stopped every delivery to a QoS 1 subscription."""
    topic = "mqtt-link-test/stall"
    async with BrokerSpec("127.0.0.1", mosquitto.port, client_id="mqtt-link-stall").client() as ours:
        await ours.subscribe(topic, qos=SUBSCRIBE_QOS)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as sender:
            for _ in range(40):
                await sender.publish(topic, b"x" * (2 * MAX_INCOMING_PACKET), qos=1)
            await sender.publish(topic, b"still heard", qos=1)
        async with asyncio.timeout(10):
            async for m in ours.messages:
                assert payload_bytes(m) == b"still heard"
                break
