"""Cluster mode: servers joined through NATS (docs/cluster.md).

One job per module: ``subjects`` (apps and channels as NATS subjects),
``link`` (the NATS connection and its degraded state), ``interest`` (the
node's NATS subscriptions, reference-counted), ``outgoing`` and
``incoming`` (requests across nodes, both sides), ``members``
(heartbeats), ``discovery`` (``services``/``channels``/``describe``/``stats`` for the
cluster), ``node`` (the facade the server's hooks call), and for
``--workers``: ``workers`` (the supervisor) and ``nats_child`` (a
nats-server it starts).

Nothing here is imported by a standalone server: ``nats-py`` comes with
the ``cluster`` extra (``pip install 'ipc-bridge[cluster]'``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import ServerConfig
    from .node import Cluster

__all__ = ["join", "require_nats"]


def join(config: ServerConfig, *parts: Any) -> Cluster | None:
    """The server's node of a cluster when ``config.cluster`` names NATS
    servers, else None; ``parts``: the server's stats, handlers, apps,
    handler calls, forwarding, pub/sub and shutdown, in that order."""
    if not config.cluster:
        return None
    require_nats()
    from .node import Cluster  # nats-py, from the 'cluster' extra, only now

    stats, handlers, apps, calls, forwarding, pubsub, shutdown = parts
    cluster = pubsub.cluster = Cluster(
        config, stats=stats, handlers=handlers, apps=apps, calls=calls, forwarding=forwarding, pubsub=pubsub, shutdown=shutdown
    )
    return cluster


def require_nats() -> None:
    """Raise ``ImportError`` with the install hint when nats-py is missing,
    so ``python -m ipc_server --cluster`` exits 2 as ``--loop uvloop`` does,
    not with a traceback."""
    try:
        importlib.import_module("nats")
    except ImportError as exc:
        raise ImportError("--cluster needs the nats-py package: pip install 'ipc-bridge[cluster]'") from exc
