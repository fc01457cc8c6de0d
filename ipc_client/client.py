"""The asyncio Python client (docs/protocol.md, docs/resilience.md).

One TCP connection carries many requests in flight, correlated by
``message_id``. Every request ends in exactly one result or one exception:
the response, an error response, its own timeout, ``ConnectionLost`` at the
moment the connection drops, or a typed refusal (``QueueFull``,
``CircuitOpen``, ``NotConnected``). The client reconnects with exponential
backoff and jitter, restores its subscriptions and responder registrations
before anything else is sent, then replays the calls that waited in the
offline queue.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from ipc_protocol import (
    PROTOCOL_VERSION,
    SYSTEM_CHANNEL,
    CircuitOpen,
    ConnectionLost,
    ErrorCode,
    Heartbeat,
    HeartbeatAction,
    IPCError,
    Message,
    MessageType,
    NotConnected,
    ProtocolError,
    QueueFull,
    RemoteError,
    RequestTimeout,
    decode_message,
    encode_frame,
    encode_message,
    encode_request,
    encode_response,
    error_from_wire,
    is_reserved,
    is_servable,
    pattern_matches,
    validate_channel,
    validate_pattern,
)
from ipc_protocol import AlreadyServing, FrameTooLarge, Forbidden, Unauthorized
from ipc_protocol import __version__ as _version
from ipc_protocol.constants import DEFAULT_REQUEST_TIMEOUT_S
from ipc_protocol.deadlines import Deadlines
from ipc_protocol.messages import connect_request, error_info_from_exception, error_response, ping_request, response_to

from ._connection import ClientConnection
from ._listeners import Listeners
from .backoff import DEFAULT_INITIAL_DELAY_S, DEFAULT_JITTER, DEFAULT_MAX_DELAY_S, DEFAULT_MULTIPLIER, Backoff
from .circuit_breaker import CircuitBreaker, CircuitBreakerOptions, CircuitState
from .metrics import ClientMetrics
from .offline_queue import DEFAULT_QUEUE_MAX_BYTES, DEFAULT_QUEUE_MAX_SIZE, OfflineQueue, OverflowPolicy, QueuedCall
from .queue_store import QueueStore
from .state import TRANSITIONS, ConnectionState, InvalidTransition

__all__ = ["IPCClient", "Registration", "Handler", "DEFAULT_CONNECT_TIMEOUT_S"]

log = logging.getLogger("ipc_client")

DEFAULT_CONNECT_TIMEOUT_S = 10.0
CLIENT_NAME = f"ipc-bridge-python/{_version}"
# asyncio may run a timer up to one tick of its clock early.
_CLOCK_RESOLUTION_S = time.get_clock_info("monotonic").resolution
_EXPIRED_MEMORY = 1024  # timed-out request ids remembered to drop late answers
_SUB_CACHE_LIMIT = 4096

Handler = Callable[[Message], Any]
# Inbound work run in a handler task: called with its slot and arguments.
_HandlerWork = Callable[..., Coroutine[Any, Any, None]]
F = TypeVar("F", bound=Callable[..., Any])

_EVENTS = (
    "connecting",
    "connected",
    "disconnected",
    "reconnecting",
    "reconnected",
    "reconnect_failed",
    "heartbeat",
    "heartbeat_timeout",
    "queue_dropped",
    "circuit_open",
    "circuit_half_open",
    "circuit_closed",
    "error",
)
_DISCONNECT_POLICIES = ("queue", "fail")
_WAITING_STATES = (ConnectionState.CONNECTING, ConnectionState.RECONNECTING)


def _is_async_function(fn: Callable[..., Any]) -> bool:
    """``inspect.iscoroutinefunction``, with a fast answer for plain ``async
    def`` functions and methods: it runs for every served request, and the
    full check costs ~0.5 µs."""
    code = getattr(fn, "__code__", None)
    if code is not None and code.co_flags & inspect.CO_COROUTINE:
        return True
    return inspect.iscoroutinefunction(fn)


class Registration:
    """Awaitable result of :meth:`IPCClient.serve`: done once the server
    registered the responder. It can be created before the event loop runs."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self._event = asyncio.Event()
        self._error: BaseException | None = None

    def _settle(self, error: BaseException | None) -> None:
        self._error = error
        self._event.set()

    def done(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()
        if self._error is not None:
            raise self._error

    def __await__(self) -> Any:
        return self.wait().__await__()

    def __repr__(self) -> str:
        return f"<Registration {self.channel!r} {'done' if self.done() else 'pending'}>"


class IPCClient:
    """Client for the bridge's server.

    Args:
        app_id: the application namespace; fixed for the connection.
        host, port: the server.
        connect_timeout: seconds for TCP connect plus handshake.
        request_timeout: default timeout of :meth:`send_request`, seconds.
        heartbeat_interval: seconds of silence before the client pings;
            ``None`` uses the server's advertised interval.
        heartbeat_timeout: seconds of silence after which the connection is
            declared dead; default twice the interval.
        reconnect: reconnect automatically after the connection drops.
        wait_on_first_connect: a failed first :meth:`connect` keeps trying
            with the reconnect policy (backoff, jitter, ``max_retries``),
            emitting ``reconnecting``, and returns on the first success;
            off by default, so an unreachable server fails at once.
        max_retries: reconnection attempts before giving up; ``None`` = unlimited.
        initial_delay, max_delay, multiplier, jitter: the reconnect backoff,
            ``min(initial_delay * multiplier**n, max_delay)`` ± ``jitter``.
        queue_max_size, queue_max_bytes: offline queue bounds (messages, bytes);
            ``queue_max_size=0`` disables queueing.
        queue_overflow: ``"reject"``, ``"drop_oldest"`` or ``"drop_lowest_priority"``.
        queue_path: an SQLite file where queued one-way messages persist.
        on_disconnect: default per-call policy while not connected,
            ``"queue"`` or ``"fail"``.
        circuit_breaker: a :class:`CircuitBreakerOptions`, or True for the defaults.
        token: shared secret for servers that require one.
        max_frame_size: largest frame body to send or accept, bytes; the
            server's advertised limit applies too (the smaller wins).
        expose_stacks: send handler stack traces to requesters.
        max_concurrent_handlers: served requests and async subscription
            handlers running at once; more wait in arrival order.
        on_connected, on_disconnected, on_error: callbacks (sync or async).
    """

    def __init__(
        self,
        app_id: str,
        host: str = "localhost",
        port: int = 8888,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S,
        heartbeat_interval: float | None = None,
        heartbeat_timeout: float | None = None,
        reconnect: bool = True,
        wait_on_first_connect: bool = False,
        max_retries: int | None = None,
        initial_delay: float = DEFAULT_INITIAL_DELAY_S,
        max_delay: float = DEFAULT_MAX_DELAY_S,
        multiplier: float = DEFAULT_MULTIPLIER,
        jitter: float = DEFAULT_JITTER,
        queue_max_size: int = DEFAULT_QUEUE_MAX_SIZE,
        queue_max_bytes: int = DEFAULT_QUEUE_MAX_BYTES,
        queue_overflow: OverflowPolicy | str = OverflowPolicy.REJECT,
        queue_path: str | None = None,
        on_disconnect: str = "queue",
        circuit_breaker: CircuitBreakerOptions | bool | None = None,
        token: str | None = None,
        max_frame_size: int | None = None,
        max_concurrent_handlers: int = 1024,
        expose_stacks: bool = False,
        on_connected: Callable[..., Any] | None = None,
        on_disconnected: Callable[..., Any] | None = None,
        on_error: Callable[..., Any] | None = None,
    ) -> None:
        if not isinstance(app_id, str) or not app_id:
            raise ValueError("app_id must be a non-empty string")
        if connect_timeout <= 0 or request_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if heartbeat_interval is not None and heartbeat_interval <= 0:
            raise ValueError("heartbeat_interval must be positive")
        if max_retries is not None and max_retries < 0:
            raise ValueError("max_retries must be >= 0 or None")
        if max_concurrent_handlers < 1:
            raise ValueError("max_concurrent_handlers must be >= 1")
        if on_disconnect not in _DISCONNECT_POLICIES:
            raise ValueError(f"on_disconnect must be one of {', '.join(_DISCONNECT_POLICIES)}")
        self.app_id = app_id
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.reconnect = reconnect
        self.wait_on_first_connect = wait_on_first_connect
        self.max_retries = max_retries
        self.backoff = Backoff(initial_delay=initial_delay, max_delay=max_delay, multiplier=multiplier, jitter=jitter)
        self.token = token
        self.max_frame_size = max_frame_size
        self.expose_stacks = expose_stacks
        self.connection_id = uuid.uuid4().hex
        self.legacy = False
        self.server_info: dict[str, Any] = {}

        self._state = ConnectionState.DISCONNECTED
        self._conn: ClientConnection | None = None
        # Request id -> (future, channel, timeout in s); the deadlines are in _deadlines.
        self._pending: dict[str, tuple[asyncio.Future[Message], str, float]] = {}
        self._deadlines = Deadlines(
            self._expire,
            clock=lambda: asyncio.get_running_loop().time(),
            call_at=lambda when, callback: asyncio.get_running_loop().call_at(when, callback),
            resolution=_CLOCK_RESOLUTION_S,
        )
        self._subscriptions: dict[str, list[Handler]] = {}
        # channel -> its handlers, each with whether it is async: decided once
        # per channel, as the check costs ~0.5 µs for a plain function.
        self._sub_cache: dict[str, list[tuple[Handler, bool]]] = {}
        self._services: dict[str, Handler] = {}
        self._service_acks: dict[str, Registration] = {}
        self._listeners = Listeners("client", _EVENTS, self._spawn)
        self._state_waiters: list[asyncio.Future[None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reconnect_task: asyncio.Task[None] | None = None
        self._last_failure: BaseException | None = None  # of the latest connection attempt
        self._heartbeat_task: asyncio.Task[None] | None = None
        # Ids of requests that timed out locally: their late answers are
        # dropped quietly instead of being reported as stray errors.
        self._expired: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._max_send: int | None = max_frame_size
        self._reconnects = 0
        self.on_disconnect = on_disconnect
        self._queue = OfflineQueue(queue_max_size, queue_max_bytes, queue_overflow)
        self._queue_timer: asyncio.TimerHandle | None = None
        self._replaying = False
        self.queue_path = queue_path
        self._store: QueueStore | None = None  # open from connect() until the queue is given up
        if circuit_breaker is True:
            circuit_breaker = CircuitBreakerOptions()
        self._breaker_options: CircuitBreakerOptions | None = circuit_breaker or None
        self._breakers: dict[str, CircuitBreaker] = {}
        self._metrics = ClientMetrics()
        self._generation = 0  # bumped by connect() and disconnect(): stale attempts know
        self._replay_task: asyncio.Task[None] | None = None
        self._last_pong: float | None = None  # loop time
        self._loop: asyncio.AbstractEventLoop | None = None
        self.max_concurrent_handlers = max_concurrent_handlers
        # Running served requests and async subscription handlers; their
        # number is what max_concurrent_handlers limits.
        self._handler_tasks: set[asyncio.Task[Any]] = set()
        self._held: collections.deque[tuple[ClientConnection | None, _HandlerWork, tuple[Any, ...], float | None]] = collections.deque()
        for event, cb in (("connected", on_connected), ("disconnected", on_disconnected), ("error", on_error)):
            if cb is not None:
                self.on(event, cb)

    # -- events -------------------------------------------------------------

    def on(self, event: str, callback: F) -> F:
        """Register ``callback`` for ``event`` (one of the lifecycle events)."""
        return self._listeners.add(event, callback)

    def on_connected(self, callback: F) -> F:
        return self.on("connected", callback)

    def on_disconnected(self, callback: F) -> F:
        return self.on("disconnected", callback)

    def on_error(self, callback: F) -> F:
        return self.on("error", callback)

    def _emit(self, event: str, *args: Any) -> None:
        self._listeners.emit(event, *args)

    def _spawn(self, aw: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(aw)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- state ---------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def connected(self) -> bool:
        return self._state is ConnectionState.CONNECTED

    def _set_state(self, new: ConnectionState) -> None:
        if new is self._state:
            return
        if new not in TRANSITIONS[self._state]:
            raise InvalidTransition(f"{self._state.value} -> {new.value}")
        self._state = new
        waiters, self._state_waiters = self._state_waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    async def _until_connected(self, deadline: float | None) -> None:
        """Wait while (re)connecting; raise if the client will not be connected."""
        loop = asyncio.get_running_loop()
        while self._state is not ConnectionState.CONNECTED:
            if self._state not in (ConnectionState.RECONNECTING, ConnectionState.CONNECTING):
                raise NotConnected(f"not connected ({self._state.value})")
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise RequestTimeout("timed out waiting for the connection to come back")
            waiter = loop.create_future()
            self._state_waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, remaining)
            except (asyncio.TimeoutError, TimeoutError):
                raise RequestTimeout("timed out waiting for the connection to come back") from None
            finally:
                if waiter in self._state_waiters:
                    self._state_waiters.remove(waiter)

    # -- connect / disconnect -----------------------------------------------

    async def connect(self) -> bool:
        """Connect and handshake; returns True.

        Raises NotConnected when the server cannot be reached or does not
        complete the handshake (with ``wait_on_first_connect``: once the
        retries are spent or :meth:`disconnect` is called), Unauthorized
        when it refuses the token."""
        if self._state is ConnectionState.CONNECTED:
            return True
        if self._state is not ConnectionState.DISCONNECTED:
            await self._until_connected(None)
            return True
        self._loop = asyncio.get_running_loop()
        self._load_persisted()  # may refuse a queue file another client owns: before any state change
        self._generation += 1
        generation = self._generation
        self._set_state(ConnectionState.CONNECTING)
        self._emit("connecting")
        try:
            await self._open(generation)
        except BaseException as exc:
            failure = self._connect_failure(exc)
            current = self._state is ConnectionState.CONNECTING and self._generation == generation
            if current and self.wait_on_first_connect and not isinstance(failure, Unauthorized) and failure is not exc:
                return await self._keep_connecting(failure)
            if current:
                self._set_state(ConnectionState.DISCONNECTED)
                self._give_up_queue(NotConnected(f"cannot connect to {self.host}:{self.port}: {exc}"))
            if failure is exc:
                raise
            raise failure from exc
        self._set_state(ConnectionState.CONNECTED)
        self._emit("connected", self.get_connection_info())
        self._ensure_replay()
        return True

    def _connect_failure(self, exc: BaseException) -> BaseException:
        """What connect() raises for a failed attempt: the server's own refusal
        as it is, an unreachable or silent server as NotConnected."""
        if isinstance(exc, IPCError) and not isinstance(exc, (ConnectionLost, RequestTimeout)):
            return exc
        if isinstance(exc, (OSError, IPCError, asyncio.TimeoutError)):
            return NotConnected(f"cannot connect to {self.host}:{self.port}: {exc}")
        return exc

    async def _keep_connecting(self, failure: BaseException) -> bool:
        """``wait_on_first_connect``: retry as a reconnection does, and return
        once connected (the diagram's Connecting -> Reconnecting)."""
        self._last_failure = failure
        self._set_state(ConnectionState.RECONNECTING)
        self._reconnect_task = asyncio.ensure_future(self._reconnect_loop(first_connect=True))
        try:
            await self._until_connected(None)
        except NotConnected:
            last = self._last_failure
            if isinstance(last, Unauthorized):
                raise last from None
            raise NotConnected(f"cannot connect to {self.host}:{self.port}: {self._state.value} after retrying: {last}") from last
        return True

    def _abandon(self, conn: ClientConnection) -> None:
        """Close the connection of an attempt that disconnect() made stale."""
        conn.abort()
        if self._conn is conn:
            self._drop_connection(conn, ConnectionLost("the client disconnected"))

    async def disconnect(self) -> None:
        """Close the connection and stop reconnecting; pending calls fail with ConnectionLost."""
        if self._state in (ConnectionState.DISCONNECTED, ConnectionState.DISCONNECTING):
            return
        was_connected = self._state is ConnectionState.CONNECTED
        self._generation += 1  # any attempt still opening is now stale
        self._set_state(ConnectionState.DISCONNECTING)
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
            self._reconnect_task = None
        conn = self._conn
        if conn is not None:
            conn.close()
            try:
                await asyncio.wait_for(asyncio.shield(conn.closed), 2.0)
            except (asyncio.TimeoutError, TimeoutError):
                conn.abort()
        self._drop_connection(conn, ConnectionLost("the client disconnected"))
        self._metrics.closed(time.monotonic(), will_reconnect=False)
        self._set_state(ConnectionState.DISCONNECTED)
        self._give_up_queue(NotConnected("disconnect() was called before the call could be sent"))
        self._held.clear()
        # Handler tasks close their own books when they finish; these will
        # not be counted again (a task cancelled before its first step never
        # runs its ``finally``).
        handlers, self._handler_tasks = self._handler_tasks, set()
        for task in [*self._tasks, *handlers]:
            task.cancel()
        if was_connected:  # while reconnecting, "disconnected" was already emitted
            self._emit("disconnected", None)

    async def __aenter__(self) -> IPCClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.disconnect()

    async def _open(self, generation: int) -> None:
        """One connection attempt: TCP, handshake, then restore registrations (§3).

        ``generation`` ties it to one connect()/reconnect; once disconnect()
        has moved on, the attempt closes its own socket and never touches the
        client's current connection."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.connect_timeout
        self._metrics.attempt()
        _, conn = await asyncio.wait_for(
            loop.create_connection(
                lambda: ClientConnection(self._on_message, self._on_lost, self.max_frame_size),
                self.host,
                self.port,
            ),
            self.connect_timeout,
        )
        if generation != self._generation:
            conn.abort()
            raise NotConnected("disconnect() was called while connecting")
        self._conn = conn
        try:
            reply = await self._handshake(conn, deadline)
            payload = reply.payload if isinstance(reply.payload, dict) else {}
            if payload.get("status") != "connected":
                raise NotConnected(f"unexpected handshake reply: {payload!r}")
            self.legacy = "protocol" not in payload
            self.server_info = dict(payload)
            self.connection_id = str(payload.get("connection_id") or self.connection_id)
            advertised = payload.get("max_frame_size")
            if not self.legacy and isinstance(advertised, int) and advertised > 0:
                # Send and accept no more than both sides allow (§1.1).
                self._max_send = advertised if self.max_frame_size is None else min(advertised, self.max_frame_size)
                conn.decoder.max_frame_size = self._max_send
            self._start_heartbeat(conn, payload)
            await self._restore(conn, deadline)
            if generation != self._generation:
                raise NotConnected("disconnect() was called while connecting")
            self._metrics.opened(time.monotonic())
        except BaseException:
            self._abandon(conn)
            raise

    async def _handshake(self, conn: ClientConnection, deadline: float) -> Message:
        """Send the connect frame and wait for the first response, whatever its
        ``reply_to``: a 1.1.x server answers the connect without one (§3, §10)."""
        loop = asyncio.get_running_loop()
        hello = connect_request(self.app_id, self.connection_id, client=CLIENT_NAME, token=self.token)
        conn.handshake = loop.create_future()
        self._write(conn, hello)
        try:
            reply = await asyncio.wait_for(asyncio.shield(conn.handshake), deadline - loop.time())
        except (asyncio.TimeoutError, TimeoutError):
            raise RequestTimeout(f"no handshake reply from {self.host}:{self.port}") from None
        if reply.error is not None:
            raise error_from_wire(reply.error.model_dump())
        return reply

    async def _restore(self, conn: ClientConnection, deadline: float) -> None:
        """Resubscribe and re-register responders before anything else goes out.

        Loops until nothing is left: ``subscribe``/``serve`` calls made while
        this runs are picked up too, so none is lost to the race.
        """
        done: set[tuple[bool, str]] = set()
        while True:
            todo = [(False, p) for p in self._subscriptions if (False, p) not in done]
            todo += [(True, c) for c in self._services if (True, c) not in done]
            if not todo:
                return
            results = await asyncio.gather(*(self._restore_one(conn, serve, name, deadline) for serve, name in todo), return_exceptions=True)
            for (serve, name), result in zip(todo, results):
                if isinstance(result, RemoteError):
                    self._refused(serve, name, result)  # reconnecting again would not change the answer
                elif isinstance(result, BaseException):
                    raise result
            done.update(todo)

    def _refused(self, serve: bool, name: str, error: RemoteError) -> None:
        log.error("the server refused to restore %s %r: %s", "responder" if serve else "subscription", name, error)
        if serve:
            self._services.pop(name, None)
            registration = self._service_acks.pop(name, None)
            if registration is not None and not registration.done():
                registration._settle(error)
        else:
            self._subscriptions.pop(name, None)
            self._sub_cache.clear()
        self._emit("error", error)

    async def _restore_one(self, conn: ClientConnection, serve: bool, name: str, deadline: float) -> None:
        await self._subscribe_frame(conn, name, serve=serve, deadline=deadline)
        registration = self._service_acks.get(name) if serve else None
        if registration is not None:
            registration._settle(None)

    # -- connection events ---------------------------------------------------

    def _on_lost(self, conn: ClientConnection, exc: BaseException | None) -> None:
        if conn is not self._conn:
            return
        reason = ConnectionLost(f"connection to {self.host}:{self.port} lost" + (f": {exc}" if exc else ""))
        self._drop_connection(conn, reason)
        self._metrics.closed(time.monotonic(), will_reconnect=self.reconnect)
        if self._state is ConnectionState.CONNECTED:
            # The state changes first, so "disconnected" listeners see the truth.
            if self.reconnect:
                self._set_state(ConnectionState.RECONNECTING)
                self._emit("disconnected", reason)
                if self._state is ConnectionState.RECONNECTING:
                    self._reconnect_task = asyncio.ensure_future(self._reconnect_loop())
            else:
                self._set_state(ConnectionState.DISCONNECTED)
                self._give_up_queue(NotConnected("the connection was lost and reconnect is off"))
                self._emit("disconnected", reason)

    def _drop_connection(self, conn: ClientConnection | None, reason: IPCError) -> None:
        """Fail everything waiting on ``conn`` at once (never at its timeout)."""
        if conn is not None and self._conn is conn:
            self._conn = None
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            self._heartbeat_task = None
        pending, self._pending = self._pending, {}
        self._deadlines.clear()
        for fut, _channel, _timeout in pending.values():
            if not fut.done():
                fut.set_exception(ConnectionLost(str(reason)))
                fut.exception()  # mark retrieved: a caller may have gone already

    async def _reconnect_loop(self, *, first_connect: bool = False) -> None:
        """Retry with backoff while RECONNECTING; ``first_connect``: the
        attempts of a first connect() (no ``reconnected`` event)."""
        generation = self._generation
        attempt = 0
        started = asyncio.get_running_loop().time()
        while self._state is ConnectionState.RECONNECTING:
            if self.max_retries is not None and attempt >= self.max_retries:
                self._set_state(ConnectionState.DISCONNECTED)
                self._give_up_queue(NotConnected(f"gave up reconnecting after {attempt} attempts"))
                self._emit("reconnect_failed", attempt)
                return
            delay = self.backoff.delay(attempt)
            attempt += 1
            self._emit("reconnecting", {"attempt": attempt, "delay": delay})
            await asyncio.sleep(delay)
            if self._state is not ConnectionState.RECONNECTING:
                return
            try:
                await self._open(generation)
            except Unauthorized as exc:  # retrying cannot fix credentials
                log.error("reconnect refused: %s", exc)
                self._last_failure = exc
                self._set_state(ConnectionState.DISCONNECTED)
                self._give_up_queue(NotConnected(f"gave up reconnecting: {exc}"))
                self._emit("reconnect_failed", attempt)
                return
            except (OSError, IPCError, asyncio.TimeoutError) as exc:
                log.debug("reconnect attempt %d failed: %s", attempt, exc)
                self._last_failure = exc
                continue
            if self._state is not ConnectionState.RECONNECTING or self._conn is None:  # pragma: no cover
                return
            self._reconnect_task = None
            self._set_state(ConnectionState.CONNECTED)
            if not first_connect:
                self._reconnects += 1
                elapsed = asyncio.get_running_loop().time() - started
                self._emit("reconnected", {"attempts": attempt, "elapsed": elapsed})
            self._emit("connected", self.get_connection_info())
            self._ensure_replay()
            return

    # -- heartbeat (§9) ------------------------------------------------------

    def _start_heartbeat(self, conn: ClientConnection, handshake: dict[str, Any]) -> None:
        if self.legacy:
            return  # a version-1 server does not answer pings (§10)
        interval = self.heartbeat_interval
        if interval is None:
            advertised = handshake.get("heartbeat_interval_ms")
            interval = advertised / 1000.0 if isinstance(advertised, (int, float)) and advertised > 0 else None
        if interval is None:
            return
        timeout = self.heartbeat_timeout or 2 * interval
        loop = asyncio.get_running_loop()
        conn.heartbeat = Heartbeat(interval, timeout, loop.time())
        self._heartbeat_task = loop.create_task(self._heartbeat(conn, conn.heartbeat))

    async def _heartbeat(self, conn: ClientConnection, hb: Heartbeat) -> None:
        loop = asyncio.get_running_loop()
        while conn is self._conn and conn.is_open:
            await asyncio.sleep(max(hb.next_check(loop.time()), 0.005))
            action = hb.poll(loop.time())
            if action is HeartbeatAction.PING:
                self._write(conn, ping_request(self.app_id))
            elif action is HeartbeatAction.DEAD:
                log.warning("no frame from %s:%s for %.1f s: connection declared dead", self.host, self.port, hb.timeout_s)
                self._emit("heartbeat_timeout", {"silent": loop.time() - hb.last_received})
                conn.error = ConnectionLost(f"heartbeat timeout: nothing received for {hb.timeout_s:g} s")
                conn.abort()
                return

    # -- incoming messages -------------------------------------------------

    def _on_message(self, conn: ClientConnection, msg: Message) -> None:
        mtype = msg.message_type
        if mtype is MessageType.RESPONSE:
            if conn.handshake is not None and not conn.handshake.done():
                conn.handshake.set_result(msg)
                return
            entry = self._pending.pop(msg.reply_to, None) if msg.reply_to is not None else None
            if entry is not None:
                self._deadlines.discard(msg.reply_to)  # type: ignore[arg-type]
                fut = entry[0]
                if not fut.done():
                    fut.set_result(msg)
                return
            if isinstance(msg.payload, dict) and msg.payload.get("status") == "pong":
                if conn.heartbeat is not None:
                    self._last_pong = asyncio.get_running_loop().time()
                    conn.heartbeat.pong_received(self._last_pong)
                    self._emit("heartbeat", {"latency": conn.heartbeat.latency_s})
                return
            if msg.reply_to is not None and msg.reply_to in self._expired:
                return  # the answer to a request that already timed out here
            if msg.error is not None:
                # An error that answers nothing we wait for (§6.4).
                self._emit("error", error_from_wire(msg.error.model_dump()))
            return
        if mtype is MessageType.PUBLISH:
            self._deliver(msg)
        elif mtype is MessageType.REQUEST or mtype is MessageType.NOTIFICATION:
            if msg.channel_id == SYSTEM_CHANNEL and isinstance(msg.payload, dict) and msg.payload.get("action") == "ping":
                if mtype is MessageType.REQUEST:
                    self._write(conn, response_to(msg, {"status": "pong"}))
                return
            # Any other system action reaches us only because we serve 'system' (§8).
            self._serve_request(conn, msg)

    def _deliver(self, msg: Message) -> None:
        handlers = self._sub_cache.get(msg.channel_id)
        if handlers is None:
            # Each handler once, even when several of its patterns match.
            matching = (h for p, hs in self._subscriptions.items() if pattern_matches(p, msg.channel_id) for h in hs)
            handlers = [(h, _is_async_function(h)) for h in dict.fromkeys(matching)]
            if len(self._sub_cache) >= _SUB_CACHE_LIMIT:
                self._sub_cache.clear()
            self._sub_cache[msg.channel_id] = handlers
        for handler, is_async in handlers:
            try:
                if is_async:
                    self._admit(None, self._guard, (msg, handler, None))
                    continue
                result = handler(msg)
                # `is not None` first: isawaitable costs ~0.4 µs, and most handlers return None.
                if result is not None and inspect.isawaitable(result):
                    self._admit(None, self._guard, (msg, None, result))
            except Exception as exc:
                log.exception("subscription handler for %r failed", msg.channel_id)
                self._emit("error", exc)

    def _admit(self, conn: ClientConnection | None, work: _HandlerWork, args: tuple[Any, ...], expires: float | None = None) -> None:
        """Run inbound work now, or hold it while ``max_concurrent_handlers`` are busy.

        The socket is never paused for it: responses to this client's own
        requests must keep flowing, or a handler that makes a request could
        wait on itself. ``conn`` is set for served requests: one whose
        connection is gone, or whose deadline (``expires``, loop time) passed
        while held, is dropped unrun, since the server has already answered it.
        """
        if len(self._handler_tasks) < self.max_concurrent_handlers and not self._held:
            self._run_handler(work, args)
            return
        self._held.append((conn, work, args, expires))

    def _run_handler(self, work: _HandlerWork, args: tuple[Any, ...]) -> None:
        """Start ``work(slot, *args)`` as a task. The work calls
        :meth:`_handler_finished` with ``slot`` in its ``finally`` (a done
        callback would cost a loop callback more per request); ``slot``
        holds its task, as ``asyncio.current_task()`` costs ~0.5 µs on 3.11."""
        slot: list[asyncio.Task[None]] = []
        task = self._loop.create_task(work(slot, *args))  # type: ignore[union-attr]
        if not task.done():  # an eager task factory may have run it to the end already
            slot.append(task)
            self._handler_tasks.add(task)

    def _handler_finished(self, slot: list[asyncio.Task[None]]) -> None:
        """A handler task ends: free its slot and start held work."""
        if not slot or slot[0] not in self._handler_tasks:
            return  # it never counted (eager start), or disconnect() already let it go
        self._handler_tasks.discard(slot[0])
        if not self._held:
            return
        now = self._loop.time()  # type: ignore[union-attr]
        while self._held and len(self._handler_tasks) < self.max_concurrent_handlers:
            conn, work, args, expires = self._held.popleft()
            if conn is not None and (conn is not self._conn or (expires is not None and expires <= now)):
                continue
            self._run_handler(work, args)

    async def _guard(self, slot: list[asyncio.Task[None]], msg: Message, handler: Handler | None, awaitable: Awaitable[Any] | None) -> None:
        """Run an async subscription handler, or await what a sync one returned;
        a failure is logged and emitted, never raised."""
        try:
            await (handler(msg) if handler is not None else awaitable)  # type: ignore[misc]
        except Exception as exc:
            log.exception("subscription handler for %r failed", msg.channel_id)
            self._emit("error", exc)
        finally:
            self._handler_finished(slot)

    def _serve_request(self, conn: ClientConnection, msg: Message) -> None:
        fn = self._services.get(msg.channel_id)
        if fn is None:
            fn = next((f for p, f in self._services.items() if pattern_matches(p, msg.channel_id)), None)
        if fn is None:
            if msg.message_type is MessageType.REQUEST:
                self._write(conn, error_response(msg, ErrorCode.NO_RESPONDERS, f"this client does not serve {msg.channel_id!r}"))
            return
        if len(self._handler_tasks) < self.max_concurrent_handlers and not self._held:
            self._run_handler(self._answer, (conn, msg, fn))  # _admit's fast path, inline: every served request takes it
            return
        expires = None if msg.timeout_ms is None else self._loop.time() + msg.timeout_ms / 1000  # type: ignore[union-attr]
        self._admit(conn, self._answer, (conn, msg, fn), expires)

    async def _answer(self, slot: list[asyncio.Task[None]], conn: ClientConnection, msg: Message, fn: Handler) -> None:
        """Run a served request's handler and write its answer (or its failure)."""
        try:
            try:
                if _is_async_function(fn):
                    result = await fn(msg)
                else:
                    result = await asyncio.get_running_loop().run_in_executor(None, fn, msg)
                    if inspect.isawaitable(result):
                        result = await result
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure is answered (§6.3)
                result, failure = None, exc
            else:
                failure = None
            if msg.message_type is not MessageType.REQUEST or conn is not self._conn or not conn.is_open:
                return
            if failure is None:
                try:
                    conn.write(self._frame_body(encode_response(msg, result, legacy=self.legacy)))
                    return
                except Exception as exc:  # the result cannot be encoded (NaN, an object...)
                    failure = exc
            info = error_info_from_exception(failure, include_stack=self.expose_stacks)
            error = error_response(msg, info.code, info.message, remote_type=info.remote_type, remote_stack=info.remote_stack, details=info.details)
            self._write(conn, error)
        finally:
            self._handler_finished(slot)

    # -- outgoing ------------------------------------------------------------

    def _frame(self, msg: Message) -> bytes:
        """Encode ``msg``; refuse locally what the server would refuse (§1.1)."""
        return self._frame_body(encode_message(msg, legacy=self.legacy))

    def _frame_body(self, body: bytes) -> bytes:
        if self._max_send is not None and len(body) > self._max_send:
            raise FrameTooLarge(len(body), self._max_send)
        return encode_frame(body)

    def _write(self, conn: ClientConnection, msg: Message) -> None:
        """The one choke point for outgoing frames."""
        if not conn.is_open:
            raise ConnectionLost("the connection is closed")
        conn.write(self._frame(msg))

    async def _call(self, conn: ClientConnection, msg: Message, deadline: float, *, track: bool = False) -> Message:
        """Write a request-like message and wait for the response answering it.

        ``track`` counts it in the KPIs (user calls, not pings or acks).
        """
        try:
            remaining = self._time_left(msg.channel_id, deadline)
        except RequestTimeout:
            if track:
                self._metrics.failed()
            raise
        return await self._exchange(conn, msg.message_id, msg.channel_id, self._frame(msg), deadline, remaining, track)

    async def _request_now(
        self, conn: ClientConnection, channel: str, payload: Any, headers: dict[str, str] | None, timeout: float
    ) -> Message:
        """A user's request on a ready connection: the hot path of every call.
        Its budget is all of its timeout (§6.5), and its frame is encoded
        straight from the arguments. Connected, so ``self._loop`` is the
        running loop (``asyncio.get_running_loop()`` costs ~0.3 µs on 3.11)."""
        if timeout <= 0:
            self._metrics.failed()
            raise RequestTimeout(f"request on {channel!r} timed out before it was sent")
        deadline = self._loop.time() + timeout  # type: ignore[union-attr]
        budget = None if self.legacy else max(0, round(timeout * 1000))
        message_id, body = encode_request(self.app_id, channel, payload, timeout_ms=budget, headers=headers, legacy=self.legacy)
        return await self._exchange(conn, message_id, channel, self._frame_body(body), deadline, timeout, True)

    async def _exchange(
        self, conn: ClientConnection, message_id: str, channel: str, frame: bytes, deadline: float, remaining: float, track: bool
    ) -> Message:
        """Write a request's frame and wait for its answer: one coroutine, no timer of its own."""
        fut: asyncio.Future[Message] = self._loop.create_future()  # type: ignore[union-attr]
        try:
            self._register_and_write(conn, message_id, channel, frame, deadline, remaining, fut)
        except ConnectionLost:
            if track:
                self._metrics.failed()
            raise
        if track:
            self._metrics.sent()
        if conn.writing_paused:
            try:
                await self._drain(conn, f"request on {channel!r}", deadline)
            except BaseException:
                self._forget(message_id, fut)
                if track:
                    self._metrics.failed()
                raise
        return await self._await_reply(fut, track)

    async def _drain(self, conn: ClientConnection, what: str, deadline: float) -> None:
        """Wait for a full socket buffer to drain, but never past the call's deadline."""
        if not await conn.drain(deadline - asyncio.get_running_loop().time()):
            raise RequestTimeout(f"{what}: the connection did not take it before the deadline")

    def _forget(self, message_id: str, fut: asyncio.Future[Message]) -> None:
        """Stop waiting for an answer nobody will read."""
        self._pending.pop(message_id, None)
        self._deadlines.discard(message_id)
        if not fut.done():
            fut.cancel()

    @staticmethod
    def _time_left(channel: str, deadline: float) -> float:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise RequestTimeout(f"request on {channel!r} timed out before it was sent")
        return remaining

    def _start_call(self, conn: ClientConnection, msg: Message, deadline: float, fut: asyncio.Future[Message]) -> None:
        """Register ``fut`` for the answer to ``msg`` and write it; never waits."""
        remaining = self._time_left(msg.channel_id, deadline)
        self._register_and_write(conn, msg.message_id, msg.channel_id, self._frame(msg), deadline, remaining, fut)

    def _register_and_write(
        self, conn: ClientConnection, message_id: str, channel: str, frame: bytes, deadline: float, remaining: float, fut: asyncio.Future[Message]
    ) -> None:
        if not conn.is_open:
            raise ConnectionLost("the connection is closed")
        self._pending[message_id] = (fut, channel, remaining)
        self._deadlines.add(message_id, deadline)
        conn.write(frame)

    async def _await_reply(self, fut: asyncio.Future[Message], track: bool) -> Message:
        try:
            reply = await fut
        except IPCError:
            if track:
                self._metrics.failed()
            raise
        if track:
            self._metrics.delivered()
        return self._result(reply)

    def _result(self, reply: Message) -> Message:
        """The reply, or the error it carries raised."""
        if reply.error is not None:
            raise error_from_wire(reply.error.model_dump())
        if self.legacy and isinstance(reply.payload, dict) and set(reply.payload) == {"error"}:
            raise error_from_wire(reply.payload["error"])
        return reply

    def _expire(self, message_id: str) -> None:
        entry = self._pending.pop(message_id, None)
        self._expired[message_id] = None
        if len(self._expired) > _EXPIRED_MEMORY:
            self._expired.popitem(last=False)
        if entry is not None and not entry[0].done():
            fut, channel, timeout = entry
            fut.set_exception(RequestTimeout(f"no response on {channel!r} within {timeout:.3g} s"))

    # -- the offline queue (docs/resilience.md §4) -----------------------------

    def _sendable(self) -> ClientConnection | None:
        """The connection a call may be written to now: connected, with nothing queued ahead of it."""
        conn = self._conn
        if self._state is ConnectionState.CONNECTED and conn is not None and not self._queue and not self._replaying:
            return conn
        return None

    async def _submit(
        self, msg: Message, deadline: float, *, reply: bool, priority: int, on_disconnect: str | None
    ) -> Message | None:
        """Send ``msg`` now, or queue it while the connection is being (re)made."""
        conn = self._sendable()
        if conn is not None:
            return await self._send_now(conn, msg, deadline, reply)
        policy = self.on_disconnect if on_disconnect is None else on_disconnect
        if policy not in _DISCONNECT_POLICIES:
            raise ValueError(f"on_disconnect must be one of {', '.join(_DISCONNECT_POLICIES)}")
        offline = self._state in _WAITING_STATES
        if not offline and self._state is not ConnectionState.CONNECTED:
            self._metrics.failed()
            raise NotConnected(f"not connected ({self._state.value})")
        if offline and (policy == "fail" or self._queue.max_size == 0):
            self._metrics.failed()
            raise NotConnected(f"not connected ({self._state.value}) and the call asked to fail fast")
        return await self._enqueue(msg, deadline, reply=reply, priority=priority)

    async def _send_now(self, conn: ClientConnection, msg: Message, deadline: float, reply: bool) -> Message | None:
        if reply:
            return await self._call(conn, self._with_budget(msg, deadline), deadline, track=True)
        try:
            self._write(conn, msg)
        except ConnectionLost:
            self._metrics.failed()
            raise
        self._metrics.sent()
        self._metrics.delivered()
        if conn.writing_paused:
            await self._drain(conn, f"{msg.message_type.value} on {msg.channel_id!r}", deadline)  # a fast publisher waits for a slow socket
        return None

    def _with_budget(self, msg: Message, deadline: float) -> Message:
        """The request as sent: ``timeout_ms`` is what is left of its deadline (§6.5)."""
        if self.legacy or msg.message_type is not MessageType.REQUEST:
            return msg
        remaining_ms = max(0, round((deadline - asyncio.get_running_loop().time()) * 1000))
        return msg.model_copy(update={"timeout_ms": remaining_ms})

    async def _enqueue(self, msg: Message, deadline: float, *, reply: bool, priority: int) -> Message | None:
        loop = asyncio.get_running_loop()
        if deadline <= loop.time():
            self._metrics.failed()
            raise RequestTimeout(f"call on {msg.channel_id!r} timed out before it could be queued")
        body = encode_message(msg, legacy=self.legacy)
        if self._max_send is not None and len(body) > self._max_send:
            raise FrameTooLarge(len(body), self._max_send)
        waiter: asyncio.Future[Message] | None = loop.create_future() if reply else None
        entry = QueuedCall(priority=priority, deadline=deadline, size=len(body) + 4, message=msg, waiter=waiter)
        try:
            evicted = self._queue.push(entry)
        except QueueFull:
            self._metrics.failed()
            raise
        if waiter is None and self._store is not None:
            entry.store_id = self._store.add(priority, time.time() + (deadline - loop.time()), body)
        for victim in evicted:
            self._drop_entry(victim, QueueFull("evicted from the full offline queue"), "evicted")
        self._arm_queue_timer()
        self._ensure_replay()  # connected, but behind a replay that may have stopped
        if waiter is None:
            return None
        try:
            return await self._await_reply(waiter, track=True)
        finally:
            if self._queue.discard(entry):  # the caller was cancelled while queued
                self._arm_queue_timer()

    def _ensure_replay(self) -> None:
        """Start sending the queue if it holds anything and nobody is sending it.

        The replay is the client's own task, so a caller cancelling connect()
        cannot stop it halfway and leave calls stuck behind it."""
        conn = self._conn
        if conn is None or self._state is not ConnectionState.CONNECTED or not self._queue:
            return
        if self._replay_task is None or self._replay_task.done():
            self._replaying = True  # from now on, new calls queue behind it
            self._replay_task = self._spawn(self._replay(conn))

    async def _replay(self, conn: ClientConnection) -> None:
        """Send the queue after a (re)connection: highest priority first, FIFO within one.

        Calls made meanwhile join the queue, so nothing overtakes it."""
        loop = asyncio.get_running_loop()
        self._replaying = True
        try:
            while conn is self._conn and conn.is_open:
                for expired in self._queue.expire(loop.time()):
                    self._drop_entry(expired, None, "expired")
                entry = self._queue.pop()
                if entry is None:
                    break
                self._send_queued(conn, entry)
                await conn.drain()
        finally:
            self._replaying = False
            self._arm_queue_timer()

    def _send_queued(self, conn: ClientConnection, entry: QueuedCall) -> None:
        msg: Message = entry.message
        if entry.waiter is None:
            try:
                self._write(conn, msg)
            except ConnectionLost:
                self._queue.push(entry)  # back in line for the next connection
                return
            except IPCError as exc:  # e.g. larger than the new server accepts
                self._drop_entry(entry, exc, "refused")
                return
            self._metrics.sent()
            self._metrics.delivered()
            if entry.store_id is not None and self._store is not None:
                self._store.remove(entry.store_id)
            return
        if entry.waiter.done():
            return
        try:
            self._start_call(conn, self._with_budget(msg, entry.deadline), entry.deadline, entry.waiter)
        except IPCError as exc:
            entry.waiter.set_exception(exc)
            return
        self._metrics.sent()

    def _arm_queue_timer(self) -> None:
        """One timer, at the earliest deadline in the queue."""
        if self._queue_timer is not None:
            self._queue_timer.cancel()
            self._queue_timer = None
        when = self._queue.next_deadline()
        if when is not None:
            self._queue_timer = asyncio.get_running_loop().call_at(when, self._on_queue_timer)

    def _on_queue_timer(self) -> None:
        self._queue_timer = None
        # A timer may fire a hair early; the millisecond keeps it from re-arming in a loop.
        for entry in self._queue.expire(asyncio.get_running_loop().time() + 0.001):
            self._drop_entry(entry, None, "expired")
        self._arm_queue_timer()

    def _drop_entry(self, entry: QueuedCall, error: BaseException | None, reason: str) -> None:
        """End a call that will not be sent: fail its caller, or report the one-way message."""
        msg: Message = entry.message
        if reason != "evicted":  # the queue counted its evictions itself
            self._queue.dropped += 1
        if entry.waiter is not None:
            if not entry.waiter.done():
                if error is None:
                    error = RequestTimeout(f"request on {msg.channel_id!r} timed out in the offline queue")
                entry.waiter.set_exception(error)
            return
        self._metrics.failed()
        if entry.store_id is not None and self._store is not None:
            self._store.remove(entry.store_id)
        self._emit(
            "queue_dropped",
            {"reason": reason, "channel": msg.channel_id, "message_type": msg.message_type.value, "priority": entry.priority},
        )

    def _give_up_queue(self, error: IPCError) -> None:
        """Nothing will send the queue: fail its requests; persisted messages stay on disk."""
        for entry in self._queue.drain():
            if entry.waiter is None and entry.store_id is not None:
                continue  # durable: the next start sends it
            self._drop_entry(entry, error, "gave_up")
        if self._store is not None:  # a later connect() reopens it and reloads what stayed
            self._store.close()
            self._store = None
        self._arm_queue_timer()

    def _load_persisted(self) -> None:
        """Put the messages a previous run left on disk back in the queue (once)."""
        if self.queue_path is None or self._store is not None:
            return
        self._store = QueueStore(self.queue_path)
        loop = asyncio.get_running_loop()
        stored, expired = self._store.load()
        self._queue.dropped += expired
        self._metrics.failed(expired)
        for row in stored:
            try:
                msg = decode_message(row.body)
            except IPCError:
                self._store.remove(row.id)
                continue
            entry = QueuedCall(priority=row.priority, deadline=loop.time() + (row.expires_at - time.time()), size=len(row.body) + 4, message=msg, store_id=row.id)
            try:
                evicted = self._queue.push(entry)
            except QueueFull:
                self._store.remove(row.id)
                self._queue.dropped += 1
                continue
            for victim in evicted:
                self._drop_entry(victim, QueueFull("evicted from the full offline queue"), "evicted")
        self._arm_queue_timer()

    async def _ready_connection(self, deadline: float | None) -> ClientConnection:
        if self._state is not ConnectionState.CONNECTED:
            await self._until_connected(deadline)
        conn = self._conn
        if conn is None:
            raise NotConnected("not connected")
        return conn

    # -- public API: requests -------------------------------------------------

    async def send_request(
        self,
        channel: str,
        payload: Any = None,
        *,
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
        priority: int = 0,
        on_disconnect: str | None = None,
    ) -> Message:
        """Send a request and return the response message (its ``payload`` is the result).

        While the client reconnects the request waits in the offline queue
        (``priority``: higher first), unless ``on_disconnect="fail"``.

        Raises:
            RequestTimeout: no answer within ``timeout`` seconds (default
                ``request_timeout``), time in the queue included.
            NoResponders, HandlerError, RemoteError: the server or responder answered an error.
            ConnectionLost: the connection dropped while waiting (raised at once).
            NotConnected: not connected, and not going to be (or ``on_disconnect="fail"``).
            QueueFull: the offline queue refused or evicted it.
            CircuitOpen: the circuit breaker is open (and no fallback is set).
        """
        validate_channel(channel)
        if timeout is None:
            timeout = self.request_timeout
        conn = self._sendable() if self._breaker_options is None else None
        if conn is not None:  # the hot path
            return await self._request_now(conn, channel, payload, headers, timeout)
        deadline = asyncio.get_running_loop().time() + timeout
        msg = Message.build(MessageType.REQUEST, self.app_id, channel, payload, headers=headers)
        if self._breaker_options is None:
            reply = await self._submit(msg, deadline, reply=True, priority=priority, on_disconnect=on_disconnect)
            assert reply is not None
            return reply
        return await self._guarded(msg, deadline, priority, on_disconnect)

    async def _guarded(self, msg: Message, deadline: float, priority: int, on_disconnect: str | None) -> Message:
        """A request through its circuit breaker (docs/resilience.md §6)."""
        options = self._breaker_options
        assert options is not None
        breaker = self.circuit_breaker(msg.channel_id)
        try:
            token = breaker.before_call()
        except CircuitOpen as exc:
            if options.fallback is None:
                self._metrics.failed()
                raise
            result = options.fallback(msg.channel_id, msg.payload, exc)
            if inspect.isawaitable(result):
                result = await result
            return result if isinstance(result, Message) else response_to(msg, result)
        try:
            reply = await self._submit(msg, deadline, reply=True, priority=priority, on_disconnect=on_disconnect)
        except (ProtocolError, ValueError):  # refused locally: says nothing about the service
            breaker.release(token)
            raise
        except Exception as exc:
            breaker.record(token, exc)
            raise
        except BaseException:
            breaker.release(token)
            raise
        breaker.record(token, None)
        assert reply is not None
        return reply

    def circuit_breaker(self, channel: str) -> CircuitBreaker:
        """The breaker guarding ``channel`` (created on first use)."""
        options = self._breaker_options
        if options is None:
            raise RuntimeError("this client has no circuit breaker (circuit_breaker=None)")
        key = channel if options.scope == "channel" else "*"
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = self._breakers[key] = CircuitBreaker(key, options, on_change=self._on_circuit_change)
        return breaker

    def _on_circuit_change(self, breaker: CircuitBreaker, old: CircuitState) -> None:
        log.info("circuit %r: %s -> %s", breaker.name, old.value, breaker.state.value)
        self._emit(f"circuit_{breaker.state.value}", breaker.snapshot())

    async def request(self, channel: str, payload: Any = None, **kwargs: Any) -> Any:
        """Like :meth:`send_request` but returns the response payload only."""
        return (await self.send_request(channel, payload, **kwargs)).payload

    async def notify(
        self,
        channel: str,
        data: Any = None,
        *,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        priority: int = 0,
        on_disconnect: str | None = None,
    ) -> None:
        """A one-way request: routed like a request, never answered.

        Returns once written, or once accepted into the offline queue."""
        validate_channel(channel)
        deadline = asyncio.get_running_loop().time() + (self.request_timeout if timeout is None else timeout)
        msg = Message.build(MessageType.NOTIFICATION, self.app_id, channel, data, headers=headers)
        await self._submit(msg, deadline, reply=False, priority=priority, on_disconnect=on_disconnect)

    # -- public API: pub/sub ---------------------------------------------------

    async def publish(
        self,
        channel: str,
        data: Any = None,
        *,
        ack: bool = False,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        priority: int = 0,
        on_disconnect: str | None = None,
    ) -> int | None:
        """Publish ``data`` on ``channel``.

        With ``ack=True``, wait for the server and return how many connections
        the message was delivered to; otherwise return None once it is written
        or accepted into the offline queue.
        """
        validate_channel(channel)
        if is_reserved(channel):
            raise Forbidden(f"channel {channel!r} is reserved for the server")
        deadline = asyncio.get_running_loop().time() + (self.request_timeout if timeout is None else timeout)
        want_ack = ack and not self.legacy
        msg = Message.build(MessageType.PUBLISH, self.app_id, channel, data, headers=headers, ack=True if want_ack else None)
        reply = await self._submit(msg, deadline, reply=want_ack, priority=priority, on_disconnect=on_disconnect)
        if reply is None:
            return None
        return int(reply.payload.get("delivered", 0)) if isinstance(reply.payload, dict) else 0

    async def subscribe(self, channel: str, handler: Handler) -> None:
        """Call ``handler(message)`` for every publish matching ``channel`` (``*`` and ``>`` allowed).

        Sync handlers run on the event loop in arrival order, so keep them
        short; ``async`` handlers run as tasks. Subscriptions survive
        reconnections. Returns once the server acknowledged.
        """
        validate_pattern(channel)
        if not callable(handler):
            raise TypeError("handler must be callable")
        first = channel not in self._subscriptions
        self._subscriptions.setdefault(channel, []).append(handler)
        self._sub_cache.clear()
        if self._state in (ConnectionState.CONNECTING, ConnectionState.RECONNECTING):
            # The restore in progress picks it up; return once it is registered.
            await self._until_connected(asyncio.get_running_loop().time() + self.request_timeout)
            return
        if first and self._state is ConnectionState.CONNECTED and self._conn is not None:
            try:
                await self._subscribe_frame(self._conn, channel, serve=False)
            except BaseException:
                self._subscriptions.pop(channel, None)
                self._sub_cache.clear()
                raise

    async def unsubscribe(self, channel: str, handler: Handler | None = None) -> None:
        """Remove ``handler`` (or every handler) for ``channel``."""
        handlers = self._subscriptions.get(channel)
        if handlers is None:
            return
        if handler is not None and handler in handlers:
            handlers.remove(handler)
        if handler is None or not handlers:
            del self._subscriptions[channel]
            self._sub_cache.clear()
            if self._state is ConnectionState.CONNECTED and self._conn is not None:
                await self._subscribe_frame(self._conn, channel, serve=False, subscribe=False)
        else:
            self._sub_cache.clear()

    async def _subscribe_frame(
        self, conn: ClientConnection, channel: str, *, serve: bool, subscribe: bool = True, deadline: float | None = None
    ) -> None:
        payload: dict[str, Any] = {"serve": True} if serve else {}
        if self.legacy:
            payload["connection_id"] = self.connection_id  # a 1.1.x server reads it here (§10)
        mtype = MessageType.SUBSCRIBE if subscribe else MessageType.UNSUBSCRIBE
        msg = Message.build(mtype, self.app_id, channel, payload)
        if self.legacy:
            self._write(conn, msg)  # a 1.1.x server sends no acks
            return
        loop = asyncio.get_running_loop()
        await self._call(conn, msg, deadline or loop.time() + self.request_timeout)

    # -- public API: answering requests ---------------------------------------

    def serve(self, channel: str, fn: Handler) -> Registration:
        """Answer requests on ``channel`` (or a pattern) from other clients.

        ``fn(message)`` returns the response payload; sync functions run in a
        worker thread, ``async`` ones on the loop. Raising answers
        ``handler_error`` with the exception's type and message. The
        registration survives reconnections. Returns a :class:`Registration`;
        awaiting it (optional) waits until the server has registered it.
        """
        validate_pattern(channel)
        if not is_servable(channel):
            raise ValueError(f"channel {channel!r} is reserved for the server")
        if channel in self._services:
            raise AlreadyServing(f"already serving {channel!r}; unserve() it first")
        self._services[channel] = fn
        registration = Registration(channel)
        self._service_acks[channel] = registration
        if self._state is ConnectionState.CONNECTED and self._conn is not None:
            self._spawn(self._register_service(self._conn, channel, registration))
        return registration

    async def _register_service(self, conn: ClientConnection, channel: str, registration: Registration) -> None:
        try:
            await self._subscribe_frame(conn, channel, serve=True)
        except Exception as exc:
            registration._settle(exc)
            self._emit("error", exc)
        else:
            registration._settle(None)

    def handler(self, channel: str) -> Callable[[F], F]:
        """Decorator form of :meth:`serve`."""

        def register(fn: F) -> F:
            self.serve(channel, fn)
            return fn

        return register

    async def unserve(self, channel: str) -> None:
        """Stop answering requests on ``channel``.

        The handler keeps answering until the server has acknowledged: the
        requests it forwarded before that arrive first on this connection,
        and they run here rather than failing with ``no_responders`` while
        another responder could have taken them."""
        fn = self._services.get(channel)
        if fn is None:
            return
        self._service_acks.pop(channel, None)
        try:
            if self._state is ConnectionState.CONNECTED and self._conn is not None:
                await self._subscribe_frame(self._conn, channel, serve=True, subscribe=False)
        finally:
            if self._services.get(channel) is fn:
                del self._services[channel]

    # -- public API: introspection ----------------------------------------------

    async def health_check(self, timeout: float = 5.0) -> bool:
        """Whether a ping round trip succeeds within ``timeout`` seconds; never raises.

        Against a 1.1.x server, which never answers pings, it is whether the
        connection is open. :meth:`health` gives the details."""
        return bool((await self.health(timeout))["healthy"])

    async def health(self, timeout: float = 5.0) -> dict[str, Any]:
        """Ping the server: ``{healthy, state, latency_ms, protocol}``, and
        ``error`` ``{code, message}`` when the ping failed; never raises."""
        info: dict[str, Any] = {"healthy": False, "state": self._state.value, "latency_ms": None, "protocol": 1 if self.legacy else PROTOCOL_VERSION}
        if self._state is not ConnectionState.CONNECTED or self._conn is None:
            return info
        if self.legacy:
            info["healthy"] = self._conn.is_open  # a 1.1.x server never answers pings
            return info
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            reply = await self._call(self._conn, ping_request(self.app_id), started + timeout)
        except IPCError as exc:
            info["error"] = {"code": str(exc.code), "message": str(exc)}
            return info
        info["latency_ms"] = round((loop.time() - started) * 1000, 3)
        info["healthy"] = isinstance(reply.payload, dict) and reply.payload.get("status") == "pong"
        return info

    async def system(self, action: str, timeout: float | None = None) -> Any:
        """Ask the ``system`` channel: the server's own actions (``stats``,
        ``channels``, ``services``, ``ping``), or any other action of whoever
        serves ``system`` in this app (docs/protocol.md §8)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.request_timeout if timeout is None else timeout)
        conn = await self._ready_connection(deadline)
        msg = Message.build(MessageType.REQUEST, self.app_id, SYSTEM_CHANNEL, {"action": action})
        return (await self._call(conn, msg, deadline)).payload

    def metrics(self) -> dict[str, Any]:
        """The KPIs of docs/resilience.md §2, with the offline queue's state."""
        snapshot = self._metrics.snapshot(time.monotonic())
        snapshot.update(queued=len(self._queue), queued_bytes=self._queue.bytes, queue_dropped=self._queue.dropped)
        return snapshot

    def queue_stats(self) -> dict[str, Any]:
        """``{size, bytes, max_size, max_bytes, dropped, by_priority}`` of the offline queue."""
        return self._queue.stats()

    def circuit_breakers(self) -> dict[str, dict[str, Any]]:
        """State and counters of every circuit breaker created so far, by channel (or ``*``)."""
        return {key: breaker.snapshot() for key, breaker in self._breakers.items()}

    def get_connection_health(self) -> dict[str, Any]:
        """Liveness as the heartbeat sees it (docs/resilience.md §5), without a round trip."""
        conn = self._conn
        hb = conn.heartbeat if conn is not None else None
        connected = self._state is ConnectionState.CONNECTED and conn is not None and conn.is_open
        health: dict[str, Any] = {
            "healthy": connected,
            "state": self._state.value,
            "last_heartbeat": None,
            "last_received": None,
            "latency_ms": None,
            "heartbeat_interval_ms": None,
            "heartbeat_timeout_ms": None,
        }
        if hb is None or self._loop is None:
            return health
        now = self._loop.time()  # the heartbeat's clock; safe to read from any thread
        wall = time.time()
        silent = now - hb.last_received
        health.update(
            healthy=connected and silent <= hb.interval_s,
            last_received=wall - silent,
            last_heartbeat=None if self._last_pong is None else wall - (now - self._last_pong),
            latency_ms=None if hb.latency_s is None else round(hb.latency_s * 1000, 3),
            heartbeat_interval_ms=round(hb.interval_s * 1000, 3),
            heartbeat_timeout_ms=round(hb.timeout_s * 1000, 3),
        )
        return health

    def get_connection_info(self) -> dict[str, Any]:
        hb = self._conn.heartbeat if self._conn is not None else None
        return {
            "app_id": self.app_id,
            "connection_id": self.connection_id,
            "host": self.host,
            "port": self.port,
            "state": self._state.value,
            "connected": self.connected,
            "protocol": 1 if self.legacy else PROTOCOL_VERSION,
            "server": self.server_info.get("server"),
            "subscriptions": list(self._subscriptions),
            "services": list(self._services),
            "pending_requests": len(self._pending),
            "reconnects": self._reconnects,
            "heartbeat_latency_ms": None if hb is None or hb.latency_s is None else round(hb.latency_s * 1000, 3),
        }

    def __repr__(self) -> str:
        return (
            f"<IPCClient {self.app_id!r} {self.host}:{self.port} state={self._state.value}"
            f" pending={len(self._pending)} subscriptions={len(self._subscriptions)} services={len(self._services)}>"
        )
