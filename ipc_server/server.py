"""The asyncio server: accepts connections, performs the handshake, routes
requests, fans out publishes, sweeps heartbeats and expiries, shuts down
gracefully (docs/protocol.md §3-§13).

``ServerConnection`` turns bytes into messages; everything here works on
messages. Routing state (handlers, responders, subscriptions) lives in the
pure tables of ``router`` and ``topics``.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ipc_protocol import (
    ErrorCode,
    IPCError,
    Message,
    MessageType,
    SERVER_SYSTEM_ACTIONS,
    SERVICES_CHANNEL,
    SYSTEM_CHANNEL,
    encode_frame,
    encode_message,
    encode_response,
    is_reserved,
    is_servable,
    validate_channel,
    validate_pattern,
)
from ipc_protocol.deadlines import Deadlines
from ipc_protocol.messages import error_response, response_to
from ipc_protocol.replies import UNSENDABLE_RESULT, failure_reply
from ipc_protocol.server_protocol import ConnectRequested

from .config import SERVER_NAME, ServerConfig, load_config
from .connection import ServerConnection, SharedReads
from .router import Handler, HandlerRegistry, ResponderTable
from .stats import ServerStats
from .topics import SubscriptionTable

__all__ = ["IPCServer"]

log = logging.getLogger("ipc_server")

_SWEEP_INTERVAL_S = 0.25

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class _App:
    """Everything scoped to one ``app_id`` (§2: apps are isolated)."""

    subscriptions: SubscriptionTable[ServerConnection] = field(default_factory=SubscriptionTable)
    responders: ResponderTable[ServerConnection] = field(default_factory=ResponderTable)
    connections: int = 0


# A forwarded request as its responder knows it: (responder, the message_id
# it was sent with). Keyed by responder, so one connection's reply_to can
# only ever name a request forwarded to that connection (§7.3).
_Key = tuple[ServerConnection, str]


@dataclass(slots=True)
class _Forwarded:
    """A request forwarded to a responder, waiting for its answer (§7.3)."""

    request: Message
    requester: ServerConnection
    responder: ServerConnection
    # Sent as the requester's own frame, so under its own message_id: the
    # answer already carries the requester's reply_to and is relayed as is.
    verbatim: bool


class _HandlerCall:
    """One request being answered by an in-process handler: answered once,
    by the handler, its deadline or shutdown, whichever comes first."""

    __slots__ = ("conn", "request", "task", "answered", "started", "finished")

    def __init__(self, conn: ServerConnection, request: Message) -> None:
        self.conn = conn
        self.request = request
        self.task: asyncio.Task[None] | None = None
        self.answered = False
        self.started = False  # its task began: its ``finally`` closes the books
        self.finished = False

    def answer(self, reply: Message) -> None:
        if self.answered:
            return
        if self.request.message_type is MessageType.REQUEST:
            conn = self.conn
            conn.send(reply, at_once=conn.inflight == 1)  # raises before queueing if reply cannot be encoded
        elif reply.error is not None:
            log.warning("notification handler for %r failed: %s", self.request.channel_id, reply.error.message)
        self.answered = True

    def respond(self, payload: Any) -> None:
        """Answer a request with the handler's result (encoded straight from it)."""
        if self.answered:
            return
        conn = self.conn
        if conn.is_open and self.request.message_type is MessageType.REQUEST:
            # The connection's only request in flight: no other answer can join
            # it, so it goes out now rather than after the books close.
            frame = encode_frame(encode_response(self.request, payload, legacy=conn.legacy))  # raises if it cannot be encoded
            conn.send_frame(frame, at_once=conn.inflight == 1)
        self.answered = True


