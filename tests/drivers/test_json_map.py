"""JSON mapping profiles: what a profile may say, and what a payload may hold. Payloads
come from tables of what devices send and what an attacker on the site network can send;
then a fuzz: any JSON-ish bytes give field values or PayloadError, nothing else."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alarmgw.drivers.json_map import (
    MAX_DEPTH,
    MAX_PAYLOAD,
    JsonProfile,
    PayloadError,
    load_json_profile,
    map_payload,
    parse_json,
    parse_object,
)
from alarmgw.yamlfile import ConfigError

ZIGBEE = load_json_profile(Path(__file__).parents[2] / "config/profiles/zigbee2mqtt.yaml")

# Another MQTT device, as an operator would write it: signal in dBm, a contact given as
# strings and numbers, a value one level down.
OTHER_YAML = """\
name: other
paths:
  rssi: {field: rssi_dbm, type: number, range: [-120, 0]}       # dBm at the receiver
  contact: {field: tamper, type: flag, true: ['OPEN', 1], false: ['CLOSED', 0]}
  power.battery: {field: battery_pct, type: number, range: [0, 100]}
"""


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> JsonProfile:
    path = tmp_path_factory.mktemp("profiles") / "other.yaml"
    path.write_text(OTHER_YAML)
    return load_json_profile(path)


def nested(depth: int, inner: bytes = b"1") -> bytes:
    """`{"a":{"a":...inner...}}`, `depth` objects deep."""
    return b'{"a":' * depth + inner + b"}" * depth


# --- the profile ---------------------------------------------------------------------------

BAD_PROFILES = [
    ("battery: {field: battery_pct}", "paths.battery.type: Field required"),
    ("battery: {field: battery_pct, type: count, range: [0, 1]}", "paths.battery.type: Input should be"),
    ("battery: {field: battery_pct, type: number}", "paths.battery: a number needs range: [low, high]"),
    ("battery: {field: battery_pct, type: number, range: [100, 0]}", "not two finite numbers, low first"),
    ("battery: {field: battery_pct, type: number, range: [0, .inf]}", "not two finite numbers"),
    ("battery: {field: battery_pct, type: number, range: [0, 100], scale: .nan}", "scale: Input should be a finite"),
    ("battery: {field: battery_pct, type: number, range: [0, 1], true: ['x']}", "belong to a flag, not a number"),
    ("tamper: {field: tamper, type: flag, range: [0, 1]}", "range and scale belong to a number"),
    ("tamper: {field: tamper, type: flag, scale: 2}", "range and scale belong to a number"),
    ("tamper: {field: cover, type: flag}", "field 'cover' is not a reading field"),
    ("tamper: {field: tamper, type: flag, true: [ON]}", "true[0]: YAML reads an unquoted ON"),
    ("tamper: {field: tamper, type: flag, false: [1.5]}", "false[0]: expected a string or an integer, got 1.5"),
    ("tamper: {field: tamper, type: flag, true: 5}", "paths.tamper.true: Input should be a valid tuple"),
]


@pytest.mark.parametrize(("entry", "message"), BAD_PROFILES)
def test_a_wrong_profile_is_refused_at_load_naming_the_key(tmp_path: Path, entry: str, message: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(f"name: p\npaths:\n  {entry}\n")
    with pytest.raises(ConfigError) as err:
        load_json_profile(path)
    assert message in str(err.value)


def test_yaml_true_and_false_keys_are_the_value_lists(other: JsonProfile) -> None:
    contact = other.paths["contact"]
    assert (contact.true, contact.false) == (("OPEN", 1), ("CLOSED", 0))


def test_an_inverted_flag_reads_listed_values_the_other_way_too(tmp_path: Path) -> None:
    path = tmp_path / "door.yaml"
    path.write_text(
        "name: door\npaths:\n  door: {field: tamper, type: flag, invert: true, true: [shut], false: [open]}\n"
    )
    door = load_json_profile(path)
    assert [map_payload(door, p) for p in (b'{"door":"open"}', b'{"door":"shut"}', b'{"door":true}')] == [
        {"tamper": True},
        {"tamper": False},
        {"tamper": False},
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("  battery: {field: battery_pct, type: number, range: [0, 1], invert: true}\n", "invert belongs to a flag"),
        ("ignore: [battery]\n", "ignore: battery also under paths"),
        ("kinds: {smoke: smoke_detector}\n", "kinds: 'smoke' is not one of the paths"),
        ("kinds: {battery: toaster}\n", "kinds.battery: Input should be"),
    ],
)
def test_profile_ignore_and_kinds_are_checked(tmp_path: Path, extra: str, message: str) -> None:
    path = tmp_path / "p.yaml"
    if extra.startswith("  "):
        path.write_text("name: p\npaths:\n" + extra)
    else:
        path.write_text("name: p\npaths:\n  battery: {field: battery_pct, type: number, range: [0, 100]}\n" + extra)
    with pytest.raises(ConfigError) as err:
        load_json_profile(path)
    assert message in str(err.value)


def test_parse_json_takes_any_value_within_its_own_bound() -> None:
    assert parse_json(b"[1, {}]", 10) == [1, {}]
    with pytest.raises(PayloadError, match="payload of 11 bytes is over the 10-byte limit"):
        parse_json(b"[1, {}, []]", 10)
    with pytest.raises(PayloadError, match="nested deeper than"):
        parse_json(b"[" * 40 + b"]" * 40, 1000)


def test_every_number_of_the_shipped_profile_has_a_range() -> None:
    for path, fm in ZIGBEE.paths.items():
        assert (fm.type == "number") == (fm.range is not None), path


# --- payloads ------------------------------------------------------------------------------

GOOD = [
    (
        b'{"battery":100,"voltage":3000,"linkquality":255,"tamper":false}',
        {"battery_pct": 100, "battery_v": 3.0, "link_quality": 255, "tamper": False},
    ),
    (b'{"battery":0,"linkquality":0}', {"battery_pct": 0, "link_quality": 0}),  # the ends of the ranges
    (b'{"battery":55.5,"battery_low":null}', {"battery_pct": 55.5}),  # null: not reported
    (b'{"battery":7,"illuminance":99999,"color":{"x":0.3}}', {"battery_pct": 7}),  # unmapped keys ignored
    (b'\n {"smoke": true} \n', {"alarm": True}),
    (nested(MAX_DEPTH - 1, b'{"battery":1}'), {}),  # as deep as allowed, mapped keys absent
    # A Tuya smoke detector (TS0601): a coarse battery level instead of a percentage.
    (b'{"battery_state":"low","smoke":false,"tamper":false}', {"battery_low": True, "alarm": False, "tamper": False}),
    (b'{"battery_state":"middle"}', {"battery_low": False}),
    (b'{"battery_state":"high"}', {"battery_low": False}),
    # Someone holds the test button of a Heiman HS1SA: not a failed self-test.
    (b'{"smoke":true,"test":true,"battery_low":false}', {"alarm": True, "battery_low": False}),
    # A Moes smoke detector's self-test result is.
    (b'{"self_test":"check_failure"}', {"sensor_fault": True}),
    (b'{"self_test":"check_success"}', {"sensor_fault": False}),
    # A Sonoff SNZB-04: Zigbee2MQTT's contact is true when shut.
    (b'{"contact":false,"battery_low":false,"voltage":3000}', {"alarm": True, "battery_low": False, "battery_v": 3.0}),
    (b'{"contact":true}', {"alarm": False}),
    (b'{"water_leak":true}', {"alarm": True}),
]


@pytest.mark.parametrize(("payload", "expected"), GOOD)
def test_device_states(payload: bytes, expected: dict[str, object]) -> None:
    got = map_payload(ZIGBEE, payload)
    assert got == {k: pytest.approx(v) for k, v in expected.items()}
    assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in expected.items()}


HOSTILE = [
    # a bool is not a number, a number is not a bool (issue 11, item 3: battery true read as 1 %)
    (b'{"battery": true}', "battery: expected a number, got true"),
    (b'{"linkquality": false}', "linkquality: expected a number, got false"),
    (b'{"tamper": 1}', "tamper: expected true or false, got 1"),
    (b'{"tamper": "true"}', 'tamper: expected true or false, got "true"'),
    (b'{"battery": "95"}', 'battery: expected a number, got "95"'),
    (b'{"battery": [95]}', "battery: expected a number, got an array"),
    (b'{"battery": {"level": 95}}', "battery: expected a number, got an object"),
    # numbers no device can send
    (b'{"battery": 250}', "battery: 250 is outside the valid range 0 to 100"),
    (b'{"battery": -1}', "battery: -1 is outside the valid range 0 to 100"),
    (b'{"battery": 100.01}', "battery: 100.01 is outside"),
    (b'{"linkquality": 300}', "linkquality: 300 is outside the valid range 0 to 255"),
    (b'{"voltage": 230000}', "voltage: 230000 is outside the valid range 0 to 12000"),
    (b'{"battery": NaN}', "NaN is not a number"),
    (b'{"battery": Infinity}', "Infinity is not a number"),
    (b'{"battery": -Infinity}', "-Infinity is not a number"),
    (b'{"battery": 1e999}', "1e999 is beyond the range of a number"),
    (b'{"nobody reads this": NaN}', "NaN is not a number"),  # the whole payload is refused
    # a >4,300-digit integer made int() raise ValueError and restarted the device link
    (b'{"battery": ' + b"9" * 5000 + b"}", "a number of 5000 characters is over the 40-character limit"),
    (b'{"battery": -' + b"1" * 4301 + b"}", "a number of 4302 characters"),
    (b'{"other": ' + b"1" * 41 + b"}", "a number of 41 characters"),
    (b'{"battery": 0.' + b"0" * 100 + b"1}", "a number of 103 characters"),
    # nesting: past the limit, and far past it (the parser recursed until RecursionError)
    (nested(MAX_DEPTH + 1), f"nested deeper than {MAX_DEPTH} levels"),
    (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "nested deeper than"),
    (nested(5000), "nested deeper than"),
    (b"[" * 60000, "nested deeper than"),
    (b'{"a": "' + b"[" * 100 + b'"}', None),  # brackets in a string are not nesting: fine
    # not a JSON object, or not JSON
    (b"{" + b" " * MAX_PAYLOAD + b"}", f"over the {MAX_PAYLOAD}-byte limit"),
    (b"\xff\xfe{}", "not JSON: not UTF-8"),
    (b"\xef\xbb\xbf{}", "not JSON"),  # a UTF-8 byte order mark
    (b"", "not JSON"),
    (b"{} {}", "not JSON"),
    (b"null", "expected a JSON object, got null"),
    (b"42", "expected a JSON object, got 42"),
    (b'"' + b"x" * 1000 + b'"', 'expected a JSON object, got "xxxxxxxx'),
]


@pytest.mark.parametrize(("payload", "message"), HOSTILE)
def test_hostile_payloads_are_refused_saying_what_is_wrong(payload: bytes, message: str | None) -> None:
    if message is None:
        map_payload(ZIGBEE, payload)
        return
    with pytest.raises(PayloadError) as err:
        map_payload(ZIGBEE, payload)
    assert message in str(err.value)
    assert len(str(err.value)) < 200  # logged: a message never carries the payload along


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'{"rssi": -67}', {"rssi_dbm": -67}),
        (b'{"rssi": -120, "power": {"battery": 80}}', {"rssi_dbm": -120, "battery_pct": 80}),
        (b'{"contact": "OPEN"}', {"tamper": True}),
        (b'{"contact": 0}', {"tamper": False}),
        (b'{"contact": true}', {"tamper": True}),  # a JSON boolean is always a flag
        (b'{"power": 5}', {}),  # the path leads nowhere: absent
    ],
)
def test_another_device_profile(other: JsonProfile, payload: bytes, expected: dict[str, object]) -> None:
    assert map_payload(other, payload) == expected


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b'{"rssi": 40}', "rssi: 40 is outside the valid range -120 to 0"),  # +40 dBm: 10 W received
        (b'{"rssi": -121}', "rssi: -121 is outside"),
        (b'{"contact": 1.0}', "contact: 1.0 is neither of ['OPEN', 1] nor ['CLOSED', 0]"),  # listed 1, not 1.0
        (b'{"contact": "open"}', 'contact: "open" is neither of'),
        (b'{"power": {"battery": true}}', "power.battery: expected a number, got true"),
    ],
)
def test_another_device_profile_refuses(other: JsonProfile, payload: bytes, message: str) -> None:
    with pytest.raises(PayloadError) as err:
        map_payload(other, payload)
    assert message in str(err.value)


# --- fuzz ----------------------------------------------------------------------------------

KEYS = ["battery", "battery_low", "voltage", "tamper", "linkquality", "smoke", "occupancy", "test", "x"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=30,
)
# Pieces of JSON and of hostile JSON, put together in any order: mostly not JSON at all,
# sometimes JSON with the numbers, nesting and types a device never sends.
fragments = st.sampled_from(
    [
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        b'"',
        b"\\",
        b'"battery"',
        b'"tamper"',
        b'"linkquality"',
        b"true",
        b"null",
        b"NaN",
        b"-Infinity",
        b"1e999",
        b"250",
        b"-0",
        b"0.5",
        b"9" * 4400,
        b"[" * 40,
        b'{"a":' * 20,
        b"\xff",
        b"\x00",
        b" ",
        b"\xc3\xa9",
        b"\\u0000",
    ]
)
json_ish = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),  # NaN and Infinity included
    st.lists(fragments, max_size=30).map(b"".join),
    st.binary(max_size=200),
)


def assert_readings(profile: JsonProfile, out: dict[str, float | int | bool]) -> None:
    kinds = {fm.field: fm for fm in profile.paths.values()}
    for name, value in out.items():
        fm = kinds[name]
        if fm.type == "flag":
            assert isinstance(value, bool)
        else:
            assert isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            assert fm.range is not None
            low, high = sorted((fm.range[0] * fm.scale, fm.range[1] * fm.scale))
            assert low - 1e-9 <= value <= high + 1e-9


@settings(max_examples=300)
@given(json_ish)
def test_fuzz_any_bytes_give_readings_or_payload_error(payload: bytes) -> None:
    try:
        out = map_payload(ZIGBEE, payload)
    except PayloadError:
        return
    assert_readings(ZIGBEE, out)


@settings(max_examples=100)
@given(st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6))
def test_fuzz_json_objects_give_readings_in_range_or_payload_error(doc: dict[str, object]) -> None:
    try:
        out = map_payload(ZIGBEE, json.dumps(doc).encode())
    except PayloadError:
        return
    assert_readings(ZIGBEE, out)


@given(json_ish)
def test_fuzz_parse_object(payload: bytes) -> None:
    try:
        doc = parse_object(payload)
    except PayloadError:
        return
    assert isinstance(doc, dict)
