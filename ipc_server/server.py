"""The asyncio server's facade: the public ``IPCServer`` (handlers, start,
close), and the dispatch of each message to the concern that handles it
(docs/protocol.md §3-§13).

Each concern has its module: ``connection`` (the socket pump over the
protocol core), ``admission`` (limits, the handshake's decisions, apps),
``handlers`` (in-process handler calls), ``forwarding`` (requests relayed to
responder clients), ``pubsub`` (subscriptions and fan-out), ``shutdown``,
``auth`` (users: credentials, permissions; docs/security.md §3), ``reloads`` (what SIGHUP reloads),
``system_actions`` (the ``system`` actions the server answers, §8);
routing state lives in the pure tables of ``router`` and ``topics``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from ipc_protocol import SERVER_SYSTEM_ACTIONS, SYSTEM_CHANNEL, ErrorCode, Message, clipped, is_servable, validate_pattern
from ipc_protocol.contracts import bind
from ipc_protocol.idempotency import IDEMPOTENCY_HEADER
from ipc_protocol.server_protocol import ConnectRequested
from ipc_protocol.envelope import REQUEST as _REQUEST, NOTIFICATION as _NOTIFICATION, RESPONSE as _RESPONSE, PUBLISH as _PUBLISH, SUBSCRIBE as _SUBSCRIBE, UNSUBSCRIBE as _UNSUBSCRIBE

from .admission import Admission, responder_load
from .cluster import join
from .auth import Auth
from .config import ServerConfig, load_config
from .connection import ServerConnection, SharedReads
from .forwarding import Forwarding
from .goaway import SHUTTING_DOWN
from .grace import Grace
from .handlers import HandlerCalls
from .heartbeat_sweep import sweep_heartbeats
from .lame_duck import lame_duck
from .listener import listen
from .logs import peer_text
from .idempotency import Idempotency
from .pubsub import PubSub
from .recheck import UsersReload
from .reloads import reload_tls, reload_users
from .router import HandlerRegistry, target_problem
from .shutdown import Shutdown
from .streams import Streams
from .metrics import Metrics
from .stats import ServerStats
from .system_actions import answer_own_action
from .tls import TLSPort, connection_factory
from .users import Users, read_auth_files

__all__ = ["IPCServer"]

log = logging.getLogger("ipc_server")

F = TypeVar("F", bound=Callable[..., Any])


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
        port: TCP port; 0 picks a free one, the same on every address of ``host`` (read it back from ``server.port``).
        config: a full :class:`ServerConfig`; keyword ``overrides`` replace its fields.
        users: the ``users_file``'s users, already read (``python -m ipc_server``
            reads each file once: a pipe is empty the second time).
    """

    def __init__(self, host: str | None = None, port: int | None = None, *, config: ServerConfig | None = None, users: Users | None = None, **overrides: Any) -> None:
        config = config or load_config(env={})
        if host is not None:
            overrides["host"] = host
        if port is not None:
            overrides["port"] = port
        config = config.replace(**overrides) if overrides else config
        config, users = read_auth_files(config, users)  # the secret never shows in ps (docs/security.md §3)
        self.config = config
        self.stats = ServerStats()
        self.handlers = HandlerRegistry()
        self.reads = SharedReads()  # what the connections share about reading
        ids = itertools.count(1)  # one counter for every id the server makes up
        self._shutdown = Shutdown()
        self._admission = Admission(self.config, self.stats, ids, self._shutdown)
        self.refusal_lines = self._admission.lines  # refused sockets' lines, limited per host (host_lines)
        self._calls = HandlerCalls(
            self.stats, self._shutdown, include_stack=self.config.expose_stacks, default_timeout_s=self.config.default_request_timeout_s
        )
        self._forwarding = Forwarding(self.stats, self._shutdown, ids, self.config)
        self._grace = Grace(self.config, self.stats, handlers=self.handlers, apps=self._admission.apps, calls=self._calls, forwarding=self._forwarding)  # §13.2
        self._streams = Streams(self.stats, self._forwarding, self._calls, self._grace, default_idle_s=self.config.default_request_timeout_s)  # §15
        self._pubsub = PubSub(self._admission.apps, self.stats, self.config, self.handlers)
        # A node of a cluster joined through NATS (docs/cluster.md), or None.
        self._cluster = join(config, self.stats, self.handlers, self._admission.apps, self._calls, self._forwarding, self._pubsub, self._shutdown)
        # With a users file: who each connection is and what it may do.
        self._auth: Auth | None = None
        if users is not None:
            self._auth = Auth(users, self.stats, self._admission.connect_requested)
        self._idempotency = Idempotency(self.config, self.stats, self._auth)  # requests with a key run once (§6.6)
        # GET /metrics and /healthz with metrics_port (docs/operations.md).
        self.metrics = None if config.metrics_port is None else Metrics(config, self.stats, self._admission.connections, self._held, lambda: self._shutdown.closing or self._shutdown.leaving)  # 503 from the lame duck on
        self._listener: asyncio.base_events.Server | None = None
        self._tls: TLSPort | None = None  # from start(), when tls_cert is set
        self._sweeper: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.port: int = self.config.port
        self.host: str = self.config.host

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the server runs on (set by :meth:`start`)."""
        return self._loop  # type: ignore[return-value]

    @loop.setter
    def loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = self._calls.loop = self._forwarding.loop = self._idempotency.loop = self._grace.loop = loop

    # -- public API --------------------------------------------------------

    def handler(self, channel: str, *, app_id: str | None = None) -> Callable[[F], F]:
        """Decorator: answer requests on ``channel`` (or a pattern) in this process.

        The function gets the request :class:`Message` (or, annotated, its validated
        payload: docs/typed-contracts.md) and returns the response payload. ``async
        def`` handlers run on the loop, plain functions in a worker thread (a slow
        one blocks no one). Raising answers ``handler_error`` with its type and text.
        """

        def register(fn: F) -> F:
            self.add_handler(channel, fn, app_id=app_id)
            return fn

        return register

    def add_handler(self, channel: str, fn: Callable[..., Any], *, app_id: str | None = None) -> None:
        validate_pattern(channel)
        if not is_servable(channel):
            raise ValueError(f"channel {channel!r} is reserved for the server")
        handler = self.handlers.add(channel, bind(fn), app_id)  # annotated: validated (docs/typed-contracts.md)
        self._pubsub.announce_handler(app_id, "added", channel, handler.fn)  # §7.5, to the apps connected
        self._grace.registered(app_id)  # held requests it serves go to it (§13.2)

    def remove_handler(self, channel: str, *, app_id: str | None = None) -> bool:
        if removed := self.handlers.remove(channel, app_id):
            self._pubsub.announce_handler(app_id, "removed", channel, None)
        return removed

    async def start(self) -> None:
        """Bind and start accepting; returns once listening."""
        if self._listener is not None:
            return
        self.loop = asyncio.get_running_loop()
        self._tls = TLSPort.of(self.config)
        factory = connection_factory(self.config, lambda accepted_at: ServerConnection(self, accepted_at), self._admission, self._tls)
        # Port 0: one free port for every address of the host; reuse_port: --workers' servers share one (docs/cluster.md §7).
        self._listener = await listen(self.loop, factory, self.config.host, self.config.port, reuse_port=self.config.reuse_port)
        sockname = self._listener.sockets[0].getsockname()
        self.host, self.port = sockname[0], sockname[1]
        self._sweeper = self.loop.create_task(sweep_heartbeats(self.loop, lambda: self._admission.connections, self.config.heartbeat_interval_s))  # §9
        if self._cluster is not None:  # joins through NATS, or serves degraded until it can (docs/cluster.md §5)
            await self._cluster.start(self.metrics)
        log.info("listening on %s", peer_text((self.host, self.port)))
        if self.metrics is not None:
            try:
                await self.metrics.start(self.loop)  # an OSError here: the caller's to report, as the listener's
            except BaseException:  # its port taken, say: nothing of this server stays open or running
                await self.close(0)
                raise

    async def serve_forever(self) -> None:
        """Run until :meth:`close` is called (by a signal handler, say)."""
        await self.start()
        await self._shutdown.closed.wait()

    async def close(self, grace_s: float | None = None) -> None:
        """Graceful shutdown (§13): stop accepting, let in-flight requests
        finish within the grace period, answer the rest ``shutting_down``, close."""
        shutdown = self._shutdown
        if shutdown.closing:
            await shutdown.closed.wait()
            return
        shutdown.closing = True
        self._grace.shut_down(SHUTTING_DOWN)
        if self._listener is None:  # never started
            shutdown.closed.set()
            return
        self._listener.close()
        if self._cluster is not None:  # no more requests from other nodes
            await self._cluster.leave()
        grace = self.config.shutdown_grace_s if grace_s is None else grace_s
        await shutdown.drain(self.loop, grace, lambda: bool(self._calls.calls or self._forwarding.table or (self._cluster is not None and self._cluster.held)))
        self._calls.shut_down()
        self._forwarding.shut_down()
        if self._cluster is not None:  # what waits on other nodes: shutting_down; the NATS link drained
            await self._cluster.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.wait([self._sweeper])  # ended when close() returns (wait: its CancelledError stays in it)
        await shutdown.close_connections(self.loop, self._admission.connections)
        await self._listener.wait_closed()
        self._calls.threads.stop()  # never waits for a handler still running (docs/protocol.md §13)
        if self._auth is not None:
            self._auth.close()
        self.refusal_lines.flush()  # what refused sockets' lines left unsaid
        if self.metrics is not None:  # /healthz said 503 until now
            await self.metrics.close()
        shutdown.closed.set()
        log.info("closed")

    async def lame_duck(self, duration_s: float | None = None) -> None:
        """Leave gently (§13.1, SIGTERM): stop accepting, tell every client to move to
        another server, give them ``lame_duck_duration_s`` (or until all have gone), then :meth:`close`."""
        try:  # whatever the lame duck raises, the server still closes: never half-shut and hung
            if not self._shutdown.leaving and not self._shutdown.closing and self._listener is not None:
                await lame_duck(self._listener, self._admission.connections, self._shutdown, self.loop, self.config.lame_duck_duration_s if duration_s is None else duration_s)
        finally:
            await self.close()

    async def __aenter__(self) -> IPCServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def cluster(self) -> Any:  # this node's side of a cluster (cluster.node.Cluster, docs/cluster.md), or None
        return self._cluster

    @property
    def connections(self) -> frozenset[ServerConnection]:
        return frozenset(self._admission.connections)

    def reload_users(self) -> UsersReload:
        """What SIGHUP does: ``reloads.reload_users`` (docs/security.md §3.4).
        Raises at the call for a bad file and applies the users at once, as in
        2.0.0; the counts it returns are final once awaited (slices re-check)."""
        return reload_users(self.config.users_file, self._auth, self._pubsub.withdraw, mutual_tls=self.config.tls_ca is not None, loop=self._loop)

    def reload_tls(self) -> None:
        """What SIGHUP does too: ``reloads.reload_tls`` (docs/security.md §2.4)."""
        reload_tls(self.config.tls_cert, self._tls)

    def __repr__(self) -> str:
        return (
            f"<IPCServer {self.host}:{self.port} connections={len(self._admission.connections)}"
            f" forwarded={len(self._forwarding)} handlers_running={len(self._calls)}"
            f"{' closing' if self._shutdown.closing else ''}>"
        )

    # -- ConnectionOwner: called by the connections --------------------------

    def admit(self, conn: ServerConnection) -> bool:
        return self._admission.admit(conn)

    def handshake_ended(self, conn: ServerConnection) -> None:
        self._admission.release(conn)

    def connect_requested(self, conn: ServerConnection, request: ConnectRequested) -> None:
        self._grace.client_came()  # the first opens the start's window: not the listen, clients come later (§13.2)
        if self._auth is None:
            self._admission.connect_requested(conn, request)
        else:
            self._auth.connect(conn, request)  # accepted through admission once the credentials check out

    def connection_closed(self, conn: ServerConnection) -> None:
        conn.inflight.closed()  # what it held is answered to nobody
        if self._auth is not None:
            self._auth.closed(conn)
        if not self._admission.remove(conn, self._unserved):
            return
        self._calls.connection_closed(conn)  # nobody will read their answers
        self._forwarding.connection_closed(conn)
        self._idempotency.connection_closed(conn)
        if self._cluster is not None:
            self._cluster.connection_closed(conn)
        self._grace.connection_closed(conn)
        if self._shutdown.draining:
            self._shutdown.check_drained()
        self._shutdown.connection_gone(len(self._admission.connections))
        log.debug("connection %s closed", clipped(conn.connection_id) or peer_text(conn.peer))

    def half_closed(self, conn: ServerConnection) -> None:  # half_close.py: gone as a subscriber and a responder
        self._pubsub.withdraw_all(conn)
        self._forwarding.responder_gone(conn)

    def _held(self) -> dict[str, int]:
        return {"forwarded": len(self._forwarding), "handler": len(self._calls)}

    def _unserved(self, conn: ServerConnection, pattern: str) -> None:
        self._pubsub.announce_service(conn, "removed", pattern)

    def dispatch(self, conn: ServerConnection, msg: Message, body: bytes) -> None:
        """Route one message from ``conn``, open and past the protocol's
        own checks (its app_id, pings, a second connect: ServerProtocol)."""
        auth = self._auth
        if auth is not None and not auth.permits(conn, msg):
            return  # answered forbidden (docs/protocol.md §3)
        mtype = msg.message_type
        if mtype is _REQUEST or mtype is _NOTIFICATION:
            if msg.channel_id == SYSTEM_CHANNEL:
                self._system(conn, msg, body)
            else:
                self._route(conn, msg, body)
        elif mtype is _RESPONSE:
            self._forwarding.response(conn, msg, body)
        elif mtype is _PUBLISH:
            self._pubsub.publish(conn, msg, body)
        elif mtype is _SUBSCRIBE or mtype is _UNSUBSCRIBE:
            self._pubsub.subscription(conn, msg)
            self._grace.registered(conn.app_id)  # a responder may have come for a held request (§13.2)
        elif self._cluster is None or not self._cluster.cancelled(conn, msg):  # stream_item, stream_end, credit, cancel (§15)
            self._streams.frame(conn, msg, body)

    # -- requests (§6, §7) -------------------------------------------------

    def _route(self, conn: ServerConnection, msg: Message, body: bytes) -> None:
        """An in-process handler first, else a responder, else ``no_responders`` (§6.1)."""
        if msg.message_type is _REQUEST:
            self.stats.requests += 1
        else:
            self.stats.notifications += 1
        channel = msg.channel_id
        problem = target_problem(channel)
        if problem is not None:
            conn.refuse(msg, *problem)
            return
        if self._shutdown.closing:
            conn.refuse(msg, ErrorCode.SHUTTING_DOWN, SHUTTING_DOWN)
            return
        if (headers := msg.headers) is not None and IDEMPOTENCY_HEADER in headers and (keyed := self._idempotency.admit(conn, msg)) is not conn:
            if keyed is None:  # joined a run, answered from the window, or refused (§6.6)
                return
            conn = keyed  # the first of its key: run for every requester that sends it
        handler = self.handlers.find(conn.app_id, channel)
        if handler is not None:
            self._calls.run(conn, msg, handler)
            return
        responder = self._admission.apps[conn.app_id].responders.pick(channel, responder_load)
        if responder is None and self._cluster is not None:  # another node's, through NATS (docs/cluster.md §3)
            self._cluster.request(conn, msg, body)
            return
        if responder is None:
            self._grace.no_responders(conn, msg, body, f"no handler or responder for {channel!r}")  # at once, or within the grace (§13.2)
            return
        self._forwarding.forward(conn, msg, body, responder)

    # -- system channel (§8) -------------------------------------------------

    def _system(self, conn: ServerConnection, msg: Message, body: bytes) -> None:
        payload = msg.payload
        action = payload.get("action") if isinstance(payload, dict) else None
        if action not in SERVER_SYSTEM_ACTIONS:
            self._route_system(conn, msg, body, action)
            return
        answer_own_action(
            conn, msg, action, app=self._admission.apps[conn.app_id], stats=self.stats, auth=self._auth, handlers=self.handlers,
            schemas=self._pubsub.schemas, connections=self._admission.connections, now=self.loop.time(), cluster=self._cluster,
        )  # fmt: skip

    def _route_system(self, conn: ServerConnection, msg: Message, body: bytes, action: Any) -> None:
        """An action the server does not answer goes to whoever serves exactly
        ``system`` in the app (§8), as the legacy server shared the channel;
        pattern registrations (``>``) never receive it."""
        if msg.message_type is _REQUEST:
            self.stats.requests += 1
        else:
            self.stats.notifications += 1
        if self._shutdown.closing:
            conn.refuse(msg, ErrorCode.SHUTTING_DOWN, SHUTTING_DOWN)
            return
        if (headers := msg.headers) is not None and IDEMPOTENCY_HEADER in headers and (keyed := self._idempotency.admit(conn, msg)) is not conn:
            if keyed is None:  # §6.6, as in _route
                return
            conn = keyed
        handler = self.handlers.get(SYSTEM_CHANNEL, conn.app_id) or self.handlers.get(SYSTEM_CHANNEL)
        if handler is not None:
            self._calls.run(conn, msg, handler)
            return
        responder = self._admission.apps[conn.app_id].responders.pick_exact(SYSTEM_CHANNEL, responder_load)
        if responder is None and self._cluster is not None:  # another node's (docs/cluster.md §3)
            self._cluster.request(conn, msg, body)
            return
        if responder is None:
            own = ", ".join(sorted(SERVER_SYSTEM_ACTIONS - {"connect"}))
            text = f"system action {action!r} is not one of the server's ({own}) and nobody serves 'system' in app {conn.app_id!r}"
            self._grace.no_responders(conn, msg, body, text)
            return
        self._forwarding.forward(conn, msg, body, responder)
