"""A pool's metrics: its members' ``metrics()`` summed (docs/resilience.md §2).

Counters of destroyed members are kept, so a pool's totals do not drop when
a connection is replaced; rates and means are recomputed from the sums, since
adding up rates means nothing. A mean's part of the destroyed members is kept
as its total (mean x count), so a pool's mean covers every connection it
had, closed ones included, and keeps its value after ``close()``, as Node's
``sumMetrics`` does; means are rounded to 3 decimals (whole microseconds),
as a client's are. Every key of a member's ``metrics()`` is
there whether or not a member is live (before ``start()``, while the server
is down, after ``close()``): the counters at what they reached, the present
ones (``active_connections``, ``queued``, ``queued_bytes``, ``cache_size``)
at 0, as Node's ``pool_metrics.js``.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["fold_retired", "mean_ms", "sum_metrics", "zero_counters"]

# Metrics that describe the present, not a history: never carried over from
# destroyed members.
_LIVE_METRICS = frozenset({"active_connections", "queued", "queued_bytes", "cache_size"})

# Mean metrics and the count each is a mean over, for weighting across members.
_AVERAGES = {
    "average_reconnection_time_ms": "reconnections",
    "average_connection_duration_ms": "connection_successes",
}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def mean_ms(total: float, count: float) -> float:
    """A mean in ms as both clients report it: 3 decimals, 0.0 over nothing."""
    return round(total / count, 3) if count else 0.0


def zero_counters(snapshot: Mapping[str, Any]) -> collections.Counter[str]:
    """Every counter of a member's ``metrics()`` at 0, to start the retired
    sum with: a pool that never had a member still reports every key. A
    mean's entry is its total (mean x count) over the destroyed members."""
    counters: collections.Counter[str] = collections.Counter()
    for key, value in snapshot.items():
        if _is_number(value) and key not in _LIVE_METRICS and not key.endswith("_rate"):
            counters[key] = 0
    return counters


def fold_retired(retired: collections.Counter[str], final: Mapping[str, Any]) -> None:
    """Add a destroyed member's last counters to ``retired``; a mean as its
    total (mean x the count it is a mean over), rates not at all."""
    for key, value in final.items():
        if key in _LIVE_METRICS or key.endswith("_rate") or not _is_number(value):
            continue
        count_key = _AVERAGES.get(key)
        retired[key] += value if count_key is None else value * (final.get(count_key) or 0)


def sum_metrics(snaps: Iterable[Mapping[str, Any]], retired: Mapping[str, int | float], active: int) -> dict[str, Any]:
    """The live members' snapshots plus the retired counters; ``active`` is
    the number of members connected now."""
    snaps = list(snaps)
    totals: collections.Counter[str] = collections.Counter(retired)
    for snap in snaps:
        for key, value in snap.items():
            if _is_number(value) and not key.endswith("_rate"):
                count_key = _AVERAGES.get(key)
                totals[key] += value if count_key is None else value * (snap.get(count_key) or 0)
    out: dict[str, Any] = dict(totals)
    for key in _LIVE_METRICS:  # the present of no member: 0, never a missing key (as in Node)
        out.setdefault(key, 0)
    out["active_connections"] = active
    attempts, successes = totals["connection_attempts"], totals["connection_successes"]
    out["connection_success_rate"] = successes / attempts if attempts else 1.0
    delivered, failed = totals["messages_delivered"], totals["messages_failed"]
    out["message_delivery_rate"] = delivered / (delivered + failed) if delivered + failed else 1.0
    for avg_key, count_key in _AVERAGES.items():  # totals[avg_key] is the mean's total: every member's, closed ones too
        out[avg_key] = mean_ms(totals[avg_key], totals[count_key])
    return out
