"""A peer that half-closes: it shuts its writing side (``shutdown(SHUT_WR)``,
a TCP FIN) once its requests are sent, and reads on (docs/protocol.md
§6.2, docs/legacy.md). ``nc``, a legacy script, a hand-written client do.

The server treated the EOF as the connection's end: the requests it had
sent were dropped, and it read nothing. As HTTP/1.1 servers and
nats-server do, the server now answers what was asked before it closes:

- at the EOF (past the handshake; plain TCP: asyncio's TLS transport
  cannot write after its peer's EOF), the connection stops being a
  subscriber and a responder at once, as on a close (``owner.half_closed``:
  its registrations go, the requests forwarded to it are answered
  ``responder_lost``);
- what it sent stays in flight: requests being answered (handlers,
  forwards, held for a responder, waiting under
  ``max_inflight_per_connection``), streams it consumes. Their answers are
  written to it; once the last ends, and what waits for it has gone to
  the socket, the server closes the connection;
- the wait is bounded: each request ends by its own deadline, and the
  connection closes at the latest ``default_request_timeout_s`` (60 s) after
  its EOF, ``shutdown_grace_s`` when that is off; what is still in flight
  then is dropped, as on any close;
- a half-closed peer sends nothing, pongs included: it is not pinged (but
  once, below) nor cut for silence, but it is cut if it reads nothing of
  what waits for it for the heartbeat timeout (§9), and the slow-consumer
  limits apply (§12.2).

With nothing in flight at its EOF, the connection closes at once, as before.

A FIN does not tell a half-close from a close: a peer that closed its
socket (our clients do, on ``disconnect()``) sends one too, and its
requests must go, its responders be sent ``cancel`` (§6.2, §15.4). So a
version-2 peer is sent one ping at its EOF: a closed socket answers it
with a reset, within a round trip, looked for 5, 20 and 80 ms later, then
at each heartbeat sweep (``peer_gone``); the connection is then lost as
any. A version-1 peer cannot be pinged (§9), so nothing would tell its
close from a half-close until an answer drew its reset: its EOF still
ends the connection at once, as the 1.1.x server did (no 1.1.x script can
count on a half-close).

A mixin of :class:`~ipc_server.connection.ServerConnection`, as
``flow_control`` is; it uses the connection's own fields, and one slot of
its own there, ``half_closed``: the timer that bounds the wait, None
until the EOF.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ipc_protocol import MessageType

from .peer_gone import peer_gone

if TYPE_CHECKING:
    import asyncio

    from .connection_owner import ConnectionOwner
    from .inflight import InflightLimit
    from .outbound import Backlog
    from .stats import AppTraffic

__all__ = ["HalfClose"]

_RESET_CHECKS_S = (0.005, 0.02, 0.08)  # after the EOF's ping; the sweep's look goes on after them


class HalfClose:
    __slots__ = ()

    if TYPE_CHECKING:
        owner: ConnectionOwner
        transport: asyncio.Transport | None
        inflight: InflightLimit
        protocol: Any
        opened: bool
        legacy: bool
        traffic: AppTraffic
        queued: bool
        half_closed: asyncio.TimerHandle | None
        _ended: bool
        _loop: asyncio.AbstractEventLoop | None
        _unread: Any
        _backlog: Backlog | None

        def _closed_because(self, reason: str) -> None: ...
        def close(self, reason: str = ..., *, linger: bool = ...) -> None: ...
        def abort(self) -> None: ...
        def peer_took(self, now: float) -> float: ...
        def drained(self) -> asyncio.Future[None]: ...
        def _queued(self, queued: int, at_once: bool = False) -> bool: ...

    def eof_received(self) -> bool | None:
        """The peer sends no more. True keeps the transport open for our
        writing while what it sent is answered; None closes it, as before:
        nothing in flight, no handshake completed, version 1, or TLS."""
        if self.half_closed is not None:
            return True  # read again after the EOF (asyncio calls this again): nothing new
        if self._ended or not self.opened or self.legacy or self.transport is None or self.transport.get_extra_info("ssl_object") is not None:
            return None
        if not self._in_flight():
            return None  # closed at once: "closed by the peer"
        loop = self._loop
        assert loop is not None
        config = self.owner.config
        bound = config.default_request_timeout_s or config.shutdown_grace_s
        self.half_closed = loop.call_later(bound, self._waited_too_long, bound)  # type: ignore[misc]  # ServerConnection's slot
        self.inflight.watch = True  # it tells settled() when nothing is left in flight
        # closed, not half-closed: a reset answers the ping (module docstring)
        self.protocol.send_ping(loop.time())
        self.traffic.sent[MessageType.REQUEST] += 1
        self._queued(self.protocol.frames_queued, True)
        for delay in _RESET_CHECKS_S:
            loop.call_later(delay, self._reset_seen)
        self.owner.half_closed(self)  # type: ignore[arg-type]  # a ServerConnection
        self.settled()
        return True

    def _in_flight(self) -> bool:
        """Requests it sent that are being answered, or frames of its that wait."""
        inflight = self.inflight
        return bool(inflight.count or inflight.held_count or self._unread is not None)

    def settled(self) -> None:
        """Something it sent ended (InflightLimit): the check runs once the
        answer is queued, in a later callback."""
        if self._loop is not None and not self._ended:
            self._loop.call_soon(self._close_if_done)

    def _close_if_done(self) -> None:
        if self._ended or self._in_flight():
            return
        if self._backlog is not None:  # its last answers wait for the transport: closed once they have gone
            self.drained().add_done_callback(lambda _: self._close_if_done())
            return
        self.close("half-closed by the peer: closed once its requests were answered")

    def _waited_too_long(self, bound: float) -> None:
        if self._ended:
            return
        inflight = self.inflight
        left = inflight.count + inflight.held_count
        self.close(f"half-closed by the peer: closed {bound:g} s after its EOF with {left} of its requests unanswered")

    def _reset_seen(self) -> bool:
        """Its reset shows it closed its socket, or went: lost as any (True)."""
        if self._ended:
            return True
        if peer_gone(self.transport) is None:
            return False
        self._closed_because("connection lost: reset by the peer after its EOF (closed, not half-closed)")
        self.abort()
        return True

    def _half_closed_tick(self, now: float) -> None:
        """The heartbeat sweep (§9) of a half-closed connection: it cannot
        answer a ping, so it is not pinged again nor cut for silence; it is
        cut if it reads nothing of what waits for it for the heartbeat
        timeout, or once its reset shows it closed its socket."""
        if self._reset_seen():
            return
        hb = self.protocol.heartbeat
        if hb is None:  # version 1, or heartbeats off: the bound and the slow-consumer limits only
            return
        took = self.peer_took(now)
        hb.silent_since = max(hb.silent_since, took) if self.queued else now  # nothing waits for it: not silent
        if now - hb.silent_since >= hb.timeout_s:
            self._closed_because(f"half-closed by the peer, and read nothing of what waits for it for {now - hb.silent_since:.1f} s (heartbeat, §9)")
            self.abort()
