"""The uplink's payloads match the JSON Schemas published in docs/schemas."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema

from alarmgw.diagnostics.engine import FaultCleared, FaultRaised
from alarmgw.diagnostics.tickets import Ticket, TicketState
from alarmgw.gateway.payloads import fault_event, telemetry, ticket_event
from alarmgw.model import Reading

SCHEMAS = Path(__file__).parents[2] / "docs/schemas"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def check(name: str, doc: object) -> None:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    jsonschema.validate(json.loads(json.dumps(doc)), schema)


def test_ticket_events_match_their_schema() -> None:
    t = Ticket(
        7,
        "s1",
        "rep-2",
        "repeater",
        "comm_loss",
        "communication lost",
        "hall",
        "city",
        "equipment",
        "high: 3 devices behind it unreachable",
        T0,
        T0 + timedelta(seconds=10),
        333,
        ("ET", "ER"),
        affected=("a", "b", "c"),
        evidence={"link_age_s": 61, "link_lost": False},
        in_warranty=True,
    )
    check("ticket-event", ticket_event(t, "opened", T0))
    moved = t.moved(TicketState.ACKNOWLEDGED, T0 + timedelta(minutes=5)).restored(T0 + timedelta(minutes=9))
    doc = ticket_event(moved, "restored", T0 + timedelta(minutes=9))
    check("ticket-event", doc)
    assert doc["event_id"] == "s1:ticket:7:3"
    # The device went away during its repair and came back: a fourth clock, met.
    on_site = moved.moved(TicketState.DISPATCHED, T0 + timedelta(minutes=10)).moved(
        TicketState.ON_SITE, T0 + timedelta(minutes=50)
    )
    away = on_site.went_down(T0 + timedelta(minutes=55)).came_back(T0 + timedelta(minutes=95))
    doc = ticket_event(away, "back", T0 + timedelta(minutes=96))
    check("ticket-event", doc)
    assert doc["ticket"]["clocks"]["downtime"]["state"] == "met"  # type: ignore[index]
    assert doc["ticket"]["down_since"] == "2026-03-02T09:55:00.000Z"  # type: ignore[index]


def test_fault_and_telemetry_events_match_their_schemas() -> None:
    codes = {"title": "tamper", "contact_id": 383, "sia": ["TA", "TR"]}
    check("fault-event", fault_event("s1", FaultRaised("pir-1", "tamper", T0, T0), codes))
    check("fault-event", fault_event("s1", FaultCleared("pir-1", "tamper", T0), {**codes, "sia": None}))
    check("telemetry", telemetry("s1", Reading("pir-1", T0, {"battery_v": 3.01, "tamper": False})))


def test_the_asset_register_and_plan_match_their_schema() -> None:
    from datetime import date

    from alarmgw.diagnostics.assets import asset
    from alarmgw.diagnostics.maintenance import plan
    from alarmgw.gateway.messages import asset_messages

    site = asset("s1", "site", date(2026, 2, 16))
    assert site.warranty_until is not None
    devices = [asset("smoke-1", "smoke_detector", date(2026, 2, 16)), asset("pir-1", "pir_detector", None)]
    visits = plan(date(2026, 2, 16), site.warranty_until)
    (m,) = asset_messages("alarmgw/s1", "s1", T0, devices, site.warranty_until, visits)
    assert (m.topic, m.retain, m.qos) == ("alarmgw/s1/assets", True, 1)
    doc = json.loads(m.payload)
    check("assets", doc)
    assert doc["visits"][-1] == {
        "n": 7,
        "kind": "pre_expiry",
        "opens": "2027-02-06",
        "closes": "2027-02-15",
        "done_on": None,
    }
    assert doc["devices"][1] == {
        "device": "pir-1",
        "kind": "pir_detector",
        "commissioned_on": None,
        "warranty_until": None,
        "end_of_life": None,
    }
    check("assets", json.loads(asset_messages("alarmgw/s1", "s1", T0, [], None, [])[0].payload))
