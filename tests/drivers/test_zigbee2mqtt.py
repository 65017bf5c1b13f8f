"""Zigbee2MQTT payloads as real devices publish them, through the mapping profile."""

from __future__ import annotations

from pathlib import Path

import pytest

from alarmgw.drivers.json_map import PayloadError, load_json_profile
from alarmgw.drivers.zigbee2mqtt import Zigbee2MqttRouter, parse_state

PROFILE = load_json_profile(Path(__file__).parents[2] / "config/profiles/zigbee2mqtt.yaml")
ROUTER = Zigbee2MqttRouter("zigbee2mqtt", "zb", {"kitchen smoke": "s1", "hall/pir": "p1"}, PROFILE)

# Payload shapes from Zigbee2MQTT's device pages: a Heiman HS1SA-style smoke detector and
# an Aqara RTCGQ11LM-style motion sensor, with the keys those devices expose.
CASES = [
    (
        "zigbee2mqtt/kitchen smoke",
        b'{"battery":100,"battery_low":false,"linkquality":120,"smoke":false,"tamper":false,"test":false}',
        [
            (
                "s1",
                {
                    "battery_pct": 100,
                    "battery_low": False,
                    "link_quality": 120,
                    "alarm": False,
                    "tamper": False,
                    "sensor_fault": False,
                },
            )
        ],
    ),
    (
        "zigbee2mqtt/hall/pir",
        b'{"battery":9,"voltage":2405,"occupancy":true,"linkquality":15,"illuminance":31,"device_temperature":22}',
        [("p1", {"battery_pct": 9, "battery_v": 2.405, "alarm": True, "link_quality": 15})],
    ),
    ("zigbee2mqtt/kitchen smoke/availability", b'{"state":"offline"}', [("s1", {"link_lost": True})]),
    ("zigbee2mqtt/kitchen smoke/availability", b"online", [("s1", {"link_lost": False})]),  # legacy
    ("zigbee2mqtt/bridge/state", b'{"state":"offline"}', [("zb", {"link_lost": True})]),
    ("zigbee2mqtt/bridge/state", b"online", [("zb", {"link_lost": False})]),
    ("zigbee2mqtt/bridge/devices", b"[]", []),
    ("zigbee2mqtt/kitchen smoke/set", b'{"test": true}', []),
    ("zigbee2mqtt/somebody else", b'{"battery": 3}', []),
    ("other/kitchen smoke", b'{"battery": 3}', []),
]


@pytest.mark.parametrize(("topic", "payload", "expected"), CASES)
def test_routes(topic: str, payload: bytes, expected: list[tuple[str, dict[str, object]]]) -> None:
    got = ROUTER.route(topic, payload)
    assert [(d, {k: pytest.approx(v) for k, v in vals.items()}) for d, vals in got] == expected


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"not json {", "not JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"battery": "full"}', "battery: expected a number or a boolean"),
        (b'{"battery": NaN}', "battery: expected a number"),
        (b"{" + b" " * 70000 + b"}", "over the 65536-byte limit"),
        (b"\xff\xfe", "not JSON"),
    ],
)
def test_malformed_payloads_say_what_is_wrong(payload: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        ROUTER.route("zigbee2mqtt/kitchen smoke", payload)


@pytest.mark.parametrize("payload", [b'{"state":"sleepy"}', b"maybe", b"{}"])
def test_bad_availability(payload: bytes) -> None:
    with pytest.raises(PayloadError):
        parse_state(payload)
