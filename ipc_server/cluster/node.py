"""One server as a node of a cluster joined through NATS (docs/cluster.md):
the facade the server's hooks call, wiring the link, the interest, the
requests both ways, the members and the cluster-wide ``system`` answers.

The server calls it only where a standalone server would have stopped: a
request nobody on this node takes (``request``) or every responder here is
too full for (``_hand_on``, through ``Forwarding.hand_on``), a publish once
fanned out here (``published``), a registration made or dropped (``add``/``remove``),
a connection gone, a cancel or credit for a request it does not hold. Nothing on
the path of a request answered on this node changes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ipc_protocol import SYSTEM_CHANNEL, ErrorCode, Message, MessageType, decode_relayed, encode_message
from ipc_protocol.attachments import BinaryFrame
from ipc_protocol.streams import cancel_reason

from ..config import ServerConfig
from ..connection import ServerConnection
from ..connection_list import DEFAULT_LIMIT, page_bounds
from ..served_pages import describe_page, services_page
from ..stats import ServerStats
from ..system_actions import channels_page
from .discovery import Discovery
from .incoming import Incoming, RemoteRequester
from .interest import PUB, REQ, Interest
from .link import Link, LinkSettings, Msg
from .link_files import check_link_files
from .members import Members
from .outgoing import Outgoing
from .stream_relay import StreamRelay
from .subjects import HANDED, MAX_SUBJECT_LENGTH, Subjects

if TYPE_CHECKING:
    from ..admission import App
    from ..forwarding import Forwarding
    from ..handlers import HandlerCalls
    from ..metrics import Metrics
    from ..pubsub import PubSub
    from ..router import HandlerRegistry
    from ..shutdown import Shutdown

__all__ = ["Cluster", "default_node_name"]

log = logging.getLogger("ipc_server.cluster")

# How long start() waits for NATS before serving degraded (docs/cluster.md §5).
START_WAIT_S = 2.0


def default_node_name() -> str:
    """Host, process and a random part: two servers of one process differ too."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


def _load(conn: Any) -> int:
    return len(conn.serving)


