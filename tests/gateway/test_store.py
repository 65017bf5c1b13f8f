"""The ticket store on a real SQLite file: the outbox's order, bound, eviction and merging;
ticket writes with their messages in one transaction; durability; and stores made by every
earlier release."""

from __future__ import annotations

import json
import logging
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alarmgw.diagnostics.tickets import Ticket, TicketState
from alarmgw.gateway.messages import discovery_messages
from alarmgw.gateway.store import VERSION, OutboxMessage, Store, StoreError


def msg(kind: str, n: int) -> OutboxMessage:
    return OutboxMessage(kind, f"t/{kind}/{n}", f"{kind}-{n}".encode(), qos=0 if kind == "telemetry" else 1)


def test_outbox_keeps_order_and_survives_reopening(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        store.outbox.enqueue([msg("ticket", i) for i in range(5)])
    with Store(tmp_path / "s.db") as store:
        batch = store.outbox.batch()
        assert [m.payload for _, m in batch] == [f"ticket-{i}".encode() for i in range(5)]
        store.outbox.done(batch[0][0])
        assert [m.payload for _, m in store.outbox.batch(2)] == [b"ticket-1", b"ticket-2"]


def test_full_outbox_gives_up_old_telemetry_first_and_tickets_never(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db", outbox_max=100) as store:
        store.outbox.enqueue([msg("telemetry", i) for i in range(60)])
        store.outbox.enqueue([msg("ticket", i) for i in range(30)])
        store.outbox.enqueue([msg("fault", i) for i in range(30)])
        kinds = [m.kind for _, m in store.outbox.batch(1000)]
        assert kinds.count("ticket") == 30 and kinds.count("fault") == 30
        assert kinds.count("telemetry") == 40  # the 20 oldest went
        assert [m.payload for _, m in store.outbox.batch(1)] == [b"telemetry-20"]
        store.outbox.enqueue([msg("ticket", i) for i in range(30, 130)])  # more than the bound of events
        kinds = [m.kind for _, m in store.outbox.batch(1000)]
        assert kinds.count("telemetry") == 0 and kinds.count("ticket") == 130  # over the bound, none lost
        assert store.outbox.evicted == 60


def test_a_retained_message_replaces_the_queued_one_on_its_topic(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        configs = [("homeassistant/sensor/a/battery/config", b"v1"), ("homeassistant/sensor/b/battery/config", b"v1")]
        for _ in range(3):  # three starts (or Home Assistant restarts) before the broker is reachable
            store.outbox.enqueue(discovery_messages(configs))
        store.outbox.enqueue(discovery_messages([("homeassistant/sensor/a/battery/config", b"v2")]))
        queued = [(m.topic, m.payload) for _, m in store.outbox.batch(1000)]
        assert queued == [
            ("homeassistant/sensor/b/battery/config", b"v1"),
            ("homeassistant/sensor/a/battery/config", b"v2"),
        ]
        store.outbox.enqueue([msg("ticket", 1), msg("ticket", 1)])  # events are never merged
        assert store.outbox.depth() == 4


def test_an_outbox_over_its_bound_says_so_once_per_episode(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="alarmgw.gateway.store.outbox")
    with Store(tmp_path / "s.db", outbox_max=10) as store:
        store.outbox.enqueue([msg("telemetry", i) for i in range(8)])
        store.outbox.enqueue([msg("fault", i) for i in range(12)])
        assert store.outbox.evicted == 8 and store.outbox.depth() == 12 and store.outbox.overflowing
        for i in range(5):
            store.outbox.enqueue([msg("ticket", i)])
        warnings = [r.getMessage() for r in caplog.records]
        assert len(warnings) == 1 and "over its bound of 10" in warnings[0]
        for seq, _ in store.outbox.batch(20):  # the broker takes them
            store.outbox.done(seq)
        assert not store.outbox.overflowing
        assert "back within its bound" in caplog.records[-1].getMessage()


def test_the_store_syncs_every_commit_to_disk(tmp_path: Path) -> None:
    # A power cut, one of the faults this box reports, must not take the last tickets with it.
    with Store(tmp_path / "s.db") as store:
        assert store.connection.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert store.connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_ticket_written_by_any_process_queues_its_uplink_message(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as gateway_side:
        gateway_side.outbox.set_root("centre/site-7")  # the gateway with an uplink says where
    with Store(tmp_path / "s.db") as other:  # e.g. `alarmgw tickets ack` in another process
        t = other.tickets.write(ticket(), "opened", T0)
        other.tickets.move(t.id or 0, TicketState.ACKNOWLEDGED, T0 + timedelta(minutes=5), actor="tech-7")
        queued = [(m.topic, json.loads(m.payload)) for _, m in other.outbox.batch(10)]
    assert [(topic, doc["action"], doc["ticket"]["version"]) for topic, doc in queued] == [
        (f"centre/site-7/tickets/{t.id}", "opened", 1),
        (f"centre/site-7/tickets/{t.id}", "acknowledged", 2),
    ]


def test_without_an_uplink_tickets_queue_nothing(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        store.outbox.set_root(None)
        store.tickets.write(ticket(), "opened", T0)
        assert store.outbox.depth() == 0


def test_a_failed_write_leaves_neither_ticket_nor_message(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        store.outbox.set_root("r")
        t = store.tickets.write(ticket(), "opened", T0)
        stale = t.moved(TicketState.ACKNOWLEDGED, T0)
        store.tickets.move(t.id or 0, TicketState.ACKNOWLEDGED, T0, actor="a")  # somebody else was first
        with pytest.raises(StoreError, match="changed meanwhile"):
            store.tickets.write(stale, "acknowledged", T0, messages=[msg("fault", 1)])
        assert [m.kind for _, m in store.outbox.batch(10)] == ["ticket", "ticket"]
        assert [e["action"] for e in store.tickets.log(t.id or 0)] == ["opened", "acknowledged"]


SHIPPED = sorted((Path(__file__).parent / "shipped_stores").glob("*.sql"))


@pytest.mark.parametrize("schema", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_a_store_of_every_earlier_release_opens_and_keeps_its_tickets(schema: Path, tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:
        old.executescript(schema.read_text())
        columns = [r[1] for r in old.execute("PRAGMA table_info(tickets)")]
        row = {c: OLD_TICKET[c] for c in columns if c in OLD_TICKET}  # the rest: their defaults, or NULL
        old.execute(
            f"INSERT INTO tickets ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})", tuple(row.values())
        )
    old.close()
    with Store(path) as store:
        assert store.connection.execute("PRAGMA user_version").fetchone()[0] == VERSION
        (kept,) = store.tickets.all()
        assert (kept.device_id, kept.fault, kept.opened_at) == ("smoke-1", "low_battery", T0)
        assert kept.diagnosis == {}  # a column later releases added
        moved = store.tickets.move(kept.id or 0, TicketState.ACKNOWLEDGED, T0, actor="tech")
        assert moved.version == 2
        store.audit.append(T0, "eng", "status", {}, "done", "", "http")
        assert store.audit.entries()[-1]["channel"] == "http"
        store.escalations.record(kept.id or 0, "response", 1800.0, T0)
        store.history.add([("smoke-1", T0, {"battery_v": 2.9})])
        store.outbox.set_root("r")
    with Store(path) as again:  # opening an up-to-date store changes nothing
        assert again.outbox.root() == "r" and len(again.tickets.all()) == 1


def test_a_store_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer alarmgw"):
        Store(path)


T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
OLD_TICKET = {
    "site_id": "site",
    "device_id": "smoke-1",
    "device_kind": "smoke_detector",
    "fault": "low_battery",
    "title": "low battery",
    "location": "hall",
    "area": "city",
    "repair_class": "accessory",
    "impact": "low",
    "opened_at": "2026-03-02T09:30:00.000Z",
    "raised_at": "2026-03-02T09:30:00.000Z",
    "contact_id": 384,
    "sia": '["XT", "XR"]',
    "state": "open",
    "fault_active": 1,
    "occurrences": 1,
    "affected": "[]",
    "casualties": "[]",
    "evidence": "{}",
    "cause": "battery",
    "user_action": "",
    "in_warranty": 1,
    "version": 1,
}


def ticket() -> Ticket:
    return Ticket(
        None,
        "site",
        "smoke-1",
        "smoke_detector",
        "low_battery",
        "low battery",
        "hall",
        "city",
        "accessory",
        "low",
        T0,
        T0,
    )
