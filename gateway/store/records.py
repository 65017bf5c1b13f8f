"""The store's smaller tables: sampled reading history, the audit log (append-only inside its
retention) with its per-minute refusal counts and the single-use nonces of remote requests,
and the escalations already sent."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from alarmgw.clock import iso, parse_iso

from ..messages import OutboxMessage
from .db import Db
from .outbox import Outbox

Values = Mapping[str, float | int | bool]


class History:
    """Sampled readings per device, for diagnosis."""

    def __init__(self, db: Db) -> None:
        self._db = db

    def add(self, samples: list[tuple[str, datetime, Values]]) -> None:
        """Many samples in one transaction."""
        with self._db.tx() as conn:
            conn.executemany(
                "INSERT INTO history (device_id, at, readings) VALUES (?, ?, ?)",
                [(d, iso(at), json.dumps(dict(v), sort_keys=True)) for d, at, v in samples],
            )

    def of(self, device_id: str, limit: int = 200) -> list[tuple[datetime, dict[str, float | int | bool]]]:
        """The device's most recent samples, oldest first."""
        rows = self._db.conn.execute(
            "SELECT at, readings FROM history WHERE device_id = ? ORDER BY at DESC LIMIT ?", (device_id, limit)
        ).fetchall()
        return [(parse_iso(r[0]), json.loads(r[1])) for r in reversed(rows)]

    def prune(self, before: datetime) -> int:
        with self._db.tx() as conn:
            return conn.execute("DELETE FROM history WHERE at < ?", (iso(before),)).rowcount


# The audit log's retention: the gateway prunes rows older than this many days (the site
# file may set another), and never rows younger than the floor (the schema enforces it).
AUDIT_RETENTION_DAYS = 400
MIN_AUDIT_RETENTION_DAYS = 30  # the same floor as the schema's audit_retention_floor triggers
AUDIT_PRUNED_BEFORE = "audit_pruned_before"  # settings key: rows older than this may be deleted


class Audit:
    """Who asked what of the gateway, and what came of it. Rows are never changed; they are
    removed only by `prune`, once older than the retention (the schema's triggers refuse
    anything else). Refusals that get no row of their own are counted per minute."""

    def __init__(self, db: Db) -> None:
        self._db = db

    def append(
        self,
        at: datetime,
        user: str,
        command: str,
        args: object,
        result: str,
        detail: str,
        channel: str,
        *,
        verified: bool = True,
    ) -> None:
        """One row; `verified` False when `user` is only what an unauthenticated request claimed."""
        with self._db.tx() as conn:
            conn.execute(
                "INSERT INTO audit (at, user, command, args, result, detail, channel, verified)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    iso(at),
                    user[:200],
                    command[:200],
                    json.dumps(args, sort_keys=True, default=str)[:2000],
                    result,
                    detail[:2000],
                    channel,
                    int(verified),
                ),
            )

    def entries(self) -> list[dict[str, Any]]:
        """Every row, oldest first; `verified` is None for rows from before it was recorded."""
        rows = self._db.conn.execute(
            "SELECT at, user, command, args, result, detail, channel, verified FROM audit ORDER BY seq"
        )
        return [{**dict(r), "verified": None if r["verified"] is None else bool(r["verified"])} for r in rows]

    def count_refusals(self, counts: Mapping[tuple[datetime, str, str], int]) -> None:
        """Add to the per-minute counts of refusals: (minute, channel, reason) -> how many."""
        if not counts:
            return
        with self._db.tx() as conn:
            conn.executemany(
                "INSERT INTO audit_refusals (minute, channel, reason, count) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (minute, channel, reason) DO UPDATE SET count = count + excluded.count",
                [(iso(minute), channel, reason, n) for (minute, channel, reason), n in counts.items()],
            )

    def refusal_counts(self) -> list[dict[str, Any]]:
        """The per-minute counts, oldest first."""
        rows = self._db.conn.execute(
            "SELECT minute, channel, reason, count FROM audit_refusals ORDER BY minute, channel, reason"
        )
        return [dict(r) for r in rows]

    def prune(self, before: datetime) -> int:
        """Remove rows and counts older than `before`, in one transaction; how many rows went.
        The schema refuses a `before` less than 30 days ago (by the system clock)."""
        cutoff = iso(before)
        with self._db.tx() as conn:
            conn.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (AUDIT_PRUNED_BEFORE, cutoff),
            )
            gone = conn.execute("DELETE FROM audit WHERE at < ?", (cutoff,)).rowcount
            conn.execute("DELETE FROM audit_refusals WHERE minute < ?", (cutoff,))
        return gone

    def claim_nonce(self, nonce: str, at: datetime, forget_before: datetime) -> bool:
        """True the first time a nonce is seen; nonces older than `forget_before` are dropped
        (requests that old are refused as stale anyway)."""
        with self._db.tx() as conn:
            conn.execute("DELETE FROM nonces WHERE at < ?", (iso(forget_before),))
            cur = conn.execute("INSERT OR IGNORE INTO nonces (nonce, at) VALUES (?, ?)", (nonce, iso(at)))
            return cur.rowcount == 1


class Escalations:
    """Each (ticket, clock, mark) once, across restarts."""

    def __init__(self, db: Db, outbox: Outbox) -> None:
        self._db = db
        self._outbox = outbox

    def sent(self) -> set[tuple[int, str, float]]:
        return {(r[0], r[1], r[2]) for r in self._db.conn.execute("SELECT ticket_id, clock, mark_s FROM escalations")}

    def record(
        self, ticket_id: int, clock: str, mark_s: float, at: datetime, messages: list[OutboxMessage] | None = None
    ) -> bool:
        """True if this mark was not recorded before; its uplink messages go in the same
        transaction."""
        with self._db.tx() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO escalations (ticket_id, clock, mark_s, at) VALUES (?, ?, ?, ?)",
                (ticket_id, clock, mark_s, iso(at)),
            )
            new = cur.rowcount == 1
            if new and messages:
                self._outbox.add(conn, messages)
        return new
