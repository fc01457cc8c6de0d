"""A pool of connections to one server (docs/resilience.md §7).

Members are :class:`IPCClient` with ``reconnect=False``: a member whose
connection drops is destroyed and replaced by the pool rather than waiting
to reconnect in place, so nobody holds a client that silently stalls.

Two ways to use a member:

- ``acquire()`` / ``release()`` (and ``execute``, ``connection()``): the
  member is yours alone until released, as §7 describes.
- ``lease()``: a member shared with other callers (a client multiplexes many
  calls on one connection), the one with the fewest calls in flight; while
  below ``max_connections`` a lessee that finds every member busy waits for
  a new one. The load balancer uses this, so one connection per server is
  not one call at a time per server, and so do the pool's own calls
  (``request``, ``send_request``, ``publish``, ``notify``), as Node's pool.
  A member handed to a waiting lessee is handed to all of the waiting
  lessees at once, while waiting ``acquire()`` callers still get members of
  their own, first come first served.

Who gets which member, and when a connection is opened or closed, is decided
by :func:`~ipc_client.pool_plan.plan_pool` on the pool's state (as httpcore's
pool does) and applied by :class:`~ipc_client.pool_core.PoolCore`, which
does the I/O; this module is the public API. Subscriptions and responders
made through the pool live on one member (:mod:`ipc_client.pool_registrations`).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from ipc_protocol import IPCError, Message, NotConnected, RequestTimeout
from ipc_protocol.constants import DEFAULT_REQUEST_TIMEOUT_S
from ipc_protocol.payload_paths import read_once

from .client import Handler, IPCClient
from .coalescing import request_key
from .option_checks import check_pool_options
from .pool_core import Member, PoolCore
from .pool_metrics import sum_metrics
from .pool_plan import pick_shared
from .pooled_streams import PoolStreaming
from .subscriptions import check_unsubscription
from .timeouts import check_timeout

__all__ = ["ConnectionPool", "DEFAULT_ACQUIRE_TIMEOUT_S", "DEFAULT_IDLE_TIMEOUT_S"]

DEFAULT_ACQUIRE_TIMEOUT_S = 5.0
DEFAULT_IDLE_TIMEOUT_S = 30.0

T = TypeVar("T")


class ConnectionPool(PoolStreaming, PoolCore):
    """Between ``min_connections`` and ``max_connections`` clients to one server.

    Args:
        app_id, host, port: as for :class:`IPCClient`.
        min_connections: opened by :meth:`start` and kept open.
        max_connections: never more members than this.
        acquire_timeout: seconds :meth:`acquire` waits for a free member
            before raising ``RequestTimeout``.
        idle_timeout: seconds after which an unused member above
            ``min_connections`` is closed; None keeps them.
        client_options: passed to every member's :class:`IPCClient`, except
            ``queue_path`` (ValueError): a persisted outbox belongs to one
            client, and members sharing the file would each replay all of it.
            ``reconnect`` and ``wait_on_first_connect`` are refused too:
            the pool replaces dead members, and a member it cannot open
            fails that open at once.
    """

    def __init__(
        self,
        app_id: str,
        host: str = "localhost",
        port: int = 8888,
        *,
        min_connections: int = 1,
        max_connections: int = 10,
        acquire_timeout: float = DEFAULT_ACQUIRE_TIMEOUT_S,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT_S,
        **client_options: Any,
    ) -> None:
        check_pool_options(min_connections, max_connections, acquire_timeout, idle_timeout)
        if client_options.pop("reconnect", False):
            raise ValueError("pool members do not reconnect: the pool replaces them")
        if client_options.pop("wait_on_first_connect", False):
            raise ValueError("pool members do not wait on their first connect: a failed open raises NotConnected")
        _refuse_queue_path("ConnectionPool", client_options)
        super().__init__(
            app_id,
            host,
            port,
            min_connections=min_connections,
            max_connections=max_connections,
            acquire_timeout=acquire_timeout,
            idle_timeout=idle_timeout,
            client_options=client_options,
        )
        self.request_timeout: float = client_options.get("request_timeout", DEFAULT_REQUEST_TIMEOUT_S)

    # -- events ----------------------------------------------------------------

    def on(self, event: str, callback: Callable[..., Any]) -> Callable[..., Any]:
        """``member_created(client)``, ``member_lost(client, error)``: a
        member's connection dropped (not when the pool closed it), or
        ``error(exc)``: a member's error that belongs to no call (a pooled
        subscription's handler that raised, as Node's pool reports it, a
        registration its replay on a new member dropped; not
        the error that ended its connection, which ``member_lost`` has) or
        an event callback that raised. With no ``error`` callback it is logged."""
        return self._listeners.add(event, callback)


    # -- lifecycle ---------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    async def start(self) -> None:
        """Open ``min_connections`` members. Raises NotConnected if one cannot
        be opened; the pool stays usable and keeps opening them in the
        background, with the members' backoff, until :meth:`close` (as
        Node's), unless the server refused the credentials (Unauthorized)."""
        self._check_open()
        if self._reaper is None and self.idle_timeout is not None:
            self._reaper = asyncio.ensure_future(self._reap())
        missing = self.min_connections - len(self._members) - self._opening

        async def open_one() -> None:
            # Listed as soon as it is open: a start() cancelled after that must not lose it to close().
            self._make_available(await self._create())

        results = await asyncio.gather(*(open_one() for _ in range(missing)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            self._schedule_refill(attempt=1)  # after a first delay: the server just refused
            raise errors[0]

    async def close(self) -> None:
        """Close every member; waiting and later calls fail with NotConnected."""
        if self._closed:
            return
        self._closed = True
        for task in (self._reaper, self._refill_task):
            if task is not None:
                task.cancel()
        waiters, self._waiters = self._waiters, collections.deque()
        for w in waiters:
            if not w.future.done():
                w.future.set_exception(NotConnected("the pool was closed"))
        members, self._members = self._members, []
        self._registrations.registrar = None
        for m in members:
            m.closing = True
        self._total_destroyed += len(members)
        opening = [c.disconnect() for c in self._opening_clients]  # their opens fail now, not at connect_timeout
        await asyncio.gather(*opening, *(self._retire(m) for m in members), return_exceptions=True)

    async def __aenter__(self) -> ConnectionPool:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- exclusive use (§7) ------------------------------------------------------

    async def acquire(self, timeout: float | None = None) -> IPCClient:
        """A connected member for your use alone until :meth:`release`.

        An idle member if there is one, else a new one while below
        ``max_connections``, else the first to be released (FIFO).

        Raises:
            RequestTimeout: none was free within ``timeout`` (default ``acquire_timeout``).
            NotConnected: a new member could not be opened, or the pool is closed.
        """
        return (await self._wait(False, timeout)).client

    def release(self, client: IPCClient) -> None:
        """Give back a member from :meth:`acquire`; a dead one is replaced."""
        member = self._find(client)
        if member is None or not member.leased:
            if self._closed:
                return  # close() already took it
            raise ValueError("this client was not acquired from this pool")
        member.leased = False
        self._free(member)

    async def execute(self, fn: Callable[[IPCClient], Awaitable[T]], *, timeout: float | None = None) -> T:
        """``await fn(client)`` on an acquired member, released even on error."""
        client = await self.acquire(timeout)
        try:
            return await fn(client)
        finally:
            self.release(client)

    @asynccontextmanager
    async def connection(self, timeout: float | None = None) -> AsyncIterator[IPCClient]:
        """``async with pool.connection() as client``: acquire and release."""
        client = await self.acquire(timeout)
        try:
            yield client
        finally:
            self.release(client)

    # -- shared use ----------------------------------------------------------------

    @asynccontextmanager
    async def lease(self, timeout: float | None = None) -> AsyncIterator[IPCClient]:
        """A connected member shared with other lessees, for the block's calls.

        Raises as :meth:`acquire` does.
        """
        member = await self._share(timeout)
        try:
            yield member.client
        finally:
            self._unshare(member)

    async def _share(self, timeout: float | None, join: str | None = None) -> Member:
        """A member for one more shared call, counted in its ``shared``. A
        coalesced call (``join``: its request key) goes to the member where
        an identical one is in flight, so it joins it (docs/resilience.md §11)."""
        self._check_open()
        member = self._carrying(join) if join is not None else None
        if member is None and not self._waiters:
            member = pick_shared(self._members, self._settings.lease_threshold)[0]
        if member is not None:  # no plan needed: nobody waits and a member is free to share, or it joins a call
            member.shared += 1
            return member
        return await self._wait(True, timeout)  # counts this lessee in member.shared

    def _unshare(self, member: Member) -> None:
        member.shared -= 1
        self._free(member)

    def _carrying(self, key: str) -> Member | None:
        """A usable member, not held by acquire(), with a coalesced call of ``key`` in flight."""
        return next((m for m in self._members if m.usable and not m.leased and m.client._shared.carries(key)), None)

    async def health_check(self, timeout: float = 2.0) -> dict[str, Any]:
        """Ping the server on one member: a connected one, busy or not (a ping
        needs no exclusive use), else a new one, as Node's ``healthCheck()``.

        Returns ``{healthy, latency_ms}``, with ``error`` (a code) when it
        failed; raises only for a ``timeout`` that is not a finite number
        of seconds (as every call, docs/resilience.md §4).
        """
        seconds = check_timeout(timeout, 2.0)
        if self._closed:
            return {"healthy": False, "latency_ms": None, "error": "not_connected"}
        loop = asyncio.get_running_loop()
        started = loop.time()
        member = next((m for m in self._members if m.usable), None)
        leased = None
        if member is None:
            try:
                leased = member = await self._share(seconds)
            except IPCError as exc:
                return {"healthy": False, "latency_ms": None, "error": str(exc.code)}
        try:
            health = await member.client.health(max(seconds - (loop.time() - started), 0.001))
        finally:
            if leased is not None:
                self._unshare(leased)
        if health["healthy"]:
            return {"healthy": True, "latency_ms": health["latency_ms"]}
        error = health.get("error")
        return {"healthy": False, "latency_ms": None, "error": str(error["code"]) if error else "not_connected"}


    # -- subscriptions and responders (on one member, see pool_registrations) ------------

    async def subscribe(self, channel: str, handler: Handler) -> bool:
        """Subscribe on one member (the registrar), restored on its replacement.

        Returns True if it is active now, False if the server is unreachable
        (it is kept and applied once a member connects).
        """
        self._check_open()
        return await self._registrations.subscribe(channel, handler)

    async def serve(self, channel: str, fn: Handler) -> bool:
        """Answer requests on ``channel`` from the registrar; as :meth:`subscribe`.

        Raises AlreadyServing (code ``already_serving``) if the pool already
        serves ``channel``, as :meth:`IPCClient.serve` does."""
        self._check_open()
        return await self._registrations.serve(channel, fn)

    async def unsubscribe(self, channel: str, handler: Handler | None = None) -> None:
        """Remove ``handler`` (or every handler); wrong types raise TypeError, as IPCClient's."""
        check_unsubscription(channel, handler)
        await self._registrations.unsubscribe(channel, handler)

    async def unserve(self, channel: str) -> None:
        await self._registrations.unserve(channel)

    # -- convenience calls ------------------------------------------------------------

    async def _on_member(self, channel: str, timeout: float | None, fn: Callable[[IPCClient, float, float], Awaitable[T]], join: str | None = None) -> T:
        """Lease a member (shared, as the load balancer's calls: a client
        multiplexes) within the call's deadline, then call with what is left
        of it. A deadline that has passed (a timeout of zero or less, or one
        spent waiting for a member) fails the call before it is sent, as
        the load balancer's calls fail. Such a failure counts in the
        pool's ``messages_failed``: no member saw the call."""
        loop = asyncio.get_running_loop()
        total = check_timeout(timeout, self.request_timeout)
        deadline = loop.time() + total
        try:
            if total <= 0:
                raise RequestTimeout(f"call on {channel!r} timed out before it was sent (timeout {total:g} s)")
            member = await self._share(min(self.acquire_timeout, total), join)
        except IPCError:
            self._count_unsent()
            raise
        try:
            left = deadline - loop.time()
            if left <= 0:
                self._count_unsent()
                raise RequestTimeout(f"call on {channel!r} timed out waiting for a connection, before it was sent")
            return await fn(member.client, left, total)  # the budget is what is left, the text names the call's own
        finally:
            self._unshare(member)

    async def send_request(self, channel: str, payload: Any = None, *, timeout: float | None = None, **kwargs: Any) -> Message:
        """:meth:`IPCClient.send_request` on a member shared with other calls
        (:meth:`lease`); ``timeout`` covers the wait for it. With
        ``coalesce=True`` it joins an identical call in flight on any member."""
        payload = read_once(payload)  # an iterator, read once: the key and the member's call both read it (§16.3)
        join = request_key(channel, payload) if kwargs.get("coalesce") else None
        return await self._on_member(channel, timeout, lambda c, left, total: c.send_request(channel, payload, timeout=left, _named_timeout=total, **kwargs), join)

    async def request(self, channel: str, payload: Any = None, *, timeout: float | None = None, **kwargs: Any) -> Any:
        return (await self.send_request(channel, payload, timeout=timeout, **kwargs)).payload

    async def publish(self, channel: str, data: Any = None, *, timeout: float | None = None, **kwargs: Any) -> int | None:
        return await self._on_member(channel, timeout, lambda c, left, _total: c.publish(channel, data, timeout=left, **kwargs))

    async def notify(self, channel: str, data: Any = None, *, timeout: float | None = None, **kwargs: Any) -> None:
        await self._on_member(channel, timeout, lambda c, left, _total: c.notify(channel, data, timeout=left, **kwargs))

    def clear_cache(self) -> None:
        """Forget every cached answer (``cache_ttl``) of every member: each
        keeps its own cache (docs/resilience.md §11)."""
        for m in self._members:
            m.client.clear_cache()

    # -- introspection ---------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        return {
            "total": len(self._members),
            "available": sum(1 for m in self._members if m.usable and not m.busy),
            "in_use": sum(1 for m in self._members if m.busy),
            "pending": sum(1 for w in self._waiters if not w.future.done()),
            "total_created": self._total_created,
            "total_destroyed": self._total_destroyed,
        }

    def metrics(self) -> dict[str, Any]:
        """The members' ``metrics()`` summed (counters of destroyed members
        included), rates and means recomputed from the sums; every key of a
        client's, with ``active_connections``, ``queued``, ``queued_bytes``
        and ``cache_size`` at 0 when no member is live."""
        # A member being retired counts until folded into _retired; an open under way, its attempt, as a lone client's.
        clients = {m.client: None for m in (*self._members, *self._retiring)} | dict.fromkeys(self._opening_clients)
        snaps = [c.metrics() for c in clients if callable(getattr(c, "metrics", None))]
        return sum_metrics(snaps, self._retired, sum(1 for m in self._members if m.client.connected))

    def __repr__(self) -> str:
        s = self.stats()
        return (
            f"<ConnectionPool {self.app_id!r} {self.host}:{self.port} total={s['total']} available={s['available']}"
            f" in_use={s['in_use']} pending={s['pending']}{' closed' if self._closed else ''}>"
        )


def _refuse_queue_path(owner: str, client_options: dict[str, Any]) -> None:
    """A persisted outbox belongs to one client: members given the same file
    would share it and each replay every row in it."""
    if client_options.get("queue_path") is not None:
        raise ValueError(
            f"{owner} does not take queue_path: a persisted outbox belongs to one client, and its"
            " pooled connections would share the file and each replay all of it;"
            " give a single IPCClient its own queue_path instead"
        )
