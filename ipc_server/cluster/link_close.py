"""Closing the link's NATS connection without waiting on a NATS that does
not answer (docs/cluster.md §4).

``drain()`` answers what other nodes asked and unsubscribes, so it goes
first when NATS answers. When it does not (its process stopped, say: the
shutdown's last flush had no answer), nats-py's ``drain()`` waits out its
own timeouts, and a cancel does not end it: it swallows the cancellation
and flushes again for 10 s, and the gather of its subscriptions' drains
is left with an exception nobody retrieves (asyncio logs it at ERROR).
So then the socket is aborted and the connection closed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from nats.errors import Error as NatsError

__all__ = ["close_nats", "FLUSH_TIMEOUT_S"]

log = logging.getLogger("ipc_server.cluster")

FLUSH_TIMEOUT_S = 5  # NATS's answer to a flush (link.py), and a drain's or a close's bound here


async def close_nats(nc: Any, wire: Any, answering: bool) -> None:
    """Drain ``nc`` when NATS answers, else abort ``wire`` (its transport)
    and close it: within about ``FLUSH_TIMEOUT_S`` either way, never raising."""
    try:
        if nc.is_connected and answering:
            drain = asyncio.ensure_future(nc.drain())
            done, _ = await asyncio.wait({drain}, timeout=FLUSH_TIMEOUT_S)
            if done:
                drain.result()
                return
            log.info("cluster: NATS did not answer the drain within %g s: closing the connection", FLUSH_TIMEOUT_S)
            wire.abort()  # its flushes fail at once now
            for _ in range(2):  # the first cancel is swallowed, and the drain flushes: the second ends that
                drain.cancel()
                await asyncio.wait({drain}, timeout=1.0)
                if drain.done():
                    break
            if drain.done() and not drain.cancelled():
                drain.exception()  # retrieved: a failed drain of a connection being closed is no news
            return
        if not nc.is_closed:
            wire.abort()  # what it still holds for NATS goes with it: nothing to wait for
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), FLUSH_TIMEOUT_S)
    except (NatsError, asyncio.TimeoutError, AttributeError, AssertionError, ConnectionError):
        pass
    except Exception:  # pragma: no cover - closing must never fail the server's close
        log.exception("cluster: closing the NATS connection failed")
