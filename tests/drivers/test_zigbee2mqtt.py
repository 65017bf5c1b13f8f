"""Zigbee2MQTT payloads as real devices publish them, through the mapping profile, and as
anything on the site network can publish them, through the device feed."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alarmgw.clock import ManualClock
from alarmgw.drivers.json_map import PayloadError, load_json_profile
from alarmgw.drivers.mqtt_devices import LOG_BURST, LOG_WINDOW_S, Availability, Heard, MqttDeviceFeed, Routed
from alarmgw.drivers.zigbee2mqtt import Zigbee2MqttRouter, parse_state
from alarmgw.model import Reading

PROFILE = load_json_profile(Path(__file__).parents[2] / "config/profiles/zigbee2mqtt.yaml")
ROUTER = Zigbee2MqttRouter("zigbee2mqtt", "zb", {"kitchen smoke": "s1", "hall/pir": "p1"}, PROFILE)

# Payload shapes from Zigbee2MQTT's device pages: a Heiman HS1SA smoke detector and an
# Aqara RTCGQ11LM motion sensor, with the keys those devices expose.
CASES = [
    (
        "zigbee2mqtt/kitchen smoke",
        b'{"battery":100,"battery_low":false,"linkquality":120,"smoke":false,"tamper":false,"test":true}',
        [
            Heard(
                "s1",
                {"battery_pct": 100, "battery_low": False, "link_quality": 120, "alarm": False, "tamper": False},
            )
        ],  # test: true is someone holding the test button, not sensor trouble
    ),
    (
        "zigbee2mqtt/hall/pir",
        b'{"battery":9,"voltage":2405,"occupancy":true,"linkquality":15,"illuminance":31,"device_temperature":22}',
        [Heard("p1", {"battery_pct": 9, "battery_v": pytest.approx(2.405), "alarm": True, "link_quality": 15})],
    ),
    ("zigbee2mqtt/kitchen smoke/availability", b'{"state":"offline"}', [Availability("s1", False)]),
    ("zigbee2mqtt/kitchen smoke/availability", b"online", [Availability("s1", True)]),  # legacy
    ("zigbee2mqtt/bridge/state", b'{"state":"offline"}', [Availability("zb", False)]),
    ("zigbee2mqtt/bridge/state", b"online", [Availability("zb", True)]),
    ("zigbee2mqtt/bridge/devices", b"[]", []),
    ("zigbee2mqtt/bridge/info", b'{"version":"1.40.2"}', []),
    ("zigbee2mqtt/kitchen smoke/set", b'{"test": true}', []),
    ("zigbee2mqtt/somebody else", b'{"battery": 3}', []),
    ("other/kitchen smoke", b'{"battery": 3}', []),
]


@pytest.mark.parametrize(("topic", "payload", "expected"), CASES)
def test_routes(topic: str, payload: bytes, expected: list[object]) -> None:
    assert ROUTER.route(topic, payload) == expected


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"not json {", "not JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"battery": "full"}', 'battery: expected a number, got "full"'),
        (b'{"battery": true}', "battery: expected a number, got true"),  # not 1 %
        (b'{"battery": 250}', "battery: 250 is outside the valid range 0 to 100"),
        (b'{"linkquality": 300}', "linkquality: 300 is outside the valid range 0 to 255"),
        (b'{"tamper": 1}', "tamper: expected true or false, got 1"),
        (b'{"battery": NaN}', "NaN is not a number"),
        (b'{"battery": ' + b"9" * 5000 + b"}", "a number of 5000 characters is over the 40-character limit"),
        (b'{"a":' * 5000, "nested deeper than 16 levels"),
        (b"{" + b" " * 70000 + b"}", "over the 65536-byte limit"),
        (b"\xff\xfe", "not JSON"),
    ],
)
def test_malformed_payloads_say_what_is_wrong(payload: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        ROUTER.route("zigbee2mqtt/kitchen smoke", payload)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b'{"state":"sleepy"}', 'availability state "sleepy" is neither online nor offline'),
        (b"maybe", "not JSON"),
        (b"{}", "availability state null is neither"),
        (b'{"state": true}', "availability state true is neither"),
        (b'{"state": ' + b"1" * 5000 + b"}", "a number of 5000 characters"),
        (b'{"state": ' + b"[" * 5000 + b"}", "nested deeper than"),
        (b" " * 70000 + b"online", "over the 65536-byte limit"),
    ],
)
def test_bad_availability(payload: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        parse_state(payload)


TOPICS = [
    "zigbee2mqtt/kitchen smoke",
    "zigbee2mqtt/kitchen smoke/availability",
    "zigbee2mqtt/bridge/state",
    "zigbee2mqtt/hall/pir",
]
json_ish = st.one_of(
    st.binary(max_size=100),
    st.lists(
        st.sampled_from(
            [
                b"{",
                b"}",
                b"[",
                b'"state"',
                b'"battery"',
                b":",
                b",",
                b"online",
                b'"offline"',
                b"true",
                b"NaN",
                b"1e999",
                b"9" * 4400,
                b"[" * 30,
                b"250",
                b"\xff",
            ]
        ),
        max_size=20,
    ).map(b"".join),
)


@given(st.sampled_from(TOPICS), json_ish)
def test_fuzz_routes_or_payload_error(topic: str, payload: bytes) -> None:
    with contextlib.suppress(PayloadError):
        ROUTER.route(topic, payload)


# --- the feed: every message goes through the routers, whatever it holds ---------------------


class Taken:
    def __init__(self) -> None:
        self.readings: list[Reading] = []

    def __call__(self, readings: Sequence[Reading]) -> None:
        self.readings.extend(readings)


HOSTILE = [
    b'{"battery": ' + b"9" * 5000 + b"}",  # int() of it raised ValueError: the device link restarted
    b'{"battery": -' + b"1" * 4400 + b"}",
    b'{"a":' * 5000 + b"1" + b"}" * 5000,  # RecursionError
    b"[" * 60000,
    b'{"battery": true}',  # read as 1 %: a false low_battery ticket
    b'{"battery": 250}',
    b'{"linkquality": 300}',
    b'{"battery": NaN}',
    b'{"battery": Infinity}',
    b'{"voltage": 1e999}',
    b'{"tamper": "yes"}',
    b"{" + b" " * 70000 + b"}",
    b"\xff\xfe",
]


def test_the_feed_counts_hostile_payloads_and_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    taken = Taken()
    feed = MqttDeviceFeed([ROUTER], ManualClock(), taken)
    with caplog.at_level(logging.WARNING, "alarmgw.drivers.mqtt_devices"):
        for payload in HOSTILE:
            feed.on_message("zigbee2mqtt/kitchen smoke", payload)
        feed.on_message("zigbee2mqtt/kitchen smoke/availability", b'{"state": ' + b"7" * 5000 + b"}")
        feed.on_message("zigbee2mqtt/kitchen smoke", b'{"battery": 80, "tamper": true}')
    assert (feed.messages, feed.malformed) == (len(HOSTILE) + 2, len(HOSTILE) + 1)
    assert feed.latched == {"s1": {"battery_pct": 80, "tamper": True}}  # nothing of the hostile ones
    assert [r.values for r in taken.readings] == [{"battery_pct": 80, "tamper": True}]
    logged = [r.getMessage() for r in caplog.records]
    assert all("malformed message on zigbee2mqtt/kitchen smoke" in m for m in logged)
    assert all(len(m) < 300 for m in logged)


class Broken:
    def __init__(self) -> None:
        self.bridge_id = "zb"
        self.bridge_window_s = 240.0
        self.windows: dict[str, float | None] = {}

    @property
    def subscriptions(self) -> list[str]:
        return ["zigbee2mqtt/#"]

    def route(self, topic: str, payload: bytes) -> list[Routed]:
        raise KeyError(topic)


def test_a_router_bug_is_logged_with_its_traceback_and_the_feed_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    feed = MqttDeviceFeed([Broken()], ManualClock(), Taken())
    with caplog.at_level(logging.WARNING, "alarmgw.drivers.mqtt_devices"):
        feed.on_message("zigbee2mqtt/kitchen smoke", b"{}")
        feed.on_message("zigbee2mqtt/kitchen smoke", b"{}")
    assert feed.malformed == 2
    (first, _) = caplog.records
    assert first.levelno == logging.ERROR and first.exc_info is not None and first.exc_info[0] is KeyError


def test_a_flood_of_malformed_messages_is_not_a_flood_of_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    feed = MqttDeviceFeed([ROUTER], clock, Taken())
    with caplog.at_level(logging.WARNING, "alarmgw.drivers.mqtt_devices"):
        for _ in range(1000):
            feed.on_message("zigbee2mqtt/kitchen smoke", b"junk")
        assert len(caplog.records) == LOG_BURST
        clock.advance(LOG_WINDOW_S)
        feed.on_message("zigbee2mqtt/kitchen smoke", b"junk")
    assert feed.malformed == 1001
    summary, again = (r.getMessage() for r in caplog.records[LOG_BURST:])
    assert summary.startswith(f"{1000 - LOG_BURST} more malformed messages")
    assert again.startswith("malformed message on zigbee2mqtt/kitchen smoke: not JSON")
