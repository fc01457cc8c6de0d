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
        self.connections = 0
        self.connections_total = 0
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