class Cluster:
    """The cluster side of one server (module docstring)."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        stats: ServerStats,
        handlers: HandlerRegistry,
        apps: dict[str, App],
        calls: HandlerCalls,
        forwarding: Forwarding,
        pubsub: PubSub,
        shutdown: Shutdown | None = None,
    ) -> None:
        self.config = config
        self.name = config.node_name or default_node_name()
        self._stats = stats
        self._handlers = handlers
        self._apps = apps
        self._calls = calls
        self._forwarding = forwarding
        self._pubsub = pubsub
        self.subjects = subjects = Subjects(config.cluster_name, self.name)
        beat = config.cluster_heartbeat_s
        settings = LinkSettings(list(config.cluster), f"ipc-bridge {self.name}", config.cluster_creds, check_link_files(config), heartbeat_s=beat, max_pending=config.cluster_max_pending_bytes)
        self.link = link = Link(settings, on_down=self._link_down, on_up=self._link_up, prepare=self._prepare)
        self.outgoing = Outgoing(link, subjects, stats, heartbeat_s=beat, default_timeout_s=config.default_request_timeout_s, grace_s=config.no_responders_grace_s, shutdown=shutdown)
        self.outgoing.local = self._taker
        self.members = Members(link, subjects, self.name, beat)
        self.incoming = Incoming(link, subjects, stats, route=self._route, withdraw=self._withdraw, members=self.members, heartbeat_s=beat)
        self.interest = Interest(link, subjects, self._on_publish, self.incoming.on_request)
        streams = forwarding.streams  # the server's (§15): a remote consumer's credit goes to it
        assert streams is not None
        self.relay = StreamRelay(link, subjects, stats, outgoing=self.outgoing, incoming=self.incoming, streams=streams, max_pending=config.cluster_max_pending_bytes)
        self.discovery = Discovery(link, subjects, self.members, local=self._local, state=self.state)
        forwarding.hand_on = self._hand_on
        self.publishes_out = 0
        self.publishes_in = 0
        self.publishes_not_sent = 0
        for handler in handlers.all():  # registered before the cluster existed
            self.handler_changed(handler.app_id, handler.channel, True)

    # -- life ------------------------------------------------------------------------------

    async def start(self, metrics: Metrics | None = None) -> None:
        """Connect (nats-py keeps trying); wait a little for NATS, then serve
        whether it came or not (degraded until it does, also in ``metrics``' /healthz)."""
        if metrics is not None:
            metrics.checks.append(self.degraded)
        loop = asyncio.get_running_loop()
        self.outgoing.start(loop)
        self.incoming.start(loop)
        self.members.start(loop)
        self.link.start()
        try:
            await asyncio.wait_for(self.link.ever_up.wait(), START_WAIT_S)
        except (asyncio.TimeoutError, TimeoutError):
            log.warning("cluster: serving degraded (local traffic only) until NATS is reachable: %s", self.link.reason)
            return
        await self.interest.confirmed()  # the handlers registered before start() are reachable from every node

    async def confirmed(self) -> None:
        """Wait until NATS has every registration made so far: a handler
        added while the server runs (``add_handler``) is reachable from the
        other nodes once this returns (docs/cluster.md §4). A node closing
        meanwhile answers it too, unconfirmed: its link goes, and the handler with it."""
        await self.interest.confirmed()

    async def _prepare(self) -> None:
        """The node's own subscriptions, made before the link counts as up."""
        s, link = self.subjects, self.link
        await link.subscribe(f"{s.replies}.*", self.outgoing.on_reply)
        await link.subscribe(s.notes, self.outgoing.on_note)
        await link.subscribe(f"{s.gathers}.*", self.discovery.on_answer)
        await link.subscribe(s.system, self.discovery.on_query)
        await link.subscribe(s.heartbeat, self.members.on_heartbeat)
        await link.subscribe(s.cancels, self.incoming.on_cancel)
        await link.subscribe(f"{s.credits}.*.*", self.relay.on_credit)

    def _link_up(self) -> None:
        self.interest.link_up()
        self.members.link_up()

    def _link_down(self) -> None:
        self.members.link_down()
        self.outgoing.link_down()

    async def leave(self) -> None:
        """Shutting down: take no more requests from other nodes, say goodbye."""
        self.interest.drop(REQ)
        self.members.leave()
        await self.link.flush()

    async def close(self) -> None:
        """The grace period is over: what still waits on another node is
        ``shutting_down``; the link is drained (answers to others go out) and closed."""
        for pending in list(self.outgoing.table.values()):
            self.outgoing.fail(pending, ErrorCode.SHUTTING_DOWN, "the server is shutting down")
        self.members.close()
        self.outgoing.close()
        self.incoming.close()
        self.discovery.close()
        await self.interest.close()  # the link takes the subscriptions with it: none is undone one by one
        await self.link.close()

    @property
    def held(self) -> int:
        """Requests waiting on another node (a shutdown's grace waits for them)."""
        return len(self.outgoing)

    # -- hooks: registrations -------------------------------------------------------------

    def add(self, conn: ServerConnection, pattern: str, serve: bool) -> None:
        """``conn`` subscribed to (or serves) ``pattern``, new for it."""
        # A responder for system gets the actions that are not the server's
        # (protocol.md §8), on a subject of its own (subjects.py).
        self.interest.add(REQ if serve else PUB, conn.app_id, pattern)

    def remove(self, conn: ServerConnection, pattern: str, serve: bool) -> None:
        self.interest.remove(REQ if serve else PUB, conn.app_id, pattern)

    def handler_changed(self, app_id: str | None, channel: str, added: bool) -> None:
        """An in-process handler was added or removed (``IPCServer.add_handler``)."""
        (self.interest.add if added else self.interest.remove)(REQ, app_id, channel)

    def acked(self, conn: ServerConnection, reply: Message) -> bool:
        """Hold a subscribe's or serve's ack until NATS confirmed the interest
        (docs/cluster.md §4); False: nothing to wait for, send it now."""
        def send() -> None:
            if conn.is_open:
                conn.send(reply)

        return self.interest.after_confirmed(send)

    def connection_closed(self, conn: ServerConnection) -> None:
        if conn.opened:
            for pattern in conn.subscriptions:
                self.interest.remove(PUB, conn.app_id, pattern)
            for pattern in conn.responder_for:
                self.interest.remove(REQ, conn.app_id, pattern)
        self.outgoing.connection_closed(conn)

    # -- hooks: traffic ----------------------------------------------------------------------

    def published(self, app_id: str, msg: Message, body: bytes | None) -> None:
        """A publish fanned out on this node: on to the other nodes."""
        subject = self.subjects.publish(app_id, msg.channel_id)
        if len(subject) > MAX_SUBJECT_LENGTH:
            self.publishes_not_sent += 1
            return
        payload = encode_message(msg) if body is None else body.body() if isinstance(body, BinaryFrame) else bytes(body)  # §16: joined
        if self.link.publish(subject, payload, new=True):
            self.publishes_out += 1
        else:
            self.publishes_not_sent += 1

    async def _on_publish(self, nmsg: Msg) -> None:
        """Another node's publish: to this node's matching subscribers."""
        app_id, channel = self.subjects.parse_publish(nmsg.subject)
        app = self._apps.get(app_id)
        if app is None or not self.interest.first_copy(app_id, channel, nmsg.sid):
            return
        try:
            msg = decode_relayed(nmsg.data)
        except Exception:  # noqa: BLE001 - another node sent what it read from a client: never expected
            log.warning("cluster: undecodable publish on %s dropped", nmsg.subject)
            return
        self.publishes_in += 1
        self._pubsub.deliver(app, msg, nmsg.data)

    def request(self, conn: ServerConnection, msg: Message, body: bytes) -> None:
        """A request no handler or responder on this node takes (protocol.md §6.1)."""
        channel = msg.channel_id
        if not self.link.up:
            text = f"no handler or responder for {channel!r} on this node, and the node is cut off from the cluster ({self.link.reason})"
            conn.refuse(msg, ErrorCode.NO_RESPONDERS, text)
        elif len(self.subjects.request(conn.app_id, channel)) > MAX_SUBJECT_LENGTH:
            conn.refuse(msg, ErrorCode.TOO_LARGE, f"channel {channel[:40]!r}... is too long to cross nodes")
        else:
            self.outgoing.request(conn, msg, body)

    def cancelled(self, conn: ServerConnection, msg: Message) -> bool:
        """A requester's cancel (§15.4) for a request waiting on another
        node, or a consumer's credit (§15.3) for a stream served there: True
        when it was one (taken here)."""
        if msg.message_type is MessageType.CREDIT:
            return self.relay.credit(conn, msg)
        if msg.message_type is not MessageType.CANCEL or msg.reply_to is None:
            return False
        if self.outgoing.cancel(conn, msg.reply_to, cancel_reason(msg)):
            self._stats.cancels += 1
            return True
        return False

    # -- serving other nodes' requests -----------------------------------------------------

    def _route(self, requester: RemoteRequester, msg: Message, body: bytes) -> None:
        """Like the server's routing, on this node only (never back to NATS)."""
        app_id, channel = requester.app_id, msg.channel_id
        if msg.message_type is MessageType.REQUEST:
            self._stats.requests += 1
        else:
            self._stats.notifications += 1
        handler, responder = self._find(app_id, channel)
        if handler is not None:
            self._calls.run(requester, msg, handler)  # type: ignore[arg-type]
            return
        if responder is None:  # it left this node while the request crossed
            requester.refuse(msg, ErrorCode.NO_RESPONDERS, f"no handler or responder for {channel!r}: it left node {self.name}")
            return
        self._forwarding.forward(requester, msg, body, responder)  # type: ignore[arg-type]

    def _taker(self, conn: Any, channel: str) -> Callable[[Any, Message, bytes], None] | None:
        """What on this node would take a request on ``channel`` now, as a function that routes it."""
        handler, responder = self._find(conn.app_id, channel)
        if handler is not None:
            return lambda c, msg, body: self._calls.run(c, msg, handler)
        if responder is not None:
            return lambda c, msg, body: self._forwarding.forward(c, msg, body, responder)
        return None

    def _find(self, app_id: str, channel: str) -> tuple[Any, Any]:
        """The in-process handler, else the responder, that takes a request on
        ``channel`` here (either may be None). ``system`` is served exactly:
        a pattern never gets it (protocol.md §8)."""
        if channel == SYSTEM_CHANNEL:
            handler = self._handlers.get(SYSTEM_CHANNEL, app_id) or self._handlers.get(SYSTEM_CHANNEL)
        else:
            handler = self._handlers.find(app_id, channel)
        if handler is not None:
            return handler, None
        app = self._apps.get(app_id)
        if app is None:
            return None, None
        return None, app.responders.pick_exact(channel, _load) if channel == SYSTEM_CHANNEL else app.responders.pick(channel, _load)

    def _hand_on(self, conn: ServerConnection, msg: Message, body: bytes) -> bool:
        """Every responder of ``msg``'s channel here holds its maximum
        (protocol.md §12): to another node, which may have room, once
        (``outgoing.py``); False: refused here, ``limit_exceeded``."""
        if isinstance(conn, RemoteRequester) and conn.token.startswith(HANDED):
            return False  # another node handed it on to this one already
        if not self.link.up or len(self.subjects.request(conn.app_id, msg.channel_id)) > MAX_SUBJECT_LENGTH:
            return False
        return self.outgoing.hand_on(conn, msg, body)

    def _withdraw(self, requester: RemoteRequester, reason: str) -> None:
        for key in list(requester.awaiting):
            self._forwarding.withdraw(key, reason)
        for call in list(requester.handler_calls):
            self._calls.cancel(call)
        self.outgoing.connection_closed(requester, reason)  # type: ignore[arg-type]  # handed on to another node: stopped there

    # -- introspection -------------------------------------------------------------------------

    def answer(self, conn: ServerConnection, msg: Message, action: str, own: Any, narrow: Any = None) -> None:
        """``services``, ``channels``, ``describe`` or ``stats`` for the whole cluster."""
        self.discovery.answer(conn, msg, action, own, narrow)

    def _local(self, action: str, app_id: str, query: dict[str, Any]) -> Any:
        """This node's own answer to ``action`` for ``app_id`` (protocol.md §8);
        ``channels``, ``services``, ``describe``: the page the query names
        (checked by the node asked), ``describe`` unnarrowed: the node asked
        knows the caller's user and narrows the whole answer."""
        app = self._apps.get(app_id)
        if action == "stats":
            return self._stats.snapshot()
        bounds = page_bounds(query, action)
        offset, limit = bounds if not isinstance(bounds, str) else (0, DEFAULT_LIMIT)
        if action == "channels":
            return channels_page(app.subscriptions if app is not None else None, query, offset, limit)
        responders = app.responders if app is not None else None
        if action == "describe":
            return describe_page(responders, self._handlers, self._pubsub.schemas, app_id, query, offset, limit)
        return services_page(responders, self._handlers, app_id, query, offset, limit)

    def state(self) -> dict[str, Any]:
        """The node's cluster figures (``stats``' ``cluster``)."""
        return {
            "node": self.name,
            "node_id": f"{self.name}~{self.members.node_id.rpartition('~')[2]}",  # its incarnation (members.py)
            "state": "up" if self.link.up else "degraded",
            "reason": self.link.reason or None,
            "nats": self.link.url or None,
            "alive": self.members.alive() if self.link.up else [],
            "link_disconnects": self.link.disconnects,
            "link_pending_bytes": self.link.held,  # held for NATS, not taken yet (link.py)
            "link_refused": self.link.refused,
            "link_stalls": self.link.stalls,
            "nats_subscriptions": self.interest.patterns(),
            "patterns_kept_local": self.interest.kept_local,  # subject too long to cross nodes (interest.py)
            "requests_sent": self.outgoing.sent,
            "requests_waiting": len(self.outgoing),
            "requests_lost": self.outgoing.lost,
            "requests_retried": self.outgoing.retried,  # found no node within the grace (§13.2), sent again
            "requests_handed_on": self.outgoing.handed,  # every responder here full: sent to another node (outgoing.py)
            "requests_served": self.incoming.served,
            "requests_held": len(self.incoming),
            "requests_dropped": self.incoming.requests_dropped,  # held for a requester node that went silent
            "publishes_out": self.publishes_out,
            "publishes_in": self.publishes_in,
            "publishes_not_sent": self.publishes_not_sent,
            **self.relay.figures(),  # streams across nodes (stream_relay.py)
        }

    def degraded(self) -> str | None:
        """Why /healthz should say degraded, or None (docs/operations.md)."""
        return None if self.link.up else f"cluster: {self.link.reason}"

    def __repr__(self) -> str:
        return f"<Cluster node={self.name} {self.link!r} {self.interest!r} waiting={len(self.outgoing)}>"