class IPCServer:
    """The bridge's server.

    Use it embedded::

        async with IPCServer("127.0.0.1", 0) as server:
            @server.handler("math.add")
            async def add(msg):
                return msg.payload["a"] + msg.payload["b"]
            await server.serve_forever()

    Args:
        host: interface to listen on.
        port: TCP port; 0 picks a free one (read it back from ``server.port``).
        config: a full :class:`ServerConfig`; keyword ``overrides`` replace its fields.
    """

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        config: ServerConfig | None = None,
        **overrides: Any,
    ) -> None:
        config = config or load_config(env={})
        if host is not None:
            overrides["host"] = host
        if port is not None:
            overrides["port"] = port
        self.config = config.replace(**overrides) if overrides else config
        self.stats = ServerStats()
        self.handlers = HandlerRegistry()
        self._apps: dict[str, _App] = {}
        self._connections: set[ServerConnection] = set()
        self._by_id: dict[str, ServerConnection] = {}
        self._forwarded: dict[_Key, _Forwarded] = {}
        self.reads = SharedReads()  # what the connections share about reading
        self._handler_calls: set[_HandlerCall] = set()
        # One loop timer each for all handler and forwarded-request deadlines (§6.5).
        self._handler_deadlines: Deadlines[_HandlerCall] = Deadlines(
            self._handler_expired, clock=self._loop_time, call_at=self._call_at, resolution=_CLOCK_RESOLUTION_S
        )
        self._forward_deadlines: Deadlines[_Key] = Deadlines(
            self._forward_expired, clock=self._loop_time, call_at=self._call_at, resolution=_CLOCK_RESOLUTION_S
        )
        self._ids = itertools.count(1)
        self._server: asyncio.base_events.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closing = False
        self._closed = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self.port: int = self.config.port
        self.host: str = self.config.host

    # -- public API --------------------------------------------------------

    def handler(self, channel: str, *, app_id: str | None = None) -> Callable[[F], F]:
        """Decorator: answer requests on ``channel`` (or a pattern) in this process.

        The function gets the request :class:`Message` and returns the response
        payload. ``async def`` handlers run on the loop; plain functions run in
        a worker thread, so a slow one never blocks other clients. Raising
        answers ``handler_error`` with the exception's type and message.
        """

        def register(fn: F) -> F:
            self.add_handler(channel, fn, app_id=app_id)
            return fn

        return register

    def add_handler(self, channel: str, fn: Callable[..., Any], *, app_id: str | None = None) -> None:
        validate_pattern(channel)
        if not is_servable(channel):
            raise ValueError(f"channel {channel!r} is reserved for the server")
        self.handlers.add(channel, fn, app_id)

    def remove_handler(self, channel: str, *, app_id: str | None = None) -> bool:
        return self.handlers.remove(channel, app_id)

    async def start(self) -> None:
        """Bind and start accepting; returns once listening."""
        if self._server is not None:
            return
        self.loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(thread_name_prefix="ipc-handler")
        self._server = await self.loop.create_server(
            lambda: ServerConnection(self),
            self.config.host,
            self.config.port,
            reuse_address=True,
            backlog=1024,
        )
        sockname = self._server.sockets[0].getsockname()
        self.host, self.port = sockname[0], sockname[1]
        self._sweeper = self.loop.create_task(self._sweep())
        log.info("listening on %s:%d", self.host, self.port)

    async def serve_forever(self) -> None:
        """Run until :meth:`close` is called (by a signal handler, say)."""
        await self.start()
        await self._closed.wait()

    async def close(self, grace_s: float | None = None) -> None:
        """Graceful shutdown (§13): stop accepting, let in-flight requests
        finish within the grace period, answer the rest ``shutting_down``, close."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        if self._server is None:  # never started
            self._closed.set()
            return
        grace = self.config.shutdown_grace_s if grace_s is None else grace_s
        self._server.close()
        deadline = self.loop.time() + grace
        while (self._handler_calls or self._forwarded) and self.loop.time() < deadline:
            waiter = self.loop.create_future()
            self._drained_waiter = waiter
            try:
                await asyncio.wait_for(waiter, deadline - self.loop.time())
            except (asyncio.TimeoutError, TimeoutError):
                break
        for call in list(self._handler_calls):
            call.answer(error_response(call.request, ErrorCode.SHUTTING_DOWN, "the server is shutting down"))
            self._stop_handler(call)
        for key, fwd in list(self._forwarded.items()):
            self._finish_forwarded(key, error_response(fwd.request, ErrorCode.SHUTTING_DOWN, "the server is shutting down"))
        if self._sweeper is not None:
            self._sweeper.cancel()
        for conn in list(self._connections):
            conn.close()
        if self._connections:
            waiter = self.loop.create_future()
            self._all_closed_waiter = waiter
            try:
                await asyncio.wait_for(waiter, 2.0)
            except (asyncio.TimeoutError, TimeoutError):
                for conn in list(self._connections):
                    conn.abort()
        await self._server.wait_closed()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._closed.set()
        log.info("closed")

    async def __aenter__(self) -> IPCServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def connections(self) -> frozenset[ServerConnection]:
        return frozenset(self._connections)

    def __repr__(self) -> str:
        return (
            f"<IPCServer {self.host}:{self.port} connections={len(self._connections)}"
            f" forwarded={len(self._forwarded)} handlers_running={len(self._handler_calls)}"
            f"{' closing' if self._closing else ''}>"
        )

    def _loop_time(self) -> float:
        return self.loop.time()

    def _call_at(self, when: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return self.loop.call_at(when, callback)

    # -- connection lifecycle (ConnectionOwner: called by ServerConnection) --

    _drained_waiter: asyncio.Future[None] | None = None
    _all_closed_waiter: asyncio.Future[None] | None = None

    def admit(self, conn: ServerConnection) -> bool:
        limit = self.config.max_connections
        if self._closing or (limit is not None and len(self._connections) >= limit):
            log.warning("refusing connection from %s: %s", conn.peer, "shutting down" if self._closing else "max_connections reached")
            conn.abort()
            return False
        self._connections.add(conn)
        self.stats.connections = len(self._connections)
        self.stats.connections_total += 1
        return True

    def connection_closed(self, conn: ServerConnection) -> None:
        if conn not in self._connections:
            return
        self._connections.discard(conn)
        self.stats.connections = len(self._connections)
        if self._by_id.get(conn.connection_id) is conn:
            del self._by_id[conn.connection_id]
        app = self._apps.get(conn.app_id)
        if app is not None and conn.opened:
            for pattern in conn.subscriptions:
                app.subscriptions.remove(pattern, conn)
            for pattern in conn.responder_for:
                app.responders.remove(pattern, conn)
                self._announce_service(conn, "removed", pattern)
            app.connections -= 1
            if app.connections == 0 and not len(app.subscriptions):
                del self._apps[conn.app_id]
        # Handlers answering this connection: nobody will read their answers.
        for call in list(conn.handler_calls):
            self._stop_handler(call)
        # Requests this connection was answering: the requesters hear at once (§6.2).
        for key in list(conn.serving):
            fwd = self._forwarded.get(key)
            if fwd is not None:
                self._finish_forwarded(
                    key, error_response(fwd.request, ErrorCode.RESPONDER_LOST, "the responder disconnected before answering")
                )
        # Requests this connection was waiting on: drop them, discard late answers.
        for key in list(conn.awaiting):
            fwd = self._forwarded.pop(key, None)
            if fwd is not None:
                fwd.responder.serving.discard(key)
                self._forward_deadlines.discard(key)
        conn.awaiting.clear()
        self._maybe_drained()
        if not self._connections and self._all_closed_waiter is not None and not self._all_closed_waiter.done():
            self._all_closed_waiter.set_result(None)
        log.debug("connection %s closed", conn.connection_id or conn.peer)

    def _maybe_drained(self) -> None:
        w = self._drained_waiter
        if w is not None and not w.done() and not self._handler_calls and not self._forwarded:
            w.set_result(None)

    # -- dispatch ------------------------------------------------------------

    def dispatch(self, conn: ServerConnection, msg: Message, body: bytes) -> None:
        """Route one message from ``conn``, open and past the protocol's
        own checks (its app_id, pings, a second connect: ServerProtocol)."""
        mtype = msg.message_type
        if mtype is MessageType.REQUEST or mtype is MessageType.NOTIFICATION:
            if msg.channel_id == SYSTEM_CHANNEL:
                self._system(conn, msg, body)
            else:
                self._route(conn, msg, body)
        elif mtype is MessageType.RESPONSE:
            self._response(conn, msg, body)
        elif mtype is MessageType.PUBLISH:
            self._publish(conn, msg, body)
        elif mtype is MessageType.SUBSCRIBE or mtype is MessageType.UNSUBSCRIBE:
            self._subscription(conn, msg)

    def _reply_error(self, conn: ServerConnection, msg: Message, code: ErrorCode, text: str) -> None:
        self.stats.count_error(code)
        if msg.message_type is not MessageType.NOTIFICATION:
            conn.send(error_response(msg, code, text))
        else:
            log.info("notification %s on %r from %s dropped: %s: %s", msg.message_id, msg.channel_id, conn.connection_id, code, text)

    # -- handshake (§3) ----------------------------------------------------

    def connect_requested(self, conn: ServerConnection, request: ConnectRequested) -> None:
        """The handshake's decision (§3): a connection id unique on this server."""
        base = request.connection_id or "conn"
        connection_id = base if base != "conn" else f"conn-{next(self._ids)}"
        while connection_id in self._by_id:
            connection_id = f"{base}-{next(self._ids)}"
        conn.accept(connection_id)
        self._by_id[connection_id] = conn
        self._apps.setdefault(request.app_id, _App()).connections += 1
        log.debug("connection %s from %s: app=%s protocol=%s", connection_id, conn.peer, request.app_id, 1 if request.legacy else 2)

    # -- system channel (§8, §9) -------------------------------------------

    def _system(self, conn: ServerConnection, msg: Message, body: bytes) -> None:
        payload = msg.payload
        action = payload.get("action") if isinstance(payload, dict) else None
        if action not in SERVER_SYSTEM_ACTIONS:
            self._route_system(conn, msg, body, action)
            return
        app = self._apps[conn.app_id]
        if action == "stats":
            result: Any = self.stats.snapshot()
        elif action == "channels":
            result = {"channels": app.subscriptions.counts()}
        elif action == "services":
            # Responder counts, with 0 marking an in-process handler, which
            # takes precedence in routing (§6.1) and so wins here too.
            services = app.responders.counts()
            services.update({ch: 0 for ch in self.handlers.channels(conn.app_id)})
            result = {"services": services}
        else:  # ping and connect: answered by the connection's protocol
            return
        if msg.message_type is MessageType.REQUEST:
            conn.send(response_to(msg, result))

    def _route_system(self, conn: ServerConnection, msg: Message, body: bytes, action: Any) -> None:
        """An action the server does not answer goes to whoever serves exactly
        ``system`` in the app (§8), as the legacy server shared the channel;
        pattern registrations (``>``) never receive it."""
        if msg.message_type is MessageType.REQUEST:
            self.stats.requests += 1
        else:
            self.stats.notifications += 1
        if self._closing:
            self._reply_error(conn, msg, ErrorCode.SHUTTING_DOWN, "the server is shutting down")
            return
        handler = self.handlers.get(SYSTEM_CHANNEL, conn.app_id) or self.handlers.get(SYSTEM_CHANNEL)
        if handler is not None:
            self._run_handler(conn, msg, handler)
            return
        responder = self._apps[conn.app_id].responders.pick_exact(SYSTEM_CHANNEL, _load)
        if responder is None:
            own = ", ".join(sorted(SERVER_SYSTEM_ACTIONS - {"connect"}))
            text = f"system action {action!r} is not one of the server's ({own}) and nobody serves 'system' in app {conn.app_id!r}"
            self._reply_error(conn, msg, ErrorCode.NO_RESPONDERS, text)
            return
        self._forward(conn, msg, body, responder)

    # -- pub/sub (§5) --------------------------------------------------------

    def _subscription(self, conn: ServerConnection, msg: Message) -> None:
        channel = msg.channel_id
        subscribe = msg.message_type is MessageType.SUBSCRIBE
        serve = isinstance(msg.payload, dict) and msg.payload.get("serve") is True
        try:
            validate_pattern(channel)
        except ValueError as exc:
            self._reply_error(conn, msg, ErrorCode.BAD_MESSAGE, str(exc))
            return
        app = self._apps[conn.app_id]
        if serve:
            if not is_servable(channel):
                self._reply_error(conn, msg, ErrorCode.FORBIDDEN, f"channel {channel!r} is reserved for the server")
                return
            if subscribe:
                if app.responders.add(channel, conn):
                    conn.responder_for.add(channel)
                    self._announce_service(conn, "added", channel)
                status = "serving"
            else:
                if app.responders.remove(channel, conn):
                    conn.responder_for.discard(channel)
                    self._announce_service(conn, "removed", channel)
                status = "unserved"
        elif subscribe:
            app.subscriptions.add(channel, conn)
            conn.subscriptions.add(channel)
            status = "subscribed"
        else:
            app.subscriptions.remove(channel, conn)
            conn.subscriptions.discard(channel)
            status = "unsubscribed"
        if not conn.legacy:
            conn.send(response_to(msg, {"status": status}))

    def _publish(self, conn: ServerConnection, msg: Message, body: bytes) -> None:
        problem = _target_problem(msg.channel_id)
        if problem is not None:
            self._reply_error(conn, msg, *problem)
            return
        self.stats.publishes += 1
        delivered = self._fan_out(self._apps[conn.app_id], msg, body)
        if msg.ack:
            conn.send(response_to(msg, {"status": "published", "delivered": delivered}))

    def _fan_out(self, app: _App, msg: Message, body: bytes | None) -> int:
        """Send the same bytes to every matching connection, once each (§5.3)."""
        targets = app.subscriptions.match(msg.channel_id)
        if not targets:
            return 0
        frame: bytes | None = None
        legacy_frame: bytes | None = None
        delivered = 0
        for target in targets:
            if target.legacy:
                if legacy_frame is None:
                    legacy_frame = encode_frame(encode_message(msg, legacy=True))
                ok = target.send_frame(legacy_frame)
            else:
                if frame is None:
                    frame = encode_frame(encode_message(msg) if body is None else body)
                ok = target.send_frame(frame)
            delivered += ok
        self.stats.deliveries += delivered
        return delivered

    def _announce_service(self, conn: ServerConnection, event: str, channel: str) -> None:
        app = self._apps.get(conn.app_id)
        if app is None:
            return
        note = Message.build(
            MessageType.PUBLISH,
            conn.app_id,
            SERVICES_CHANNEL,
            {"event": event, "channel": channel, "connection_id": conn.connection_id, "responders": app.responders.count(channel)},
        )
        self._fan_out(app, note, None)

    # -- requests (§6, §7) -------------------------------------------------

    def _route(self, conn: ServerConnection, msg: Message, body: bytes) -> None:
        is_request = msg.message_type is MessageType.REQUEST
        if is_request:
            self.stats.requests += 1
        else:
            self.stats.notifications += 1
        channel = msg.channel_id
        problem = _target_problem(channel)
        if problem is not None:
            self._reply_error(conn, msg, *problem)
            return
        if self._closing:
            self._reply_error(conn, msg, ErrorCode.SHUTTING_DOWN, "the server is shutting down")
            return
        handler = self.handlers.find(conn.app_id, channel)
        if handler is not None:
            self._run_handler(conn, msg, handler)
            return
        responder = self._apps[conn.app_id].responders.pick(channel, _load)
        if responder is None:
            self._reply_error(conn, msg, ErrorCode.NO_RESPONDERS, f"no handler or responder for {channel!r}")
            return
        self._forward(conn, msg, body, responder)

    def _run_handler(self, conn: ServerConnection, msg: Message, handler: Handler) -> None:
        conn.request_started()
        call = _HandlerCall(conn, msg)
        self._handler_calls.add(call)
        conn.handler_calls.add(call)
        if msg.timeout_ms is not None:
            # Nearly every v2 request carries a deadline: they share one timer.
            self._handler_deadlines.add(call, self.loop.time() + msg.timeout_ms / 1000.0)
        # Bookkeeping first: on Python 3.12+ the task starts at once and may
        # finish before create returns.
        call.task = _start_task(self.loop, self._call_handler(call, handler))
        conn.expect_answers()

    async def _call_handler(self, call: _HandlerCall, handler: Handler) -> None:
        call.started = True
        msg = call.request
        try:
            if handler.is_async:
                result = await handler.fn(msg)
            else:
                result = await self.loop.run_in_executor(self._executor, handler.fn, msg)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes an error response (§6.3)
            call.answer(self._handler_failure(msg, exc))
            return
        else:
            if msg.message_type is not MessageType.REQUEST:
                return
            try:
                call.respond(result)
            except Exception as exc:  # the result cannot be encoded (NaN, an object...)
                call.answer(self._handler_failure(msg, exc, prefix=UNSENDABLE_RESULT))
        finally:
            # In the task itself rather than a done callback: one loop
            # iteration and one callback less per request.
            self._handler_finished(call)

    def _handler_expired(self, call: _HandlerCall) -> None:
        """The request's deadline passed (§6.5): answer ``timeout`` now, cancel
        an async handler; a sync one finishes in its thread, its result dropped."""
        self.stats.count_error(ErrorCode.TIMEOUT)
        call.answer(error_response(call.request, ErrorCode.TIMEOUT, f"the handler did not finish within {call.request.timeout_ms:g} ms"))
        self._stop_handler(call)

    def _stop_handler(self, call: _HandlerCall) -> None:
        """Cancel a handler whose answer is settled or unwanted. A running
        one still counts (in-flight limit, shutdown grace) until its
        ``finally`` has run; one cancelled before its first step never runs
        it, so its books close here."""
        if call.task is not None:
            call.task.cancel()
        if not call.started:
            self._handler_finished(call)

    def _handler_finished(self, call: _HandlerCall) -> None:
        if call.finished:
            return
        call.finished = True
        self._handler_calls.discard(call)
        self._handler_deadlines.discard(call)
        call.conn.handler_calls.discard(call)
        call.conn.request_finished()
        self._maybe_drained()

    def _handler_failure(self, msg: Message, exc: BaseException, prefix: str = "") -> Message:
        reply = failure_reply(msg, exc, include_stack=self.config.expose_stacks, prefix=prefix)
        info = reply.error
        assert info is not None
        self.stats.count_error(info.code)
        if info.code == ErrorCode.HANDLER_ERROR:
            log.info("handler for %r raised %s: %s", msg.channel_id, info.remote_type, info.message)
        return reply

    def _forward(self, conn: ServerConnection, msg: Message, body: bytes, responder: ServerConnection) -> None:
        """Send a request or notification on to ``responder`` (§7.3).

        Between two version-2 peers, and when no request forwarded to that
        responder already uses its message_id, the requester's own frame goes
        out unchanged: nothing in it needs changing (same app, ``timeout_ms``
        is the remaining time and the forward is immediate, headers are
        relayed as they are). Otherwise it is a new frame under a server id.
        """
        is_request = msg.message_type is MessageType.REQUEST
        sid = msg.message_id
        key = (responder, sid)
        verbatim = not conn.legacy and not responder.legacy and (not is_request or key not in self._forwarded)
        if verbatim:
            sent = responder.send_frame(encode_frame(body))
        else:
            sid = f"s{next(self._ids)}"
            while (responder, sid) in self._forwarded:  # a requester's own id may look like ours
                sid = f"s{next(self._ids)}"
            key = (responder, sid)
            sent = responder.send(
                Message.build(
                    msg.message_type,
                    msg.app_id,
                    msg.channel_id,
                    msg.payload,
                    message_id=sid,
                    headers=msg.headers,
                    timeout_ms=msg.timeout_ms,
                )
            )
        if not sent:
            self._reply_error(conn, msg, ErrorCode.RESPONDER_LOST, "the responder disconnected")
            return
        if not is_request:
            return
        self._forwarded[key] = _Forwarded(msg, conn, responder, verbatim)
        if msg.timeout_ms is not None:
            self._forward_deadlines.add(key, self.loop.time() + msg.timeout_ms / 1000.0)
        responder.serving.add(key)
        conn.awaiting.add(key)
        conn.request_started()

    def _response(self, conn: ServerConnection, msg: Message, body: bytes) -> None:
        sid = msg.reply_to
        fwd = self._forwarded.get((conn, sid)) if sid is not None else None
        if fwd is None or sid is None:
            # An answer that came too late, or a reply_to naming a request
            # this connection was never sent: nothing waits for it.
            return
        if fwd.responder is not conn:  # pragma: no cover - the key names the responder
            log.warning("connection %s answered a request forwarded to %s; ignored", conn.connection_id, fwd.responder.connection_id)
            return
        if msg.error is not None:
            self.stats.count_error(msg.error.code)
        # A verbatim forward's answer already says reply_to = the requester's
        # id, and the requester speaks version 2: its bytes go on unchanged.
        self._finish_forwarded((conn, sid), msg, body if fwd.verbatim else None)

    def _forward_expired(self, key: _Key) -> None:
        fwd = self._forwarded.get(key)
        if fwd is None:
            return
        self.stats.count_error(ErrorCode.TIMEOUT)
        self._finish_forwarded(
            key, error_response(fwd.request, ErrorCode.TIMEOUT, f"no answer from the responder within {fwd.request.timeout_ms:g} ms")
        )

    def _finish_forwarded(self, key: _Key, reply: Message, body: bytes | None = None) -> None:
        """Answer a forwarded request, once. ``body``: the responder's frame,
        relayed as is; else ``reply`` is encoded for the requester."""
        fwd = self._forwarded.pop(key, None)
        if fwd is None:
            return
        self._forward_deadlines.discard(key)
        fwd.responder.serving.discard(key)
        fwd.requester.awaiting.discard(key)
        fwd.requester.request_finished()
        if body is not None:
            fwd.requester.send_frame(encode_frame(body))
        else:
            if reply.reply_to != fwd.request.message_id:
                reply = reply.model_copy(update={"reply_to": fwd.request.message_id})
            try:
                fwd.requester.send(reply)
            except IPCError as exc:  # the responder's answer cannot be re-encoded
                fwd.requester.send(error_response(fwd.request, ErrorCode.HANDLER_ERROR, f"the responder's answer cannot be relayed: {exc}"))
        self._maybe_drained()

    # -- periodic sweep: heartbeats (§9) ------------------------------------

    async def _sweep(self) -> None:
        interval = self.config.heartbeat_interval_s
        period = min(_SWEEP_INTERVAL_S, interval / 4) if interval else _SWEEP_INTERVAL_S
        while True:
            await asyncio.sleep(period)
            try:
                self._sweep_once(self.loop.time())
            except Exception:  # pragma: no cover - the sweep must never die
                log.exception("sweep failed")

    def _sweep_once(self, now: float) -> None:
        for conn in list(self._connections):
            conn.tick(now)



