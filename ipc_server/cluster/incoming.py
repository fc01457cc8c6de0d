"""Requests other nodes send this one (docs/cluster.md §3): the serving
side. NATS's queue group hands a request to one node holding a matching
subscription; it is routed here as if it came from a local connection,
to an in-process handler or a responder client (docs/protocol.md §6.1),
and its answer goes back to the requester's node on the request's reply
subject.

The stand-in for the requester is :class:`RemoteRequester`: what
``HandlerCalls`` and ``Forwarding`` need of a requester's connection, its
``send``/``send_frame`` publishing the answer instead of writing to a
socket. Every heartbeat interval the node names, to each requester node,
the requests it still holds for it (``C._n.<node>``): the requester's node
takes a request whose node stops naming it as lost (``outgoing.py``).
A stream request's items go back on the same reply subject through
:meth:`RemoteRequester.send_item` (``stream_relay.py``).

The other way, what is held for a requester node that has gone silent
(not heard on ``C._hb`` for three heartbeat intervals, ``members.py``),
a request or a stream, is dropped as for a requester gone, whoever runs
it stopped: nobody would read its answer or items. A requester node is
an incarnation (the token of its reply subject), so one restarted under
its name does not keep its predecessor's requests alive, and one shutting
down is heard (through its grace, ``members.py``) until it is gone. While
this node is cut off from NATS, and for three intervals after, it knows
nothing of the others and drops nothing for that (a stream its consumer's
node no longer waits for is cancelled by that node when this one names it
again, ``outgoing.py``); nor after its own loop stalled, which is not the
others' silence.

A request with an idempotency key is dropped the same ways (a cancel, its
node gone silent) but not stopped: its run belongs to the key, not to
whoever asked (docs/protocol.md §6.6 items 2, 7), as on one server when its
requester disconnects. The handler or responder runs on to its answer or
its own deadline, and the answer goes nowhere; a retry of the key that
reaches the responder meanwhile joins its run (item 10) rather than
finding it stopped by a cancel that was meant for the first try only.
"""

from __future__ import annotations

import asyncio
import json
import logging
from time import monotonic
from collections.abc import Awaitable, Callable
from typing import Any

from ipc_protocol import ErrorCode, Message, MessageType, clipped, decode_relayed, encode_message
from ipc_protocol.attachments import Frame
from ipc_protocol.idempotency import is_keyed
from ipc_protocol.messages import error_response

from ..frame_limit import PREFIX_BYTES
from ..stats import ServerStats
from .link import Link, Msg
from .members import SILENT_INTERVALS, Members, is_heard
from .subjects import Subjects

__all__ = ["Incoming", "RemoteRequester"]

log = logging.getLogger("ipc_server.cluster")


class _NoLimit:
    """A remote requester's in-flight count: its own node holds it to its limit."""

    __slots__ = ()
    count = 0
    paused = False
    deferred = None

    def started(self) -> None:
        pass

    def finished(self) -> None:
        pass


_NO_LIMIT = _NoLimit()


def frame_body(frame: Frame) -> bytes:
    """A frame's body as NATS carries it: without the length prefix, joined (§16)."""
    return frame[PREFIX_BYTES:] if frame.__class__ is bytes else frame.body()  # type: ignore[union-attr]  # a binary frame


