"""The audit log: a row for every authenticated request, only a few rows a minute for junk that
anyone can send (the rest counted per reason and minute), and a retention the operator sets,
with rows inside it impossible to change or delete. On a real SQLite file and a real site
core that is never started (it opens no link)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alarmgw.clock import ManualClock, iso
from alarmgw.gateway.core import SiteCore
from alarmgw.gateway.operations import Operations
from alarmgw.gateway.site_file import load_site
from alarmgw.gateway.store import Store
from alarmgw.gateway.store.schema import STEPS
from tests.conftest import write_site

# The store's floor is taken from the system clock, so these tests live in the present.
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def core(tmp_path: Path) -> Iterator[SiteCore]:
    site = load_site(write_site(tmp_path, 1))
    with Store(site.store_path) as store:
        yield SiteCore(site, ManualClock(NOW.replace(second=0)), store)


def test_junk_costs_a_few_rows_a_minute_and_the_rest_is_counted(core: SiteCore) -> None:
    ops = Operations(core)
    clock = core.clock
    assert isinstance(clock, ManualClock)
    kinds = ("malformed", "bad_signature", "replayed")
    for minute in range(3):
        for i in range(5_000 // 3 + (minute == 0) * (5_000 % 3)):
            ops.refused_unverified(f"eve-{i}", "ack", kinds[i % 3], "unknown user or bad signature", "mqtt")
        clock.advance(60)
    ops.flush_refusals()

    rows = core.store.audit.entries()
    assert len(rows) == 3 * len(kinds)  # the first of each kind in each minute
    assert {r["user"] for r in rows} == {"eve-0", "eve-1", "eve-2"}
    assert all(r["verified"] is False and r["result"] == "refused" for r in rows)
    assert rows[0]["detail"] == "[malformed] unknown user or bad signature"
    counts = core.store.audit.refusal_counts()
    assert sum(c["count"] for c in counts) == 5_000
    assert {(c["minute"], c["reason"]) for c in counts} == {
        (iso(NOW.replace(second=0) + timedelta(minutes=m)), k) for m in range(3) for k in kinds
    }


def test_counts_reach_the_store_when_the_minute_turns(core: SiteCore) -> None:
    ops = Operations(core)
    for _ in range(10):
        ops.refused_unverified("?", "?", "too_large", "too big", "mqtt")
    assert core.store.audit.refusal_counts() == []  # counted in memory, no write per request
    assert isinstance(core.clock, ManualClock)
    core.clock.advance(60)
    ops.refused_unverified("?", "?", "too_large", "too big", "mqtt")
    assert [c["count"] for c in core.store.audit.refusal_counts()] == [10, 1]


async def test_every_authenticated_request_keeps_its_row(core: SiteCore) -> None:
    ops = Operations(core)
    for _ in range(5):
        await ops.perform("eng-1", "engineer", "faults", {}, "mqtt")
    rows = core.store.audit.entries()
    assert [(r["user"], r["command"], r["result"], r["verified"]) for r in rows] == [
        ("eng-1", "faults", "done", True)
    ] * 5


def test_rows_older_than_the_retention_go_and_younger_ones_cannot(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        for age in (500, 401, 399, 10, 0):
            store.audit.append(NOW - timedelta(days=age), f"u{age}", "status", {}, "done", "", "mqtt")
        store.audit.count_refusals({(NOW - timedelta(days=450), "mqtt", "malformed"): 7})
        store.audit.count_refusals({(NOW - timedelta(days=1), "mqtt", "malformed"): 3})
        conn = store.connection

        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM audit")  # nothing is pruned before the gateway prunes
        assert store.audit.prune(NOW - timedelta(days=400)) == 2
        assert [r["user"] for r in store.audit.entries()] == ["u399", "u10", "u0"]
        assert [c["count"] for c in store.audit.refusal_counts()] == [3]

        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM audit WHERE user = 'u399'")  # inside the window
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE audit SET result = 'done' WHERE user = 'u0'")
        with pytest.raises(sqlite3.IntegrityError, match="at least 30 days"):
            store.audit.prune(NOW - timedelta(days=5))  # not even the gateway's own pruning
        with pytest.raises(sqlite3.IntegrityError, match="at least 30 days"):
            conn.execute("UPDATE settings SET value = ? WHERE key = 'audit_pruned_before'", (iso(NOW),))
        conn.execute("DELETE FROM settings WHERE key = 'audit_pruned_before'")  # then nothing may go
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM audit WHERE user = 'u399'")
        assert len(store.audit.entries()) == 3


async def test_the_hourly_prune_keeps_400_days_by_default(core: SiteCore) -> None:
    audit = core.store.audit
    for age in (401, 399):
        audit.append(core.clock.now() - timedelta(days=age), f"u{age}", "status", {}, "done", "", "mqtt")
    (prune,) = [j for j in core.jobs if j.name == "history-prune@1h"]
    await prune.run()
    assert [r["user"] for r in audit.entries()] == ["u399"]


async def test_the_operator_sets_the_audit_retention(tmp_path: Path) -> None:
    (tmp_path / "engineers.yaml").write_text("users: {}\n")
    extra = (
        "uplink:\n  broker: {host: 127.0.0.1, port: 1}\n"
        "remote: {users_file: engineers.yaml, audit_retention_days: 90}\n"
    )
    site = load_site(write_site(tmp_path, 1, extra=extra))
    with Store(site.store_path) as store:
        core = SiteCore(site, ManualClock(NOW), store)
        for age in (91, 89):
            store.audit.append(NOW - timedelta(days=age), f"u{age}", "status", {}, "done", "", "mqtt")
        (prune,) = [j for j in core.jobs if j.name == "history-prune@1h"]
        await prune.run()
        assert [r["user"] for r in store.audit.entries()] == ["u89"]


def test_a_store_of_the_last_release_keeps_its_audit_rows_unverified_unknown(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    old = sqlite3.connect(path, isolation_level=None)
    for step in STEPS[:2]:
        step(old)
    old.execute("PRAGMA user_version = 2")
    old.execute(
        "INSERT INTO audit (at, user, command, args, result, detail, channel) VALUES (?, 'eve', 'ack', '{}',"
        " 'refused', 'bad signature', 'mqtt')",
        (iso(NOW - timedelta(days=500)),),
    )
    old.close()
    with Store(path) as store:
        (row,) = store.audit.entries()
        assert (row["user"], row["verified"]) == ("eve", None)  # nobody can say now whether it was
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            store.connection.execute("DELETE FROM audit")
        assert store.audit.prune(NOW - timedelta(days=400)) == 1
