"""Zigbee2MQTT's bridge/devices, sans-IO: devices mapped from what they expose, adopted
with stable ids, and every bound of the payload. Entries are shaped as Zigbee2MQTT 1.x/2.x
publishes them (definition.exposes as in zigbee-herdsman-converters)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from alarmgw.drivers.json_map import PayloadError, load_json_profile
from alarmgw.drivers.mqtt_devices import Availability, Heard, Learnt
from alarmgw.drivers.zigbee2mqtt import (
    LOG_DEVICES,
    MAX_DEVICES_PAYLOAD,
    MAX_ENTRIES,
    Zigbee2MqttRouter,
    device_profile,
    learnt_id,
    parse_devices,
)
from alarmgw.model import Device, DeviceKind

PROFILE = load_json_profile(Path(__file__).parents[2] / "config/profiles/zigbee2mqtt.yaml")


def binary(prop: str, on: object = True, off: object = False) -> dict[str, Any]:
    return {"type": "binary", "name": prop, "property": prop, "access": 1, "value_on": on, "value_off": off}


def numeric(prop: str, unit: str, low: float, high: float) -> dict[str, Any]:
    return {
        "type": "numeric",
        "name": prop,
        "property": prop,
        "access": 1,
        "unit": unit,
        "value_min": low,
        "value_max": high,
    }


LQI = numeric("linkquality", "lqi", 0, 255) | {
    "description": "Link quality (signal strength)",
    "category": "diagnostic",
}


def entry(name: str, ieee: str, model: str, vendor: str, exposes: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    return {
        "ieee_address": ieee,
        "type": kw.pop("type", "EndDevice"),
        "network_address": 0x1C2D,
        "supported": True,
        "disabled": False,
        "friendly_name": name,
        "definition": {"model": model, "vendor": vendor, "description": "", "supports_ota": False, "exposes": exposes},
        "power_source": "Battery",
        "interview_completed": True,
        "interviewing": False,
        "endpoints": {"1": {"bindings": [], "configured_reportings": [], "clusters": {"input": ["genBasic"]}}},
        **kw,
    }


COORDINATOR = {
    "ieee_address": "0x00124b00226d9b2e",
    "type": "Coordinator",
    "friendly_name": "Coordinator",
    "definition": None,
    "supported": True,
    "disabled": False,
    "interview_completed": True,
}
HEIMAN = entry(
    "kitchen smoke",
    "0x00124b0023a1b2c3",
    "HS1SA",
    "HEIMAN",
    [binary("smoke"), binary("battery_low"), numeric("battery", "%", 0, 100), binary("test"), LQI],
)
AQARA = entry(
    "hall/pir",
    "0x00158d0001e4f5a6",
    "RTCGQ11LM",
    "Aqara",
    [
        binary("occupancy"),
        numeric("illuminance", "lx", 0, 1000),
        numeric("device_temperature", "°C", -40, 125),
        numeric("power_outage_count", "", 0, 65535),
        numeric("battery", "%", 0, 100),
        numeric("voltage", "mV", 2500, 3200),
        numeric("detection_interval", "s", 2, 65535),
        LQI,
    ],
)
TUYA = entry(
    "attic smoke",
    "0xa4c138f0b1c2d3e4",
    "TS0601_smoke_1",
    "Tuya",
    [
        binary("smoke"),
        binary("tamper"),
        {"type": "enum", "name": "battery_state", "property": "battery_state", "values": ["low", "middle", "high"]},
        LQI,
    ],
)
SONOFF = entry(
    "back door",
    "0x00124b0025e6f7a8",
    "SNZB-04",
    "SONOFF",
    # Zigbee2MQTT's contact: value_on false (open), value_off true (shut)
    [binary("contact", False, True), binary("battery_low"), numeric("battery", "%", 0, 100), LQI],
)
BULB = entry(
    "porch light",
    "0x000d6ffffe1a2b3c",
    "LED1545G12",
    "IKEA",
    [
        {
            "type": "light",
            "features": [binary("state", "ON", "OFF") | {"access": 7}, numeric("brightness", "", 0, 254)],
        },
        LQI,
    ],
    type="Router",
)
UNSUPPORTED = entry("mystery", "0x0000000000000001", "", "", []) | {"definition": None, "supported": False}
SITE = [COORDINATOR, HEIMAN, AQARA, TUYA, SONOFF, BULB, UNSUPPORTED]


def payload(entries: list[dict[str, Any]]) -> bytes:
    return json.dumps(entries).encode()


def router(named: dict[str, str] | None = None, **kw: Any) -> Zigbee2MqttRouter:
    return Zigbee2MqttRouter("zigbee2mqtt", "zb", named or {}, PROFILE, adopt=True, **kw)


def test_the_devices_of_a_bridge_with_what_each_exposes() -> None:
    found = {d.friendly_name: d for d in parse_devices(payload(SITE))}
    assert sorted(found) == ["attic smoke", "back door", "hall/pir", "kitchen smoke", "mystery", "porch light"]
    assert sorted(found["kitchen smoke"].exposes) == ["battery", "battery_low", "linkquality", "smoke", "test"]
    assert found["kitchen smoke"].model == "HS1SA"
    assert sorted(found["porch light"].exposes) == ["brightness", "linkquality", "state"]  # a light's features
    assert found["mystery"].exposes == {}


def test_a_device_paired_today_is_adopted_with_its_kind() -> None:
    r = router({"kitchen smoke": "smoke-k"}, taken={"smoke-k", "main-panel"})
    (learnt,) = r.route("zigbee2mqtt/bridge/devices", payload(SITE))
    assert isinstance(learnt, Learnt)
    assert sorted(learnt.devices, key=lambda d: d.id) == [
        Device("zb.attic_smoke", DeviceKind.SMOKE_DETECTOR, "zb", "zb", "", "TS0601_smoke_1"),
        Device("zb.back_door", DeviceKind.PIR_DETECTOR, "zb", "zb", "", "SNZB-04"),
        Device("zb.hall_pir", DeviceKind.PIR_DETECTOR, "zb", "zb", "", "RTCGQ11LM"),
    ]
    # The light and the unsupported device are listed, not guessed.
    assert r.not_adopted == {
        "porch light": "exposes nothing that says what alarm device it is",
        "mystery": "not supported by Zigbee2MQTT",
    }
    assert set(r.windows) == {"smoke-k", "zb.attic_smoke", "zb.back_door", "zb.hall_pir"}
    # ... and their messages are routed from now on, mapped from what each exposes.
    assert r.route("zigbee2mqtt/attic smoke", b'{"battery_state":"low","smoke":false,"linkquality":80}') == [
        Heard("zb.attic_smoke", {"battery_low": True, "alarm": False, "link_quality": 80})
    ]
    assert r.route("zigbee2mqtt/back door", b'{"contact":false,"battery_low":false}') == [
        Heard("zb.back_door", {"alarm": True, "battery_low": False})
    ]
    assert r.route("zigbee2mqtt/back door/availability", b"offline") == [Availability("zb.back_door", False)]
    # The site file's name wins.
    assert r.route("zigbee2mqtt/kitchen smoke", b'{"smoke":false,"test":true}') == [Heard("smoke-k", {"alarm": False})]
    # The same payload again (it is retained: every reconnect) adopts nothing twice.
    assert r.route("zigbee2mqtt/bridge/devices", payload(SITE)) == []


def test_without_adoption_devices_are_listed_and_not_routed() -> None:
    r = Zigbee2MqttRouter("zigbee2mqtt", "zb", {"kitchen smoke": "smoke-k"}, PROFILE)
    assert r.route("zigbee2mqtt/bridge/devices", payload(SITE)) == []
    assert r.not_adopted["attic smoke"] == "not named in the site file"
    assert r.route("zigbee2mqtt/attic smoke", b'{"smoke":true}') == []
    assert set(r.windows) == {"smoke-k"}


def test_unknown_exposes_are_listed_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    gas = entry("boiler room", "0x00158d0002a1a1a1", "JTQJ-BF-01LM/BW", "Aqara", [binary("gas"), binary("smoke"), LQI])
    r = router()
    with caplog.at_level(logging.INFO, "alarmgw.drivers.zigbee2mqtt"):
        r.route("zigbee2mqtt/bridge/devices", payload([gas, AQARA]))
        r.route("zigbee2mqtt/bridge/devices", payload([gas, AQARA]))
    assert r.unknown_exposes == {"zb.boiler_room": ("gas",), "zb.hall_pir": ()}
    warned = [m.getMessage() for m in caplog.records if "not read" in m.getMessage()]
    assert warned == ["zb.boiler_room (JTQJ-BF-01LM/BW): exposes gas, not read by this gateway"]


def test_ids_are_valid_stable_and_never_taken_twice() -> None:
    twin = entry("kitchen_smoke", "0x00124b0023a1b2c4", "HS1SA", "HEIMAN", HEIMAN["definition"]["exposes"])
    long = entry("x" * 100, "0x00124b0023a1b2c5", "HS1SA", "HEIMAN", HEIMAN["definition"]["exposes"])
    ids = []
    for order in ([HEIMAN, twin, long], [long, twin, HEIMAN]):  # any order: the same ids
        (learnt,) = router().route("zigbee2mqtt/bridge/devices", payload(order))
        assert isinstance(learnt, Learnt)
        ids.append(sorted(d.id for d in learnt.devices))
    assert ids[0] == ids[1] == ["zb.0x00124b0023a1b2c4", "zb.kitchen_smoke", "zb." + "x" * 61]
    assert learnt_id("zb", "hall/pir ü") == "zb.hall_pir__"
    # An id the site already uses is not taken again.
    (learnt,) = router(taken={"zb.kitchen_smoke"}).route("zigbee2mqtt/bridge/devices", payload([HEIMAN]))
    assert isinstance(learnt, Learnt) and [d.id for d in learnt.devices] == ["zb.0x00124b0023a1b2c3"]


def test_a_renamed_device_keeps_its_id_and_a_removed_one_is_no_longer_supervised() -> None:
    r = router()
    r.route("zigbee2mqtt/bridge/devices", payload([HEIMAN, AQARA]))
    renamed = HEIMAN | {"friendly_name": "kitchen/smoke"}
    assert r.route("zigbee2mqtt/bridge/devices", payload([renamed])) == []
    assert r.route("zigbee2mqtt/kitchen/smoke", b'{"smoke":false}') == [Heard("zb.kitchen_smoke", {"alarm": False})]
    assert r.route("zigbee2mqtt/kitchen smoke", b'{"smoke":false}') == []
    assert r.windows == {"zb.kitchen_smoke": 90000.0, "zb.hall_pir": None}


def test_adoption_is_capped_per_bridge() -> None:
    many = [
        entry(f"pir {i}", f"0x{i:016x}", "RTCGQ11LM", "Aqara", AQARA["definition"]["exposes"][:1]) for i in range(5)
    ]
    r = router(max_adopted=3)
    (learnt,) = r.route("zigbee2mqtt/bridge/devices", payload(many))
    assert isinstance(learnt, Learnt) and len(learnt.devices) == 3
    assert r.not_adopted == {
        "pir 3": "over the 3 devices adopted per bridge",
        "pir 4": "over the 3 devices adopted per bridge",
    }


def test_a_device_is_read_with_its_own_values() -> None:
    exposes = {
        "water_leak": binary("water_leak", "ON", "OFF"),
        "battery_state": {"type": "enum", "property": "battery_state", "values": ["low", "medium", "high", "full"]},
    }
    own = device_profile(PROFILE, exposes)
    assert own.paths["water_leak"].true == ("ON",) and own.paths["water_leak"].false == ("OFF",)
    assert own.paths["battery_state"].false == ("middle", "medium", "high", "full")
    assert device_profile(PROFILE, {"smoke": binary("smoke")}) is PROFILE


def test_a_big_site_fits_and_a_bigger_payload_is_refused() -> None:
    site = [entry(f"pir {i}", f"0x{i:016x}", "RTCGQ11LM", "Aqara", AQARA["definition"]["exposes"]) for i in range(500)]
    assert len(payload(site)) < MAX_DEVICES_PAYLOAD
    assert len(parse_devices(payload(site))) == 500
    with pytest.raises(PayloadError, match=f"over the {MAX_DEVICES_PAYLOAD}-byte limit"):
        parse_devices(b"[" + b" " * MAX_DEVICES_PAYLOAD + b"]")


def test_a_flood_of_strange_devices_is_not_a_flood_of_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    strangers = [UNSUPPORTED | {"friendly_name": f"x{i}", "ieee_address": f"0x{i:016x}"} for i in range(MAX_ENTRIES)]
    r = router()
    with caplog.at_level(logging.INFO, "alarmgw.drivers.zigbee2mqtt"):
        assert r.route("zigbee2mqtt/bridge/devices", payload(strangers)) == []
    assert len(r.not_adopted) == MAX_ENTRIES
    assert len(caplog.records) == LOG_DEVICES + 1
    assert (
        caplog.records[-1].getMessage()
        == f"zigbee2mqtt/bridge/devices: {MAX_ENTRIES - LOG_DEVICES} more devices not logged one by one"
    )
    caplog.clear()
    with caplog.at_level(logging.INFO, "alarmgw.drivers.zigbee2mqtt"):
        r.route("zigbee2mqtt/bridge/devices", payload(strangers))  # the same again (retained): said already
        r.route("zigbee2mqtt/bridge/devices", payload([HEIMAN]))
    assert [m.getMessage() for m in caplog.records] == [
        "zb.kitchen_smoke: adopted 'kitchen smoke' (HS1SA) from zigbee2mqtt/bridge/devices as a smoke_detector"
    ]
    assert r.not_adopted == {}  # what the latest payload says
    with pytest.raises(PayloadError, match=f"{MAX_ENTRIES + 1} entries, over the {MAX_ENTRIES} looked at"):
        r.route("zigbee2mqtt/bridge/devices", payload([*strangers, UNSUPPORTED]))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"devices": []}', "bridge/devices: expected an array, got an object"),
        (b"[1]", r"bridge/devices\[0\]: expected an object, got 1"),
        (b'[{"friendly_name": 7, "ieee_address": "0x1"}]', "friendly_name and ieee_address must be strings"),
        (
            b'[{"friendly_name": "a", "ieee_address": "0x1", "definition": {"exposes": {}}}]',
            "exposes: expected an array",
        ),
        (
            b'[{"friendly_name": "a", "ieee_address": "0x1", "definition": {"exposes": [3]}}]',
            "exposes: expected objects",
        ),
        (b"[" * 40 + b"]" * 40, "nested deeper than"),
        (b"not json", "not JSON"),
    ],
)
def test_a_bad_devices_payload_says_what_is_wrong(body: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        router().route("zigbee2mqtt/bridge/devices", body)
