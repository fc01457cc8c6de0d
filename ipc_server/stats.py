"""Server counters, answered by the ``stats`` system action (§8).

Besides the totals, what the limits of §12 did to whom: the connections cut
as slow consumers and those that were skipped frames over the limit they
declared, each a bounded record (the latest ``_RECORDS`` connections) so a
flood of them costs nothing more than the counters.

Messages are counted by app and type (:class:`AppTraffic`, one per app,
shared by its connections: one dict increment per message); the totals
``messages_in`` and the ``by_type`` figures are sums of those. Apps past
``MAX_APPS`` share the ``other`` counters, as do error codes that are not
the protocol's, so a client inventing app ids or codes cannot grow them
(docs/operations.md).
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict, deque
from typing import Any

from ipc_protocol import ErrorCode, MessageType

__all__ = ["ServerStats", "AppTraffic", "MAX_APPS", "OTHER", "HANDSHAKE_APP"]

# Connections kept in each per-connection record.
_RECORDS = 32
# Apps counted apart; the rest share OTHER.
MAX_APPS = 100
OTHER = "other"
# The frames of sockets not past their handshake (their connect, the errors
# that refused it): no app is admitted yet.
HANDSHAKE_APP = "-"
# Error codes counted apart; a responder may answer any string, the rest share OTHER.
_CODES = frozenset(str(code) for code in ErrorCode)


class AppTraffic:
    """Messages received from and queued for one app's connections, by type."""

    __slots__ = ("app", "received", "sent")

    def __init__(self, app: str) -> None:
        self.app = app
        self.received: dict[MessageType, int] = dict.fromkeys(MessageType, 0)
        self.sent: dict[MessageType, int] = dict.fromkeys(MessageType, 0)


class ServerStats:
    __slots__ = (
        "started_at",
        "connections",
        "connections_total",
        "handshakes_pending",
        "handshakes_evicted",
        "tls_handshakes_failed",
        "metrics_sockets_evicted",
        "messages_out",
        "bytes_in",
        "bytes_out",
        "requests",
        "notifications",
        "publishes",
        "deliveries",
        "subscriptions",
        "registrations",
        "slow_consumers",
        "frames_skipped",
        "streams",
        "streams_opened",
        "stream_items",
        "cancels",
        "late_answers",
        "binary_frames",
        "attachments_downgraded",
        "errors",
        "_cut",
        "_skipped",
        "slow_consumers_by_limit",
        "apps",
        "timing",
        "idempotency",
        "grace",
    )

    def __init__(self) -> None:
        self.started_at = time.monotonic()
        self.connections = 0  # sockets kept, pending handshakes included
        self.connections_total = 0
        self.handshakes_pending = 0
        self.handshakes_evicted = 0  # pending sockets evicted at max_pending_handshakes
        self.tls_handshakes_failed = 0  # refused certificates, plaintext on a TLS port, timeouts
        self.metrics_sockets_evicted = 0  # sockets of the metrics port evicted at its cap (ipc_server.http_endpoint)
        self.messages_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.requests = 0
        self.notifications = 0
        self.publishes = 0
        self.deliveries = 0
        self.subscriptions = 0  # held now, every app (max_subscriptions counts these)
        self.registrations = 0  # responder registrations held now (max_registrations)
        self.slow_consumers = 0
        self.frames_skipped = 0  # frames over a connection's declared max_frame_size
        # Streams and cancellation (docs/protocol.md §15): open now, opened, items
        # relayed or sent, cancels received, answers dropped for requests that had ended.
        self.streams = 0
        self.streams_opened = 0
        self.stream_items = 0
        self.cancels = 0
        self.late_answers = 0
        # Binary attachments (docs/protocol.md §16): binary frames received, and
        # attachments sent as tagged base64 to peers without ``binary``.
        self.binary_frames = 0
        self.attachments_downgraded = 0
        self.errors: Counter[str] = Counter()
        self._cut: deque[dict[str, Any]] = deque(maxlen=_RECORDS)
        self._skipped: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.slow_consumers_by_limit: Counter[str] = Counter()
        self.apps: dict[str, AppTraffic] = {HANDSHAKE_APP: AppTraffic(HANDSHAKE_APP)}
        # Request outcomes and durations (ipc_server.request_metrics), when metrics are on.
        self.timing: Any = None
        # The window of idempotency keys (ipc_server.idempotency, docs/protocol.md §6.6).
        self.idempotency: dict[str, int] = {}
        # Requests held for want of a responder (ipc_server.grace, docs/protocol.md §13.2).
        self.grace: dict[str, int] = {}

    def traffic(self, app_id: str) -> AppTraffic:
        """The counters of ``app_id``: its own among the first ``MAX_APPS``, else ``other``."""
        traffic = self.apps.get(app_id)
        if traffic is None:
            if len(self.apps) > MAX_APPS:
                app_id = OTHER
                traffic = self.apps.get(OTHER)
            if traffic is None:
                traffic = self.apps[app_id] = AppTraffic(app_id)
        return traffic

    @property
    def messages_in(self) -> int:
        """Messages received (every app, handshakes included)."""
        return sum(sum(t.received.values()) for t in self.apps.values())

    def by_type(self) -> dict[str, dict[str, int]]:
        """``{"in": {type: n}, "out": {type: n}}``, every app."""
        out: dict[str, dict[str, int]] = {"in": {}, "out": {}}
        for traffic in self.apps.values():
            for direction, counts in (("in", traffic.received), ("out", traffic.sent)):
                totals = out[direction]
                for mtype, n in counts.items():
                    totals[mtype.value] = totals.get(mtype.value, 0) + n
        return out

    def count_error(self, code: str) -> None:
        """By code; a code that is not the protocol's counts as ``other``,
        so responders inventing codes cannot grow the figures."""
        key = str(code)
        self.errors[key if key in _CODES else OTHER] += 1

    def slow_consumer(self, app_id: str, connection_id: str, reason: str, buffered: int) -> None:
        """A connection cut as a slow consumer (§12); ``reason``: which limit."""
        self.slow_consumers += 1
        self.slow_consumers_by_limit[reason] += 1
        self._cut.append({"app_id": app_id, "connection_id": connection_id, "limit": reason, "buffered_bytes": buffered, "at": round(time.time(), 3)})

    def frame_skipped(self, app_id: str, connection_id: str) -> None:
        """A frame not sent to a connection: over the limit it declared (§3, §12)."""
        self.frames_skipped += 1
        record = self._skipped.get(connection_id)
        if record is None:
            if len(self._skipped) >= _RECORDS:
                self._skipped.popitem(last=False)
            record = self._skipped[connection_id] = {"app_id": app_id, "connection_id": connection_id, "frames": 0}
        else:
            self._skipped.move_to_end(connection_id)
        record["frames"] += 1

    def snapshot(self) -> dict[str, Any]:
        skip = ("started_at", "errors", "slow_consumers_by_limit", "apps", "timing")
        out = {name: getattr(self, name) for name in self.__slots__ if name not in skip and not name.startswith("_")}
        out["messages_in"] = self.messages_in
        out["messages_by_type"] = self.by_type()
        out["errors"] = dict(self.errors)
        out["slow_consumers_cut"] = [dict(r) for r in self._cut]
        out["frames_skipped_by_connection"] = [dict(r) for r in self._skipped.values()]
        out["uptime_s"] = round(time.monotonic() - self.started_at, 3)
        return out
