"""Home Assistant MQTT discovery: each device appears with sensors for its battery and
signal and a problem binary sensor per fault that can befall it, all tied to the gateway's
availability. Configs are retained on `<prefix>/<component>/<node>/<object>/config`; the
state of a device is one retained JSON object on `<root>/state/<device>`.

Faults are binary sensors with the device classes Home Assistant has for them (battery,
connectivity, tamper, problem), never alarm-panel states."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping

from alarmgw.diagnostics.engine import FaultCleared, FaultRaised
from alarmgw.model import Device

from .changes import Change, TelemetryDue
from .messages import discovery_messages, state_messages
from .site_file import LoadedSite
from .store.outbox import Outbox
from .view import SiteView

# fault -> binary_sensor device class
DEVICE_CLASS = {"low_battery": "battery", "comm_loss": "connectivity", "tamper": "tamper"}
# reading field -> (sensor device class, unit, display name)
SENSORS = {
    "battery_v": ("voltage", "V", "battery"),
    "battery_pct": ("battery", "%", "battery"),
    "rssi_dbm": ("signal_strength", "dBm", "signal"),
    "link_quality": (None, "lqi", "link quality"),
}


def node_id(text: str) -> str:
    """Home Assistant ids allow [a-zA-Z0-9_-]."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", text)


def discovery(
    prefix: str,
    root: str,
    site_id: str,
    devices: Iterable[Device],
    fields: Mapping[str, Iterable[str]],
    faults: Mapping[str, Iterable[str]],
) -> list[tuple[str, bytes]]:
    """(topic, retained payload) for every entity. `fields`: reading fields each device
    reports; `faults`: faults that apply to each device."""
    out = []
    for d in devices:
        node = node_id(f"{site_id}_{d.id}")
        state = f"{root}/state/{d.id}"
        base = {
            "availability_topic": f"{root}/status",
            "state_topic": state,
            "device": {
                "identifiers": [node],
                "name": d.id,
                "model": d.model or d.kind.value,
                "manufacturer": "alarmgw",
                "suggested_area": d.location or None,
            },
        }
        for field in fields.get(d.id, ()):
            if field not in SENSORS:
                continue
            cls, unit, name = SENSORS[field]
            cfg = {
                **base,
                "name": name,
                "unique_id": f"{node}_{field}",
                "unit_of_measurement": unit,
                "value_template": f"{{{{ value_json.{field} }}}}",
                "state_class": "measurement",
            }
            if cls:
                cfg["device_class"] = cls
            out.append((f"{prefix}/sensor/{node}/{field}/config", json.dumps(cfg).encode()))
        for fault in faults.get(d.id, ()):
            cfg = {
                **base,
                "name": fault.replace("_", " "),
                "unique_id": f"{node}_{fault}",
                "device_class": DEVICE_CLASS.get(fault, "problem"),
                "payload_on": "ON",
                "payload_off": "OFF",
                "value_template": f"{{{{ value_json.faults.{fault} }}}}",
            }
            out.append((f"{prefix}/binary_sensor/{node}/{fault}/config", json.dumps(cfg).encode()))
    return out


def state(values: Mapping[str, float | int | bool], active: Iterable[str], applicable: Iterable[str]) -> bytes:
    on = set(active)
    doc: dict[str, object] = {k: v for k, v in values.items() if k in SENSORS}
    doc["faults"] = {f: "ON" if f in on else "OFF" for f in applicable}
    return json.dumps(doc).encode()


def sensor_fields(site: LoadedSite, devices: Mapping[str, Device]) -> dict[str, list[str]]:
    """Device -> the reading fields it has that Home Assistant shows as sensors."""
    cfg = site.config
    fields: dict[str, list[str]] = {}
    for host in cfg.hosts:
        if host.zoned:
            continue
        profile = site.profiles[host.model]
        for d in [devices[host.id]] + [devices[x.id] for x in host.devices]:
            fields[d.id] = [n for n in profile.layout_for(d.kind).fields if n in SENSORS]
    for z in cfg.zigbee2mqtt:
        mapped = [fm.field for fm in site.json_profiles[z.profile].paths.values()]
        for zd in z.devices:
            fields[zd.id] = [f for f in dict.fromkeys(mapped) if f in SENSORS]
    return fields


class HomeAssistant:
    """Discovery configs and device states, queued in the outbox like everything else the
    broker should see. States go out when a fault changes and at every telemetry tick."""

    def __init__(
        self,
        view: SiteView,
        outbox: Outbox,
        prefix: str,
        root: str,
        fields: Mapping[str, Iterable[str]],
        faults: Mapping[str, list[str]],
    ) -> None:
        self.view = view
        self.outbox = outbox
        self.root = root
        self.faults = faults
        self.configs = discovery(prefix, root, view.site.config.site.id, view.devices.values(), fields, faults)

    def announce(self) -> None:
        """Queue the discovery configs (retained: a queued older copy is replaced)."""
        self.outbox.enqueue(discovery_messages(self.configs))

    def on_change(self, change: Change) -> None:
        if isinstance(change, FaultRaised | FaultCleared):
            self._states([change.device_id])
        elif isinstance(change, TelemetryDue):
            self._states(list(self.view.latest))

    def _states(self, device_ids: Iterable[str]) -> None:
        active = self.view.active_faults()
        latest = self.view.latest
        states = []
        for d in device_ids:
            r = latest.get(d)
            states.append((d, state(r.values if r else {}, active.get(d, []), self.faults.get(d, []))))
        self.outbox.enqueue(state_messages(self.root, states))
