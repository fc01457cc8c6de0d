"""The outbox: calls made while the connection is being (re)made wait in the
offline queue (``offline_queue.py``), expire at their deadline, and are
replayed once connected, highest priority first, before any newer call
(docs/resilience.md §4). One-way messages may persist in SQLite
(``queue_store.py``) to survive a restart. A write the file refuses fails
the call that needed it (the message is not queued: the caller was told
it would be on disk); a delete that fails later is reported once on
'error' until a write works again, and retried by the store.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ipc_protocol import ConnectionLost, FrameTooLarge, IPCError, Message, MessageType, NotConnected, QueueFileError, QueueFull, RequestTimeout, decode_message, encode_message
from ipc_protocol.restarts import mark_replay

from .calls import Calls
from .idempotency import keys_kept, not_resent
from .connection import ClientConnection
from .metrics import ClientMetrics
from .offline_queue import OfflineQueue, QueuedCall
from .queue_store import QueueStore
from .replay_taken import SETTLE_BATCH, SETTLE_EVERY_S, Unwritten
from .state import ConnectionState, StateMachine
from .timeouts import seconds_text

__all__ = ["Outbox", "DISCONNECT_POLICIES"]

DISCONNECT_POLICIES = ("queue", "fail")


class Outbox:
    """The offline queue with its replay, its expiry timer and its store.

    ``connected`` returns the client's connection when connected, else None;
    ``wire`` what the latest handshake agreed, (legacy, max_send).
    ``replaying`` is true from the moment a replay is due until it ends: new
    calls queue behind it, so nothing overtakes the queue. ``keyed`` counts
    the keyed requests under way (``idempotency.resend_on_loss``): a loss
    sends each back here, so ``drain()`` waits for them, the moment between
    the loss and the resend included; ``resend_cause`` is the loss the
    resend now submitted outlived, the cause of its timeout if it expires
    in the queue (docs/resilience.md §3)."""

    def __init__(
        self,
        queue: OfflineQueue,
        calls: Calls,
        metrics: ClientMetrics,
        state: StateMachine,
        *,
        connected: Callable[[], ClientConnection | None],
        wire: Callable[[], tuple[bool, int | None]],
        emit: Callable[..., None],
        spawn: Callable[[Awaitable[Any]], asyncio.Task[Any]],
        path: str | None,
        on_disconnect: str,
    ) -> None:
        self.queue = queue
        self.on_disconnect = on_disconnect
        self._sm = state
        self._wire = wire
        self.replaying = False
        self.keyed = 0
        self.resend_cause: BaseException | None = None
        self.path = path
        self._calls = calls
        self._metrics = metrics
        self._connected = connected
        self._emit = emit
        self._spawn = spawn
        self._timer: asyncio.TimerHandle | None = None
        self._store: QueueStore | None = None  # open from connect() until the queue is given up
        self._store_failing = False  # a failed delete was reported; reset by the next write that works
        self._replay_task: asyncio.Task[None] | None = None
        self._unwritten = Unwritten()  # replayed rows deleted once the socket took them (replay_taken.py)
        self._settler: asyncio.Task[None] | None = None

    def sendable(self) -> ClientConnection | None:
        """The connection a call may be written to now: connected, with nothing queued ahead of it."""
        conn = self._connected()
        if conn is not None and not self.queue and not self.replaying:
            return conn
        return None

    async def submit(
        self, msg: Message, deadline: float, *, reply: bool, priority: int, on_disconnect: str | None, timeout: float | None = None
    ) -> Message | None:
        """Send ``msg`` now, or queue it while the connection is being (re)made;
        ``timeout``, the call's own, is what its timeout error names."""
        cause, self.resend_cause = self.resend_cause, None  # set for this call alone (a keyed resend's)
        conn = self.sendable()
        if conn is not None:
            if cause is not None and not keys_kept(conn):
                self._metrics.failed()
                raise keys_ignored(cause)
            if reply:
                return await self._calls.call(conn, msg, deadline, user=True, timeout=timeout)
            await self._calls.send_one_way(conn, msg, deadline)
            return None
        policy = self.on_disconnect if on_disconnect is None else on_disconnect
        if policy not in DISCONNECT_POLICIES:
            raise ValueError(f"on_disconnect must be one of {', '.join(DISCONNECT_POLICIES)}")
        state = self._sm.state
        offline = self._sm.waiting
        if not offline and state is not ConnectionState.CONNECTED:
            self._metrics.failed()
            raise NotConnected(f"not connected ({state.value})")
        if offline and (policy == "fail" or self.queue.max_size == 0):
            self._metrics.failed()  # the same words as Node's (calls.js submit)
            why = 'the call asked to fail fast (on_disconnect "fail")' if policy == "fail" else "its offline queue holds nothing (queue_max_size 0)"
            raise NotConnected(f"the client is {state.value} and {why}")
        return await self._enqueue(msg, deadline, reply=reply, priority=priority, cause=cause, timeout=timeout)

    async def _enqueue(
        self, msg: Message, deadline: float, *, reply: bool, priority: int, cause: BaseException | None, timeout: float | None = None
    ) -> Message | None:
        """Queue ``msg``; with ``reply``, wait for its answer once replayed."""
        legacy, max_send = self._wire()
        loop = asyncio.get_running_loop()
        if deadline <= loop.time():
            self._metrics.failed()
            raise RequestTimeout(f"call on {msg.channel_id!r} timed out before it could be queued")
        body = encode_message(msg, legacy=legacy)  # what is measured and stored
        # Replayed as it is now: the payload read back from that body (the
        # encoder's view, binary values as bytes), not the caller's dict, list
        # or bytearray, which it may change once the call returns (§16.3).
        msg = msg.model_copy(update={"payload": decode_message(body).payload})
        if max_send is not None and len(body) > max_send:
            raise FrameTooLarge(len(body), max_send)
        waiter: asyncio.Future[Message] | None = loop.create_future() if reply else None
        entry = QueuedCall(priority=priority, deadline=deadline, size=len(body) + 4, message=msg, waiter=waiter, cause=cause, timeout=timeout)
        try:
            evicted = self.queue.push(entry)
        except QueueFull:
            self._metrics.failed()
            raise
        if waiter is None and self._store is not None:
            try:
                entry.store_id = self._store.add(priority, time.time() + (deadline - loop.time()), body)
            except QueueFileError:  # not on disk, so not accepted: the queue is as it was
                self.queue.retract(entry, evicted)
                self._metrics.failed()
                raise
            self._store_failing = False
        for victim in evicted:
            self._drop(victim, QueueFull("evicted from the full offline queue"), "evicted")
        self._arm_timer()
        self.replay()  # connected, but behind a replay that may have stopped
        if waiter is None:
            return None
        try:
            return await self._calls.await_reply(waiter, track=True)
        finally:
            if self.queue.discard(entry):  # the caller was cancelled while queued
                self._arm_timer()

    def replay(self) -> None:
        """Start sending the queue if connected, it holds anything, and nobody is sending it.

        The replay is the client's own task, so a caller cancelling connect()
        cannot stop it halfway and leave calls stuck behind it."""
        conn = self._connected()
        if conn is None or not self.queue:
            return
        if self._replay_task is None or self._replay_task.done():
            self.replaying = True  # from now on, new calls queue behind it
            self._replay_task = self._spawn(self._replay(conn))

    async def _replay(self, conn: ClientConnection) -> None:
        """Send the queue: highest priority first, FIFO within one."""
        loop = asyncio.get_running_loop()
        self.replaying = True
        try:
            while self._connected() is conn and conn.is_open:
                if conn.line.blocked:  # a full send buffer: each entry is written in its turn, never into it
                    self.settle(conn)
                    try:
                        await conn.line.turn(None, "the offline queue's replay")
                    except ConnectionLost:
                        break
                    if self._connected() is not conn or not conn.is_open:
                        break
                for expired in self.queue.expire(loop.time()):
                    self._drop(expired, None, "expired")
                entry = self.queue.pop()
                if entry is None:
                    break
                self._send(conn, entry)
        finally:
            self.replaying = False
            self._arm_timer()
            self.settle(conn)
            if self._unwritten.pending(conn) and (self._settler is None or self._settler.done()):
                self._settler = self._spawn(self._settle_later(conn))

    def settle(self, conn: ClientConnection, closed_cleanly: bool = False) -> None:
        """Delete from the file the replayed rows whose bytes ``conn`` handed to the kernel."""
        self._forget(*self._unwritten.taken(conn, closed_cleanly))

    async def _settle_later(self, conn: ClientConnection) -> None:
        """After a replay, the rows still batched or in the send buffer, as it
        drains: first once the loop iteration's batch went out, then every
        SETTLE_EVERY_S (asyncio tells nobody when its buffer empties)."""
        while True:
            self.settle(conn)
            if not (self._unwritten.pending(conn) and conn.is_open):
                return
            await asyncio.wait((conn.closed,), timeout=SETTLE_EVERY_S)

    def _send(self, conn: ClientConnection, entry: QueuedCall) -> None:
        msg: Message = mark_replay(entry.message)  # the server may hold it for a responder (docs/protocol.md §13.2)
        if entry.waiter is None:
            try:
                conn.send(msg)
            except ConnectionLost:
                self.queue.push(entry)  # back in line for the next connection
                return
            except IPCError as exc:  # e.g. larger than the new server accepts
                self._drop(entry, exc, "refused")
                return
            self._metrics.sent()
            self._metrics.delivered()
            if entry.store_id is not None:  # deleted once the socket took it (settle)
                self._unwritten.add(conn, entry.store_id)
                if self._unwritten.pending(conn) >= SETTLE_BATCH:
                    self.settle(conn)
            return
        if entry.waiter.done():
            return
        if entry.cause is not None and not keys_kept(conn):  # a keyed resend: this server would run it again
            self._drop(entry, keys_ignored(entry.cause), "refused")
            return
        if conn.legacy and msg.message_type is MessageType.PUBLISH:  # queued with ack: a version-1 server has none (§10)
            self._written_unacked(conn, entry, msg)
            return
        try:
            self._calls.start(conn, msg, entry.deadline, entry.waiter, entry.timeout)
        except IPCError as exc:  # left the queue unsent (e.g. too large for the new server): counted as dropped
            self.queue.dropped += 1
            entry.waiter.set_exception(exc)
            return
        self._metrics.sent()

    def _written_unacked(self, conn: ClientConnection, entry: QueuedCall, msg: Message) -> None:
        """An acked publish replayed to a version-1 server: written is all
        there is, so its caller gets "delivered to an unknown number" (None),
        as one made while connected to that server does."""
        assert entry.waiter is not None
        try:
            conn.send(msg)
        except ConnectionLost:
            self.queue.push(entry)  # back in line for the next connection
            return
        except IPCError as exc:  # left the queue unsent: counted as dropped
            self.queue.dropped += 1
            entry.waiter.set_exception(exc)
            return
        self._metrics.sent()
        entry.waiter.set_result(Message.build(MessageType.RESPONSE, msg.app_id, msg.channel_id, {"delivered": None}, reply_to=msg.message_id))

    def _arm_timer(self) -> None:
        """One timer, at the earliest deadline in the queue."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        when = self.queue.next_deadline()
        if when is not None:
            self._timer = asyncio.get_running_loop().call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        # A timer may fire a hair early; the millisecond keeps it from re-arming in a loop.
        for entry in self.queue.expire(asyncio.get_running_loop().time() + 0.001):
            self._drop(entry, None, "expired")
        self._arm_timer()

    def _drop(self, entry: QueuedCall, error: BaseException | None, reason: str) -> None:
        """End a call that will not be sent: fail its caller, or report the one-way message."""
        msg: Message = entry.message
        if reason != "evicted":  # the queue counted its evictions itself
            self.queue.dropped += 1
        if entry.waiter is not None:
            if not entry.waiter.done():
                if error is None:  # its own timeout named, however long it waited (docs/resilience.md §4), as in Node
                    within = "" if entry.timeout is None else f" within {seconds_text(entry.timeout)} s"
                    error = RequestTimeout(f"no response on {msg.channel_id!r}{within} (it waited in the offline queue)")
                    error.__cause__ = entry.cause  # a keyed resend: the loss that queued it again
                entry.waiter.set_exception(error)
            return
        self._metrics.failed()
        self._forget(entry.store_id)
        self._emit(
            "queue_dropped",
            {"reason": reason, "channel": msg.channel_id, "message_type": msg.message_type.value, "priority": entry.priority},
        )

    def _forget(self, *store_ids: int | None) -> None:
        """Delete messages that left the queue from the file. A failure is
        reported on 'error' once until a write works again; the store retries
        the delete then (until it does, a later start would send it again)."""
        ids = [i for i in store_ids if i is not None]
        if not ids or self._store is None:
            return
        try:
            self._store.remove(*ids)
        except QueueFileError as exc:
            if not self._store_failing:
                self._store_failing = True
                self._emit("error", exc)
            return
        self._store_failing = False

    def give_up(self, error: IPCError) -> None:
        """Nothing will send the queue: fail its requests; persisted messages stay on disk."""
        for entry in self.queue.drain():
            if entry.waiter is None and entry.store_id is not None:
                continue  # durable: the next start sends it
            self._drop(entry, error, "gave_up")
        self._unwritten.clear()  # rows not known to be taken stay on disk: the reload sends them
        if self._store is not None:  # a later connect() reopens it and reloads what stayed
            self._store.close()
            self._store = None
        self._arm_timer()

    def load_persisted(self) -> None:
        """Put the messages a previous run left on disk back in the queue (once)."""
        if self.path is None or self._store is not None:
            return
        store = QueueStore(self.path)  # QueueFileError, QueueFileInUse: connect() fails with it
        try:
            stored, expired = store.load()
        except BaseException:
            store.close()
            raise
        self._store, self._store_failing = store, False
        loop = asyncio.get_running_loop()
        self.queue.dropped += expired
        self._metrics.failed(expired)
        for row in stored:
            try:
                msg = decode_message(row.body)
            except IPCError as exc:  # unreadable: lost, but counted and reported
                self._forget(row.id)
                self.queue.dropped += 1
                self._metrics.failed()
                self._emit("error", exc)
                continue
            entry = QueuedCall(priority=row.priority, deadline=loop.time() + (row.expires_at - time.time()), size=len(row.body) + 4, message=msg, store_id=row.id)
            try:
                evicted = self.queue.push(entry)
            except QueueFull as exc:  # dropped like any one-way message: row deleted, event, counters
                self.queue.dropped += 1
                self._drop(entry, exc, "evicted")
                continue
            for victim in evicted:
                self._drop(victim, QueueFull("evicted from the full offline queue"), "evicted")
        self._arm_timer()


def keys_ignored(cause: BaseException) -> ConnectionLost:
    """What a keyed resend fails with when the connection it would go out on
    is to a server that ignores keys (2.0.0): the loss it outlived, as every
    call in flight then failed (docs/protocol.md §6.6 item 8)."""
    lost = ConnectionLost(f"{cause}; the keyed request was not sent again: the server ignores idempotency keys (no features in its connect reply)")
    lost.__cause__ = cause.__cause__
    return not_resent(lost)
