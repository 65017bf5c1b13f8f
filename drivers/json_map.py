"""JSON payloads as data: a mapping profile says which JSON path of a device's message
holds which field of the common model: a number (with the range a real device can send,
and a scale) or a flag (JSON true/false, or the values the profile says mean true/false).

Pure: `map_payload(profile, payload bytes)` returns field values or raises `PayloadError`
naming what was wrong, and nothing else, whatever the bytes: a payload is parsed only
within the limits below, so no message costs more than a bounded amount of time and
memory. Zigbee2MQTT's device state is one such profile (config/profiles/zigbee2mqtt.yaml);
another MQTT device is another file.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, model_validator

from alarmgw.model import FIELDS, DeviceKind
from alarmgw.yamlfile import load_yaml_model

# Largest payload looked at. A device state is well under 2 KiB; anything far bigger is
# a misrouted or hostile message, refused before it is parsed.
MAX_PAYLOAD = 64 * 1024
# Deepest nesting of objects and arrays. Zigbee2MQTT's device states are 1 to 3 levels deep
# (`{"update": {"state": ...}}`); deeper is not a device state, and parsing it recurses.
MAX_DEPTH = 16
# Longest number literal. A device's JSON has 64-bit integers (20 digits) and doubles
# (shortest repr, about 24 characters); longer literals are hostile, and turning a long
# digit string into an int costs time that grows faster than its length.
MAX_NUMBER_CHARS = 40


class PayloadError(ValueError):
    """A payload that is not what the profile expects; the message says what is wrong."""


class FieldMap(BaseModel):
    """One JSON path's field. A number is a reading only inside `range`, given in the
    payload's own unit (before `scale`); a flag is a JSON boolean, or one of the `true` /
    `false` values. A boolean is never a number, a number never a flag unless listed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str
    type: Literal["number", "flag"]
    range: tuple[float, float] | None = None
    scale: float = Field(default=1.0, allow_inf_nan=False)
    true: tuple[StrictStr | StrictInt, ...] = ()
    false: tuple[StrictStr | StrictInt, ...] = ()
    invert: bool = False  # a flag that reads the other way (a contact that is true when shut)

    @model_validator(mode="before")
    @classmethod
    def _yaml_keys(cls, data: Any) -> Any:
        # YAML 1.1 reads the bare keys `true:` / `false:`, and the values ON, yes, off ...,
        # as booleans.
        if not isinstance(data, dict):
            return data
        data = {("true" if k else "false") if isinstance(k, bool) else k: v for k, v in data.items()}
        for key in ("true", "false"):
            values = data.get(key)
            for i, v in enumerate(values if isinstance(values, list) else ()):
                if isinstance(v, bool):
                    raise ValueError(
                        f"{key}[{i}]: YAML reads an unquoted ON, OFF, yes, no, true or false as a boolean; "
                        "quote the string the device sends (JSON booleans are flags anyway)"
                    )
                if not isinstance(v, str | int):
                    raise ValueError(f"{key}[{i}]: expected a string or an integer, got {v!r}")
        return data

    @model_validator(mode="after")
    def _check(self) -> FieldMap:
        if self.field not in FIELDS:
            raise ValueError(f"field {self.field!r} is not a reading field")
        if self.type == "number":
            if self.range is None:
                raise ValueError("a number needs range: [low, high], the values a real device can send")
            low, high = self.range
            if not (math.isfinite(low) and math.isfinite(high) and low <= high):
                raise ValueError(f"range: [{low}, {high}] is not two finite numbers, low first")
            if self.true or self.false:
                raise ValueError("true/false values belong to a flag, not a number")
        elif self.range is not None or self.scale != 1.0:
            raise ValueError("range and scale belong to a number, not a flag")
        if self.invert and self.type != "flag":
            raise ValueError("invert belongs to a flag, not a number")
        return self


class JsonProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    # JSON path (dot-separated keys) -> field. Keys absent from a message are simply absent.
    paths: dict[str, FieldMap] = Field(min_length=1)
    # Keys known and deliberately not read (a device's temperature, a test button): a device
    # that exposes them has nothing unknown about it.
    ignore: tuple[str, ...] = ()
    # For devices learnt from what they expose: the first key (in this order) a device
    # exposes says its kind; a device that exposes none of them is not adopted.
    kinds: dict[str, DeviceKind] = {}

    @model_validator(mode="after")
    def _kinds_are_read(self) -> JsonProfile:
        for key in self.kinds:
            if key not in self.paths:
                raise ValueError(f"kinds: {key!r} is not one of the paths, so nothing of it would be read")
        both = sorted(set(self.ignore) & set(self.paths))
        if both:
            raise ValueError(f"ignore: {', '.join(both)} also under paths")
        return self

    @property
    def known(self) -> frozenset[str]:
        """Every top-level key this profile reads or deliberately ignores."""
        return frozenset([*(p.split(".")[0] for p in self.paths), *self.ignore])


