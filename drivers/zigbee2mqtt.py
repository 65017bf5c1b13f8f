"""Zigbee2MQTT's topic tree, sans-IO: which message is about which device.

Zigbee2MQTT publishes each device's state as a JSON object on `<base>/<friendly_name>`,
its availability on `<base>/<friendly_name>/availability` (`{"state": "online"}`, or the
plain strings `online` / `offline` of older releases), the bridge's own state on
`<base>/bridge/state` in the same two forms, and the devices it knows on
`<base>/bridge/devices` (retained: a JSON array of `{friendly_name, ieee_address, type,
definition: {model, vendor, description, exposes}}`; zigbee2mqtt.io, "MQTT Topics and
Messages"). Other bridge topics and `/set`, `/get` requests are not device state.

A device is mapped from what it exposes: the profile's keys it exposes are read (with the
device's own values for a binary's on/off or an enum's states), the first of the profile's
`kinds` it exposes says its kind, and what the profile does not know is listed, not
guessed. A device the site file does not name is adopted with an id of its own.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from alarmgw.model import Device

from .json_map import MAX_PAYLOAD, FieldMap, JsonProfile, PayloadError, brief, map_object, parse_json, parse_object
from .mqtt_devices import Availability, Heard, Learnt, Routed

log = logging.getLogger(__name__)

_REQUESTS = ("/set", "/get")
AVAILABILITY = "/availability"
DEVICES = "bridge/devices"
# Largest bridge/devices payload taken. A device's entry (definition, exposes, endpoints,
# bindings, reportings) is 2 to 4 KiB, so 100 devices are 200-400 KB; 2 MiB holds a bridge
# at MAX_ADOPTED. Bigger is refused (malformed) before it is parsed.
MAX_DEVICES_PAYLOAD = 2 * 1024 * 1024
# Devices adopted per bridge. Zigbee coordinators manage a few hundred devices at most; past
# this the rest are listed as not monitored, so a hostile payload cannot grow the site.
MAX_ADOPTED = 500
# Entries of one bridge/devices payload looked at: twice what is adopted leaves room for
# routers, bulbs and plugs; more is not a real bridge.
MAX_ENTRIES = 2 * MAX_ADOPTED
# Devices named one by one in the log per bridge/devices payload; the rest are summed up.
LOG_DEVICES = 10
# Zigbee2MQTT's own availability timeout for battery (passive) devices: 1500 min = 25 h.
DEFAULT_SUPERVISION_S = 25 * 3600.0
# The broker unreachable, or the bridge silent, this long: the bridge is comm_loss. Within
# EN 54-25's 300 s for a lost fire component, with room for a judge and the debounce, and
# longer than a broker's restart.
DEFAULT_BRIDGE_SUPERVISION_S = 240.0
_ID_CHARS = re.compile(r"[^A-Za-z0-9_.-]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
MAX_ID = 64  # the site file's device ids (gateway/config.py, Ident)


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


@dataclass(frozen=True, slots=True)
class BridgeDevice:
    """One entry of bridge/devices that says what the device is."""

    friendly_name: str
    ieee: str
    model: str
    exposes: Mapping[str, Mapping[str, Any]]  # top-level property -> its expose entry


def _properties(exposes: object, out: dict[str, Mapping[str, Any]]) -> None:
    """Top-level keys of a device's state: each expose's `property`; the features of a
    light, switch, lock ... are top-level keys too, those of a `composite` are nested under it."""
    if not isinstance(exposes, list):
        raise PayloadError(f"exposes: expected an array, got {brief(exposes)}")
    for e in exposes:
        if not isinstance(e, dict):
            raise PayloadError(f"exposes: expected objects, got {brief(e)}")
        prop = e.get("property")
        if isinstance(prop, str):
            out.setdefault(prop, e)
        if "features" in e and e.get("type") != "composite":
            _properties(e["features"], out)


def parse_devices(payload: bytes) -> list[BridgeDevice]:
    """The end devices of a bridge/devices payload that Zigbee2MQTT has a definition for
    (not the coordinator, not disabled ones); PayloadError for anything not of that shape."""
    doc = parse_json(payload, MAX_DEVICES_PAYLOAD)
    if not isinstance(doc, list):
        raise PayloadError(f"bridge/devices: expected an array, got {brief(doc)}")
    if len(doc) > MAX_ENTRIES:
        raise PayloadError(f"bridge/devices: {len(doc)} entries, over the {MAX_ENTRIES} looked at")
    out = []
    for i, entry in enumerate(doc):
        if not isinstance(entry, dict):
            raise PayloadError(f"bridge/devices[{i}]: expected an object, got {brief(entry)}")
        name, ieee, definition = entry.get("friendly_name"), entry.get("ieee_address"), entry.get("definition")
        if not isinstance(name, str) or not name or not isinstance(ieee, str) or not ieee:
            raise PayloadError(f"bridge/devices[{i}]: friendly_name and ieee_address must be strings")
        if entry.get("type") == "Coordinator" or entry.get("disabled") is True:
            continue
        exposes: dict[str, Mapping[str, Any]] = {}
        model = ""
        if isinstance(definition, dict):  # null: a device Zigbee2MQTT does not support
            _properties(definition.get("exposes", []), exposes)
            found = definition.get("model")
            model = found if isinstance(found, str) else ""
        out.append(BridgeDevice(name, ieee, _CONTROL.sub("", model)[:200], exposes))
    return out


def _own_values(fm: FieldMap, expose: Mapping[str, Any]) -> FieldMap:
    """A flag read with the device's own values: a binary's value_on / value_off when they
    are not JSON booleans, an enum's other states as false."""
    if fm.type != "flag":
        return fm
    if expose.get("type") == "binary":
        on, off = expose.get("value_on"), expose.get("value_off")
        if all(isinstance(v, str | int) and not isinstance(v, bool) for v in (on, off)):
            return fm.model_copy(update={"true": (on,), "false": (off,)})
    if expose.get("type") == "enum" and fm.true and isinstance(expose.get("values"), list):
        extra = tuple(v for v in expose["values"] if isinstance(v, str) and v not in fm.true and v not in fm.false)
        if extra:
            return fm.model_copy(update={"false": (*fm.false, *extra)})
    return fm


