"""The node's one connection to NATS (docs/cluster.md §1, §5): connect,
reconnect, the degraded state while NATS is unreachable, and publishing
from the server's synchronous dispatch.

nats-py does the connecting and reconnecting (``max_reconnect_attempts=-1``:
it never gives up, also on the first connect) and resubscribes every
subscription once it is back. The link only keeps the state the server
reports (``up``; ``degraded`` otherwise, with the reason) and tells the
cluster when it goes down and comes back.

nats-py does close a connection for good on an error from nats-server it
does not reconnect from (``-ERR`` but a stale connection or a permission:
a control line past 4 KB, an authorization violation). The link then
starts over with a new client after ``RECONNECT_WAIT_S``, doubling up to
``RESTART_MAX_WAIT_S`` while it keeps happening: ``prepare`` runs again
and ``on_up`` comes with a new ``nc``, on which the cluster makes its
subscriptions again (interest.py).

The connection is made with ``no_echo``: NATS never hands a node its own
publications, so a node delivers a publish to its local subscribers once
(itself) and the other nodes once each (through NATS). It also means a
node's requests never reach its own queue subscriptions; the node routes
locally first (docs/cluster.md §3), so it never needs to.

Publishing is synchronous for the server's dispatch: nats-py's buffer
takes the message at once (``Link.publish``). While NATS is unreachable
nothing is kept (``publish`` returns False): what crosses nodes is live
traffic, not a backlog replayed later.

What the node holds for NATS and NATS has not taken yet (nats-py's pending
buffer, the socket's transport buffer, the link's own queue: ``held``) is
bounded (docs/cluster.md §5, §6): new traffic (a client's publish, a new
request) is refused once it reaches ``max_pending`` bytes; what follows up
on accepted work (answers, stream frames, credits, cancels, the node's
heartbeats and notes) once it reaches twice that. A refused message is
not sent (``publish`` returns False, counted in ``refused``), nothing
waits. A link that NATS answers no PING on, or takes none of the held
bytes of, for a few heartbeat intervals (a stopped nats-server, a silent
partition: link_watch.py) is stalled: the link goes down as for a lost
connection, drops what it held and aborts the connection, and nats-py
reconnects.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError

from ..config import DEFAULT_CLUSTER_MAX_PENDING_BYTES
from .delivery import Msg, Resume, deliver_at_once, read_below_mmap
from .link_close import FLUSH_TIMEOUT_S, close_nats
from .link_watch import WriteWatch
from .pub_buffer import NO_WIRE, PUB_OVERHEAD, append_pub, can_append, drop_pending, wire_of
from .tls_required import require_tls

__all__ = ["Link", "LinkSettings", "Msg", "Subscription"]

log = logging.getLogger("ipc_server.cluster")

RECONNECT_WAIT_S = 0.5
RESTART_MAX_WAIT_S = 30.0
# Up this long on one client: its close is not a repeat, the next start over waits RECONNECT_WAIT_S.
RESTART_CALM_S = 60.0
CONNECT_TIMEOUT_S = 2
PING_INTERVAL_S = 5


@dataclass(slots=True)
class LinkSettings:
    """What the link needs of the server's settings: also how often it
    checks that NATS takes what it holds, and the bound on that (module docstring)."""

    servers: list[str]
    name: str
    creds: str | None = None
    tls: ssl.SSLContext | None = None
    heartbeat_s: float = 0.5
    max_pending: int = DEFAULT_CLUSTER_MAX_PENDING_BYTES


class Link:
    """One NATS connection and its state.

    Args:
        on_down: called (sync) when the connection is lost.
        on_up: called (sync) when it is (re)established and its
            subscriptions are back on the server; ``nc`` is a new client
            when the link started over (module docstring).
        prepare: run once connected on a client (the first one, or a new
            one), before the link is up: the node's own subscriptions
            (replies, heartbeats...).
    """

    def __init__(
        self,
        settings: LinkSettings,
        *,
        on_down: Callable[[], None],
        on_up: Callable[[], None],
        prepare: Callable[[], Awaitable[None]],
    ) -> None:
        self._settings = settings
        self._prepare = prepare
        self._on_down = on_down
        self._on_up = on_up
        self.nc = NATS()
        self.up = False
        self.ever_up = asyncio.Event()
        self.reason = "not connected to NATS yet"
        self.url = ""
        self.disconnects = 0
        self.published = 0
        self.at_once = False  # messages reach their callbacks as nats-py reads them (delivery.py)
        self.appends = False  # publishes go straight into nats-py's buffer (pub_buffer.py)
        self.dropped = 0  # not sent: NATS unreachable, refused (too large), or past the bound
        self.refused = 0  # not sent: the link held its bound (module docstring)
        self.stalls = 0  # connections given up because NATS took nothing of what the link held
        # New traffic may add ``_room`` bytes more before the link looks at
        # what it holds again (``_full``): ``max_pending`` less what it held
        # then and what it took since, never more than it may. Other traffic
        # may go ``max_pending`` further (``_floor``).
        self._room = 0
        self._floor = -settings.max_pending
        self._out: deque[tuple[str, bytes, str]] = deque()  # behind a publish that had to wait
        self._out_bytes = 0
        self._wire: Any = NO_WIRE  # the connection's transport (pub_buffer.wire_of)
        self._watch = WriteWatch(self, settings.heartbeat_s)
        self._watching: asyncio.Task[None] | None = None
        self._stalled = False  # down because stalled: the reason stays until the link is up again
        self.answering = True  # False: the last flush had no answer (close() drains nothing then)
        self._waiting: asyncio.Task[None] | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by start()
        self._closed = False
        self._last_error = ""
        self._restarts = 0  # start overs in a row (module docstring)
        self._up_since: float | None = None  # when the current client went up

    # -- connecting ---------------------------------------------------------------

    def start(self) -> None:
        """Start connecting; nats-py keeps trying until it gets through."""
        self._loop = asyncio.get_running_loop()
        self._connecting = self._loop.create_task(self._connect())
        self._watching = self._loop.create_task(self._watch.run())

    async def _connect(self) -> None:
        nc = self.nc
        s = self._settings
        options: dict[str, Any] = {
            "servers": s.servers,
            "name": s.name,
            "no_echo": True,
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": RECONNECT_WAIT_S,
            "connect_timeout": CONNECT_TIMEOUT_S,
            "ping_interval": PING_INTERVAL_S,
            "max_outstanding_pings": 2,
            "skip_subject_validation": True,  # subjects are built escaped (subjects.py)
            "error_cb": self._error,
            "disconnected_cb": self._disconnected,
            "reconnected_cb": self._reconnected,
            "closed_cb": self._closed_cb,
        }
        if s.creds is not None:
            options["user_credentials"] = s.creds
        try:
            if s.tls is not None:
                options["tls"] = s.tls
                require_tls(nc)  # TLS or no link, also on reconnects (tls_required.py)
            await nc.connect(**options)
            await self._prepare()
            await nc.flush(timeout=FLUSH_TIMEOUT_S)
            await nc.flush(timeout=FLUSH_TIMEOUT_S)  # twice: see flush()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # bad credentials, a refused TLS handshake with no retry left
            if nc.is_closed and self._connecting is not asyncio.current_task():
                return  # closed as it was prepared: _closed_cb starts over
            self.reason = f"cannot connect to NATS: {exc or type(exc).__name__}"
            log.error("cluster: %s", self.reason)
            return
        self._went_up()

    def _went_up(self) -> None:
        self.appends = can_append(self.nc)
        read_below_mmap(self.nc)
        self._wire = wire_of(self.nc)
        self._room = self._settings.max_pending - self.held
        self._watch.reset()
        self._stalled = False
        self.up = True
        self.reason = ""
        self._up_since = self._loop.time()
        url = self.nc.connected_url
        self.url = f"{url.hostname}:{url.port}" if url is not None else ""
        log.info("cluster: connected to NATS at %s", self.url)
        self.ever_up.set()
        self._on_up()

    async def _error(self, exc: Exception) -> None:
        text = f"{type(exc).__name__}: {exc}"
        if text != self._last_error:  # nats-py repeats the same error on every attempt
            self._last_error = text
            log.warning("cluster: NATS: %s", text)
        if not self.up and not self._stalled:
            self.reason = f"NATS unreachable ({text})"

    async def _disconnected(self) -> None:
        self._down("lost the connection to NATS; reconnecting")

    def _down(self, reason: str) -> None:
        if not self.up:
            return
        self.up = False
        self.disconnects += 1
        self.reason = reason
        log.warning("cluster: %s", self.reason)
        self._clear_out()
        self._on_down()

    def _clear_out(self) -> None:
        self._out.clear()
        self._out_bytes = 0

    # -- the bound and stalls (module docstring) --------------------------------------------

    @property
    def held(self) -> int:
        """Bytes held for NATS that its socket has not taken yet."""
        return self.nc._pending_data_size + self._wire.get_write_buffer_size() + self._out_bytes  # type: ignore[no-any-return]

    def _full(self, new: bool) -> bool:
        """``_room`` ran out: is the link, looking at what it holds now, at the bound of this kind of traffic?"""
        floor = 0 if new else self._floor
        if self._room <= floor:
            self._room = self._settings.max_pending - self.held
        return self._room <= floor

    def stall(self, what: str) -> None:
        """NATS stopped reading (``what`` says how the watch saw it, link_watch.py): down, drop what is held, reconnect."""
        self.stalls += 1
        self._down(f"{what} (stalled); reconnecting")
        self._stalled = True
        if self.appends:  # not sent later either: what crosses nodes is live traffic
            drop_pending(self.nc)
        self._wire.abort()  # its buffer goes with it; nats-py sees the connection lost and reconnects

    async def _reconnected(self) -> None:
        self._last_error = ""
        self._went_up()

    async def _closed_cb(self) -> None:
        """nats-py gave the connection up (module docstring): start over."""
        if self._closed:
            return
        await self._disconnected()  # nats-py calls it first; nothing twice
        now = self._loop.time()
        if self._up_since is not None and now - self._up_since >= RESTART_CALM_S:
            self._restarts = 0
        self._up_since = None
        wait = min(RECONNECT_WAIT_S * 2**self._restarts, RESTART_MAX_WAIT_S)
        self._restarts += 1
        self.reason = f"the NATS connection closed ({self.nc.last_error or 'no error given'}); starting over"
        log.warning("cluster: %s in %.1f s", self.reason, wait)
        self._connecting = self._loop.create_task(self._start_over(wait))

    async def _start_over(self, wait: float) -> None:
        """A new nats-py client after ``wait``; what the old one held is gone."""
        stuck = self._waiting  # a publish waiting on the closed client's buffer never finishes
        if stuck is not None:
            stuck.cancel()
            await asyncio.wait([stuck])
        self._clear_out()
        await asyncio.sleep(wait)
        self.nc = NATS()
        self._last_error = ""
        await self._connect()

    @property
    def max_payload(self) -> int:
        """The largest message NATS takes: its server's max_payload (1 MiB by default); 0 while down."""
        return self.nc.max_payload if self.up else 0

    # -- traffic --------------------------------------------------------------------

    def too_large(self, size: int) -> bool:
        """A message of ``size`` bytes is refused for its size (NATS is reachable)."""
        return self.up and size > self.nc.max_payload

    def publish(self, subject: str, payload: bytes, reply: str = "", new: bool = False) -> bool:
        """Hand a message to nats-py now; False when NATS is unreachable,
        the message is over its ``max_payload``, or the link holds its bound
        (``new``: a client's publish or a new request, refused at the lower
        one; module docstring): nothing sent.

        nats-py's ``publish`` is a coroutine that, but for a full buffer,
        finishes without waiting (it appends to its buffer and wakes its
        flusher): it is run here at once, saving a task and a loop iteration
        per message. One that has to wait is finished by a task, and the
        messages after it wait behind it, in order."""
        if not self.up or len(payload) > self.nc.max_payload:
            self.dropped += 1
            return False
        if self._room <= 0 and self._full(new):
            self.dropped += 1
            self.refused += 1
            return False
        if self._waiting is not None:  # behind one that had to wait
            self._out.append((subject, payload, reply))
            size = len(subject) + len(payload) + len(reply) + PUB_OVERHEAD
            self._out_bytes += size
            self._room -= size
            return True
        if self.appends:
            size = append_pub(self.nc, self._loop, subject, payload, reply)
            if size:
                self.published += 1
                self._room -= size
                return True
        self._room -= len(subject) + len(payload) + len(reply) + PUB_OVERHEAD
        coro = self.nc.publish(subject, payload, reply=reply)
        try:
            step = coro.send(None)
        except StopIteration:
            self.published += 1
            return True
        except NatsError as exc:  # the connection went as we wrote: the link is down
            log.info("cluster: a publish to NATS failed: %s", exc)
            self.dropped += 1
            return False
        self._waiting = asyncio.get_running_loop().create_task(self._finish(coro, step))
        return True

    async def _finish(self, coro: Any, step: Any) -> None:
        """Finish a publish that had to wait, then send what queued behind it."""
        try:
            await Resume(coro, step)
            self.published += 1
            while self._out:
                subject, payload, reply = self._out.popleft()
                self._out_bytes -= len(subject) + len(payload) + len(reply) + PUB_OVERHEAD
                await self.nc.publish(subject, payload, reply=reply)
                self.published += 1
        except NatsError as exc:
            log.info("cluster: a publish to NATS failed: %s", exc)
            self.dropped += 1 + len(self._out)
            self._clear_out()
        finally:
            self._waiting = None

    async def subscribe(self, subject: str, cb: Callable[[Msg], Awaitable[None]], queue: str = "") -> Subscription:
        """Subscribe ``cb``, which gets each message as nats-py reads it (``delivery``)."""
        sub = await self.nc.subscribe(subject, queue=queue, cb=cb, pending_msgs_limit=1_000_000, pending_bytes_limit=512 * 1024 * 1024)
        self.at_once = deliver_at_once(sub, cb)
        return sub

    async def flush(self) -> bool:
        """Wait until NATS has processed what was sent (a PING's PONG); False
        when it could not (NATS unreachable, or no answer in time)."""
        if not self.up:
            self.answering = False
            return False
        try:
            # nats-py writes a PING straight to the socket, ahead of commands
            # still in its pending buffer (a SUB just made): the first PONG
            # may come before NATS has them. By then the buffer is written,
            # so the second PING follows them and its PONG confirms them.
            await self.nc.flush(timeout=FLUSH_TIMEOUT_S)
            await self.nc.flush(timeout=FLUSH_TIMEOUT_S)
        except (NatsError, asyncio.TimeoutError):
            self.answering = False
            return False
        self.answering = True
        return True

    async def close(self) -> None:
        self._closed = True
        self.up = False
        for task in (self._connecting, self._watching):
            if task is not None and not task.done():
                task.cancel()
        await close_nats(self.nc, self._wire, self.answering)

    def __repr__(self) -> str:
        return f"<Link {'up ' + self.url if self.up else 'down: ' + self.reason} published={self.published} dropped={self.dropped} refused={self.refused}>"
