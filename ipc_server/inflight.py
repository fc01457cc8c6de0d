"""A connection's requests in flight, and what it sends past its limit
(docs/protocol.md §12).

At ``max_inflight_per_connection`` requests being answered, the connection's
new requests and notifications wait here, in order, and so does whatever it
sends after one that waits (publishes, subscriptions...). The server keeps
reading what answers it, though: responses to the requests it forwarded,
stream items and ends, credit, cancels, pings. So a connection whose calls
can only finish through its own frames (a client that serves what it calls,
a stream that needs the consumer's credit, a cancel, a heartbeat) never
wedges itself. Only when what waits passes ``max_frame_size`` bytes (what
a connection can make the server hold anyway) does the server stop reading
the socket, and the rest waits in it (TCP backpressure). Held frames go on as
places free up, one at a time, so the limit holds exactly.
"""

from __future__ import annotations

from collections import deque
from typing import Any, NamedTuple, Protocol

from ipc_protocol.envelope import CANCEL, CREDIT, NOTIFICATION, REQUEST, RESPONSE, STREAM_END, STREAM_ITEM, Message

__all__ = ["InflightLimit", "Held", "Reader"]

_TAKES_A_PLACE = frozenset({REQUEST, NOTIFICATION})
_ANSWERS = frozenset({RESPONSE, STREAM_ITEM, STREAM_END, CREDIT})  # to what the server sent: never held
_DEFAULT_HELD_BYTES = 16 * 1024 * 1024  # when max_frame_size is off
_HELD_OVERHEAD = 128  # a held frame's bytes object and entry, counted with its body


class Held(NamedTuple):
    """A frame that waits for a place."""

    request_id: str | None
    body: Any
    since: float  # the loop's clock when it was held
    timeout_ms: float | None


class Reader(Protocol):
    """The connection: its socket's reading, and the release of held frames."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def release_held(self) -> None: ...


class InflightLimit:
    """Requests a connection sent that are being answered (handlers or
    forwarded), and the frames it sent that wait for one of them to end.

    Args:
        limit: hold new requests at this many; None: never.
        reader: the connection (no callbacks kept per connection).
        max_held_bytes: held frames past this stop the socket's reading.
    """

    __slots__ = ("count", "holding", "held", "held_bytes", "reading_paused", "_held_ids", "_limit", "_max_held_bytes", "_reader", "_releasing")

    def __init__(self, limit: int | None, reader: Reader, max_held_bytes: int | None = None) -> None:
        self.count = 0
        self.holding = False  # at the limit, or frames wait: new work is held (read on every frame)
        # Held frames as they came (decoded again when they go: a decoded
        # payload can be many times its bytes): a request's id, and when it
        # was held with its timeout_ms, so that it goes with what is left.
        self.held: deque[Held] = deque()
        self.held_bytes = 0
        self.reading_paused = False  # the socket itself is not read
        self._held_ids: set[str] = set()
        self._limit = limit
        self._max_held_bytes = max_held_bytes or _DEFAULT_HELD_BYTES
        self._reader = reader
        self._releasing = False

    @property
    def full(self) -> bool:
        return self._limit is not None and self.count >= self._limit

    def started(self) -> None:
        self.count += 1
        if self._limit is not None and self.count >= self._limit:
            self.holding = True

    def finished(self) -> None:
        self.count -= 1
        if self.holding and not self._releasing and self._limit is not None and self.count < self._limit:
            self._releasing = True
            self._reader.release_held()  # in a loop iteration of its own, not inside the answer's call

    def waits(self, msg: Message) -> bool:
        """Whether ``msg`` waits (only asked while ``holding``): new work
        does, and anything behind held work; answers never. A cancel goes
        at once: it stops a running call, or takes a held one out."""
        mtype = msg.message_type
        if mtype in _TAKES_A_PLACE:
            return True
        if mtype is CANCEL:
            self._drop(msg.reply_to)
            return False
        return bool(self.held) and mtype not in _ANSWERS

    def hold(self, msg: Message, body: Any, now: float) -> None:
        request_id = msg.message_id if msg.message_type is REQUEST else None
        self.held.append(Held(request_id, body, now, msg.timeout_ms if request_id is not None else None))
        self.held_bytes += len(body) + _HELD_OVERHEAD
        if request_id is not None:
            self._held_ids.add(request_id)
        if not self.reading_paused and self.held_bytes > self._max_held_bytes:
            self.reading_paused = True
            self._reader.pause_reading()

    def take_held(self) -> list[Held]:
        """The held frames, to dispatch again now that a place is free; any
        that cannot go yet come back through :meth:`hold`, in order."""
        held = list(self.held)
        self.held.clear()
        self._held_ids.clear()
        self.held_bytes = 0
        self.holding = self.full
        return held

    def released(self) -> bool:
        """After a release: whether the socket may be read again."""
        self._releasing = False
        if self.reading_paused and self.held_bytes <= self._max_held_bytes // 2:
            self.reading_paused = False
            return True
        return False

    def _drop(self, request_id: str | None) -> None:
        """A held request a cancel names never runs (§15.4 item 2)."""
        if request_id is None or request_id not in self._held_ids:
            return
        for i, entry in enumerate(self.held):
            if entry.request_id == request_id:
                del self.held[i]
                self.held_bytes -= len(entry.body) + _HELD_OVERHEAD
                self._held_ids.discard(request_id)
                return

    def __repr__(self) -> str:
        held = f" holding {len(self.held)}" if self.holding else ""
        return f"<InflightLimit {self.count}/{self._limit}{held}{' reading paused' if self.reading_paused else ''}>"
