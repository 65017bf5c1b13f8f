"""A site gone dark is the centre's ticket: opened by a retained `offline` status or by
silence past `offline_after_s`, listing what the site had open, restored when the site is
back and sending; judged by one worker at a time. Real broker, real PostgreSQL, time moved
by hand."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from alarmgw.centre import db
from alarmgw.centre.config import SitesConfig
from alarmgw.centre.liveness import BackOnline, GoneDark, LivenessRunner
from alarmgw.clock import ManualClock, iso
from alarmgw.tasks import cancel_and_wait
from tests.broker import Mosquitto
from tests.centre.uplink import T0, telemetry_message, ticket_message
from tests.centre.workers import fresh_root, publish, scalar, until, worker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SITES = SitesConfig(offline_after_s=300, areas={"site-d": "suburb"})


async def dark_ticket(dsn: str, site: str) -> dict[str, object]:
    doc = await scalar(dsn, f"SELECT row_to_json(t) FROM centre_tickets t WHERE site_id = '{site}'")
    assert isinstance(doc, dict), doc
    return doc


async def test_a_retained_offline_status_opens_a_ticket_that_restores_when_the_site_sends_again(
    migrated: str, mosquitto: Mosquitto
) -> None:
    root = fresh_root()
    clock = ManualClock(T0)
    async with worker(migrated, mosquitto.port, root, f"a-{root}", clock=clock, sites=SITES) as w:
        await publish(
            mosquitto.port, [(f"{root}/site-d/status", b"online"), ticket_message("site-d", 4, 2, prefix=root)]
        )
        await until([w], lambda: w.counters.handled() == 2)
    clock.advance(60)
    # The site drops while no worker runs; the broker keeps its Last Will, retained.
    await publish(mosquitto.port, [(f"{root}/site-d/status", b"offline")], retain=True)
    async with db.pool(migrated, 2) as pool:
        runner = LivenessRunner(pool, SITES, clock)
        async with worker(
            migrated, mosquitto.port, root, f"b-{root}", clock=clock, sites=SITES, group="other"
        ) as w:  # a new session, in a group of its own: only the retained status can tell it
            await until([w], lambda: w.counters.handled() == 1)  # the retained status, on subscribing
            (d,) = await runner.round() or []
            assert isinstance(d, GoneDark) and d.detected_at == clock.now()
            t = await dark_ticket(migrated, "site-d")
            assert (t["fault"], t["state"], t["fault_active"]) == ("site_offline", "open", True)
            assert [(o["id"], o["state"]) for o in t["site_open"]] == [(4, "acknowledged")]  # type: ignore[attr-defined,index]
            clocks = t["ticket"]["clocks"]  # type: ignore[index]
            assert clocks["response"]["due"] == iso(clock.now() + timedelta(hours=1))
            assert clocks["arrival"]["due"] == iso(clock.now() + timedelta(hours=12))  # a suburban site
            assert await runner.round() == []  # judged again: not opened twice

            clock.advance(30)
            await publish(mosquitto.port, [(f"{root}/site-d/status", b"online")], retain=True)
            await until([w], lambda: w.counters.handled() == 2)
            assert await runner.round() == []  # online, but nothing sent since it went dark
            clock.advance(5)
            await publish(mosquitto.port, [telemetry_message("site-d", prefix=root)])
            await until([w], lambda: w.counters.handled() == 3)
            (back,) = await runner.round() or []
            assert isinstance(back, BackOnline)
    t = await dark_ticket(migrated, "site-d")
    assert (t["fault_active"], t["restored_at"] is not None) == (False, True)
    assert [h["action"] for h in t["history"]] == ["opened", "restored"]  # type: ignore[attr-defined,index]


async def test_silence_past_the_bound_while_online_opens_a_ticket_and_recurs_it(
    migrated: str, mosquitto: Mosquitto
) -> None:
    root = fresh_root()
    clock = ManualClock(T0)
    async with db.pool(migrated, 2) as pool, worker(migrated, mosquitto.port, root, clock=clock, sites=SITES) as w:
        runner = LivenessRunner(pool, SITES, clock)
        await publish(mosquitto.port, [(f"{root}/site-s/status", b"online"), telemetry_message("site-s", prefix=root)])
        await until([w], lambda: w.counters.handled() == 2)
        heard = clock.now()
        clock.advance(300)
        assert await runner.round() == []  # at the bound: not yet
        clock.advance(1)
        (d,) = await runner.round() or []
        assert isinstance(d, GoneDark) and d.detected_at == heard + timedelta(seconds=300) and "silent" in d.cause
        t = await dark_ticket(migrated, "site-s")
        assert t["ticket"]["clocks"]["arrival"]["due"] == iso(d.detected_at + timedelta(hours=2))  # type: ignore[index]

        await publish(mosquitto.port, [telemetry_message("site-s", n=1, prefix=root)])
        await until([w], lambda: w.counters.handled() == 3)
        assert [type(x) for x in await runner.round() or []] == [BackOnline]
        clock.advance(301)
        assert [type(x) for x in await runner.round() or []] == [GoneDark]
    t = await dark_ticket(migrated, "site-s")
    assert [h["action"] for h in t["history"]] == ["opened", "restored", "recurred"]  # type: ignore[attr-defined,index]
    assert (t["fault_active"], t["ticket"]["occurrences"], t["version"]) == (True, 2, 3)  # type: ignore[index]


async def test_a_dark_sites_ticket_escalates_before_its_clocks_break_once_per_mark(
    migrated: str, mosquitto: Mosquitto
) -> None:
    """The centre's own clocks escalate like a gateway's (30 and 10 minutes before the response
    is due, then at it; 30 minutes before the arrival): each mark once, whichever worker
    judges, and never after the ticket is closed."""
    root = fresh_root()
    clock = ManualClock(T0)
    told: list[tuple[str, int, str, float]] = []
    async with db.pool(migrated, 2) as pool, worker(migrated, mosquitto.port, root, clock=clock, sites=SITES) as w:
        runner, other = LivenessRunner(pool, SITES, clock), LivenessRunner(pool, SITES, clock)
        for r in (runner, other):
            r.on_escalations = lambda reached: told.extend((s, e.ticket_id, e.clock, e.mark_s) for s, e in reached)
        await publish(mosquitto.port, [(f"{root}/site-e/status", b"online"), telemetry_message("site-e", prefix=root)])
        await until([w], lambda: w.counters.handled() == 2)
        clock.advance(301)
        (d,) = await runner.round() or []
        assert isinstance(d, GoneDark)
        ticket = int(str((await dark_ticket(migrated, "site-e"))["id"]))
        assert told == []
        clock.advance(1798)  # the ticket opened a second ago, at detection
        await runner.round()
        assert told == []  # 30 min 1 s before the response is due
        clock.advance(1)
        await runner.round()
        await other.round()  # the next turn, in another worker: not told again
        assert told == [("site-e", ticket, "response", 1800.0)]
        clock.advance(1800)  # the response is due now
        await other.round()
        assert told[1:] == [("site-e", ticket, "response", 600.0), ("site-e", ticket, "response", 0.0)]
        clock.advance(1800)  # 30 minutes before the arrival (a city site: 2 h)
        await runner.round()
        assert told[3:] == [("site-e", ticket, "arrival", 1800.0)]
        assert await scalar(migrated, f"SELECT count(*) FROM centre_escalations WHERE ticket_id = {ticket}") == 4
        await (await db.connect(migrated)).execute(
            "UPDATE centre_tickets SET state = 'closed' WHERE id = %s", (ticket,)
        )
        clock.advance(3600)
        await runner.round()  # still dark: a new ticket, with clocks of its own
        assert [t for t in told[4:] if t[1] == ticket] == []


async def test_only_one_worker_judges_at_a_time(migrated: str) -> None:
    clock = ManualClock(T0)
    async with db.pool(migrated, 2) as pool, await db.connect(migrated) as other, other.transaction():
        await other.execute("SELECT pg_advisory_xact_lock(%s)", (db.LIVENESS_LOCK,))  # another worker's turn
        assert await LivenessRunner(pool, SITES, clock).round() is None
    async with db.pool(migrated, 2) as pool:
        assert await LivenessRunner(pool, SITES, clock).round() == []


async def test_a_worker_cut_off_from_the_broker_does_not_judge_silence(migrated: str) -> None:
    clock = ManualClock(T0)
    hears = False
    async with db.pool(migrated, 2) as pool:
        runner = LivenessRunner(pool, SITES, clock, ready=lambda: hears)
        task = asyncio.create_task(runner.run())

        async def turn() -> None:
            looked = asyncio.ensure_future(runner.looked.wait())
            await asyncio.sleep(0)  # the runner is asleep on the clock
            clock.advance(SITES.check_interval_s)
            await asyncio.wait_for(looked, 10)

        try:
            for _ in range(3):
                await turn()
            assert (runner.skipped, runner.rounds) == (3, 0)
            hears = True
            await turn()
            assert (runner.skipped, runner.rounds) == (3, 1)
        finally:
            await cancel_and_wait(task)
