"""The no-responders grace (docs/protocol.md §13.2): after a restart, clients
replay their queued requests before the responders they target are back, and
an immediate ``no_responders`` fails them for nothing. So, for
``no_responders_grace_s`` after the first client's connect reaches the
server, and for any request a
client marks as replayed (``ipc_protocol.restarts.REPLAY_HEADER``), a request
for a channel nobody serves is held until a responder or an in-process
handler registers for it, then routed to it; at the grace's end (or a little
before the request's own deadline) it is answered ``no_responders``.
Outside the window ``no_responders`` stays immediate.

The window opens at the first connect, not at the listen: a server started
in its predecessor's lame duck (docs/resilience.md §12 step 4) listens
seconds before the clients come, and a window opened then was over before
them (95-111 requests a restart failed ``no_responders`` with a 3 s lame duck).

Held requests are bounded as the ones being answered are: each counts in its
requester's in-flight limit (``max_inflight_per_connection``, §12), so a
client that floods unserved channels meets the same pause of its reading.
A registration, a new handler, a requester gone or giving up (``cancel``,
§15.4), a shutdown: each settles what it concerns (routed, dropped
unanswered, ``shutting_down``).
"""

from __future__ import annotations

import asyncio
import itertools
import math
from dataclasses import dataclass
from typing import Any

from ipc_protocol import SYSTEM_CHANNEL, ErrorCode, Message
from ipc_protocol.deadlines import ASYNCIO_RESOLUTION_S, Deadlines
from ipc_protocol.restarts import is_replay

from .admission import App
from .config import ServerConfig
from .forwarding import Forwarding
from .handlers import HandlerCalls
from .router import HandlerRegistry
from .stats import ServerStats
from .time_left import time_left_ms, with_time_left

__all__ = ["Grace"]

# A held request is answered this share of its time before its deadline (at
# most _MARGIN_S), so that its requester reads no_responders, not its own timeout.
_MARGIN_SHARE = 0.1
_MARGIN_S = 0.05

_Key = tuple[str, int]  # (app, a number of this module's own)


@dataclass(slots=True)
class _Held:
    conn: Any  # a ServerConnection, or an idempotency Run standing in for its requesters (§6.6)
    msg: Message
    body: bytes
    text: str  # the no_responders answer's text, should nobody come
    since: float  # loop time it was held


def _load(conn: Any) -> int:
    return len(conn.serving)


