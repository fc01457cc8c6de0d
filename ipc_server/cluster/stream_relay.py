"""Streams (docs/protocol.md §15) across nodes (docs/cluster.md §3,
Streams): the consumer on one node, the producer on another, with the
contract of one node: items in order, credit end to end, one end.

A stream request nobody on the consumer's node takes goes to NATS like
any request (``outgoing.py``): the queue group gives it to one node that
serves the channel, where it is routed like any request from another node
(``incoming.py``) to an in-process handler or a responder, whose entry in
the server's ``Streams`` counts its credit, idle clock and deadline as for
a local consumer. Every frame of the stream then comes back on the
request's reply subject (``C._r.<consumer node>.<token>``), published by
one node on one subject, so NATS keeps their order:

- **items** carry a NATS reply subject, ``C._k.<producer node>.<consumer
  node>.<token>``: where the consumer's credit for this stream goes;
- **the end** (``stream_end``) or an **error** carries none, and is the
  request's one answer (``outgoing.py`` settles it).

The consumer's node relays each item to its consumer at once, holding
nothing: it counts the credit its consumer granted against the items that
came, so an item beyond it fails the stream ``bad_message`` (and one the
consumer does not accept, §12.3, ``too_large``), the producer's node being
sent a cancel. Credits the consumer grants go on to the producer's node,
which hands them to ``Streams`` as a local consumer's (an early grant,
before the first item named the subject, is sent with that item).

A stream a node hands on (every responder of it there full, ``outgoing.py``)
has both sides on that node: its items go on to the consumer's node as
they come, and the credits from there on to the producer's node.

Cancels cross as for any request (``C._c``); the producer's loss comes
back as its node's ``responder_lost``, and its node's death as the silence
of ``outgoing.py``. The other way, a producing node drops a stream whose
consumer's node (that incarnation of it) has gone silent, left the
cluster's heartbeats, for three heartbeat intervals: nobody would read its
items (``incoming.py``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from ipc_protocol import LOG_TEXT_LIMIT, ErrorCode, Message, MessageType, clipped, decode_relayed, encode_message
from ipc_protocol.framing import frame_parts
from ipc_protocol.streams import Credit, credit

from ..stats import ServerStats
from .incoming import Incoming, RemoteRequester
from .link import Link, Msg
from .subjects import Subjects

if TYPE_CHECKING:
    from ..connection import ServerConnection
    from ..streams import Streams
    from .outgoing import Outgoing, _Pending

__all__ = ["StreamRelay"]

log = logging.getLogger("ipc_server.cluster")

# nats-py tells nobody when its socket takes bytes: a producer waiting for
# the link's room (StreamRelay.room) looks again this often.
ROOM_LOOK_S = 0.002


class _Consumed:
    """A stream this node's consumer reads from another node."""

    __slots__ = ("credit", "to", "owed")

    def __init__(self, window: int) -> None:
        self.credit = Credit(window)  # what the producer may still send
        self.to = ""  # where its credit goes: named by its first item
        self.owed = 0  # granted before that


