"""Maintenance visits at the site: the mode the engineer puts the gateway in while they work,
what it sees of every device meanwhile, and the report that closes the visit.

`Visit` is the running visit inside the gateway: it takes the readings and the fault changes
(a cover opened or a battery taken out is a finding, not a ticket), saves its findings every
poll interval, and ends by itself past its limit. `close` writes the report, from the
gateway or from the command line (which works on the store alone: the running gateway sees
the visit end at its next look). `report_html` prints it.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from alarmgw.clock import iso
from alarmgw.diagnostics.engine import FaultChange, FaultCleared, FaultRaised
from alarmgw.diagnostics.visits import VISIT_FAULTS, DeviceInfo, Findings, report
from alarmgw.model import Device, Reading

from .store import Store
from .store.visits import VisitRow

log = logging.getLogger(__name__)

MAX_HOURS = 24.0  # the longest limit a visit may be given


def infos(devices: Iterable[Device]) -> list[DeviceInfo]:
    """The site's devices as the report lists them (buses are wiring, not equipment)."""
    return [DeviceInfo(d.id, d.kind.value, d.location) for d in devices if d.kind.value != "bus"]


def close(
    store: Store,
    site_id: str,
    devices: Sequence[DeviceInfo],
    visit: VisitRow,
    at: datetime,
    by: str,
    ended: str,
    findings: Mapping[str, Findings],
    still_faulty: Mapping[str, Sequence[str]],
) -> VisitRow:
    """End the visit with its report (raises VisitConflict if it ended already)."""
    head = visit.head(site_id) | {"finished_at": iso(at), "finished_by": by, "ended": ended}
    doc = report(head, devices, findings, still_faulty)
    return store.visits.finish(visit.id, at, by, ended, findings, doc)


class Visit:
    """The visit running in the gateway, if any. `faulty()`: the faults active now, per device."""

    def __init__(self, store: Store, site_id: str, devices: Sequence[DeviceInfo]) -> None:
        self._store = store
        self._site_id = site_id
        self._devices = devices
        self.row: VisitRow | None = store.visits.running()
        self.findings: dict[str, Findings] = dict(self.row.findings) if self.row else {}
        self._dirty = False

    @property
    def running(self) -> bool:
        return self.row is not None

    def observe(self, readings: Sequence[Reading]) -> None:
        row = self.row
        if row is None:
            return
        for r in readings:
            self._of(r.device_id).observe(r, row.started_at)
        self._dirty = True

    def takes(self, change: FaultChange) -> bool:
        """Note a fault change in the findings; True when it is the visit's own doing (no ticket)."""
        if self.row is None:
            return False
        self._dirty = True
        if isinstance(change, FaultRaised):
            self._of(change.device_id).raised(change.fault, change.detected_at)
            return change.fault in VISIT_FAULTS
        if isinstance(change, FaultCleared):
            self._of(change.device_id).cleared(change.fault, change.at)
        return False

    def self_tested(self, device_id: str, at: datetime, passed: bool) -> None:
        if self.row is not None:
            self._of(device_id).self_test(at, passed)
            self._dirty = True

    def start(self, by: str, at: datetime, hours: float) -> VisitRow:
        if not 0 < hours <= MAX_HOURS:
            raise ValueError(f"hours: more than 0 and at most {MAX_HOURS:g}, not {hours:g}")
        self.row = self._store.visits.start(by, at, at + timedelta(hours=hours))
        self.findings = {}
        self._dirty = False
        log.info("maintenance visit %d started by %s, until %s at the latest", self.row.id, by, self.row.ends_by)
        return self.row

    def finish(self, by: str, at: datetime, ended: str, still_faulty: Mapping[str, Sequence[str]]) -> VisitRow:
        """Close the running visit with its report (VisitConflict if none runs)."""
        from .store import VisitConflict

        if self.row is None:
            raise VisitConflict("no maintenance visit runs")
        done = close(self._store, self._site_id, self._devices, self.row, at, by, ended, self.findings, still_faulty)
        log.info("maintenance visit %d %s by %s: %s", done.id, ended, by, (done.report or {}).get("counts"))
        self.row, self.findings, self._dirty = None, {}, False
        return done

    def look(self, now: datetime) -> tuple[int | None, bool]:
        """Each poll interval: save what was seen, and follow a visit started or ended from
        the command line. (the visit that ended elsewhere, whether this one is past its limit)"""
        stored = self._store.visits.running()
        if self.row is not None and (stored is None or stored.id != self.row.id):
            ended = self.row.id
            self.row, self.findings, self._dirty = stored, dict(stored.findings) if stored else {}, False
            return ended, False
        if self.row is None and stored is not None:
            self.row, self.findings = stored, dict(stored.findings)
        if self.row is None:
            return None, False
        if self._dirty:
            self._store.visits.save(self.row.id, self.findings)
            self._dirty = False
        return None, now >= self.row.ends_by

    def status(self) -> dict[str, Any] | None:
        if self.row is None:
            return None
        return {**self.row.head(self._site_id), "findings": {d: f.to_json() for d, f in self.findings.items()}}

    def _of(self, device_id: str) -> Findings:
        f = self.findings.get(device_id)
        if f is None:
            f = self.findings[device_id] = Findings()
        return f


def report_html(doc: Mapping[str, Any]) -> str:
    """The visit report as a printable page: the visit, the counts, then every device with its
    verdict and what was seen; every value escaped."""

    def cell(v: object) -> str:
        return html.escape("-" if v is None or v == [] else ", ".join(map(str, v)) if isinstance(v, list) else str(v))

    counts = doc.get("counts", {})
    head = [
        ("site", doc.get("site")),
        ("visit", doc.get("visit")),
        ("started", f"{doc.get('started_at')} by {doc.get('started_by')}"),
        ("ended", f"{doc.get('finished_at')} by {doc.get('finished_by')} ({doc.get('ended')})"),
        ("devices", ", ".join(f"{n} {k}" for k, n in counts.items())),
    ]
    cols = (
        "device",
        "kind",
        "location",
        "verdict",
        "why",
        "readings",
        "battery_v",
        "rssi_dbm_min",
        "self_test_passed",
        "test_alarm_at",
        "cover_opened_at",
        "cover_closed_at",
    )
    rows = "\n".join(
        f"<tr class={html.escape(str(d.get('verdict')), quote=True)}>"
        + "".join(f"<td>{cell(d.get(c))}</td>" for c in cols)
        + "</tr>"
        for d in doc.get("devices", [])
    )
    title = html.escape(f"Maintenance visit {doc.get('visit')} at site {doc.get('site')}")
    return (
        "<!doctype html>\n<html lang=en><meta charset=utf-8>"
        f"<title>{title}</title>\n"
        "<style>body{font:10pt sans-serif;margin:2em}th{text-align:left;padding:3px 10px 3px 0}"
        "td{padding:3px 10px 3px 0;vertical-align:top}table{border-collapse:collapse}tr{border-bottom:1px solid #ccc}"
        ".failed td:nth-child(4){color:#b00;font-weight:bold}.untested td:nth-child(4){color:#a60}</style>\n"
        f"<h1>{title}</h1>\n<table>\n"
        + "\n".join(f"<tr><th>{html.escape(k)}</th><td>{cell(v)}</td></tr>" for k, v in head)
        + "\n</table>\n<h2>Devices</h2>\n<table>\n<tr>"
        + "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in cols)
        + f"</tr>\n{rows}\n</table>\n</html>\n"
    )
