"""The client's KPIs (docs/resilience.md §2): counters fed by the client at
each event, turned into rates on demand. Times are passed in, so it is
tested on a fake clock."""

from __future__ import annotations

from typing import Any

__all__ = ["ClientMetrics"]


class ClientMetrics:
    def __init__(self) -> None:
        self.connection_attempts = 0
        self.connection_successes = 0
        self.reconnections = 0
        self.messages_sent = 0
        self.messages_delivered = 0
        self.messages_failed = 0
        # Shared calls and iterators (docs/resilience.md §11), counted by their modules.
        self.cache_hits = 0
        self.cache_misses = 0
        self.cache_size = 0
        self.requests_coalesced = 0
        self.iterator_dropped = 0
        # Inbound messages not held for a handler slot: max_held_messages reached (admission).
        self.held_dropped = 0
        self._reconnect_time_total = 0.0
        self._closed_connections = 0
        self._closed_duration_total = 0.0
        self._opened_at: float | None = None
        self._lost_at: float | None = None

    # -- connection ------------------------------------------------------------

    def attempt(self) -> None:
        self.connection_attempts += 1

    def opened(self, now: float) -> None:
        self.connection_successes += 1
        self._opened_at = now
        if self._lost_at is not None:
            self.reconnections += 1
            self._reconnect_time_total += now - self._lost_at
            self._lost_at = None

    def closed(self, now: float, *, will_reconnect: bool) -> None:
        if self._opened_at is not None:
            self._closed_connections += 1
            self._closed_duration_total += now - self._opened_at
            self._opened_at = None
        self._lost_at = now if will_reconnect else None

    # -- messages ----------------------------------------------------------------

    def sent(self, n: int = 1) -> None:
        self.messages_sent += n

    def delivered(self, n: int = 1) -> None:
        self.messages_delivered += n

    def failed(self, n: int = 1) -> None:
        self.messages_failed += n

    def snapshot(self, now: float) -> dict[str, Any]:
        connected = self._opened_at is not None
        durations = self._closed_duration_total + (now - self._opened_at if self._opened_at is not None else 0.0)
        connections = self._closed_connections + (1 if connected else 0)
        settled = self.messages_delivered + self.messages_failed
        return {
            "connection_attempts": self.connection_attempts,
            "connection_successes": self.connection_successes,
            "connection_success_rate": self.connection_successes / self.connection_attempts if self.connection_attempts else 1.0,
            "reconnections": self.reconnections,
            "average_reconnection_time_ms": round(self._reconnect_time_total / self.reconnections * 1000, 3) if self.reconnections else 0.0,
            "messages_sent": self.messages_sent,
            "messages_delivered": self.messages_delivered,
            "messages_failed": self.messages_failed,
            "message_delivery_rate": self.messages_delivered / settled if settled else 1.0,
            "active_connections": 1 if connected else 0,
            "average_connection_duration_ms": round(durations / connections * 1000, 3) if connections else 0.0,
            "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses,
            "cache_size": self.cache_size,
            "requests_coalesced": self.requests_coalesced,
            "iterator_dropped": self.iterator_dropped,
            "held_dropped": self.held_dropped,
        }
