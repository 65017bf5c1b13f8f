"""The store's one SQLite connection and its transactions."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MAX_ID = 2**63 - 1  # SQLite's largest integer, so the largest ticket number


class StoreError(Exception):
    """The store file cannot be used (wrong file, locked, unreadable), or a write lost a race."""


class TicketNotFound(StoreError):
    pass


class Db:
    """A connection in autocommit mode; `tx()` is one write transaction."""

    def __init__(self, path: Path, busy_timeout_s: float) -> None:
        self.path = path
        # Another process (the tickets CLI) may hold the write lock for a moment.
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout_s)
        self.conn.row_factory = sqlite3.Row

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK if anything inside raises. A lock held by
        another process past the busy timeout is a StoreError."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StoreError(f"{self.path}: {exc}") from exc
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        try:
            self.conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            self.conn.execute("ROLLBACK")
            raise StoreError(f"{self.path}: {exc}") from exc

    def close(self) -> None:
        self.conn.close()
