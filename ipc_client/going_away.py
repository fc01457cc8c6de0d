"""The server's goaway notice (docs/protocol.md §13 item 3, docs/resilience.md
§12): it is closing this connection and reads on until the client closes.

Closing at once would reset what crosses the close, answers included; not
closing would let new calls cross it. So, as an HTTP/2 client on GOAWAY:
at the notice the client sends nothing new on the connection (its state
leaves ``connected``: new calls wait in the offline queue as while
reconnecting, or fail ``NotConnected`` with reconnect off), reports
``disconnected`` with a ``ShuttingDown`` cause, and keeps reading: each call
in flight ends with its answer (``shutting_down`` for those the server did
not run). Once none is left, or after the server's own wait (2 s, when it
aborts), the client closes the socket and reconnects with its usual
backoff; a call still waiting then fails ``connection_lost``, as it would.

A notice that comes while the client is still connecting (with the connect
answer, or while the subscriptions are restored: a shutdown during a
reconnection storm) marks the connection; the attempt then fails instead of
going ``connected`` (``told_while_connecting``), closes the socket without a
reset, and is retried as any failed attempt; calls made meanwhile wait in
the offline queue.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ipc_protocol import ConnectionLost, Message, NotConnected, ShuttingDown
from ipc_protocol.restarts import is_goaway

from .state import ConnectionState

if TYPE_CHECKING:
    from .connection import ClientConnection
    from .lifecycle import Lifecycle

__all__ = ["go_away", "let_go", "told_while_connecting", "GOAWAY_WAIT_S"]

log = logging.getLogger("ipc_client")

GOAWAY_WAIT_S = 2.0  # the server's wait for its clients to close (ipc_server/shutdown.py)
_CHECK_S = 0.01  # how often the wait looks at what is still in flight
_CLOSE_WAIT_S = 1.0  # for the server to see the close, then the socket is aborted


def go_away(link: Lifecycle, conn: ClientConnection, msg: Message) -> bool:
    """If ``msg`` is the notice (True): stop using ``conn``, let what it
    carries end, then close it."""
    if not is_goaway(msg):
        return False
    conn.going_away = True  # still connecting: the attempt fails once it would be connected
    sm = link._sm
    if conn is not link.conn or sm.state is not ConnectionState.CONNECTED:
        return True
    conn.stop_heartbeat()  # it sends nothing new, pings included; the wait is bounded
    cause = ShuttingDown(f"{link.options.peer} is shutting down: the connection closes once its calls are answered")
    retry = link.options.reconnect
    log.info("%s is shutting down (goaway): %d calls in flight end first", link.options.peer, len(link._calls))
    if retry:
        sm.set(ConnectionState.RECONNECTING)  # new calls queue for the next connection
    else:
        sm.set(ConnectionState.DISCONNECTED)
        gone = NotConnected("the server is shutting down and reconnect is off")
        gone.__cause__ = cause
        link._outbox.give_up(gone)
    link._emit("disconnected", cause)
    task = asyncio.ensure_future(_close_when_done(link, conn, link._generation, retry))
    tasks = link._tasks()
    tasks.add(task)  # disconnect() cancels it
    task.add_done_callback(tasks.discard)
    return True


def told_while_connecting(peer: str) -> NotConnected:
    """The failure of an attempt whose connection was told goaway before it
    was connected: retried with backoff as any failed attempt; with reconnect
    off, what connect() raises."""
    failure = NotConnected(f"cannot connect to {peer}: it is shutting down")
    failure.__cause__ = ShuttingDown(f"{peer} sent goaway while the connection was being opened")
    return failure


async def let_go(link: Lifecycle, conn: ClientConnection) -> None:
    """disconnect() after a goaway with reconnect off: the state is already
    ``disconnected`` but the connection is still held for its answers; it
    ends now as a disconnect() ends one (calls ``connection_lost``, the
    wait cancelled), not at the last answer or the 2 s bound."""
    link._drop(conn, ConnectionLost("the client disconnected"))  # its loss is no longer reported
    await _close(conn)
    if link._sm.state is ConnectionState.DISCONNECTED:  # no connect() meanwhile
        link._disconnected(None, False)  # the goaway's wait and the client's tasks end


async def _close(conn: ClientConnection) -> None:
    """Close without a reset; abort only if the server does not see it."""
    conn.close()
    try:
        async with asyncio.timeout(_CLOSE_WAIT_S):
            await asyncio.shield(conn.closed)
    except TimeoutError:
        conn.abort()
        await asyncio.shield(conn.closed)


def _in_flight(link: Lifecycle) -> int:
    return len(link._calls) + len(link.streams)


async def _close_when_done(link: Lifecycle, conn: ClientConnection, generation: int, retry: bool) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + GOAWAY_WAIT_S
    while _in_flight(link) and not conn.closed.done() and loop.time() < deadline:
        await asyncio.wait((conn.closed,), timeout=min(_CHECK_S, deadline - loop.time()))
    await _close(conn)  # the calls left (at the bound) fail connection_lost with the loss (Lifecycle._on_lost)
    if retry and link._generation == generation and link._sm.state is ConnectionState.RECONNECTING:
        link._reconnector.start(generation)
