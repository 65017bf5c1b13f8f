"""The outbox: what the uplink still has to deliver, oldest first, on disk until the broker
has acknowledged it.

Bounded, with a stated order of giving up: when it holds more than `limit` messages the
oldest telemetry goes first; fault, ticket and escalation events never (the bound is then
exceeded, loudly: a warning once per episode, and the overflow in /metrics). A retained
message (Home Assistant discovery and device states) replaces a queued one on the same
topic, since the broker would keep only the newest anyway.
"""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, datetime

from alarmgw.clock import iso

from ..messages import OutboxMessage
from .db import Db

log = logging.getLogger(__name__)

# Outbox kinds, in the order they are given up when the outbox is full.
EVICTABLE = ("telemetry",)
UPLINK_ROOT = "uplink_root"  # settings key: the topic root, or absent when there is no uplink


class Outbox:
    def __init__(self, db: Db, limit: int) -> None:
        self._db = db
        self.limit = limit
        self.evicted = 0  # telemetry given up to keep the bound, since this process opened the store
        self.overflowing = False  # over the bound with nothing left to give up

    def enqueue(self, messages: list[OutboxMessage]) -> None:
        """Queue messages in a transaction of their own."""
        if messages:
            with self._db.tx() as conn:
                self.add(conn, messages)

    def add(self, conn: sqlite3.Connection, messages: list[OutboxMessage]) -> None:
        """Queue messages inside the caller's transaction."""
        if not messages:
            return
        now = iso(datetime.now(UTC))
        for m in messages:
            if m.retain:
                conn.execute("DELETE FROM outbox WHERE retain = 1 AND topic = ?", (m.topic,))
        conn.executemany(
            "INSERT INTO outbox (kind, topic, payload, qos, retain, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            [(m.kind, m.topic, m.payload, m.qos, int(m.retain), now) for m in messages],
        )
        excess = conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] - self.limit
        if excess > 0:
            marks = ", ".join("?" for _ in EVICTABLE)
            cur = conn.execute(
                "DELETE FROM outbox WHERE seq IN "
                f"(SELECT seq FROM outbox WHERE kind IN ({marks}) ORDER BY seq LIMIT ?)",
                (*EVICTABLE, excess),
            )
            self.evicted += cur.rowcount
            excess -= cur.rowcount
        self._overflow(excess)

    def _overflow(self, excess: int) -> None:
        if excess > 0 and not self.overflowing:
            log.warning(
                "outbox over its bound of %d by %d: no telemetry left to give up, fault and ticket events are kept",
                self.limit,
                excess,
            )
        elif excess <= 0 and self.overflowing:
            log.warning("outbox back within its bound of %d", self.limit)
        self.overflowing = excess > 0

    def batch(self, limit: int = 100) -> list[tuple[int, OutboxMessage]]:
        rows = self._db.conn.execute(
            "SELECT seq, kind, topic, payload, qos, retain FROM outbox ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        return [(r[0], OutboxMessage(r[1], r[2], bytes(r[3]), r[4], bool(r[5]))) for r in rows]

    def done(self, seq: int) -> None:
        """The broker has the message (PUBACK for QoS 1): it may go."""
        self._db.conn.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
        if self.overflowing:
            self._overflow(self.depth() - self.limit)

    def depth(self) -> int:
        return int(self._db.conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    # --- the uplink's topic root, which every process writing tickets must know ----------

    def root(self, conn: sqlite3.Connection | None = None) -> str | None:
        """The uplink's topic root, or None: then nothing is queued for tickets."""
        row = (conn or self._db.conn).execute("SELECT value FROM settings WHERE key = ?", (UPLINK_ROOT,)).fetchone()
        return str(row[0]) if row and row[0] else None

    def set_root(self, root: str | None) -> None:
        """Say where ticket changes go (None: the site has no uplink)."""
        with self._db.tx() as conn:
            conn.execute("DELETE FROM settings WHERE key = ?", (UPLINK_ROOT,))
            if root:
                conn.execute("INSERT INTO settings (key, value) VALUES (?, ?)", (UPLINK_ROOT, root.rstrip("/")))
