"""Maintenance visits: at most one runs at a time. A visit is started by the engineer on site
(or remotely), keeps what the gateway saw of each device while it runs (saved as it goes, so
a restart loses at most a poll's worth), and ends with its report, finished by the engineer
or, past its time limit, by the gateway."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from alarmgw.clock import iso, parse_iso
from alarmgw.diagnostics.visits import Findings

from .db import MAX_ID, Db, StoreError


class VisitNotFound(StoreError):
    """No such visit."""


class VisitConflict(StoreError):
    """A visit runs already, or none runs to finish."""


@dataclass(frozen=True, slots=True)
class VisitRow:
    id: int
    started_at: datetime
    started_by: str
    ends_by: datetime  # the limit: past it the gateway ends the visit itself
    finished_at: datetime | None
    finished_by: str | None
    ended: str | None  # finished | expired
    findings: dict[str, Findings]
    report: dict[str, Any] | None

    @property
    def running(self) -> bool:
        return self.finished_at is None

    def head(self, site_id: str) -> dict[str, Any]:
        """What the report says of the visit itself."""
        return {
            "visit": self.id,
            "site": site_id,
            "started_at": iso(self.started_at),
            "started_by": self.started_by,
            "ends_by": iso(self.ends_by),
            "finished_at": iso(self.finished_at) if self.finished_at else None,
            "finished_by": self.finished_by,
            "ended": self.ended,
        }


class Visits:
    def __init__(self, db: Db) -> None:
        self._db = db

    def running(self) -> VisitRow | None:
        row = self._db.conn.execute("SELECT * FROM visits WHERE finished_at IS NULL").fetchone()
        return _row(row) if row else None

    def get(self, visit_id: int) -> VisitRow:
        if not 1 <= visit_id <= MAX_ID:
            raise VisitNotFound(f"no visit {visit_id}: visit numbers run from 1 to {MAX_ID}")
        row = self._db.conn.execute("SELECT * FROM visits WHERE id = ?", (visit_id,)).fetchone()
        if row is None:
            raise VisitNotFound(f"no visit {visit_id} in {self._db.path}")
        return _row(row)

    def done(self) -> list[VisitRow]:
        """Every visit that ended, oldest first."""
        rows = self._db.conn.execute("SELECT * FROM visits WHERE finished_at IS NOT NULL ORDER BY id")
        return [_row(r) for r in rows]

    def start(self, by: str, at: datetime, ends_by: datetime) -> VisitRow:
        with self._db.tx() as conn:
            if conn.execute("SELECT 1 FROM visits WHERE finished_at IS NULL").fetchone():
                raise VisitConflict("a maintenance visit runs already: finish it first")
            cur = conn.execute(
                "INSERT INTO visits (started_at, started_by, ends_by, findings) VALUES (?, ?, ?, '{}')",
                (iso(at), by, iso(ends_by)),
            )
            assert cur.lastrowid is not None
            visit_id = cur.lastrowid
        return self.get(visit_id)

    def save(self, visit_id: int, findings: Mapping[str, Findings]) -> None:
        """What was seen so far (the visit must still run)."""
        doc = json.dumps({d: f.to_json() for d, f in findings.items()}, sort_keys=True)
        with self._db.tx() as conn:
            conn.execute("UPDATE visits SET findings = ? WHERE id = ? AND finished_at IS NULL", (doc, visit_id))

    def finish(
        self, visit_id: int, at: datetime, by: str, ended: str, findings: Mapping[str, Findings], report: dict[str, Any]
    ) -> VisitRow:
        doc = json.dumps({d: f.to_json() for d, f in findings.items()}, sort_keys=True)
        with self._db.tx() as conn:
            cur = conn.execute(
                "UPDATE visits SET finished_at = ?, finished_by = ?, ended = ?, findings = ?, report = ?"
                " WHERE id = ? AND finished_at IS NULL",
                (iso(at), by, ended, doc, json.dumps(report, sort_keys=True), visit_id),
            )
            if cur.rowcount != 1:
                raise VisitConflict(f"visit {visit_id} is not running: it was finished already")
        return self.get(visit_id)


def _row(r: sqlite3.Row) -> VisitRow:
    def at(v: str | None) -> datetime | None:
        return parse_iso(v) if v else None

    findings = {d: Findings.from_json(f) for d, f in json.loads(r["findings"]).items()}
    return VisitRow(
        r["id"],
        parse_iso(r["started_at"]),
        r["started_by"],
        parse_iso(r["ends_by"]),
        at(r["finished_at"]),
        r["finished_by"],
        r["ended"],
        findings,
        json.loads(r["report"]) if r["report"] else None,
    )
