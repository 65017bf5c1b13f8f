"""Each device's daily battery and signal at the centre (`telemetry_daily`): the arithmetic of a
day's minimum, maximum and last from tables; then the gateway's own telemetry through the
ingest batch into a real PostgreSQL, where the upsert must agree with that arithmetic however
the readings are split into batches, the monthly report charts the days, and the oldest days
are pruned."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest
from psycopg_pool import AsyncConnectionPool

from alarmgw.centre import batch, parse, telemetry_daily
from alarmgw.centre.config import SitesConfig
from alarmgw.centre.liveness import LivenessRunner
from alarmgw.centre.parse import Telemetry
from alarmgw.centre.service_report import Facts, Month, build, gather
from alarmgw.centre.service_report_page import render_html
from alarmgw.centre.telemetry_daily import Day, Span, days, merge, numbers, of_reading
from alarmgw.clock import ManualClock
from alarmgw.gateway.messages import telemetry_messages
from alarmgw.model import Reading

ROOT = "alarmgw"
SITE = "city-1"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- the arithmetic ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "kept"),
    [
        ({"battery_v": 2.9, "rssi_dbm": -71, "tamper": False}, (2.9, None, -71.0, None)),
        ({"battery_pct": 80, "link_quality": 120}, (None, 80.0, None, 120.0)),
        ({"battery_v": True, "rssi_dbm": False}, (None, None, None, None)),  # a true or false is no number
        ({"battery_v": 10**400}, (None, None, None, None)),  # past a double's range
        ({}, (None, None, None, None)),
    ],
)
def test_the_kept_quantities_of_a_reading(values: dict[str, object], kept: tuple[float | None, ...]) -> None:
    assert numbers(values) == kept


def day(samples: int, last_at: str, *spans: tuple[float, float, float] | None) -> Day:
    padded = [*spans, *([None] * (4 - len(spans)))]
    return Day(samples, at(last_at), tuple(None if s is None else Span(*s) for s in padded))


MERGE_TABLE = [
    (
        "a later reading: its value is the last",
        day(3, "2026-02-10T10:00", (2.90, 2.95, 2.91), (80, 81, 80)),
        day(1, "2026-02-10T11:00", (2.88, 2.88, 2.88), (82, 82, 82)),
        day(4, "2026-02-10T11:00", (2.88, 2.95, 2.88), (80, 82, 82)),
    ),
    (
        "an earlier reading arriving late: min and max take it, the last stays",
        day(3, "2026-02-10T10:00", (2.90, 2.95, 2.91)),
        day(1, "2026-02-10T09:00", (2.70, 2.70, 2.70)),
        day(4, "2026-02-10T10:00", (2.70, 2.95, 2.91)),
    ),
    (
        "a quantity the day had none of: taken whole, whenever",
        day(2, "2026-02-10T10:00", (2.90, 2.95, 2.91), None, None),
        day(1, "2026-02-10T09:00", None, None, (-70, -70, -70)),
        day(3, "2026-02-10T10:00", (2.90, 2.95, 2.91), None, (-70, -70, -70)),
    ),
    (
        "a later reading without a quantity: that quantity's last stays",
        day(2, "2026-02-10T10:00", (2.90, 2.95, 2.91), None, (-70, -65, -66)),
        day(1, "2026-02-10T11:00", None, None, (-80, -80, -80)),
        day(3, "2026-02-10T11:00", (2.90, 2.95, 2.91), None, (-80, -65, -80)),
    ),
    (
        "the day's latest reading sent again: nothing changes",
        day(2, "2026-02-10T10:00", (2.90, 2.95, 2.91)),
        day(1, "2026-02-10T10:00", (2.91, 2.91, 2.91)),
        day(2, "2026-02-10T10:00", (2.90, 2.95, 2.91)),
    ),
    (
        "a batch's several readings at once, the same time as the stored latest among them",
        day(2, "2026-02-10T10:00", (2.90, 2.95, 2.91)),
        day(2, "2026-02-10T10:00", (2.80, 2.99, 2.85)),
        day(4, "2026-02-10T10:00", (2.80, 2.99, 2.85)),
    ),
]


@pytest.mark.parametrize(("case", "stored", "incoming", "expected"), MERGE_TABLE, ids=[c[0] for c in MERGE_TABLE])
def test_a_day_folds_in_more_readings(case: str, stored: Day, incoming: Day, expected: Day) -> None:
    assert merge(stored, incoming) == expected


def reading(device: str, when: str, **values: float) -> Telemetry:
    return Telemetry(SITE, device, at(when), "{}", numbers(values))


def test_a_batch_folds_per_utc_day_site_and_device_each_reading_once() -> None:
    got = days(
        [
            reading("smoke-1", "2026-02-11T00:00:00", battery_v=2.87),  # the next day: a day of its own
            reading("smoke-1", "2026-02-10T23:59:59.999", battery_v=2.90, rssi_dbm=-70),
            reading("smoke-1", "2026-02-10T22:00", battery_v=2.93, rssi_dbm=-75),
            reading("smoke-1", "2026-02-10T22:00", battery_v=2.93, rssi_dbm=-75),  # the same reading twice
            reading("pir-2", "2026-02-10T12:00", rssi_dbm=-88),
            reading("host-1", "2026-02-10T12:00"),  # none of the kept quantities: no row
        ]
    )
    assert got == {
        (date(2026, 2, 10), SITE, "smoke-1"): day(
            2, "2026-02-10T23:59:59.999", (2.90, 2.93, 2.90), None, (-75, -70, -70)
        ),
        (date(2026, 2, 11), SITE, "smoke-1"): day(1, "2026-02-11T00:00", (2.87, 2.87, 2.87)),
        (date(2026, 2, 10), SITE, "pir-2"): day(1, "2026-02-10T12:00", None, None, (-88, -88, -88)),
    }
    assert of_reading(at("2026-02-10T12:00"), (None, None, None, None)) is None


def test_the_report_charts_the_daily_history_and_falls_back_without_it() -> None:
    """A device with days in the history is read from them; one without (a month before the
    history was kept) from its ticket's evidence and its latest reading, as before."""
    month = Month(2026, 2)
    history = [
        telemetry_daily.DeviceDay(
            "smoke-1", date(2026, 2, 10), 3, at("2026-02-10T23:00"), {"battery_v": Span(2.9, 3.0, 2.95)}
        ),
        telemetry_daily.DeviceDay(
            "smoke-1", date(2026, 2, 11), 2, at("2026-02-11T20:00"), {"battery_v": Span(2.8, 2.9, 2.85)}
        ),
        telemetry_daily.DeviceDay(
            "smoke-1", date(2026, 3, 1), 1, at("2026-03-01T01:00"), {"battery_v": Span(2.1, 2.1, 2.1)}
        ),
    ]
    evidence = {"ref": "9", "device": "pir-2", "opened_at": "2026-02-03T08:00:00.000Z", "evidence": {"rssi_dbm": -91}}
    facts = Facts(SITE, "city", month, at("2026-03-02T10:00"), [evidence], 1, [], None, [], history)
    seen = build(facts)["readings"]
    assert [d["device"] for d in seen["devices"]] == ["smoke-1", "pir-2"]  # type: ignore[index]
    smoke, pir = seen["devices"]  # type: ignore[index]
    assert smoke["battery_v"] == {"min": 2.8, "last": 2.85, "last_at": "2026-02-11T20:00:00.000Z", "count": 5}
    assert smoke["daily"] == {
        "battery_v": [["2026-02-10", 2.9, 3.0, 2.95, 3], ["2026-02-11", 2.8, 2.9, 2.85, 2]]  # March's is not February's
    }
    assert "daily" not in pir and pir["series"] == {"rssi_dbm": [["2026-02-03T08:00:00.000Z", -91.0]]}
    assert seen["sources"] == [
        "daily minimum, maximum and last reading",
        "ticket evidence at detection",
        "latest reading",
    ]  # type: ignore[index]
    facts = Facts(SITE, "city", month, at("2026-03-02T10:00"), [], 0, [], None, [], history)
    assert build(facts)["readings"]["sources"] == ["daily minimum, maximum and last reading"]  # type: ignore[index]


