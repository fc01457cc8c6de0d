"""Where a LoadBalancedClient's subscriptions live (docs/resilience.md §8,
docs/cluster.md §6). The Node client's ``lib/balanced_subscriptions.js`` is
its twin.

Standalone servers are islands: a publish reaches the subscribers of its own
server only, so a subscription is kept on every one of them (each pool
replays it on a new connection). Servers that name the same cluster in their
connect reply (docs/protocol.md §3 item 10) deliver every publish on each of
them: there a subscription is kept on ONE server, the first healthy one of
the list, and stays there while its connection lives. When that server goes
down or says it is leaving (lame duck), the subscription is made on the next
healthy node of the cluster first, then dropped from the old one
(``subscription_moved``); a publish that reaches both during the overlap is
handed to the handler once (the cluster relays a publish with its
``message_id``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ipc_protocol import IPCError, Message, NotConnected, RemoteError, printable
from ipc_protocol.cluster_info import cluster_of

from .balancer import Server
from .client import Handler, IPCClient
from .pool import ConnectionPool
from .at_once import is_async_function

__all__ = ["BalancedSubscriptions"]

log = logging.getLogger("ipc_client.balancer")

_SEEN_LIMIT = 1024  # message ids a subscription remembers (the latest), to drop duplicates after a move
_UNKNOWN = object()  # a server that never answered a connect: its cluster is not known yet


def tally(results: list[Any]) -> tuple[int, list[BaseException]]:
    """How many servers took a registration (True) and what the others
    raised, out of ``asyncio.gather(..., return_exceptions=True)``; a
    cancellation among them is raised."""
    failures = [r for r in results if isinstance(r, BaseException)]
    for exc in failures:
        if isinstance(exc, asyncio.CancelledError):
            raise exc
    return sum(1 for r in results if r is True), failures


def refusal(failures: list[BaseException], nobody: str) -> BaseException:
    """What to raise when no server took it: a server's refusal first."""
    if failures:
        return next((e for e in failures if isinstance(e, RemoteError)), failures[0])
    return NotConnected(nobody)


@dataclass(eq=False)
class _Subscription:
    channel: str
    handler: Handler
    on: set[Server] = field(default_factory=set)  # the pools that keep it
    moved: bool = False
    seen: OrderedDict[str, None] = field(default_factory=OrderedDict)
    deliver: Handler = field(init=False)

    def __post_init__(self) -> None:
        handler = self.handler
        if is_async_function(handler):

            async def deliver_async(msg: Message) -> Any:
                if not self.duplicate(msg):
                    return await handler(msg)
                return None

            self.deliver = deliver_async
        else:

            def deliver(msg: Message) -> Any:
                return None if self.duplicate(msg) else handler(msg)

            self.deliver = deliver

    def duplicate(self, msg: Message) -> bool:
        """After a move, a publish both nodes delivered (same ``message_id``) counts once.
        Ids are remembered from the start: the old node may have delivered a
        publish just before the move that reaches the new one just after."""
        if msg.message_id in self.seen:
            return self.moved
        self.seen[msg.message_id] = None
        if len(self.seen) > _SEEN_LIMIT:
            self.seen.popitem(last=False)
        return False


async def _reached(client: IPCClient) -> None:
    """Nothing: acquiring a pool member connected it (``connected`` learnt its cluster)."""


