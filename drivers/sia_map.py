"""What an alarm hub's SIA or Contact ID report means in the gateway's words, sans-IO.

The meaning of each code comes from the fault table (`diagnostics/faults.yaml`), read once
at load: every fault lists, per device kind, its SIA trouble/restore pair and its Contact ID
event code, and the flag its `when` tests (`tamper is true`, `battery_low is true` ...). So
YT means `battery_low = true` and YR `battery_low = false` because the table says so, not
because a second table here says it again. A code the table gives to several faults sets
each of their flags (YR restores both the low battery and the missing battery); a code the
table gives contradictory meanings is dropped from the map and treated as unknown.

A report names a device by its zone number (the number after a SIA code, or a Contact ID
event's zone); the hub's zone map turns that into a device id, zone 0 or none being the hub
itself. A code the map does not hold, or a zone the hub's map does not name, is returned as
`Unknown`, to be counted and kept in the device's history, never guessed at. A periodic
report (SIA RP, Contact ID 602, a DC-09 link test `NULL`) is `LinkTest`: a sign of life.

The table is taken through a structural type, so this module needs nothing of diagnostics:
`diagnostics.rules.FaultTable` fits it as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

# SIA codes for a periodic test (RP automatic test, the receiver-made code of a `NULL` link
# test); Contact ID 602 is the periodic test report, 603 the periodic RF transmission.
TEST_CODES = frozenset({"RP"})
CID_TEST_EVENTS = frozenset({602, 603})
# Contact ID qualifiers: 1 new event or opening, 3 restore or closing, 6 still present.
CID_ACTIVE = {1: True, 6: True, 3: False}


class _Codes(Protocol):
    @property
    def contact_id(self) -> int | None: ...

    @property
    def sia(self) -> tuple[str, str] | None: ...


class _Condition(Protocol):
    @property
    def field(self) -> str: ...

    @property
    def is_(self) -> bool | None: ...


class _Rule(Protocol):
    @property
    def codes(self) -> Mapping[str, _Codes]: ...

    @property
    def when(self) -> Sequence[_Condition]: ...


class FaultTableLike(Protocol):
    """The shape of `diagnostics.rules.FaultTable` this module reads."""

    @property
    def faults(self) -> Mapping[str, _Rule]: ...


Setting = tuple[tuple[str, bool], ...]  # (field, value) pairs a code sets


@dataclass(frozen=True, slots=True)
class Report:
    """One event of a hub's message, whatever its format, as the codec hands it on."""

    format: Literal["sia", "cid", "null"]
    code: str | None = None  # SIA event code (format sia)
    cid_event: int | None = None  # Contact ID event code (format cid)
    cid_qualifier: int | None = None  # 1 new, 3 restore, 6 status (format cid)
    zone: int | None = None  # the device's number at the hub; None or 0: the hub itself
    area: int | None = None  # partition ("ri" of SIA-DCS, the partition of Contact ID)
    text: str = ""  # what followed the code, for the history


@dataclass(frozen=True, slots=True)
class Change:
    """What the report says of one device: flags of the common model."""

    device_id: str
    values: Mapping[str, bool]
    label: str  # the code as sent, e.g. "sia.TA" or "cid.1383"


@dataclass(frozen=True, slots=True)
class Unknown:
    """A report the gateway does not map: counted and kept, never guessed at."""

    device_id: str  # the zone's device, or the hub when the zone is not in its map
    reason: Literal["code", "zone"]
    label: str  # e.g. "sia.BA" or "cid.1130"
    zone: int | None

    def sample(self) -> dict[str, float | int | bool]:
        """The report as a history sample of its device: the code as the key, the zone as
        the value (history keeps numbers and flags)."""
        return {self.label: self.zone or 0}


@dataclass(frozen=True, slots=True)
class LinkTest:
    """A periodic report: the hub is there."""

    hub_id: str


Meaning = Change | Unknown | LinkTest


@dataclass(frozen=True, slots=True)
class HubZones:
    """A hub's device id and its zone map (zone number -> device id)."""

    hub_id: str
    zones: Mapping[int, str]


class CodeMap:
    """SIA and Contact ID codes to flags, built from a fault table."""

    def __init__(self, table: FaultTableLike) -> None:
        sia: dict[str, set[tuple[str, bool]]] = {}
        cid: dict[int, set[str]] = {}
        for rule in table.faults.values():
            flags = [(c.field, c.is_) for c in rule.when if c.is_ is not None]
            if not flags:
                continue  # a fault judged on a number (chamber_dirty): no flag a code could set
            for codes in rule.codes.values():
                if codes.sia is not None:
                    trouble, restore = codes.sia
                    sia.setdefault(trouble.upper(), set()).update((f, v) for f, v in flags)
                    sia.setdefault(restore.upper(), set()).update((f, not v) for f, v in flags)
                if codes.contact_id is not None:
                    cid.setdefault(codes.contact_id, set()).update(f for f, _ in flags)
        self.ambiguous: set[str] = set()
        self.sia: dict[str, Setting] = {}
        for code, pairs in sia.items():
            fields = [f for f, _ in pairs]
            if len(fields) != len(set(fields)):  # one flag both set and cleared by one code
                self.ambiguous.add(code)
            else:
                self.sia[code] = tuple(sorted(pairs))
        # A Contact ID event code names the trouble; its qualifier says on or off. The
        # table holds `is: true` tests only, so on means the flag is true.
        self.cid: dict[int, tuple[str, ...]] = {e: tuple(sorted(fs)) for e, fs in cid.items()}

    def meaning(self, report: Report, hub: HubZones) -> Meaning:
        """What one report says, for the hub that sent it."""
        if report.format == "null" or (report.format == "sia" and report.code in TEST_CODES):
            return LinkTest(hub.hub_id)
        if report.format == "cid" and report.cid_event in CID_TEST_EVENTS:
            return LinkTest(hub.hub_id)
        label = _label(report)
        device = hub.hub_id if not report.zone else hub.zones.get(report.zone)
        values: dict[str, bool] | None = None
        if report.format == "sia" and report.code is not None:
            setting = self.sia.get(report.code.upper())
            if setting is not None:
                values = dict(setting)
        elif report.format == "cid" and report.cid_event is not None:
            fields = self.cid.get(report.cid_event)
            active = CID_ACTIVE.get(report.cid_qualifier or 0)
            if fields is not None and active is not None:
                values = dict.fromkeys(fields, active)
        if device is None:
            return Unknown(hub.hub_id, "zone", label, report.zone)
        if values is None:
            return Unknown(device, "code", label, report.zone)
        return Change(device, values, label)


def _label(report: Report) -> str:
    if report.format == "cid":
        return f"cid.{report.cid_qualifier or 0}{report.cid_event or 0:03d}"
    return f"sia.{report.code or ''}"


@dataclass(frozen=True, slots=True)
class Detected:
    """When a report's event happened, for the reading's stamp."""

    at: datetime
    from_hub: bool  # the hub's own timestamp (else the time it was received)


def detection_time(
    stamped: datetime | None, received: datetime, window_past_s: float, window_future_s: float
) -> Detected:
    """The event's own timestamp when it has one within the window (never later than it
    was received), else the time it was received."""
    if stamped is not None:
        ahead = (stamped - received).total_seconds()
        if -window_past_s <= ahead <= window_future_s:
            return Detected(min(stamped, received), True)
    return Detected(received, False)
