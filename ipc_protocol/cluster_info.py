"""What the handshake says about clusters (docs/protocol.md §3 item 10,
§15.1 item 6; docs/cluster.md §6): a client asks for the feature
``cluster``; a server in cluster mode grants it and names its cluster in the
reply's ``cluster``, so a client over several servers knows which of them
deliver the same publishes. A standalone server grants nothing new, and its
reply stays what it was.

Pure, shared by the server and the Python client; Node's copy is
``js-client/lib/protocol/cluster_info.js``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .streams import FEATURES

__all__ = ["CLUSTER", "ASKED_FEATURES", "server_features", "cluster_of"]

CLUSTER = "cluster"
# What both clients ask for: every feature of §15.1, ``cluster`` last.
ASKED_FEATURES: tuple[str, ...] = (*FEATURES, CLUSTER)


def server_features(cluster: str | None) -> tuple[str, ...]:
    """What a server grants from: ``cluster`` only when it is a cluster node."""
    return ASKED_FEATURES if cluster else FEATURES


def cluster_of(reply: Mapping[str, Any]) -> str | None:
    """The cluster a connect reply names (None: a standalone server, or one
    older than the feature)."""
    name = reply.get(CLUSTER)
    return name if isinstance(name, str) and name else None
