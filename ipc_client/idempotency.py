"""Requests with an idempotency key (docs/protocol.md §6.6, docs/resilience.md §3).

The server runs a request once per key and keeps its answer for a while,
so a keyed request whose connection drops before its answer is not failed
with ``ConnectionLost`` but sent again once the client is connected again
(it waits in the offline queue meanwhile), within its own deadline: the
server answers the resend from the run the first attempt started, or from
its stored answer. Without a key nothing here runs.

Only a server that negotiates (its connect reply carries ``features``,
docs/protocol.md §15.1 item 3) keeps keys: a 2.0.0 server ignores them and
would run the resend again. A keyed request sent on a connection to such a
server, or that would be resent on one, fails with its ``ConnectionLost``
as every call in flight does at a loss (:func:`not_resent`), as 2.0.0
clients did.

Node's mirror is ``js-client/lib/idempotency.js``.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from ipc_protocol import ConnectionLost, NotConnected, RequestTimeout, Unauthorized
from ipc_protocol.idempotency import IDEMPOTENCY_HEADER, check_key, keyed_headers

from .connection import ClientConnection
from .metrics import ClientMetrics
from .state import ConnectionState, StateMachine

if TYPE_CHECKING:
    from .outbox import Outbox

__all__ = ["IDEMPOTENCY_HEADER", "check_key", "keyed_headers", "keys_kept", "not_resent", "resend_on_loss"]

T = TypeVar("T")

_NOT_RESENT: weakref.WeakSet[BaseException] = weakref.WeakSet()


def keys_kept(conn: ClientConnection) -> bool:
    """Whether ``conn``'s server keeps idempotency keys: it negotiates (a
    2.0.0 server's connect reply has no ``features``, §15.1 item 3)."""
    return conn.proto.negotiates


def not_resent(loss: ConnectionLost) -> ConnectionLost:
    """Mark ``loss`` as one a keyed request must end with, not be resent
    after: the server it ran on, or would run again on, ignores keys."""
    _NOT_RESENT.add(loss)
    return loss


async def resend_on_loss(
    attempt: Callable[[], Awaitable[T]],
    state: StateMachine,
    current: Callable[[], ClientConnection | None],
    deadline: float,
    policy: str,
    metrics: ClientMetrics | None = None,
    outbox: Outbox | None = None,
) -> T:
    """``attempt()`` again each time it fails with ``ConnectionLost``, until
    it ends otherwise or ``deadline`` (loop time) passes.

    ``policy`` is the call's ``on_disconnect``: ``"fail"`` asked not to wait
    for a connection, so the loss is raised. While the client reconnects,
    ``attempt()`` queues the request; once it has given up, ``attempt()``
    raises ``NotConnected``. ``metrics``: the attempt counted the loss as a
    failed call; a resent call is not over, so that count is taken back
    (the call counts once, in how it ends, as Node's does). ``outbox``
    counts the call in its ``keyed`` from start to end: between a loss and
    the resend it is in neither the pending table nor the queue, and
    ``drain()`` must still wait for it. It is also told the loss a resend
    outlived (``resend_cause``, taken by the submit the attempt starts
    with): a resend whose deadline passes in the offline queue fails with
    ``RequestTimeout`` whose ``__cause__`` is that loss (docs/resilience.md §3)."""
    if outbox is not None:
        outbox.keyed += 1
    try:
        return await _resend(attempt, state, current, deadline, policy, metrics, outbox)
    finally:
        if outbox is not None:
            outbox.keyed -= 1


async def _resend(
    attempt: Callable[[], Awaitable[T]],
    state: StateMachine,
    current: Callable[[], ClientConnection | None],
    deadline: float,
    policy: str,
    metrics: ClientMetrics | None,
    outbox: Outbox | None,
) -> T:
    loop = asyncio.get_running_loop()
    last: ConnectionLost | None = None
    while True:
        if outbox is not None:
            outbox.resend_cause = last  # attempt() starts with the outbox's submit, which takes it
        try:
            return await attempt()
        except NotConnected as gone:
            raise _gone_after(gone, last)  # noqa: B904 - its cause is set there
        except ConnectionLost as loss:
            last = loss
            if policy == "fail" or loss in _NOT_RESENT:  # asked to, or a resend could run it twice
                raise
            if loop.time() >= deadline:  # it outlives losses until its deadline, which is what ended it
                raise RequestTimeout("the deadline passed while the connection was lost") from loss
            conn = current()
            if state.state is ConnectionState.CONNECTED and (conn is None or not conn.is_open):
                # The socket is gone but the client has not seen it yet:
                # wait for it to notice (it then reconnects or gives up).
                try:
                    async with asyncio.timeout_at(deadline):
                        await state.changed()
                except (asyncio.TimeoutError, TimeoutError):
                    raise RequestTimeout("the deadline passed while the connection was lost") from loss
            if metrics is not None:
                metrics.failed(-1)


def _gone_after(gone: NotConnected, loss: ConnectionLost | None) -> NotConnected:
    """A resend that finds the client disconnected for good fails as a queued
    call does then: a users-file reload's cut (docs/security.md §3.4) says so,
    with the ``Unauthorized`` as its cause; another loss is the cause as it is."""
    if loss is None or gone.__cause__ is not None:
        return gone
    cut = loss.__cause__
    if isinstance(cut, Unauthorized):
        failure = NotConnected(f"the server closed the connection unauthorized: {cut.message}")
        failure.__cause__ = cut
        return failure
    gone.__cause__ = loss
    return gone
