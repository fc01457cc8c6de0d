"""A pool's metrics: its members' ``metrics()`` summed (docs/resilience.md §2).

Counters of destroyed members are kept, so a pool's totals do not drop when
a connection is replaced; rates and means are recomputed from the sums, since
adding up rates means nothing.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["fold_retired", "sum_metrics"]

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
