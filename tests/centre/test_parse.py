"""Each uplink payload as the gateway makes it is understood; anything else becomes a dead
letter with a reason, in bounded time, and nothing raises."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alarmgw.centre.parse import (
    DEAD_PAYLOAD_KEEP,
    SCHEMAS,
    Assets,
    Dead,
    Event,
    Replayed,
    Status,
    Telemetry,
    TicketVersion,
    checker,
    parse,
    validator,
)
from tests.centre.uplink import (
    T0,
    escalation_message,
    fault_message,
    telemetry_message,
    ticket_message,
)

MAX = 256 * 1024


def one_dead(topic: str, payload: bytes) -> Dead:
    out = parse("alarmgw", topic, payload, MAX)
    assert len(out) == 1 and isinstance(out[0], Dead), out
    return out[0]


def test_a_ticket_event_gives_the_event_and_the_tickets_version() -> None:
    m = ticket_message("site-1", 7, 3)
    event, version = parse("alarmgw", m.topic, m.payload, MAX)
    assert isinstance(event, Event) and isinstance(version, TicketVersion)
    assert (event.kind, event.event_id, event.site_id) == ("ticket", "site-1:ticket:7:3", "site-1")
    assert (version.ticket_id, version.version, version.state, version.device) == (7, 3, "resolved", "smoke-1")
    assert version.opened_at == T0
    assert json.loads(version.ticket)["id"] == 7


@pytest.mark.parametrize("make", [fault_message, escalation_message])
def test_fault_and_escalation_events_are_events(make: object) -> None:
    m = make("site-1")  # type: ignore[operator]
    (event,) = parse("alarmgw", m.topic, m.payload, MAX)
    assert isinstance(event, Event) and event.event_id.startswith("site-1:")


def test_telemetry_status_and_replayed() -> None:
    m = telemetry_message("site-1")
    (t,) = parse("alarmgw", m.topic, m.payload, MAX)
    assert isinstance(t, Telemetry) and json.loads(t.payload)["values"]["battery_v"] == 2.9
    assert parse("alarmgw", "alarmgw/site-1/status", b"offline", MAX) == [Status("site-1", False)]
    assert parse("alarmgw", "alarmgw/site-1/status", b"online", MAX) == [Status("site-1", True)]
    (r,) = parse("alarmgw", "alarmgw/site-1/replayed", b"2026-01-05T08:00:00.000Z", MAX)
    assert r == Replayed("site-1", T0)


def good(kind: str = "ticket") -> tuple[str, bytes]:
    m = ticket_message("site-1", 1, 1) if kind == "ticket" else fault_message("site-1")
    return m.topic, m.payload


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("alarmgw/site-1/tickets/1", b"{not json", "not JSON"),
        ("alarmgw/site-1/tickets/1", b"\xff\xfe", "not UTF-8"),
        ("alarmgw/site-1/tickets/1", b"[]", "schema ticket-event.schema.json"),
        ("alarmgw/site-1/tickets/1", b'{"x": NaN}', "not JSON"),
        ("alarmgw/site-1/telemetry/d", b'{"x": 1e400}', "out of range"),
        ("alarmgw/site-1/tickets/1", b"[" * 100_000, "JSON nested too deep"),
        ("alarmgw/site-1/tickets/1", b'{"a": "\\u0000"}', "NUL"),
        ("alarmgw/site-1/tickets/1", b'{"a": "\\ud800"}', "surrogate"),
        ("alarmgw/site-1/status", b"maybe", "online or offline"),
        ("alarmgw/site-1/replayed", b"yesterday", "not an ISO 8601"),
        ("alarmgw/site-1/gossip/1", b"{}", "unknown topic shape"),
        ("alarmgw/site-1/tickets", b"{}", "unknown topic shape"),
        ("alarmgw/site-1/status/x", b"online", "unknown topic shape"),
        ("alarmgw/bad site!/status", b"online", "not a site id"),
        ("elsewhere/site-1/status", b"online", "outside"),
    ],
)
def test_bad_messages_are_dead_with_a_reason(topic: str, payload: bytes, reason: str) -> None:
    assert reason in one_dead(topic, payload).reason


def test_a_payload_naming_another_site_or_ticket_is_dead() -> None:
    m = ticket_message("site-2", 1, 1)
    assert "not the topic's site" in one_dead("alarmgw/site-1/tickets/1", m.payload).reason
    assert "not the topic's" in one_dead("alarmgw/site-2/tickets/9", m.payload).reason


def test_a_schema_failure_names_the_key() -> None:
    topic, payload = good()
    doc = json.loads(payload)
    doc["ticket"]["state"] = "lost"
    assert "ticket/state" in one_dead(topic, json.dumps(doc).encode()).reason


def test_a_huge_payload_is_refused_by_size_before_anything_reads_it() -> None:
    d = one_dead("alarmgw/site-1/tickets/1", b"x" * (10 * 1024 * 1024))
    assert "over the bound" in d.reason
    assert d.size == 10 * 1024 * 1024 and len(d.payload) == DEAD_PAYLOAD_KEEP


def test_a_version_that_is_not_a_whole_number_is_dead() -> None:
    topic, payload = good()
    doc = json.loads(payload)
    doc["ticket"]["version"] = 2.0
    assert "whole number" in one_dead(topic, json.dumps(doc).encode()).reason


# --- the two validators agree ---------------------------------------------------------------

WEIRD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=80),
    st.sampled_from(["", "open", "response", "city", "2026-01-05T09:00:00Z", "not a time", "٣", "x" * 300]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def _paths(doc: object, at: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    if isinstance(doc, dict):
        return [at, *(p for k, v in doc.items() for p in _paths(v, (*at, k)))]
    return [at]


@given(
    which=st.sampled_from(["tickets", "faults", "escalations", "telemetry"]),
    pick=st.integers(min_value=0),
    change=st.sampled_from(["replace", "drop", "add"]),
    value=WEIRD,
)
@settings(max_examples=400, deadline=None)
def test_the_compiled_checker_and_the_describing_validator_agree(
    which: str, pick: int, change: str, value: object
) -> None:
    """Every payload is judged by the compiled checker and only a wrong one is described by
    jsonschema: the two must say the same of real payloads with one thing changed."""
    m = {
        "tickets": ticket_message("site-1", 7, 3),
        "faults": fault_message("site-1", "smoke-1"),
        "escalations": escalation_message("site-1"),
        "telemetry": telemetry_message("site-1"),
    }[which]
    doc = json.loads(m.payload)
    paths = _paths(doc)
    path = paths[pick % len(paths)]
    if path:
        *parents, last = path
        holder = doc
        for k in parents:
            holder = holder[k]
        if change == "replace":
            holder[last] = value
        elif change == "drop":
            del holder[last]
        else:
            holder[f"{last}_extra"] = value
    schema_file = SCHEMAS[which]
    assert checker(schema_file).is_valid(doc) == (not list(validator(schema_file).iter_errors(doc)))


@pytest.mark.parametrize(
    ("where", "day"), [("visits", "2026-02-30"), ("devices", "2025-13-01"), ("done_on", "2026-02-29")]
)
def test_an_assets_day_not_in_the_calendar_is_dead_naming_it(where: str, day: str) -> None:
    """The schema checks only a day's shape; such a day once made every plan and report 500."""
    from datetime import date

    from tests.centre.test_plans import site_doc

    topic, payload = site_doc("site-1", date(2025, 3, 5))
    doc = json.loads(payload)
    if where == "visits":
        doc["visits"][0]["closes"] = day
    elif where == "devices":
        doc["devices"][0]["end_of_life"] = day
    else:
        doc["visits"][1]["done_on"] = day
    (found,) = parse("alarmgw", topic, json.dumps(doc).encode(), 1 << 20)
    assert isinstance(found, Dead) and "is not a day of the calendar" in found.reason
    assert isinstance(parse("alarmgw", topic, payload, 1 << 20)[0], Assets)