def load_json_profile(path: Path | str) -> JsonProfile:
    """Read and validate a JSON mapping profile (raises `ConfigError`)."""
    return load_yaml_model(path, JsonProfile)


def brief(value: object) -> str:
    """A value for an error message, short whatever the value is."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return json.dumps(value[:40]) + ("..." if len(value) > 40 else "")
    return json.dumps(value) if isinstance(value, bool) or value is None else repr(value)


def _number(literal: str) -> None:
    if len(literal) > MAX_NUMBER_CHARS:
        raise PayloadError(f"a number of {len(literal)} characters is over the {MAX_NUMBER_CHARS}-character limit")


def _int(literal: str) -> int:
    _number(literal)
    return int(literal)


def _float(literal: str) -> float:
    _number(literal)
    value = float(literal)
    if not math.isfinite(value):
        raise PayloadError(f"{literal} is beyond the range of a number")
    return value


def _constant(name: str) -> None:
    raise PayloadError(f"{name} is not a number (JSON has no NaN or Infinity)")


# A JSON string (only run on text the parser took, so every string is closed), and the
# bytes that are not brackets. UTF-8 never puts an ASCII byte inside a multi-byte character.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_NESTING = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def _depth(payload: bytes) -> int:
    """How deep the objects and arrays of a valid JSON text nest."""
    brackets = _STRING.sub(b"", payload).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_NESTING.__getitem__, brackets)), default=0)


def parse_object(payload: bytes) -> dict[str, Any]:
    """A JSON object from a payload, or PayloadError: size, nesting and number literals
    are checked, so the cost is bounded whatever was sent."""
    doc = parse_json(payload)
    if not isinstance(doc, dict):
        raise PayloadError(f"expected a JSON object, got {brief(doc)}")
    return doc


def parse_json(payload: bytes, max_bytes: int = MAX_PAYLOAD) -> Any:
    """Any JSON value from a payload of at most `max_bytes`, or PayloadError; the same
    checks as `parse_object`."""
    if len(payload) > max_bytes:
        raise PayloadError(f"payload of {len(payload)} bytes is over the {max_bytes}-byte limit")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"not JSON: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    too_deep = f"nested deeper than {MAX_DEPTH} levels"
    try:
        doc = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"not JSON: {exc}") from None
    except RecursionError:  # far deeper than MAX_DEPTH: the parser gave up first
        raise PayloadError(too_deep) from None
    # Counting brackets is cheap and almost always settles it; only a payload with many
    # of them is scanned for its real depth.
    if payload.count(b"[") + payload.count(b"{") > MAX_DEPTH and _depth(payload) > MAX_DEPTH:
        raise PayloadError(too_deep)
    return doc


def _lookup(doc: dict[str, Any], path: str) -> Any:
    node: Any = doc
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _listed(value: object, values: tuple[str | int, ...]) -> bool:
    # Exact type: the int 1 listed as true does not make 1.0 or true mean it.
    return any(type(value) is type(v) and value == v for v in values)


def _map_one(path: str, fm: FieldMap, v: object) -> float | int | bool:
    if fm.type == "flag":
        if isinstance(v, bool):
            return v != fm.invert
        if _listed(v, fm.true):
            return not fm.invert
        if _listed(v, fm.false):
            return fm.invert
        if fm.true or fm.false:
            raise PayloadError(f"{path}: {brief(v)} is neither of {list(fm.true)} nor {list(fm.false)}")
        raise PayloadError(f"{path}: expected true or false, got {brief(v)}")
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise PayloadError(f"{path}: expected a number, got {brief(v)}")
    assert fm.range is not None  # a number always has one (FieldMap._check)
    low, high = fm.range
    if not low <= v <= high:
        raise PayloadError(f"{path}: {brief(v)} is outside the valid range {low:g} to {high:g}")
    return v * fm.scale if fm.scale != 1.0 else v


def map_object(profile: JsonProfile, doc: dict[str, Any]) -> dict[str, float | int | bool]:
    """Field values from one JSON object. A value of the wrong type or out of its range is
    a PayloadError (and nothing of the object is taken); null means 'not reported' and is
    left out."""
    out: dict[str, float | int | bool] = {}
    for path, fm in profile.paths.items():
        v = _lookup(doc, path)
        if v is not None:
            out[fm.field] = _map_one(path, fm, v)
    return out


def map_payload(profile: JsonProfile, payload: bytes) -> dict[str, float | int | bool]:
    """Field values from one payload, or PayloadError."""
    return map_object(profile, parse_object(payload))