class BalancedSubscriptions:
    """The subscriptions of a LoadBalancedClient and the servers keeping them.

    ``emit`` sends ``subscription_moved(channel, from_snapshot, to_snapshot)``;
    ``closed()`` says whether the owner is closed."""

    def __init__(self, servers: list[Server], pools: dict[Server, ConnectionPool], *, emit: Callable[..., None], closed: Callable[[], bool]) -> None:
        self._servers = servers
        self._pools = pools
        self._emit = emit
        self._closed = closed
        self.clusters: dict[Server, str | None] = {}  # what each server's latest connect reply said
        self._subs: list[_Subscription] = []
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._again = False

    # -- what the servers are -----------------------------------------------------------

    def connected(self, server: Server, client: IPCClient) -> None:
        """A new connection to ``server``: its reply says which cluster it is in."""
        self.clusters[server] = cluster_of(client.server_info)
        self.changed()

    def changed(self) -> None:
        """A server came, went or is leaving: move what must move (in the background)."""
        if not self._subs or self._closed():
            return
        self._again = True
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._settle_all())

    def _layout(self) -> tuple[list[Server], dict[str, list[Server]]]:
        """The islands (every one keeps a subscription) and each cluster's nodes, in list order.
        A server never reached is an island while no server names a cluster."""
        any_cluster = any(name is not None for name in self.clusters.values())
        islands: list[Server] = []
        clusters: dict[str, list[Server]] = {}
        for server in self._servers:
            name = self.clusters.get(server, _UNKNOWN)
            if name is None or (name is _UNKNOWN and not any_cluster):
                islands.append(server)
            elif isinstance(name, str):
                clusters.setdefault(name, []).append(server)
        return islands, clusters

    @staticmethod
    def _usable(server: Server) -> bool:
        return server.healthy and not server.leaving

    # -- subscribe / unsubscribe --------------------------------------------------------

    async def subscribe(self, channel: str, handler: Handler) -> int:
        """On every island and one node of each cluster; returns where it is
        active now. Raises (and keeps nothing) if no server took it."""
        sub = _Subscription(channel, handler)
        async with self._lock:
            # Every server's connect reply says what it is: reach the ones not
            # known yet first, or a node would be taken for an island and keep
            # the subscription too (as the Node twin does).
            unknown = [s for s in self._servers if s not in self.clusters]
            await asyncio.gather(*(self._pools[s].execute(_reached) for s in unknown), return_exceptions=True)
            islands, clusters = self._layout()
            results: list[Any] = await asyncio.gather(
                *(self._keep(sub, s) for s in islands), *(self._place(sub, nodes) for nodes in clusters.values()), return_exceptions=True
            )
            active, failures = tally(results)
            if active:
                for exc in failures:
                    log.warning("subscription refused by one server: %s", printable(exc))
                self._subs.append(sub)
                return active
            await asyncio.gather(*(self._pools[s].unsubscribe(channel, sub.deliver) for s in sub.on), return_exceptions=True)
        raise refusal(failures, "no server could be reached to subscribe on")

    async def unsubscribe(self, channel: str, handler: Handler | None) -> None:
        async with self._lock:
            gone = [s for s in self._subs if s.channel == channel and (handler is None or s.handler is handler)]
            self._subs = [s for s in self._subs if s not in gone]
            await asyncio.gather(
                *(self._pools[server].unsubscribe(channel, sub.deliver) for sub in gone for server in sub.on), return_exceptions=True
            )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # -- placing ----------------------------------------------------------------------------

    async def _keep(self, sub: _Subscription, server: Server) -> bool:
        """Keep ``sub`` in ``server``'s pool: True active now, False deferred
        (the pool applies it once it connects)."""
        active = await self._pools[server].subscribe(sub.channel, sub.deliver)
        sub.on.add(server)
        return active

    async def _drop(self, sub: _Subscription, server: Server) -> None:
        sub.on.discard(server)
        try:
            await self._pools[server].unsubscribe(sub.channel, sub.deliver)
        except (IPCError, OSError) as exc:  # its connection went meanwhile: nothing is left there
            log.debug("unsubscribe from %s: %s", server.address, printable(exc))

    async def _place(self, sub: _Subscription, nodes: list[Server], held: list[Server] | None = None) -> bool:
        """Make ``sub`` active on the first usable node of a cluster that does
        not hold it; False when none took it. A refusal by the server (a
        permission) is raised: every node would say the same."""
        last: BaseException | None = None
        for server in nodes:
            if not self._usable(server) or (held and server in held):
                continue
            try:
                if await self._keep(sub, server):
                    return True
            except RemoteError:
                raise
            except (IPCError, OSError) as exc:
                last = exc
                continue
            await self._drop(sub, server)  # deferred there: try the next node
        if last is not None and not held:
            raise last
        return False

    async def _settle_all(self) -> None:
        while self._again and not self._closed():
            self._again = False
            async with self._lock:
                for sub in list(self._subs):
                    try:
                        await self._settle(sub)
                    except (IPCError, OSError) as exc:
                        log.warning("subscription %r not moved: %s", sub.channel, printable(exc))
                        self._again = True  # a later change tries again

    async def _settle(self, sub: _Subscription) -> None:
        """Bring ``sub`` where the layout wants it: on every island, on one
        live node of each cluster (kept where it is while that node lives)."""
        islands, clusters = self._layout()
        for server in islands:
            if server not in sub.on:
                await self._keep(sub, server)
        for nodes in clusters.values():
            held = [s for s in nodes if s in sub.on]
            keep = next((s for s in held if self._usable(s)), None)
            if keep is None:
                sub.moved = sub.moved or bool(held)  # from now on, a message both nodes deliver counts once
                if not await self._place(sub, nodes, held):
                    continue  # no node to go to: it stays where it is kept, replayed when that server is back
                keep = next(s for s in nodes if s in sub.on and s not in held)
            for server in held:
                if server is not keep:
                    await self._drop(sub, server)
            if held and keep not in held:  # once the old node let go
                log.info("subscription %r moved from %s to %s", sub.channel, held[0].address, keep.address)
                self._emit("subscription_moved", sub.channel, held[0].snapshot(), keep.snapshot())
