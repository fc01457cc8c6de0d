"""A cap on the log lines one connection can make the server write
(docs/operations.md §4): the refusals a peer causes frame by frame (a
notification nobody serves, a forbidden publish) were each one line, so one
connection wrote 30,000 lines (7 MB) a second.

Per connection and reason, the first ``BURST`` lines are written as they
were; the ones after are counted, and every ``WINDOW_S`` seconds one line
says how many were suppressed. A window without any such refusal (since
the latest one, written or counted) brings the burst back, after a count
line too;
the connection's close writes what is left, and its close line is its last:
a line asked for later (a handler that ends after its requester left) is
not written. Accepted frames never get here;
a refused one costs a dict lookup. The ``stats`` error counters are counted
by the callers, each refusal, whatever is logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ipc_protocol import clipped

__all__ = ["BURST", "WINDOW_S", "LineKey", "LogLimits", "allow_line", "flush_lines"]

BURST = 5
WINDOW_S = 10.0


class LineKey:
    """One (connection or host, reason): lines written, the latest refusal
    at ``last`` (written or not); lines suppressed since ``since``; the
    timer of its window."""

    __slots__ = ("logger", "written", "last", "suppressed", "since", "timer")

    def __init__(self, logger: logging.Logger, now: float, since: float = 0.0) -> None:
        self.logger = logger
        self.written = 1
        self.last = now
        self.suppressed = 0
        self.since = since
        self.timer: asyncio.TimerHandle | None = None


class LogLimits:
    """The limits of one connection's lines, created at its first refusal."""

    __slots__ = ("conn", "keys", "burst", "window_s", "closed")

    def __init__(self, conn: Any, *, closed: bool = False) -> None:
        self.conn = conn
        self.keys: dict[str, LineKey] = {}
        self.burst = BURST  # read here, so a test can shorten them
        self.window_s = WINDOW_S
        self.closed = closed

    def allow(self, reason: str, logger: logging.Logger) -> bool:
        """Whether to write this ``reason``'s line now; if not, it is counted."""
        if self.closed:  # after the close line: nothing more (module doc)
            return False
        key = self.keys.get(reason)
        now = time.monotonic()
        if key is None:
            self.keys[reason] = LineKey(logger, now)
            return True
        quiet = now - key.last >= self.window_s
        key.last = now
        if key.written < self.burst:
            key.written += 1
            return True
        if quiet:  # a window without any such refusal: the burst is back
            if key.timer is not None:
                key.timer.cancel()
                key.timer = None
            if key.suppressed:
                self._summary(reason, key)
            key.written = 1
            return True
        if key.suppressed == 0 and key.timer is None:
            key.since = now
            key.timer = asyncio.get_running_loop().call_later(self.window_s, self._window_ended, reason)
        key.suppressed += 1
        return False

    def _window_ended(self, reason: str) -> None:
        key = self.keys[reason]
        if key.suppressed == 0:  # a quiet window: the next line is written again
            del self.keys[reason]
            return
        self._summary(reason, key)
        key.since = time.monotonic()
        key.timer = asyncio.get_running_loop().call_later(self.window_s, self._window_ended, reason)

    def _summary(self, reason: str, key: LineKey) -> None:
        conn = self.conn
        elapsed = time.monotonic() - key.since
        seconds = f"{elapsed:.0f}" if elapsed >= 1 else f"{elapsed:.1f}"
        extra = {"app": conn.app_id or None, "connection_id": conn.connection_id or None}
        key.logger.info("%d more '%s' lines from %s suppressed in the last %s s", key.suppressed, reason, clipped(conn.connection_id or "-"), seconds, extra=extra)
        key.suppressed = 0

    def flush(self) -> None:
        """The connection closed: say what was suppressed, stop the timers."""
        for reason, key in self.keys.items():
            if key.timer is not None:
                key.timer.cancel()
                key.timer = None
            if key.suppressed:
                self._summary(reason, key)
        self.keys.clear()


def allow_line(conn: Any, reason: str, logger: logging.Logger) -> bool:
    """Whether ``conn``'s line for ``reason`` is written now (module doc)."""
    limits: LogLimits | None | bool = getattr(conn, "log_limits", False)
    if limits is None:
        try:
            limits = conn.log_limits = LogLimits(conn)
        except AttributeError:  # a requester that keeps none
            return True
    if not isinstance(limits, LogLimits):  # a requester on another node (cluster): its own node limits its lines
        return True
    return limits.allow(reason, logger)


# A closed connection's limits: they write nothing and hold no connection.
_CLOSED = LogLimits(None, closed=True)


def flush_lines(conn: Any) -> None:
    """At ``conn``'s close, before its close line: later lines are not
    written, and no new limits (a timer holding ``conn``) are made."""
    limits: LogLimits | None = conn.log_limits
    conn.log_limits = _CLOSED
    if limits is not None and limits is not _CLOSED:
        limits.flush()
