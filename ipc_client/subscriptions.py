"""Subscriptions and responder registrations: who handles what, telling the
server, restoring both after a reconnection, and running the handlers of
what arrives through admission: publishes to deliver here, requests to
serve in the ``Answering`` base (answering.py).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ipc_protocol import AlreadyServing, ConnectionLost, Message, MessageType, NotConnected, RemoteError, RequestTimeout, pattern_matches, printable, validate_pattern
from ipc_protocol.contracts import bind, declared

from .admission import Admission, Slot
from .answering import Answering
from .at_once import answered_as, is_async_function, never_waits, propagates, result_of
from .calls import Calls
from .connection import ClientConnection
from .handler_sets import each_once, same
from .keyed_runs import KeyedRuns
from .legacy_server import unavailable
from .producers import Producers
from .registration import Registration, check_servable, withdrawal
from .tracing import call_in_trace, serving

__all__ = ["Subscriptions", "Handler", "Withdrawal", "withdrawal", "check_servable", "CONNECTION_ERRORS"]

log = logging.getLogger("ipc_client")

Handler = Callable[[Message], Any]
Withdrawal = Callable[[bool, str, BaseException], None]  # (serve, channel, the server's error)
_SUB_CACHE_LIMIT = 4096
# The connection's end or silence: the registration is not at fault, and the
# next connection restores it (a pool: the next member, pool_registrations.py).
# Any other failure is the registration's own.
CONNECTION_ERRORS = (ConnectionLost, NotConnected, RequestTimeout)


def check_unsubscription(channel: object, handler: object) -> None:
    """What every client's ``unsubscribe()`` refuses (IPCClient, pool,
    load-balanced, as Node's do): wrong types raise TypeError; a name nothing
    is subscribed under, an invalid one included, is a no-op (cleanup code)."""
    if not isinstance(channel, str):
        raise TypeError(f"channel must be a string, not {type(channel).__name__}")
    if handler is not None and not callable(handler):
        raise TypeError("handler must be callable")


class Subscriptions(Answering):
    """Subscription handlers by pattern and responders by channel. The
    connection is reached through ``connected`` (it, when connected),
    ``waiting`` (being (re)made) and ``until_connected(deadline)``;
    ``producers`` (set by the client) registers served requests for
    cancels and streams what generators yield (docs/protocol.md §15)."""

    producers: Producers

    def __init__(
        self,
        calls: Calls,
        admission: Admission,
        *,
        connected: Callable[[], ClientConnection | None],
        waiting: Callable[[], bool],
        until_connected: Callable[[float | None], Awaitable[None]],
        emit: Callable[..., None],
        spawn: Callable[[Awaitable[Any]], Any],
        request_timeout: float,
        expose_stacks: bool,
    ) -> None:
        self._calls = calls
        self._admission = admission
        admission.dropped = self.dropped_unrun  # a stream's books go with it (answering)
        admission.started = self.admitted  # a cancel finds a served request's task from its creation (answering)
        self._connected = connected
        self._waiting = waiting
        self._until_connected = until_connected
        self._emit = emit
        self._spawn = spawn
        self.request_timeout = request_timeout
        self.expose_stacks = expose_stacks
        self.keyed = KeyedRuns(self._reply, expose_stacks)  # a resent keyed request runs once (answering)
        self.handlers: dict[str, list[Handler]] = {}
        # channel -> its handlers, each with whether it is async and never waits
        # (ipc_client.at_once): decided once per channel, not per message.
        self._cache: dict[str, list[tuple[Handler, bool, bool]]] = {}
        self.services: dict[str, Handler] = {}
        self._never_waits: set[str] = set()  # names whose handler runs at once on 3.11 (at_once); names: a handler may be unhashable
        self._acks: dict[str, Registration] = {}
        # Told when the server withdraws a registration (the iterators, a pool's registrations).
        self.watchers: set[Withdrawal] = set()

    # -- subscriptions ----------------------------------------------------------

    async def subscribe(self, channel: str, handler: Handler) -> None:
        validate_pattern(channel)
        if not callable(handler):
            raise TypeError("handler must be callable")
        first = channel not in self.handlers
        handlers = self.handlers.setdefault(channel, [])
        known = handler in handlers  # held once, as Node's Set: one unsubscribe(channel, handler) removes it
        if not known:
            handlers.append(handler)
        self._cache.clear()
        try:
            if self._waiting():
                # The restore in progress picks it up; return once it is registered.
                await self._until_connected(asyncio.get_running_loop().time() + self.request_timeout)
                conn = self._connected()
                if conn is not None and conn.legacy and (refusal := unavailable(channel, serve=False)) is not None:
                    raise refusal  # the restore refused it too, on 'error' (legacy_server.py)
                return
            conn = self._connected()
            # Every call waits for its own ack (as the Node client): one made while
            # the channel's first is in flight must not return before the server
            # holds it, nor stay when that one is refused. A 1.1.x server: once.
            if conn is not None and (first or not conn.legacy):
                await self._interest(conn, channel, serve=False)
        except BaseException as exc:  # not registered: not kept either (as the Node client)
            if not known and self.handlers.get(channel) is handlers and handler in handlers:
                handlers.remove(handler)
                if not handlers:
                    del self.handlers[channel]
                self._cache.clear()
            if not isinstance(exc, RemoteError):  # the server may hold it yet (a refusal holds nothing)
                self._withdraw(channel)
            raise

    async def unsubscribe(self, channel: str, handler: Handler | None) -> None:
        check_unsubscription(channel, handler)
        handlers = self.handlers.get(channel)
        if handlers is None:
            return
        if handler is not None and handler in handlers:
            handlers.remove(handler)
        self._cache.clear()
        if handler is None or not handlers:
            del self.handlers[channel]
            conn = self._connected()
            if conn is not None:
                try:
                    await self._interest(conn, channel, serve=False, subscribe=False)
                except ConnectionLost:  # the server dropped it with the connection, and it is not restored: gone either way
                    pass

    def _withdraw(self, channel: str) -> None:
        """Withdraw a subscribe that failed after its frame went out, unless the
        client holds the channel (still or again); while reconnecting, the restore
        does. Checked and written in one step: the server applies a connection's
        frames in order, so this lands after that subscribe, before any later one."""
        conn = self._connected()
        if channel in self.handlers or conn is None or conn.legacy or not conn.is_open:
            return
        msg = Message.build(MessageType.UNSUBSCRIBE, self._calls.app_id, channel, {})
        self._calls.forget(msg.message_id)  # its ack, read by nobody
        conn.send(msg)

    async def _interest(
        self, conn: ClientConnection, channel: str, *, serve: bool, subscribe: bool = True, deadline: float | None = None
    ) -> None:
        """Tell the server, and wait for its ack (a 1.1.x server sends none)."""
        if conn.legacy and subscribe and (refusal := unavailable(channel, serve=serve)) is not None:
            raise refusal  # what a 1.1.x server lacks (legacy_server.py)
        payload: dict[str, Any] = {"serve": True} if serve else {}
        if conn.legacy:
            payload["connection_id"] = conn.connection_id  # a 1.1.x server reads it here (§10)
        elif serve and subscribe and (schema := declared(self.services.get(channel))) is not None:
            payload["schema"] = schema  # a typed handler's contract (§7.1, docs/typed-contracts.md)
        mtype = MessageType.SUBSCRIBE if subscribe else MessageType.UNSUBSCRIBE
        msg = Message.build(mtype, self._calls.app_id, channel, payload)
        deadline = deadline or asyncio.get_running_loop().time() + self.request_timeout
        if conn.legacy:
            if not conn.is_open:  # closing, its loss not handled yet: fail once it is (Calls.unsent)
                await self._calls.unsent(conn, deadline, False)
            conn.send(msg)
            return
        await self._calls.call(conn, msg, deadline)

    # -- responders ----------------------------------------------------------------

    def serve(self, channel: str, fn: Handler) -> Registration:
        check_servable(channel)
        if channel in self.services:
            raise AlreadyServing(f"already serving {channel!r}; unserve() it first")
        conn = self._connected()
        if conn is not None and conn.legacy and (refusal := unavailable(channel, serve=True)) is not None:
            raise refusal  # a 1.1.x server routes requests only to its own handlers (legacy_server.py)
        self.services[channel] = bound = bind(fn)  # annotated: validated (docs/typed-contracts.md)
        if never_waits(bound):
            self._never_waits.add(channel)
        registration = self._acks[channel] = Registration(channel, self._calls.own_loop)
        if conn is not None:
            self._spawn(self._register(conn, channel, registration))
        return registration

    def _drop_service(self, channel: str) -> None:
        self.services.pop(channel, None)
        self._never_waits.discard(channel)

    async def _register(self, conn: ClientConnection, channel: str, registration: Registration) -> None:
        if self._acks.get(channel) is not registration:  # unserve() came before this task's first step: send nothing
            registration._settle(None)
            return
        try:
            await self._interest(conn, channel, serve=True)
        except Exception as exc:
            if not isinstance(exc, CONNECTION_ERRORS) and self._acks.get(channel) is registration:
                # Refused, by the server (limit_exceeded, forbidden) or here (too large for
                # its frame limit): not served, so serve() may be tried again, and never
                # restored, where it would fail every attempt (as Node keeps none).
                del self._acks[channel]
                self._drop_service(channel)
            registration._settle(exc)
            if not isinstance(exc, (ConnectionLost, NotConnected)):  # the connection's end is no error of the serve (as subscribe(), and Node)
                self._emit("error", exc)
        else:
            registration._settle(None)

    async def unserve(self, channel: str) -> None:
        fn = self.services.get(channel)
        if fn is None:
            return
        registration = self._acks.pop(channel, None)
        try:
            conn = self._connected()
            if conn is not None:
                await self._interest(conn, channel, serve=True, subscribe=False)
        except ConnectionLost:  # the server dropped it with the connection, and it is not restored: gone either way
            pass
        finally:
            if self.services.get(channel) is fn:
                self._drop_service(channel)
            if registration is not None and not registration.done():  # withdrawn before the server had it
                registration._settle(None)

    # -- after a (re)connection ----------------------------------------------------

    async def restore(self, conn: ClientConnection, deadline: float) -> None:
        """Resubscribe and re-register responders before anything else goes
        out, until the server holds exactly what this client holds: what is
        added meanwhile is sent too, what is dropped (unsubscribe/unserve tell
        the server nothing before the client is connected) withdrawn. One
        refused, by the server or here (too large for the new server's frame
        limit), is dropped and reported, so it cannot fail every attempt; a
        lost or silent connection fails the attempt."""
        held: set[tuple[bool, str]] = set()  # what the server holds for this connection
        while True:
            todo = [(False, p) for p in self.handlers if (False, p) not in held] + [(True, c) for c in self.services if (True, c) not in held]
            stale = [(serve, name) for serve, name in held if name not in (self.services if serve else self.handlers)]
            for serve, name in list(todo) if conn.legacy else ():  # what a 1.1.x server lacks is never sent (legacy_server.py)
                if (refusal := unavailable(name, serve=serve)) is not None:
                    todo.remove((serve, name))
                    self._refused(serve, name, refusal)
            if not todo and not stale:
                return
            sends = [self._restore_one(conn, serve, name, deadline) for serve, name in todo]
            sends += [self._interest(conn, name, serve=serve, subscribe=False, deadline=deadline) for serve, name in stale]
            results = await asyncio.gather(*sends, return_exceptions=True)
            for i, (key, result) in enumerate(zip(todo + stale, results)):
                if isinstance(result, CONNECTION_ERRORS) or (isinstance(result, BaseException) and not isinstance(result, Exception)):
                    raise result  # the attempt fails (a cancel ends it); the next one restores
                if i >= len(todo):
                    held.discard(key)  # withdrawn (a refusal too: nothing more to try)
                elif result is None:
                    held.add(key)
                else:
                    self._refused(*key, result)  # reconnecting again would not change the answer, and the others go on

    async def _restore_one(self, conn: ClientConnection, serve: bool, name: str, deadline: float) -> None:
        await self._interest(conn, name, serve=serve, deadline=deadline)
        registration = self._acks.get(name) if serve else None
        if registration is not None:
            registration._settle(None)

    def _refused(self, serve: bool, name: str, error: Exception) -> None:
        log.error("could not restore %s %r: %s", "responder" if serve else "subscription", name, printable(error))
        if serve:
            self._drop_service(name)
            registration = self._acks.pop(name, None)
            if registration is not None and not registration.done():
                registration._settle(error)
        else:
            self.handlers.pop(name, None)
            self._cache.clear()
        self._emit("error", error)

    def withdrawn(self, error: BaseException) -> None:
        """An error frame that withdraws a registration (docs/protocol.md §3:
        ``forbidden`` with ``details.revoked``, the user's rights shrank on
        the server): drop it here too, so it is never restored, and tell the
        ``watchers`` (an iterator on it ends, a pool forgets it)."""
        withdrawn = withdrawal(error)
        if withdrawn is None:
            return
        serve, channel = withdrawn
        if not serve and self.handlers.pop(channel, None) is not None:
            self._cache.clear()
        elif serve:
            self._drop_service(channel)
            self._acks.pop(channel, None)
        log.warning("the server withdrew %s %r: %s", "serve" if serve else "subscribe", channel, printable(error))
        for watcher in list(self.watchers):
            try:
                watcher(serve, channel, error)
            except Exception:  # noqa: BLE001 - one watcher's failure must not stop the others
                log.exception("a watcher of withdrawn registrations failed")

    # -- what arrives ---------------------------------------------------------------

    def deliver(self, msg: Message) -> None:
        """Run the handlers of a publish: plain functions inline, async ones as
        admitted tasks (on 3.11 one that never waits at once: ipc_client.at_once)."""
        handlers = self._cache.get(msg.channel_id)
        if handlers is None:
            handlers = self._matching(msg.channel_id)
        admission = self._admission
        for handler, is_async, at_once in handlers:
            try:
                if is_async:
                    if len(admission.tasks) >= admission.max_concurrent or admission.held:
                        admission.hold_publish(msg, self._held, (msg, handler, None))
                    elif at_once and admission.at_once.possible():
                        admission.at_once.run(self._deliver_at_once, msg, handler, self._emit)  # Python 3.11
                    else:
                        admission.run(self._guard, (msg, handler, None))
                    continue
                result = call_in_trace(handler, msg)  # in the publish's trace (docs/tracing.md)
                # `is not None` first: most handlers return None, and isawaitable is not free.
                if result is not None and inspect.isawaitable(result):  # an object with an async __call__, a partial
                    if len(admission.tasks) >= admission.max_concurrent or admission.held:
                        admission.hold_publish(msg, self._held, (msg, handler, result), result)
                    else:
                        admission.run(self._guard, (msg, None, result))
            except BaseException as exc:  # GeneratorExit, a library's own: out of data_received, the connection's end
                if propagates(exc):  # KeyboardInterrupt, SystemExit on the main thread's loop
                    raise
                log.exception("subscription handler for %r failed", msg.channel_id)
                self._emit("error", exc)

    def _matching(self, channel: str) -> list[tuple[Handler, bool, bool]]:
        """``channel``'s handlers, each once however many of its patterns match,
        with whether it is async and never waits; cached till subscriptions change."""
        handlers = self._cache.get(channel)
        if handlers is None:
            matching = [hs for p, hs in self.handlers.items() if pattern_matches(p, channel)]
            handlers = [(h, is_async_function(h), never_waits(h)) for h in each_once(matching)]
            if len(self._cache) >= _SUB_CACHE_LIMIT:
                self._cache.clear()
            self._cache[channel] = handlers
        return handlers

    async def _held(self, slot: Slot, msg: Message, handler: Handler, awaitable: Awaitable[Any] | None) -> None:
        """``_guard`` for a handler (or a plain one's awaitable) that waited for a
        slot: run only if still subscribed to a pattern matching the channel, so none
        starts after ``unsubscribe()`` returned or the server withdrew it (as in Node)."""
        if not any(same(h, handler) for h, _, _ in self._matching(msg.channel_id)):
            if inspect.iscoroutine(awaitable):
                awaitable.close()  # its body never runs, and no "never awaited" warning
            self._admission.finished(slot)
            return
        await self._guard(slot, msg, None if awaitable is not None else handler, awaitable)

    def _deliver_at_once(self, msg: Message, handler: Handler, emit: Callable[..., None]) -> None:
        """``_guard`` for an async handler that never waits, run by ``AtOnce``:
        it has finished when this returns, and needs no slot."""
        scope = serving(msg, "deliver")
        try:
            result_of(handler(msg))
        except BaseException as exc:  # GeneratorExit, a library's own: reported too (at_once.propagates)
            if propagates(exc):
                raise
            # A CancelledError too: nothing of ours cancels a call that never
            # waits, so it is the handler's own (as answering.py answers it).
            scope.end(exc)
            log.exception("subscription handler for %r failed", msg.channel_id)
            emit("error", exc)
        finally:
            scope.end()

    async def _guard(self, slot: Slot, msg: Message, handler: Handler | None, awaitable: Awaitable[Any] | None) -> None:
        """Run an async subscription handler, or await what a sync one returned;
        a failure is logged and emitted, never raised."""
        scope = serving(msg, "deliver", span=handler is not None)  # docs/tracing.md
        try:
            await (handler(msg) if handler is not None else awaitable)  # type: ignore[misc]
        except BaseException as exc:  # GeneratorExit, a library's own: reported, not the task's unretrieved end
            if answered_as(exc, msg.channel_id) is None:  # a cancel of the task (disconnect()) ends it; the handler's own CancelledError is reported
                raise
            scope.end(exc)
            log.exception("subscription handler for %r failed", msg.channel_id)
            self._emit("error", exc)
        finally:
            scope.end()
            self._admission.finished(slot)