class StreamRelay:
    """Both sides of streams across nodes (module docstring)."""

    def __init__(
        self,
        link: Link,
        subjects: Subjects,
        stats: ServerStats,
        *,
        outgoing: Outgoing,
        incoming: Incoming,
        streams: Streams,
        max_pending: int,
    ) -> None:
        self._link = link
        self._backed_up_at = max_pending // 2  # what the link holds (Link.held) when producers here wait
        self._room_at = max_pending // 4  # and when they go on
        self._subjects = subjects
        self._stats = stats
        self._outgoing = outgoing
        self._incoming = incoming
        self._streams = streams
        self._open: dict[tuple[Any, str], _Pending] = {}  # (consumer, its request id) -> the request waiting
        outgoing.relay = incoming.relay = self
        # what the node reports (cluster stats)
        self.items_in = 0
        self.items_out = 0

    def __len__(self) -> int:
        return len(self._open)

    # -- the consumer's node ----------------------------------------------------------

    def opened(self, pending: _Pending) -> None:
        """A stream request went to NATS (``Outgoing.request``)."""
        pending.stream = _Consumed(pending.request.window)  # type: ignore[arg-type]  # a stream's request has one
        self._open[(pending.conn, pending.request.message_id)] = pending

    def closed(self, pending: _Pending) -> None:
        """Its one answer came, or it was given up (``Outgoing``): once."""
        self._open.pop((pending.conn, pending.request.message_id), None)

    def arrived(self, pending: _Pending, nmsg: Msg) -> None:
        """An item from the producing node: on to the consumer, at once."""
        consumed: _Consumed = pending.stream
        pending.heard = self._outgoing.loop.time()  # its node is alive
        if not consumed.to:
            consumed.to = nmsg.reply
            if consumed.owed:
                request = pending.request
                self._link.publish(consumed.to, encode_message(credit(request.app_id, request.channel_id, request.message_id, consumed.owed)))
                consumed.owed = 0
        if not consumed.credit.take():
            self._fail(pending, ErrorCode.BAD_MESSAGE, "the producer on another node sent an item beyond the credit it was granted")
            return
        conn = pending.conn
        frame = frame_parts(nmsg.data)  # a binary item as is, or tagged for a peer without binary (§16.5)
        if not conn.fits(frame):
            self._fail(pending, ErrorCode.TOO_LARGE, f"an item ({len(frame) - 4} bytes) is larger than the consumer accepts")
            return
        if isinstance(conn, RemoteRequester):  # handed on here by another node (outgoing.py): on to its consumer there
            conn.send_item(frame)
        else:
            conn.send_frame(frame)
        self.items_in += 1

    def credit(self, conn: ServerConnection, msg: Message) -> bool:
        """The consumer's ``credit`` (§15.3 item 2); False: not a stream served elsewhere."""
        pending = self._open.get((conn, msg.reply_to))  # type: ignore[arg-type]
        if pending is None:
            return False
        consumed: _Consumed = pending.stream
        grant: int = msg.window  # type: ignore[assignment]
        if not consumed.credit.grant(grant):
            self._fail(pending, ErrorCode.BAD_MESSAGE, "credit granted past 2^31-1 items")
        elif consumed.to:
            self._link.publish(consumed.to, encode_message(msg))
        else:
            consumed.owed += grant
        return True

    def _fail(self, pending: _Pending, code: ErrorCode, text: str) -> None:
        """End a stream with an error of this node's; its producer is cancelled."""
        log.info("stream %s on '%s' failed: %s: %s", clipped(pending.request.message_id), clipped(pending.request.channel_id), code, clipped(text, LOG_TEXT_LIMIT))
        self._outgoing.fail(pending, code, text)
        self._outgoing.cancel_remote(pending.token, code)

    # -- the producer's node ----------------------------------------------------------

    def item(self, requester: RemoteRequester, body: bytes) -> None:
        """An item for a consumer on another node (``RemoteRequester.send_item``)."""
        if requester.answered:  # given up (cancel, its node gone): dropped (§15.4)
            self._stats.late_answers += 1
            return
        if self._link.publish(requester.reply, body, f"{self._subjects.credits}.{requester.node}.{requester.token}"):
            self.items_out += 1
            return
        if self._link.too_large(len(body)):  # the stream fails, as one too large for its consumer
            code, text = ErrorCode.TOO_LARGE, f"an item ({len(body)} bytes) is larger than NATS accepts ({self._link.max_payload} bytes)"
            requester.refuse(requester.request, code, text)
        else:  # NATS away, or the link at its bound: its consumer's node answers it responder_lost
            code = ErrorCode.CONNECTION_LOST
        self._incoming.drop(requester, code)

    async def on_credit(self, nmsg: Msg) -> None:
        """A consumer's credit, on ``C._k.<this node>.<its node>.<token>``."""
        node, token = nmsg.subject.rsplit(".", 2)[1:]
        requester = self._incoming.held(node, token)
        if requester is None:  # the stream has ended here: a grant crossing its end is nothing
            return
        try:
            msg = decode_relayed(nmsg.data)
        except Exception:  # noqa: BLE001 - another node sent what its consumer sent: never expected
            log.warning("cluster: undecodable credit on %s dropped", nmsg.subject)
            return
        if msg.message_type is MessageType.CREDIT and msg.window is not None and msg.reply_to == requester.request.message_id:
            if not self.credit(requester, msg):  # type: ignore[arg-type]  # else a stream this node handed on: on to its producer's node
                self._streams.frame(requester, msg, nmsg.data)  # type: ignore[arg-type]  # as a local consumer's

    @property
    def backed_up(self) -> bool:
        """The link holds half its bound: this node's in-process producers
        for consumers elsewhere wait (``stream_producers``), as for a local
        consumer's backed-up connection, rather than run into the bound,
        which would drop their streams."""
        link = self._link
        return link.up and link.held >= self._backed_up_at

    async def room(self) -> None:
        """Until the link holds a quarter of its bound, or is down (the next
        item then fails the stream, as any item NATS cannot take)."""
        link = self._link
        while link.up and link.held > self._room_at:
            await asyncio.sleep(ROOM_LOOK_S)

    def figures(self) -> dict[str, int]:
        """For ``stats``' ``cluster``."""
        return {"streams_waiting": len(self._open), "stream_items_in": self.items_in, "stream_items_out": self.items_out, "streams_dropped": self._incoming.streams_dropped}
