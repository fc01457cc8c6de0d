"""Streams through a pool, a load-balanced client and a service client
(docs/protocol.md §15; docs/resilience.md §7, §8, §9).

``stream()`` on :class:`~ipc_client.pool.ConnectionPool`,
:class:`~ipc_client.load_balanced_client.LoadBalancedClient` and
:class:`~ipc_client.service_client.ServiceClient` returns what
``IPCClient.stream()`` returns, a :class:`~ipc_client.streams.Stream` (an
async iterator and an async context manager), read from a pooled member:

- Pool: a member shared as ``lease()`` shares it (a client multiplexes, so
  the stream does not hold the connection alone), taken at the first item
  within the stream's ``timeout`` (at most ``acquire_timeout``), held until
  the stream ends, fails or is left (``aclose()``, leaving its ``async
  with``, cancelling the task; a ``cancel`` goes to the producer at once),
  and then given back, once. One that failed before it got a member (none
  in time, none could be opened, the pool closed) counts in the pool's
  ``messages_failed``, as its requests that reached no member.
- Load-balanced client: a server picked as for a request; until the first
  item arrives, an error a request fails over on (``not_connected``,
  ``connection_lost``, ``shutting_down``, ``no_responders``,
  ``circuit_open``) tries the next healthy server, within the stream's
  ``timeout`` (None: the client's ``request_timeout`` bounds the failovers
  and the stream then has no deadline). Once an item was delivered, an
  error goes to the reader: a stream never starts again elsewhere. An
  attempt that got no connection counts as failed in its server's pool,
  a stream that reached no server in the client's own count, as a request.
- Service client: the service's balanced client, started first if need
  be (within the deadline), and counted in its metrics: one stream is one
  call, counted when it ends, an error if it ended with one (a
  ``timeout`` among the timeouts), its latency the time to its first item
  (to its end when none came). A reader that leaves is no error; one that
  leaves before the first item is not counted, as a cancelled request is
  not. The load-balanced client's ``server_stats()`` count a stream so too,
  in flight for its whole life.

Arguments are checked at the call, as ``IPCClient.stream()`` checks them;
the state (a closed pool or client, one not started, a service client shut
down) fails the first item with ``NotConnected``. A pool or client closed
while a stream is open ends it with ``ConnectionLost``, after the items
that came, as it ends the calls in flight. This module has the pool's;
:mod:`ipc_client.balanced_streams` the load-balanced client's and the
service client's. The Node client's ``lib/pooled_streams.js`` and
``lib/balanced_streams.js`` are their twins.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from ipc_protocol import IPCError, RequestTimeout

from .streams import DEFAULT_WINDOW, Stream, check_stream

if TYPE_CHECKING:
    from .pool_core import Member

__all__ = ["PoolStreaming", "Options"]

Options = dict[str, Any]  # idle_timeout, window, headers: as IPCClient.stream() takes them


class PoolStreaming:
    """``ConnectionPool.stream()`` (a base of the pool, as ``Streaming`` of the client)."""

    if TYPE_CHECKING:
        acquire_timeout: float

        async def _share(self, timeout: float | None, join: str | None = None) -> Member: ...
        def _unshare(self, member: Member) -> None: ...
        def _count_unsent(self) -> None: ...

    def stream(
        self,
        channel: str,
        payload: Any = None,
        *,
        timeout: float | None = None,
        idle_timeout: float | None = None,
        window: int | float = DEFAULT_WINDOW,
        headers: dict[str, str] | None = None,
    ) -> Stream:
        """``IPCClient.stream()`` on a member shared as :meth:`lease` shares
        it, held until the stream ends and then given back; ``timeout``
        (the whole stream's, None: none) covers the wait for the member (at
        most ``acquire_timeout``). Raises as ``IPCClient.stream()`` does;
        ``RequestTimeout`` when no member came in time, ``NotConnected``
        once the pool is closed, ``ConnectionLost`` when it closes meanwhile."""
        check_stream(channel, headers, timeout, idle_timeout, window)
        options: Options = {"idle_timeout": idle_timeout, "window": window, "headers": headers}
        return Stream(self._items(channel, payload, timeout, options))

    async def _items(self, channel: str, payload: Any, timeout: float | None, options: Options) -> AsyncGenerator[Any, None]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            member = await self._share(self.acquire_timeout if timeout is None else min(self.acquire_timeout, timeout))
        except IPCError:
            self._count_unsent()  # no member saw it: failed, as a pool's request that got none
            raise
        try:
            left = None if timeout is None else timeout - (loop.time() - started)
            if left is not None and left <= 0:
                self._count_unsent()
                raise RequestTimeout(f"stream on {channel!r} timed out waiting for a connection, before it was sent")
            async with member.client.stream(channel, payload, timeout=left, **options) as items:
                async for item in items.generator:
                    yield item
        finally:
            self._unshare(member)  # once: at the end, the error, or the reader leaving
