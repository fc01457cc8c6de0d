"""Server counters, answered by the ``stats`` system action (§8)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

__all__ = ["ServerStats"]


class ServerStats:
    __slots__ = (
        "started_at",
        "connections",
        "connections_total",
        "handshakes_pending",
        "handshakes_evicted",
        "messages_in",
        "messages_out",
        "bytes_in",
        "bytes_out",
        "requests",
        "notifications",
        "publishes",
        "deliveries",
        "slow_consumers",
        "errors",
    )

    def __init__(self) -> None:
        self.started_at = time.monotonic()
        self.connections = 0  # sockets kept, pending handshakes included
        self.connections_total = 0
        self.handshakes_pending = 0  # sockets not yet past the handshake
        self.handshakes_evicted = 0  # pending sockets evicted at max_pending_handshakes
        self.messages_in = 0
        self.messages_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.requests = 0
        self.notifications = 0
        self.publishes = 0
        self.deliveries = 0
        self.slow_consumers = 0
        self.errors: Counter[str] = Counter()

    def count_error(self, code: str) -> None:
        self.errors[str(code)] += 1

    def snapshot(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__slots__ if name not in ("started_at", "errors")}
        out["errors"] = dict(self.errors)
        out["uptime_s"] = round(time.monotonic() - self.started_at, 3)
        return out
