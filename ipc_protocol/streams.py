"""Streams and cancellation, sans-I/O (docs/protocol.md §15): the features
a connection negotiates, the rules its frames obey, the frames themselves,
and the credit counts both ends keep.

The I/O layers (the server, both clients) do the waiting; what they wait
for is decided here, so the Node mirror (``js-client/lib/protocol/streams.js``)
and every Python user count the same way:

- :class:`Credit` is a producer's (and the relaying server's) count of the
  items it may still send: the request's ``window``, plus every ``credit``
  granted, minus the items sent. It never passes ``MAX_WINDOW`` (HTTP/2's
  31-bit window, RFC 9113 §6.9.1).
- :class:`Window` is a consumer's: it grants, in one frame, the items its
  application took since its last grant once they reach half the window,
  so at most ``size`` items are ever in flight or buffered.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .attachments import BINARY  # attachments (§16.1), independent of the other two
from .codes import ErrorCode
from .envelope import ErrorInfo, Message, MessageType
from .restarts import GOAWAY, LAME_DUCK  # the lame-duck and goaway notices (§13), independent too
from .wire_numbers import MAX_WINDOW

__all__ = [
    "CANCEL",
    "STREAMS",
    "BINARY",
    "FEATURES",
    "FLOW_TYPES",
    "MAX_WINDOW",
    "DEFAULT_WINDOW",
    "SLICE_ITEMS",
    "SLICE_S",
    "Credit",
    "Window",
    "negotiate",
    "offered_features",
    "flow_problem",
    "stream_item",
    "stream_end",
    "credit",
    "cancel",
    "cancel_reason",
]

CANCEL = "cancel"
STREAMS = "streams"
# What this implementation speaks, in the order a server names them (§15.1, §16.1).
FEATURES: tuple[str, ...] = (CANCEL, STREAMS, BINARY, LAME_DUCK, GOAWAY)
DEFAULT_WINDOW = 64  # items a consumer grants when it opens a stream
# A producer lets its loop run other work after this many items sent in a
# row, or after this long, even when its generator never waits: however
# large the window, a stream never holds up the loop it runs on (§15.6).
SLICE_ITEMS = 256
SLICE_S = 0.005

_STREAM_TYPES = frozenset({MessageType.STREAM_ITEM, MessageType.STREAM_END, MessageType.CREDIT})
# The message types of §15.2: a protocol checks them (flow_problem) before anyone routes them.
FLOW_TYPES = _STREAM_TYPES | {MessageType.CANCEL}


# -- the handshake (§15.1) ------------------------------------------------------


def offered_features(payload: dict[str, Any]) -> list[str] | None:
    """The ``features`` of a connect payload (None: not asked).

    Raises:
        ValueError: it is not a list of strings.
    """
    features = payload.get("features")
    if features is None:
        return None
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        raise ValueError("invalid connect: features must be a list of strings")
    return features


def negotiate(offered: Iterable[str], supported: Iterable[str] = FEATURES) -> list[str]:
    """The features both sides speak, in ``supported``'s order; ``streams``
    only with ``cancel`` (a consumer ends a stream early with a cancel)."""
    wanted = set(offered)
    granted = [f for f in supported if f in wanted]
    if STREAMS in granted and CANCEL not in granted:
        granted.remove(STREAMS)
    return granted


# -- the rules of the frames (§15.1 item 4, §15.2) -------------------------------


def flow_problem(msg: Message, features: frozenset[str]) -> str | None:
    """Why ``msg`` (a frame of §15, or a request with ``window``) may not be
    taken on a connection granted ``features``; None when it may."""
    mtype = msg.message_type
    if mtype is MessageType.REQUEST or mtype is MessageType.NOTIFICATION:
        if msg.window is None:
            return None
        if mtype is MessageType.NOTIFICATION:
            return "a notification cannot open a stream (window is for requests)"
        return None if STREAMS in features else "streams were not negotiated in the handshake (features)"
    if mtype in _STREAM_TYPES:
        if STREAMS not in features:
            return f"{mtype.value}: streams were not negotiated in the handshake (features)"
    elif mtype is MessageType.CANCEL:
        if CANCEL not in features:
            return "cancel was not negotiated in the handshake (features)"
    else:
        return None
    if msg.reply_to is None:
        return f"{mtype.value} without reply_to: it must name its request"
    if mtype is MessageType.CREDIT and msg.window is None:
        return "credit without window: it must say how many items it grants"
    return None


# -- the frames (§15.2) ------------------------------------------------------------


def stream_item(request: Message, payload: Any) -> Message:
    """One item of the stream answering ``request``."""
    return Message.build(MessageType.STREAM_ITEM, request.app_id, request.channel_id, payload, reply_to=request.message_id)


def stream_end(request: Message) -> Message:
    """The normal end of the stream answering ``request``."""
    return Message.build(MessageType.STREAM_END, request.app_id, request.channel_id, None, reply_to=request.message_id)


def credit(app_id: str, channel: str, request_id: str, grant: int) -> Message:
    """``grant`` more items for the stream of ``request_id``."""
    return Message.build(MessageType.CREDIT, app_id, channel, None, reply_to=request_id, window=grant)


def cancel(app_id: str, channel: str, request_id: str, reason: ErrorCode | str = ErrorCode.CANCELLED) -> Message:
    """The requester gives up on ``request_id``; ``reason`` is an error code."""
    return Message.build(MessageType.CANCEL, app_id, channel, {"reason": str(reason)}, reply_to=request_id)


def cancel_reason(msg: Message) -> str:
    """The ``reason`` a cancel carries (``cancelled`` when it says none)."""
    payload = msg.payload
    reason = payload.get("reason") if isinstance(payload, dict) else None
    return reason if isinstance(reason, str) and reason else str(ErrorCode.CANCELLED)


def error_info(code: ErrorCode | str, text: str) -> ErrorInfo:
    return ErrorInfo.model_construct(code=str(code), message=text, details=None, remote_type=None, remote_stack=None)


# -- the counts --------------------------------------------------------------------


class Credit:
    """The items a producer may still send (§15.3 item 2)."""

    __slots__ = ("available",)

    def __init__(self, window: int) -> None:
        self.available = window

    def grant(self, n: int) -> bool:
        """Add ``n``; False (and nothing added) past ``MAX_WINDOW``."""
        if self.available + n > MAX_WINDOW:
            return False
        self.available += n
        return True

    def take(self) -> bool:
        """Spend one for an item; False when none is left (the item may not go)."""
        if self.available <= 0:
            return False
        self.available -= 1
        return True

    def __repr__(self) -> str:
        return f"<Credit {self.available}>"


class Window:
    """A consumer's flow control: the grants its application's pace earns."""

    __slots__ = ("size", "_taken", "_every")

    def __init__(self, size: int | float = DEFAULT_WINDOW) -> None:
        # An integral float is its integer, as on the wire (docs/protocol.md §1.2) and in
        # Node, whose numbers cannot tell 2.0 from 2; a fraction, NaN, infinity or a bool is not.
        count = int(size) if size.__class__ is float and size.is_integer() else size
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_WINDOW:
            raise ValueError(f"window must be an integer from 1 to {MAX_WINDOW}, got {size!r}")
        self.size = count
        self._taken = 0
        self._every = max(1, count // 2)

    def taken(self) -> int:
        """The application took one item: the grant to send now (0: none yet)."""
        self._taken += 1
        if self._taken < self._every:
            return 0
        grant, self._taken = self._taken, 0
        return grant

    def __repr__(self) -> str:
        return f"<Window {self.size} taken={self._taken}>"
