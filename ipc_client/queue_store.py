"""Persistence of the offline queue in an SQLite file (stdlib ``sqlite3``).

Only one-way messages (publish, notify) are stored: a request's caller cannot
outlive the process, so there would be nobody to answer. Each row keeps the
encoded message and its absolute expiry time (wall clock), so a client
started later with the same file sends what has not expired yet.

Writes are synchronous and small (WAL, ``synchronous=NORMAL``); they happen
only while the client is offline, never on the connected hot path.

A file has one owner at a time: two clients sending the same rows would
deliver each message twice. The store holds an exclusive lock on
``<path>.lock`` (``flock``, released by the kernel if the process dies) and
refuses to open a file another client holds.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no ownership check
    fcntl = None  # type: ignore[assignment]

__all__ = ["QueueStore", "StoredMessage", "QueueFileInUse"]


class QueueFileInUse(RuntimeError):
    """Another client (in this process or another) owns the queue file."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queued (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    priority INTEGER NOT NULL,
    expires_at REAL NOT NULL,
    body BLOB NOT NULL
)
"""


@dataclass(frozen=True)
class StoredMessage:
    id: int
    priority: int
    expires_at: float
    body: bytes


class QueueStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock_fd = self._lock(self.path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def add(self, priority: int, expires_at: float, body: bytes) -> int:
        cur = self._db.execute("INSERT INTO queued (priority, expires_at, body) VALUES (?, ?, ?)", (priority, expires_at, body))
        return int(cur.lastrowid or 0)

    def remove(self, message_id: int) -> None:
        self._db.execute("DELETE FROM queued WHERE id = ?", (message_id,))

    def load(self, now: float | None = None) -> tuple[list[StoredMessage], int]:
        """Unexpired messages, oldest first, and how many expired ones were deleted."""
        now = time.time() if now is None else now
        expired = self._db.execute("DELETE FROM queued WHERE expires_at <= ?", (now,)).rowcount
        rows = self._db.execute("SELECT id, priority, expires_at, body FROM queued ORDER BY id").fetchall()
        return [StoredMessage(int(i), int(p), float(e), bytes(b)) for i, p, e, b in rows], max(expired, 0)

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM queued").fetchone()[0])

    def close(self) -> None:
        self._db.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None

    @staticmethod
    def _lock(path: Path) -> int | None:
        if fcntl is None:  # pragma: no cover
            return None
        fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise QueueFileInUse(f"the queue file {path} is in use by another client") from None
        return fd
