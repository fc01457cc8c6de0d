"""What the client reports of itself: its health (a ping's verdict, and the
heartbeat's view of liveness without a round trip, docs/resilience.md §5),
its metrics, queue and breakers, and the ``system`` channel's answers. The
methods are :class:`ClientIntrospection`, a base class of
:class:`~ipc_client.client.IPCClient`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ipc_protocol import PROTOCOL_VERSION, SYSTEM_CHANNEL, Heartbeat, IPCError, Message, MessageType
from ipc_protocol.messages import ping_request

from .calls import Calls
from .connection import ClientConnection
from .state import ConnectionState
from .timeouts import check_timeout

if TYPE_CHECKING:
    from .circuit_breaker import Breakers
    from .lifecycle import Lifecycle
    from .metrics import ClientMetrics
    from .outbox import Outbox
    from .state import StateMachine
    from .subscriptions import Subscriptions

__all__ = ["ping_health", "connection_health", "ClientIntrospection"]


async def ping_health(
    conn: ClientConnection | None, calls: Calls, state: ConnectionState, legacy: bool, timeout: float, on_pong: Callable[[float], None]
) -> dict[str, Any]:
    """``{healthy, state, latency_ms, protocol}`` from a ping round trip over
    ``conn`` (None: not connected), with ``error`` when it failed; never raises.
    ``legacy``: the latest server spoke version 1. ``on_pong(latency_s)``
    hears the answer: it is the last pong get_connection_health() reports."""
    info: dict[str, Any] = {"healthy": False, "state": state.value, "latency_ms": None, "protocol": 1 if legacy else PROTOCOL_VERSION}
    if conn is None:
        return info
    if legacy:
        info["healthy"] = conn.is_open  # a 1.1.x server never answers pings
        return info
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        reply = await calls.call(conn, ping_request(calls.app_id), started + timeout)
    except IPCError as exc:
        info["error"] = {"code": str(exc.code), "message": str(exc)}
        return info
    latency_s = loop.time() - started
    info["latency_ms"] = round(latency_s * 1000, 3)
    info["healthy"] = isinstance(reply.payload, dict) and reply.payload.get("status") == "pong"
    if info["healthy"]:
        on_pong(latency_s)
    return info


def connection_health(conn: ClientConnection | None, state: ConnectionState, loop: asyncio.AbstractEventLoop | None, link: Lifecycle) -> dict[str, Any]:
    """Liveness as the heartbeat sees it, without a round trip; safe from any
    thread. The last pong, its latency and the last frame read outlive their
    connection (``link`` keeps them), as in Node: reconnecting, they say
    when the server was last heard."""
    hb: Heartbeat | None = conn.heartbeat if conn is not None else None
    connected = state is ConnectionState.CONNECTED and conn is not None and conn.is_open
    received = conn.last_received if conn is not None and conn.last_received is not None else link.last_received
    last_pong, latency_s = link.last_pong, link.latency_s
    health: dict[str, Any] = {
        "healthy": connected and hb is None,
        "state": state.value,
        "last_heartbeat": None,
        "last_received": None,
        "latency_ms": None if latency_s is None else round(latency_s * 1000, 3),
        "heartbeat_interval_ms": None,
        "heartbeat_timeout_ms": None,
    }
    if loop is None:
        return health
    now = loop.time()  # the clock of the heartbeat and of the reads
    wall = time.time()
    health.update(
        last_received=None if received is None else wall - (now - received),
        last_heartbeat=None if last_pong is None else wall - (now - last_pong),
    )
    if hb is not None:
        health.update(
            healthy=connected and now - hb.last_received <= hb.interval_s,
            heartbeat_interval_ms=round(hb.interval_s * 1000, 3),
            heartbeat_timeout_ms=round(hb.timeout_s * 1000, 3),
        )
    return health


class ClientIntrospection:
    """The client's introspection API (README "The Python client API")."""

    if TYPE_CHECKING:  # what IPCClient provides
        app_id: str
        request_timeout: float
        _calls: Calls
        _link: Lifecycle
        _sm: StateMachine
        _metrics: ClientMetrics
        _outbox: Outbox
        _subs: Subscriptions
        _breakers: Breakers | None

        def _connected_conn(self) -> ClientConnection | None: ...

    async def health_check(self, timeout: float = 5.0) -> bool:
        """Whether a ping round trip succeeds within ``timeout`` seconds; a
        failed one never raises (a bad ``timeout`` does, as :meth:`health`).

        Against a 1.1.x server, which never answers pings, it is whether the
        connection is open. :meth:`health` gives the details."""
        return bool((await self.health(timeout))["healthy"])

    async def health(self, timeout: float = 5.0) -> dict[str, Any]:
        """Ping the server: ``{healthy, state, latency_ms, protocol}``, and
        ``error`` ``{code, message}`` when the ping failed. A failed ping
        never raises; a ``timeout`` that is not a finite number of seconds
        does, as for every call (docs/resilience.md §4)."""
        self._calls.own_loop()
        seconds = check_timeout(timeout, 5.0)
        return await ping_health(self._connected_conn(), self._calls, self._sm.state, self._link.legacy, seconds, self._link.pong)

    async def system(self, action: str, timeout: float | None = None, *, params: dict[str, Any] | None = None) -> Any:
        """Ask the ``system`` channel: the server's own actions (``stats``,
        ``channels``, ``services``, ``ping``), or any other action of whoever
        serves ``system`` in this app (docs/protocol.md §8). ``params``: more
        fields of the payload, such as a page's ``offset`` and ``limit``
        (``channels``, ``services``, ``describe``, ``connections``)."""
        if params is not None and not isinstance(params, dict):
            raise TypeError(f"params must be a dict, got {type(params).__name__}")
        deadline = self._calls.own_loop().time() + check_timeout(timeout, self.request_timeout)
        conn = await self._link.ready(deadline)
        msg = Message.build(MessageType.REQUEST, self.app_id, SYSTEM_CHANNEL, {**(params or {}), "action": action})
        return (await self._calls.call(conn, msg, deadline, user=True)).payload  # counted in the KPIs, as Node's (docs/resilience.md §2)

    def metrics(self) -> dict[str, Any]:
        """The KPIs of docs/resilience.md §2, with the offline queue's state."""
        snapshot = self._metrics.snapshot(time.monotonic())
        queue = self._outbox.queue
        snapshot.update(queued=len(queue), queued_bytes=queue.bytes, queue_dropped=queue.dropped)
        snapshot["late_answers"] = self._subs.producers.late_answers  # answers not sent: the requester gave up (§15.4)
        return snapshot

    def queue_stats(self) -> dict[str, Any]:
        """``{size, bytes, max_size, max_bytes, dropped, by_priority}`` of the offline queue."""
        return self._outbox.queue.stats()

    def circuit_breakers(self) -> dict[str, dict[str, Any]]:
        """State and counters of every circuit breaker created so far, by channel (or ``*``)."""
        return {} if self._breakers is None else self._breakers.snapshots()

    def get_connection_health(self) -> dict[str, Any]:
        """Liveness as the heartbeat sees it (docs/resilience.md §5), without a round trip."""
        return connection_health(self._link.conn, self._sm.state, self._calls.loop, self._link)

    def get_connection_info(self) -> dict[str, Any]:
        """Who and where this client is, and what it holds."""
        return self._link.info()
