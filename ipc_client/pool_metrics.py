"""A pool's metrics: its members' ``metrics()`` summed (docs/resilience.md §2).

Counters of destroyed members are kept, so a pool's totals do not drop when
a connection is replaced; rates and means are recomputed from the sums, since
adding up rates means nothing. Every key of a member's ``metrics()`` is
there whether or not a member is live (before ``start()``, while the server
is down, after ``close()``): the counters at what they reached, the present
ones (``active_connections``, ``queued``, ``queued_bytes``, ``cache_size``)
at 0, as Node's ``pool_metrics.js``.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["fold_retired", "sum_metrics", "zero_counters"]

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


def zero_counters(snapshot: Mapping[str, Any]) -> collections.Counter[str]:
    """Every counter of a member's ``metrics()`` at 0, to start the retired
    sum with: a pool that never had a member still reports every key."""
    counters: collections.Counter[str] = collections.Counter()
    for key, value in snapshot.items():
        if _is_number(value) and key not in _LIVE_METRICS and not key.endswith("_rate") and key not in _AVERAGES:
            counters[key] = 0
    return counters


def fold_retired(retired: collections.Counter[str], final: Mapping[str, Any]) -> None:
    """Add a destroyed member's last counters to ``retired``."""
    for key, value in final.items():
        if key not in _LIVE_METRICS and _is_number(value):
            retired[key] += value


def sum_metrics(snaps: Iterable[Mapping[str, Any]], retired: Mapping[str, int | float], active: int) -> dict[str, Any]:
    """The live members' snapshots plus the retired counters; ``active`` is
    the number of members connected now."""
    snaps = list(snaps)
    totals: collections.Counter[str] = collections.Counter(retired)
    for snap in snaps:
        for key, value in snap.items():
            if _is_number(value) and not key.endswith("_rate") and not key.startswith("average_"):
                totals[key] += value
    out: dict[str, Any] = dict(totals)
    for key in _LIVE_METRICS:  # the present of no member: 0, never a missing key (as in Node)
        out.setdefault(key, 0)
    out["active_connections"] = active
    attempts, successes = totals["connection_attempts"], totals["connection_successes"]
    out["connection_success_rate"] = successes / attempts if attempts else 1.0
    delivered, failed = totals["messages_delivered"], totals["messages_failed"]
    out["message_delivery_rate"] = delivered / (delivered + failed) if delivered + failed else 1.0
    for avg_key, count_key in _AVERAGES.items():
        pairs = [(s[avg_key], s.get(count_key) or 0) for s in snaps if _is_number(s.get(avg_key))]
        count = sum(n for _, n in pairs)
        out[avg_key] = sum(a * n for a, n in pairs) / count if count else 0.0
    return out
