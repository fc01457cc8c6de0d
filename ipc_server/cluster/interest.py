"""A node's interest on NATS (docs/cluster.md §2, §4): one NATS subscription
per (app, pattern) that any local connection subscribes to or serves,
reference-counted, so NATS carries to a node only what its clients want.

Changes are applied by one task in the order they were made (a pattern
dropped and taken again ends subscribed), then confirmed with one flush
(a PING answered by a PONG: NATS has processed every SUB before it). A
``subscribe`` or ``serve`` ack waits for that confirmation
(:meth:`Interest.after_confirmed`), so a publish or request made on any
node once the call has returned reaches it.

NATS hands a connection a message once per matching subscription; a node
holding ``orders.*`` and ``orders.>`` would get a publish on
``orders.new`` twice. :meth:`Interest.first_copy` keeps one: the copy that
came through the lowest subscription id among the node's matches.

A request subscription withdrawn is retired (``delivery.retire``) until
that flush confirms its ``UNSUB``: a request NATS gave this node before
reading it still reaches the node's routing, which finds no responder and
answers ``no_responders`` at once (docs/cluster.md §3), rather than being
dropped unseen and taken for lost by its requester's node 1.5 s later. A
publish subscription is not: a copy still coming through it is dropped,
as nats-py drops it. The node's other matching subscriptions bring their
own copy (a second one would be delivered twice), and its subscribers to
the pattern withdrawn no longer want it.

A pattern whose subject would pass nats-server's control line
(``MAX_SUBJECT_LENGTH``: a long non-ASCII channel escapes to many times its
length) is never subscribed on NATS: nats-server would close the node's
connection over it. It stays local to its node, counted in ``kept_local``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from nats.errors import Error as NatsError

from ipc_protocol.printable import clipped

from ..sublist import Sublist
from .delivery import release, retire
from .link import Link, Msg, Subscription
from .subjects import MAX_SUBJECT_LENGTH, Subjects

__all__ = ["Interest", "PUB", "REQ"]

log = logging.getLogger("ipc_server.cluster")

PUB = "p"  # publishes: every node with a match gets a copy
REQ = "r"  # requests: a queue group, one node gets each

_Key = tuple[str, str | None, str]  # (PUB or REQ, app or None for every app, pattern)


class Interest:
    """The node's NATS subscriptions, as the union of its local patterns."""

    def __init__(
        self,
        link: Link,
        subjects: Subjects,
        on_publish: Callable[[Msg], Awaitable[None]],
        on_request: Callable[[Msg], Awaitable[None]],
    ) -> None:
        self._link = link
        self._subjects = subjects
        self._on_publish = on_publish
        self._on_request = on_request
        self._refs: dict[_Key, int] = {}
        self._subs: dict[_Key, Subscription] = {}
        self._retired: list[Subscription] = []  # request subscriptions withdrawn, until NATS confirms it (module docstring)
        self._dirty: dict[_Key, None] = {}  # keys whose subscription may need changing, in order
        self._index: dict[str, Sublist[int]] = {}  # app -> publish pattern -> subscription id
        self._waiting: list[Callable[[], None]] = []  # acks waiting for the next confirmation
        self._worker: asyncio.Task[None] | None = None
        self._client: object = link.nc  # the nats-py client ``_subs`` live on
        self._closed = False  # the link is closing on purpose: nothing more goes to NATS
        self.kept_local = 0  # patterns never subscribed on NATS: their subject is too long (stats)

    def __len__(self) -> int:
        return len(self._subs)

    def add(self, kind: str, app_id: str | None, pattern: str) -> None:
        """One more local holder of ``pattern`` (a connection, a handler)."""
        key = (kind, app_id, pattern)
        refs = self._refs.get(key, 0)
        self._refs[key] = refs + 1
        if refs == 0:
            if self._too_long(key):
                self._keep_local(key)
            else:
                self._changed(key)

    def remove(self, kind: str, app_id: str | None, pattern: str) -> None:
        key = (kind, app_id, pattern)
        refs = self._refs.get(key, 0)
        if refs <= 1:
            if self._refs.pop(key, None) is not None:
                self._changed(key)
        else:
            self._refs[key] = refs - 1

    def drop(self, kind: str) -> None:
        """Withdraw every subscription of ``kind`` (a node leaving takes no
        more requests); later removals of them are no-ops."""
        for key in [k for k in self._refs if k[0] == kind]:
            del self._refs[key]
            self._changed(key)

    def holds(self, kind: str, app_id: str | None, pattern: str) -> int:
        return self._refs.get((kind, app_id, pattern), 0)

    def _subject(self, key: _Key) -> str:
        kind, app_id, pattern = key
        if kind == PUB:
            assert app_id is not None
            return self._subjects.publish(app_id, pattern)
        return self._subjects.request(app_id, pattern)

    def _too_long(self, key: _Key) -> bool:
        return len(self._subject(key)) > MAX_SUBJECT_LENGTH

    def _keep_local(self, key: _Key) -> None:
        """Count (and log the first) pattern that cannot cross nodes."""
        if not self.kept_local:
            kind, app_id, pattern = key
            log.info(
                "cluster: %s %r... of app %r stays on this node: its NATS subject would pass %d characters "
                "(docs/cluster.md §2; counted in stats' patterns_kept_local, not logged again)",
                "the subscription to" if kind == PUB else "the registration for", pattern[:40], app_id, MAX_SUBJECT_LENGTH,
            )
        self.kept_local += 1

    async def close(self) -> None:
        """The node is closing its link: NATS drops every subscription with
        it, so changes from now on (the connections closed after it) only
        update the counts, never try NATS (a closed client: one warning per
        pattern). A change being applied finishes first, not cancelled: a
        cancelled flush leaves its PING's PONG to the next one (nats-py).
        The worker stops there, so the callbacks it had not taken up yet
        (acks, ``confirmed()`` callers) are called here: none waits forever."""
        self._closed = True
        self._dirty.clear()
        worker = self._worker
        try:
            if worker is not None:
                await asyncio.wait([worker])
        finally:
            self._release()
            waiting, self._waiting = self._waiting, []
            for callback in waiting:
                callback()

    def _changed(self, key: _Key) -> None:
        if self._closed:
            return
        self._dirty[key] = None
        if self._worker is None and self._link.ever_up.is_set():
            self._worker = asyncio.get_running_loop().create_task(self._apply())

    def link_up(self) -> None:
        """Connected: apply what changed meanwhile (the first connection;
        nats-py itself resubscribes what it had after a reconnect). A link
        that started over on a new client (link.py) has none of the old
        one's subscriptions: every pattern is subscribed again."""
        if self._closed:
            return
        self._release()  # a new connection: NATS sends nothing for a subscription nats-py did not make again
        if self._link.nc is not self._client:
            self._client = self._link.nc
            self._subs.clear()
            self._index.clear()
            for key in self._refs:
                self._dirty[key] = None
        if self._worker is None and (self._dirty or self._waiting):
            self._worker = asyncio.get_running_loop().create_task(self._apply())

    def after_confirmed(self, callback: Callable[[], None]) -> bool:
        """Run ``callback`` once NATS has confirmed every change made so far;
        False (and nothing kept) when there is nothing to wait for: nothing
        changed, NATS is unreachable (the interest goes to NATS when it is
        back; docs/cluster.md §5), or the link is closing (nothing more is
        confirmed; :meth:`close`)."""
        if self._closed or (not self._dirty and self._worker is None):
            return False
        if not self._link.up:
            return False
        self._waiting.append(callback)
        return True

    async def confirmed(self) -> None:
        """Wait until NATS has confirmed every change made so far (at once
        when nothing is pending, NATS is unreachable or the link is closing;
        when it closes meanwhile, once the change under way is applied)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def confirmed() -> None:
            if not done.done():
                done.set_result(None)

        if self.after_confirmed(confirmed):
            await done

    async def _apply(self) -> None:
        try:
            while (self._dirty or self._waiting) and not self._closed:
                waiting, self._waiting = self._waiting, []
                while self._dirty:
                    key = next(iter(self._dirty))
                    del self._dirty[key]
                    await self._reconcile(key)
                if await self._link.flush():  # confirmed, or NATS went away: the acks go out either way
                    self._release()
                for callback in waiting:
                    callback()
        finally:
            self._worker = None

    async def _reconcile(self, key: _Key) -> None:
        kind, app_id, pattern = key
        wanted = key in self._refs
        sub = self._subs.get(key)
        client, nc = self._client, self._link.nc
        try:
            if wanted and sub is None:
                subject = self._subject(key)
                if len(subject) > MAX_SUBJECT_LENGTH or nc.is_closed:  # kept local (add); the link starts over (link_up)
                    return
                if kind == PUB:
                    assert app_id is not None
                    sub = await self._link.subscribe(subject, self._on_publish)
                else:
                    sub = await self._link.subscribe(subject, self._on_request, queue=self._subjects.queue)
                if nc is not self._client:  # made on a client the link replaced, or before link_up took the new one
                    with contextlib.suppress(NatsError):
                        await sub.unsubscribe()
                    return
                if kind == PUB:
                    assert app_id is not None
                    self._index.setdefault(app_id, Sublist()).insert(pattern, sub._id)
                self._subs[key] = sub
            elif not wanted and sub is not None:
                del self._subs[key]
                if kind == REQ and retire(sub):
                    self._retired.append(sub)
                await sub.unsubscribe()
                if kind == PUB and app_id is not None and self._client is client:  # out of the index once NATS sends no more through it
                    index = self._index.get(app_id)
                    if index is not None:
                        index.remove(pattern)
                        if not len(index):
                            del self._index[app_id]
        except Exception as exc:  # noqa: BLE001 - a closed connection: nats-py resubscribes what it holds, link_up what it does not
            log.warning("cluster: cannot %s %s on NATS: %s", "subscribe to" if wanted else "unsubscribe from", clipped(pattern), exc)

    def _release(self) -> None:
        """NATS has confirmed every ``UNSUB`` sent (or the connection they were for is gone)."""
        retired, self._retired = self._retired, []
        for sub in retired:
            release(sub)

    def first_copy(self, app_id: str, channel: str, sid: int) -> bool:
        """Whether this copy of a publish is the one to deliver (module docstring)."""
        index = self._index.get(app_id)
        if index is None or len(index) == 1:
            return True
        sids = index.match(channel)
        return not sids or sid == min(sids)

    def patterns(self) -> dict[str, int]:
        """Counts of NATS subscriptions by kind, for stats."""
        out = {"publish": 0, "request": 0}
        for kind, _, _ in self._subs:
            out["publish" if kind == PUB else "request"] += 1
        return out

    def __repr__(self) -> str:
        return f"<Interest subscriptions={len(self._subs)} pending={len(self._dirty)} waiting={len(self._waiting)}>"
