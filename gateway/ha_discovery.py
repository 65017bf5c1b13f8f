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

from alarmgw.model import Device

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
