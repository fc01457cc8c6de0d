"""A server connection's flow control, both ways (docs/protocol.md §12).

Reading: at ``max_inflight_per_connection`` requests being answered the
connection's new work waits (``inflight.InflightLimit``) while what answers
the server is still read; the held frames go on as places free up, and
the socket itself stops being read only when too much is held.

Writing: past the transport's high-water mark frames wait in a backlog,
and a peer that stays behind is cut as a slow consumer (``outbound``).

A mixin of :class:`~ipc_server.connection.ServerConnection`, kept apart so
that the pump stays readable; it uses the connection's own fields.
"""

from __future__ import annotations

from time import monotonic
from typing import TYPE_CHECKING, Any

from ipc_protocol import ErrorCode, Message, decode_message
from ipc_protocol.protocol import ProtocolState

from .outbound import Backlog
from .reading import TURN_BUDGET_S
from .time_left import time_left_ms, with_time_left

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

    from ipc_protocol.server_protocol import ServerProtocol

    from .inflight import Held, InflightLimit
    from .outbound import OutboundLimits
    from .stats import ServerStats

__all__ = ["FlowControl"]


class FlowControl:
    __slots__ = ()

    if TYPE_CHECKING:
        transport: asyncio.Transport | None
        inflight: InflightLimit
        protocol: ServerProtocol
        app_id: str
        connection_id: str
        peer: Any
        _loop: asyncio.AbstractEventLoop | None
        _stats: ServerStats
        _limits: OutboundLimits
        _backlog: Backlog | None
        _ended: bool
        _unread: Any
        half_closed: Any

        def _dispatch(self, frames: list[bytes]) -> None: ...
        def refuse(self, msg: Message, code: ErrorCode, text: str) -> None: ...
        def _write_pending(self) -> None: ...
        def fail(self, code: ErrorCode | str, message: str, *, reply_to: str | None = None) -> None: ...
        def settled(self) -> None: ...

    # -- reading: the in-flight limit ------------------------------------------

    @property
    def reading_paused(self) -> bool:
        return self.inflight.reading_paused

    def pause_reading(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        """The socket is read again, unless frames already read wait for a turn
        (reading.py); past its peer's EOF there is nothing left to read, but
        what it sent may all have gone on now (half_close.py)."""
        if self.half_closed is not None:
            self.settled()
        elif self.transport is not None and self.protocol.state is ProtocolState.OPEN and self._unread is None:
            self.transport.resume_reading()

    def release_held(self) -> None:
        """A place came free: the held frames go on in a loop iteration of
        their own, not inside the call that answered."""
        self._loop.call_soon(self._release_held)  # type: ignore[union-attr]

    def _release_held(self) -> None:
        """The held frames that can go now go, in order, one at a time: each
        request or notification while a place is free, and what takes no
        place up to the next one that cannot go. The rest stay held,
        untouched (their deadlines too): a release costs what it lets go.
        Past a turn's budget the rest go on in a later loop iteration."""
        inflight = self.inflight
        started = monotonic()
        while not self._ended:
            entry = inflight.take_next()
            if entry is None:
                break
            body = self._aged(entry)
            if body is not None:
                self._dispatch([body])  # decoded again, alone: it goes now, ahead of frames still unread
            inflight.went()
            if monotonic() - started >= TURN_BUDGET_S and inflight.held_count:  # full too: what takes no place still goes
                self._loop.call_soon(self._release_held)  # type: ignore[union-attr]  # still releasing: no other call is queued
                return
        if inflight.released() and not self._ended:
            self.resume_reading()

    def held_expired(self, entry: Held) -> None:
        """A held request's deadline passed while it waited (inflight.py):
        answered ``timeout`` now, taken out, never run (§12)."""
        if self._ended:
            return
        msg = decode_message(entry.body)  # it was read and checked once already
        self.refuse(msg, ErrorCode.TIMEOUT, _waited(entry.timeout_ms))

    def loop_time(self) -> float:
        return self._loop.time()  # type: ignore[union-attr]

    def call_at(self, when: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return self._loop.call_at(when, callback)  # type: ignore[union-attr]

    def _aged(self, entry: Held) -> Any:
        """A held request goes with the time it waited taken off its
        ``timeout_ms`` (time_left.py); one whose deadline passed is
        answered ``timeout`` and never runs."""
        timeout_ms = entry.timeout_ms
        if timeout_ms is None:
            return entry.body
        left = time_left_ms(timeout_ms, entry.since, self._loop.time())  # type: ignore[union-attr]
        if left >= timeout_ms:
            return entry.body
        msg = decode_message(entry.body)  # it was read and checked once already
        if left <= 0:
            self.refuse(msg, ErrorCode.TIMEOUT, _waited(timeout_ms))
            return None
        return with_time_left(msg, entry.body, left)[1]

    # -- writing: slow consumers (outbound.py) --------------------------------

    def pause_writing(self) -> None:
        """The transport holds its high-water mark: frames wait in a backlog."""
        if self._backlog is None:
            # the slot is ServerConnection's: mypy checks a mixin's assignments against its empty __slots__
            self._backlog = Backlog()  # type: ignore[misc]
        self._backlog.paused = True

    def resume_writing(self) -> None:
        backlog = self._backlog
        if backlog is not None and self.transport is not None and backlog.resume(self.transport):
            self._backlog = None  # type: ignore[misc]  # ServerConnection's slot, as above
            backlog.gone()

    @property
    def backed_up(self) -> bool:
        """Frames wait for the transport to drain: what adds to them adds to the backlog."""
        return self._backlog is not None

    def drained(self) -> asyncio.Future[None]:
        """Done once the backlog has drained, or been dropped by a cut
        (at once when there is none): an in-process stream's producer
        waits on it rather than grow the backlog (stream_producers, §12.2).
        One future for every producer on the connection, so each awaits it
        shielded; a connection that closes stops its producers instead."""
        backlog = self._backlog
        loop = self._loop
        assert loop is not None
        if backlog is None:
            done: asyncio.Future[None] = loop.create_future()
            done.set_result(None)
            return done
        if backlog.drained is None:
            backlog.drained = loop.create_future()
        return backlog.drained  # type: ignore[no-any-return]

    def _past_hard(self, backlog: Backlog, size: int) -> bool:
        """A frame of ``size`` bytes was queued while backed up: past the hard
        limit the peer is cut now, within a frame of it, not once the loop
        iteration ends (§12.2: "at once"). True: cut."""
        backlog.unsent += size
        hard = self._limits.hard
        if hard is None or backlog.nbytes + backlog.unsent + (self.transport.get_write_buffer_size() if self.transport is not None else 0) <= hard:
            return False
        self._write_pending()
        self._check_backlog(backlog)
        return self._backlog is None

    def _check_backlog(self, backlog: Backlog) -> None:
        """Once per loop iteration while backed up: cut a peer past a limit.
        The backlog's frames are dropped, whole, so the error frame is next."""
        buffered = backlog.nbytes + (self.transport.get_write_buffer_size() if self.transport is not None else 0)
        limit = self._limits.exceeded(backlog, buffered, self._loop.time())  # type: ignore[union-attr]
        if limit is None:
            return
        self._backlog = None  # type: ignore[misc]  # ServerConnection's slot, as above
        backlog.gone()
        if self.transport is not None:  # a large frame that has begun ends before the error frame
            for view in backlog.begun_rest():
                self.transport.write(view)
            backlog.unwindow(self.transport)
        self._stats.slow_consumer(self.app_id, self.connection_id, limit, buffered)
        # Its close line says it, at WARNING (logs.log_closed): one event, one line.
        self.fail(ErrorCode.SLOW_CONSUMER, f"{buffered} bytes waiting to be read, over the server's {limit} limit: reading too slowly")


def _waited(timeout_ms: float | None) -> str:
    return f"its {timeout_ms:g} ms passed while it waited for a place (max_inflight_per_connection, docs/protocol.md §12)"
