"""The device feed over time (a ManualClock): pushed messages are evidence once, every link
gets a verdict on every judge, and what the Diagnoser makes of them with the shipped fault
table."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from alarmgw.clock import ManualClock
from alarmgw.diagnostics.engine import Diagnoser, FaultRaised
from alarmgw.diagnostics.rules import load_fault_table
from alarmgw.drivers.json_map import load_json_profile
from alarmgw.drivers.mqtt_devices import MqttDeviceFeed
from alarmgw.drivers.zigbee2mqtt import Zigbee2MqttRouter
from alarmgw.gateway.config import DEFAULT_SUPERVISION_S
from alarmgw.model import Device, DeviceKind, Reading

from .test_zigbee_devices import AQARA, TUYA, payload

PROFILE = load_json_profile(Path(__file__).parents[2] / "config/profiles/zigbee2mqtt.yaml")
TABLE = load_fault_table()
JUDGE_S = 5.0
DEVICES = [
    Device("zb", DeviceKind.HOST, "zb", None, "", "zigbee2mqtt"),
    Device("smoke-k", DeviceKind.SMOKE_DETECTOR, "zb", "zb"),
    Device("pir-h", DeviceKind.PIR_DETECTOR, "zb", "zb"),
]


class Site:
    """A feed of one bridge into a Diagnoser, as the gateway wires them."""

    def __init__(self, *, window_s: float = 3600.0, bridge_window_s: float = 240.0) -> None:
        self.clock = ManualClock()
        self.devices = list(DEVICES)
        self.router = Zigbee2MqttRouter(
            "z2m",
            "zb",
            {"kitchen smoke": "smoke-k", "hall/pir": "pir-h"},
            PROFILE,
            window_s=window_s,
            bridge_window_s=bridge_window_s,
            adopt=True,
        )
        self.feed = MqttDeviceFeed([self.router], self.clock, self.ingest, adopt=self.adopt)
        self.diagnoser = Diagnoser(self.devices, TABLE, DEFAULT_SUPERVISION_S)
        self.raised: list[FaultRaised] = []
        self.adopted: list[Device] = []
        self.readings: list[Reading] = []

    def adopt(self, devices: Sequence[Device]) -> None:
        self.adopted.extend(devices)
        self.diagnoser.add(devices)

    def ingest(self, readings: Sequence[Reading]) -> None:
        self.readings.extend(readings)
        for r in readings:
            self.raised.extend(c for c in self.diagnoser.observe(r) if isinstance(c, FaultRaised))

    def publish(self, name: str, body: bytes) -> None:
        self.feed.on_message(f"z2m/{name}", body)

    def run(self, seconds: float) -> None:
        """Let the judge job run every JUDGE_S for this long."""
        for _ in range(round(seconds / JUDGE_S)):
            self.clock.advance(JUDGE_S)
            self.ingest(self.feed.judge())

    def faults(self) -> list[tuple[str, str]]:
        return sorted((f.device_id, f.fault) for f in self.raised)


def online(site: Site) -> Site:
    site.feed.broker_up()
    site.publish("bridge/state", b'{"state":"online"}')
    return site


def test_one_message_with_a_weak_link_is_not_a_sustained_condition() -> None:
    site = online(Site())
    site.publish("kitchen smoke", b'{"battery":100,"linkquality":5,"smoke":false}')
    site.run(300)
    assert site.faults() == []
    # Messages that span the minute are.
    for _ in range(5):
        site.publish("kitchen smoke", b'{"battery":100,"linkquality":5,"smoke":false}')
        site.run(15)
    assert site.faults() == [("smoke-k", "weak_signal")]


def test_the_count_debounce_counts_messages_not_judges() -> None:
    site = online(Site())
    for _ in range(2):
        site.publish("hall/pir", b'{"battery_low":true,"occupancy":false}')
        site.run(600)
    assert site.faults() == []  # low_battery wants 3 readings: 2 messages and 240 judges are 2
    site.publish("hall/pir", b'{"battery_low":true,"occupancy":false}')
    assert site.faults() == [("pir-h", "low_battery")]


def test_a_test_button_is_not_sensor_trouble() -> None:
    site = online(Site())
    for _ in range(5):
        site.publish("kitchen smoke", b'{"smoke":true,"test":true,"battery":100,"linkquality":120}')
        site.run(10)
    assert site.faults() == []
    assert all("sensor_fault" not in r.values for r in site.readings)


def test_a_tuya_low_battery_state_is_a_low_battery() -> None:
    site = online(Site())
    site.publish("bridge/devices", payload([TUYA]))
    for _ in range(3):
        site.publish("attic smoke", b'{"battery_state":"low","smoke":false,"tamper":false,"linkquality":90}')
        site.run(60)
    assert site.faults() == [("zb.attic_smoke", "low_battery")]
    assert site.feed.malformed == 0
    assert site.adopted == [Device("zb.attic_smoke", DeviceKind.SMOKE_DETECTOR, "zb", "zb", "", "TS0601_smoke_1")]


def test_every_judge_gives_every_link_a_verdict() -> None:
    site = online(Site())
    site.publish("bridge/devices", payload([AQARA]))  # hall/pir: named in the site file
    site.publish("bridge/devices", payload([TUYA]))
    site.readings.clear()
    site.run(JUDGE_S)
    assert {r.device_id: dict(r.values) for r in site.readings} == {
        "zb": {"link_lost": False},
        "smoke-k": {"link_lost": False},
        "pir-h": {"link_lost": False},
        "zb.attic_smoke": {"link_lost": False},
    }


def test_a_device_not_heard_for_its_window_is_comm_loss() -> None:
    site = online(Site(window_s=3600))
    site.run(3000)
    site.publish("kitchen smoke", b'{"battery":90}')
    site.run(3000)
    assert site.faults() == [("pir-h", "comm_loss")]  # never heard: counted from the start
    site.run(650)
    assert site.faults() == [("pir-h", "comm_loss"), ("smoke-k", "comm_loss")]
    assert all(not f.root_id for f in site.raised)


def test_availability_offline_is_an_immediate_verdict() -> None:
    site = online(Site())
    site.publish("hall/pir/availability", b'{"state":"offline"}')
    site.run(JUDGE_S)
    assert site.faults() == [("pir-h", "comm_loss")]


def test_a_bridge_offline_is_one_fault_listing_its_devices() -> None:
    site = online(Site(window_s=600))
    site.publish("bridge/devices", payload([TUYA]))
    site.publish("bridge/state", b'{"state":"offline"}')
    site.run(JUDGE_S * 2)
    (bridge,) = site.raised
    assert (bridge.device_id, bridge.fault) == ("zb", "comm_loss")
    assert set(bridge.affected) == {"smoke-k", "pir-h", "zb.attic_smoke"}
    site.run(7200)  # nothing is heard while the bridge is down, and nobody is blamed for it
    assert site.faults() == [("zb", "comm_loss")]


def test_an_unreachable_broker_is_the_bridge_lost_after_its_window() -> None:
    site = Site(bridge_window_s=240)  # the broker never answers
    site.run(240)
    assert site.faults() == []
    site.run(2 * JUDGE_S)
    (bridge,) = site.raised
    assert (bridge.device_id, bridge.fault) == ("zb", "comm_loss")
    assert set(bridge.affected) == {"smoke-k", "pir-h"}
    assert bridge.detected_at == site.clock.now() - timedelta(seconds=JUDGE_S)  # the first judge past 240 s


def test_the_window_runs_from_when_the_broker_went_away() -> None:
    site = online(Site(window_s=3600, bridge_window_s=240))
    site.run(1800)
    site.publish("kitchen smoke", b'{"battery":90}')
    site.publish("hall/pir", b'{"battery":90}')
    site.feed.broker_down()
    site.run(240)
    assert site.faults() == []
    site.run(2 * JUDGE_S)
    assert site.faults() == [("zb", "comm_loss")]
    site.run(7200)  # two hours deaf: the devices' silence is not counted
    site.feed.broker_up()
    site.publish("bridge/state", b"online")
    site.run(3000)
    assert site.faults() == [("zb", "comm_loss")]
    site.run(700)  # an hour of listening, and not a word
    assert site.faults() == [("pir-h", "comm_loss"), ("smoke-k", "comm_loss"), ("zb", "comm_loss")]


def test_a_connected_broker_without_a_bridge_is_the_bridge_lost() -> None:
    site = Site(bridge_window_s=240)
    site.feed.broker_up()  # nothing on bridge/state: no Zigbee2MQTT behind this base topic
    site.run(240 + 2 * JUDGE_S)
    assert site.faults() == [("zb", "comm_loss")]
