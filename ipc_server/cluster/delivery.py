"""Messages from NATS handed to their callback as they are read
(docs/cluster.md §2).

nats-py puts every message of a subscription that has a callback on an
asyncio queue, which a task of the subscription's reads: a queue put and
get, a task switch and a loop iteration per message, on every hop across
nodes. The cluster's callbacks route a message and return without waiting,
so each is run here while nats-py's reader parses the message. A callback
that does wait is finished by a task, and the messages after it wait
behind it, in order, as they would in nats-py's queue.

A plain message (no headers) for such a subscription skips nats-py's
per-message layers too: its parser's regular expressions and buffer
shifts (a ``MSG`` line is split, the buffer cut once per read), the
client's ``_process_msg`` coroutine, its header parsing and its ``Msg``
dataclass give way to :class:`Delivered`, four fields, handed straight to
the callback. Anything else (a status with headers, a request's reply
future, JetStream, ``PING``, a message not whole yet) takes nats-py's path.

A subscription the node withdraws may still be sent messages: NATS sends
until it has read the ``UNSUB``, and nats-py forgets the subscription at
once, dropping what comes for it unseen. A request NATS gave this node
alone would be lost, its requester answered ``responder_lost`` only when
this node stopped naming it (1.5 s later). So such a subscription is
retired (:func:`retire`): its messages still reach its callback (a
request: the node's routing, which answers ``no_responders`` when nothing
on the node takes it now) until NATS has confirmed the ``UNSUB``
(:func:`release`).

This reaches into nats-py's ``Subscription`` (its ``_pending_queue``, an
``asyncio.Queue``, and the byte count it keeps beside it), its client's
``_process_msg`` and its parser (``buf``, ``state``, ``parse``): where the
installed nats-py has no such queue, its own delivery stays
(:func:`deliver_at_once` returns False), and a test says so.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Protocol

from nats.protocol import parser as nats_parser

__all__ = ["Delivered", "Msg", "Resume", "deliver_at_once", "read_below_mmap", "release", "retire"]

# asyncio reads a plain socket 256 KiB at a time into a new bytes object:
# over glibc's mmap threshold (128 KiB), so every read of the link maps,
# shrinks and unmaps memory (three system calls, page faults, a TLB flush).
# 64 KiB stays on the heap and still takes what NATS sends in one go.
READ_SIZE = 64 * 1024

log = logging.getLogger("ipc_server.cluster")


class Msg(Protocol):
    """What the node's callbacks read of a message: a :class:`Delivered`, or nats-py's ``Msg``."""

    @property
    def subject(self) -> str: ...
    @property
    def reply(self) -> str: ...
    @property
    def data(self) -> bytes: ...
    @property
    def headers(self) -> dict[str, str] | None: ...
    @property
    def sid(self) -> int: ...


class Delivered:
    """A message as the node's callbacks read it (nats-py's ``Msg`` has the same fields)."""

    __slots__ = ("subject", "reply", "data", "sid")
    headers = None

    def __init__(self, subject: str, reply: str, data: bytes, sid: int) -> None:
        self.subject = subject
        self.reply = reply
        self.data = data
        self.sid = sid


class Resume:
    """Await a coroutine already started by hand (``coro.send(None)`` gave
    ``step``, the future it waits on): the task running this waits on each
    future the coroutine yields, and resumes the coroutine after, as a task
    running it from the start would have."""

    def __init__(self, coro: Any, step: Any) -> None:
        self._coro = coro
        self._step = step

    def __await__(self) -> Generator[Any, None, None]:
        step = self._step
        while True:
            try:
                yield step
            except BaseException as exc:  # cancelled while it waited: the coroutine is told
                try:
                    step = self._coro.throw(exc)
                except StopIteration:
                    return
                continue
            try:
                step = self._coro.send(None)
            except StopIteration:
                return


class _AtOnce(asyncio.Queue):  # type: ignore[type-arg]
    """Stands in for a subscription's queue: what nats-py puts on it goes to the callback now."""

    def __init__(self, sub: Any, cb: Callable[[Any], Awaitable[None]]) -> None:
        super().__init__()
        self._sub = sub
        self._cb = cb
        self._behind: deque[Any] | None = None  # messages after a callback that waits
        self._finishing: asyncio.Task[None] | None = None  # held: the loop keeps only a weak reference

    def put_nowait(self, msg: Any) -> None:
        self._sub._pending_size -= len(msg.data)  # counted by nats-py as it queued it; taken at once
        self.deliver(msg)

    def deliver(self, msg: Any) -> None:
        if self._behind is not None:
            self._behind.append(msg)
            return
        coro = self._cb(msg)
        try:
            step = coro.send(None)  # type: ignore[attr-defined]
        except StopIteration:
            return
        except Exception:  # noqa: BLE001 - as nats-py's own delivery, a callback's error stops nothing
            log.exception("cluster: handling a message on %s failed", msg.subject)
            return
        self._behind = deque()
        self._finishing = asyncio.get_running_loop().create_task(self._finish(coro, step))

    async def _finish(self, coro: Any, step: Any) -> None:
        try:
            await self._run(Resume(coro, step), "")
            while self._behind:
                msg = self._behind.popleft()
                await self._run(self._cb(msg), msg.subject)
        finally:
            self._behind = self._finishing = None

    @staticmethod
    async def _run(call: Awaitable[None], subject: str) -> None:
        try:
            await call
        except Exception:  # noqa: BLE001 - as above
            log.exception("cluster: handling a message on %s failed", subject or "a subscription")


