"""Served requests as an async iterator (``client.requests(pattern)``), on
the buffer of iterators.py; js-client/lib/served_requests.js is the same in Node.

A served request always gets exactly one answer: the loop's ``respond()`` or
``fail()``; ``limit_exceeded`` for one dropped by the buffer's policy;
``responder_lost`` for one still buffered or unanswered when the loop ends.
One whose requester stopped waiting (its deadline passed, the connection it
came on is gone, it cancelled: the server has answered it) is skipped
unanswered, as handler admission skips held requests; ``req.cancelled`` tells
when the requester gives up on a request the loop holds (docs/protocol.md §15.4).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ipc_protocol import HandlerError, LimitExceeded, Message, ResponderLost

from .iterators import BufferedIterator, IteratorHost

if TYPE_CHECKING:
    from .registration import Registration

__all__ = ["RequestIterator", "ServedRequest"]


class ServedRequest:
    """One request the loop of :meth:`IPCClient.requests` received; answer it
    once, with :meth:`respond` or :meth:`fail`."""

    __slots__ = ("message", "_future", "_conn", "_expires", "_owner", "_answered")

    def __init__(self, message: Message, future: asyncio.Future[Any], conn: object, expires: float | None, owner: RequestIterator) -> None:
        self.message = message
        self._future = future
        self._conn = conn
        self._expires = expires
        self._owner = owner
        self._answered = False

    payload = property(lambda self: self.message.payload)
    channel = property(lambda self: self.message.channel_id)
    headers = property(lambda self: self.message.headers)

    @property
    def answered(self) -> bool:
        return self._answered

    @property
    def cancelled(self) -> bool:
        """Whether the requester gave up (its deadline, its cancel, its connection lost: §15.4) or the client disconnected."""
        return self._future.cancelled()

    async def respond(self, result: Any = None) -> bool:
        """Answer with ``result``. False when the answer can no longer be sent
        (the connection it came on is gone, the requester gave up, or the loop
        ended and answered ``responder_lost``); RuntimeError when it was already answered."""
        return self._answer(result, None)

    async def fail(self, error: BaseException | str) -> bool:
        """Answer with an error: a :class:`RemoteError` keeps its code, any
        other exception (or a message) is ``handler_error``, as a handler's."""
        return self._answer(None, HandlerError(error) if isinstance(error, str) else error)

    def _answer(self, result: Any, error: BaseException | None) -> bool:
        if self._answered:
            raise RuntimeError(f"request {self.message.message_id} on {self.channel!r} was already answered")
        self._answered = True
        self._owner._outstanding.discard(self)
        fut = self._future
        if fut.done():
            return False
        if error is None:
            fut.set_result(result)
        else:
            fut.set_exception(error)
        return self._conn is not None and self._conn is self._owner._host.current()

    def _settle(self, error: BaseException) -> None:
        """Answered by the iterator (dropped, or left when the loop ended)."""
        if not self._future.done():
            self._future.set_exception(error)

    def __repr__(self) -> str:
        return f"<ServedRequest {self.channel!r} {self.message.message_id} {'answered' if self._answered else 'open'}>"


class RequestIterator(BufferedIterator[ServedRequest]):
    """``async for req in client.requests(pattern)``: the requests this client serves on ``pattern``.

    Each request waits in its handler task until answered, so the buffered
    and unanswered ones count against ``max_concurrent_handlers``."""

    def __init__(self, host: IteratorHost, channel: str, max_buffered: int, overflow: str) -> None:
        super().__init__(host, channel, max_buffered, overflow)
        self._outstanding: set[ServedRequest] = set()  # given to the loop, not answered yet

    _serves = True

    async def _register(self) -> None:
        registration = self._host.client.serve(self.channel, self._handle)
        self._registered = True
        if self._host.client.connected:
            try:
                await registration
            except BaseException:
                self._registered = False  # refused: the client dropped it already
                raise
        else:
            self._spawn(self._refused(registration))

    async def _refused(self, registration: Registration) -> None:
        """Registered once the client connects: a refusal then ends the loop with it."""
        try:
            await registration
        except Exception as exc:  # noqa: BLE001 - the loop raises it
            self._registered = False
            self._end(exc)

    async def _withdraw(self) -> None:
        await self._host.client.unserve(self.channel)

    async def _handle(self, msg: Message) -> Any:
        """The responder: the request waits here until the loop answers it."""
        loop = asyncio.get_running_loop()
        expires = None if msg.timeout_ms is None else loop.time() + msg.timeout_ms / 1000
        fut: asyncio.Future[Any] = loop.create_future()
        self._offer(ServedRequest(msg, fut, self._host.current(), expires, self))
        return await fut

    def _accept(self, item: ServedRequest) -> bool:
        fut = item._future
        expired = item._expires is not None and item._expires <= fut.get_loop().time()
        if fut.done() or expired or item._conn is not self._host.current():
            fut.cancel()  # the server answered it already (timeout, responder_lost): no answer is written
            return False
        self._outstanding.add(item)
        return True

    def _refuse(self, item: ServedRequest, *, overflow: bool) -> None:
        if overflow:
            error: BaseException = LimitExceeded(f"the responder's loop on {self.channel!r} has {self.max_buffered} requests waiting", details=self._details())
        else:
            error = ResponderLost(f"the responder's loop on {self.channel!r} ended before answering")
        item._settle(error)

    def _finish(self, leftovers: list[ServedRequest]) -> None:
        for item in (*leftovers, *self._outstanding):
            self._refuse(item, overflow=False)
        self._outstanding.clear()
