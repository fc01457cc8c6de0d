"""Which servers a LoadBalancedClient sends calls to (docs/resilience.md §8):
a server leaves the rotation when a call or its pool says it is gone, and a
round of health checks every ``health_check_interval`` takes it out or
brings it back (``server_down``, ``server_up``); a server that says it is
leaving (lame duck) gets no new calls while another can take them
(``server_leaving``). The Node client's
``lib/balanced_health.js`` is its twin.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from ipc_protocol import ErrorCode, IPCError, NotConnected, printable

from .balancer import Server
from .client import IPCClient
from .pool import ConnectionPool

__all__ = ["ServerHealth", "unreachable"]

log = logging.getLogger("ipc_client.balancer")


class ServerHealth:
    """The servers' health and the task of the checks.

    ``pools`` gives each server's pool; ``emit`` the events; ``closed()``
    whether the owner is closed (then nothing changes any more)."""

    def __init__(
        self,
        pools: dict[Server, ConnectionPool],
        *,
        timeout: float,
        emit: Callable[..., None],
        closed: Callable[[], bool],
    ) -> None:
        self._pools = pools
        self.timeout = timeout
        self._emit = emit
        self._closed = closed
        self._task: asyncio.Task[None] | None = None

    async def open_all(self) -> list[BaseException | None]:
        """Open every server's pool (``start()``): one that fails leaves the
        rotation with its error. Each server's error, in the servers' order
        (None: opened)."""

        async def open_one(server: Server) -> BaseException | None:
            try:
                await self._pools[server].start()
            except (IPCError, OSError) as exc:
                self.mark_down(server, exc)
                return exc
            return None

        return list(await asyncio.gather(*(open_one(s) for s in self._pools)))

    def mark_down(self, server: Server, error: BaseException | None) -> None:
        server.leaving = False  # gone now, not leaving
        if not server.healthy or self._closed():
            return
        server.healthy = False
        log.warning("%s out of rotation: %s", server.address, printable(error))
        self._emit("server_down", server.snapshot(), error)

    def mark_up(self, server: Server) -> None:
        if server.healthy or self._closed():
            return
        server.healthy = True
        log.info("%s back in rotation", server.address)
        self._emit("server_up", server.snapshot())

    def leaving(self, server: Server, notice: dict[str, Any]) -> None:
        """The server said it is leaving (lame duck, docs/protocol.md §13.1):
        calls go to the others from now on (to it only if no other is
        healthy) until its connection goes (mark_down) or a new one is made
        (connected); health checks and calls that succeed do not undo it."""
        if server.leaving or self._closed():
            return
        server.leaving = True
        log.info("%s is leaving (lame duck): calls go to the other servers", server.address)
        self._emit("server_leaving", server.snapshot(), notice.get("deadline_ms"))

    def connected(self, server: Server, client: IPCClient) -> None:
        """A new connection to ``server``: it is in rotation (a server leaving
        accepts none, so this is its successor), and it says if it leaves."""
        client.on("lame_duck", lambda notice: self.leaving(server, notice))
        server.leaving = False
        self.mark_up(server)

    def start(self, interval: float) -> None:
        """A round of checks every ``interval`` seconds (a round never overlaps the next)."""
        self._task = asyncio.ensure_future(self._loop(interval))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self, interval: float) -> None:
        while not self._closed():
            await asyncio.sleep(interval)
            await self.check_all()

    async def check_all(self) -> None:
        """Ping every server once now."""
        await asyncio.gather(*(self._check(s) for s in self._pools))

    async def _check(self, server: Server) -> None:
        """Ping ``server`` with its pool's :meth:`~ConnectionPool.health_check`,
        as Node's checks use ``pool.healthCheck()``: a failed check takes it
        out with the same reason in both clients, ``NotConnected("health
        check failed: <code>")``."""
        pool = self._pools[server]
        timeout = self.timeout
        try:
            async with asyncio.timeout(timeout):  # a bound of its own too: the check never outlasts it
                report = await pool.health_check(timeout)
        except TimeoutError:
            report = {"healthy": False, "error": ErrorCode.TIMEOUT.value}
        if self._closed():
            return
        if report["healthy"]:
            self.mark_up(server)
        else:
            self.mark_down(server, NotConnected(f"health check failed: {report.get('error') or 'unhealthy'}"))


def unreachable(errors: Iterable[BaseException | None]) -> NotConnected:
    """``start()``'s error when no server could be reached (docs/resilience.md
    §8): the first server's error in its words, and as ``__cause__`` what
    lies under its ``NotConnected`` wrappers (the ``ssl.SSLError``, the
    ``ConnectionRefusedError``, an ``Unauthorized``), the cause ``connect()``
    gives, as the Node client does."""
    first = next((error for error in errors if error is not None), None)
    if first is None:  # each opened, then dropped
        return NotConnected("no server could be reached")
    cause = first
    while isinstance(cause, NotConnected) and cause.__cause__ is not None:
        cause = cause.__cause__
    error = NotConnected(f"no server could be reached: {first}")
    error.__cause__ = cause
    return error