class RemoteRequester:
    """A requester on another node, as this node's handlers and forwarding see it."""

    __slots__ = ("_incoming", "request", "reply", "node", "token", "app_id", "connection_id", "read_at", "traffic",
                 "handler_calls", "awaiting", "serving", "answered")  # fmt: skip

    legacy = False  # the requester's node re-encodes the answer for a version-1 requester
    is_open = True
    inflight = _NO_LIMIT
    peer = None
    client_name = "cluster"
    opened = True

    def __init__(self, incoming: Incoming, request: Message, reply: str, node: str, token: str, read_at: float) -> None:
        self._incoming = incoming
        self.request = request
        self.reply = reply
        self.node = node
        self.token = token
        self.app_id = request.app_id
        self.connection_id = f"{node}/{token}"
        self.read_at = read_at
        self.traffic = incoming.stats.traffic(request.app_id)
        self.handler_calls: set[Any] = set()
        self.awaiting: set[Any] = set()
        self.serving: set[Any] = set()
        self.answered = False

    @property
    def owner(self) -> Incoming:  # what HandlerCall reads: owner.stats
        return self._incoming

    def send(self, msg: Message, *, at_once: bool = False) -> bool:
        return self._incoming.answer(self, encode_message(msg))

    def send_frame(self, frame: Frame, *, at_once: bool = False) -> bool:
        return self._incoming.answer(self, frame_body(frame))

    def send_item(self, frame: Frame) -> None:
        """One item of the stream it requested (``streams.py``), not its answer."""
        self._incoming.relay.item(self, frame_body(frame))

    @property
    def backed_up(self) -> bool:
        """Items for it wait in the link (``StreamRelay.backed_up``)."""
        return not self.answered and self._incoming.relay.backed_up

    def drained(self) -> Awaitable[None]:
        return self._incoming.relay.room()  # type: ignore[no-any-return]

    def refuse(self, msg: Message, code: ErrorCode, text: str) -> None:
        self._incoming.stats.count_error(code)
        self.send(error_response(msg, code, text))

    def fits(self, frame: bytes) -> bool:
        return True

    def expect_answers(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<RemoteRequester {self.connection_id} {self.request.channel_id!r}>"


class Incoming:
    """Requests served here for other nodes.

    Args:
        route: routes a request from a stand-in like one from a local
            connection, locally only: an in-process handler, else a
            responder, else ``no_responders`` (the server's).
        withdraw: stops whatever runs a stand-in's request (a cancel).
    """

    def __init__(
        self,
        link: Link,
        subjects: Subjects,
        stats: ServerStats,
        *,
        route: Callable[[RemoteRequester, Message, bytes], None],
        withdraw: Callable[[RemoteRequester, str], None],
        members: Members,
        heartbeat_s: float,
    ) -> None:
        self._link = link
        self._subjects = subjects
        self.stats = stats
        self._route = route
        self._withdraw = withdraw
        self._members = members
        self._heartbeat_s = heartbeat_s
        self._silence_s = heartbeat_s * SILENT_INTERVALS
        self._held: dict[str, dict[str, RemoteRequester]] = {}  # requester node -> token -> stand-in
        self.relay: Any = None  # stream_relay.StreamRelay, set by the node: a stream's items and credit
        self._ticks: asyncio.Task[None] | None = None
        self.served = 0
        self.streams_dropped = 0  # held for a requester node that went silent
        self.requests_dropped = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._ticks = loop.create_task(self._tick())

    def close(self) -> None:
        if self._ticks is not None:
            self._ticks.cancel()

    def __len__(self) -> int:
        return sum(len(held) for held in self._held.values())

    async def on_request(self, nmsg: Msg) -> None:
        """A request (or notification) for this node, from NATS's queue group."""
        data = nmsg.data
        try:
            msg = decode_relayed(data)
        except Exception:  # noqa: BLE001 - another node sent what it read from a client: never expected
            log.warning("cluster: undecodable request on %s dropped", nmsg.subject)
            return
        self.served += 1
        reply = nmsg.reply
        if not reply or msg.message_type is not MessageType.REQUEST:  # a notification: nobody waits
            self._route(RemoteRequester(self, msg, "", "", "", self._now()), msg, data)
            return
        node, token = Subjects.reply_parts(reply)
        requester = RemoteRequester(self, msg, reply, node, token, self._now())
        self._held.setdefault(node, {})[token] = requester
        self._route(requester, msg, data)

    def answer(self, requester: RemoteRequester, body: bytes) -> bool:
        """The request's one answer, back to its node."""
        if requester.answered:
            self.stats.late_answers += 1
            return False
        requester.answered = True
        self._release(requester)
        if not requester.reply:
            return True
        if not self._link.publish(requester.reply, body) and self._link.too_large(len(body)):  # else lost: the requester's node hears it no more (§5)
            text = f"the answer ({len(body)} bytes) is larger than NATS accepts ({self._link.max_payload} bytes)"
            self.stats.count_error(ErrorCode.TOO_LARGE)
            self._link.publish(requester.reply, encode_message(error_response(requester.request, ErrorCode.TOO_LARGE, text)))
        return True

    def _release(self, requester: RemoteRequester) -> None:
        held = self._held.get(requester.node)
        if held is not None and held.pop(requester.token, None) is not None and not held:
            del self._held[requester.node]

    async def on_cancel(self, nmsg: Msg) -> None:
        """A requester node gave a request up: stop it, answer nothing."""
        try:
            note = json.loads(nmsg.data)
            node, token, reason = note["node"], note["token"], note["reason"]
        except (ValueError, KeyError, TypeError):
            return
        requester = self.held(node, token)
        if requester is not None:
            self.drop(requester, reason)

    def held(self, node: str, token: str) -> RemoteRequester | None:
        """The stand-in of request ``token`` of node ``node``, while it runs here."""
        return self._held.get(node, {}).get(token)

    def drop(self, requester: RemoteRequester, reason: str) -> None:
        """Give ``requester``'s request up without an answer: stop whoever
        runs it, but for a keyed one (module docstring)."""
        requester.answered = True
        self._release(requester)
        if not is_keyed(requester.request):
            self._withdraw(requester, reason)

    async def _tick(self) -> None:
        """Every heartbeat interval: what is held for a silent node is
        dropped, and each requester node is told what is held for it."""
        me = self._subjects.node
        loop = asyncio.get_running_loop()
        expected = loop.time() + self._heartbeat_s
        while True:
            await asyncio.sleep(self._heartbeat_s)
            now = loop.time()
            if now - expected <= self._heartbeat_s:  # else this node's own loop stalled: not the others' silence
                self._drop_silent()
            expected = now + self._heartbeat_s
            for node, held in list(self._held.items()):
                if held:
                    note = json.dumps({"node": me, "held": list(held)}).encode()
                    self._link.publish(self._subjects.notes_of(node), note)

    def _drop_silent(self) -> None:
        """Drop what is held for a requester node that went silent (module docstring)."""
        if not self._held or not self._members.knows():
            return  # cut off, or back too lately to have heard every node
        heard = self._members.heard()  # a node in its grace period still waits for their answers
        limit = monotonic() - self._silence_s
        for node, held in list(self._held.items()):
            if is_heard(node, heard):
                continue
            for requester in [r for r in held.values() if r.read_at < limit]:
                stream = requester.request.window is not None
                log.info("cluster: the node of a requester of '%s' went silent; its %s is dropped", clipped(requester.request.channel_id), "stream" if stream else "request")
                if stream:
                    self.streams_dropped += 1
                else:
                    self.requests_dropped += 1
                self.drop(requester, ErrorCode.CONNECTION_LOST)

    @staticmethod
    def _now() -> float:
        return monotonic()  # the clock of a connection's read_at (request metrics)
