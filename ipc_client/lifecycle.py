"""A client's connections, one after another (docs/resilience.md §1-§3):
connect(), one attempt (``_establish``: TCP, handshake, restore the
registrations), what arrives on it, its loss, and disconnect(). Retrying is
``reconnect.py``'s.

``generation`` ties an attempt to one connect() or reconnect loop: once
disconnect() (and maybe a new connect()) moved on, the attempt closes its
own socket and touches nothing of the client's.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from typing import Any

from ipc_protocol import (
    PROTOCOL_VERSION,
    SYSTEM_CHANNEL,
    ConnectionLost,
    Heartbeat,
    IPCError,
    Message,
    NotConnected,
    Unauthorized,
    error_from_wire,
)
from ipc_protocol import __version__ as _version
from ipc_protocol.client_protocol import ClientProtocol
from ipc_protocol.exceptions import revoked_for_good
from ipc_protocol.constants import DEFAULT_MAX_FRAME_SIZE
from ipc_protocol.restarts import lame_duck_deadline_ms
from ipc_protocol.cluster_info import ASKED_FEATURES
from ipc_protocol.envelope import RESPONSE as _RESPONSE, PUBLISH as _PUBLISH, REQUEST as _REQUEST, NOTIFICATION as _NOTIFICATION, STREAM_ITEM as _STREAM_ITEM, STREAM_END as _STREAM_END, CREDIT as _CREDIT, CANCEL as _CANCEL

from .address_race import address_race
from .admission import Admission
from .calls import Calls
from .connect_options import ConnectOptions
from .connection import ClientConnection
from .going_away import go_away, let_go, told_while_connecting
from .metrics import ClientMetrics
from .outbox import Outbox
from .producers import Producers
from .reconnect import Reconnector, connect_failure, why
from .state import ConnectionState, StateMachine
from .streams import Streams
from .subscriptions import Subscriptions
from .tls import closed_during_handshake, handshake_failure, refused

__all__ = ["Lifecycle", "ConnectOptions", "CLIENT_NAME"]

log = logging.getLogger("ipc_client")

CLIENT_NAME = f"ipc-bridge-python/{_version}"
_CLOSE_WAIT_S = 2.0  # disconnect()'s wait for the server to see the close, then the socket is aborted
_CONNECTED = ConnectionState.CONNECTED
_RECONNECTING = ConnectionState.RECONNECTING


class Lifecycle:
    """Owns the client's connection (``conn``) and moves the state machine.

    What the handshake agreed is kept here: ``legacy`` (a 1.1.x server),
    ``server_info``, ``connection_id`` and ``max_send``. What arrives goes
    to ``calls`` (answers) and ``subs`` (publishes, requests to serve);
    ``tasks()`` are the client's own tasks, cancelled by disconnect().
    ``streams`` and ``producers`` (set by the client) take the frames of
    docs/protocol.md §15."""

    streams: Streams
    producers: Producers

    def __init__(
        self,
        options: ConnectOptions,
        state: StateMachine,
        *,
        calls: Calls,
        subs: Subscriptions,
        outbox: Outbox,
        admission: Admission,
        metrics: ClientMetrics,
        emit: Callable[..., None],
        tasks: Callable[[], set[asyncio.Task[Any]]],
        connection_id: str,
    ) -> None:
        self.options = options
        self._sm = state
        self._calls, self._subs, self._outbox, self._admission, self._metrics = calls, subs, outbox, admission, metrics
        self._emit = emit
        self._tasks = tasks
        self.conn: ClientConnection | None = None
        self.legacy = False
        self.server_info: dict[str, Any] = {}
        self.connection_id = connection_id
        # Before a handshake, and for good with a version-1 server: ours, or the
        # protocol's default (§1.1); a version-2 server's advertised limit may lower it.
        self.max_send = DEFAULT_MAX_FRAME_SIZE if options.max_frame_size is None else options.max_frame_size
        self.reconnects = 0
        # What get_connection_health() reports, kept across connections as
        # Node keeps them: the last pong (a heartbeat's or a health() ping's,
        # loop time) and its round trip, and the last read of a closed connection.
        self.last_pong: float | None = None
        self.latency_s: float | None = None
        self.last_received: float | None = None
        self._generation = 0  # bumped by connect() and disconnect(): stale attempts know
        self._reconnector = Reconnector(
            options.backoff, options.max_retries, state=state, establish=self._establish, on_success=self._connected,
            give_up=outbox.give_up, emit=emit, peer=options.peer,
        )  # fmt: skip

    # -- connect / disconnect -------------------------------------------------

    async def connect(self) -> bool:
        sm = self._sm
        while sm.state is ConnectionState.DISCONNECTING:  # connect once the close is done, as Node does
            await sm.changed()
        if sm.state is _CONNECTED:
            return True
        if sm.state is not ConnectionState.DISCONNECTED:
            await sm.until_connected(None)
            return True
        self._outbox.load_persisted()  # may refuse a queue file another client owns: before any state change
        self._generation += 1
        generation = self._generation
        sm.set(ConnectionState.CONNECTING)
        self._emit("connecting")
        try:
            await self._establish(generation)
        except BaseException as exc:
            failure = connect_failure(exc, self.options.peer)
            # mypy keeps sm.state narrowed to DISCONNECTED (above) across set() and the await
            current = sm.state is ConnectionState.CONNECTING and self._generation == generation  # type: ignore[comparison-overlap]
            # Retried as a reconnection retries: every failure of the bridge or
            # the network but a refused token or certificate (as Node's waitOnFirstConnect).
            retryable = isinstance(exc, (OSError, IPCError, asyncio.TimeoutError)) and not isinstance(failure, Unauthorized) and not refused(failure)
            if current and self.options.wait_on_first_connect and retryable:
                return await self._reconnector.keep_connecting(generation, failure)
            if current:
                sm.set(ConnectionState.DISCONNECTED)
                self._outbox.give_up(NotConnected(f"cannot connect to {self.options.peer}: {why(exc)}"))
            if failure is exc:
                raise
            raise failure from exc
        self._connected(True, 1, 0.0)
        return True

    def _connected(self, first_connect: bool, attempts: int, elapsed: float) -> None:
        self._sm.set(_CONNECTED)
        if not first_connect:
            self.reconnects += 1
            self._emit("reconnected", {"attempts": attempts, "elapsed": elapsed})
        self._emit("connected", self.info())
        self._outbox.replay()

    async def disconnect(self) -> None:
        """Close the connection and stop reconnecting. A second call waits
        for the first; a cancelled one still leaves the client
        disconnected (the close's wait cut short), then raises."""
        sm = self._sm
        while sm.state is ConnectionState.DISCONNECTING:
            await sm.changed()
        if sm.state is ConnectionState.DISCONNECTED:
            if self.conn is not None:  # told goaway with reconnect off: what it carries ends now, not at its answers
                await let_go(self, self.conn)
            return
        was_connected = sm.state is _CONNECTED
        self._generation += 1  # any attempt still opening is now stale
        sm.set(ConnectionState.DISCONNECTING)
        self._reconnector.cancel()
        conn = self.conn
        if conn is not None:
            conn.close()
            try:
                async with asyncio.timeout(_CLOSE_WAIT_S):
                    await asyncio.shield(conn.closed)
            except TimeoutError:
                conn.abort()
            except asyncio.CancelledError:
                conn.abort()
                self._disconnected(conn, was_connected)
                raise
            else:
                if conn.error is None:  # closed cleanly: the transport wrote all it held first
                    self._outbox.settle(conn, closed_cleanly=True)
        self._disconnected(conn, was_connected)

    def _disconnected(self, conn: ClientConnection | None, was_connected: bool) -> None:
        """The end of disconnect(): nothing in it waits, so a cancel cannot cut it."""
        self._drop(conn, ConnectionLost("the client disconnected"))
        self._metrics.closed(time.monotonic(), will_reconnect=False)
        self._sm.set(ConnectionState.DISCONNECTED)
        self._outbox.give_up(NotConnected("disconnect() was called before the call could be sent"))
        for task in [*self._tasks(), *self._admission.clear()]:
            if not task.cancelling():  # one a cancel stopped already runs its cleanup to its end
                task.cancel()
        if was_connected:  # while reconnecting, "disconnected" was already emitted
            self._emit("disconnected", None)

    def info(self) -> dict[str, Any]:
        """The payload of the ``connected`` event and of ``get_connection_info()``."""
        opts = self.options
        return {
            "app_id": opts.app_id,
            "connection_id": self.connection_id,
            "host": opts.host,
            "port": opts.port,
            "state": self._sm.state.value,
            "connected": self._sm.state is _CONNECTED,
            "protocol": 1 if self.legacy else PROTOCOL_VERSION,
            "server": self.server_info.get("server"),
            "subscriptions": list(self._subs.handlers),
            "services": list(self._subs.services),
            "pending_requests": len(self._calls),
            "reconnects": self.reconnects,
            "heartbeat_latency_ms": None if self.latency_s is None else round(self.latency_s * 1000, 3),
        }

    async def ready(self, deadline: float | None) -> ClientConnection:
        """The connection once connected; NotConnected if it will not be, RequestTimeout past ``deadline``."""
        if self._sm.state is not _CONNECTED:
            await self._sm.until_connected(deadline)
        if self.conn is None:
            raise NotConnected("not connected")
        return self.conn

    # -- one attempt ----------------------------------------------------------

    async def _establish(self, generation: int) -> None:
        """One connection attempt: TCP, handshake, then restore registrations (§3).

        ``generation`` ties it to one connect()/reconnect; once disconnect()
        has moved on, the attempt closes its own socket and never touches the
        client's current connection."""
        opts = self.options
        loop = asyncio.get_running_loop()
        deadline = loop.time() + opts.connect_timeout
        self._metrics.attempt()
        proto = ClientProtocol(
            opts.app_id, self.connection_id, client=CLIENT_NAME, token=opts.token, user=opts.user, max_frame_size=opts.max_frame_size,
            heartbeat_interval_s=opts.heartbeat_interval, heartbeat_timeout_s=opts.heartbeat_timeout, features=ASKED_FEATURES,
        )  # fmt: skip
        # Over TLS every attempt, a reconnection's too, makes a full TLS handshake.
        tls: dict[str, Any] = {} if opts.tls is None else {"ssl": opts.tls.context, "server_hostname": opts.tls.server_hostname, "ssl_handshake_timeout": opts.connect_timeout}
        race = address_race(loop, opts.host)
        try:
            async with asyncio.timeout(opts.connect_timeout):  # not wait_for: on 3.11 it may swallow a cancel that comes with the socket
                _, conn = await loop.create_connection(
                    lambda: ClientConnection(proto, self._on_message, self._on_lost, self._on_pong), opts.host, opts.port, **tls, **race
                )
        except (ssl.SSLError, ConnectionResetError, ConnectionAbortedError) as exc:
            if not tls:
                raise
            raise handshake_failure(exc, opts.peer) from exc
        except TimeoutError as exc:  # asyncio.timeout's own has no text
            raise TimeoutError(f"timed out after {opts.connect_timeout:g} s ({'TCP connect and TLS handshake' if tls else 'TCP connect'})") from exc
        if generation != self._generation:
            conn.abort()
            raise NotConnected("disconnect() was called while connecting")
        self.conn = conn
        try:
            try:
                connected = await conn.handshake(deadline - loop.time(), opts.peer)
            except ConnectionLost as lost:  # TLS may explain it: a refused certificate, a TLS port
                raise closed_during_handshake(conn.error, lost, opts.peer, bool(tls))
            self.legacy = self._calls.legacy = connected.legacy
            self.server_info = connected.server_info
            self.connection_id = connected.connection_id
            self.max_send = connected.max_frame_size
            conn.start_heartbeat(self._on_heartbeat_dead)
            await self._subs.restore(conn, deadline)
            if generation != self._generation:
                raise NotConnected("disconnect() was called while connecting")
            if self.conn is not conn or not conn.is_open:  # lost while its last answers were read: _on_lost saw no connection to reconnect
                raise ConnectionLost(f"connection to {opts.peer} lost while connecting" + (f": {conn.error}" if conn.error else ""))
            if conn.going_away:  # the notice came while connecting: never connected on it (going_away.py)
                raise told_while_connecting(opts.peer)
            self._metrics.opened(time.monotonic())
        except BaseException as exc:
            (conn.close if conn.going_away else conn.abort)()  # the attempt closes its own socket; told goaway, without a reset
            if self.conn is conn:
                self._drop(conn, ConnectionLost("the client disconnected"))
            if isinstance(conn.error, Unauthorized) and isinstance(exc, IPCError) and exc is not conn.error:
                raise conn.error from exc  # revoked while restoring: as a refused connect is (revoked_for_good)
            raise

    def _on_heartbeat_dead(self, hb: Heartbeat) -> None:
        silent = asyncio.get_running_loop().time() - hb.last_received  # the real silence, a stall excused or not
        log.warning("no frame from %s for %.1f s: connection declared dead", self.options.peer, silent)
        self._emit("heartbeat_timeout", {"silent": silent})

    def _on_pong(self, conn: ClientConnection, latency_s: float | None) -> None:
        if conn is self.conn:
            self.pong(latency_s)

    def pong(self, latency_s: float | None) -> None:
        """A pong arrived: the heartbeat's, or a health() ping's answer (as Node's)."""
        self.last_pong = asyncio.get_running_loop().time()
        self.latency_s = latency_s
        self._emit("heartbeat", {"latency": latency_s})

    # -- what arrives -----------------------------------------------------------

    def _on_message(self, conn: ClientConnection, msg: Message) -> None:
        mtype = msg.message_type
        if mtype is _RESPONSE:
            if not self._calls.settle(msg) and not self.streams.settle(msg) and msg.error is not None and not self._calls.expired(msg.reply_to):
                # An error that answers nothing we wait for (§6.4); it may withdraw a registration (§3).
                error = error_from_wire(msg.error.model_dump())
                if msg.reply_to is None and isinstance(error, Unauthorized):
                    self._revoked(conn, error)
                    return
                self._subs.withdrawn(error)
                self._emit("error", error)
        elif mtype is _PUBLISH:
            if msg.channel_id != SYSTEM_CHANNEL or not (self._lame_duck(msg) or go_away(self, conn, msg)):  # §13
                self._subs.deliver(msg)
        elif mtype is _NOTIFICATION and conn.legacy:
            self._subs.deliver(msg)  # a 1.1.x server's broadcast, to the subscribers (legacy_server.py)
        elif mtype is _REQUEST or mtype is _NOTIFICATION:
            # A system request reaches us only because we serve 'system' (§8):
            # the protocol answered the pings itself.
            self._subs.serve_request(conn, msg)
        elif mtype is _STREAM_ITEM or mtype is _STREAM_END:
            self.streams.on_frame(msg)  # §15.3
        elif mtype is _CREDIT or mtype is _CANCEL:
            self.producers.on_frame(conn, msg)  # §15.3, §15.4

    def _revoked(self, conn: ClientConnection, error: Unauthorized) -> None:
        """A reload revoked the connection's credentials (docs/security.md
        §3.4): the error is the connection's end, reported with its loss
        (``_on_lost``): final, but for a changed credential (one reconnect);
        the server closes it, and so does this side, at once."""
        if conn.error is None:
            conn.error = error
        conn.abort()

    def _lame_duck(self, msg: Message) -> bool:
        """The server is leaving (docs/protocol.md §13.1): say so; the
        connection carries on until the server closes it, then the client
        reconnects as after any loss (a load-balanced client moves at once)."""
        deadline_ms = lame_duck_deadline_ms(msg)
        if deadline_ms is None:
            return False
        log.info("%s is leaving (lame duck): it closes within %d ms", self.options.peer, deadline_ms)
        self._emit("lame_duck", {"deadline_ms": deadline_ms})
        return True

    # -- losing it ------------------------------------------------------------

    def _on_lost(self, conn: ClientConnection, exc: BaseException | None) -> None:
        if conn is not self.conn:
            return
        reason = ConnectionLost(f"connection to {self.options.peer} lost" + (f": {exc}" if exc else ""))
        revoked = revoked_for_good(exc)  # no reconnection can fix them; a changed credential gets one try
        reason.__cause__ = exc  # why (a heartbeat timeout, a socket error), as Node's .cause
        retry = self.options.reconnect and not revoked
        self._drop(conn, reason)
        self._metrics.closed(time.monotonic(), will_reconnect=retry)
        sm = self._sm
        if sm.state is _CONNECTED:
            # The state changes first, so "disconnected" listeners see the truth.
            if retry:
                sm.set(_RECONNECTING)
                # A reload's cut for a changed credential (one reconnect) is reported as itself, as Node's.
                self._emit("disconnected", exc if isinstance(exc, Unauthorized) else reason)
                if isinstance(exc, IPCError):  # a heartbeat timeout or a protocol error: no caller waits for it
                    self._emit("error", exc)
                if sm.state is _RECONNECTING:
                    self._reconnector.start(self._generation)
            else:
                sm.set(ConnectionState.DISCONNECTED)
                if isinstance(exc, Unauthorized):
                    gone = NotConnected(f"the server closed the connection unauthorized: {exc.message}")
                    gone.__cause__ = exc
                else:
                    gone = NotConnected("the connection was lost and reconnect is off")
                self._outbox.give_up(gone)
                self._emit("disconnected", exc if isinstance(exc, Unauthorized) else reason)
                if isinstance(exc, IPCError):
                    self._emit("error", exc)

    def _drop(self, conn: ClientConnection | None, reason: IPCError) -> None:
        """Fail everything waiting on ``conn`` at once (never at its timeout)."""
        if conn is not None:
            conn.stop_heartbeat()
            if conn.last_received is not None:  # an attempt that read nothing keeps the last connection's
                self.last_received = conn.last_received
            if self.conn is conn:
                self.conn = None
            self._admission.lost(conn)
        self._calls.fail_all(reason)
        self.streams.fail_all(reason)
        self.producers.connection_lost()

