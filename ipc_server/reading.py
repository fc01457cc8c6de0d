"""A connection's reading: its frames through its protocol to the server,
in order, a share of a loop turn at a time (docs/protocol.md §12).

One read brings up to 256 KiB of frames, and some frames cost milliseconds
(``channels`` from a connection holding 100,000 patterns, a publish that
matches 65,536 of them). Dispatched whole in one loop turn, a read held
every other connection for as long as its frames took: 300 ``channels``
requests in one write held the server for 48 s. So a connection's frames go
on for at most ``TURN_BUDGET_S`` of a turn; what is left waits here, in
order (``_unread``), the socket is not read meanwhile (TCP backpressure on
the peer), and it goes on in a later turn (``call_soon``), after the other
connections' reads of the turn between. A frame is never split: one that
alone costs more than the budget is the turn's last.

The budget is one for every connection whose frames wait for a turn,
shared between them (``SharedReads.turn_s``: 5 ms over the number waiting,
at least ``MIN_TURN_S``): 20 connections each with a full write of frames
held a request of another for 20 turns of 5 ms, at each hop; with the
budget shared, a round of turns takes about 5 ms however many there are
(until ``MIN_TURN_S`` each, at 20 connections waiting). One connection
waiting alone has the whole budget, as before.

The budget's clock is read after the 1st, 2nd, 4th, 8th, 16th and 32nd
frames of a turn, then after every 32nd: a costly frame ends its turn at
once, and a read of cheap frames pays an integer comparison per frame (a
read of one frame, none).

A mixin of :class:`~ipc_server.connection.ServerConnection`, as
``flow_control`` is; it uses the connection's own fields.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from operator import length_hint
from time import monotonic
from typing import TYPE_CHECKING, Any

from ipc_protocol import ErrorCode, Message, clipped

if TYPE_CHECKING:
    import asyncio

    from ipc_protocol.server_protocol import ServerProtocol

    from .connection_owner import ConnectionOwner, SharedReads
    from .inflight import InflightLimit
    from .stats import AppTraffic, ServerStats

__all__ = ["Reading", "TURN_BUDGET_S", "MIN_TURN_S", "NOTHING"]

log = logging.getLogger("ipc_server.connection")

# How long one connection's frames may hold the loop in one turn (in-process
# streams take turns of at most 5 ms too, stream_producers).
TURN_BUDGET_S = 0.005
MIN_TURN_S = 0.00025  # a turn's least share of it: a turn costs ~10 µs of the loop's own
_CHECK_EVERY = 32  # frames between two readings of the clock, after the first 32

NOTHING: Any = frozenset()  # a connection's registrations and handler calls until its first (connection.py)


class Reading:
    __slots__ = ()

    if TYPE_CHECKING:
        owner: ConnectionOwner
        protocol: ServerProtocol
        transport: asyncio.Transport | None
        inflight: InflightLimit
        handler_calls: Any
        traffic: AppTraffic
        connection_id: str
        bytes_in: int
        frames_in: int
        read_at: float
        _stats: ServerStats
        _reads: SharedReads
        _loop: asyncio.AbstractEventLoop | None
        _ended: bool
        _answers_expected: bool
        _flush_handle: asyncio.Handle | None
        _unread: deque[Iterator[bytes]] | None
        _next_turn: asyncio.Handle | None

        def _event(self, event: Any) -> None: ...
        def _violated(self, violation: Any) -> None: ...
        def _flush(self) -> None: ...
        def fail(self, code: ErrorCode | str, message: str, *, reply_to: str | None = None) -> None: ...
        def resume_reading(self) -> None: ...

        @property
        def is_open(self) -> bool: ...

    # -- asyncio.Protocol ------------------------------------------------

    def data_received(self, data: bytes | memoryview) -> None:
        if self._ended:
            return
        stats = self._stats
        stats.bytes_in += len(data)
        self.bytes_in += len(data)  # type: ignore[misc]  # ServerConnection's slots (_wait_for_a_turn)
        self.read_at = started = monotonic()  # type: ignore[misc]
        protocol = self.protocol
        frames = protocol.receive_data(data, self._loop.time())  # type: ignore[union-attr]
        if frames:
            self.frames_in += len(frames)  # type: ignore[misc]
            if self._unread is not None:  # frames of earlier reads wait for a turn: these go after them
                self._unread.append(iter(frames))
            else:
                self._run(iter(frames), len(frames) == 1, started)
        elif protocol.violation is not None:
            self._violated(protocol.violation)

    @property
    def unread_frames(self) -> int:
        """Frames read but not yet dispatched: they wait for a turn."""
        return sum(map(length_hint, self._unread)) if self._unread is not None else 0

    def _dispatch(self, frames: list[bytes]) -> None:
        """``frames`` (held ones that go on: flow_control) ahead of any that wait for a turn."""
        self._run(iter(frames), len(frames) == 1, monotonic())

    def _run(self, frames: Iterator[bytes], lone: bool, started: float) -> None:
        """Each frame through the protocol, then to the server, in order,
        until the turn's budget is spent; the rest wait for a later turn."""
        receive_frame = self.protocol.receive_frame
        dispatch = self.owner.dispatch
        self.protocol.defer_payloads = self.handler_calls is NOTHING or not self.owner.handlers  # until it calls one (relayed.py)
        message_class = Message
        received = self.traffic.received  # the app's counters (stats.AppTraffic)
        inflight = self.inflight
        reads = self._reads
        # A read of one frame: what it sends has nothing to wait for (send_frame).
        reads.lone, reads.batch = lone, not lone
        n, check = 0, (0 if lone else 1)
        try:
            for body in frames:
                if self._ended:  # failed or closed while dispatching: read no more
                    return
                item = receive_frame(body)
                if item.__class__ is message_class:
                    if inflight.holding and inflight.waits(item):  # at the in-flight limit (inflight.py)
                        inflight.hold(item, body, self._loop.time())  # type: ignore[union-attr]
                    else:
                        received[item.message_type] += 1
                        if item.attachments is not None:  # a binary frame (§16)
                            self._stats.binary_frames += 1
                        try:
                            dispatch(self, item, body)  # type: ignore[arg-type]  # a ServerConnection
                        except Exception:  # a bug or an unencodable relay: never crash the loop
                            log.exception("dispatching %s %s from %s failed", item.message_type.value, clipped(item.message_id), clipped(self.connection_id))
                            self.fail(ErrorCode.BAD_MESSAGE, "the server could not process this message", reply_to=item.message_id)
                            return
                else:
                    self._event(item)
                    received = self.traffic.received  # an accepted connect changes the app
                n += 1
                if n == check:  # the budget (module docstring)
                    check = n + n if n < _CHECK_EVERY else n + _CHECK_EVERY
                    if monotonic() - started >= reads.turn_s and length_hint(frames) and not self._ended:
                        self._wait_for_a_turn(frames)
                        break
        finally:
            reads.lone = reads.batch = False
        if self._answers_expected:
            self._answers_expected = False  # type: ignore[misc]
            # The handler tasks this read started run first in the next loop iteration;
            # a flush queued behind them sends what they answered in that same one.
            if self._flush_handle is None and self.is_open:
                self._flush_handle = self._loop.call_soon(self._flush)  # type: ignore[misc, union-attr]

    def _wait_for_a_turn(self, frames: Iterator[bytes]) -> None:
        """The turn's budget is spent: ``frames`` go on, first, in a later turn;
        the socket is not read until every frame read has gone."""
        if self._unread is None:
            self._unread = deque()  # type: ignore[misc]  # ServerConnection's slot: mypy checks a mixin's assignments against its empty __slots__
            self._reads.waits(1)
        self._unread.appendleft(frames)
        if self._next_turn is None:
            self._next_turn = self._loop.call_soon(self._take_a_turn)  # type: ignore[misc, union-attr]
        if self.transport is not None:
            self.transport.pause_reading()

    def _take_a_turn(self) -> None:
        self._next_turn = None  # type: ignore[misc]
        unread, started = self._unread, monotonic()
        while unread and not self._ended:
            self._run(unread.popleft(), False, started)
            if self._next_turn is not None:  # the budget is spent again
                return
        if self._unread is not None:  # not dropped meanwhile (_drop_unread)
            self._unread = None  # type: ignore[misc]
            self._reads.waits(-1)
        if not self._ended and not self.inflight.reading_paused:
            self.resume_reading()

    def _drop_unread(self) -> None:
        """The connection is gone: what it sent that has not gone on never will."""
        if self._next_turn is not None:
            self._next_turn.cancel()
            self._next_turn = None  # type: ignore[misc]
        if self._unread is not None:
            self._unread = None  # type: ignore[misc]
            self._reads.waits(-1)
