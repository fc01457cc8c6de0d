"""The connection pool's state and I/O (docs/resilience.md §7).

:class:`PoolCore` keeps the members and the queue of waiting callers, asks
:func:`~ipc_client.pool_plan.plan_pool` what to do whenever they change and
does it: hands members over, fails waiters, opens connections, closes dead
and idle members and brings the pool back to ``min_connections``.
:class:`~ipc_client.pool.ConnectionPool` puts the public API on top.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
from collections.abc import Awaitable
from typing import Any

from ipc_protocol import ConnectionLost, IPCError, NotConnected, RequestTimeout, Unauthorized, printable
from ipc_protocol.exceptions import revoked_for_good

from .listeners import Listeners
from .backoff import Backoff
from .client import IPCClient
from .pool_metrics import fold_retired, zero_counters
from .pool_plan import OPEN_FAILED, PoolSettings, plan_pool
from .pool_registrations import PoolRegistrations
from .timeouts import check_timeout

__all__ = ["Member", "PoolCore", "Waiter"]

log = logging.getLogger("ipc_client.pool")

_EVENTS = ("member_created", "member_lost", "error")
_BACKOFF_OPTIONS = frozenset({"initial_delay", "max_delay", "multiplier", "jitter"})


class Member:
    """One pooled client and its use, as :func:`plan_pool` reads it."""

    __slots__ = ("client", "leased", "shared", "idle_since", "closing", "dead", "lost_with")

    def __init__(self, client: IPCClient, now: float) -> None:
        self.client = client
        self.leased = False  # held by acquire()
        self.shared = 0  # calls in flight through lease()
        self.idle_since = now
        self.closing = False  # the pool is closing it: its "disconnected" is expected
        self.dead = False  # its connection dropped ("disconnected" comes before the state changes)
        self.lost_with: BaseException | None = None  # what ended its connection: member_lost's, not "error"'s

    @property
    def busy(self) -> bool:
        return self.leased or self.shared > 0

    @property
    def usable(self) -> bool:
        return not self.closing and not self.dead and self.client.connected


class Waiter:
    """An acquire() (``shared`` False) or lease() waiting for a member."""

    __slots__ = ("future", "shared", "deadline")

    def __init__(self, future: asyncio.Future[Member], shared: bool, deadline: float) -> None:
        self.future = future
        self.shared = shared
        self.deadline = deadline


class PoolCore:
    """Members, waiters and the plan applied to them; see the module docstring."""

    def __init__(
        self,
        app_id: str,
        host: str,
        port: int,
        *,
        min_connections: int,
        max_connections: int,
        acquire_timeout: float,
        idle_timeout: float | None,
        client_options: dict[str, Any],
    ) -> None:
        # A client made and dropped: the members' options are checked now, not
        # when start() opens the first one (as Node's pool checks them), and its
        # metrics() name every key the pool's metrics() reports.
        probe = IPCClient(app_id, host, port, reconnect=False, **client_options)
        self.app_id = app_id
        self.host = host
        self.port = port
        self.min_connections = min_connections
        self.max_connections = max_connections
        self.acquire_timeout = acquire_timeout
        self.idle_timeout = idle_timeout
        self.client_options = client_options
        self._settings = PoolSettings(min_connections, max_connections, idle_timeout, 1, "wait")
        self._members: list[Member] = []
        self._opening = 0
        self._opening_clients: set[IPCClient] = set()  # so close() can stop their handshakes (as Node)
        self._waiters: collections.deque[Waiter] = collections.deque()  # FIFO
        self._closed = False
        self._total_created = 0
        self._total_destroyed = 0
        # Closed members' and failed opens' counters, and the pool's own failed calls; every key from the start.
        self._retired = zero_counters(probe.metrics())
        self._retiring: set[Member] = set()  # destroyed, disconnecting: still counted by metrics() until folded
        self._listeners = Listeners("pool", _EVENTS, self._spawn)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reaper: asyncio.Task[None] | None = None
        self._refill_task: asyncio.Task[None] | None = None
        self._refill_stopped = False  # by an Unauthorized open, until a member opens again
        self._registrations = PoolRegistrations(
            lambda: self._members, self._open_registrar, self._schedule_refill, f"{host}:{port}", functools.partial(self._listeners.emit, "error")
        )

    def _spawn(self, aw: Awaitable[Any]) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(aw)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _check_open(self) -> None:
        if self._closed:
            raise NotConnected("the pool is closed")

    # -- waiting, and applying the plan ------------------------------------------------

    def _size(self) -> int:
        return len(self._members) + self._opening

    async def _wait(self, shared: bool, timeout: float | None) -> Member:
        """Queue a waiter and plan; the member comes ``leased``, or with
        ``shared`` counting the caller."""
        self._check_open()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + check_timeout(timeout, self.acquire_timeout)
        while True:
            waiter = Waiter(loop.create_future(), shared, deadline)
            self._waiters.append(waiter)
            self._settle()
            fut = waiter.future
            if not fut.done():
                try:
                    await asyncio.wait((fut,), timeout=max(deadline - loop.time(), 0))
                except asyncio.CancelledError:
                    self._abandon(waiter)
                    raise
                if not fut.done():
                    self._settle(now=max(loop.time(), deadline))  # the plan fails it: timeout
                if not fut.done():  # closed meanwhile
                    self._abandon(waiter)
                    raise self._timeout_error()
            member = fut.result()  # raises RequestTimeout, NotConnected
            if member.usable:
                return member
            self._unreserve(member, shared)  # died between hand-off and wake-up: wait again

    def _settle(self, failure: BaseException | None = None, now: float | None = None) -> None:
        """Plan on the pool's state and apply the plan. ``failure``: an open
        that failed, for the waiter it was opened for."""
        if self._closed:
            return
        plan = plan_pool(
            self._members,
            self._waiters,
            self._settings,
            asyncio.get_running_loop().time() if now is None else now,
            opening=self._opening,
            failed_opens=failure is not None,
            keep=self._registrations.registrar,
        )
        for member, _reason in plan.close:
            self._destroy(member)
        if plan.fail or plan.assign:
            done: set[Waiter] = set()
            for waiter, reason in plan.fail:
                done.add(waiter)
                waiter.future.set_exception(failure if reason == OPEN_FAILED else self._timeout_error())
            for member, waiter in plan.assign:
                done.add(waiter)
                if waiter.shared:
                    member.shared += 1
                else:
                    member.leased = True
                waiter.future.set_result(member)
            self._waiters = collections.deque(w for w in self._waiters if w not in done)
        for _ in range(plan.open):
            self._opening += 1  # counted now, so the next plan sees it
            self._spawn(self._open_for_waiters())
        if plan.close and plan.refill:  # replaced in the background; a failed open alone is not retried
            self._schedule_refill()

    def _count_unsent(self) -> None:
        """A call that failed before it reached a member (no connection, none
        in time, the pool closed): failed in metrics(), as a lone client counts one it could not send."""
        self._retired["messages_failed"] += 1

    def _timeout_error(self) -> RequestTimeout:
        """The pool as it is when a waiter gives up: its members in use, and opens under way."""
        held = f"{sum(1 for m in self._members if m.busy)} of {len(self._members)} in use" if self._members else "none open"
        opening = f", {self._opening} opening" if self._opening else ""
        return RequestTimeout(
            f"no connection to {self.host}:{self.port} free within the acquire timeout ({held}{opening}; max_connections {self.max_connections})"
        )

    def _unreserve(self, member: Member, shared: bool) -> None:
        """Undo a hand-off's reservation of ``member`` for a waiter."""
        if shared:
            member.shared -= 1
        else:
            member.leased = False
        self._free(member)

    def _abandon(self, waiter: Waiter) -> None:
        """A waiter gave up: pass on whatever it had been handed meanwhile."""
        fut = waiter.future
        if not fut.done():
            fut.cancel()
            try:
                self._waiters.remove(waiter)
            except ValueError:
                pass
            self._settle()  # the opens it counted on may serve the next one
        elif fut.exception() is None:
            self._unreserve(fut.result(), waiter.shared)

    def _free(self, member: Member) -> None:
        """A member stopped being used by one caller, or was just opened: the
        plan hands it on, or closes it if it died."""
        if member.busy or member.closing or member not in self._members:
            return
        if member.usable:
            member.idle_since = asyncio.get_running_loop().time()
            if not self._waiters:
                return  # nobody to hand it to: nothing for the plan to decide (the reaper plans idle ones)
        self._settle()  # hands it on, or closes it if it died

    def _make_available(self, member: Member) -> None:
        self._members.append(member)
        self._free(member)

    # -- creating and destroying members ---------------------------------------------

    async def _create(self, *, counted: bool = False) -> Member:
        """Open one member (not yet listed); the registrar if one is missing.

        ``counted``: the caller already counted it in ``_opening``. A failed
        open is reported to the plan (it fails the waiter it was for) and
        raises NotConnected.
        """
        if not counted:
            self._opening += 1
        loop = asyncio.get_running_loop()
        client = IPCClient(self.app_id, self.host, self.port, reconnect=False, **self.client_options)
        member = Member(client, loop.time())
        self._opening_clients.add(client)
        try:
            self._check_open()
            await client.connect()
            client.on("disconnected", lambda reason: self._on_lost(member, reason))
            client.on("error", functools.partial(self._member_error, member))
            client._watch_withdrawals(lambda serve, channel, error: self._registrations.withdrawn(client, serve, channel, error))
            if self._registrations.any:
                await self._registrations.adopt(member)
            self._check_open()
        except BaseException as exc:
            member.closing = True
            self._opening -= 1
            self._retiring.add(member)  # its attempt counts in metrics(), as a lone client's failed connect() does
            self._spawn(self._retire(member))
            if self._closed and isinstance(exc, Exception):  # close() stopped it: not the server's failure
                error: BaseException = NotConnected("the pool is closed")
            elif isinstance(exc, Exception) and not isinstance(exc, (NotConnected, Unauthorized)):
                # Any failed open is NotConnected, its cause kept (a server at max_connections, a bad
                # handshake), as in Node (docs/resilience.md §7); Unauthorized alone is raised as it is.
                error = NotConnected(f"cannot connect to {self.host}:{self.port}: {exc}")
            else:
                error = exc
            self._refill_stopped |= isinstance(exc, Unauthorized)  # no refill retries a refused credential (as Node)
            self._settle(failure=error if isinstance(error, IPCError) else None)
            if error is exc:
                raise
            raise error from exc
        finally:
            self._opening_clients.discard(client)
        self._opening -= 1
        self._total_created += 1
        self._listeners.emit("member_created", client)
        if self._refill_stopped:  # the credentials work again: back to min_connections
            self._refill_stopped = False
            self._spawn(self._later_refill())
        return member

    async def _open_for_waiters(self) -> None:
        """An open the plan asked for (already counted in ``_opening``)."""
        try:
            member = await self._create(counted=True)
        except (IPCError, OSError) as exc:
            log.debug("opening a member for %s:%s failed: %s", self.host, self.port, printable(exc))
            return  # the plan failed the waiter it was for
        self._make_available(member)

    async def _open_registrar(self) -> Member:
        if self._size() >= self.max_connections:
            raise NotConnected(f"no live connection to {self.host}:{self.port} to register on")
        member = await self._create()  # adopts the registrar role itself
        self._make_available(member)
        return member

    def _member_error(self, member: Member, exc: BaseException) -> None:
        """A member's own error (a pooled subscription's handler that raised)
        is the pool's ``error``, as in Node; the one that ended its
        connection, reported right after ``disconnected``, is member_lost's."""
        if exc is not member.lost_with:
            self._listeners.emit("error", exc)

    def _on_lost(self, member: Member, reason: BaseException | None) -> None:
        """A member's ``disconnected`` event: the pool did not ask for it."""
        member.lost_with = reason.__cause__ if isinstance(reason, ConnectionLost) and reason.__cause__ is not None else reason
        if member.closing:
            return
        member.dead = True
        if revoked_for_good(reason):  # revoked by a reload: as a refused open, no refill retries it (a changed credential: once)
            self._refill_stopped = True
        self._registrations.forget(member)
        self._listeners.emit("member_lost", member.client, reason)
        if member in self._members:
            self._free(member)  # destroyed now if nobody uses it, else on release
        if self._registrations.any:
            self._schedule_refill()

    def _destroy(self, member: Member) -> None:
        if member in self._members:
            self._members.remove(member)
        member.closing = True
        self._total_destroyed += 1
        self._registrations.forget(member)
        self._retiring.add(member)
        self._spawn(self._retire(member))

    async def _retire(self, member: Member) -> None:
        member.closing = True
        try:
            await member.client.disconnect()
        finally:
            metrics = getattr(member.client, "metrics", None)
            if callable(metrics):
                fold_retired(self._retired, metrics())
            self._retiring.discard(member)  # in the same step as the fold: counted once, never dropped

    def _schedule_refill(self, attempt: int = 0) -> None:
        """Bring the pool back to ``min_connections`` (and a registrar) in the background, after a
        delay from ``attempt`` 1; not once its credentials were refused (until an open succeeds)."""
        if self._closed or self._refill_stopped or (self._refill_task is not None and not self._refill_task.done()):
            return
        if self._size() >= self.min_connections and not self._registrations.missing:
            return
        self._refill_task = asyncio.ensure_future(self._refill(attempt))

    async def _later_refill(self) -> None:
        await asyncio.sleep(0)  # once the caller listed the member it opened
        self._schedule_refill()

    async def _refill(self, attempt: int) -> None:
        """Retries with the members' backoff while the server is away."""
        backoff = Backoff(**{k: v for k, v in self.client_options.items() if k in _BACKOFF_OPTIONS})
        if attempt:  # after a failed start(): the server just refused, so wait first (as Node)
            await asyncio.sleep(backoff.delay(attempt - 1))
        while not self._closed and (self._size() < self.min_connections or self._registrations.missing):
            try:
                if self._size() >= self.min_connections or self._size() >= self.max_connections:
                    await self._registrations.ensure()
                else:
                    self._make_available(await self._create())
                attempt = 0
            except Unauthorized as exc:
                # As a client stops reconnecting (docs/security.md §3.2): retrying cannot fix
                # credentials. A later call still opens a member (failing Unauthorized fast);
                # once one opens, the refill starts again.
                log.warning("refilling the pool for %s:%s stopped: %s", self.host, self.port, printable(exc))
                self._refill_stopped = True
                return
            except (IPCError, OSError) as exc:
                log.debug("refilling the pool for %s:%s failed: %s", self.host, self.port, printable(exc))
                await asyncio.sleep(backoff.delay(attempt))
                attempt += 1

    async def _reap(self) -> None:
        """Let the plan close members idle for ``idle_timeout`` above ``min_connections``."""
        assert self.idle_timeout is not None
        period = min(max(self.idle_timeout / 4, 0.01), 1.0)
        while not self._closed:
            await asyncio.sleep(period)
            self._settle()

    def _find(self, client: IPCClient) -> Member | None:
        return next((m for m in self._members if m.client is client), None)
