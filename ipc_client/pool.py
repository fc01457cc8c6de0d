"""A pool of connections to one server (docs/resilience.md §7).

Members are :class:`IPCClient` with ``reconnect=False``: a member whose
connection drops is destroyed and replaced by the pool rather than waiting
to reconnect in place, so nobody holds a client that silently stalls.

Two ways to use a member:

- ``acquire()`` / ``release()`` (and ``execute``, ``connection()``): the
  member is yours alone until released, as §7 describes.
- ``lease()``: a member shared with other callers (a client multiplexes many
  calls on one connection), the one with the fewest calls in flight; a new
  one is opened while below ``max_connections`` if every member is busy. The
  load balancer uses this, so one connection per server is not one call at
  a time per server. When callers wait because every member is held by
  ``acquire()``, a member given back is handed to all of the waiting
  lessees at once, while the waiting ``acquire()`` callers still get
  members of their own, first come first served.

Subscriptions and responders made through the pool live on one member, the
*registrar*; when it dies they are restored on its replacement before that
replacement is handed out.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from ipc_protocol import IPCError, Message, NotConnected, RequestTimeout, validate_pattern
from ipc_protocol.constants import DEFAULT_REQUEST_TIMEOUT_S

from ._listeners import Listeners
from .backoff import Backoff
from .client import Handler, IPCClient

__all__ = ["ConnectionPool", "DEFAULT_ACQUIRE_TIMEOUT_S", "DEFAULT_IDLE_TIMEOUT_S"]

log = logging.getLogger("ipc_client.pool")

DEFAULT_ACQUIRE_TIMEOUT_S = 5.0
DEFAULT_IDLE_TIMEOUT_S = 30.0

T = TypeVar("T")
_EVENTS = ("member_created", "member_lost")
_BACKOFF_OPTIONS = frozenset({"initial_delay", "max_delay", "multiplier", "jitter"})
# Metrics that describe the present, not a history: never carried over from
# destroyed members.
_LIVE_METRICS = frozenset({"active_connections", "queued", "queued_bytes"})


class _Member:
    __slots__ = ("client", "leased", "shared", "idle_since", "closing", "dead")

    def __init__(self, client: IPCClient, now: float) -> None:
        self.client = client
        self.leased = False  # held by acquire()
        self.shared = 0  # calls in flight through lease()
        self.idle_since = now
        self.closing = False  # the pool is closing it: its "disconnected" is expected
        self.dead = False  # its connection dropped ("disconnected" comes before the state changes)

    @property
    def busy(self) -> bool:
        return self.leased or self.shared > 0

    @property
    def usable(self) -> bool:
        return not self.closing and not self.dead and self.client.connected


class ConnectionPool:
    """Between ``min_connections`` and ``max_connections`` clients to one server.

    Args:
        app_id, host, port: as for :class:`IPCClient`.
        min_connections: opened by :meth:`start` and kept open.
        max_connections: never more members than this.
        acquire_timeout: seconds :meth:`acquire` waits for a free member
            before raising ``RequestTimeout``.
        idle_timeout: seconds after which an unused member above
            ``min_connections`` is closed; None keeps them.
        client_options: passed to every member's :class:`IPCClient`, except
            ``queue_path`` (ValueError): a persisted outbox belongs to one
            client, and members sharing the file would each replay all of it.
            ``reconnect`` and ``wait_on_first_connect`` are refused too:
            the pool replaces dead members, and a member it cannot open
            fails that open at once.
    """

    def __init__(
        self,
        app_id: str,
        host: str = "localhost",
        port: int = 8888,
        *,
        min_connections: int = 1,
        max_connections: int = 10,
        acquire_timeout: float = DEFAULT_ACQUIRE_TIMEOUT_S,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT_S,
        **client_options: Any,
    ) -> None:
        if max_connections < 1 or not 0 <= min_connections <= max_connections:
            raise ValueError("need 0 <= min_connections <= max_connections and max_connections >= 1")
        if acquire_timeout <= 0 or (idle_timeout is not None and idle_timeout <= 0):
            raise ValueError("timeouts must be positive")
        if client_options.pop("reconnect", False):
            raise ValueError("pool members do not reconnect: the pool replaces them")
        if client_options.pop("wait_on_first_connect", False):
            raise ValueError("pool members do not wait on their first connect: a failed open raises NotConnected")
        _refuse_queue_path("ConnectionPool", client_options)
        self.app_id = app_id
        self.host = host
        self.port = port
        self.min_connections = min_connections
        self.max_connections = max_connections
        self.acquire_timeout = acquire_timeout
        self.idle_timeout = idle_timeout
        self.request_timeout: float = client_options.get("request_timeout", DEFAULT_REQUEST_TIMEOUT_S)
        self.client_options = client_options

        self._members: list[_Member] = []
        self._opening = 0
        # Callers waiting for a member, FIFO: (future, shared) where shared
        # marks a lease() waiter, which may be given a member other lessees use.
        self._waiters: collections.deque[tuple[asyncio.Future[_Member | None], bool]] = collections.deque()
        self._closed = False
        self._total_created = 0
        self._total_destroyed = 0
        self._retired: collections.Counter[str] = collections.Counter()
        self._listeners = Listeners("pool", _EVENTS, self._spawn)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reaper: asyncio.Task[None] | None = None
        self._refill_task: asyncio.Task[None] | None = None
        # Registrations made through the pool, replayed on each new registrar.
        self._subscriptions: dict[str, list[Handler]] = {}
        self._services: dict[str, Handler] = {}
        self._registrar: _Member | None = None
        self._registrar_lock = asyncio.Lock()

    # -- events ----------------------------------------------------------------

    def on(self, event: str, callback: Callable[..., Any]) -> Callable[..., Any]:
        """``member_created(client)`` or ``member_lost(client, error)``: a
        member's connection dropped (not when the pool closed it)."""
        return self._listeners.add(event, callback)

    def _emit(self, event: str, *args: Any) -> None:
        self._listeners.emit(event, *args)

    def _spawn(self, aw: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(aw)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- lifecycle ---------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    async def start(self) -> None:
        """Open ``min_connections`` members. Raises NotConnected if one cannot
        be opened; the pool stays usable and later calls try again."""
        self._check_open()
        if self._reaper is None and self.idle_timeout is not None:
            self._reaper = asyncio.ensure_future(self._reap())
        missing = self.min_connections - len(self._members) - self._opening
        results = await asyncio.gather(*(self._create(None) for _ in range(missing)), return_exceptions=True)
        for r in results:
            if isinstance(r, _Member):
                self._make_available(r)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]

    async def close(self) -> None:
        """Close every member; waiting and later calls fail with NotConnected."""
        if self._closed:
            return
        self._closed = True
        for task in (self._reaper, self._refill_task):
            if task is not None:
                task.cancel()
        waiters, self._waiters = self._waiters, collections.deque()
        for fut, _ in waiters:
            if not fut.done():
                fut.set_exception(NotConnected("the pool was closed"))
        members, self._members = self._members, []
        self._registrar = None
        for m in members:
            m.closing = True
        self._total_destroyed += len(members)
        await asyncio.gather(*(self._retire(m) for m in members), return_exceptions=True)

    async def __aenter__(self) -> ConnectionPool:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise NotConnected("the pool is closed")

    # -- exclusive use (§7) ------------------------------------------------------

    async def acquire(self, timeout: float | None = None) -> IPCClient:
        """A connected member for your use alone until :meth:`release`.

        An idle member if there is one, else a new one while below
        ``max_connections``, else the first to be released (FIFO).

        Raises:
            RequestTimeout: none was free within ``timeout`` (default ``acquire_timeout``).
            NotConnected: a new member could not be opened, or the pool is closed.
        """
        self._check_open()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.acquire_timeout if timeout is None else timeout)
        idle = [m for m in self._members if m.usable and not m.busy]
        if idle:
            member = max(idle, key=lambda m: m.idle_since)  # most recent: the others can age out
        else:
            member = await self._grow_or_wait(deadline)
        member.leased = True
        return member.client

    def release(self, client: IPCClient) -> None:
        """Give back a member from :meth:`acquire`; a dead one is replaced."""
        member = self._find(client)
        if member is None or not member.leased:
            if self._closed:
                return  # close() already took it
            raise ValueError("this client was not acquired from this pool")
        member.leased = False
        self._after_use(member)

    async def execute(self, fn: Callable[[IPCClient], Awaitable[T]], *, timeout: float | None = None) -> T:
        """``await fn(client)`` on an acquired member, released even on error."""
        client = await self.acquire(timeout)
        try:
            return await fn(client)
        finally:
            self.release(client)

    @asynccontextmanager
    async def connection(self, timeout: float | None = None) -> AsyncIterator[IPCClient]:
        """``async with pool.connection() as client``: acquire and release."""
        client = await self.acquire(timeout)
        try:
            yield client
        finally:
            self.release(client)

    # -- shared use ----------------------------------------------------------------

    @asynccontextmanager
    async def lease(self, timeout: float | None = None) -> AsyncIterator[IPCClient]:
        """A connected member shared with other lessees, for the block's calls.

        Raises as :meth:`acquire` does.
        """
        self._check_open()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.acquire_timeout if timeout is None else timeout)
        member = await self._pick_shared(deadline)  # counts this lessee in member.shared
        try:
            yield member.client
        finally:
            member.shared -= 1
            self._after_use(member)

    async def _pick_shared(self, deadline: float) -> _Member:
        """A member for one more lessee, with ``shared`` already counting it."""
        open_ = [m for m in self._members if m.usable and not m.leased]
        best = min(open_, key=lambda m: m.shared) if open_ else None
        if best is not None and (best.shared == 0 or self._size() >= self.max_connections):
            best.shared += 1
            return best
        if best is not None:
            try:
                member = await self._create(deadline)
            except (IPCError, OSError) as exc:
                log.debug("extra member for %s:%s not opened (%s); sharing a busy one", self.host, self.port, exc)
                if best.usable and not best.leased:
                    best.shared += 1
                    return best
                return await self._grow_or_wait(deadline, shared=True)
            member.shared += 1
            self._members.append(member)
            self._share(member)
            return member
        return await self._grow_or_wait(deadline, shared=True)

    # -- growth, waiting, hand-off --------------------------------------------------

    def _size(self) -> int:
        return len(self._members) + self._opening

    async def _grow_or_wait(self, deadline: float, *, shared: bool = False) -> _Member:
        """A new member if there is room, else one handed over by a release.

        With ``shared`` (a lessee) the member comes with ``shared`` counting
        the caller and may be shared with other lessees; otherwise it comes
        ``leased``.
        """
        loop = asyncio.get_running_loop()
        while True:
            if self._size() < self.max_connections:
                member = await self._create(deadline)
                self._members.append(member)
                if shared:
                    member.shared += 1
                    self._share(member)  # lessees waiting meanwhile need not wait for another
                else:
                    member.leased = True
                return member
            fut: asyncio.Future[_Member | None] = loop.create_future()
            self._waiters.append((fut, shared))
            try:
                await asyncio.wait((fut,), timeout=max(deadline - loop.time(), 0))
            except asyncio.CancelledError:
                self._abandon_wait(fut, shared)
                raise
            if not fut.done():
                self._abandon_wait(fut, shared)
                raise RequestTimeout(
                    f"no connection to {self.host}:{self.port} free within the acquire timeout"
                    f" ({self.max_connections} in use)"
                )
            member = fut.result()  # raises NotConnected if the pool closed
            if member is not None and member.usable:
                return member  # reserved for this caller by _hand_off
            if member is not None:  # died between hand-off and wake-up
                self._unreserve(member, shared)
            # None: a slot was freed; loop to open a member in it.

    def _unreserve(self, member: _Member, shared: bool) -> None:
        """Undo a hand-off's reservation of ``member`` for a waiter."""
        if shared:
            member.shared -= 1
        else:
            member.leased = False
        self._after_use(member)

    def _abandon_wait(self, fut: asyncio.Future[_Member | None], shared: bool) -> None:
        """A waiter gave up: pass on whatever it had been handed meanwhile."""
        if not fut.done():
            fut.cancel()
            try:
                self._waiters.remove((fut, shared))
            except ValueError:
                pass
            return
        if fut.exception() is None:
            member = fut.result()
            if member is None:
                self._slot_freed()
            else:
                self._unreserve(member, shared)

    def _hand_off(self, member: _Member | None) -> bool:
        """Give an idle ``member`` (or, with None, a free slot) to the first waiter.

        A member that goes to a lessee goes to every waiting lessee: they
        can all share it. The member is reserved for the waiters it went to
        (``leased``, or ``shared`` counting them) so that nobody else takes
        it before they wake.
        """
        while self._waiters:
            fut, shared = self._waiters.popleft()
            if fut.done():
                continue
            if member is None:
                fut.set_result(None)
            elif shared:
                member.shared += 1
                fut.set_result(member)
                self._share(member)
            else:
                member.leased = True
                fut.set_result(member)
            return True
        return False

    def _share(self, member: _Member) -> None:
        """Give ``member``, which lessees may use, to every lessee still waiting."""
        if not self._waiters or not member.usable or member.leased:
            return
        keep: collections.deque[tuple[asyncio.Future[_Member | None], bool]] = collections.deque()
        for fut, shared in self._waiters:
            if fut.done():
                continue
            if shared:
                member.shared += 1
                fut.set_result(member)
            else:
                keep.append((fut, shared))
        self._waiters = keep

    def _after_use(self, member: _Member) -> None:
        """Bookkeeping when a member stops being used by one caller."""
        if member.busy or member.closing or member not in self._members:
            return
        if not member.usable:
            self._destroy(member)
            return
        member.idle_since = asyncio.get_running_loop().time()
        self._hand_off(member)

    def _make_available(self, member: _Member) -> None:
        self._members.append(member)
        self._after_use(member)

    def _slot_freed(self) -> None:
        if not self._hand_off(None):
            self._schedule_refill()

    # -- creating and destroying members ---------------------------------------------

    async def _create(self, deadline: float | None) -> _Member:
        """Open one member (not yet listed); the registrar if one is missing.

        Raises NotConnected if the connection fails, RequestTimeout if
        ``deadline`` passes first.
        """
        self._check_open()
        loop = asyncio.get_running_loop()
        client = IPCClient(self.app_id, self.host, self.port, reconnect=False, **self.client_options)
        member = _Member(client, loop.time())
        self._opening += 1
        try:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise RequestTimeout(f"no time left to open a connection to {self.host}:{self.port}")
            try:
                async with asyncio.timeout(remaining):
                    await client.connect()
                    client.on("disconnected", lambda reason: self._member_down(member, reason))
                    if self._subscriptions or self._services:
                        await self._adopt_registrar(member)
            except TimeoutError:
                raise RequestTimeout(f"no connection to {self.host}:{self.port} within the deadline") from None
            self._check_open()
        except BaseException as exc:
            member.closing = True
            self._opening -= 1
            self._spawn(client.disconnect())
            self._hand_off(None)  # a waiter may try in the freed slot (and fail fast too)
            if isinstance(exc, OSError):
                raise NotConnected(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
            raise
        self._opening -= 1
        self._total_created += 1
        self._emit("member_created", client)
        return member

    def _member_down(self, member: _Member, reason: BaseException | None) -> None:
        """A member's ``disconnected`` event: the pool did not ask for it."""
        if member.closing:
            return
        member.dead = True
        if self._registrar is member:
            self._registrar = None
        self._emit("member_lost", member.client, reason)
        if member in self._members:
            self._after_use(member)  # destroyed now if nobody uses it, else on release
        if self._subscriptions or self._services:
            self._schedule_refill()

    def _destroy(self, member: _Member) -> None:
        if member in self._members:
            self._members.remove(member)
        member.closing = True
        self._total_destroyed += 1
        if self._registrar is member:
            self._registrar = None
        self._spawn(self._retire(member))
        if not self._closed:
            self._slot_freed()

    async def _retire(self, member: _Member) -> None:
        member.closing = True
        try:
            await member.client.disconnect()
        finally:
            metrics = getattr(member.client, "metrics", None)
            if callable(metrics):
                for key, value in metrics().items():
                    if key not in _LIVE_METRICS and _is_number(value):
                        self._retired[key] += value

    def _schedule_refill(self) -> None:
        """Bring the pool back to ``min_connections`` (and a registrar) in the background."""
        if self._closed or (self._refill_task is not None and not self._refill_task.done()):
            return
        if self._size() >= self.min_connections and not self._needs_registrar():
            return
        self._refill_task = asyncio.ensure_future(self._refill())

    def _needs_registrar(self) -> bool:
        return bool(self._subscriptions or self._services) and self._registrar is None

    async def _refill(self) -> None:
        """Retries with the members' backoff while the server is away."""
        backoff = Backoff(**{k: v for k, v in self.client_options.items() if k in _BACKOFF_OPTIONS})
        attempt = 0
        while not self._closed and (self._size() < self.min_connections or self._needs_registrar()):
            try:
                if self._size() >= self.min_connections or self._size() >= self.max_connections:
                    await self._ensure_registrar(None)
                else:
                    self._make_available(await self._create(None))
                attempt = 0
            except (IPCError, OSError) as exc:
                log.debug("refilling the pool for %s:%s failed: %s", self.host, self.port, exc)
                await asyncio.sleep(backoff.delay(attempt))
                attempt += 1

    async def _reap(self) -> None:
        """Close members idle for ``idle_timeout`` above ``min_connections``."""
        assert self.idle_timeout is not None
        loop = asyncio.get_running_loop()
        period = min(max(self.idle_timeout / 4, 0.01), 1.0)
        while not self._closed:
            await asyncio.sleep(period)
            now = loop.time()
            for member in sorted(self._members, key=lambda m: m.idle_since):
                if self._size() <= self.min_connections:
                    break
                if not member.busy and member is not self._registrar and now - member.idle_since >= self.idle_timeout:
                    self._destroy(member)

    def _find(self, client: IPCClient) -> _Member | None:
        return next((m for m in self._members if m.client is client), None)

    # -- subscriptions and responders -----------------------------------------------

    async def _adopt_registrar(self, member: _Member) -> None:
        """Make ``member`` the registrar unless there is a live one."""
        async with self._registrar_lock:
            if self._registrar is not None and self._registrar.usable:
                return
            await self._register_all(member.client)
            self._registrar = member

    async def _ensure_registrar(self, deadline: float | None) -> _Member:
        async with self._registrar_lock:
            if self._registrar is not None and self._registrar.usable:
                return self._registrar
            candidates = [m for m in self._members if m.usable]
            if candidates:
                member = candidates[0]
                await self._register_all(member.client)
                self._registrar = member
                return member
        if self._size() >= self.max_connections:
            raise NotConnected(f"no live connection to {self.host}:{self.port} to register on")
        member = await self._create(deadline)  # adopts the registrar role itself
        self._make_available(member)
        return member

    async def _register_all(self, client: IPCClient) -> None:
        """Replay every registration on ``client``, looping until none is new,
        so one made while this runs is not lost to the race."""
        done: set[tuple[bool, str, int]] = set()
        while True:
            subs = [(ch, h) for ch, hs in list(self._subscriptions.items()) for h in hs if (False, ch, id(h)) not in done]
            services = [(ch, fn) for ch, fn in list(self._services.items()) if (True, ch, id(fn)) not in done]
            if not subs and not services:
                return
            for channel, handler in subs:
                await client.subscribe(channel, handler)
                done.add((False, channel, id(handler)))

            async def register(channel: str, fn: Handler) -> None:
                await client.serve(channel, fn)
                done.add((True, channel, id(fn)))

            await asyncio.gather(*(register(ch, fn) for ch, fn in services))

    async def subscribe(self, channel: str, handler: Handler) -> bool:
        """Subscribe on one member (the registrar), restored on its replacement.

        Returns True if it is active now, False if the server is unreachable
        (it is kept and applied once a member connects).
        """
        validate_pattern(channel)
        if not callable(handler):
            raise TypeError("handler must be callable")
        self._check_open()
        self._subscriptions.setdefault(channel, []).append(handler)
        return await self._apply(lambda c: c.subscribe(channel, handler), lambda: self._drop_subscription(channel, handler))

    async def serve(self, channel: str, fn: Handler) -> bool:
        """Answer requests on ``channel`` from the registrar; as :meth:`subscribe`."""
        validate_pattern(channel)
        self._check_open()
        if channel in self._services:
            raise ValueError(f"already serving {channel!r}")
        self._services[channel] = fn

        async def register(c: IPCClient) -> None:
            await c.serve(channel, fn)

        return await self._apply(register, lambda: self._services.pop(channel, None))

    async def _apply(self, action: Callable[[IPCClient], Awaitable[Any]], undo: Callable[[], Any]) -> bool:
        registrar = self._registrar
        try:
            if registrar is not None and registrar.usable:
                await action(registrar.client)
            else:
                await self._ensure_registrar(None)  # replays everything, this one included
            return True
        except (NotConnected, RequestTimeout) as exc:
            log.debug("registration on %s:%s deferred: %s", self.host, self.port, exc)
            self._schedule_refill()
            return False
        except IPCError as exc:
            if exc.code == "connection_lost":
                self._schedule_refill()
                return False  # the registrar died; its replacement replays it
            undo()
            raise
        except BaseException:
            undo()
            raise

    def _drop_subscription(self, channel: str, handler: Handler) -> None:
        handlers = self._subscriptions.get(channel, [])
        if handler in handlers:
            handlers.remove(handler)
        if not handlers:
            self._subscriptions.pop(channel, None)

    async def unsubscribe(self, channel: str, handler: Handler | None = None) -> None:
        if handler is None:
            self._subscriptions.pop(channel, None)
        else:
            self._drop_subscription(channel, handler)
        if self._registrar is not None and self._registrar.usable:
            await self._registrar.client.unsubscribe(channel, handler)

    async def unserve(self, channel: str) -> None:
        self._services.pop(channel, None)
        if self._registrar is not None and self._registrar.usable:
            await self._registrar.client.unserve(channel)

    # -- convenience calls ------------------------------------------------------------

    async def _on_member(self, timeout: float | None, fn: Callable[[IPCClient, float], Awaitable[T]]) -> T:
        """Acquire within the call's deadline, then call with what is left of it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.request_timeout if timeout is None else timeout)
        client = await self.acquire(min(self.acquire_timeout, max(deadline - loop.time(), 0)))
        try:
            return await fn(client, max(deadline - loop.time(), 0.001))
        finally:
            self.release(client)

    async def send_request(self, channel: str, payload: Any = None, *, timeout: float | None = None, **kwargs: Any) -> Message:
        return await self._on_member(timeout, lambda c, left: c.send_request(channel, payload, timeout=left, **kwargs))

    async def request(self, channel: str, payload: Any = None, *, timeout: float | None = None, **kwargs: Any) -> Any:
        return (await self.send_request(channel, payload, timeout=timeout, **kwargs)).payload

    async def publish(self, channel: str, data: Any = None, *, timeout: float | None = None, **kwargs: Any) -> int | None:
        return await self._on_member(timeout, lambda c, left: c.publish(channel, data, timeout=left, **kwargs))

    async def notify(self, channel: str, data: Any = None, **kwargs: Any) -> None:
        await self._on_member(None, lambda c, left: c.notify(channel, data, **kwargs))

    # -- introspection ---------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        return {
            "total": len(self._members),
            "available": sum(1 for m in self._members if m.usable and not m.busy),
            "in_use": sum(1 for m in self._members if m.busy),
            "pending": sum(1 for f, _ in self._waiters if not f.done()),
            "total_created": self._total_created,
            "total_destroyed": self._total_destroyed,
        }

    def metrics(self) -> dict[str, Any]:
        """The members' ``metrics()`` summed (counters of destroyed members
        included), rates and means recomputed from the sums."""
        snaps = [m.client.metrics() for m in self._members if callable(getattr(m.client, "metrics", None))]
        totals: collections.Counter[str] = collections.Counter(self._retired)
        for snap in snaps:
            for key, value in snap.items():
                if _is_number(value) and not key.endswith("_rate") and not key.startswith("average_"):
                    totals[key] += value
        out: dict[str, Any] = dict(totals)
        out["active_connections"] = sum(1 for m in self._members if m.client.connected)
        attempts, successes = totals["connection_attempts"], totals["connection_successes"]
        out["connection_success_rate"] = successes / attempts if attempts else 1.0
        delivered, failed = totals["messages_delivered"], totals["messages_failed"]
        out["message_delivery_rate"] = delivered / (delivered + failed) if delivered + failed else 1.0
        for avg_key, count_key in _AVERAGES.items():
            pairs = [(s[avg_key], s.get(count_key) or 0) for s in snaps if _is_number(s.get(avg_key))]
            count = sum(n for _, n in pairs)
            out[avg_key] = sum(a * n for a, n in pairs) / count if count else 0.0
        return out

    def __repr__(self) -> str:
        s = self.stats()
        return (
            f"<ConnectionPool {self.app_id!r} {self.host}:{self.port} total={s['total']} available={s['available']}"
            f" in_use={s['in_use']} pending={s['pending']}{' closed' if self._closed else ''}>"
        )


def _refuse_queue_path(owner: str, client_options: dict[str, Any]) -> None:
    """A persisted outbox belongs to one client: members given the same file
    would share it and each replay every row in it."""
    if client_options.get("queue_path") is not None:
        raise ValueError(
            f"{owner} does not take queue_path: a persisted outbox belongs to one client, and its"
            " pooled connections would share the file and each replay all of it;"
            " give a single IPCClient its own queue_path instead"
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# Mean metrics and the count each is a mean over, for weighting across members.
_AVERAGES = {
    "average_reconnection_time_ms": "reconnections",
    "average_connection_duration_ms": "connection_successes",
}
