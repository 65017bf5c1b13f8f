"""The ticket store's outbox on a real SQLite file: order, bound, eviction, restarts."""

from __future__ import annotations

from pathlib import Path

from alarmgw.gateway.store import OutboxMessage, Store


def msg(kind: str, n: int) -> OutboxMessage:
    return OutboxMessage(kind, f"t/{kind}/{n}", f"{kind}-{n}".encode(), qos=0 if kind == "telemetry" else 1)


def test_outbox_keeps_order_and_survives_reopening(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        store.enqueue([msg("ticket", i) for i in range(5)])
    with Store(tmp_path / "s.db") as store:
        batch = store.outbox_batch()
        assert [m.payload for _, m in batch] == [f"ticket-{i}".encode() for i in range(5)]
        store.outbox_done(batch[0][0])
        assert [m.payload for _, m in store.outbox_batch(2)] == [b"ticket-1", b"ticket-2"]


def test_full_outbox_gives_up_old_telemetry_first_and_tickets_never(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db", outbox_max=100) as store:
        store.enqueue([msg("telemetry", i) for i in range(60)])
        store.enqueue([msg("ticket", i) for i in range(30)])
        store.enqueue([msg("fault", i) for i in range(30)])
        kinds = [m.kind for _, m in store.outbox_batch(1000)]
        assert kinds.count("ticket") == 30 and kinds.count("fault") == 30
        assert kinds.count("telemetry") == 40  # the 20 oldest went
        assert [m.payload for _, m in store.outbox_batch(1)] == [b"telemetry-20"]
        store.enqueue([msg("ticket", i) for i in range(30, 130)])  # more than the bound of events
        kinds = [m.kind for _, m in store.outbox_batch(1000)]
        assert kinds.count("telemetry") == 0 and kinds.count("ticket") == 130  # over the bound, none lost
        assert store.outbox_evicted == 60
