"""Requests this node sends across the cluster (docs/cluster.md §3, §5): the
requester's side. A request that no handler or responder on this node
takes goes to NATS on its request subject, with a reply subject of this
node's; NATS's queue group gives it to one node that serves the channel.

Every request ends in exactly one answer to its requester:
- the serving node's answer (the responder's or handler's frame, as is);
- ``no_responders`` when NATS answers the no-responders status (503):
  no node had interest in the subject when it was published. Within the
  no-responders grace of protocol.md §13.2 (``no_responders_grace_s`` after
  the node starts, or for a request its client replayed) the request is
  sent again a few times instead, until a node serves it or the grace (or
  its deadline, just before) ends;
- ``timeout`` at the request's own deadline (``timeout_ms``, else the
  server's ``default_request_timeout_s``); the serving node enforces the
  same deadline and its late answer is dropped;
- ``responder_lost`` when the node holding it goes silent: a node sends the
  requester's node, every heartbeat interval, the tokens of the requests
  it holds for it (``serving.py``); a request not named for three
  intervals (``cluster_heartbeat_s``) is lost with its node. A sweep that
  runs late (this node's own loop stalled) does not count its delay as
  the other node's silence;
- ``responder_lost`` at once when this node loses NATS itself: no answer
  can reach it any more.

A request that met every responder of its channel on this node at its
maximum (``max_held_requests_per_connection``, protocol.md §12) is handed
on (``hand_on``): sent to NATS like the others, from a local requester or
from another node's, under a token marked ``HANDED`` so that the node
that takes it hands it on no further. ``no_echo`` keeps NATS from giving
it back to this node; its 503 then says that no other node serves the
channel, and the answer is ``limit_exceeded``, as on one server.

A requester that leaves or cancels (§15.4) has its requests forgotten and a
cancel sent on ``C._c`` to whichever node holds them.

A stream request (§15) is one of these requests too, ended the same ways;
its items come back on its reply subject before its end, and are relayed
by ``stream_relay.py`` (``relay``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ipc_protocol import ErrorCode, Message, MessageType, clipped, decode_message, encode_message
from ipc_protocol.framing import frame_parts
from ipc_protocol.deadlines import ASYNCIO_RESOLUTION_S, Deadlines
from ipc_protocol.messages import error_response
from ipc_protocol.restarts import is_replay

from ..connection import ServerConnection
from ..shutdown import Shutdown
from ..stats import ServerStats
from .link import Link, Msg
from .subjects import HANDED, Subjects

if TYPE_CHECKING:
    from .stream_relay import StreamRelay

__all__ = ["Outgoing"]

log = logging.getLogger("ipc_server.cluster")

SILENT_INTERVALS = 3
# A request NATS found no node for, within the grace: sent again after
# 50 ms, then twice as long each time, at most 400 ms apart.
RETRY_FIRST_S = 0.05
RETRY_MAX_S = 0.4
# Answered no_responders this share of its time before its deadline, at most 50 ms (as grace.py).
_MARGIN_SHARE = 0.1
_MARGIN_S = 0.05
_NO_RESPONDERS_STATUS = "503"


class _Pending:
    __slots__ = ("conn", "request", "token", "heard", "body", "sent", "until", "retries", "stream")

    def __init__(self, conn: ServerConnection, request: Message, token: str, now: float, body: bytes) -> None:
        self.conn = conn
        self.request = request
        self.token = token
        self.heard = now  # when its serving node last named it (or it was sent)
        self.body = body
        self.sent = now
        self.until = 0.0  # while 503s are retried: until when (the grace, §13.2)
        self.retries = 0
        self.stream: Any = None  # a stream's state on this side (stream_relay.py)


class Outgoing:
    """Cross-node requests this node is waiting on."""

    def __init__(
        self,
        link: Link,
        subjects: Subjects,
        stats: ServerStats,
        *,
        heartbeat_s: float,
        default_timeout_s: float | None,
        grace_s: float = 0.0,
        shutdown: Shutdown | None = None,
    ) -> None:
        self._grace_s = grace_s
        self._shutdown = shutdown  # the server's: its drain waits on this table too
        self._window_ends = 0.0  # the start's grace (§13.2): set by start()
        # Who on this node would take a request on a channel now (a handler
        # or responder that registered while it waited), as a function that
        # routes it; set by the node.
        self.local: Callable[[Any, str], Callable[[Any, Message, bytes], None] | None] = lambda conn, channel: None
        self.relay: StreamRelay = None  # type: ignore[assignment]  # streams' items and credit, set by the node
        self._link = link
        self._subjects = subjects
        self._stats = stats
        self._silence_s = heartbeat_s * SILENT_INTERVALS
        self._sweep_s = heartbeat_s / 2
        self._default_timeout_s = default_timeout_s
        self._tokens = itertools.count(1)
        self.table: dict[str, _Pending] = {}
        self._by_conn: dict[Any, set[str]] = {}
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by start()
        self._deadlines: Deadlines[str] = Deadlines(self._expired, clock=self._now, call_at=self._call_at, resolution=ASYNCIO_RESOLUTION_S)
        self._sweeper: asyncio.Task[None] | None = None
        # what the node reports (cluster stats)
        self.sent = 0
        self.lost = 0
        self.no_responders = 0
        self.retried = 0
        self.handed = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._window_ends = loop.time() + self._grace_s
        self._sweeper = loop.create_task(self._sweep())

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()

    def __len__(self) -> int:
        return len(self.table)

    # -- sending ---------------------------------------------------------------------

    def request(self, conn: ServerConnection, msg: Message, body: bytes) -> None:
        """Send ``msg`` (no local taker) to the cluster; answer it exactly once."""
        subject = self._subjects.request(conn.app_id, msg.channel_id)
        if msg.message_type is MessageType.NOTIFICATION:  # one way: nobody to tell if no node serves it
            self._link.publish(subject, bytes(body), new=True)
            return
        token = str(next(self._tokens))
        if not self._link.publish(subject, bytes(body), f"{self._subjects.replies}.{token}", new=True):
            if self._link.too_large(len(body)):
                text = f"the request ({len(body)} bytes) is larger than NATS accepts ({self._link.max_payload} bytes)"
                self._refuse(conn, msg, ErrorCode.TOO_LARGE, text)
            else:  # never sent: the link holds its bound (link.py)
                text = f"no handler or responder for {msg.channel_id!r} on this node, and its link to NATS is backed up ({self._link.held} bytes not taken yet)"
                self._refuse(conn, msg, ErrorCode.NO_RESPONDERS, text)
            return
        self._wait(conn, msg, token, body)

    def hand_on(self, conn: ServerConnection, msg: Message, body: bytes) -> bool:
        """Send a request or stream that every responder of its channel here
        is too full for to another node (module docstring); False when it
        was not sent (the caller refuses it ``limit_exceeded``)."""
        token = f"{HANDED}{next(self._tokens)}"
        if not self._link.publish(self._subjects.request(conn.app_id, msg.channel_id), bytes(body), f"{self._subjects.replies}.{token}", new=True):
            return False
        self.handed += 1
        self._wait(conn, msg, token, body)
        return True

    def _wait(self, conn: ServerConnection, msg: Message, token: str, body: bytes) -> None:
        """Wait for the answer of ``msg``, sent under ``token``."""
        self.sent += 1
        now = self.loop.time()
        self.table[token] = pending = _Pending(conn, msg, token, now, body)
        self._by_conn.setdefault(conn, set()).add(token)
        conn.inflight.started()
        # A stream without timeout_ms has no whole-stream deadline (§15.5): its producer's node keeps its idle timeout.
        timeout_s = msg.timeout_ms / 1000.0 if msg.timeout_ms is not None else self._default_timeout_s if msg.window is None else None
        if timeout_s is not None:
            self._deadlines.add(token, now + timeout_s)
        if msg.window is not None:
            self.relay.opened(pending)

    def _refuse(self, conn: ServerConnection, msg: Message, code: ErrorCode, text: str) -> None:
        conn.refuse(msg, code, text)

    # -- answers ---------------------------------------------------------------------

    async def on_reply(self, nmsg: Msg) -> None:
        """An answer on ``C._r.<this node>.<token>``: the serving node's, or NATS's 503."""
        token = nmsg.subject.rpartition(".")[2]
        pending = self.table.get(token)
        if pending is None:  # answered already (deadline, lost): dropped (§15.4)
            self._stats.late_answers += 1
            return
        if nmsg.reply and pending.stream is not None:  # a stream's item; its end or error comes without a reply subject
            self.relay.arrived(pending, nmsg)
            return
        headers = nmsg.headers
        if headers and headers.get("Status") == _NO_RESPONDERS_STATUS:
            if token[0] == HANDED:  # no node but this one serves it, and here it met every responder full
                text = f"every responder of {pending.request.channel_id!r} holds its maximum of unanswered requests, on every node that serves it"
                self.fail(pending, ErrorCode.LIMIT_EXCEEDED, text)
                return
            if self._retry(pending):
                return
            self.no_responders += 1
            waited = f" (none came within {self.loop.time() - pending.sent:.2f} s: docs/protocol.md §13.2)" if pending.retries else ""
            self.fail(pending, ErrorCode.NO_RESPONDERS, f"no handler or responder for {pending.request.channel_id!r} on any node{waited}")
            return
        self._settle(pending)
        conn = pending.conn
        data = nmsg.data
        try:
            if conn.legacy:  # a version-1 requester: re-encoded for it (§10)
                conn.send(decode_message(data))
            elif conn.send_frame(frame_parts(data)):  # a binary answer: as is, or tagged for a peer without binary (§16.5)
                conn.traffic.sent[MessageType.RESPONSE] += 1
        except Exception:  # noqa: BLE001 - an answer that cannot be relayed is the serving node's fault
            log.exception("cluster: cannot relay an answer to %s", clipped(getattr(conn, "connection_id", conn)))
            conn.send(error_response(pending.request, ErrorCode.HANDLER_ERROR, "the answer from another node cannot be relayed"))
        timing = self._stats.timing
        if timing is not None:
            timing.answered(conn.app_id, pending.request.channel_id, "ok", conn.read_at)

    async def on_note(self, nmsg: Msg) -> None:
        """Another node names the requests of ours it still holds. One this
        node no longer waits for (answered while NATS was away, or taken for
        lost while that node was stalled) is cancelled there: nobody reads
        its answer, and a stream without credit would otherwise stay held."""
        try:
            held = json.loads(nmsg.data)["held"]
        except (ValueError, KeyError, TypeError):
            return
        now = self.loop.time()
        table = self.table
        for token in held:
            pending = table.get(token)
            if pending is not None:
                pending.heard = now
            else:  # a note sent before its answer may come after it: the cancel then finds nothing there
                self.cancel_remote(token, ErrorCode.CONNECTION_LOST)

    # -- the no-responders grace (§13.2) -----------------------------------------------

    def _retry(self, pending: _Pending) -> bool:
        """Send ``pending`` again a little later if it may wait for a responder."""
        now = self.loop.time()
        if not pending.retries:
            if not self._grace_s or (now >= self._window_ends and not is_replay(pending.request.headers)):
                return False
            until = pending.sent + self._grace_s
            timeout_ms = pending.request.timeout_ms
            if timeout_ms is not None:  # answered just before its deadline, so the requester reads no_responders
                left = timeout_ms / 1000.0
                until = min(until, pending.sent + left - min(left * _MARGIN_SHARE, _MARGIN_S))
            pending.until = until
        delay = min(RETRY_FIRST_S * 2**pending.retries, RETRY_MAX_S)
        if now + delay >= pending.until:
            return False
        pending.retries += 1
        self.retried += 1
        self.loop.call_later(delay, self._resend, pending)
        return True

    def _resend(self, pending: _Pending) -> None:
        if self.table.get(pending.token) is not pending or not self._link.up:
            return  # answered meanwhile (deadline, cancel, requester gone), or the link went (answered)
        msg, body = pending.request, pending.body
        if msg.timeout_ms is not None and body[:1] != b"\x00":  # the time left travels (§6.5)
            left = max(math.ceil(msg.timeout_ms - (self.loop.time() - pending.sent) * 1000.0), 1)
            msg = msg.model_copy(update={"timeout_ms": left})
            body = encode_message(msg)
        take = self.local(pending.conn, msg.channel_id)
        if take is not None:  # one registered on this node meanwhile: NATS would not bring it back here (no_echo)
            self._settle(pending)
            take(pending.conn, msg, body)
            return
        pending.heard = self.loop.time()
        self._link.publish(self._subjects.request(pending.conn.app_id, msg.channel_id), body, f"{self._subjects.replies}.{pending.token}")

    # -- settling ----------------------------------------------------------------------

    def _settle(self, pending: _Pending) -> None:
        """Forget ``pending`` (answered now, by the caller)."""
        token = pending.token
        del self.table[token]
        self._deadlines.discard(token)
        if pending.stream is not None:
            self.relay.closed(pending)
        mine = self._by_conn.get(pending.conn)
        if mine is not None:
            mine.discard(token)
            if not mine:
                del self._by_conn[pending.conn]
        pending.conn.inflight.finished()
        shutdown = self._shutdown
        if shutdown is not None and shutdown.draining:  # close() may be waiting for this table to empty
            shutdown.check_drained()

    def fail(self, pending: _Pending, code: ErrorCode, text: str) -> None:
        self._settle(pending)
        self._stats.count_error(code)
        conn = pending.conn
        if conn.is_open:
            conn.send(error_response(pending.request, code, text))
            timing = self._stats.timing
            if timing is not None:
                timing.answered(conn.app_id, pending.request.channel_id, code, conn.read_at)

    def _expired(self, token: str) -> None:
        pending = self.table.get(token)
        if pending is None:
            return
        timeout_ms = pending.request.timeout_ms
        within = f"{timeout_ms:g} ms" if timeout_ms is not None else f"the server's default deadline of {self._default_timeout_s:g} s"
        self.fail(pending, ErrorCode.TIMEOUT, f"no answer from the node serving {pending.request.channel_id!r} within {within}")
        self.cancel_remote(token, ErrorCode.TIMEOUT)

    def link_down(self) -> None:
        """NATS is gone: no answer can reach this node (docs/cluster.md §5)."""
        for pending in list(self.table.values()):
            self.lost += 1
            self.fail(pending, ErrorCode.RESPONDER_LOST, "this node lost its connection to the cluster (NATS) before the answer came")

    async def _sweep(self) -> None:
        """Requests whose serving node has gone silent are ``responder_lost``."""
        loop = self.loop
        expected = loop.time() + self._sweep_s
        while True:
            await asyncio.sleep(self._sweep_s)
            now = loop.time()
            late = now - expected  # our own stall: not the other node's silence
            expected = now + self._sweep_s
            if late > self._sweep_s:
                for pending in self.table.values():
                    pending.heard += late
                continue
            limit = now - self._silence_s
            for pending in [p for p in self.table.values() if p.heard < limit]:
                self.lost += 1
                self.fail(pending, ErrorCode.RESPONDER_LOST, f"the node serving {pending.request.channel_id!r} went silent (left the cluster) before answering")

    # -- the requester leaving or giving up ---------------------------------------------

    def connection_closed(self, conn: ServerConnection, reason: str = ErrorCode.CONNECTION_LOST) -> None:
        """The requester is gone (or, for another node's request this node
        handed on, gave it up for ``reason``): forget its requests, tell
        their nodes to stop."""
        tokens = self._by_conn.pop(conn, None)
        if not tokens:
            return
        for token in tokens:
            pending = self.table.pop(token, None)
            if pending is not None:
                self._deadlines.discard(token)
                if pending.stream is not None:
                    self.relay.closed(pending)
                self.cancel_remote(token, reason)
        shutdown = self._shutdown
        if shutdown is not None and shutdown.draining:  # another node's request handed on, given up (node.py)
            shutdown.check_drained()

    def cancel(self, conn: ServerConnection, request_id: str, reason: str) -> bool:
        """The requester cancelled a request (§15.4): no answer; True if it was ours."""
        for token in self._by_conn.get(conn, ()):
            pending = self.table.get(token)
            if pending is not None and pending.request.message_id == request_id:
                self._settle(pending)
                self.cancel_remote(token, reason)
                return True
        return False

    def cancel_remote(self, token: str, reason: str) -> None:
        """Tell whichever node holds request ``token`` to stop it (``C._c``)."""
        note = json.dumps({"node": self._subjects.node, "token": token, "reason": str(reason)}).encode()
        self._link.publish(self._subjects.cancels, note)

    # -- the loop ------------------------------------------------------------------------

    def _now(self) -> float:
        return self.loop.time()

    def _call_at(self, when: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return self.loop.call_at(when, callback)
