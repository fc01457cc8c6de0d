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
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from itertools import chain, repeat
from typing import TYPE_CHECKING, Any

from ipc_protocol.streams import SLICE_S

if TYPE_CHECKING:
    from .auth import Auth
    from .connection import ServerConnection

__all__ = ["recheck"]


async def recheck(auth: Auth, reload: int, connections: list[ServerConnection], withdraw: Callable[..., Any]) -> tuple[int, bool]:
    """Re-check ``connections`` (those open when reload number ``reload``
    applied its users); ``withdraw(conn, pattern, serve)`` drops what the
    new rights no longer allow, and the client is told. Returns (patterns
    checked, whether it ran to its end: False once a later reload took over)."""
    loop = asyncio.get_running_loop()
    slice_ends = loop.time() + SLICE_S
    checked = 0
    for conn in connections:
        if loop.time() >= slice_ends:
            await asyncio.sleep(0)
            if auth.reloads != reload:
                return checked, False
            slice_ends = loop.time() + SLICE_S
        grant = auth.current(conn)  # the new users' grant; None: closed, or disconnected by them
        if grant is None:
            continue
        held = chain(zip(repeat(False), list(conn.subscriptions)), zip(repeat(True), list(conn.responder_for)))  # copies: C speed
        for serve, pattern in held:
            if loop.time() >= slice_ends:
                await asyncio.sleep(0)
                if auth.reloads != reload:
                    return checked, False
                slice_ends = loop.time() + SLICE_S
                if auth.grants.get(conn) is not grant:
                    break  # closed meanwhile
            if pattern not in (conn.responder_for if serve else conn.subscriptions):
                continue  # dropped meanwhile
            checked += 1
            if not (grant.may_serve(pattern) if serve else grant.may_subscribe(pattern)):
                withdraw(conn, pattern, serve)
                auth.withdrawn(conn, grant.user, "serve" if serve else "subscribe", pattern)
    return checked, True
