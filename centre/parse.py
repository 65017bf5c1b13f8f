"""What one uplink message says, or why it cannot be taken: pure, no I/O, no clock.

Anyone who can publish to the broker can send anything, so every message is checked in
bounded time before it reaches the database: its topic's shape, its size, that it is JSON,
that it passes its JSON Schema (docs/schemas/, compiled once), that the site it names is the
site its topic names. Anything wrong becomes a `Dead` with a reason a person can act on.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from importlib import resources
from typing import Any, Literal

import jsonschema_rs
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]  # no stubs in the environment
from jsonschema.exceptions import best_match  # type: ignore[import-untyped]

from alarmgw.clock import parse_iso

from .telemetry_daily import Numbers, numbers

# A dead letter keeps this much of what arrived: enough to see what it was, bounded so a
# flood of junk costs little disk.
DEAD_PAYLOAD_KEEP = 4096
MAX_REASON = 300
_SITE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_PART = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")  # a device or ticket id in a topic
_LONE_SURROGATE = re.compile(
    r"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    r"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)
MAX_BIGINT = 2**63 - 1
MAX_INT = 2**31 - 1

# kind in the topic -> (schema file, kind stored)
SCHEMAS = {
    "tickets": "ticket-event.schema.json",
    "faults": "fault-event.schema.json",
    "escalations": "escalation.schema.json",
    "telemetry": "telemetry.schema.json",
    "status": "status.schema.json",
    "assets": "assets.schema.json",
}
EventKind = Literal["ticket", "fault", "escalation"]
_EVENT_KIND: dict[str, EventKind] = {"tickets": "ticket", "faults": "fault", "escalations": "escalation"}


@dataclass(frozen=True, slots=True)
class Event:
    """A ticket, fault or escalation event, stored once by its `event_id`."""

    site_id: str
    kind: EventKind
    event_id: str
    topic: str
    at: datetime
    payload: str  # the JSON text as it came, for the jsonb column


@dataclass(frozen=True, slots=True)
class TicketVersion:
    """The state of one site's ticket that a ticket event carries."""

    site_id: str
    ticket_id: int
    version: int
    state: str
    fault: str
    device: str
    fault_active: bool
    opened_at: datetime
    changed_at: datetime
    ticket: str  # the ticket object as JSON


@dataclass(frozen=True, slots=True)
class Telemetry:
    site_id: str
    device_id: str
    at: datetime
    payload: str  # the whole message, JSON; PostgreSQL takes its `values` out
    numbers: Numbers = ()  # its battery and signal values for the daily history (telemetry_daily.KEYS)


@dataclass(frozen=True, slots=True)
class Status:
    site_id: str
    online: bool


@dataclass(frozen=True, slots=True)
class Assets:
    """A site's asset register and maintenance plan (retained; the newest counts)."""

    site_id: str
    at: datetime
    doc: str  # the message, JSON


@dataclass(frozen=True, slots=True)
class Replayed:
    """The gateway's outbox was drained: everything it held while away has been sent."""

    site_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Dead:
    topic: str
    reason: str
    payload: bytes  # cut to DEAD_PAYLOAD_KEEP
    size: int


Parsed = Event | TicketVersion | Telemetry | Status | Replayed | Assets | Dead


class _Refused(Exception):
    pass


@cache
def _schema(schema_file: str) -> dict[str, object]:
    text = resources.files("alarmgw.schemas").joinpath(schema_file).read_text(encoding="utf-8")
    schema: dict[str, object] = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return schema


@cache
def validator(schema_file: str) -> Draft202012Validator:
    """The validator that says what is wrong with a payload, in the words of the dead letters
    (compiled once per process)."""
    return Draft202012Validator(_schema(schema_file))


@cache
def checker(schema_file: str) -> jsonschema_rs.Draft202012Validator:
    """The validator that says whether a payload is right: compiled, a hundred times faster
    (2.4 µs against 274 µs for a ticket event), so every message passes it and only the
    rare wrong one pays for the words."""
    return jsonschema_rs.Draft202012Validator(_schema(schema_file))


def parse(topic_root: str, topic: str, payload: bytes, max_bytes: int) -> list[Parsed]:
    """What one message says: an event and, for a ticket event, the ticket's new version;
    a status; telemetry; or a `Dead` with its reason. Never raises."""
    try:
        return _parse(topic_root, topic, payload, max_bytes)
    except _Refused as exc:
        return [dead(topic, str(exc), payload)]
    except RecursionError:
        return [dead(topic, "JSON nested too deep", payload)]


def dead(topic: str, reason: str, payload: bytes) -> Dead:
    return Dead(_printable(topic, 1000), _printable(reason, MAX_REASON), payload[:DEAD_PAYLOAD_KEEP], len(payload))


