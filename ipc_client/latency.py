"""A sliding window of call latencies: average, percentiles and call rate.

Pure: the caller passes the latency and, for the rate, the times, so it is
tested without a clock (docs/resilience.md §8, §9).
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["LatencyWindow", "DEFAULT_WINDOW_SIZE"]

DEFAULT_WINDOW_SIZE = 1024


class LatencyWindow:
    """The last ``size`` latencies (seconds in, milliseconds out).

    A bounded window, not a running mean: a service that was slow an hour
    ago and is fast now reports as fast.
    """

    def __init__(self, size: int = DEFAULT_WINDOW_SIZE) -> None:
        if size < 1:
            raise ValueError("size must be >= 1")
        self.size = size
        # (time the call started, latency), both seconds on the caller's clock.
        self._samples: deque[tuple[float, float]] = deque(maxlen=size)

    def add(self, latency_s: float, started_at: float = 0.0) -> None:
        """One call: its latency and when it started (as Node's
        ``record(latencyMs, startedAt)``). The start is given, not derived
        from the end: a stream's latency is its time to the first item, so
        its end less its latency is not when it started."""
        self._samples.append((started_at, max(latency_s, 0.0)))

    def __len__(self) -> int:
        return len(self._samples)

    def average_ms(self) -> float | None:
        """Mean latency in ms, or None with no samples."""
        if not self._samples:
            return None
        return sum(lat for _, lat in self._samples) * 1000 / len(self._samples)

    def percentile_ms(self, q: float) -> float | None:
        """Nearest-rank percentile ``q`` (0-100] in ms, or None with no samples."""
        if not 0 < q <= 100:
            raise ValueError("q must be in (0, 100]")
        if not self._samples:
            return None
        ordered = sorted(lat for _, lat in self._samples)
        rank = max(math.ceil(q / 100 * len(ordered)), 1)
        return ordered[rank - 1] * 1000

    def rate(self, now: float) -> float:
        """Calls per second over the span the window covers, from the
        earliest start of its calls to ``now``; 0.0 with no samples."""
        if not self._samples:
            return 0.0
        span = now - min(started for started, _ in self._samples)
        return len(self._samples) / span if span > 0 else 0.0

    def snapshot(self) -> dict[str, float | None]:
        """``{avg, p50, p99}`` in ms, rounded to the microsecond."""

        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 3)

        return {"avg": r(self.average_ms()), "p50": r(self.percentile_ms(50)), "p99": r(self.percentile_ms(99))}

    def __repr__(self) -> str:
        return f"<LatencyWindow {len(self)}/{self.size} avg_ms={self.average_ms()}>"
