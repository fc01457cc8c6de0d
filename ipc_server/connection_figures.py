"""What one server connection did, for its operator: messages and bytes
each way, why it closed, and its row in the ``connections`` system action
(docs/operations.md; NATS's ``/connz`` is the model).

A mixin of :class:`~ipc_server.connection.ServerConnection`, as
``flow_control`` is, with the slots it counts in. The pump counts frames and
bytes once per read and per write; messages by type are counted in the
app's shared :class:`~ipc_server.stats.AppTraffic` (``traffic``), one dict
increment per message.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .log_limits import LogLimits, flush_lines
from .logs import log, log_closed, peer_text
from .stats import HANDSHAKE_APP, AppTraffic, ServerStats

if TYPE_CHECKING:
    import asyncio

    from .connection_owner import ConnectionOwner
    from .inflight import InflightLimit
    from .outbound import Backlog

__all__ = ["ConnectionFigures"]


class ConnectionFigures:
    __slots__ = ("traffic", "frames_in", "frames_out", "bytes_in", "bytes_out", "read_at", "close_reason", "user", "log_limits", "taken", "taken_at", "queued")

    if TYPE_CHECKING:
        transport: asyncio.Transport | None
        inflight: InflightLimit
        protocol: Any
        app_id: str
        connection_id: str
        client_name: str
        legacy: bool
        opened: bool
        peer: Any
        connected_at: float
        serving: set[Any]
        subscriptions: Any
        responder_for: Any
        owner: ConnectionOwner
        _backlog: Backlog | None

    def _init_figures(self, stats: ServerStats) -> None:
        # Until the handshake completes no app is admitted: its frames count apart.
        self.traffic: AppTraffic = stats.apps[HANDSHAKE_APP]
        self.frames_in = 0
        self.frames_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.taken = 0  # bytes_out the kernel has taken (peer_took)
        self.taken_at = 0.0  # when some left a queue of ours for the kernel: the peer read
        self.queued = False  # some waited in a queue of ours at the last look
        # time.monotonic() of the latest read: when a request in it was received
        # (request durations, ipc_server.request_metrics).
        self.read_at = 0.0
        self.close_reason: str | None = None
        # The user it connected as (a users file's, or the name a token's connect gave), for its log lines.
        self.user: str | None = None
        self.log_limits: LogLimits | None = None  # its first refusal makes them (log_limits)

    def _closed_because(self, reason: str) -> None:
        """The first reason given for the close is the one logged."""
        if self.close_reason is None:
            self.close_reason = reason

    def _log_closed(self, exc: Exception | None) -> None:
        if self.close_reason is None:
            self.close_reason = "closed by the peer" if exc is None else f"connection lost: {exc}"
        flush_lines(self)  # what its refusals' lines left unsaid, before the close line; none after it
        quiet = not self.opened and exc is None and self.close_reason == "closed by the peer"
        # Refused at or before its handshake: one line per connection, limited per peer host (host_lines).
        if self.opened or quiet or self.owner.refusal_lines.allow(self.peer, self.close_reason.partition(":")[0], log):
            log_closed(self, self.close_reason, quiet=quiet)

    def peer_took(self, now: float) -> float:
        """When bytes last left a queue of ours (the transport's buffer, the
        backlog) for the kernel, which they do only as the peer reads: a
        subscriber reading a burst answers the server's ping only once it
        reaches it and sends nothing else, yet is no silent peer
        (docs/protocol.md §9, §12.2); its silence counts from then. Bytes
        the kernel takes with nothing queued (its buffer has room) say
        nothing: a peer that went takes them too, until the buffer is
        full. Asked once a sweep."""
        queued = self.outbound_bytes
        taken = self.bytes_out - queued
        if self.queued and taken != self.taken:
            self.taken_at = now
        self.taken, self.queued = taken, queued > 0
        return self.taken_at

    @property
    def outbound_bytes(self) -> int:
        """Bytes written for the peer that it has not read yet: in the
        transport's buffer and the backlog (§12)."""
        held = self._backlog.nbytes if self._backlog is not None else 0
        if self.transport is not None:
            held += self.transport.get_write_buffer_size()
        return held

    def figures(self, now: float) -> dict[str, Any]:
        """This connection's row of the ``connections`` action; ``now`` on the
        loop's clock."""
        return {
            "connection_id": self.connection_id,
            "app_id": self.app_id,
            "peer": peer_text(self.peer),
            "protocol": 1 if self.legacy else 2,
            "client": self.client_name,
            "tls": self.transport is not None and self.transport.get_extra_info("ssl_object") is not None,
            "uptime_s": round(now - self.connected_at, 3),
            "idle_s": round(time.monotonic() - self.read_at, 3) if self.read_at else None,
            "messages_in": self.frames_in,
            "messages_out": self.frames_out,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "pending_requests": self.inflight.count,
            "serving": len(self.serving),
            "subscriptions": len(self.subscriptions),
            "registrations": len(self.responder_for),
            "outbound_bytes": self.outbound_bytes,
            "held_frames": self.inflight.held_count,
            "reading_paused": self.inflight.reading_paused,
        }
