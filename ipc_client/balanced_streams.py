"""Streams through a load-balanced client and a service client
(docs/protocol.md §15; docs/resilience.md §8, §9): ``stream()`` on
:class:`~ipc_client.load_balanced_client.LoadBalancedClient` and
:class:`~ipc_client.service_client.ServiceClient`. What each promises is
said in :mod:`ipc_client.pooled_streams`, with the pool's. The Node
client's ``lib/balanced_streams.js`` is its twin.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from ipc_protocol import IPCError
from ipc_protocol.payload_paths import read_once

from .call_trace import CallTrace
from .pooled_streams import Options
from .streams import DEFAULT_WINDOW, Stream, check_stream

if TYPE_CHECKING:
    from .balanced_health import ServerHealth
    from .balancer import Balancer, Server
    from .pool import ConnectionPool
    from .service_client import _Service

__all__ = ["BalancedStreaming", "ServiceStreaming"]


class BalancedStreaming:
    """``LoadBalancedClient.stream()`` (a base of the load-balanced client)."""

    if TYPE_CHECKING:
        request_timeout: float
        _balancer: Balancer
        _pools: dict[Server, ConnectionPool]
        _health: ServerHealth
        _closed: bool
        _unsent: int

        def _check_started(self) -> None: ...
        def _fail_over(self, server: Server, exc: IPCError, connected: bool) -> None: ...

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
        """``IPCClient.stream()`` on one healthy server, picked as for a
        request. Until the first item, the errors a request fails over on
        try the next healthy server, each at most once, within ``timeout``
        (the whole stream's; None: the stream has none and
        ``request_timeout`` bounds the failovers); after it, an error is
        raised to the reader. Raises as :meth:`send_request` does, before the
        first item; as ``IPCClient.stream()`` after it."""
        check_stream(channel, headers, timeout, idle_timeout, window)
        options: Options = {"idle_timeout": idle_timeout, "window": window, "headers": headers}
        return Stream(self._routed(channel, read_once(payload), timeout, options))  # an iterator, read once: a failover sends it again

    async def _routed(self, channel: str, payload: Any, timeout: float | None, options: Options) -> AsyncGenerator[Any, None]:
        tried: set[Server] = set()
        call: CallTrace | None = None
        failure: BaseException | None = None
        try:
            self._check_started()
            # Its attempts in one trace, as a request's (docs/tracing.md §1): current around each attempt's open only.
            call = CallTrace.start("request", channel, options["headers"])
            loop = asyncio.get_running_loop()
            total = self.request_timeout if timeout is None else timeout
            deadline = loop.time() + total
            last: IPCError | None = None
            while True:
                left = deadline - loop.time()
                server = self._balancer.next_server(tried, last, left, f"started the stream on {channel!r}", total)
                pool = self._pools[server]
                started = loop.time()
                answered: float | None = None  # when the first item came
                failed, member = True, None
                server.started()
                try:
                    member = await pool._share(min(left, pool.acquire_timeout))
                    rest = None if timeout is None else max(deadline - loop.time(), 0.001)
                    async with member.client.stream(channel, payload, timeout=rest, **options) as items:
                        step = items.generator.__anext__
                        while True:
                            try:
                                if answered is None and call is not None:
                                    with call.entered():  # the open: its request sent, up to its first item; never the reader's code
                                        item = await step()
                                else:
                                    item = await step()
                            except StopAsyncIteration:
                                break
                            if answered is None:
                                answered = loop.time()
                                self._health.mark_up(server)  # it answered: in rotation
                            yield item
                    failed = False
                    self._health.mark_up(server)
                    return
                except IPCError as exc:
                    if member is None:
                        pool._count_unsent()  # an attempt that got no connection: failed there, as a request's
                    if answered is not None or self._closed:
                        raise  # an item was delivered (or the client closed): the reader's, never another server's
                    self._fail_over(server, exc, member is not None)
                    last = exc
                except (GeneratorExit, asyncio.CancelledError):
                    failed = False  # the reader left: not the server's failure
                    raise
                finally:
                    if member is not None:
                        pool._unshare(member)
                    server.finished((loop.time() if answered is None else answered) - started, failed=failed)
        except BaseException as exc:
            failure = exc
            if isinstance(exc, IPCError) and not tried:
                self._unsent += 1  # it reached no server (closed, not started, none healthy), as a request
            raise
        finally:
            if call is not None:
                call.end(failure)


class ServiceStreaming:
    """``ServiceClient.stream()`` (a base of the service client)."""

    if TYPE_CHECKING:
        _services: dict[str, _Service]

        def _service(self, name: str) -> _Service: ...

    def stream(
        self,
        service: str,
        method: str,
        data: Any = None,
        *,
        timeout: float | None = None,
        idle_timeout: float | None = None,
        window: int | float = DEFAULT_WINDOW,
        headers: dict[str, str] | None = None,
    ) -> Stream:
        """The items ``method`` (a channel in the service's app) streams, as
        :meth:`LoadBalancedClient.stream` reads them; a service not started
        yet is started first, within ``timeout`` (None: within the service's
        ``timeout``). Counted in :meth:`metrics` as one call once it ended
        (see docs/resilience.md §9). Raises ValueError for an unknown service."""
        if service not in self._services:
            raise ValueError(f"unknown service {service!r}; known: {', '.join(self._services) or 'none'}")
        check_stream(method, headers, timeout, idle_timeout, window)
        options: Options = {"idle_timeout": idle_timeout, "window": window, "headers": headers}
        return Stream(self._service_items(service, method, data, timeout, options))

    async def _service_items(self, name: str, method: str, data: Any, timeout: float | None, options: Options) -> AsyncGenerator[Any, None]:
        svc = self._service(name)  # the service as it is now (NotConnected once shut down)
        started = time.monotonic()
        answered: float | None = None
        try:
            timeout = await svc.ready_within(timeout)  # None stays None: the stream has no deadline
            async with svc.client.stream(method, data, timeout=timeout, **options) as items:
                async for item in items.generator:
                    if answered is None:
                        answered = time.monotonic()
                    yield item
        except Exception as exc:
            svc.record(started, exc, answered)
            raise
        except BaseException:  # the reader left (aclose, cancel): counted once it had an item
            if answered is not None:
                svc.record(started, None, answered)
            raise
        svc.record(started, None, answered)
