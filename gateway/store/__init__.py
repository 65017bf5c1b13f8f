"""The local store: tickets, their log, the uplink's outbox, reading history, the audit log
and escalations, in one SQLite file (WAL, synchronous=FULL).

Writes happen only when a fault, a ticket or a request changes something, never per
reading, so a full sync on every commit costs nothing measurable; it is what keeps the last
tickets through a power cut, which is one of the faults this box exists to report. One
connection, and a small class per family of tables: `store.tickets`, `store.outbox`,
`store.history`, `store.audit`, `store.escalations`. The store calls nobody: a caller passes
what it wants written and gets back what was stored.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ..messages import OutboxMessage
from .db import MAX_ID, Db, StoreError, TicketNotFound
from .outbox import EVICTABLE, Outbox
from .records import Audit, Escalations, History
from .schema import VERSION, migrate
from .tickets import Tickets


class Store:
    """Tickets on disk. Use as a context manager or call `close()`."""

    def __init__(self, path: Path | str, *, busy_timeout_s: float = 10.0, outbox_max: int = 10_000) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = Db(self.path, busy_timeout_s)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{self.path}: cannot open as a ticket store: {exc}") from exc
        try:
            conn = self._db.conn
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            migrate(conn)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StoreError(f"{self.path}: cannot use as a ticket store: {exc}") from exc
        self.outbox = Outbox(self._db, outbox_max)
        self.tickets = Tickets(self._db, self.outbox)
        self.history = History(self._db)
        self.audit = Audit(self._db)
        self.escalations = Escalations(self._db, self.outbox)

    @property
    def connection(self) -> sqlite3.Connection:
        """The raw connection, for checks and for tools that read the file directly."""
        return self._db.conn

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "EVICTABLE",
    "MAX_ID",
    "VERSION",
    "OutboxMessage",
    "Store",
    "StoreError",
    "TicketNotFound",
]
