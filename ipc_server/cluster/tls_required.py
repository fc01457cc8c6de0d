"""A link that asks for TLS gets TLS or no link (docs/cluster.md §6).

nats-py switches a connection to TLS only when the server's INFO says
``tls_required``: given a ``tls://`` URL or a TLS context, it still goes on
in plaintext with a server that does not ask for TLS (Go's client refuses:
"secure connection required"). :func:`require_tls` looks at the INFO nats-py
reads on each connect (the first one and every reconnect) before it decides
on TLS and before it sends CONNECT (with any credentials):

- a server that requires TLS: nothing to do;
- one that offers it without requiring it (``tls_available``, nats-server's
  ``allow_non_tls``): nats-py is told it is required, so it does the
  handshake;
- one that does not do TLS: that attempt fails with :class:`TLSRequired`,
  which nats-py handles as any failed attempt (it reports it to the link's
  error callback and tries again later), so the link stays down, its reason
  naming why, and the refusal is logged as an ERROR.

This reaches into nats-py's client: ``_process_info``, a coroutine that
``_process_connect_init`` awaits with the INFO it read and
``initial_connection=True``. Where the installed nats-py has no such method
:func:`require_tls` raises, and the link does not connect at all rather
than trust the URL; a test with a plaintext nats-server says it still holds.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from nats.errors import Error as NatsError

__all__ = ["TLSRequired", "require_tls"]

log = logging.getLogger("ipc_server.cluster")


class TLSRequired(NatsError):
    """The link asks for TLS and the server does not do it."""


def require_tls(nc: Any) -> None:
    """Make ``nc`` (a nats-py client, not connected yet) refuse a server that does not do TLS."""
    process_info = getattr(nc, "_process_info", None)
    if not inspect.iscoroutinefunction(process_info):
        raise TLSRequired("this nats-py cannot be checked to use TLS (no Client._process_info); not connecting")
    logged: set[str] = set()

    async def checked(info: dict[str, Any], initial_connection: bool = False) -> None:
        if initial_connection and not info.get("tls_required"):
            if not info.get("tls_available"):
                server = getattr(getattr(nc, "_current_server", None), "uri", None)
                where = f" at {server.hostname}:{server.port}" if server is not None else ""
                text = f"nats-server{where} does not do TLS, and the link asks for it (a tls:// URL or cluster_tls_*): not connecting in plaintext"
                if text not in logged:  # nats-py tries again every reconnect_time_wait
                    logged.add(text)
                    log.error("cluster: %s", text)
                raise TLSRequired(text)
            info["tls_required"] = True  # the dict nats-py decides on next
        await process_info(info, initial_connection=initial_connection)

    nc._process_info = checked
