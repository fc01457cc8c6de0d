"""The request lifecycle: the pending table, the deadlines, the remaining-time
budget on the wire, and settling every call exactly once (docs/resilience.md §3).

Every call ends in one result or one exception: its answer, an error answer,
its own timeout (one timer for all deadlines, ``ipc_protocol.deadlines``), or
``ConnectionLost`` the moment its connection drops. There is one send path,
:meth:`Calls._send`, and one budget rule, :func:`budget_ms`, for the hot path
(:meth:`Calls.request`, encoded straight from its fields), the calls built as
messages (:meth:`Calls.call`) and the ones replayed from the offline queue
(:meth:`Calls.start`).

A call whose caller is cancelled (``task.cancel()``) is forgotten at once,
and a request's ``cancel`` frame tells whoever runs it to stop
(docs/protocol.md §15.4); ``CancelledError`` is re-raised.
"""

from __future__ import annotations

import asyncio
import collections
import math
from threading import get_ident
from collections.abc import Awaitable
from typing import Any

from ipc_protocol import (
    ConnectionLost,
    ErrorCode,
    IPCError,
    Message,
    MessageType,
    RequestTimeout,
    error_from_wire,
)
from ipc_protocol.attachments import BinaryFrame, Frame
from ipc_protocol.envelope import encode_message_parts, encode_publish_parts, encode_request_parts
from ipc_protocol.deadlines import ASYNCIO_RESOLUTION_S, Deadlines
from ipc_protocol.payload_paths import snapshot
from ipc_protocol.protocol import CLOSING
from ipc_protocol.streams import CANCEL, cancel

from .connection import ClientConnection
from .idempotency import keys_kept, not_resent
from .metrics import ClientMetrics
from .timeouts import seconds_text

__all__ = ["Calls", "budget_ms"]

_EXPIRED_MEMORY = 1024  # timed-out request ids remembered to drop late answers


def budget_ms(remaining: float) -> int:
    """A request's ``timeout_ms`` on the wire: the time left in whole
    milliseconds, rounded up and at least 1 (§6.5), as the Node client sends
    it: the responder never gets less time than the caller still waits."""
    return max(1, math.ceil(remaining * 1000))


