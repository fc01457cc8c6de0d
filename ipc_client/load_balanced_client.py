"""One client over several servers (docs/resilience.md §8).

A pool per server; each call goes to one healthy server chosen by the
strategy and moves to the next on errors that say "not here" (the server is
gone or has nobody to answer), or when the server's pool gives it no
connection within its ``acquire_timeout``, within the call's original deadline. Health
checks take servers out of rotation and put them back; so does a server's
pool opening a connection, or a call through the server succeeding, which
brings a server back without health checks too.

Calls share each server's pooled connections (:meth:`ConnectionPool.lease`):
a client multiplexes, so one connection per server is not one call at a
time per server.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from ipc_protocol import AlreadyServing, ErrorCode, IPCError, Message, NotConnected, validate_pattern, printable
from ipc_protocol.constants import DEFAULT_REQUEST_TIMEOUT_S
from ipc_protocol.payload_paths import read_once

from .listeners import Listeners
from .balanced_health import ServerHealth, unreachable
from .balanced_subscriptions import BalancedSubscriptions, refusal, tally
from .balancer import FAILOVER_CODES, SERVER_DOWN_CODES, Balancer, Server, ServerSpec, parse_server
from .client import Handler, IPCClient
from .pool import DEFAULT_ACQUIRE_TIMEOUT_S, DEFAULT_IDLE_TIMEOUT_S, ConnectionPool, _refuse_queue_path
from .option_checks import check_seconds
from .pool_metrics import mean_ms
from .subscriptions import check_unsubscription
from .balanced_streams import BalancedStreaming
from .timeouts import check_timeout
from .call_trace import one_trace

__all__ = ["LoadBalancedClient", "FAILOVER_CODES", "SERVER_DOWN_CODES"]

log = logging.getLogger("ipc_client.balancer")

T = TypeVar("T")

DEFAULT_HEALTH_CHECK_INTERVAL_S = 5.0
DEFAULT_HEALTH_CHECK_TIMEOUT_S = 2.0

_EVENTS = ("server_up", "server_down", "server_leaving", "subscription_moved")


class LoadBalancedClient(BalancedStreaming):
    """Requests, publishes and registrations over a set of servers.

    Args:
        app_id: the application on every server.
        servers: ``(host, port)``, ``"host:port"`` or ``{host, port, weight}``.
        strategy: ``round_robin``, ``least_connections``, ``weighted`` or ``random``.
        health_check_interval: seconds between health check rounds; None: none.
        health_check_timeout: seconds a server gets to answer a check.
        min_connections, max_connections: each server's pool.
        acquire_timeout, idle_timeout: each server's pool.
        rng: the random source of the ``random`` strategy.
        client_options: passed to every pooled :class:`IPCClient`, except
            ``queue_path`` (ValueError): a persisted outbox belongs to one
            client, not to every connection of every server.

    Events (``on(name, cb)``): ``server_down(snapshot, error)``,
    ``server_up(snapshot)``, ``server_leaving(snapshot, deadline_ms)``: the
    server said it is leaving (docs/protocol.md §13.1), new calls go to the others;
    ``subscription_moved(channel, from_snapshot, to_snapshot)``: over nodes of
    one cluster a subscription lives on one node, and it moved (docs/cluster.md §6).
    """

    def __init__(
        self,
        app_id: str,
        servers: Iterable[ServerSpec],
        *,
        strategy: str = "round_robin",
        health_check_interval: float | None = DEFAULT_HEALTH_CHECK_INTERVAL_S,
        health_check_timeout: float = DEFAULT_HEALTH_CHECK_TIMEOUT_S,
        min_connections: int = 1,
        max_connections: int = 1,
        acquire_timeout: float = DEFAULT_ACQUIRE_TIMEOUT_S,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT_S,
        rng: random.Random | None = None,
        **client_options: Any,
    ) -> None:
        check_seconds("health_check_interval", health_check_interval, exclusive=True, none=True)  # None: no health checks
        check_seconds("health_check_timeout", health_check_timeout, exclusive=True)
        _refuse_queue_path("LoadBalancedClient", client_options)
        self.app_id = app_id
        self.servers: list[Server] = [parse_server(s) for s in servers]
        self._balancer = Balancer(self.servers, strategy, rng=rng)
        self.strategy = strategy
        self.health_check_interval = health_check_interval
        self.health_check_timeout = health_check_timeout
        self.request_timeout: float = client_options.get("request_timeout", DEFAULT_REQUEST_TIMEOUT_S)
        self._pools: dict[Server, ConnectionPool] = {}
        for server in self.servers:
            pool = ConnectionPool(
                app_id, server.host, server.port,
                min_connections=min_connections, max_connections=max_connections,
                acquire_timeout=acquire_timeout, idle_timeout=idle_timeout, **client_options,
            )
            self._pools[server] = pool
        self._listeners = Listeners("load balancer", _EVENTS)
        self._health = ServerHealth(self._pools, timeout=health_check_timeout, emit=self._emit, closed=lambda: self._closed)
        for server, pool in self._pools.items():
            pool.on("member_lost", lambda client, error, s=server: self._health.mark_down(s, error))
            # A new connection means the server is back, health checks or not; it says when it leaves (lame duck).
            pool.on("member_created", lambda client, s=server: self._health.connected(s, client))
            pool.on("member_created", lambda client, s=server: self._subscriptions.connected(s, client))  # its cluster, if any
        self._subscriptions = BalancedSubscriptions(self.servers, self._pools, emit=self._listeners.emit, closed=lambda: self._closed)
        self._serving: set[str] = set()
        self._unsent = 0  # calls that failed before any server was tried (closed, none healthy)
        self._started = False
        self._closed = False

    # -- events -----------------------------------------------------------------

    def on(self, event: str, callback: Callable[..., Any]) -> Callable[..., Any]:
        """``server_up(snapshot)``, ``server_down(snapshot, error)`` or ``server_leaving(snapshot, deadline_ms)``."""
        return self._listeners.add(event, callback)

    def _emit(self, event: str, *args: Any) -> None:
        self._subscriptions.changed()  # a server came, went or is leaving: a subscription may move
        self._listeners.emit(event, *args)

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Open every server's pool and start the health checks.

        Servers that cannot be reached start out of rotation and the health
        checks bring them in. Raises NotConnected if none could be reached
        (the checks keep running until :meth:`close`): the first server's
        error in its message, its cause as ``connect()`` gives it
        (balanced_health.unreachable); or if :meth:`close` was called meanwhile.
        """
        self._check_open()
        if self._started:
            return
        self._started = True
        errors = await self._health.open_all()
        if self._closed:  # as every call after close() (the Node client's too)
            raise NotConnected("the client was closed during start()")
        if self.health_check_interval is not None:
            self._health.start(self.health_check_interval)
        if not any(s.healthy for s in self.servers):
            raise unreachable(errors)

    async def close(self) -> None:
        """Stop the health checks and close every pool; later calls raise NotConnected."""
        if self._closed:
            return
        self._closed = True
        await self._health.stop()
        await self._subscriptions.close()
        await asyncio.gather(*(p.close() for p in self._pools.values()))

    async def __aenter__(self) -> LoadBalancedClient:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise NotConnected("the client is closed")

    def _check_started(self) -> None:
        self._check_open()
        if not self._started:
            raise NotConnected("start() was not called")

    async def check_health(self) -> list[dict[str, Any]]:
        """Ping every server once now; returns :meth:`server_stats` afterwards."""
        await self._health.check_all()
        return self.server_stats()

    # -- calls ------------------------------------------------------------------------

    async def _route(self, timeout: float | None, call: Callable[[IPCClient, float, float], Awaitable[T]]) -> T:
        """Run ``call`` on one healthy server after another until it succeeds,
        fails with an error another server cannot fix, or the deadline passes.
        Each server is tried at most once per call. An attempt that got no
        connection counts as failed in its server's pool, a call that
        reached no server at all here (metrics(), as a lone client's)."""
        loop = asyncio.get_running_loop()
        tried: set[Server] = set()
        last: IPCError | None = None
        try:
            self._check_started()
            total = check_timeout(timeout, self.request_timeout)
            deadline = loop.time() + total
            while True:
                left = deadline - loop.time()
                server = self._balancer.next_server(tried, last, left, "answered", total)
                pool = self._pools[server]
                started = loop.time()
                server.started()
                failed, leased = True, False
                try:
                    # A connection within the pool's acquire timeout, or the next server (as Node).
                    async with pool.lease(min(left, pool.acquire_timeout)) as client:
                        leased = True
                        result = await call(client, max(deadline - loop.time(), 0.001), total)  # a timeout names the call's own
                    failed = False
                    self._health.mark_up(server)  # it answered: in rotation, if a concurrent failure took it out
                    return result
                except IPCError as exc:
                    if not leased:
                        pool._count_unsent()
                    self._fail_over(server, exc, leased)
                    last = exc
                finally:
                    server.finished(loop.time() - started, failed=failed)
        except IPCError:
            if not tried:
                self._unsent += 1
            raise

    def _fail_over(self, server: Server, exc: IPCError, connected: bool) -> None:
        """``exc`` ended an attempt on ``server``: take the server out of the
        rotation when it says the server is gone, and raise it when no other
        server can do better. Without a connection to it in time (or at all),
        the next server may always do better."""
        if not connected:
            if exc.code == ErrorCode.NOT_CONNECTED:
                self._health.mark_down(server, exc)
            return
        if exc.code not in FAILOVER_CODES:
            raise exc
        if exc.code in SERVER_DOWN_CODES:
            self._health.mark_down(server, exc)

    async def send_request(self, channel: str, payload: Any = None, *, timeout: float | None = None, **kwargs: Any) -> Message:
        """Send a request to one healthy server, failing over as §8 says.

        ``kwargs`` (``headers``, ``priority``...) go to :meth:`IPCClient.send_request`.
        An ``idempotency_key`` goes with every attempt: a retry that reaches the
        server the first attempt reached joins its run or gets its stored answer
        (docs/protocol.md §6.6), so it runs once there.

        Raises:
            NotConnected: no healthy server (or every one failed with a
                "server gone" error).
            RequestTimeout: the whole call's deadline passed, or the last
                server tried gave no connection within ``acquire_timeout``.
            NoResponders, CircuitOpen: every healthy server said so.
            RemoteError and the rest: as the server answered; not retried.
        """
        payload = read_once(payload)  # an iterator, read once: each failover sends it again (§16.3)
        with one_trace("request", channel, kwargs.get("headers")):  # every attempt in the call's trace (docs/tracing.md)
            return await self._route(timeout, lambda c, left, total: c.send_request(channel, payload, timeout=left, _named_timeout=total, **kwargs))

    async def request(self, channel: str, payload: Any = None, *, timeout: float | None = None, **kwargs: Any) -> Any:
        """Like :meth:`send_request` but returns the response payload only."""
        return (await self.send_request(channel, payload, timeout=timeout, **kwargs)).payload

    async def publish(self, channel: str, data: Any = None, *, timeout: float | None = None, **kwargs: Any) -> int | None:
        """Publish on one server (its subscribers receive it), with the same failover."""
        data = read_once(data)
        with one_trace("publish", channel, kwargs.get("headers")):
            return await self._route(timeout, lambda c, left, _total: c.publish(channel, data, timeout=left, **kwargs))

    async def notify(self, channel: str, data: Any = None, *, timeout: float | None = None, **kwargs: Any) -> None:
        """A one-way request to one server, with the same failover."""
        data = read_once(data)
        with one_trace("notify", channel, kwargs.get("headers")):
            await self._route(timeout, lambda c, left, _total: c.notify(channel, data, timeout=left, **kwargs))

    # -- registrations: responders on every server, subscriptions in balanced_subscriptions ---

    async def _register(self, apply: Callable[[ConnectionPool], Awaitable[bool]], undo: Callable[[ConnectionPool], Awaitable[None]]) -> int:
        """Apply on every server. Servers that are down keep it for when they
        come back; if no server took it, nothing is kept and the call raises."""
        results = await asyncio.gather(*(apply(p) for p in self._pools.values()), return_exceptions=True)
        active, failures = tally(results)
        if active:
            for exc in failures:
                log.warning("registration refused by one server: %s", printable(exc))
            return active
        await asyncio.gather(*(undo(p) for p in self._pools.values()), return_exceptions=True)
        raise refusal(failures, "no server could be reached to register on")

    async def subscribe(self, channel: str, handler: Handler) -> int:
        """Subscribe on every standalone server (servers that are down get it
        when they come back, a replaced connection gets it again) and on one
        node of each cluster, moved to another node when that one goes
        (docs/cluster.md §6): each publish reaches the handler once.

        Returns the number of servers where it is active now. Raises (and
        keeps nothing) if no server took it.
        """
        validate_pattern(channel)
        if not callable(handler):
            raise TypeError("handler must be callable")
        self._check_started()
        return await self._subscriptions.subscribe(channel, handler)

    async def serve(self, channel: str, fn: Handler) -> int:
        """Answer requests on ``channel`` from every server; as :meth:`subscribe`.

        Raises AlreadyServing (code ``already_serving``) if this client
        already serves ``channel``, as :meth:`IPCClient.serve` does."""
        validate_pattern(channel)
        self._check_started()
        if channel in self._serving and not any(channel in p._registrations.services for p in self._pools.values()):
            self._serving.discard(channel)  # withdrawn by every server (docs/security.md §3.4): the pools dropped it
        if channel in self._serving:
            raise AlreadyServing(f"already serving {channel!r}; unserve() it first")
        self._serving.add(channel)
        try:
            return await self._register(lambda p: p.serve(channel, fn), lambda p: p.unserve(channel))
        except BaseException:
            self._serving.discard(channel)
            raise

    async def unsubscribe(self, channel: str, handler: Handler | None = None) -> None:
        """Remove ``handler`` (or every handler) on every server; wrong types raise TypeError, as IPCClient's."""
        check_unsubscription(channel, handler)
        await self._subscriptions.unsubscribe(channel, handler)

    async def unserve(self, channel: str) -> None:
        self._serving.discard(channel)
        await asyncio.gather(*(p.unserve(channel) for p in self._pools.values()), return_exceptions=True)

    def clear_cache(self) -> None:
        """Forget every cached answer (``cache_ttl``) of every server's pooled
        connections: each keeps its own cache (docs/resilience.md §11)."""
        for pool in self._pools.values():
            pool.clear_cache()

    # -- introspection ------------------------------------------------------------------

    def server_stats(self) -> list[dict[str, Any]]:
        """Per server, in the order given: ``{host, port, weight, healthy,
        in_flight, requests, errors, error_rate, average_latency_ms}``:
        ``in_flight`` the calls on it now; of those that ended, every one
        since the start, ``requests`` how many, ``errors`` how many failed,
        and their ``error_rate`` and ``average_latency_ms`` (docs/resilience.md §8)."""
        return [s.snapshot() for s in self.servers]

    def pools(self) -> dict[str, ConnectionPool]:
        """Each server's pool, by ``host:port``."""
        return {s.address: p for s, p in self._pools.items()}

    def metrics(self) -> dict[str, Any]:
        """The pools' KPIs summed, as :meth:`ConnectionPool.metrics` sums members, and the calls that reached no server in ``messages_failed``."""
        parts = [p.metrics() for p in self._pools.values()]
        out: dict[str, Any] = {}
        for part in parts:
            for key, value in part.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    out[key] = out.get(key, 0) + value
        attempts, successes = out.get("connection_attempts", 0), out.get("connection_successes", 0)
        out["connection_success_rate"] = successes / attempts if attempts else 1.0
        out["messages_failed"] = failed = out.get("messages_failed", 0) + self._unsent
        delivered = out.get("messages_delivered", 0)
        out["message_delivery_rate"] = delivered / (delivered + failed) if delivered + failed else 1.0
        for avg_key, count_key in (("average_reconnection_time_ms", "reconnections"), ("average_connection_duration_ms", "connection_successes")):
            count = sum(p.get(count_key, 0) for p in parts)
            out[avg_key] = mean_ms(sum(p.get(avg_key, 0) * p.get(count_key, 0) for p in parts), count)
        return out

    @property
    def healthy(self) -> bool:
        return any(s.healthy for s in self.servers)

    def __repr__(self) -> str:
        up = sum(s.healthy for s in self.servers)
        return f"<LoadBalancedClient {self.app_id!r} {self.strategy} healthy={up}/{len(self.servers)}{' closed' if self._closed else ''}>"