def deliver_at_once(sub: Any, cb: Callable[[Any], Awaitable[None]]) -> bool:
    """Hand ``sub``'s messages to ``cb`` as they are read (False: nats-py's
    own delivery stays, this nats-py has no queue of the kind replaced, or
    messages are already on it)."""
    queue = getattr(sub, "_pending_queue", None)
    if type(queue) is not asyncio.Queue or queue.qsize() or not isinstance(getattr(sub, "_pending_size", None), int):
        return False
    sub._pending_queue = _AtOnce(sub, cb)
    client = sub._conn
    if "_process_msg" not in vars(client):
        client._retired_subs = {}
        client._process_msg = _plain_first(client, client._process_msg, client._retired_subs)
        parser = client._ps
        if type(getattr(parser, "buf", None)) is bytearray and getattr(nats_parser, "AWAITING_CONTROL_LINE", None) == _AWAITING_CONTROL_LINE:
            parser.parse = _msg_lines_first(client, parser, parser.parse)
    return True


_AWAITING_CONTROL_LINE = 1  # nats-py's parser's state between commands
_MSG = b"MSG "
_CRLF = b"\r\n"


def _msg_lines_first(client: Any, parser: Any, parse: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """``parser.parse`` (what nats-py's reader calls per read), taking the
    whole ``MSG`` commands at the start of what was read itself, and
    leaving the rest, from the first thing that is not one (or not whole
    yet), to ``parse``."""

    async def msg_lines_first(data: bytes = b"") -> None:
        if parser.state != _AWAITING_CONTROL_LINE:  # inside a message's payload
            await parse(data)
            return
        buf = parser.buf
        if buf:  # the start of a command nats-py's parse has not taken: a few bytes
            buf.extend(data)
            data = bytes(buf)
        pos, size = 0, len(data)
        while parser.state == _AWAITING_CONTROL_LINE and data.startswith(_MSG, pos):
            end = data.find(_CRLF, pos)
            if end < 0:
                break
            args = data[pos + 4 : end].split()  # subject sid [reply] bytes
            if len(args) == 4:
                subject, sid, reply, length = args
            elif len(args) == 3:
                subject, sid, length = args
                reply = b""
            else:
                break  # malformed: nats-py's parse says so
            if not (length.isdigit() and sid.isdigit()):
                break
            start = end + 2
            stop = start + int(length)
            if stop + 2 > size:
                break  # not whole yet
            pos = stop + 2
            await client._process_msg(int(sid), subject, reply, data[start:stop], None)
            if parser.buf is not buf:  # reset meanwhile (the connection went)
                return
        if buf:
            del buf[:pos]
        elif pos < size:
            buf.extend(data[pos:] if pos else data)
        if buf:
            await parse()

    return msg_lines_first


def retire(sub: Any) -> bool:
    """Keep delivering ``sub``'s messages to its callback once it is
    unsubscribed, until :func:`release` (module docstring); False where its
    messages do not come through :func:`deliver_at_once`'s path (nothing kept)."""
    retired = getattr(sub._conn, "_retired_subs", None)
    if type(retired) is not dict or type(sub._pending_queue) is not _AtOnce:
        return False
    retired[sub._id] = sub
    return True


def release(sub: Any) -> None:
    """NATS sends ``sub`` (retired: :func:`retire`) nothing more: forget it."""
    getattr(sub._conn, "_retired_subs", {}).pop(sub._id, None)


def _plain_first(client: Any, process_msg: Callable[..., Awaitable[None]], retired: dict[int, Any]) -> Callable[..., Awaitable[None]]:
    """``client._process_msg`` (what nats-py's parser calls per message),
    taking a plain message for a subscription delivered at once itself
    (one unsubscribed but still retired too)."""
    subs = client._subs
    stats = client.stats

    async def process(sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        sub = subs.get(sid)
        if sub is None:
            sub = retired.get(sid)
        queue = sub._pending_queue if sub is not None else None
        if headers is None and type(queue) is _AtOnce and not sub._max_msgs and sub._jsi is None:
            stats["in_msgs"] += 1
            stats["in_bytes"] += len(data)
            sub._received += 1
            queue.deliver(Delivered(subject.decode(), reply.decode(), data, sid))
            return
        await process_msg(sid, subject, reply, data, headers)

    return process


def read_below_mmap(nc: Any) -> bool:
    """Make ``nc``'s socket reads ``READ_SIZE`` (its current transport;
    False where it has none of the kind asyncio reads that way: TLS)."""
    writer = getattr(getattr(nc, "_transport", None), "_io_writer", None)
    transport: Any = getattr(writer, "transport", None)
    if not isinstance(getattr(transport, "max_size", None), int):
        return False
    transport.max_size = READ_SIZE
    return True
