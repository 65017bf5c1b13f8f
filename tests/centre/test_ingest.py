"""Ingest through a real mosquitto into a real PostgreSQL, with payloads made by the
gateway's own code: each event once, ticket versions only forward, junk kept aside with its
reason while the stream goes on, and two workers sharing one stream."""

from __future__ import annotations

import json

import pytest

from alarmgw.centre.config import SitesConfig
from tests.broker import Mosquitto
from tests.centre.uplink import escalation_message, fault_message, telemetry_message, ticket_message
from tests.centre.workers import fresh_root, publish, scalar, until, worker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


async def test_a_sites_stream_lands_in_its_tables(migrated: str, mosquitto: Mosquitto) -> None:
    root = fresh_root()
    async with worker(migrated, mosquitto.port, root) as w:
        stream = [
            (f"{root}/site-1/status", b"online"),
            ticket_message("site-1", 1, 1, prefix=root),
            fault_message("site-1", prefix=root),
            ticket_message("site-1", 1, 2, prefix=root),
            escalation_message("site-1", prefix=root),
            telemetry_message("site-1", prefix=root),
            ticket_message("site-1", 2, 1, device="pir-1", prefix=root),
        ]
        await publish(mosquitto.port, stream)
        await until([w], lambda: w.counters.stored == len(stream))
    assert await scalar(migrated, "SELECT count(*) FROM events") == 5
    assert await scalar(migrated, "SELECT string_agg(kind, ',' ORDER BY kind) FROM events") == (
        "escalation,fault,ticket,ticket,ticket"
    )
    assert await scalar(migrated, "SELECT version FROM tickets WHERE site_id = 'site-1' AND ticket_id = 1") == 2
    assert await scalar(migrated, "SELECT state FROM tickets WHERE ticket_id = 1") == "acknowledged"
    assert await scalar(migrated, "SELECT payload->>'fault' FROM tickets WHERE ticket_id = 2") == "low_battery"
    assert await scalar(migrated, "SELECT \"values\"->>'battery_v' FROM telemetry_latest") == "2.9"
    assert await scalar(migrated, "SELECT status || ' ' || topic_root || ' ' || area FROM sites") == (
        f"online {root}/site-1 city"
    )
    assert await scalar(migrated, "SELECT last_heard_at IS NOT NULL FROM sites") is True
    assert w.counters.dead == 0 and w.counters.batches >= 1


async def test_duplicates_are_stored_once_and_an_older_version_never_overwrites(
    migrated: str, mosquitto: Mosquitto
) -> None:
    root = fresh_root()
    async with worker(migrated, mosquitto.port, root) as w:
        v3 = ticket_message("site-1", 5, 3, prefix=root)
        await publish(mosquitto.port, [v3])
        await until([w], lambda: w.counters.stored == 1)
        await publish(mosquitto.port, [ticket_message("site-1", 5, 2, prefix=root), v3, v3])
        await until([w], lambda: w.counters.handled() == 4)
    assert await scalar(migrated, "SELECT version FROM tickets WHERE ticket_id = 5") == 3
    assert await scalar(migrated, "SELECT state FROM tickets WHERE ticket_id = 5") == "resolved"
    assert await scalar(migrated, "SELECT count(*) FROM events") == 2  # v3 and v2, each once
    assert (w.counters.stored, w.counters.duplicates) == (2, 2)


async def test_telemetry_sent_again_or_older_is_a_duplicate_not_a_store(migrated: str, mosquitto: Mosquitto) -> None:
    """Only the latest reading of a device is kept: the same one again, or an older one,
    writes nothing and counts as a duplicate (the counters said `stored` before)."""
    root = fresh_root()
    async with worker(migrated, mosquitto.port, root) as w:
        newer = telemetry_message("site-1", n=5, prefix=root)
        await publish(mosquitto.port, [newer])
        await until([w], lambda: w.counters.stored == 1)
        await publish(mosquitto.port, [newer, telemetry_message("site-1", n=2, prefix=root)])
        await until([w], lambda: w.counters.handled() == 3)
        await publish(mosquitto.port, [newer, newer])  # in one batch too
        await until([w], lambda: w.counters.handled() == 5)
    assert (w.counters.stored, w.counters.duplicates) == (1, 4)
    assert await scalar(migrated, "SELECT count(*) FROM telemetry_latest") == 1


async def test_bad_payloads_are_dead_letters_with_reasons_and_the_stream_goes_on(
    migrated: str, mosquitto: Mosquitto
) -> None:
    root = fresh_root()
    good = ticket_message("site-1", 1, 1, prefix=root)
    doc = json.loads(good.payload)
    doc["ticket"]["state"] = "lost"
    bad = [
        (f"{root}/site-1/tickets/1", b"{not json"),
        (f"{root}/site-1/tickets/1", json.dumps(doc).encode()),
        (f"{root}/site-1/tickets/1", b"x" * (10 * 1024 * 1024)),
        (f"{root}/site-1/tickets/1/extra", good.payload),
        (f"{root}/site-2/tickets/1", good.payload),
        (f"{root}/site-1/status", b"sleepy"),
    ]
    async with worker(migrated, mosquitto.port, root) as w:
        await publish(mosquitto.port, [*bad, good])
        await until([w], lambda: w.counters.handled() == len(bad) + 1)
    assert w.counters.dead == len(bad) and w.counters.stored == 1
    assert await scalar(migrated, "SELECT count(*) FROM events") == 1
    reasons = str(await scalar(migrated, "SELECT string_agg(reason, ' | ' ORDER BY id) FROM dead_letters"))
    for expected in ("not JSON", "ticket/state", "over the bound", "unknown topic shape", "not the topic's site"):
        assert expected in reasons
    assert await scalar(migrated, "SELECT max(payload_size) FROM dead_letters") == 10 * 1024 * 1024
    assert await scalar(migrated, "SELECT max(length(payload)) FROM dead_letters") == 4096


async def test_a_site_not_listed_is_refused_when_only_listed_sites_are_taken(
    migrated: str, mosquitto: Mosquitto
) -> None:
    root = fresh_root()
    sites = SitesConfig(areas={"site-1": "suburb"}, accept_unlisted=False)
    async with worker(migrated, mosquitto.port, root, sites=sites) as w:
        await publish(mosquitto.port, [ticket_message("site-9", prefix=root), ticket_message("site-1", prefix=root)])
        await until([w], lambda: w.counters.handled() == 2)
    assert (w.counters.stored, w.counters.dead) == (1, 1)
    assert await scalar(migrated, "SELECT reason FROM dead_letters") == "unknown site 'site-9' (not under sites.areas)"
    assert await scalar(migrated, "SELECT string_agg(id || ':' || area, ',') FROM sites") == "site-1:suburb"


async def test_two_workers_in_one_group_share_the_stream_without_duplicates(
    migrated: str, mosquitto: Mosquitto
) -> None:
    root = fresh_root()
    n = 600
    stream = [fault_message(f"site-{i % 7}", f"dev-{i}", n=i, prefix=root) for i in range(n)]
    async with (
        worker(migrated, mosquitto.port, root, f"a-{root}") as a,
        worker(migrated, mosquitto.port, root, f"b-{root}") as b,
    ):
        await publish(mosquitto.port, stream)
        await until([a, b], lambda: a.counters.handled() + b.counters.handled() == n)
    assert a.counters.received > 0 and b.counters.received > 0  # both had a share
    assert a.counters.duplicates + b.counters.duplicates == 0  # nobody was given another's
    assert a.counters.stored + b.counters.stored == n
    assert await scalar(migrated, "SELECT count(DISTINCT event_id) FROM events") == n
