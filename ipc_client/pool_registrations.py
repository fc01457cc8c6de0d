"""Subscriptions and responders made through a pool (docs/resilience.md §7).

They live on one member, the *registrar*; when it dies they are replayed on
its replacement before that replacement is handed out, so a pool's
subscriber hears each message once, whatever happens to its connections.
Node's pool keeps them the same way (js-client/lib/pool_registrations.js).

One the server withdraws (the user's rights shrank: docs/security.md §3.4)
is dropped from the tables, never restored. One a replay cannot make,
refused by the server or here (a typed responder's registration over the
new server's frame limit), is dropped and reported, and the replacement
opens with the others: only the connection's end or silence fails a
replay, as a client's own restore (subscriptions.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ipc_protocol import AlreadyServing, IPCError, NotConnected, RequestTimeout, printable, validate_pattern

from .client import Handler, IPCClient
from .registration import check_servable
from .subscriptions import CONNECTION_ERRORS

__all__ = ["PoolRegistrations"]

log = logging.getLogger("ipc_client.pool")


class PoolRegistrations:
    """The pool's registrations and the member carrying them.

    Args:
        members: the pool's members now (each with ``client`` and ``usable``).
        open_member: opens a new member for the registrations (it adopts
            them while opening) and lists it; raises NotConnected when the
            pool is full or the server unreachable.
        defer: called when a registration could not be applied now: the
            pool brings a registrar back in the background.
        where: "host:port", for log lines.
        report: the pool's ``error`` event, for a subscription a replay
            dropped that no caller waits for (a responder's failure is on
            its member's own ``error``, which the pool reports already).
    """

    def __init__(
        self,
        members: Callable[[], Sequence[Any]],
        open_member: Callable[[], Awaitable[Any]],
        defer: Callable[[], None],
        where: str,
        report: Callable[[BaseException], None] = lambda exc: None,
    ) -> None:
        self._members = members
        self._open_member = open_member
        self._defer = defer
        self._where = where
        self._report = report
        self.subscriptions: dict[str, list[Handler]] = {}
        self.services: dict[str, Handler] = {}
        self.registrar: Any = None
        self._replaying: IPCClient | None = None  # the client _register_all is filling
        self._refused: dict[tuple[bool, str, int], tuple[Handler, Exception]] = {}  # for the _apply waiting on it
        self._waiting: list[tuple[bool, str, int]] = []  # the registrations an _apply replays, to be told of their refusal
        self._lock = asyncio.Lock()

    @property
    def any(self) -> bool:
        return bool(self.subscriptions or self.services)

    @property
    def missing(self) -> bool:
        """Registrations exist but no member carries them."""
        return self.any and self.registrar is None

    def forget(self, member: Any) -> None:
        """``member`` is gone: a later registration needs another registrar."""
        if self.registrar is member:
            self.registrar = None

    def withdrawn(self, client: IPCClient, serve: bool, channel: str, error: BaseException) -> None:
        """``client`` dropped a registration the server withdrew: if it
        carries the pool's, the pool drops it too (a serve() of it may be
        tried again; no replacement replays it)."""
        registrar = self.registrar
        if client is not self._replaying and (registrar is None or registrar.client is not client):
            return  # a member's own registration, made on a borrowed client
        if serve:
            self.services.pop(channel, None)
        else:
            self.subscriptions.pop(channel, None)
        log.warning("the server on %s withdrew the pool's %s %r: dropped", self._where, "responder" if serve else "subscription", channel)

    async def adopt(self, member: Any) -> None:
        """Make ``member`` (being opened) the registrar unless there is a live one."""
        async with self._lock:
            if self.registrar is not None and self.registrar.usable:
                return
            await self._register_all(member.client)
            self.registrar = member

    async def ensure(self) -> Any:
        """The registrar, a live member made one, or a new member."""
        async with self._lock:
            if self.registrar is not None and self.registrar.usable:
                return self.registrar
            candidates = [m for m in self._members() if m.usable]
            if candidates:
                member = candidates[0]
                await self._register_all(member.client)
                self.registrar = member
                return member
        return await self._open_member()  # adopts the registrar role itself

    async def _register_all(self, client: IPCClient) -> None:
        """Replay every registration on ``client``, looping until it holds
        exactly the tables: one made while this runs is not lost to the
        race, and one dropped meanwhile (unsubscribe/unserve found no
        registrar to tell) is withdrawn from it. One refused, by the server
        (forbidden, limit_exceeded) or here (too_large), is dropped from the
        tables, as a client's own restore drops it, and the others go on; a
        lost or silent connection fails the replay."""
        done: dict[tuple[bool, str, int], Handler] = {}

        async def register(serve: bool, channel: str, fn: Handler) -> None:
            try:
                await (client.serve(channel, fn) if serve else client.subscribe(channel, fn))
            except CONNECTION_ERRORS:
                raise  # the connection's fault: the next member replays it
            except Exception as exc:  # the registration's own: another member would not change the answer
                self._refuse(serve, channel, fn, exc)
            else:
                done[(serve, channel, id(fn))] = fn

        self._replaying = client
        self._refused.clear()  # what an earlier replay refused was read by its caller, or by nobody
        try:
            while True:
                subs = [(ch, h) for ch, hs in list(self.subscriptions.items()) for h in hs if (False, ch, id(h)) not in done]
                services = [(ch, fn) for ch, fn in list(self.services.items()) if (True, ch, id(fn)) not in done]
                stale = [key for key, fn in done.items() if not self._wanted(key[0], key[1], fn)]
                if not subs and not services and not stale:
                    return
                for key in stale:
                    serve, channel, _ = key
                    fn = done.pop(key)
                    await (client.unserve(channel) if serve else client.unsubscribe(channel, fn))
                for channel, handler in subs:
                    await register(False, channel, handler)
                await asyncio.gather(*(register(True, ch, fn) for ch, fn in services))
        finally:
            self._replaying = None

    def _refuse(self, serve: bool, channel: str, fn: Handler, error: Exception) -> None:
        if serve:
            if self.services.get(channel) is fn:
                del self.services[channel]
        else:
            self._drop_subscription(channel, fn)
        key = (serve, channel, id(fn))
        self._refused[key] = (fn, error)
        log.error("the pool's %s %r could not be replayed on %s: dropped: %s", "responder" if serve else "subscription", channel, self._where, printable(error))
        if key not in self._waiting and not serve:  # nobody raises it: the pool's 'error' (a serve()'s is there already)
            self._report(error)

    def _refusal(self, serve: bool, channel: str, fn: Handler) -> Exception | None:
        """The refusal of this registration by the last replay, for its caller."""
        entry = self._refused.pop((serve, channel, id(fn)), None)
        return entry[1] if entry is not None and entry[0] is fn else None

    def _wanted(self, serve: bool, channel: str, fn: Handler) -> bool:
        if serve:
            return self.services.get(channel) is fn
        return any(h is fn for h in self.subscriptions.get(channel, ()))

    async def subscribe(self, channel: str, handler: Handler) -> bool:
        validate_pattern(channel)
        if not callable(handler):
            raise TypeError("handler must be callable")
        handlers = self.subscriptions.setdefault(channel, [])
        if handler in handlers:  # held once, as by the client: its subscribe only waits for the server again
            return await self._apply((False, channel, handler), lambda c: c.subscribe(channel, handler), lambda: None, withdrawn_on_timeout=True)
        handlers.append(handler)
        return await self._apply(
            (False, channel, handler), lambda c: c.subscribe(channel, handler), lambda: self._drop_subscription(channel, handler), withdrawn_on_timeout=True
        )

    async def serve(self, channel: str, fn: Handler) -> bool:
        check_servable(channel)  # before it is kept for a registrar to come
        if channel in self.services:
            raise AlreadyServing(f"already serving {channel!r}; unserve() it first")
        self.services[channel] = fn

        async def register(c: IPCClient) -> None:
            await c.serve(channel, fn)

        return await self._apply((True, channel, fn), register, lambda: self.services.pop(channel, None))

    async def _apply(
        self,
        which: tuple[bool, str, Handler],
        action: Callable[[IPCClient], Awaitable[Any]],
        undo: Callable[[], Any],
        *,
        withdrawn_on_timeout: bool = False,
    ) -> bool:
        """Apply a registration on the registrar (or a new one, which replays
        them all): True when done, False when kept for later. A subscribe
        that times out on a live registrar is withdrawn by its client, so it
        is undone here and raised, as the client's own; a serve stays with
        the client, which completes it when the server answers."""
        registrar = self.registrar
        live = registrar is not None and registrar.usable
        key = (which[0], which[1], id(which[2]))
        try:
            if live:
                await action(registrar.client)
            else:
                self._waiting.append(key)
                try:
                    await self.ensure()  # replays everything, this one included
                finally:
                    self._waiting.remove(key)
                refusal = self._refusal(*which)
                if refusal is not None:  # dropped from the tables already
                    raise refusal
            return True
        except RequestTimeout:
            if live and withdrawn_on_timeout:  # the registrar holds none of it: nothing would apply it later
                undo()
                raise
            if live:
                return False
            log.debug("registration on %s deferred: its new registrar did not answer in time", self._where)
            self._defer()
            return False
        except NotConnected as exc:
            log.debug("registration on %s deferred: %s", self._where, printable(exc))
            self._defer()
            return False
        except IPCError as exc:
            if exc.code == "connection_lost":
                self._defer()
                return False  # the registrar died; its replacement replays it
            undo()
            raise
        except BaseException:
            undo()
            raise

    def _drop_subscription(self, channel: str, handler: Handler) -> None:
        handlers = self.subscriptions.get(channel, [])
        if handler in handlers:
            handlers.remove(handler)
        if not handlers:
            self.subscriptions.pop(channel, None)

    async def unsubscribe(self, channel: str, handler: Handler | None = None) -> None:
        if handler is None:
            self.subscriptions.pop(channel, None)
        else:
            self._drop_subscription(channel, handler)
        if self.registrar is not None and self.registrar.usable:
            await self.registrar.client.unsubscribe(channel, handler)

    async def unserve(self, channel: str) -> None:
        self.services.pop(channel, None)
        if self.registrar is not None and self.registrar.usable:
            await self.registrar.client.unserve(channel)
