"""Zigbee2MQTT's topic tree, sans-IO: which message is about which device.

Zigbee2MQTT publishes each device's state as a JSON object on `<base>/<friendly_name>`,
its availability on `<base>/<friendly_name>/availability` (`{"state": "online"}`, or the
plain strings `online` / `offline` of older releases), and the bridge's own state on
`<base>/bridge/state` in the same two forms. Other bridge topics and `/set`, `/get`
requests are not device state.
"""

from __future__ import annotations

from collections.abc import Mapping

from .json_map import MAX_PAYLOAD, JsonProfile, PayloadError, brief, map_payload, parse_object

_REQUESTS = ("/set", "/get")
AVAILABILITY = "/availability"


def parse_state(payload: bytes) -> bool:
    """True for online, False for offline, in either the JSON or the legacy plain form;
    PayloadError for anything else."""
    if len(payload) <= MAX_PAYLOAD:  # a bigger one is refused by parse_object, uncopied
        text = payload.strip()
        if text in (b"online", b"offline"):
            return text == b"online"
    state = parse_object(payload).get("state")
    if state not in ("online", "offline"):
        raise PayloadError(f"availability state {brief(state)} is neither online nor offline")
    return bool(state == "online")


class Zigbee2MqttRouter:
    """Maps messages under one base topic to (device id, field values)."""

    def __init__(self, base_topic: str, bridge_id: str, devices: Mapping[str, str], profile: JsonProfile) -> None:
        self.base = base_topic.rstrip("/")
        self.bridge_id = bridge_id
        self.devices = dict(devices)  # friendly name -> device id
        self.profile = profile
        self.unknown = 0

    @property
    def subscriptions(self) -> list[str]:
        return [f"{self.base}/#"]

    def route(self, topic: str, payload: bytes) -> list[tuple[str, dict[str, float | int | bool]]]:
        """What the message says; raises PayloadError for a payload that is not understood."""
        if not topic.startswith(self.base + "/"):
            return []
        rest = topic[len(self.base) + 1 :]
        if rest == "bridge/state":
            return [(self.bridge_id, {"link_lost": not parse_state(payload)})]
        if rest.startswith("bridge/") or rest.endswith(_REQUESTS):
            return []
        if rest.endswith(AVAILABILITY):
            device = self.devices.get(rest[: -len(AVAILABILITY)])
            if device is None:
                self.unknown += 1
                return []
            return [(device, {"link_lost": not parse_state(payload)})]
        device = self.devices.get(rest)
        if device is None:
            self.unknown += 1
            return []
        return [(device, map_payload(self.profile, payload))]