def _parse(root: str, topic: str, payload: bytes, max_bytes: int) -> list[Parsed]:
    prefix = root + "/"
    if not topic.startswith(prefix):
        raise _Refused(f"topic outside {root}/")
    parts = topic[len(prefix) :].split("/")
    site, kind, rest = parts[0], parts[1] if len(parts) > 1 else "", parts[2:]
    if not _SITE.match(site):
        raise _Refused("site id in the topic is not a site id (letters, digits, . _ -; at most 64)")
    if kind in ("status", "replayed", "assets"):
        if rest:
            raise _Refused(f"unknown topic shape: nothing may follow {kind}")
    elif kind in SCHEMAS:
        if len(rest) != 1 or not _PART.match(rest[0]):
            raise _Refused(f"unknown topic shape: expected {root}/<site>/{kind}/<id>")
    else:
        raise _Refused(f"unknown topic shape: no kind {kind[:40]!r} under a site")
    if len(payload) > max_bytes:
        raise _Refused(f"payload of {len(payload)} bytes, over the bound of {max_bytes}")
    if kind == "status":
        return [_status(site, payload)]
    if kind == "replayed":
        return [Replayed(site, _stamp(_text(payload).strip(), "replayed stamp"))]
    text = _text(payload)
    if "\\u0000" in text:
        raise _Refused("a NUL character (\\u0000) in a string: PostgreSQL's jsonb cannot hold it")
    if ("\\ud" in text or "\\uD" in text) and _LONE_SURROGATE.search(text):
        raise _Refused("a lone UTF-16 surrogate escape in a string: PostgreSQL's jsonb cannot hold it")
    try:
        doc = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except ValueError as exc:  # JSONDecodeError, a number too long
        raise _Refused(f"not JSON: {exc}") from None
    _validate(SCHEMAS[kind], doc)
    if doc["site"] != site:
        raise _Refused(f"site {str(doc['site'])[:64]!r} in the payload is not the topic's site {site!r}")
    if kind == "assets":
        _calendar_days(doc)
        return [Assets(site, _stamp(doc["at"], "at"), text)]
    if kind == "telemetry":
        if doc["device"] != rest[0]:
            raise _Refused("device in the payload is not the topic's device")
        return [Telemetry(site, doc["device"], _stamp(doc["at"], "at"), text, numbers(doc["values"]))]
    event = Event(site, _EVENT_KIND[kind], doc["event_id"], topic, _stamp(doc["at"], "at"), text)
    if kind != "tickets":
        return [event]
    t = doc["ticket"]
    if str(t["id"]) != rest[0] or t["site"] != site:
        raise _Refused("ticket id or site in the payload is not the topic's")
    if type(t["version"]) is not int or not 0 <= t["version"] <= MAX_INT or t["id"] > MAX_BIGINT:
        raise _Refused("ticket id or version out of range, or not a whole number")
    version = TicketVersion(
        site,
        t["id"],
        t["version"],
        t["state"],
        t["fault"],
        t["device"],
        bool(t["fault_active"]),
        _stamp(t["opened_at"], "ticket.opened_at"),
        event.at,
        json.dumps(t),
    )
    return [event, version]


def _status(site: str, payload: bytes) -> Status:
    word = _text(payload)
    if not checker(SCHEMAS["status"]).is_valid(word):
        raise _Refused(f"status must be online or offline, not {word[:20]!r}")
    return Status(site, word == "online")


def _validate(schema_file: str, doc: object) -> None:
    if checker(schema_file).is_valid(doc):
        return
    error = best_match(validator(schema_file).iter_errors(doc))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise _Refused(f"schema {schema_file}: {where}: {error.message[:200]}")
    # The two read the schema apart (a pattern, say): refused all the same, in the checker's words.
    first = next(iter(checker(schema_file).iter_errors(doc)))
    where = "/".join(str(p) for p in first.instance_path) or "(top level)"
    raise _Refused(f"schema {schema_file}: {where}: {first.message[:200]}")


def _text(payload: bytes) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Refused(f"not UTF-8 (byte {exc.start})") from None


def _calendar_days(doc: dict[str, Any]) -> None:
    """The schema checks a day's shape (YYYY-MM-DD); a day that is not in the calendar
    (2026-02-30) is refused here, not met later by every plan and report that reads it."""
    found: list[tuple[str, object]] = [("warranty_until", doc.get("warranty_until"))]
    for i, v in enumerate(doc.get("visits", [])):
        found += [(f"visits[{i}].{k}", v.get(k)) for k in ("opens", "closes", "done_on")]
    for i, d in enumerate(doc.get("devices", [])):
        found += [(f"devices[{i}].{k}", d.get(k)) for k in ("commissioned_on", "warranty_until", "end_of_life")]
    for where, day in found:
        if isinstance(day, str):
            try:
                date.fromisoformat(day)
            except ValueError:
                raise _Refused(f"{where}: {day[:12]!r} is not a day of the calendar") from None


def _stamp(text: str, what: str) -> datetime:
    try:
        at = parse_iso(text)
    except ValueError:
        raise _Refused(f"{what}: {text[:40]!r} is not an ISO 8601 time") from None
    if at.tzinfo is None:
        raise _Refused(f"{what}: {text[:40]!r} has no time zone (UTC expected)")
    return at


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is out of range for a number")
    return value


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def _printable(text: str, limit: int) -> str:
    cleaned = "".join(c if c.isprintable() else "\N{REPLACEMENT CHARACTER}" for c in text[:limit])
    return cleaned.encode("utf-8", "replace").decode("utf-8")