@functools.lru_cache(maxsize=4096)
def _target_problem(channel: str) -> tuple[ErrorCode, str] | None:
    """Why ``channel`` cannot be published or requested on (§4.3, §4.4), or None.
    Cached: the same few channels carry nearly all the traffic."""
    try:
        validate_channel(channel)
    except ValueError as exc:
        return ErrorCode.BAD_MESSAGE, str(exc)
    if is_reserved(channel):
        return ErrorCode.FORBIDDEN, f"channel {channel!r} is reserved for the server"
    return None


# asyncio may run a timer up to one tick of its clock early.
_CLOCK_RESOLUTION_S = time.get_clock_info("monotonic").resolution


def _start_task(loop: asyncio.AbstractEventLoop, coro: Any) -> asyncio.Task[None]:
    """A task for ``coro``; on Python 3.12+ its first step runs now (an
    ``async`` handler that never waits then costs no loop iteration)."""
    if _EAGER_TASKS:
        return asyncio.Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg]
    return loop.create_task(coro)


_EAGER_TASKS = sys.version_info >= (3, 12)


def _load(conn: ServerConnection) -> int:
    return len(conn.serving)


async def run(config: ServerConfig, *, ready: Callable[[IPCServer], None] | None = None) -> None:
    """Run a server until SIGINT/SIGTERM, then shut down gracefully."""
    import signal

    server = IPCServer(config=config)
    await server.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, lambda: loop.create_task(server.close()))
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-Unix
            pass
    if ready is not None:
        ready(server)
    await server.serve_forever()


