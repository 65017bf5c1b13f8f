"""The local store: tickets, their log, the uplink's outbox, reading history, the audit log
and escalations, in one SQLite file (WAL, synchronous=FULL).

Writes happen only when a fault, a ticket or a request changes something, never per
reading, so a full sync on every commit costs nothing measurable; it is what keeps the last
tickets through a power cut, which is one of the faults this box exists to report. One
connection, and a small class per family of tables: `store.tickets`, `store.outbox`,
`store.history`, `store.audit`, `store.escalations`, `store.visits`. The store calls nobody: a caller passes
what it wants written and gets back what was stored.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from pathlib import Path

from ..messages import OutboxMessage
from .db import MAX_ID, Db, StoreError, TicketNotFound
from .outbox import EVICTABLE, Outbox
from .records import Audit, Escalations, History
from .schema import VERSION, migrate
from .tickets import Tickets
from .visits import VisitConflict, VisitNotFound, Visits

log = logging.getLogger(__name__)


def _create_private(path: Path) -> None:
    """Tickets and the audit log are nobody else's business: a new store is created 0600 (its
    -wal and -shm files take the same mode). An existing one that others can read is said
    so, and left as the operator set it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH):
            log.warning("%s: the ticket store can be read by other users of the box; chmod 600 it", path)
        return
    os.close(fd)


class Store:
    """Tickets on disk. Use as a context manager or call `close()`."""

    def __init__(self, path: Path | str, *, busy_timeout_s: float = 10.0, outbox_max: int = 10_000) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _create_private(self.path)
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
        self.visits = Visits(self._db)

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
    "VisitConflict",
    "VisitNotFound",
]
