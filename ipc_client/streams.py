"""Streams the client consumes (docs/protocol.md §15): ``client.stream()``.

``async for item in client.stream(channel, payload)`` sends a request with
a ``window`` and yields the ``stream_item`` payloads as they come, until
``stream_end`` (the loop ends) or an error response (raised after the items
before it). What arrives waits in the stream's buffer; the window bounds it:
the client grants more credit, half a window at a time, only as the loop
takes items (``ipc_protocol.streams.Window``), so a loop that stops reading
stops its producer and nothing else: the connection keeps being read.

``client.stream()`` returns a :class:`Stream`: an async iterator, and an
async context manager. ``aclose()``, leaving its ``async with``, or
cancelling the task that iterates sends a ``cancel`` (§15.4) at once, and
whatever still arrives for it is dropped. Leaving an ``async for`` early
(``break``, an exception) closes it too, as Node's ``for await`` does, but
only once the event loop finalizes the loop's iterator (PEP 525: Python
has no hook on ``break``): ``async with`` is the sure way. Its
deadline (``timeout``, the whole stream) and idle timeout (``idle_timeout``,
between items while the producer holds credit) travel with the request and
are kept by the server, which ends the stream ``timeout`` (raised as
``RequestTimeout`` after the items before it).

Against a server that did not grant ``streams`` (older than §15) the request
goes out plain and its answer is a one-item stream.

Host interface: ``lifecycle`` hands it ``stream_item`` / ``stream_end``
frames (:meth:`Streams.on_frame`), the responses no call takes
(:meth:`Streams.settle`) and the connection's loss (:meth:`Streams.fail_all`).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ipc_protocol import ConnectionLost, IPCError, Message, MessageType, error_from_wire, validate_channel
from ipc_protocol.headers import check_headers
from ipc_protocol.payload_paths import read_once
from ipc_protocol.streams import CANCEL, DEFAULT_WINDOW, STREAMS, Window, cancel, credit

from . import otel, tracing
from .calls import Calls, budget_ms
from .connection import ClientConnection
from .timeouts import check_timeout

if TYPE_CHECKING:
    from .drain import Drain

__all__ = ["Stream", "Streams", "Streaming", "DEFAULT_WINDOW", "check_stream"]


class Stream(AsyncIterator[Any]):
    """The items of one stream, as ``client.stream()`` returns them: an
    async iterator, closed (a ``cancel`` unless it had ended) by
    ``aclose()`` or on leaving its ``async with``, at once.
    """

    __slots__ = ("_gen",)

    def __init__(self, gen: AsyncGenerator[Any, None]) -> None:
        self._gen = gen

    @property
    def generator(self) -> AsyncGenerator[Any, None]:
        """The async generator underneath (a handler that returns a Stream relays it)."""
        return self._gen

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._loop()

    async def _loop(self) -> AsyncIterator[Any]:
        """What ``async for`` runs. Python has no hook on ``break`` (PEP 525),
        but this generator is referenced by the loop alone: the event loop
        closes it, and so the stream, soon after the loop lets go of it."""
        try:
            while True:
                try:
                    item = await self._gen.__anext__()
                except StopAsyncIteration:
                    return
                yield item
        finally:
            await self._gen.aclose()

    def __anext__(self) -> Awaitable[Any]:
        return self._gen.__anext__()

    async def aclose(self) -> None:
        """Leave the stream: a ``cancel`` to its producer unless it had ended."""
        await self._gen.aclose()

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._gen.aclose()


class _Consuming:
    """One stream this client consumes: what arrived, and how it ended."""

    __slots__ = ("items", "end", "waiter")

    def __init__(self) -> None:
        self.items: collections.deque[Any] = collections.deque()
        self.end: Message | BaseException | None = None  # stream_end, the response, or the connection's loss
        self.waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Streams:
    """The streams this client consumes, by request id.

    Args:
        calls: the request lifecycle (its app id, its memory of ids whose
            late answers are dropped, the plain call of the fallback).
        ready: the connection once connected (``Lifecycle.ready``).
        request_timeout: the default idle timeout, and the longest wait for
            a connection when the stream has no deadline.
        client: the client (``host``, ``port``), for the streams' spans.
    """

    def __init__(self, calls: Calls, ready: Callable[[float | None], Awaitable[ClientConnection]], request_timeout: float, client: Any = None) -> None:
        self._calls = calls
        self._client = client  # its host and port name the server in a stream's span
        self._ready = ready
        self.request_timeout = request_timeout
        self._open: dict[str, _Consuming] = {}

    def __len__(self) -> int:
        return len(self._open)

    async def consume(
        self, channel: str, payload: Any, *, timeout: float | None, idle_timeout: float | None, window: Window, headers: dict[str, str] | None
    ) -> AsyncGenerator[Any, None]:
        """The items of one stream (``IPCClient.stream``, which checked the arguments).
        Refused on a loop other than the client's, at the first step: the stream
        would read and write the connection from that loop's thread."""
        loop = self._calls.own_loop()
        # A traceparent as any request's (docs/tracing.md), drawn at the first
        # step; with OpenTelemetry, a CLIENT span that ends with the stream.
        headers, span = tracing.outgoing("request", channel, headers, self._client)
        ended = False  # its end was read: leaving after it is no cancel
        failure: BaseException | None = None
        try:
            started = loop.time()
            ready_by = started + (self.request_timeout if timeout is None else timeout)
            conn = await self._ready(ready_by)
            idle = self.request_timeout if idle_timeout is None else idle_timeout
            if STREAMS not in conn.proto.features:  # an older server: one request, one item (§15.1 item 3)
                plain = Message.build(MessageType.REQUEST, self._calls.app_id, channel, payload, headers=headers)
                deadline = started + (idle if timeout is None else timeout)
                answer = (await self._calls.call(conn, plain, deadline, user=True)).payload
                ended = True
                yield answer
                return
            remaining = None if timeout is None else timeout - (loop.time() - started)
            msg = Message.build(
                MessageType.REQUEST, self._calls.app_id, channel, payload, headers=headers, window=window.size,
                timeout_ms=None if remaining is None else budget_ms(remaining), idle_timeout_ms=budget_ms(idle),
            )  # fmt: skip
            rid = msg.message_id
            if not conn.is_open:  # closing, its loss not handled yet: fail once it is (Calls.unsent)
                await self._calls.unsent(conn, ready_by, False)
            conn.send(msg)  # before it is registered: a request never sent is never cancelled
            stream = self._open[rid] = _Consuming()
            try:
                while True:
                    if stream.items:
                        item = stream.items.popleft()
                        grant = window.taken()
                        if grant and stream.end is None and conn.is_open:
                            conn.send(credit(self._calls.app_id, channel, rid, grant))
                        yield item
                        continue
                    end = stream.end
                    if end is None:
                        stream.waiter = loop.create_future()
                        await stream.waiter
                        continue
                    if isinstance(end, BaseException):
                        raise end
                    if end.message_type is MessageType.RESPONSE:  # an error, or a producer that did not stream
                        if end.error is not None:
                            raise error_from_wire(end.error.model_dump())
                        stream.end = _ENDED
                        ended = True
                        yield end.payload
                    return
            finally:
                del self._open[rid]
                if stream.end is None:  # given up before its end: tell the producer (§15.4)
                    self._calls.forget(rid)
                    if conn.is_open and CANCEL in conn.proto.features:
                        try:
                            conn.send(cancel(self._calls.app_id, channel, rid))
                        except IPCError:  # pragma: no cover - closed meanwhile
                            pass
        except GeneratorExit:  # left before its end (aclose, break): a cancel, as a request's caller giving up
            failure = None if ended else asyncio.CancelledError()
            raise
        except BaseException as exc:
            failure = exc
            raise
        finally:
            if span is not None:
                otel.end(span, failure)

    # -- what arrives ------------------------------------------------------------------

    def on_frame(self, msg: Message) -> None:
        """A ``stream_item`` or ``stream_end``; one for a stream given up is dropped."""
        stream = self._open.get(msg.reply_to)  # type: ignore[arg-type]
        if stream is None or stream.end is not None:
            return
        if msg.message_type is MessageType.STREAM_ITEM:
            stream.items.append(msg.payload)
        else:
            stream.end = msg
        stream.wake()

    def settle(self, msg: Message) -> bool:
        """A response that ends a stream (an error, or a one-item answer);
        False when it ends none of ours."""
        stream = self._open.get(msg.reply_to)  # type: ignore[arg-type]
        if stream is None or stream.end is not None:
            return False
        stream.end = msg
        stream.wake()
        return True

    def fail_all(self, reason: IPCError) -> None:
        """The connection is gone: every stream ends with ``ConnectionLost``
        after the items that arrived (a producer's own loss is the server's
        ``responder_lost``)."""
        for stream in self._open.values():
            if stream.end is None:
                stream.end = ConnectionLost(str(reason))
                stream.wake()


