"""The asyncio Python client's public facade (docs/protocol.md,
docs/resilience.md): the API, the options and the events. Each concern
lives in its own module (docs/architecture.md "The client, by concern").

Every request ends in exactly one result or one exception: the response, an
error response, its own timeout, ``ConnectionLost`` at the moment the
connection drops, or a typed refusal (``QueueFull``, ``CircuitOpen``,
``NotConnected``). The client reconnects with exponential backoff and
jitter, restores its subscriptions and responder registrations before
anything else is sent, then replays the calls that waited in the queue.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from ipc_protocol import SYSTEM_CHANNEL, Forbidden, Message, MessageType, is_reserved, validate_channel
from ipc_protocol.constants import DEFAULT_REQUEST_TIMEOUT_S
from ipc_protocol.payload_paths import read_once, snapshot
from ipc_protocol.wire_numbers import delivered_count

from .listeners import Listeners
from .admission import DEFAULT_MAX_HELD_MESSAGES, Admission
from .backoff import DEFAULT_INITIAL_DELAY_S, DEFAULT_JITTER, DEFAULT_MAX_DELAY_S, DEFAULT_MULTIPLIER, Backoff
from .calls import Calls
from .circuit_breaker import Breakers, CircuitBreaker, CircuitBreakerOptions, breaker_options
from .client_extensions import ClientExtensions
from .coalescing import DEFAULT_CACHE_MAX_ENTRIES, SharedCalls
from .drain import Drain, Draining
from .connection import ClientConnection
from .introspection import ClientIntrospection
from .metrics import ClientMetrics
from .offline_queue import DEFAULT_QUEUE_MAX_BYTES, DEFAULT_QUEUE_MAX_SIZE, OfflineQueue, OverflowPolicy
from .option_checks import check_client_options
from .outbox import DISCONNECT_POLICIES, Outbox
from .producers import Producers
from .streams import Streaming, Streams
from .idempotency import keyed_headers, resend_on_loss
from .lifecycle import ConnectOptions, Lifecycle
from .state import ConnectionState, StateMachine
from .registration import Registration
from .subscriptions import Handler, Subscriptions
from .timeouts import check_timeout, send_deadline
from .tls import client_tls
from .tracing import outgoing, spanned, traced

__all__ = ["IPCClient", "Registration", "Handler", "DEFAULT_CONNECT_TIMEOUT_S"]

DEFAULT_CONNECT_TIMEOUT_S = 10.0
F = TypeVar("F", bound=Callable[..., Any])

_EVENTS = (
    "connecting", "connected", "disconnected", "reconnecting", "reconnected", "reconnect_failed", "heartbeat",
    "heartbeat_timeout", "queue_dropped", "circuit_open", "circuit_half_open", "circuit_closed", "error", "lame_duck",
)  # fmt: skip
_CONNECTED = ConnectionState.CONNECTED


class IPCClient(ClientExtensions, Streaming, ClientIntrospection, Draining):
    """Client for the bridge's server, bound to the event loop it connected
    on: a call awaited on another raises RuntimeError (threads: SyncIPCClient).

    Args:
        app_id: the application namespace; fixed for the connection.
        host, port: the server.
        connect_timeout: seconds for TCP connect plus handshake.
        request_timeout: default timeout of :meth:`send_request`, seconds.
        heartbeat_interval: seconds of silence before the client pings;
            ``None`` uses the server's advertised interval.
        heartbeat_timeout: seconds of silence that make the connection dead; default 2 x interval.
            Set alone and not over the server's interval, pings go at half of it.
        reconnect: reconnect automatically after the connection drops.
        wait_on_first_connect: a failed first :meth:`connect` retries with the reconnect
            policy (emitting ``reconnecting``) until it succeeds; off by default.
        max_retries: reconnection attempts before giving up; ``None`` = unlimited.
        initial_delay, max_delay, multiplier, jitter: the reconnect backoff,
            ``min(initial_delay * multiplier**n, max_delay)`` ± ``jitter``.
        queue_max_size, queue_max_bytes: offline queue bounds (messages, bytes);
            ``queue_max_size=0`` disables queueing.
        queue_overflow: ``"reject"``, ``"drop_oldest"`` or ``"drop_lowest_priority"``.
        queue_path: an SQLite file where queued one-way messages persist;
            ``QueueFileError`` when it cannot be opened or written.
        on_disconnect: per-call default while not connected: ``"queue"`` or ``"fail"``.
        circuit_breaker: a :class:`CircuitBreakerOptions` (or a mapping of its fields), or True for the defaults.
        tls, tls_ca, tls_cert, tls_key, tls_server_hostname: TLS (:func:`ipc_client.tls.client_tls`).
        token: shared secret for servers that require one; with ``user``,
            that user's token (docs/security.md §3).
        user: the user to connect as, on a server with a users file.
        max_frame_size: largest frame body to send or accept, bytes; the
            server's advertised limit applies too (the smaller wins).
        expose_stacks: send handler stack traces to requesters.
        max_concurrent_handlers, max_held_messages: served requests and async subscription
            handlers running at once; how many more may wait, in arrival order (README).
        cache_max_entries: answers the response cache holds (``cache_ttl``); 0 turns it off.
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
        circuit_breaker: CircuitBreakerOptions | Mapping[str, Any] | bool | None = None,
        tls: bool | ssl.SSLContext | None = None, tls_ca: str | None = None, tls_cert: str | None = None, tls_key: str | None = None, tls_server_hostname: str | None = None,
        token: str | None = None,
        user: str | None = None,
        max_frame_size: int | None = None,
        max_concurrent_handlers: int = 1024,
        max_held_messages: int = DEFAULT_MAX_HELD_MESSAGES,
        cache_max_entries: int = DEFAULT_CACHE_MAX_ENTRIES,
        expose_stacks: bool = False,
        on_connected: Callable[..., Any] | None = None,
        on_disconnected: Callable[..., Any] | None = None,
        on_error: Callable[..., Any] | None = None,
    ) -> None:
        self.backoff = Backoff(initial_delay=initial_delay, max_delay=max_delay, multiplier=multiplier, jitter=jitter)
        options = ConnectOptions(
            app_id, host, port, connect_timeout, token, max_frame_size, heartbeat_interval, heartbeat_timeout,
            reconnect, wait_on_first_connect, self.backoff, max_retries, user,
            tls=client_tls(tls, ca=tls_ca, cert=tls_cert, key=tls_key, server_hostname=tls_server_hostname),
        )  # fmt: skip
        check_client_options(request_timeout, max_concurrent_handlers, expose_stacks, max_held_messages)  # as Node's (option_checks.py)
        breakers = breaker_options(circuit_breaker)  # a TypeError here, as Node's, not an AttributeError at each call
        if on_disconnect not in DISCONNECT_POLICIES:
            raise ValueError(f"on_disconnect must be one of {', '.join(DISCONNECT_POLICIES)}")
        self.app_id, self.host, self.port = app_id, host, port
        self.connect_timeout, self.request_timeout = connect_timeout, request_timeout
        self.heartbeat_interval, self.heartbeat_timeout = heartbeat_interval, heartbeat_timeout
        self.reconnect, self.wait_on_first_connect, self.max_retries = reconnect, wait_on_first_connect, max_retries
        self.token, self.max_frame_size, self.expose_stacks = token, max_frame_size, expose_stacks
        self.user, self.max_held_messages = user, max_held_messages
        self.on_disconnect, self.queue_path, self.max_concurrent_handlers = on_disconnect, queue_path, max_concurrent_handlers

        self._sm = StateMachine()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._listeners = Listeners("client", _EVENTS, self._spawn)
        self._metrics = ClientMetrics()
        self._calls = Calls(app_id, self._metrics)
        self._shared = SharedCalls(self._metrics, cache_max_entries, request_timeout, lambda: self._breakers)
        self._admission = Admission(max_concurrent_handlers, lambda: self._link.conn, f"ipc-client-{app_id}", max_held=max_held_messages, metrics=self._metrics, emit=self._emit)
        self._subs = Subscriptions(
            self._calls, self._admission, connected=self._connected_conn, waiting=lambda: self._sm.waiting,
            until_connected=self._sm.until_connected, emit=self._emit, spawn=self._spawn,
            request_timeout=request_timeout, expose_stacks=expose_stacks,
        )  # fmt: skip
        self._outbox = Outbox(
            OfflineQueue(queue_max_size, queue_max_bytes, queue_overflow), self._calls, self._metrics, self._sm,
            connected=self._connected_conn, wire=lambda: (self._link.legacy, self._link.max_send), emit=self._emit, spawn=self._spawn,
            path=queue_path, on_disconnect=on_disconnect,
        )  # fmt: skip
        self._link = Lifecycle(
            options, self._sm, calls=self._calls, subs=self._subs, outbox=self._outbox, admission=self._admission,
            metrics=self._metrics, emit=self._emit, tasks=lambda: self._tasks, connection_id=uuid.uuid4().hex,
        )  # fmt: skip
        # Streams and cancellation (docs/protocol.md §15): what it consumes (stream()), what it serves.
        self._streams = self._link.streams = Streams(self._calls, self._link.ready, request_timeout, self)
        self._subs.producers = self._link.producers = Producers(expose_stacks, self._admission.threads)
        self._subs.producers.unheld = self._admission.drop_held  # a cancel of a held request: it never runs
        self._drain = Drain(self._link, self._subs, self._calls, self._outbox, self._admission, self._streams)  # drain(): docs/resilience.md §12
        self._breakers = Breakers(breakers, self._emit) if breakers is not None else None
        for event, cb in (("connected", on_connected), ("disconnected", on_disconnected), ("error", on_error)):
            if cb is not None:
                self.on(event, cb)

    # -- events and state ---------------------------------------------------------

    def on(self, event: str, callback: F) -> F:
        """Register ``callback`` for ``event`` (one of the lifecycle events)."""
        return self._listeners.add(event, callback)

    def _emit(self, event: str, *args: Any) -> None:
        self._listeners.emit(event, *args)

    def _spawn(self, aw: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(aw)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def state(self) -> ConnectionState:
        return self._sm.state

    @property
    def connected(self) -> bool:
        return self._sm.state is _CONNECTED

    def _connected_conn(self) -> ClientConnection | None:
        return self._link.conn if self._sm.state is _CONNECTED else None

    # What the latest handshake said: a version-1 server (ipc-framework 1.1.x, §10), its reply, our id.
    legacy = property(lambda self: self._link.legacy)
    server_info = property(lambda self: self._link.server_info)
    connection_id = property(lambda self: self._link.connection_id)

    # -- connect / disconnect -------------------------------------------------

    async def connect(self) -> bool:
        """Connect and handshake; returns True.

        Raises NotConnected when the server cannot be reached or does not
        complete the handshake (with ``wait_on_first_connect``: once the
        retries are spent or :meth:`disconnect` is called), Unauthorized
        when it refuses the token."""
        if self._sm.state is ConnectionState.DISCONNECTED:  # (re)binds it to this loop
            self._admission.loop = self._calls.bind()
        else:
            self._calls.own_loop()
        return await self._link.connect()

    async def disconnect(self) -> None:
        """Close the connection and stop reconnecting; pending calls fail with ConnectionLost."""
        self._calls.own_loop()
        await self._link.disconnect()

    async def __aenter__(self) -> IPCClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.disconnect()

    # -- public API: requests and messages --------------------------------------

    @traced("request")  # docs/tracing.md: a traceparent on every message
    async def send_request(
        self, channel: str, payload: Any = None, *, timeout: float | None = None, headers: dict[str, str] | None = None, priority: int = 0, on_disconnect: str | None = None,
        idempotency_key: str | None = None, coalesce: bool = False, cache_ttl: float | None = None,
        _named_timeout: float | None = None,  # a pool's call: its own timeout, named by its RequestTimeout (``timeout`` is what is left)
    ) -> Message:
        """Send a request and return the response message (its ``payload`` is the result).

        While the client reconnects the request waits in the offline queue (``priority``: higher
        first), unless ``on_disconnect="fail"``. With an ``idempotency_key`` the server runs it once
        per key, and a connection lost before the answer resends it instead of raising ConnectionLost
        (docs/protocol.md §6.6). With ``coalesce=True`` identical calls in flight (same channel and
        payload) share one round trip; with ``cache_ttl`` (seconds) an answer is reused until it expires.

        Raises:
            RequestTimeout: no answer within ``timeout`` seconds (default
                ``request_timeout``), time in the queue included.
            NoResponders, HandlerError, RemoteError: the server or responder answered an error.
            ConnectionLost: the connection dropped while waiting (raised at once).
            NotConnected: not connected, and not going to be (or ``on_disconnect="fail"``).
            QueueFull: the offline queue refused or evicted it.
            CircuitOpen: the circuit breaker is open (and no fallback is set).
        """
        loop = self._calls.own_loop()
        timeout = check_timeout(timeout, self.request_timeout)
        payload = read_once(payload)  # an iterator, read once: a key, a size, a resend or a wait read it again (§16.3)
        if coalesce or cache_ttl is not None:  # docs/resilience.md §11: the call itself made by SharedCalls, or not at all
            send = functools.partial(self.send_request, channel, payload, timeout=timeout, headers=headers, priority=priority, on_disconnect=on_disconnect, idempotency_key=idempotency_key, _named_timeout=_named_timeout)
            return await self._shared.request(send, channel, payload, coalesce=coalesce, cache_ttl=cache_ttl, timeout=timeout, named=_named_timeout)
        validate_channel(channel)
        self._drain.check()
        conn, outbox = self._link.conn, self._outbox
        if idempotency_key is not None:  # every attempt sends the payload of the call, whatever the caller changes (§16.3)
            headers, payload = keyed_headers(headers, idempotency_key), snapshot(payload)
        # The hot path: connected, nothing queued ahead, no breaker (outbox.sendable(), inline).
        elif conn is not None and self._sm.state is _CONNECTED and self._breakers is None and not outbox.queue and not outbox.replaying:
            return await self._calls.request(conn, channel, payload, headers, timeout, _named_timeout)
        deadline = loop.time() + timeout
        msg = Message.build(MessageType.REQUEST, self.app_id, channel, payload, headers=headers)
        named = timeout if _named_timeout is None else _named_timeout
        submit: Callable[[], Awaitable[Message | None]] = lambda: self._outbox.submit(msg, deadline, reply=True, priority=priority, on_disconnect=on_disconnect, timeout=named)  # noqa: E731
        if idempotency_key is not None:
            submit = functools.partial(resend_on_loss, submit, self._sm, lambda: self._link.conn, deadline, on_disconnect or outbox.on_disconnect, self._metrics, outbox)
        if self._breakers is None:
            return await submit()  # type: ignore[return-value]
        return await self._breakers.guard(msg, submit, self._metrics.failed)  # type: ignore[arg-type]

    async def request(self, channel: str, payload: Any = None, **kwargs: Any) -> Any:
        """Like :meth:`send_request` but returns the response payload only."""
        if kwargs or type(self).send_request is not _send_request:  # options, or a subclass's own
            return (await self.send_request(channel, payload, **kwargs)).payload
        # No options: send_request's decorator's work, without its argument passing (docs/performance.md).
        headers, span = outgoing("request", channel, None, self)
        call = _bare_send_request(self, channel, payload, headers=headers)
        return (await (call if span is None else spanned(call, span))).payload

    @traced("notify")
    async def notify(
        self, channel: str, data: Any = None, *, headers: dict[str, str] | None = None, timeout: float | None = None, priority: int = 0, on_disconnect: str | None = None
    ) -> None:
        """A one-way request: routed like a request, never answered; returns
        once written, or accepted into the offline queue."""
        validate_channel(channel)
        self._drain.check()
        if channel != SYSTEM_CHANNEL and is_reserved(channel):  # the server would drop it, answering nothing (§6.1)
            raise Forbidden(f"channel {channel!r} is reserved for the server")
        deadline = send_deadline(self._calls.own_loop().time(), timeout, self.request_timeout, "notify", channel)
        data = read_once(data)  # as send_request's
        msg = Message.build(MessageType.NOTIFICATION, self.app_id, channel, data, headers=headers)
        await self._outbox.submit(msg, deadline, reply=False, priority=priority, on_disconnect=on_disconnect)

    @traced("publish")
    async def publish(
        self, channel: str, data: Any = None, *, ack: bool = False, headers: dict[str, str] | None = None, timeout: float | None = None, priority: int = 0, on_disconnect: str | None = None,
    ) -> int | None:
        """Publish ``data`` on ``channel``.

        With ``ack=True``, wait for the server and return how many connections
        the message was delivered to (None from a version-1 server, which has
        no acks, or for an ack without a number); otherwise return None once
        it is written or accepted into the offline queue.
        """
        validate_channel(channel)
        self._drain.check()
        if is_reserved(channel):
            raise Forbidden(f"channel {channel!r} is reserved for the server")
        deadline = send_deadline(self._calls.own_loop().time(), timeout, self.request_timeout, "publish", channel)
        data = read_once(data)  # as send_request's
        want_ack = ack and not self.legacy
        if not want_ack and (conn := self._outbox.sendable()) is not None:  # the hot path: no Message built (Calls.publish)
            await self._calls.publish(conn, channel, data, headers, deadline)
            return None
        msg = Message.build(MessageType.PUBLISH, self.app_id, channel, data, headers=headers, ack=True if want_ack else None)
        reply = await self._outbox.submit(msg, deadline, reply=want_ack, priority=priority, on_disconnect=on_disconnect, timeout=self.request_timeout if timeout is None else timeout)
        # None: replayed to a version-1 server, which counts nothing (outbox.py), or no number in the ack.
        return None if reply is None else delivered_count(reply.payload)

    def circuit_breaker(self, channel: str) -> CircuitBreaker:
        """The breaker guarding ``channel`` (created on first use)."""
        if self._breakers is None:
            raise RuntimeError("this client has no circuit breaker (circuit_breaker=None)")
        return self._breakers.get(channel)

    # -- public API: pub/sub and answering requests -----------------------------------

    async def subscribe(self, channel: str, handler: Handler) -> None:
        """Call ``handler(message)`` for every publish matching ``channel`` (``*`` and ``>`` allowed).

        Sync handlers run on the event loop in arrival order, so keep them
        short; ``async`` handlers run as tasks. Subscriptions survive
        reconnections. Returns once the server acknowledged.
        """
        self._calls.own_loop()
        self._drain.check()
        await self._subs.subscribe(channel, handler)

    async def unsubscribe(self, channel: str, handler: Handler | None = None) -> None:
        """Remove ``handler`` (or every handler) for ``channel``."""
        self._calls.own_loop()
        await self._subs.unsubscribe(channel, handler)

    def serve(self, channel: str, fn: Handler) -> Registration:
        """Answer requests on ``channel`` (or a pattern) from other clients.

        ``fn(message)`` returns the response payload (annotated, ``fn`` gets the
        validated payload: docs/typed-contracts.md); sync functions run in a worker
        thread, ``async`` ones on the loop; raising answers ``handler_error``. The
        registration survives reconnections. Returns a :class:`Registration`;
        awaiting it (optional) waits until the server has registered it.
        A reserved channel other than ``system`` raises ``Forbidden`` at once.
        """
        self._calls.own_running_loop()
        self._drain.check()
        return self._subs.serve(channel, fn)

    async def unserve(self, channel: str) -> None:
        """Stop answering requests on ``channel``.

        The handler keeps answering until the server has acknowledged: the
        requests it forwarded before that arrive first on this connection,
        and they run here rather than failing with ``no_responders`` while
        another responder could have taken them."""
        self._calls.own_loop()
        await self._subs.unserve(channel)

    def __repr__(self) -> str:
        return (
            f"<IPCClient {self.app_id!r} {self.host}:{self.port} state={self._sm.state.value}"
            f" pending={len(self._calls)} subscriptions={len(self._subs.handlers)} services={len(self._subs.services)}>"
        )


_send_request = IPCClient.send_request  # and below, the method as written under its trace decorator: request() calls it
_bare_send_request: Callable[..., Awaitable[Message]] = _send_request.__wrapped__  # type: ignore[attr-defined]