class Grace:
    """Requests held for want of a responder, by app.

    Args:
        handlers, apps, calls, forwarding: the server's, to route a held
            request as ``IPCServer._route`` would (§6.1, §8).
    """

    def __init__(
        self, config: ServerConfig, stats: ServerStats, *, handlers: HandlerRegistry, apps: dict[str, App], calls: HandlerCalls, forwarding: Forwarding
    ) -> None:
        self.grace_s = config.no_responders_grace_s
        self._handlers, self._apps, self._calls, self._forwarding = handlers, apps, calls, forwarding
        # Loop time until which every request may be held: -inf until the first client opens it (client_came()), once a server's life.
        self._window_ends = -math.inf
        self._held: dict[str, dict[int, _Held]] = {}
        self._ids = itertools.count()
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # the server's, once started
        self._deadlines: Deadlines[_Key] = Deadlines(
            self._expired, clock=lambda: self.loop.time(), call_at=lambda when, cb: self.loop.call_at(when, cb), resolution=ASYNCIO_RESOLUTION_S
        )
        # In ``stats``: held so far, holding now, routed once a responder came, answered no_responders.
        self.figures = stats.grace = {"held": 0, "holding": 0, "routed": 0, "expired": 0}

    def client_came(self) -> None:
        """A connect arrived: the first opens the start's window (module docstring)."""
        if self._window_ends == -math.inf:
            self._window_ends = self.loop.time() + self.grace_s

    def no_responders(self, conn: Any, msg: Message, body: bytes, text: str) -> None:
        """Nobody serves ``msg``'s channel: hold it within the grace, else
        answer ``no_responders`` with ``text`` now (§6.1)."""
        if not self._hold(conn, msg, body, text):
            conn.refuse(msg, ErrorCode.NO_RESPONDERS, text)

    def _hold(self, conn: Any, msg: Message, body: bytes, text: str) -> bool:
        if not self.grace_s:
            return False
        now = self.loop.time()
        if now >= self._window_ends and not is_replay(msg.headers):
            return False
        until = now + self.grace_s
        if msg.timeout_ms is not None:
            left = msg.timeout_ms / 1000.0
            until = min(until, now + left - min(left * _MARGIN_SHARE, _MARGIN_S))
        if until <= now:
            return False
        number = next(self._ids)
        self._held.setdefault(conn.app_id, {})[number] = _Held(conn, msg, body, text, now)
        self._deadlines.add((conn.app_id, number), until)
        conn.inflight.started()  # bounded as a request being answered (§12)
        self.figures["held"] += 1
        self.figures["holding"] += 1
        return True

    def registered(self, app_id: str | None) -> None:
        """A responder registered in ``app_id`` (None: a handler for every
        app was added): its held requests try again, oldest first."""
        if not self._held:
            return
        for app in list(self._held) if app_id is None else [app_id]:
            held = self._held.get(app)
            if held is None:
                continue
            for number, entry in list(held.items()):
                entry.conn.inflight.finished()  # counted again by the handler or the forward
                if self._route(entry):
                    self._drop(app, number)
                    self.figures["routed"] += 1
                else:
                    entry.conn.inflight.started()

    def _route(self, entry: _Held) -> bool:
        """Route ``entry`` as the server does (§6.1; ``system``: §8), if anyone serves it now."""
        conn, msg = entry.conn, entry.msg
        app = self._apps.get(conn.app_id)
        if msg.channel_id == SYSTEM_CHANNEL:
            handler = self._handlers.get(SYSTEM_CHANNEL, conn.app_id) or self._handlers.get(SYSTEM_CHANNEL)
            responder = None if handler is not None or app is None else app.responders.pick_exact(SYSTEM_CHANNEL, _load)
        else:
            handler = self._handlers.find(conn.app_id, msg.channel_id)
            responder = None if handler is not None or app is None else app.responders.pick(msg.channel_id, _load)
        if handler is None and responder is None:
            return False
        msg, body = self._aged(entry)
        if handler is not None:
            self._calls.run(conn, msg, handler)
        elif responder is not None:
            self._forwarding.forward(conn, msg, body, responder)
        return True

    def _aged(self, entry: _Held) -> tuple[Message, bytes]:
        """The request with the time it waited taken off its ``timeout_ms`` (time_left.py)."""
        msg = entry.msg
        if msg.timeout_ms is None:
            return msg, entry.body
        left = max(time_left_ms(msg.timeout_ms, entry.since, self.loop.time()), 1)  # its expiry is this module's own
        return (msg, entry.body) if left >= msg.timeout_ms else with_time_left(msg, entry.body, left)

    def _drop(self, app: str, number: int) -> _Held | None:
        """Take one held request out of the tables, its deadline with it."""
        held = self._held.get(app)
        entry = held.pop(number, None) if held is not None else None
        if entry is None:
            return None
        if not held:
            del self._held[app]
        self._deadlines.discard((app, number))
        self.figures["holding"] -= 1
        return entry

    def _expired(self, key: _Key) -> None:
        entry = self._drop(*key)
        if entry is None:
            return
        self.figures["expired"] += 1
        entry.conn.inflight.finished()
        waited = self.loop.time() - entry.since
        entry.conn.refuse(entry.msg, ErrorCode.NO_RESPONDERS, f"{entry.text} (none came within {waited:.2f} s: docs/protocol.md §13.2)")

    def connection_closed(self, conn: Any) -> None:
        """The requester is gone: its held requests are dropped unanswered."""
        held = self._held.get(conn.app_id) if self._held else None
        if held is None:
            return
        for number in [n for n, entry in held.items() if entry.conn is conn]:
            self._drop(conn.app_id, number)

    def cancelled(self, conn: Any, request_id: str) -> bool:
        """Its requester gave the request up (§15.4): dropped unanswered if
        held here (True). Only a connection's own: a keyed request's stand-in
        (§6.6) runs on for its other requesters."""
        held = self._held.get(conn.app_id) if self._held else None
        if not held:
            return False
        number = next((n for n, entry in held.items() if entry.conn is conn and entry.msg.message_id == request_id), None)
        if number is None:
            return False
        self._drop(conn.app_id, number)
        conn.inflight.finished()
        return True

    def shut_down(self, text: str) -> None:
        """The server closes (§13): every held request is answered ``shutting_down``."""
        held, self._held = self._held, {}
        self._deadlines.clear()
        for entries in held.values():
            for entry in entries.values():
                self.figures["holding"] -= 1
                entry.conn.inflight.finished()
                entry.conn.refuse(entry.msg, ErrorCode.SHUTTING_DOWN, text)

    def __len__(self) -> int:
        return self.figures["holding"]
