"""Requests answered, by app, channel and outcome, and how long the server
took from reading each to queueing its answer (docs/operations.md §1:
``ipc_requests_total``, ``ipc_request_duration_seconds``).

Kept only when metrics are on (``ServerStats.timing``); the answering
code calls :meth:`RequestMetrics.answered` once per request, with the
monotonic time of the read that brought it (``ServerConnection.read_at``).
An answer costs two dict lookups, a bisect and a few increments.

Labels stay bounded whatever clients send: apps past ``MAX_APPS`` count as
``other``, channels past ``MAX_SERIES`` (app, channel) pairs as the app's
``other``, and an outcome that is not one of the protocol's codes (a
responder may answer any string) as ``other``.
"""

from __future__ import annotations

from bisect import bisect_left
from time import monotonic

from ipc_protocol import SERVER_SYSTEM_ACTIONS, SYSTEM_CHANNEL, ErrorCode, Message

from .stats import MAX_APPS, OTHER

__all__ = ["RequestMetrics", "Series", "BUCKETS_S", "MAX_SERIES", "OK", "servers_own"]

# Upper bounds of the duration buckets (seconds): sub-millisecond answers
# from a handler in the server up to the default deadline of 60 s.
BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
MAX_SERIES = 500
OK = "ok"
_OUTCOMES = frozenset({OK, *(str(code) for code in ErrorCode)})


class Series:
    """One (app, channel): answers by outcome, and the durations' histogram
    (``buckets[i]``: answers in ``(BUCKETS_S[i-1], BUCKETS_S[i]]``; the last
    one past every bound)."""

    __slots__ = ("outcomes", "buckets", "total_s", "count")

    def __init__(self) -> None:
        self.outcomes: dict[str, int] = {}
        self.buckets = [0] * (len(BUCKETS_S) + 1)
        self.total_s = 0.0
        self.count = 0


class RequestMetrics:
    def __init__(self) -> None:
        self.apps: dict[str, dict[str, Series]] = {}
        self._series = 0

    def answered(self, app_id: str, channel: str, code: str, received_at: float) -> None:
        """A request was answered ``code`` (``"ok"`` or an error code); it was
        read at ``received_at`` (``time.monotonic()``)."""
        channels = self.apps.get(app_id)
        if channels is None:
            channels = self._app(app_id)
        series = channels.get(channel)
        if series is None:
            series = self._new(channels, channel)
        elapsed = monotonic() - received_at if received_at else 0.0
        series.buckets[bisect_left(BUCKETS_S, elapsed)] += 1
        series.total_s += elapsed
        series.count += 1
        outcomes = series.outcomes
        if code not in outcomes:
            code = str(code) if code in _OUTCOMES else OTHER
        outcomes[code] = outcomes.get(code, 0) + 1

    def _app(self, app_id: str) -> dict[str, Series]:
        if len(self.apps) >= MAX_APPS:
            app_id = OTHER
        return self.apps.setdefault(app_id or "-", {})

    def _new(self, channels: dict[str, Series], channel: str) -> Series:
        if self._series >= MAX_SERIES:
            channel = OTHER
            series = channels.get(OTHER)
            if series is not None:
                return series
        self._series += 1
        series = channels[channel] = Series()
        return series


def servers_own(msg: Message) -> bool:
    """One of the server's own ``system`` actions, which the request metrics
    leave out, answered or refused; a custom action is served like any request."""
    payload = msg.payload
    return msg.channel_id == SYSTEM_CHANNEL and isinstance(payload, dict) and payload.get("action") in SERVER_SYSTEM_ACTIONS
