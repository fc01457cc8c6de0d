"""Server counters, answered by the ``stats`` system action (§8).

Besides the totals, what the limits of §12 did to whom: the connections cut
as slow consumers and those that were skipped frames over the limit they
declared, each a bounded record (the latest ``_RECORDS`` connections) so a
flood of them costs nothing more than the counters.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict, deque
from typing import Any

__all__ = ["ServerStats"]

# Connections kept in each per-connection record.
_RECORDS = 32


class ServerStats:
    __slots__ = (
        "started_at",
        "connections",
        "connections_total",
        "handshakes_pending",
        "handshakes_evicted",
        "tls_handshakes_failed",
        "messages_in",
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
        "errors",
        "_cut",
        "_skipped",
        "idempotency",
    )

    def __init__(self) -> None:
        self.started_at = time.monotonic()
        self.connections = 0  # sockets kept, pending handshakes included
        self.connections_total = 0
        self.handshakes_pending = 0
        self.handshakes_evicted = 0  # pending sockets evicted at max_pending_handshakes
        self.tls_handshakes_failed = 0  # refused certificates, plaintext on a TLS port, timeouts
        self.messages_in = 0
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
        self.errors: Counter[str] = Counter()
        self._cut: deque[dict[str, Any]] = deque(maxlen=_RECORDS)
        self._skipped: OrderedDict[str, dict[str, Any]] = OrderedDict()
        # The window of idempotency keys (ipc_server.idempotency, docs/protocol.md §6.6).
        self.idempotency: dict[str, int] = {}

    def count_error(self, code: str) -> None:
        self.errors[str(code)] += 1

    def slow_consumer(self, app_id: str, connection_id: str, reason: str, buffered: int) -> None:
        """A connection cut as a slow consumer (§12); ``reason``: which limit."""
        self.slow_consumers += 1
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
        out = {name: getattr(self, name) for name in self.__slots__ if name not in ("started_at", "errors") and not name.startswith("_")}
        out["errors"] = dict(self.errors)
        out["slow_consumers_cut"] = [dict(r) for r in self._cut]
        out["frames_skipped_by_connection"] = [dict(r) for r in self._skipped.values()]
        out["uptime_s"] = round(time.monotonic() - self.started_at, 3)
        return out
