"""Persistence of the offline queue in an SQLite file (stdlib ``sqlite3``).

Only one-way messages (publish, notify) are stored: a request's caller cannot
outlive the process, so there would be nobody to answer. Each row keeps the
encoded message and its absolute expiry time (wall clock), so a client
started later with the same file sends what has not expired yet.

Writes are synchronous and small (WAL, ``synchronous=NORMAL``); they happen
only while the client is offline, never on the connected hot path.

A file has one owner at a time: two clients sending the same rows would
deliver each message twice. The store holds ``<path>.lock`` (``flock`` and
``py:PID`` in it, the scheme the Node client shares: ``queue_lock.py``) and
refuses, with ``QueueFileInUse``, a file another client, Python or Node, holds.

Every failure of the file is a ``QueueFileError`` naming the path, never a
raw ``OSError`` or ``sqlite3.Error``: opening (a directory that cannot be
made, a file that is not a queue file: it is left untouched), reading and
writing. A row whose delete failed is deleted by the next write that works,
so a message sent meanwhile is not sent again by a later start.

SQLite writes through the descriptors it opened, so a file removed, replaced
(by another file or a directory) or made read-only under a running client
would take writes a later start never reads: each write first checks that
the path still names the file opened and that it is writable (a stat and an
access call, about 4 us against the insert's 27-54 us), and refuses
with ``QueueFileError`` otherwise, as the Node client, which opens the path
for each write, does.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from ipc_protocol import QueueFileError

from .queue_lock import QueueFileInUse, lock_queue_file, unlock_queue_file

__all__ = ["QueueStore", "StoredMessage", "QueueFileInUse"]

_EFFECTIVE = os.access in os.supports_effective_ids  # judged as open() would: by the effective uid


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
        self.path = Path(path).absolute()
        self._unremoved: set[int] = set()  # rows sent or dropped whose delete failed
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._error("cannot create its directory", exc) from exc
        self._lock_fd = lock_queue_file(str(self.path), f"queue_path {str(self.path)!r}")
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            self._unlock()
            raise self._error("cannot open", exc) from exc
        try:
            self._check()
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
            self._fspath = str(self.path)  # a str: stat() and access() convert a Path each time
            st = os.stat(self._fspath)
            self._identity = (st.st_dev, st.st_ino)
        except BaseException as exc:
            self.close()
            if isinstance(exc, (sqlite3.Error, OSError)):
                raise self._error("cannot open", exc) from exc
            raise

    def add(self, priority: int, expires_at: float, body: bytes) -> int:
        """Store one message; QueueFileError if it could not be written."""
        self._still_ours()
        try:
            cur = self._db.execute("INSERT INTO queued (priority, expires_at, body) VALUES (?, ?, ?)", (priority, expires_at, body))
        except sqlite3.Error as exc:
            raise self._error("cannot write", exc) from exc
        if self._unremoved:
            try:
                self._delete()
            except sqlite3.Error:
                pass  # already reported; kept for the next write
        return int(cur.lastrowid or 0)

    def remove(self, *message_ids: int) -> None:
        """Delete sent or dropped messages; on failure they are kept in
        ``_unremoved`` for the next write, and QueueFileError is raised."""
        self._unremoved.update(message_ids)
        self._still_ours()
        try:
            self._delete()
        except sqlite3.Error as exc:
            raise self._error("cannot write", exc) from exc

    def load(self, now: float | None = None) -> tuple[list[StoredMessage], int]:
        """Unexpired messages, oldest first, and how many expired ones were deleted."""
        now = time.time() if now is None else now
        try:
            expired = self._db.execute("DELETE FROM queued WHERE expires_at <= ?", (now,)).rowcount
            rows = self._db.execute("SELECT id, priority, expires_at, body FROM queued ORDER BY id").fetchall()
        except sqlite3.Error as exc:
            raise self._error("cannot read", exc) from exc
        return [StoredMessage(int(i), int(p), float(e), bytes(b)) for i, p, e, b in rows], max(expired, 0)

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM queued").fetchone()[0])

    def close(self) -> None:
        if self._unremoved:
            try:
                self._delete()  # a last try; what stays is sent again by the next start (at least once)
            except sqlite3.Error:
                pass
        self._db.close()
        self._unlock()

    def _delete(self) -> None:
        ids = sorted(self._unremoved)
        for at in range(0, len(ids), 500):  # one statement (one commit) per 500: SQLite's old limit is 999 variables
            chunk = ids[at:at + 500]
            self._db.execute(f"DELETE FROM queued WHERE id IN ({','.join('?' * len(chunk))})", chunk)
            self._unremoved.difference_update(chunk)

    def _still_ours(self) -> None:
        """QueueFileError unless the path still names the file opened, writable."""
        try:
            st = os.stat(self._fspath)
        except FileNotFoundError:
            raise self._error("cannot write: the file was removed", None) from None
        except OSError as exc:
            raise self._error("cannot write", exc) from exc
        if (st.st_dev, st.st_ino) != self._identity or not stat.S_ISREG(st.st_mode):
            raise self._error("cannot write: the file was replaced", None)
        if not os.access(self._fspath, os.W_OK, effective_ids=_EFFECTIVE):
            raise self._error("cannot write: the file is read-only", None)

    def _check(self) -> None:
        """Refuse, without writing to it, a file that is not a queue file: not
        SQLite, or a database of something else (its tables are not ours)."""
        try:
            tables = {str(r[0]) for r in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            columns = {str(r[1]) for r in self._db.execute("PRAGMA table_info(queued)")}
        except sqlite3.DatabaseError as exc:
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_NOTADB:
                raise self._error("is not a queue file", exc) from exc
            raise  # busy, I/O...: "cannot open"
        if tables and ("queued" not in tables or not {"id", "priority", "expires_at", "body"} <= columns):
            raise self._error(f"is not a queue file: an SQLite database with other tables ({', '.join(sorted(tables))})", None)

    def _error(self, what: str, cause: BaseException | None) -> QueueFileError:
        text = f"queue_path {str(self.path)!r} {what}" if what.startswith("is ") else f"queue_path {str(self.path)!r}: {what}"
        return QueueFileError(text if cause is None else f"{text}: {cause}", path=str(self.path))

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            unlock_queue_file(str(self.path), self._lock_fd)
            self._lock_fd = None
