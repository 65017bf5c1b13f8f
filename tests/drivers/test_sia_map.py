"""SIA and Contact ID codes to readings, from the fault table; pure, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alarmgw.diagnostics.rules import load_fault_table
from alarmgw.drivers.dc09 import Decoder, Verdict
from alarmgw.drivers.sia_map import Change, CodeMap, HubZones, LinkTest, Report, Unknown, detection_time

TABLE = load_fault_table()
CODES = CodeMap(TABLE)
HUB = HubZones("hub-1", {3: "pir-1", 5: "smoke-1"})
T = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def sia(code: str, zone: int | None = None) -> Report:
    return Report("sia", code=code, zone=zone, area=1)


def cid(qualifier: int, event: int, zone: int = 0) -> Report:
    return Report("cid", cid_event=event, cid_qualifier=qualifier, zone=zone, area=1)


@pytest.mark.parametrize(
    ("code", "values"),
    [
        ("YT", {"battery_low": True}),
        ("YR", {"battery_low": False, "battery_missing": False}),  # the restore of both YT and YM
        ("YM", {"battery_missing": True}),
        ("XT", {"battery_low": True}),
        ("XR", {"battery_low": False}),
        ("AT", {"mains_fail": True}),
        ("AR", {"mains_fail": False}),
        ("TA", {"tamper": True}),
        ("TR", {"tamper": False}),
        ("ES", {"tamper": True}),
        ("EJ", {"tamper": False}),
        ("XQ", {"jamming": True}),
        ("XH", {"jamming": False}),
        ("FT", {"fire_trouble": True}),
        ("FJ", {"fire_trouble": False}),
        ("BT", {"sensor_fault": True}),
        ("BJ", {"sensor_fault": False}),
        ("YC", {"link_lost": True}),
        ("YK", {"link_lost": False}),
        ("ET", {"link_lost": True}),
        ("ER", {"link_lost": False}),
        ("XL", {"link_lost": True}),
        ("XC", {"link_lost": False}),
    ],
)
def test_sia_codes_map_onto_the_flags_the_fault_rules_watch(code: str, values: dict[str, bool]) -> None:
    assert CODES.meaning(sia(code, 3), HUB) == Change("pir-1", values, f"sia.{code}")


def test_every_sia_pair_of_the_table_is_in_the_map() -> None:
    """The map is the table's: each fault's trouble code sets its flag, its restore clears it."""
    for name, rule in TABLE.faults.items():
        flags = [c.field for c in rule.when if c.is_ is True]
        for codes in rule.codes.values():
            if codes.sia is None or not flags:
                continue
            trouble, restore = codes.sia
            assert all(CODES.sia[trouble] and dict(CODES.sia[trouble])[f] is True for f in flags), name
            assert all(dict(CODES.sia[restore])[f] is False for f in flags), name
    assert CODES.ambiguous == set()


def test_the_zone_names_the_device_and_zone_0_or_none_the_hub() -> None:
    assert CODES.meaning(sia("XT", 5), HUB) == Change("smoke-1", {"battery_low": True}, "sia.XT")
    assert CODES.meaning(sia("AT"), HUB) == Change("hub-1", {"mains_fail": True}, "sia.AT")
    assert CODES.meaning(sia("ES", 0), HUB) == Change("hub-1", {"tamper": True}, "sia.ES")


def test_contact_id_events_map_by_event_code_and_qualifier() -> None:
    assert CODES.meaning(cid(1, 384, 5), HUB) == Change("smoke-1", {"battery_low": True}, "cid.1384")
    assert CODES.meaning(cid(3, 384, 5), HUB) == Change("smoke-1", {"battery_low": False}, "cid.3384")
    assert CODES.meaning(cid(6, 383, 3), HUB) == Change("pir-1", {"tamper": True}, "cid.6383")  # still present
    assert CODES.meaning(cid(1, 301), HUB) == Change("hub-1", {"mains_fail": True}, "cid.1301")
    assert CODES.meaning(cid(1, 354), HUB) == Change("hub-1", {"link_lost": True}, "cid.1354")
    assert CODES.meaning(cid(1, 344, 3), HUB) == Change("pir-1", {"jamming": True}, "cid.1344")


def test_what_is_not_mapped_is_unknown_never_guessed() -> None:
    # A burglary alarm: no fault of the table; kept on the device it names.
    assert CODES.meaning(sia("BA", 3), HUB) == Unknown("pir-1", "code", "sia.BA", 3)
    # Contact ID 385 (chamber dirty) is judged on a number the report does not carry.
    assert CODES.meaning(cid(1, 385, 5), HUB) == Unknown("smoke-1", "code", "cid.1385", 5)
    # A qualifier Contact ID does not define.
    assert CODES.meaning(cid(2, 383, 3), HUB) == Unknown("pir-1", "code", "cid.2383", 3)
    # A zone the hub's map does not name: kept on the hub.
    assert CODES.meaning(sia("TA", 9), HUB) == Unknown("hub-1", "zone", "sia.TA", 9)
    assert Unknown("pir-1", "code", "sia.BA", 3).sample() == {"sia.BA": 3}


def test_periodic_reports_are_link_tests() -> None:
    assert CODES.meaning(Report("null"), HUB) == LinkTest("hub-1")
    assert CODES.meaning(sia("RP"), HUB) == LinkTest("hub-1")
    assert CODES.meaning(cid(1, 602), HUB) == LinkTest("hub-1")


def test_the_map_follows_the_table_it_is_given(tmp_path: Path) -> None:
    text = Path(__file__).parents[2].joinpath("diagnostics", "faults.yaml").read_text()
    text = text.replace("default: {contact_id: 383, sia: [TA, TR]}", "default: {contact_id: 383, sia: [QA, QR]}")
    # and a code that would both set and clear one flag is dropped, not guessed
    text = text.replace("sia: [XQ, XH]", "sia: [XQ, XQ]")
    (tmp_path / "faults.yaml").write_text(text)
    codes = CodeMap(load_fault_table(tmp_path / "faults.yaml"))
    assert codes.meaning(sia("QR", 3), HUB) == Change("pir-1", {"tamper": False}, "sia.QR")
    assert codes.meaning(sia("TA", 3), HUB) == Unknown("pir-1", "code", "sia.TA", 3)  # no longer the table's
    assert codes.ambiguous == {"XQ"}
    assert codes.meaning(sia("XQ", 3), HUB) == Unknown("pir-1", "code", "sia.XQ", 3)


def test_detection_time_is_the_events_own_within_the_window() -> None:
    assert detection_time(T - timedelta(seconds=5), T, 40, 20).at == T - timedelta(seconds=5)
    assert detection_time(T - timedelta(seconds=5), T, 40, 20).from_hub
    assert detection_time(T + timedelta(seconds=5), T, 40, 20).at == T  # never after it was received
    assert detection_time(T - timedelta(seconds=41), T, 40, 20).at == T
    assert not detection_time(None, T, 40, 20).from_hub


def test_from_bytes_to_a_reading_meaning() -> None:
    """A hub's frame, as bytes, all the way to what it means (CRC-16/ARC 88F5, length 0x3A)."""
    frame = b'\n88F5003A"SIA-DCS"0007R0L0#AAA[#AAA|Nri1/TA003]_07:59:55,01-05-2026\r'
    out = Decoder({"AAA": None}).decode(frame, T)
    assert out.verdict is Verdict.ACK and out.message is not None
    assert CODES.meaning(out.message.report, HUB) == Change("pir-1", {"tamper": True}, "sia.TA")
    assert detection_time(out.message.timestamp, T, 40, 20).at == T - timedelta(seconds=5)