# A one-item answer was yielded: the stream has ended.
_ENDED = Message.build(MessageType.STREAM_END, "", "", None)


class Streaming:
    """``IPCClient.stream()`` (a base of the facade, as ``ClientExtensions``)."""

    if TYPE_CHECKING:
        _streams: Streams
        _drain: Drain

    def stream(
        self,
        channel: str,
        payload: Any = None,
        *,
        timeout: float | None = None,
        idle_timeout: float | None = None,
        window: int | float = DEFAULT_WINDOW,
        headers: dict[str, str] | None = None,
    ) -> Stream:
        """The items a streaming handler yields for this request, as they come
        (docs/protocol.md §15)::

            async with client.stream("ticks", {"symbol": "ACME"}, timeout=60) as ticks:
                async for item in ticks:
                    ...

        ``timeout``: the whole stream's deadline in seconds (None: none);
        ``idle_timeout``: the longest wait between items while the producer
        may send (default ``request_timeout``); ``window``: items in flight
        or buffered at most (64). Leaving ``async with``, ``aclose()`` or
        cancelling the task cancels the stream at its producer at once;
        leaving an ``async for`` early, soon after (when the event loop
        finalizes the loop's iterator).

        Raises (from the loop, after the items that came first):
            RequestTimeout: the deadline or the idle timeout passed.
            HandlerError, RemoteError: the producer failed; ResponderLost: it disconnected.
            ConnectionLost: this client's connection dropped.
        """
        check_stream(channel, headers, timeout, idle_timeout, window)
        self._drain.check()  # none while draining (docs/resilience.md §12)
        return Stream(self._streams.consume(channel, read_once(payload), timeout=timeout, idle_timeout=idle_timeout, window=Window(window), headers=headers))


def check_stream(channel: str, headers: dict[str, str] | None, timeout: float | None, idle_timeout: float | None, window: int | float) -> None:
    """A stream's arguments, checked where ``stream()`` is called (also by
    the pool's, the load-balanced client's and the service client's)."""
    validate_channel(channel)
    if headers is not None:
        check_headers(headers)
    for name, value in (("timeout", timeout), ("idle_timeout", idle_timeout)):
        if check_timeout(value, None, name) is not None and not value > 0:  # type: ignore[operator]  # infinite: none is None
            raise ValueError(f"{name} must be a positive, finite number of seconds or None")
    Window(window)
