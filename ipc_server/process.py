"""The server as a process (``python -m ipc_server``): run until a signal.

SIGTERM, what orchestrators and rolling restarts send, is the gentle stop:
lame duck first (docs/protocol.md §13.1: clients told to move, then up to
``lame_duck_duration_s`` for them to go), then the shutdown of §13. SIGINT
(Ctrl-C) is the shutdown of §13 at once; during a lame duck it cuts the wait
short, as a second SIGTERM does. SIGHUP reloads the users file
(docs/security.md §3.4) and the TLS files (§2.4).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from .early_signals import EarlySignals
from .reloads import reload_on_sighup

if TYPE_CHECKING:
    from .config import ServerConfig

__all__ = ["serve_until_signalled", "StartRefused"]


class StartRefused(Exception):
    """A ``ValueError`` raised while the server was built or started: a
    setting it cannot use, which ``python -m ipc_server`` reports in one
    line with exit code 2, as its own checks' (never a traceback)."""


class _Server(Protocol):
    """What this module uses of an ``IPCServer`` (the facade is server.py's alone)."""

    @property
    def config(self) -> ServerConfig: ...

    async def start(self) -> None: ...

    async def serve_forever(self) -> None: ...

    async def lame_duck(self, duration_s: float | None = None) -> None: ...

    async def close(self, grace_s: float | None = None) -> None: ...

    def reload_users(self) -> object: ...

    def reload_tls(self) -> None: ...


async def serve_until_signalled(
    make_server: Callable[[], _Server], *, ready: Callable[[Any], None] | None = None, early: EarlySignals | None = None
) -> None:
    """Start the server ``make_server()`` builds and run it until SIGINT/SIGTERM.
    ``early``: a SIGINT or SIGTERM caught while the server started is acted
    on once the loop's handlers are in place, as if it came then."""
    try:
        server = make_server()
        await server.start()
    except ValueError as exc:
        raise StartRefused(str(exc)) from exc
    loop = asyncio.get_running_loop()
    stopping: set[asyncio.Task[None]] = set()  # held until done: the loop keeps weak references

    def stop(leave: Callable[[], Coroutine[Any, Any, None]]) -> None:
        task = loop.create_task(leave())
        stopping.add(task)
        task.add_done_callback(stopping.discard)

    leaves = {signal.SIGTERM: server.lame_duck, signal.SIGINT: server.close}
    for sig, leave in leaves.items():
        try:
            loop.add_signal_handler(sig, stop, leave)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-Unix
            pass
    reload_on_sighup(loop, server)
    if early is not None and early.stop in leaves:  # came while it started: the loop's handlers have it from here on
        stop(leaves[signal.Signals(early.stop)])
    if ready is not None:
        ready(server)
    await server.serve_forever()

