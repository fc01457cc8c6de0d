"""Idempotent retries (docs/protocol.md §6.6): a request that carries an
idempotency key runs once per key within the window.

The first request with a key starts a :class:`Run`, which stands in for its
requesters where handlers and forwarding expect the requester's connection
(it offers what they use of one: ``send``, ``send_frame``, ``refuse``, the
bookkeeping sets). So the run does not belong to the connection that
started it: when that connection drops, the handler goes on, and the
answer waits for the retry that comes over the next connection. A repeat
of the key while the run is going joins it; each requester is answered
under its own ``message_id``, and its own deadline still holds. The answer
is then kept for ``idempotency_window_s`` (unless its code says the request
did not run to its end: ``UNSTORED_CODES``), and a repeat gets it as is. A
key reused for another channel or payload is refused ``idempotency_conflict``.

Keys are scoped per app, and per user when the server has a users file.
Memory is bounded: the stored answers are dropped oldest first past
``idempotency_max_keys`` or ``idempotency_max_bytes`` (running keys are
bounded by the in-flight limits instead, §12), and at the window's end.
A request without a key never reaches this module.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any, cast

from ipc_protocol import ErrorCode, Message, MessageType, decode_message, encode_message
from ipc_protocol.deadlines import ASYNCIO_RESOLUTION_S, Deadlines
from ipc_protocol.idempotency import IDEMPOTENCY_HEADER, key_problem, request_digest
from ipc_protocol.messages import error_response
from ipc_protocol.envelope import REQUEST as _REQUEST

from .auth import Auth
from .config import ServerConfig
from .connection import ServerConnection
from .binary_frames import Frame, as_binary
from .frame_limit import PREFIX_BYTES
from .stats import ServerStats

__all__ = ["Idempotency", "Run", "UNSTORED_CODES"]

# Answers that say the request did not run to its end, or that another try
# may go otherwise (another responder, a server with room): a retry runs again.
UNSTORED_CODES = frozenset(
    {
        ErrorCode.TIMEOUT,
        ErrorCode.RESPONDER_LOST,
        ErrorCode.NO_RESPONDERS,
        ErrorCode.SHUTTING_DOWN,
        ErrorCode.LIMIT_EXCEEDED,
        ErrorCode.TOO_LARGE,
    }
)

_Scope = tuple[str, str | None, str]  # (app, user or None, key)


class _NoLimit:
    """A run's in-flight count: its requesters' own connections count it."""

    __slots__ = ("count", "paused", "deferred")

    def __init__(self) -> None:
        self.count = 0
        self.paused = False
        self.deferred = None

    def started(self) -> None:
        pass

    def finished(self) -> None:
        pass


class _Waiter:
    """A requester of a keyed request: its connection and its own message."""

    __slots__ = ("conn", "request", "entry")

    def __init__(self, conn: ServerConnection, request: Message, entry: _Entry) -> None:
        self.conn = conn
        self.request = request
        self.entry = entry


class _Entry:
    """One key: running (``run`` set, ``waiters``) or stored (``answer``)."""

    __slots__ = ("scope", "digest", "request_id", "run", "waiters", "answer", "size", "expires_at")

    def __init__(self, scope: _Scope, digest: bytes, request_id: str) -> None:
        self.scope = scope
        self.digest = digest
        self.request_id = request_id  # the message_id the run's request carries
        self.run: Run | None = None
        self.waiters: list[_Waiter] = []
        self.answer = b""  # the answer's frame body, as a version-2 peer reads it
        self.size = 0
        self.expires_at = 0.0


class Run:
    """The requester handlers and forwarding answer for a keyed request;
    it hands the answer to :class:`Idempotency`, which answers every
    requester of the key and keeps it.

    What it does not define itself (what a request's bookkeeping reads of
    its requester: when it was read, its figures) is the first requester's."""

    __slots__ = ("_window", "_entry", "_first", "app_id", "connection_id", "legacy", "peer", "client_name", "is_open",
                 "inflight", "handler_calls", "awaiting", "serving")  # fmt: skip

    def __init__(self, window: Idempotency, entry: _Entry, first: ServerConnection) -> None:
        self._window = window
        self._entry = entry
        self._first = first
        self.app_id = first.app_id
        self.connection_id = f"{first.connection_id}/idempotent"
        self.legacy = False  # a version-1 client cannot send a key (its frames have no headers)
        self.peer = first.peer
        self.client_name = first.client_name
        self.is_open = True  # the answer is always wanted: it is stored
        self.inflight = _NoLimit()
        self.handler_calls: set[Any] = set()
        self.awaiting: set[Any] = set()
        self.serving: set[Any] = set()

    def send(self, msg: Message, *, at_once: bool = False) -> bool:
        self._window.settle(self._entry, msg, None)
        return True

    def send_frame(self, frame: Frame, *, at_once: bool = False) -> bool:
        self._window.settle(self._entry, None, frame)
        return True

    def refuse(self, msg: Message, code: ErrorCode, text: str) -> None:
        self._window.count_error(code)
        self._window.settle(self._entry, error_response(msg, code, text), None)

    def fits(self, frame: Frame) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._first, name)

    @property
    def log_limits(self) -> Any:
        """The first requester's: its keyed runs' lines are limited as its own (log_limits)."""
        return self._first.log_limits

    @log_limits.setter
    def log_limits(self, limits: Any) -> None:
        self._first.log_limits = limits

    def expect_answers(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<Run key={self._entry.scope[2]!r} app={self.app_id!r} waiters={len(self._entry.waiters)}>"


class Idempotency:
    """The window of keys: the running requests, the stored answers.

    Args:
        auth: the server's users, with a users file: keys are scoped per
            user too, so no user is ever answered from another's request.
    """

    def __init__(self, config: ServerConfig, stats: ServerStats, auth: Auth | None = None) -> None:
        self._window_s = config.idempotency_window_s
        self._max_keys = config.idempotency_max_keys
        self._max_bytes = config.idempotency_max_bytes
        self._default_timeout_s = config.default_request_timeout_s
        self._stats = stats
        self._auth = auth
        self.running: dict[_Scope, _Entry] = {}
        self.stored: collections.OrderedDict[_Scope, _Entry] = collections.OrderedDict()  # oldest first
        self.stored_bytes = 0
        self._by_conn: dict[ServerConnection, set[_Waiter]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # the server's, once started
        # A joiner's own deadline (the run keeps the first request's, §6.5).
        self._deadlines: Deadlines[_Waiter] = Deadlines(
            self._expired, clock=self._loop_time, call_at=self._call_at, resolution=ASYNCIO_RESOLUTION_S
        )
        self._counts = stats.idempotency
        for name in ("running", "stored", "stored_bytes", "started", "joined", "replayed", "conflicts", "evicted", "expired", "not_stored"):
            self._counts[name] = 0

    def admit(self, conn: ServerConnection, msg: Message) -> ServerConnection | None:
        """Who ``msg`` is to be run for: ``conn`` itself (no key, or not a
        request), a new :class:`Run` (the first of its key), or None: it was
        answered here (joined a run, a stored answer, a conflict, a bad key)."""
        headers = msg.headers
        key = headers.get(IDEMPOTENCY_HEADER) if headers is not None else None
        if key is None or msg.message_type is not _REQUEST or getattr(msg, "window", None) is not None:
            return conn  # a notification, or a stream (§15): nothing to keep
        problem = key_problem(key)
        if problem is not None:
            conn.refuse(msg, ErrorCode.BAD_MESSAGE, problem)
            return None
        self._expire(self.loop.time())
        scope = (conn.app_id, self._user(conn), key)
        digest = request_digest(msg.channel_id, msg.payload)
        entry = self.running.get(scope) or self.stored.get(scope)
        if entry is not None:
            if entry.digest != digest:
                self._counts["conflicts"] += 1
                text = f"idempotency key {key!r} was used for another request (another channel or payload) within the window"
                conn.refuse(msg, ErrorCode.IDEMPOTENCY_CONFLICT, text)
            elif entry.run is not None:
                self._join(entry, conn, msg)
            else:
                self._counts["replayed"] += 1
                conn.send(_readdressed(decode_message(entry.answer), msg))
            return None
        entry = _Entry(scope, digest, msg.message_id)
        run = entry.run = Run(self, entry, conn)
        self.running[scope] = entry
        self._counts["started"] += 1
        self._counts["running"] = len(self.running)
        self._add_waiter(entry, conn, msg)
        return cast(ServerConnection, run)  # stands in for the requesters (see Run)

    def _user(self, conn: ServerConnection) -> str | None:
        grant = self._auth.grants.get(conn) if self._auth is not None else None
        return grant.user if grant is not None else None

    def _join(self, entry: _Entry, conn: ServerConnection, msg: Message) -> None:
        self._counts["joined"] += 1
        waiter = self._add_waiter(entry, conn, msg)
        timeout_s = msg.timeout_ms / 1000.0 if msg.timeout_ms is not None else self._default_timeout_s
        if timeout_s is not None:
            self._deadlines.add(waiter, self.loop.time() + timeout_s)

    def _add_waiter(self, entry: _Entry, conn: ServerConnection, msg: Message) -> _Waiter:
        waiter = _Waiter(conn, msg, entry)
        entry.waiters.append(waiter)
        self._by_conn.setdefault(conn, set()).add(waiter)
        conn.inflight.started()
        return waiter

    def _drop_waiter(self, waiter: _Waiter) -> None:
        self._deadlines.discard(waiter)
        mine = self._by_conn.get(waiter.conn)
        if mine is not None:
            mine.discard(waiter)
            if not mine:
                del self._by_conn[waiter.conn]

    # -- the answer ------------------------------------------------------------------

    def settle(self, entry: _Entry, reply: Message | None, frame: Frame | None) -> None:
        """The run's answer (a message, or an encoded frame from a handler or
        a responder): to every requester waiting, then into the window."""
        if entry.run is None:  # answered already
            return
        entry.run = None
        del self.running[entry.scope]
        self._counts["running"] = len(self.running)
        first_id = entry.request_id  # a frame answers it: the run's request is the first requester's
        waiters, entry.waiters = entry.waiters, []
        if reply is None:
            assert frame is not None
            body = bytes(frame[PREFIX_BYTES:]) if frame.__class__ is bytes else as_binary(frame).body()  # §16: one buffer to keep
            # Read only when it may be an error, or another requester needs it readdressed.
            if b'"error"' in body or any(w.request.message_id != first_id for w in waiters):
                reply = decode_message(body)
        else:
            body = encode_message(reply)
        for waiter in waiters:
            self._drop_waiter(waiter)
            conn = waiter.conn
            conn.inflight.finished()
            if not conn.is_open:
                continue
            if frame is not None and waiter.request.message_id == first_id:
                conn.send_frame(frame)  # its own answer, byte for byte (§7.3)
            else:
                assert reply is not None
                conn.send(_readdressed(reply, waiter.request))
        self._store(entry, reply.error.code if reply is not None and reply.error is not None else None, body)

    def _store(self, entry: _Entry, code: str | None, body: bytes) -> None:
        size = len(body) + len(entry.scope[2])
        if code in UNSTORED_CODES or self._window_s <= 0 or (self._max_bytes is not None and size > self._max_bytes):
            self._counts["not_stored"] += 1
            return
        entry.answer = body
        entry.size = size
        entry.expires_at = self.loop.time() + self._window_s
        self.stored[entry.scope] = entry
        self.stored_bytes += size
        while self.stored and (
            (self._max_keys is not None and len(self.stored) > self._max_keys) or (self._max_bytes is not None and self.stored_bytes > self._max_bytes)
        ):
            self._forget(self.stored.popitem(last=False)[1], "evicted")
        self._update()
        if self._timer is None:
            self._arm()

    # -- the window's end --------------------------------------------------------------

    def _expire(self, now: float) -> None:
        stored = self.stored
        gone = False
        while stored:
            entry = next(iter(stored.values()))
            if entry.expires_at > now:
                break
            del stored[entry.scope]
            self._forget(entry, "expired")
            gone = True
        if gone:
            self._update()

    def _forget(self, entry: _Entry, why: str) -> None:
        self.stored_bytes -= entry.size
        entry.answer = b""
        self._counts[why] += 1

    def _update(self) -> None:
        self._counts["stored"] = len(self.stored)
        self._counts["stored_bytes"] = self.stored_bytes

    def _arm(self) -> None:
        """One timer, at the oldest stored answer's end (the window is the same for all)."""
        if self.stored:
            self._timer = self.loop.call_at(next(iter(self.stored.values())).expires_at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._expire(self.loop.time() + ASYNCIO_RESOLUTION_S)
        self._arm()

    # -- requesters that leave, or stop waiting ------------------------------------------

    def _expired(self, waiter: _Waiter) -> None:
        """A joiner's own deadline passed before the run's answer: ``timeout``
        for it alone; the run goes on for the others."""
        entry = waiter.entry
        if waiter not in entry.waiters:
            return
        entry.waiters.remove(waiter)
        self._drop_waiter(waiter)
        conn = waiter.conn
        conn.inflight.finished()
        self.count_error(ErrorCode.TIMEOUT)
        timeout_ms = waiter.request.timeout_ms
        within = f"{timeout_ms:g} ms" if timeout_ms is not None else f"the server's default deadline of {self._default_timeout_s:g} s"
        conn.send(error_response(waiter.request, ErrorCode.TIMEOUT, f"the request with this idempotency key did not finish within {within}"))

    def connection_closed(self, conn: ServerConnection) -> None:
        """Nobody reads ``conn``'s answers; the runs it waited for go on (a retry may come)."""
        for waiter in self._by_conn.pop(conn, ()):
            self._deadlines.discard(waiter)
            if waiter in waiter.entry.waiters:
                waiter.entry.waiters.remove(waiter)

    def count_error(self, code: ErrorCode) -> None:
        self._stats.count_error(code)

    def __len__(self) -> int:
        return len(self.running) + len(self.stored)

    def _loop_time(self) -> float:
        return self.loop.time()

    def _call_at(self, when: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return self.loop.call_at(when, callback)


def _readdressed(reply: Message, request: Message) -> Message:
    """The answer of a key, as the answer to ``request`` (its own ``reply_to``)."""
    return Message.build(
        MessageType.RESPONSE, request.app_id, request.channel_id, reply.payload, reply_to=request.message_id, headers=reply.headers, error=reply.error
    )
