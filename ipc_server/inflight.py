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

A held request (or stream request) with ``timeout_ms`` is answered
``timeout`` at its deadline, counted from its arrival, while it still waits,
and taken out: the connection's held requests share one timer
(``ipc_protocol.deadlines``), made the first time one with a deadline waits.

Once its peer half-closed (``watch``, half_close.py) the connection is told
(``settled``) each time what it sent may all have ended: nothing in
flight, a held request answered ``timeout``, a release done.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from ipc_protocol.deadlines import ASYNCIO_RESOLUTION_S, Deadlines
from ipc_protocol.envelope import CANCEL, CREDIT, NOTIFICATION, REQUEST, RESPONSE, STREAM_END, STREAM_ITEM, Message

__all__ = ["InflightLimit", "Held", "Reader"]

_TAKES_A_PLACE = frozenset({REQUEST, NOTIFICATION})
_ANSWERS = frozenset({RESPONSE, STREAM_ITEM, STREAM_END, CREDIT})  # to what the server sent: never held
_DEFAULT_HELD_BYTES = 16 * 1024 * 1024  # when max_frame_size is off
_HELD_OVERHEAD = 128  # a held frame's bytes object and entry, counted with its body


class Held:
    """A frame that waits for a place. ``gone``: its deadline passed, or a
    cancel named it: it never runs (an entry is its own key: hashed by identity)."""

    __slots__ = ("request_id", "body", "since", "timeout_ms", "gone", "place")

    def __init__(self, request_id: str | None, body: Any, since: float, timeout_ms: float | None, place: bool = True) -> None:
        self.request_id = request_id
        self.body = body
        self.since = since  # the loop's clock when it was held
        self.timeout_ms = timeout_ms
        self.gone = False
        self.place = place  # a request or notification: it goes only while a place is free


class Reader(Protocol):
    """The connection: its socket's reading, the release of held frames,
    the answer of one whose deadline passed, its loop's clock and timers,
    and, once half-closed, what may be its last request's end."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def release_held(self) -> None: ...

    def held_expired(self, entry: Held) -> None: ...

    def loop_time(self) -> float: ...

    def settled(self) -> None: ...

    def call_at(self, when: float, callback: Callable[[], None]) -> Any: ...


class InflightLimit:
    """Requests a connection sent that are being answered (handlers or
    forwarded), and the frames it sent that wait for one of them to end.

    Args:
        limit: hold new requests at this many; None: never.
        reader: the connection (no callbacks kept per connection).
        max_held_bytes: held frames past this stop the socket's reading.
    """

    __slots__ = (
        "count", "holding", "held", "held_bytes", "reading_paused", "_held_ids", "_limit", "_max_held_bytes", "_reader", "_releasing",
        "_gone", "_deadlines", "watch",
    )  # fmt: skip

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
        self._gone = 0  # entries of ``held`` that are gone, dropped in bulk (_gone_now)
        self._deadlines: Deadlines[Held] | None = None  # made for the first held request with a deadline
        self.watch = False  # its peer half-closed: settled() when what it sent may all have ended

    @property
    def held_count(self) -> int:
        """The frames that wait."""
        return len(self.held) - self._gone

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
        if self.watch and not self.count:
            self._reader.settled()

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
        return len(self.held) > self._gone and mtype not in _ANSWERS

    def hold(self, msg: Message, body: Any, now: float) -> None:
        request_id = msg.message_id if msg.message_type is REQUEST else None
        entry = Held(request_id, body, now, msg.timeout_ms if request_id is not None else None, msg.message_type in _TAKES_A_PLACE)
        self.held.append(entry)
        self.held_bytes += len(body) + _HELD_OVERHEAD
        if request_id is not None:
            self._held_ids.add(request_id)
            if entry.timeout_ms is not None:  # answered at its deadline if it still waits then (§12)
                deadlines = self._deadlines
                if deadlines is None:
                    reader = self._reader
                    deadlines = self._deadlines = Deadlines(self._expired, clock=reader.loop_time, call_at=reader.call_at, resolution=ASYNCIO_RESOLUTION_S)
                deadlines.add(entry, now + entry.timeout_ms / 1000.0)
        if not self.reading_paused and self.held_bytes > self._max_held_bytes:
            self.reading_paused = True
            self._reader.pause_reading()

    def take_next(self) -> Held | None:
        """The first held frame, taken out if it can go now: one that takes
        no place, or one that takes a place while one is free. Only it: the
        frames behind it stay held as they are, deadlines and all, so a
        release costs the frames that go, not every frame that waits.

        ``holding`` is off until :meth:`went`, so the frame is dispatched
        rather than held again behind the others."""
        held = self.held
        while held and held[0].gone:  # taken out already (a cancel, a deadline): dropped here
            held.popleft()
            self._gone -= 1
        if not held or (held[0].place and self.full):
            self.went()
            return None
        entry = held.popleft()
        self.held_bytes -= len(entry.body) + _HELD_OVERHEAD
        if entry.request_id is not None:
            self._held_ids.discard(entry.request_id)
            if entry.timeout_ms is not None and self._deadlines is not None:
                self._deadlines.discard(entry)
        self.holding = False
        return entry

    def went(self) -> None:
        """The frame :meth:`take_next` gave was dispatched: new work waits
        again while the limit is reached or frames still wait."""
        self.holding = self.full or len(self.held) > self._gone

    def released(self) -> bool:
        """After a release: whether the socket may be read again."""
        self._releasing = False
        if self.watch:
            self._reader.settled()
        if self.reading_paused and self.held_bytes <= self._max_held_bytes // 2:
            self.reading_paused = False
            return True
        return False

    def _drop(self, request_id: str | None) -> None:
        """A held request a cancel names never runs (§15.4 item 2)."""
        if request_id is None or request_id not in self._held_ids:
            return
        for entry in self.held:
            if entry.request_id == request_id and not entry.gone:
                self._gone_now(entry)
                return

    def _expired(self, entry: Held) -> None:
        """A held request's deadline passed while it waited: answered
        ``timeout`` (by the connection), it never runs."""
        if entry.gone:
            return
        self._gone_now(entry)
        self._reader.held_expired(entry)
        if self.watch:
            self._reader.settled()
        if self.reading_paused and self.held_bytes <= self._max_held_bytes // 2:
            self.reading_paused = False
            self._reader.resume_reading()

    def _gone_now(self, entry: Held) -> None:
        entry.gone = True
        self._gone += 1
        self.held_bytes -= len(entry.body) + _HELD_OVERHEAD
        self._held_ids.discard(entry.request_id)
        if self._deadlines is not None:
            self._deadlines.discard(entry)
        if self._gone * 2 >= len(self.held):  # dropped once they are half of what is held: O(1) each, amortized
            self.held = deque(e for e in self.held if not e.gone)
            self._gone = 0

    def closed(self) -> None:
        """The connection is gone: nothing it held is answered, its timer
        goes, and its held frames are freed now (up to ``max_frame_size``
        bytes of them)."""
        if self._deadlines is not None:
            self._deadlines.clear()
        self.held = deque()
        self.held_bytes = self._gone = 0
        self._held_ids = set()

    def __repr__(self) -> str:
        held = f" holding {self.held_count}" if self.holding else ""
        return f"<InflightLimit {self.count}/{self._limit}{held}{' reading paused' if self.reading_paused else ''}>"
