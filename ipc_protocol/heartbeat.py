"""Heartbeat bookkeeping on an injected clock (docs/protocol.md, "Heartbeats").

Pure state: the caller tells it when frames arrive and when it sent a ping,
and asks ``poll(now)`` what to do. No timers, no I/O, so it is tested with a
fake clock and used the same way by the server sweep and the clients.
"""

from __future__ import annotations

from enum import Enum

from .constants import MIN_HEARTBEAT_INTERVAL_S

__all__ = ["HeartbeatAction", "Heartbeat", "check_period"]

# More than a clock reading's rounding (a float's spacing near 10^9 s is ~10^-7 s).
_ROUNDING_S = 1e-6
_CHECK_PERIOD_S = 0.25


def check_period(interval_s: float) -> float:
    """The server sweep's period for ``interval_s``, and how late a check may
    wake before its loop counts as stalled (§9.2, §9.3): a quarter of the
    interval, at most 0.25 s, never under a quarter of the shortest interval."""
    return max(MIN_HEARTBEAT_INTERVAL_S / 4, min(_CHECK_PERIOD_S, interval_s / 4))


class HeartbeatAction(Enum):
    NONE = "none"
    PING = "ping"
    DEAD = "dead"


class Heartbeat:
    """Decides when to ping a silent peer and when to declare it dead.

    Args:
        interval_s: ping after this long without receiving anything.
        timeout_s: the peer is dead after this long without receiving anything.
            One not over the interval (a client's own timeout under the
            interval its server advertises) pings at half the timeout
            instead, so a ping always goes before the peer is declared dead.
        now: the current time, the start of the silence.
    """

    __slots__ = ("interval_s", "timeout_s", "last_received", "silent_since", "last_ping_sent", "_ping_sent_at", "latency_s", "_check_due", "_stall_excused")

    def __init__(self, interval_s: float, timeout_s: float, now: float) -> None:
        if interval_s <= 0 or timeout_s <= 0:
            raise ValueError("heartbeat interval and timeout must be positive")
        self.interval_s = interval_s if timeout_s > interval_s else timeout_s / 2
        self.timeout_s = timeout_s
        self.last_received = now  # the last frame, as it was: what health and errors report
        # Where the silence counted against the peer starts: ``last_received``,
        # unless part of it was excused (a stall of ours, a pause in reading).
        # ``poll`` and ``next_check`` go by it alone.
        self.silent_since = now
        self.last_ping_sent: float | None = None
        self._ping_sent_at: float | None = None
        self.latency_s: float | None = None
        self._check_due: float | None = None  # when next_check asked to be woken
        self._stall_excused = False  # this silence already had a stall excused

    def received(self, now: float) -> None:
        """Any frame from the peer proves it is alive."""
        self.last_received = self.silent_since = now
        self._stall_excused = False

    def silent_an_interval(self, now: float) -> None:
        """Count the peer silent for an interval as of ``now``: ``poll`` pings
        it (if not pinged since), never declares it dead. An interval and a
        microsecond: ``now - (now - interval)`` rounds below the interval for
        some clock readings, and then no ping would go. ``last_received`` is
        left as it was: the peer did not speak."""
        self.silent_since = now - self.interval_s - _ROUNDING_S

    def pong_received(self, now: float) -> None:
        self.received(now)
        if self._ping_sent_at is not None:
            self.latency_s = now - self._ping_sent_at
            self._ping_sent_at = None

    def poll(self, now: float) -> HeartbeatAction:
        self._excuse_a_stall(now)
        silent = now - self.silent_since
        if silent >= self.timeout_s:
            return HeartbeatAction.DEAD
        if silent >= self.interval_s and (
            self.last_ping_sent is None or self.last_ping_sent < self.silent_since or now - self.last_ping_sent >= self.interval_s
        ):
            self.last_ping_sent = now
            if self._ping_sent_at is None:
                self._ping_sent_at = now
            return HeartbeatAction.PING
        return HeartbeatAction.NONE

    def next_check(self, now: float) -> float:
        """Seconds until ``poll`` may return something new: the earlier of
        the next ping and the death. ``poll`` then knows how late it woke."""
        due = self.silent_since + self.interval_s
        if self.last_ping_sent is not None and self.last_ping_sent >= self.silent_since:
            due = self.last_ping_sent + self.interval_s
        delay = max(0.0, min(due, self.silent_since + self.timeout_s) - now)
        self._check_due = now + delay
        return delay

    def _excuse_a_stall(self, now: float) -> None:
        """A check more than a period late means our own loop stalled: what
        it did not read meanwhile is not the peer's silence (§9.2). Count
        the silence as one interval, so the peer is pinged now and has the
        rest of the timeout to answer; once a silence, so a loop that is
        always late still declares a dead peer dead. Counted in
        ``silent_since``: ``last_received`` stays the real last frame."""
        due, self._check_due = self._check_due, None
        if due is None or self._stall_excused or now - due <= check_period(self.interval_s):
            return
        if now - self.silent_since >= self.interval_s:
            self._stall_excused = True
            self.silent_since = max(self.silent_since, now - self.interval_s - _ROUNDING_S)
