"""What a worker holds of what the broker sends it, with no I/O: messages as paho makes them,
handed to the worker's receive hook. Up to the Receive Maximum it takes everything; past it,
QoS 1 messages wait while `ingest.max_waiting_bytes` allows (each charged its payload and
MESSAGE_OVERHEAD) and are turned away after that, to be sent again; QoS 0 telemetry is
dropped past QOS0_QUEUE."""

from __future__ import annotations

import paho.mqtt.client as paho
from psycopg_pool import AsyncConnectionPool

from alarmgw.centre.config import IngestConfig, SitesConfig
from alarmgw.centre.ingest import MESSAGE_OVERHEAD, QOS0_QUEUE, IngestWorker, _paho
from alarmgw.clock import ManualClock
from alarmgw.drivers.mqtt_link import BrokerSpec

MIB = 1024 * 1024


def receiving(max_waiting_bytes: int, batch_max: int = 50) -> tuple[IngestWorker, paho.Client]:
    cfg = IngestConfig(batch_max=batch_max, max_waiting_bytes=max_waiting_bytes)
    pool = AsyncConnectionPool("postgresql://unused", open=False)  # never opened: nothing is written
    w = IngestWorker(BrokerSpec("127.0.0.1", 1883), "w-1", cfg, SitesConfig(), pool, ManualClock())
    return w, _paho(w._client())


def message(mid: int, qos: int, size: int) -> paho.MQTTMessage:
    m = paho.MQTTMessage(mid, b"alarmgw/site-1/faults/d1")
    m.payload, m.qos = b"x" * size, qos
    return m


async def test_past_the_receive_maximum_qos1_waits_within_the_byte_bound_then_is_turned_away() -> None:
    w, p = receiving(MIB)  # Receive Maximum 100
    for i in range(2000):
        p.on_message(p, None, message(i, 1, 300))  # type: ignore[misc]
    held = MIB // (300 + MESSAGE_OVERHEAD)
    assert len(w._inbox) == held > w.receive_max
    assert w.counters.overflowed == 2000 - held
    assert w._resend  # a new connection once the held ones are worked off


async def test_up_to_the_receive_maximum_everything_is_taken_whatever_its_size() -> None:
    w, p = receiving(MIB)
    for i in range(w.receive_max + 1):
        p.on_message(p, None, message(i, 1, 100 * 1024))  # type: ignore[misc]
    assert len(w._inbox) == w.receive_max and w.counters.overflowed == 1


async def test_qos0_telemetry_past_its_queue_is_dropped_and_counted() -> None:
    w, p = receiving(64 * MIB)
    for i in range(QOS0_QUEUE + 300):
        p.on_message(p, None, message(i, 0, 150))  # type: ignore[misc]
    assert len(w._inbox) == QOS0_QUEUE and w.counters.dropped_qos0 == 300
    assert not w._resend and w.counters.overflowed == 0