# --- through the ingest batch into PostgreSQL ---------------------------------------------------


async def ingest(pool: AsyncConnectionPool, batches: list[list[Reading]], received_at: datetime) -> None:
    """Each list of readings as one batch of the gateway's telemetry messages, as a worker takes it."""
    book = batch.SiteBook(ROOT, lambda s: "city")
    async with pool.connection() as conn:
        for readings in batches:
            incoming = [
                batch.Incoming(m.topic, m.payload, parse.parse(ROOT, m.topic, m.payload, 1 << 20))
                for m in telemetry_messages(f"{ROOT}/{SITE}", SITE, readings)
            ]
            written = await batch.write(conn, incoming, received_at, book)
            assert written.dead == 0, written.reasons


async def stored_days(pool: AsyncConnectionPool) -> dict[telemetry_daily.Key, Day]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT day, site_id, device_id, samples, last_at, {telemetry_daily.COLUMNS} FROM telemetry_daily"
        )
        out = {}
        for d, s, dev, samples, last_at, *v in await cur.fetchall():
            spans = tuple(None if v[3 * i] is None else Span(*v[3 * i : 3 * i + 3]) for i in range(4))  # type: ignore[arg-type]
            out[(d, str(s), str(dev))] = Day(int(str(samples)), last_at, spans)  # type: ignore[arg-type]
        return out