class Calls:
    """Calls waiting for their answer, by request id.

    ``loop`` is the loop the client connected on (set by ``connect()``): the
    hot path reads it instead of ``asyncio.get_running_loop()``, a system call
    on 3.11. ``legacy`` is the version of the connection the answers come
    from (a 1.1.x server wraps errors in the payload, §10)."""

    def __init__(self, app_id: str, metrics: ClientMetrics) -> None:
        self.app_id = app_id
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: int | None = None  # the thread connect() ran in
        self.legacy = False
        self._metrics = metrics
        # Request id -> (future, channel, timeout in s, the connection of a
        # request: told when its caller gives up, else None); deadlines in _deadlines.
        self._pending: dict[str, tuple[asyncio.Future[Message], str, float, ClientConnection | None]] = {}
        self._deadlines = Deadlines(
            self._expire,
            clock=lambda: asyncio.get_running_loop().time(),
            call_at=lambda when, callback: asyncio.get_running_loop().call_at(when, callback),
            resolution=ASYNCIO_RESOLUTION_S,
        )
        # Ids of requests that timed out locally: their late answers are
        # dropped quietly instead of being reported as stray errors.
        self._expired: collections.OrderedDict[str, None] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    def bind(self) -> asyncio.AbstractEventLoop:
        """Binds the client to the running loop (``connect()`` of a
        disconnected client), and to the thread it runs in."""
        self.loop = loop = asyncio.get_running_loop()
        self.thread = get_ident()
        return loop

    def own_loop(self) -> asyncio.AbstractEventLoop:
        """The running loop, refused unless the client connected on it: its
        connection, futures and timers belong to that loop, and a call from
        another one would touch them from the wrong thread (or a closed
        loop). A thread runs one loop at a time, so the client's loop
        running in the thread it connected from is the running loop:
        ``get_running_loop()`` (a system call on 3.11) only otherwise."""
        own = self.loop
        if own is not None and own.is_running() and get_ident() == self.thread:
            return own
        loop = asyncio.get_running_loop()
        if loop is not self.loop and self.loop is not None:
            there = "that loop is closed: connect a new client here" if self.loop.is_closed() else "await it there (asyncio.run_coroutine_threadsafe from another thread)"
            raise RuntimeError(f"this IPCClient belongs to the event loop it connected on; {there}, or use SyncIPCClient from threads")
        return loop

    def own_running_loop(self) -> None:
        """:meth:`own_loop` for a call that is not a coroutine (``serve()``):
        none running is fine (it may be made before the loop starts), another
        client's loop is refused: its task would run there."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self.own_loop()

    # -- starting a call ------------------------------------------------------

    async def request(self, conn: ClientConnection, channel: str, payload: Any, headers: dict[str, str] | None, timeout: float, named: float | None = None) -> Message:
        """A user's request on a ready connection: the hot path of every call.
        Its budget is all of its timeout (``named``, when given, is what its
        timeout error names), and its frame is encoded straight from the arguments."""
        if timeout <= 0:
            self._metrics.failed()
            raise RequestTimeout(f"request on {channel!r} timed out before it was sent")
        deadline = self.loop.time() + timeout  # type: ignore[union-attr]
        legacy = self.legacy
        message_id, body = encode_request_parts(
            self.app_id, channel, payload, timeout_ms=None if legacy else budget_ms(timeout), headers=headers, legacy=legacy
        )
        frame = conn.frame_body(body)
        if conn.line.blocked:  # a full send buffer: its turn first, then what is left of its budget (§6.5)
            if not legacy:  # encoded again then, from the payload as it is now (§16.3)
                payload = snapshot(payload)
            await self._turn(conn, deadline, f"request on {channel!r}", True)
            if not legacy:
                left = deadline - self.loop.time()  # type: ignore[union-attr]
                message_id, body = encode_request_parts(self.app_id, channel, payload, timeout_ms=budget_ms(left), headers=headers, legacy=legacy)
                frame = conn.frame_body(body)
        return await self._exchange(conn, message_id, channel, frame, deadline, timeout if named is None else named, True, True)

    async def call(self, conn: ClientConnection, msg: Message, deadline: float, *, user: bool = False, timeout: float | None = None) -> Message:
        """Write a request-like message and wait for the response answering it.

        ``user``: a user's call (``system()`` among them), counted in the
        KPIs and sent with its budget (not a ping or an ack). ``timeout``:
        the call's own, named if it expires (None: what is left now)."""
        try:
            frame, remaining = self._prepare(conn, msg, deadline, user)
            if conn.line.blocked:  # a full send buffer: its turn first, then what is left of its budget (§6.5)
                msg = msg.model_copy(update={"payload": snapshot(msg.payload)})  # encoded again then, as it is now (§16.3)
                await conn.line.turn(deadline, f"{msg.message_type.value} on {msg.channel_id!r}")
                frame, remaining = self._prepare(conn, msg, deadline, user)
        except (RequestTimeout, ConnectionLost):
            if user:
                self._metrics.failed()
            raise
        given = remaining if timeout is None else timeout
        return await self._exchange(conn, msg.message_id, msg.channel_id, frame, deadline, given, user, msg.message_type is MessageType.REQUEST)

    def start(self, conn: ClientConnection, msg: Message, deadline: float, fut: asyncio.Future[Message], timeout: float | None = None) -> None:
        """Register ``fut`` for the answer to a user's ``msg`` and write it; never waits (the queue's replay)."""
        frame, remaining = self._prepare(conn, msg, deadline, True)
        self._send(conn, msg.message_id, msg.channel_id, frame, deadline, remaining if timeout is None else timeout, fut, msg.message_type is MessageType.REQUEST)

    def send_one_way(self, conn: ClientConnection, msg: Message, deadline: float) -> Awaitable[None]:
        """Write a message nobody answers (:meth:`one_way`)."""
        return self.one_way(conn, encode_message_parts(msg, legacy=conn.legacy), msg.message_type.value, msg.channel_id, deadline)

    def publish(self, conn: ClientConnection, channel: str, payload: Any, headers: dict[str, str] | None, deadline: float) -> Awaitable[None]:
        """A publish nobody acknowledges, encoded straight from its fields (as :meth:`request`)."""
        body = encode_publish_parts(self.app_id, channel, payload, headers=headers, legacy=conn.legacy)
        return self.one_way(conn, body, "publish", channel, deadline)

    async def one_way(self, conn: ClientConnection, body: bytes | BinaryFrame, kind: str, channel: str, deadline: float) -> None:
        """Write an encoded message nobody answers, counted delivered once
        written. A fast publisher waits for a slow socket BEFORE it writes
        (``conn.line``): one that times out or is cancelled there was never
        sent, and what is called after it is written after it."""
        if not conn.is_open:
            await self.unsent(conn, deadline, True)
        frame = conn.frame_body(body)
        if conn.line.blocked:
            await self._turn(conn, deadline, f"{kind} on {channel!r}", True)
            if not conn.is_open:  # its turn came with the connection's loss
                await self.unsent(conn, deadline, True)
        conn.write(frame)
        self._metrics.sent()
        self._metrics.delivered()

    async def _turn(self, conn: ClientConnection, deadline: float, what: str, user: bool) -> None:
        """Wait for the turn to write on a connection whose send buffer is
        full (:class:`~ipc_client.write_line.WriteLine`); a user's call that
        times out or loses its connection there counts as failed (unsent), a
        cancelled one in neither."""
        try:
            await conn.line.turn(deadline, what)
        except (RequestTimeout, ConnectionLost):
            if user:
                self._metrics.failed()
            raise

    def _prepare(self, conn: ClientConnection, msg: Message, deadline: float, user: bool) -> tuple[Frame, float]:
        """The frame of ``msg`` as sent now, and the time left; a user's
        request carries what is left of its deadline (§6.5)."""
        remaining = deadline - self.loop.time()  # type: ignore[union-attr]
        if remaining <= 0:
            raise RequestTimeout(f"request on {msg.channel_id!r} timed out before it was sent")
        if user and not self.legacy and msg.message_type is MessageType.REQUEST:
            msg = msg.model_copy(update={"timeout_ms": budget_ms(remaining)})
        return conn.frame(msg), remaining

    def _exchange(
        self, conn: ClientConnection, message_id: str, channel: str, frame: Frame, deadline: float, remaining: float, track: bool, request: bool
    ) -> Awaitable[Message]:
        """Write a request's frame now; the awaitable of its answer. Not a
        coroutine of its own: the caller awaits ``await_reply``'s, one frame
        less on every request (no timer of its own either)."""
        fut: asyncio.Future[Message] = self.loop.create_future()  # type: ignore[union-attr]
        try:
            self._send(conn, message_id, channel, frame, deadline, remaining, fut, request)
        except ConnectionLost:
            return self.unsent(conn, deadline, track)
        if track:
            self._metrics.sent()
        if conn.writing_paused:
            return self._drained_reply(conn, message_id, channel, fut, deadline, track)
        return self.await_reply(fut, track, message_id)

    async def unsent(self, conn: ClientConnection, deadline: float, track: bool) -> Message:
        """Fail a call its closing connection did not take, once the client
        has handled the loss (``conn.closed``, never past the deadline): the
        transport closes before asyncio calls ``connection_lost``, and a call
        that raised without yielding let a retry loop spin for ever on a
        client still ``connected`` (the loss handler never got to run). A
        close of disconnect()'s own (``CLOSING``) is handled already. The one
        way out of every send path that finds its connection closing (streams
        and a 1.1.x server's subscribes too)."""
        if track:
            self._metrics.failed()
        left = deadline - self.loop.time()  # type: ignore[union-attr]
        if left > 0 and not conn.closed.done() and conn.proto.state is not CLOSING:
            try:
                async with asyncio.timeout(left):
                    await asyncio.shield(conn.closed)
            except TimeoutError:
                pass
        raise ConnectionLost("the connection is closed")

    async def _drained_reply(self, conn: ClientConnection, message_id: str, channel: str, fut: asyncio.Future[Message], deadline: float, track: bool) -> Message:
        """A full socket buffer drained first (never past the deadline), then
        the answer. The request is written (buffered) already: a caller
        cancelled meanwhile gives it up as one cancelled while waiting for
        its answer, its ``cancel`` queued behind it on the same transport,
        and counts in neither KPI (docs/resilience.md §2)."""
        try:
            await self._drain(conn, f"request on {channel!r}", deadline)
        except asyncio.CancelledError:
            self._given_up(fut, message_id)
            fut.cancel()
            raise
        except BaseException:
            self._forget(message_id, fut)
            if track:
                self._metrics.failed()
            raise
        return await self.await_reply(fut, track, message_id)

    def _send(
        self,
        conn: ClientConnection,
        message_id: str,
        channel: str,
        frame: Frame,
        deadline: float,
        remaining: float,
        fut: asyncio.Future[Message],
        request: bool = True,
    ) -> None:
        """The one send path of every call: register it, arm its deadline, write it."""
        if not conn.is_open:
            raise ConnectionLost("the connection is closed")
        self._pending[message_id] = (fut, channel, remaining, conn if request else None)
        self._deadlines.add(message_id, deadline)
        conn.write(frame)

    async def _drain(self, conn: ClientConnection, what: str, deadline: float) -> None:
        """Wait for a full socket buffer to drain, but never past the call's deadline."""
        if not await conn.drain(deadline - asyncio.get_running_loop().time()):
            raise RequestTimeout(f"{what}: the connection did not take it before the deadline")

    def _forget(self, message_id: str, fut: asyncio.Future[Message]) -> None:
        """Stop waiting for an answer nobody will read (one its deadline
        settled already is read here: asyncio would log it as never retrieved)."""
        self._pending.pop(message_id, None)
        self._deadlines.discard(message_id)
        if not fut.done():
            fut.cancel()
        elif not fut.cancelled():
            fut.exception()

    # -- settling it ----------------------------------------------------------

    async def await_reply(self, fut: asyncio.Future[Message], track: bool, message_id: str | None = None) -> Message:
        """The answer ``fut`` settles with, or the error it carries raised.
        A caller cancelled meanwhile gives the call up (:meth:`_given_up`).

        Counted delivered when the other side answered it (a result, or an
        error answer such as ``handler_error``), failed when it ended here
        (its deadline, the connection) or in a ``timeout`` answer: the
        server times a request out at the deadline the client's timer has
        too (docs/protocol.md §6.5), and which of the two ends the call is a
        race (a loop that wakes late reads the server's answer before it
        runs its due timer), so both count the same, as in Node."""
        try:
            reply = await fut
        except IPCError:
            if track:
                self._metrics.failed()
            raise
        except asyncio.CancelledError:
            self._given_up(fut, message_id)
            raise
        error: IPCError | None = None
        if reply.error is not None:
            error = error_from_wire(reply.error.model_dump())
        elif self.legacy and isinstance(reply.payload, dict) and set(reply.payload) == {"error"} and isinstance(reply.payload["error"], dict):
            error = error_from_wire(reply.payload["error"])  # §10: an error object as the whole payload; else data, as Node
        if track:
            if error is not None and error.code == ErrorCode.TIMEOUT:
                self._metrics.failed()
            else:
                self._metrics.delivered()
        if error is not None:
            raise error
        return reply

    def settle(self, msg: Message) -> bool:
        """Hand a response to the call it answers; False if it answers none
        (a pong, an error about nothing we wait for, a late answer)."""
        reply_to = msg.reply_to
        entry = self._pending.pop(reply_to, None) if reply_to is not None else None
        if entry is None:
            return False
        self._deadlines.discard(reply_to)  # type: ignore[arg-type]
        fut = entry[0]
        if not fut.done():
            fut.set_result(msg)
        return True

    def _given_up(self, fut: asyncio.Future[Message], message_id: str | None) -> None:
        """The caller was cancelled: forget the call now (not at its deadline),
        drop its answer when it comes, and send a request's ``cancel`` (§15.4)."""
        if message_id is None:  # replayed from the queue: found by its future (rare)
            message_id = next((mid for mid, entry in self._pending.items() if entry[0] is fut), None)
        entry = self._pending.pop(message_id, None) if message_id is not None else None
        if entry is None:
            return
        self._deadlines.discard(message_id)  # type: ignore[arg-type]
        self.forget(message_id)  # type: ignore[arg-type]
        conn = entry[3]
        if conn is not None and conn.is_open and CANCEL in conn.proto.features:
            conn.send(cancel(self.app_id, entry[1], message_id))  # type: ignore[arg-type]

    def forget(self, message_id: str) -> None:
        """Drop quietly whatever still arrives for ``message_id``: its caller gave up."""
        self._expired[message_id] = None
        if len(self._expired) > _EXPIRED_MEMORY:
            self._expired.popitem(last=False)

    def expired(self, message_id: str | None) -> bool:
        """Whether ``message_id`` timed out here lately (its answer is dropped quietly)."""
        return message_id is not None and message_id in self._expired

    def fail_all(self, reason: IPCError) -> None:
        """Fail every waiting call at once (never at its timeout): the connection is gone."""
        pending = list(self._pending.values())
        self._pending.clear()
        self._deadlines.clear()
        for fut, _channel, _timeout, conn in pending:
            if not fut.done():
                lost = ConnectionLost(str(reason))
                lost.__cause__ = reason.__cause__  # why it was lost, when known (a revoked credential)
                if conn is not None and not keys_kept(conn):  # a request it ran may have run: a key is no reason to resend (§6.6 item 8)
                    not_resent(lost)
                fut.set_exception(lost)
                fut.exception()  # mark retrieved: a caller may have gone already

    def _expire(self, message_id: str) -> None:
        entry = self._pending.pop(message_id, None)
        self.forget(message_id)
        if entry is not None and not entry[0].done():
            fut, channel, timeout, _conn = entry
            fut.set_exception(RequestTimeout(f"no response on {channel!r} within {seconds_text(timeout)} s"))
