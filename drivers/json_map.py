"""JSON payloads as data: a mapping profile says which JSON path of a device's message
holds which field of the common model, with scaling and the values that mean true/false.

Pure: `map_payload(profile, payload bytes)` returns field values or raises `PayloadError`
naming what was wrong. Zigbee2MQTT's device state is one such profile
(config/profiles/zigbee2mqtt.yaml); another MQTT device is another file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from alarmgw.model import FIELDS
from alarmgw.yamlfile import load_yaml_model

# Largest payload looked at. A device state is well under 2 KiB; anything far bigger is
# a misrouted or hostile message, refused before it is parsed.
MAX_PAYLOAD = 64 * 1024


class PayloadError(ValueError):
    """A payload that is not what the profile expects; the message says what is wrong."""


class FieldMap(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str
    scale: float = 1.0
    # For flags: payload values that mean true / false (JSON booleans always do).
    true: tuple[str | int, ...] = ()
    false: tuple[str | int, ...] = ()

    @model_validator(mode="after")
    def _known(self) -> FieldMap:
        if self.field not in FIELDS:
            raise ValueError(f"field {self.field!r} is not a reading field")
        return self


class JsonProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    # JSON path (dot-separated keys) -> field. Keys absent from a message are simply absent.
    paths: dict[str, FieldMap] = Field(min_length=1)


def load_json_profile(path: Path | str) -> JsonProfile:
    return load_yaml_model(path, JsonProfile)


def parse_object(payload: bytes) -> dict[str, Any]:
    """A JSON object from a payload, or PayloadError."""
    if len(payload) > MAX_PAYLOAD:
        raise PayloadError(f"payload of {len(payload)} bytes is over the {MAX_PAYLOAD}-byte limit")
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise PayloadError(f"expected a JSON object, got {type(doc).__name__}")
    return doc


def _lookup(doc: dict[str, Any], path: str) -> Any:
    node: Any = doc
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def map_object(profile: JsonProfile, doc: dict[str, Any]) -> dict[str, float | int | bool]:
    """Field values from one JSON object. A value of the wrong type is a PayloadError;
    null means 'not reported' and is left out."""
    out: dict[str, float | int | bool] = {}
    for path, fm in profile.paths.items():
        v = _lookup(doc, path)
        if v is None:
            continue
        if isinstance(v, bool):
            out[fm.field] = v
        elif fm.true or fm.false:
            if v in fm.true:
                out[fm.field] = True
            elif v in fm.false:
                out[fm.field] = False
            else:
                raise PayloadError(f"{path}: {v!r} is neither of {list(fm.true)} nor {list(fm.false)}")
        elif isinstance(v, int | float) and math.isfinite(v):
            out[fm.field] = v * fm.scale if fm.scale != 1.0 else v
        else:
            raise PayloadError(f"{path}: expected a number or a boolean, got {json.dumps(v)[:40]}")
    return out


def map_payload(profile: JsonProfile, payload: bytes) -> dict[str, float | int | bool]:
    return map_object(profile, parse_object(payload))
