"""The re-check of a users-file reload (docs/security.md §3.4): every open
connection against the new users, every subscription and ``serve``
registration against its new rights, in slices of ``SLICE_S`` that let
the loop run other work between them, as a stream's items do
(docs/protocol.md §15.6).

Checking a pattern against allow and deny patterns costs about 5-15 µs:
a reload checked 60,000 subscriptions in one go, holding every client's
traffic for 0.4-0.9 s (about a minute at the default cap of 4,000,000
subscriptions, long enough for heartbeats to cut clients). Meanwhile the
new users apply already: a connect, and an operation of a connection not
yet re-checked, are checked against them (``Auth.current``), and a
subscription or registration made meanwhile was checked as it was made.

A reload that comes while one re-checks takes over: the earlier walk
stops at its next slice, and the later one walks every connection again,
so no pattern is ever checked against a mix of old and new users.

The first slice runs in ``reload_users()``'s own call, which was a plain
method in 2.0.0: a caller that does not await it still gets the users
applied and, for a re-check that fits in one slice, the final counts.
"""


from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Generator, Iterator
from itertools import chain, repeat
from typing import TYPE_CHECKING, Any

from ipc_protocol.streams import SLICE_S

if TYPE_CHECKING:
    from .auth import Auth
    from .connection import ServerConnection

__all__ = ["UsersReload", "recheck"]

log = logging.getLogger("ipc_server")
_running: set[asyncio.Task[None]] = set()  # the walks under way: the loop holds tasks weakly only


class UsersReload(dict[str, int]):
    """What ``IPCServer.reload_users()`` returns: the counts
    ``{"disconnected": D, "withdrawn": W}``, final once the re-check is
    over (``done()``); awaiting it waits for that and returns it. A dict
    that can be awaited, so that both a 2.0.0 caller's plain
    ``server.reload_users()`` (raising at the call, the users applied on
    return) and ``await server.reload_users()`` work."""

    def __init__(self) -> None:
        super().__init__(disconnected=0, withdrawn=0)
        self.checked = 0  # subscriptions and registrations re-checked
        self.finished = True  # False once a later reload took over the re-check
        self._task: asyncio.Task[None] | None = None

    def done(self) -> bool:
        """Whether the re-check is over: the counts are final."""
        return self._task is None or self._task.done()

    def __await__(self) -> Generator[Any, None, UsersReload]:
        if self._task is not None:  # shielded: a caller's timeout or cancel never stops the re-check halfway
            yield from asyncio.shield(self._task).__await__()
        return self


def recheck(auth: Auth, reload: int, connections: list[ServerConnection], withdraw: Callable[..., Any], counts: UsersReload, over: Callable[[UsersReload], None]) -> None:
    """Re-check ``connections`` (those open when reload number ``reload``
    applied its users); ``withdraw(conn, pattern, serve)`` drops what the
    new rights no longer allow, and the client is told. The first slice
    runs in this call, so a reload whose re-check fits in it (up to some
    hundreds of patterns) is over when ``reload_users()`` returns, as
    it was in 2.0.0; the rest runs in a task. ``over(counts)`` is called
    once the walk ends or stops."""
    steps = _walk(auth, connections, withdraw, counts)
    if next(steps, False):
        task = counts._task = asyncio.get_running_loop().create_task(_rest(auth, reload, steps, counts, over))
        _running.add(task)
        task.add_done_callback(_ended)
        return
    over(counts)


async def _rest(auth: Auth, reload: int, steps: Iterator[bool], counts: UsersReload, over: Callable[[UsersReload], None]) -> None:
    """The slices after the first, one a loop turn, until the walk ends or a later reload takes over."""
    try:
        while True:
            await asyncio.sleep(0)
            if auth.reloads != reload:
                counts.finished = False
                break
            if not next(steps, False):
                break
    except Exception:
        log.exception("users re-check of the open connections failed")  # a bug of ours: said even if nobody awaits
        raise
    over(counts)


def _ended(task: asyncio.Task[None]) -> None:
    _running.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: logged by _rest already, raised again to whoever awaits


def _walk(auth: Auth, connections: list[ServerConnection], withdraw: Callable[..., Any], counts: UsersReload) -> Iterator[bool]:
    """The walk itself: yields True when a slice of ``SLICE_S`` is over and more is left."""
    clock = time.monotonic  # the loop's clock, without needing the loop: a reload before start() has no connections to walk
    slice_ends = clock() + SLICE_S
    for conn in connections:
        if clock() >= slice_ends:
            yield True
            slice_ends = clock() + SLICE_S
        grant = auth.current(conn)  # the new users' grant; None: closed, or disconnected by them
        if grant is None:
            continue
        held = chain(zip(repeat(False), list(conn.subscriptions)), zip(repeat(True), list(conn.responder_for)))  # copies: C speed
        for serve, pattern in held:
            if clock() >= slice_ends:
                yield True
                slice_ends = clock() + SLICE_S
                if auth.grants.get(conn) is not grant:
                    break  # closed meanwhile
            if pattern not in (conn.responder_for if serve else conn.subscriptions):
                continue  # dropped meanwhile
            counts.checked += 1
            if not (grant.may_serve(pattern) if serve else grant.may_subscribe(pattern)):
                withdraw(conn, pattern, serve)
                auth.withdrawn(conn, grant.user, "serve" if serve else "subscribe", pattern)