@pytest.mark.integration
@pytest.mark.timeout(60)
async def test_two_days_of_telemetry_are_two_daily_rows_the_report_charts(pool: AsyncConnectionPool) -> None:
    r = [
        Reading("smoke-1", at("2026-02-10T08:00"), {"battery_v": 2.95, "rssi_dbm": -70, "tamper": False}),
        Reading("smoke-1", at("2026-02-10T14:00"), {"battery_v": 2.91, "rssi_dbm": -82}),
        Reading("smoke-1", at("2026-02-10T23:59:30"), {"battery_v": 2.93, "rssi_dbm": -74}),
        Reading("smoke-1", at("2026-02-11T00:00:30"), {"battery_v": 2.92, "rssi_dbm": -73}),
        Reading("smoke-1", at("2026-02-11T12:00"), {"battery_v": 2.86, "rssi_dbm": -79}),
        Reading("smoke-1", at("2026-02-11T18:00"), {"battery_v": 2.88, "rssi_dbm": -77}),
    ]
    # One batch across midnight, one reading late (after a later one of its day), one sent twice.
    await ingest(pool, [[r[0]], [r[2], r[3]], [r[1]], [r[4], r[5]], [r[5]]], at("2026-02-11T18:00:05"))
    got = await stored_days(pool)
    assert got == {
        (date(2026, 2, 10), SITE, "smoke-1"): day(3, "2026-02-10T23:59:30", (2.91, 2.95, 2.93), None, (-82, -70, -74)),
        (date(2026, 2, 11), SITE, "smoke-1"): day(3, "2026-02-11T18:00", (2.86, 2.92, 2.88), None, (-79, -73, -77)),
    }
    async with pool.connection() as conn:
        report = build(await gather(conn, SITE, Month(2026, 2), at("2026-03-02T10:00")) or pytest.fail("no site"))
    (smoke,) = report["readings"]["devices"]  # type: ignore[index]
    assert smoke["battery_v"] == {"min": 2.86, "last": 2.88, "last_at": "2026-02-11T18:00:00.000Z", "count": 6}
    assert smoke["rssi_dbm"]["min"] == -82.0 and smoke["rssi_dbm"]["last"] == -77.0
    assert smoke["daily"] == {
        "battery_v": [["2026-02-10", 2.91, 2.95, 2.93, 3], ["2026-02-11", 2.86, 2.92, 2.88, 3]],
        "rssi_dbm": [["2026-02-10", -82.0, -70.0, -74.0, 3], ["2026-02-11", -79.0, -73.0, -77.0, 3]],
    }
    page = render_html(report)
    assert page.count("<svg") == 1 and "the lowest reading of the day and the last" in page


@pytest.mark.integration
@pytest.mark.timeout(60)
async def test_the_upsert_agrees_with_the_arithmetic_however_the_readings_are_batched(
    pool: AsyncConnectionPool,
) -> None:
    rng = random.Random(7)
    start = at("2026-02-27T20:00")  # across the end of February into March
    readings = [
        Reading(
            device,
            start + timedelta(minutes=rng.randrange(0, 60 * 30)),
            {"battery_v": round(rng.uniform(2.5, 3.1), 3), "rssi_dbm": rng.randrange(-95, -50), "link_quality": 90}
            | ({"battery_pct": rng.randrange(0, 101)} if device == "zb-1" else {}),
        )
        for device in ("smoke-1", "pir-2", "zb-1")
        for _ in range(40)
    ]
    unique = list({(x.device_id, x.at): x for x in readings}.values())
    rng.shuffle(unique)
    batches, i = [], 0
    while i < len(unique):
        n = rng.randrange(1, 9)
        batches.append(unique[i : i + n])
        i += n
    await ingest(pool, batches, at("2026-03-01T02:00"))
    parsed = [
        p
        for m in telemetry_messages(f"{ROOT}/{SITE}", SITE, unique)
        for p in parse.parse(ROOT, m.topic, m.payload, 1 << 20)
    ]
    expected = days(p for p in parsed if isinstance(p, Telemetry))
    assert len(expected) == 9  # three devices over 27 and 28 February and 1 March
    assert await stored_days(pool) == expected


@pytest.mark.integration
@pytest.mark.timeout(60)
async def test_the_oldest_days_are_pruned_where_dead_letters_are(pool: AsyncConnectionPool) -> None:
    now = at("2026-03-10T12:00")
    old = [Reading(f"d{i}", now - timedelta(days=d), {"battery_v": 3.0}) for i in range(3) for d in (0, 2, 3, 5)]
    await ingest(pool, [old], now)
    async with pool.connection() as conn:
        assert await telemetry_daily.prune(conn, now, keep_days=3, max_rows=2) == 2  # bounded per turn
    runner = LivenessRunner(pool, SitesConfig(telemetry_daily_keep_days=3), ManualClock(now))
    assert await runner.round() == []
    left = await stored_days(pool)
    assert sorted({k[0] for k in left}) == [date(2026, 3, 7), date(2026, 3, 8), date(2026, 3, 10)]  # 3 days kept
    assert len(left) == 9
