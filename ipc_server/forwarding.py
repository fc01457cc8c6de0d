"""Forwarding to client responders: the table of forwarded requests, their
deadlines, and ``responder_lost`` when a responder leaves first
(docs/protocol.md §6.2, §6.5, §7.3).

A forwarded request is keyed by (responder, the message_id it was sent
with), so one connection's ``reply_to`` can only ever name a request
forwarded to that connection.

What one responder can make the server hold is bounded (§12): a request
that carries no deadline (version-1 clients) gets the server's
``default_request_timeout_s``, and a responder holds at most
``max_held_requests_per_connection`` unanswered requests. Requests go to
the least busy responder of a channel (§6.1), so one at the cap means every
responder of it is: the request is answered ``limit_exceeded``. A node of
a cluster first hands it on to another node (``hand_on``,
docs/cluster.md §3), which may have room.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ipc_protocol import ErrorCode, IPCError, Message, clipped
from ipc_protocol.envelope import REQUEST as _REQUEST, RESPONSE as _RESPONSE, encode_message_parts
from ipc_protocol.framing import frame_parts
from ipc_protocol.deadlines import ASYNCIO_RESOLUTION_S, Deadlines
from ipc_protocol.messages import error_response

from .config import ServerConfig
from .connection import ServerConnection
from .frame_limit import PREFIX_BYTES
from .shutdown import Shutdown
from .stats import ServerStats

if TYPE_CHECKING:
    from .streams import Streams

__all__ = ["Forwarded", "Forwarding"]

log = logging.getLogger("ipc_server")


_Key = tuple[ServerConnection, str]
# Keys of requests that ended without their responder's answer (deadline,
# cancel, requester gone), kept so a late answer never meets a new request
# under the same key (docs/protocol.md §15.4 item 4).
_RETIRED_KEPT = 4096


@dataclass(slots=True)
class Forwarded:
    """A request forwarded to a responder, waiting for its answer (§7.3)."""

    request: Message
    requester: ServerConnection
    responder: ServerConnection
    # Sent as the requester's own frame, so under its own message_id: the
    # answer already carries the requester's reply_to and is relayed as is.
    verbatim: bool
    received: float = 0.0  # when it was read (request metrics, docs/operations.md)


class Forwarding:
    """Requests in flight to responders.

    Args:
        ids: the server's one counter of generated ids (see ``Admission``).
    """

    def __init__(self, stats: ServerStats, shutdown: Shutdown, ids: itertools.count[int], config: ServerConfig | None = None) -> None:
        self._stats = stats
        self._shutdown = shutdown
        self._ids = ids
        config = config or ServerConfig()
        self._default_timeout_s = config.default_request_timeout_s
        self._max_held = config.max_held_requests_per_connection
        self.table: dict[_Key, Forwarded] = {}
        self._retired: OrderedDict[_Key, None] = OrderedDict()
        self.streams: Streams | None = None  # set by the server (streams.Streams, §15)
        # A cluster's: sends a request that every responder here is too full
        # for to another node; False when it cannot (refused here).
        self.hand_on: Callable[[ServerConnection, Message, bytes], bool] | None = None
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # the server's, once started
        # One loop timer for every forwarded request's deadline (§6.5).
        self._deadlines: Deadlines[_Key] = Deadlines(
            self._expired, clock=self._loop_time, call_at=self._call_at, resolution=ASYNCIO_RESOLUTION_S
        )

    def __len__(self) -> int:
        return len(self.table)

    def forward(self, conn: ServerConnection, msg: Message, body: bytes, responder: ServerConnection) -> None:
        """Send a request or notification on to ``responder`` (§7.3).

        Between two version-2 peers, and when no request forwarded to that
        responder already uses its message_id, the requester's own frame goes
        out unchanged: nothing in it needs changing (same app, ``timeout_ms``
        is the remaining time and the forward is immediate, headers are
        relayed as they are). Otherwise it is a new frame under a server id.
        """
        is_request = msg.message_type is _REQUEST
        if is_request and self._max_held is not None and len(responder.serving) >= self._max_held:
            if self.hand_on is None or not self.hand_on(conn, msg, body):
                conn.refuse(msg, ErrorCode.LIMIT_EXCEEDED, f"every responder of {msg.channel_id!r} holds its maximum of {self._max_held} unanswered requests")
            return
        sid = msg.message_id
        key = (responder, sid)
        table = self.table
        verbatim = not conn.legacy and not responder.legacy and (not is_request or (key not in table and key not in self._retired))
        if verbatim:
            frame = frame_parts(body)  # a binary frame's attachments uncopied (§16.4)
        else:
            sid = f"s{next(self._ids)}"
            while (responder, sid) in table or (responder, sid) in self._retired:  # a requester's own id may look like ours
                sid = f"s{next(self._ids)}"
            key = (responder, sid)
            forwarded = Message.build(msg.message_type, msg.app_id, msg.channel_id, msg.payload, message_id=sid, headers=msg.headers, timeout_ms=msg.timeout_ms)
            frame = frame_parts(encode_message_parts(forwarded, legacy=responder.legacy))
        if not responder.fits(frame):  # over the frame limit the responder declared (§3)
            text = f"the request ({len(frame) - PREFIX_BYTES} bytes) is larger than the responder accepts"
            conn.refuse(msg, ErrorCode.TOO_LARGE, text)
            return
        if not responder.send_frame(frame):
            conn.refuse(msg, ErrorCode.RESPONDER_LOST, "the responder disconnected")
            return
        responder.traffic.sent[msg.message_type] += 1
        if not is_request:
            return
        table[key] = Forwarded(msg, conn, responder, verbatim, conn.read_at)
        if msg.timeout_ms is not None:
            self._deadlines.add(key, self.loop.time() + msg.timeout_ms / 1000.0)
        elif self._default_timeout_s is not None and msg.window is None:  # none carried: the server's own (§6.5, §12; a stream: §15.5)
            self._deadlines.add(key, self.loop.time() + self._default_timeout_s)
        if type(responder.serving) is not set:  # the first (ServerConnection)
            responder.serving = set()
        responder.serving.add(key)
        if type(conn.awaiting) is not set:
            conn.awaiting = set()
        conn.awaiting.add(key)
        conn.inflight.started()
        if msg.window is not None and self.streams is not None:  # a stream (§15.3)
            self.streams.opened(key, table[key])

    def response(self, conn: ServerConnection, msg: Message, body: bytes) -> None:
        """A response from ``conn``: the answer to a request forwarded to it, or nothing."""
        sid = msg.reply_to
        fwd = self.table.get((conn, sid)) if sid is not None else None
        if fwd is None or sid is None:
            # An answer that came too late, or a reply_to naming a request
            # this connection was never sent: nothing waits for it (§15.4).
            self._stats.late_answers += 1
            return
        if fwd.responder is not conn:  # pragma: no cover - the key names the responder
            log.warning("connection %s answered a request forwarded to %s; ignored", clipped(conn.connection_id), clipped(fwd.responder.connection_id))
            return
        if msg.error is not None:
            self._stats.count_error(msg.error.code)
        # A verbatim forward's answer already says reply_to = the requester's
        # id, and the requester speaks version 2: its bytes go on unchanged.
        self.finish((conn, sid), msg, body if fwd.verbatim else None)

    def _expired(self, key: _Key) -> None:
        fwd = self.table.get(key)
        if fwd is None:
            return
        self._stats.count_error(ErrorCode.TIMEOUT)
        timeout_ms = fwd.request.timeout_ms
        if timeout_ms is None:
            text = f"no answer from the responder within the server's default deadline of {self._default_timeout_s:g} s"
        else:
            text = f"no answer from the responder within {timeout_ms:g} ms"
        self.finish(key, error_response(fwd.request, ErrorCode.TIMEOUT, text))
        self._ended(key, fwd, ErrorCode.TIMEOUT)  # the responder is told to stop (§15.4)

    def finish(self, key: _Key, reply: Message, body: bytes | None = None) -> None:
        """Answer a forwarded request, once. ``body``: the responder's frame,
        relayed as is; else ``reply`` is encoded for the requester."""
        fwd = self.table.pop(key, None)
        if fwd is None:
            return
        if fwd.request.window is not None and self.streams is not None:
            self.streams.closed(key, fwd)
        self._deadlines.discard(key)
        fwd.responder.serving.discard(key)
        fwd.requester.awaiting.discard(key)
        fwd.requester.inflight.finished()
        if body is not None:
            if fwd.requester.send_frame(frame_parts(body)):
                fwd.requester.traffic.sent[_RESPONSE] += 1
        else:
            if reply.reply_to != fwd.request.message_id:
                reply = reply.model_copy(update={"reply_to": fwd.request.message_id})
            try:
                fwd.requester.send(reply)
            except IPCError as exc:  # the responder's answer cannot be re-encoded
                text = f"the responder's answer cannot be relayed: {exc}"
                fwd.requester.send(error_response(fwd.request, ErrorCode.HANDLER_ERROR, text))
        if self._stats.timing is not None:  # metrics on (request_metrics)
            self._stats.timing.answered(fwd.requester.app_id, fwd.request.channel_id, reply.error.code if reply.error else "ok", fwd.received)
        if self._shutdown.draining:
            self._shutdown.check_drained()

    def connection_closed(self, conn: ServerConnection) -> None:
        """The requests ``conn`` was answering are ``responder_lost`` at once
        (§6.2); those it was waiting on are dropped, their late answers discarded."""
        self.responder_gone(conn)
        for key in list(conn.awaiting):
            fwd = self.table.pop(key, None)
            if fwd is not None:
                fwd.responder.serving.discard(key)
                self._deadlines.discard(key)
                self._ended(key, fwd, ErrorCode.CONNECTION_LOST)
        if conn.awaiting:
            conn.awaiting.clear()

    def responder_gone(self, conn: ServerConnection) -> None:
        """``conn`` answers no more (closed, or half-closed: it sends nothing):
        the requests forwarded to it are ``responder_lost`` at once (§6.2)."""
        for key in list(conn.serving):
            fwd = self.table.get(key)
            if fwd is not None:
                self.finish(key, error_response(fwd.request, ErrorCode.RESPONDER_LOST, "the responder disconnected before answering"))

    def withdraw(self, key: _Key, reason: str) -> None:
        """The requester gave up (a cancel, §15.4): forget the request
        without answering it, and tell its responder to stop."""
        fwd = self.table.pop(key, None)
        if fwd is None:
            return
        self._deadlines.discard(key)
        fwd.responder.serving.discard(key)
        fwd.requester.awaiting.discard(key)
        fwd.requester.inflight.finished()
        self._ended(key, fwd, reason)
        if self._shutdown.draining:
            self._shutdown.check_drained()

    def _ended(self, key: _Key, fwd: Forwarded, reason: str) -> None:
        """A request removed without its responder's answer: its key is
        retired, its stream closed, its responder sent ``cancel``."""
        self.retire(key)
        if self.streams is not None:
            if fwd.request.window is not None:
                self.streams.closed(key, fwd)
            self.streams.cancel_responder(fwd.responder, key[1], fwd.request, reason)

    def retire(self, key: _Key) -> None:
        """Keep ``key`` from being used again for a while (§15.4 item 4)."""
        retired = self._retired
        retired[key] = None
        if len(retired) > _RETIRED_KEPT:
            retired.popitem(last=False)

    def shut_down(self) -> None:
        """Answer every forwarded request still waiting ``shutting_down`` (§13)."""
        for key, fwd in list(self.table.items()):
            self.finish(key, error_response(fwd.request, ErrorCode.SHUTTING_DOWN, "the server is shutting down"))

    def _loop_time(self) -> float:
        return self.loop.time()

    def _call_at(self, when: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return self.loop.call_at(when, callback)