def device_profile(profile: JsonProfile, exposes: Mapping[str, Mapping[str, Any]]) -> JsonProfile:
    """The profile as one device reads it, from what it exposes."""
    paths = {p: _own_values(fm, exposes[p]) if p in exposes else fm for p, fm in profile.paths.items()}
    return profile if paths == profile.paths else profile.model_copy(update={"paths": paths})


def learnt_id(bridge_id: str, text: str) -> str:
    """`<bridge>.<text>` with what a device id cannot hold made `_`, at most MAX_ID long."""
    return f"{bridge_id}.{_ID_CHARS.sub('_', text)}"[:MAX_ID]


class Zigbee2MqttRouter:
    """Maps messages under one base topic to what they say about which device."""

    def __init__(
        self,
        base_topic: str,
        bridge_id: str,
        devices: Mapping[str, str],
        profile: JsonProfile,
        *,
        window_s: float | None = DEFAULT_SUPERVISION_S,
        bridge_window_s: float = DEFAULT_BRIDGE_SUPERVISION_S,
        unsupervised: Collection[str] = (),
        adopt: bool = False,
        taken: Collection[str] = (),
        max_adopted: int = MAX_ADOPTED,
    ) -> None:
        """`devices`: friendly name -> id of the devices the site file names; `unsupervised`:
        those of them not to be judged by silence (a remote control speaks only when
        pressed); `adopt`: take on the devices bridge/devices tells of; `taken`: ids
        already used on the site."""
        self.base = base_topic.rstrip("/")
        self.bridge_id = bridge_id
        self.devices = dict(devices)  # friendly name -> device id, as routed now
        self.profile = profile
        self.window_s = window_s
        self.bridge_window_s = bridge_window_s
        # Device id -> its supervision window (None: not judged by silence).
        self.windows: dict[str, float | None] = {
            d: None if d in unsupervised else window_s for d in self.devices.values()
        }
        self.unknown = 0  # messages about devices neither named nor learnt
        self.unknown_exposes: dict[str, tuple[str, ...]] = {}  # device id or name -> what is not understood
        self.not_adopted: dict[str, str] = {}  # friendly name -> why
        self._named = dict(self.devices)
        self._adopt = adopt
        self._taken = set(taken) | set(self.devices.values()) | {bridge_id}
        self._max_adopted = max_adopted
        self._ids: dict[str, str] = {}  # ieee address -> device id, for a renamed device
        self._adopted: set[str] = set()
        self._profiles: dict[str, JsonProfile] = {}  # device id -> profile from its exposes
        self._logged = 0  # devices named in the log for this payload
        self._said_before: dict[str, str] = {}

    @property
    def subscriptions(self) -> list[str]:
        return [f"{self.base}/#"]

    @property
    def large_subscriptions(self) -> list[str]:
        return [f"{self.base}/{DEVICES}"]

    def route(self, topic: str, payload: bytes) -> list[Routed]:
        """What the message says; raises PayloadError for a payload that is not understood."""
        if not topic.startswith(self.base + "/"):
            return []
        rest = topic[len(self.base) + 1 :]
        if rest == "bridge/state":
            return [Availability(self.bridge_id, parse_state(payload))]
        if rest == DEVICES:
            new = self.learn(parse_devices(payload))
            return [Learnt(tuple(new))] if new else []
        if rest.startswith("bridge/") or rest.endswith(_REQUESTS):
            return []
        if rest.endswith(AVAILABILITY):
            device = self.devices.get(rest[: -len(AVAILABILITY)])
            if device is None:
                self.unknown += 1
                return []
            return [Availability(device, parse_state(payload))]
        device = self.devices.get(rest)
        if device is None:
            self.unknown += 1
            return []
        return [Heard(device, map_object(self._profiles.get(device, self.profile), parse_object(payload)))]

    def learn(self, found: list[BridgeDevice]) -> list[Device]:
        """Take in what bridge/devices says: routes, per-device profiles, unknown exposes;
        returns the devices adopted now. Lowest IEEE address first, so two names that make
        the same id give the same ids at every start."""
        new: list[Device] = []
        routes = dict(self._named)
        self._logged = 0
        # What the latest payload says, not what every payload ever said: bounded by one.
        self._said_before, self.not_adopted = self.not_adopted, {}
        for bd in sorted(found, key=lambda b: b.ieee):
            device_id = self._named.get(bd.friendly_name) or self._ids.get(bd.ieee)
            if device_id is None:
                device = self._adoptable(bd)
                if device is None:
                    continue
                new.append(device)
                device_id = device.id
            self._ids[bd.ieee] = device_id
            routes.setdefault(bd.friendly_name, device_id)
            self._profiles[device_id] = device_profile(self.profile, bd.exposes)
            unknown = tuple(sorted(set(bd.exposes) - self.profile.known))
            if unknown and self.unknown_exposes.get(device_id) != unknown and self._log():
                log.warning("%s (%s): exposes %s, not read by this gateway", device_id, bd.model, ", ".join(unknown))
            self.unknown_exposes[device_id] = unknown
        present = set(routes.values())
        for device_id in self._adopted:
            # One that left the bridge is no longer judged by silence (it was removed).
            window = self.window_s if device_id in present else None
            if window is None and self.windows.get(device_id) is not None:
                log.info("%s: no longer in %s/%s, not supervised", device_id, self.base, DEVICES)
            self.windows[device_id] = window
        self.devices = routes
        if self._logged > LOG_DEVICES:
            log.warning("%s/%s: %d more devices not logged one by one", self.base, DEVICES, self._logged - LOG_DEVICES)
        return new

    def _log(self) -> bool:
        """Whether one more device may be named in the log for this payload."""
        self._logged += 1
        return self._logged <= LOG_DEVICES

    def _adoptable(self, bd: BridgeDevice) -> Device | None:
        kind = next((k for p, k in self.profile.kinds.items() if p in bd.exposes), None)
        why = None
        if not self._adopt:
            why = "not named in the site file"
        elif kind is None:
            why = "exposes nothing that says what alarm device it is" if bd.exposes else "not supported by Zigbee2MQTT"
        elif len(self._adopted) >= self._max_adopted:
            why = f"over the {self._max_adopted} devices adopted per bridge"
        device_id = None
        if why is None:
            device_id = next(
                (
                    c
                    for c in (learnt_id(self.bridge_id, bd.friendly_name), learnt_id(self.bridge_id, bd.ieee))
                    if c not in self._taken
                ),
                None,
            )
            if device_id is None:
                why = "its id is already taken"
        if why is not None or device_id is None or kind is None:
            if self._said_before.get(bd.friendly_name) != why and self._log():
                log.warning("%s/%s: %r (%s) not monitored: %s", self.base, DEVICES, bd.friendly_name, bd.model, why)
            self.not_adopted[bd.friendly_name] = why or ""
            return None
        self._taken.add(device_id)
        self._adopted.add(device_id)
        self.windows[device_id] = self.window_s
        log.info(
            "%s: adopted %r (%s) from %s/%s as a %s", device_id, bd.friendly_name, bd.model, self.base, DEVICES, kind
        )
        return Device(device_id, kind, self.bridge_id, self.bridge_id, "", bd.model)
