"""``drain()``: leave without dropping work (docs/resilience.md §12), after
nats.py's ``drain()``. In order:

1. No new work: a call the application starts from now on fails with
   ``NotConnected`` (code ``not_connected``: this client will not send it).
   Calls made by the handlers the client is still running (inside the trace
   of a message it received, ``tracing.current()``) go through: they are
   how that work finishes.
2. The server routes elsewhere: every responder registration is withdrawn
   (``unserve``, whose ack means no more requests come) and every
   subscription removed.
3. What is in flight ends: this client's calls (and the queue, replayed
   once connected: the offline queue is flushed, not dropped), the served
   requests and handlers running or held, the streams it consumes, the
   calls waiting to be written behind a full send buffer.
4. ``disconnect()``; what did not end by the deadline ends as there:
   calls ``connection_lost``, queued calls ``not_connected``, handlers cancelled.

Node's ``lib/drain.js`` is the same.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ipc_protocol import NotConnected

from . import tracing
from .timeouts import check_timeout

if TYPE_CHECKING:
    from .admission import Admission
    from .calls import Calls
    from .lifecycle import Lifecycle
    from .outbox import Outbox
    from .streams import Streams
    from .subscriptions import Subscriptions

__all__ = ["Drain", "Draining", "DEFAULT_DRAIN_TIMEOUT_S"]

DEFAULT_DRAIN_TIMEOUT_S = 30.0  # nats.py's drain_timeout
_CHECK_EVERY_S = 0.01  # how often what is in flight is looked at again


class Drain:
    """One client's drain: whether it is under way (``check()`` refuses new
    calls then), and the steps."""

    def __init__(self, link: Lifecycle, subs: Subscriptions, calls: Calls, outbox: Outbox, admission: Admission, streams: Streams) -> None:
        self._link, self._subs, self._calls, self._outbox, self._admission, self._streams = link, subs, calls, outbox, admission, streams
        self.active = False
        self._done: asyncio.Future[bool] | None = None

    def check(self) -> None:
        """Refuse a new call while draining, unless a handler of this client makes it."""
        if self.active and tracing.current() is None:
            raise NotConnected("the client is draining (drain()): it starts no new calls")

    async def run(self, timeout: float) -> bool:
        loop = self._calls.own_loop()
        timeout = check_timeout(timeout, DEFAULT_DRAIN_TIMEOUT_S)
        if timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds")
        if self._done is not None:  # a drain is under way: the same outcome
            return await asyncio.shield(self._done)
        deadline = loop.time() + timeout
        self._done = loop.create_future()
        self.active = True
        clean = False
        try:
            await self._withdraw(deadline)
            clean = await self._settle(loop, deadline)
        finally:
            try:
                await self._link.disconnect()
            finally:
                self.active = False
                self._done.set_result(clean)
                self._done = None
        return clean

    async def _withdraw(self, deadline: float) -> None:
        """Unserve and unsubscribe everything; each unserve returns once the
        server has acknowledged (requests it forwarded before still arrive)."""
        subs = self._subs
        withdrawals = [subs.unserve(channel) for channel in list(subs.services)]
        withdrawals += [subs.unsubscribe(channel, None) for channel in list(subs.handlers)]
        if not withdrawals:
            return
        left = deadline - asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(max(left, 0.001)):
                await asyncio.gather(*withdrawals, return_exceptions=True)
        except (asyncio.TimeoutError, TimeoutError):
            pass  # the deadline came first: disconnect() ends the rest

    def _busy(self) -> bool:
        """Whether anything is in flight. A keyed request counts from start to
        end (``outbox.keyed``): between a loss and its resend it is in
        neither the pending table nor the queue, yet it will be settled."""
        admission, outbox = self._admission, self._outbox
        conn = self._link.conn
        return bool(len(self._calls) or (conn is not None and len(conn.line)) or outbox.queue or outbox.replaying or outbox.keyed or admission.tasks or admission.held or len(self._streams))

    async def _settle(self, loop: asyncio.AbstractEventLoop, deadline: float) -> bool:
        """Wait until nothing is in flight (True) or the deadline (False)."""
        while self._busy():
            left = deadline - loop.time()
            if left <= 0:
                return False
            await asyncio.sleep(min(left, _CHECK_EVERY_S))
        return True


class Draining:
    """``IPCClient.drain()`` (a base of the facade, as ``Streaming``)."""

    if TYPE_CHECKING:
        _drain: Drain

    async def drain(self, timeout: float = DEFAULT_DRAIN_TIMEOUT_S) -> bool:
        """Finish what is in flight, then close (docs/resilience.md §12).

        From the call on, new calls fail with ``NotConnected`` (calls made by
        the handlers still running go through); every responder registration
        and subscription is withdrawn, so the server routes elsewhere; this
        client's calls in flight and its offline queue (sent once connected),
        the requests it serves and its handlers may finish within
        ``timeout`` seconds; then it disconnects. Returns True when all of it
        ended in time, False when the deadline cut some of it (those end as
        :meth:`disconnect` ends them). A second call waits for the first."""
        return await self._drain.run(timeout)
