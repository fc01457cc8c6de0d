"""Publish/subscribe and registrations (docs/protocol.md §5, §7.1): the
subscribe and unsubscribe actions (plain or ``serve``), publishes fanned out
as the same bytes to every match, and the ``$sys.services`` announcements.
The tables themselves are ``topics.SubscriptionTable`` and
``router.ResponderTable``, per app (``admission.App``).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Set as AbstractSet
from typing import Any

from ipc_protocol import SERVICES_CHANNEL, ErrorCode, Message, MessageType, is_servable, validate_pattern
from ipc_protocol.channels import is_pattern
from ipc_protocol.attachments import Frame
from ipc_protocol.envelope import PUBLISH as _PUBLISH, encode_message_parts
from ipc_protocol.framing import frame_parts
from ipc_protocol.messages import response_to
from ipc_protocol.contracts import handler_digest
from ipc_protocol.protocol import ProtocolState

from .admission import App
from .config import ServerConfig
from .connection import ServerConnection
from .router import HandlerRegistry, target_problem
from .schemas import Schemas, declared_schema, measure
from .stats import ServerStats
from .sublist import pattern_tokens

__all__ = ["PubSub"]


class _Patterns(set):  # type: ignore[type-arg]
    """A connection's subscriptions or registrations, and the tokens of the
    wildcard patterns among them: what they cost in the pattern index, held
    to ``max_pattern_tokens_per_connection`` (§12)."""

    __slots__ = ("tokens",)

    def __init__(self) -> None:
        super().__init__()
        self.tokens = 0


def _tokens(pattern: str) -> int:
    """What ``pattern`` costs in the index: its tokens if it is a pattern
    (a trie node each), nothing if it is a channel (a dict entry)."""
    return pattern_tokens(pattern) if is_pattern(pattern) else 0


def _held_tokens(conn: ServerConnection) -> int:
    return sum(held.tokens for held in (conn.subscriptions, conn.responder_for) if type(held) is _Patterns)


def _with(patterns: AbstractSet[str], pattern: str) -> set[str]:
    """``patterns`` with ``pattern`` added. A connection holds a shared empty
    frozenset until its first registration, then a set of its own."""
    own = patterns if type(patterns) is _Patterns else _Patterns()
    if own is not patterns:
        for other in patterns:
            _add(own, other)
    _add(own, pattern)
    return own


def _add(own: _Patterns, pattern: str) -> None:
    if pattern not in own:
        own.add(pattern)
        own.tokens += _tokens(pattern)


def _discard(patterns: AbstractSet[str], pattern: str) -> None:
    if type(patterns) is _Patterns and pattern in patterns:
        patterns.remove(pattern)
        patterns.tokens -= _tokens(pattern)


def _over(held: int, limit: int | None, total: int, total_limit: int | None, what: str) -> str | None:
    """Why one more would pass a cap (§12), or None."""
    if limit is not None and held >= limit:
        return f"this connection holds its maximum of {limit} {what}"
    if total_limit is not None and total >= total_limit:
        return f"the server holds its maximum of {total_limit} {what}"
    return None


def _over_tokens(conn: ServerConnection, pattern: str, limit: int | None) -> str | None:
    """Why ``pattern`` would take the connection's patterns past their
    tokens' budget (§12), or None."""
    if limit is None:
        return None
    tokens = _tokens(pattern)
    if tokens and _held_tokens(conn) + tokens > limit:
        return f"this connection's patterns hold {_held_tokens(conn)} of its maximum of {limit} tokens, and this one has {tokens}"
    return None


def _over_app_tokens(app: App, pattern: str, table: Any, limit: int | None) -> str | None:
    """Why ``pattern`` would take the app's index past its tokens' budget, or
    None: a publish or request walks up to that many nodes, however many
    connections share the patterns (§12, docs/security.md §5). A pattern the
    index holds already (``table``'s) costs nothing more."""
    if limit is None or not is_pattern(pattern) or table.indexed(pattern):
        return None
    held = app.subscriptions.tokens + app.responders.tokens
    tokens = pattern_tokens(pattern)
    if held + tokens > limit:
        return f"this app's patterns hold {held} of its maximum of {limit} tokens, and this one has {tokens}"
    return None


class PubSub:
    """Subscriptions and responder registrations have caps per connection and
    in total (§12): past one, the subscribe is answered ``limit_exceeded`` and
    the connection stays open. ``ServerStats.subscriptions`` and
    ``registrations`` are the totals held now."""

    def __init__(self, apps: dict[str, App], stats: ServerStats, config: ServerConfig | None = None, handlers: HandlerRegistry | None = None) -> None:
        self._apps = apps  # Admission's: the apps of the open connections
        self._handlers = handlers if handlers is not None else HandlerRegistry()  # the server's in-process handlers: they answer first (§6.1)
        self._stats = stats
        config = config or ServerConfig()
        self._max_subs = (config.max_subscriptions_per_connection, config.max_subscriptions)
        self._max_regs = (config.max_registrations_per_connection, config.max_registrations)
        self._max_tokens = config.max_pattern_tokens_per_connection
        self._max_app_tokens = config.max_pattern_tokens_per_app
        self._max_schema_bytes = (config.max_schema_bytes_per_connection, config.max_schema_bytes)
        self.schemas = Schemas()  # what responders declared (docs/typed-contracts.md)
        self.cluster: Any = None  # cluster.node.Cluster when this server is a node (docs/cluster.md)

    def subscription(self, conn: ServerConnection, msg: Message) -> None:
        """A subscribe or unsubscribe, plain or as a responder (``serve``)."""
        channel = msg.channel_id
        subscribe = msg.message_type is MessageType.SUBSCRIBE
        serve = isinstance(msg.payload, dict) and msg.payload.get("serve") is True
        try:
            validate_pattern(channel)
        except ValueError as exc:
            conn.refuse(msg, ErrorCode.BAD_MESSAGE, str(exc))
            return
        if subscribe and (conn.half_closed is not None or conn.protocol.state is not ProtocolState.OPEN):
            # withdrawn at its EOF (half_close.py) or replaced (a v1 reconnect): a frame
            # held behind its requests (§12) must not make it a subscriber or responder again
            conn.refuse(msg, ErrorCode.BAD_MESSAGE, "the connection is closing: it can no longer subscribe or serve")
            return
        app = self._apps[conn.app_id]
        if serve:
            if not is_servable(channel):
                conn.refuse(msg, ErrorCode.FORBIDDEN, f"channel {channel!r} is reserved for the server")
                return
            if subscribe:
                try:
                    schema = declared_schema(msg.payload)  # §7.1
                except ValueError as exc:
                    conn.refuse(msg, ErrorCode.BAD_MESSAGE, str(exc))
                    return
                held = conn.responder_for
                measured = measure(schema) if schema is not None else None
                problem = None if channel in held else _over(len(held), self._max_regs[0], self._stats.registrations, self._max_regs[1], "responder registrations") or _over_tokens(conn, channel, self._max_tokens)
                problem = problem or _over_app_tokens(app, channel, app.responders, self._max_app_tokens)
                problem = problem or self._over_schema_bytes(conn, channel, measured)
                if problem is not None:
                    conn.refuse(msg, ErrorCode.LIMIT_EXCEEDED, problem)
                    return
                if app.responders.add(channel, conn):
                    conn.responder_for = _with(conn.responder_for, channel)
                    self._stats.registrations += 1
                    if self.cluster is not None:
                        self.cluster.add(conn, channel, True)
                    self.schemas.declare(conn.app_id, channel, conn, schema, measured)
                    self.announce_service(conn, "added", channel)
                elif self.schemas.declare(conn.app_id, channel, conn, schema, measured):
                    self.announce_service(conn, "changed", channel)  # registered again, declaring another schema
                status = "serving"
            else:
                if app.responders.remove(channel, conn):
                    _discard(conn.responder_for, channel)
                    self._stats.registrations -= 1
                    self.announce_service(conn, "removed", channel)
                    if self.cluster is not None:
                        self.cluster.remove(conn, channel, True)
                status = "unserved"
        elif subscribe:
            held = conn.subscriptions
            problem = None if channel in held else _over(len(held), self._max_subs[0], self._stats.subscriptions, self._max_subs[1], "subscriptions") or _over_tokens(conn, channel, self._max_tokens)
            problem = problem or _over_app_tokens(app, channel, app.subscriptions, self._max_app_tokens)
            if problem is not None:
                conn.refuse(msg, ErrorCode.LIMIT_EXCEEDED, problem)
                return
            if app.subscriptions.add(channel, conn):
                conn.subscriptions = _with(held, channel)
                self._stats.subscriptions += 1
                if self.cluster is not None:
                    self.cluster.add(conn, channel, False)
            status = "subscribed"
        else:
            if app.subscriptions.remove(channel, conn):
                _discard(conn.subscriptions, channel)
                self._stats.subscriptions -= 1
                if self.cluster is not None:
                    self.cluster.remove(conn, channel, False)
            status = "unsubscribed"
        if not conn.legacy:
            ack = response_to(msg, {"status": status})
            if self.cluster is None or not self.cluster.acked(conn, ack):  # a node acks once NATS has the interest (docs/cluster.md §4)
                conn.send(ack)

    def _over_schema_bytes(self, conn: ServerConnection, channel: str, measured: tuple[str, int] | None) -> str | None:
        """Why declaring schemas of ``measured`` bytes for ``channel`` (in place
        of what ``conn`` declared for it) would pass a schema budget (§12), or None."""
        if measured is None:
            return None
        size = measured[1]
        replaced = self.schemas.held_for(conn.app_id, channel, conn)
        limit, total_limit = self._max_schema_bytes
        held = self.schemas.held(conn)
        if limit is not None and held - replaced + size > limit:
            return f"this connection's serve registrations declare {held} bytes of schemas of its maximum of {limit}, and this one has {size}"
        if total_limit is not None and self.schemas.total_bytes - replaced + size > total_limit:
            return f"the server holds {self.schemas.total_bytes} bytes of declared schemas of its maximum of {total_limit}, and this one has {size}"
        return None

    def publish(self, conn: ServerConnection, msg: Message, body: bytes) -> None:
        problem = target_problem(msg.channel_id)
        if problem is not None:
            conn.refuse(msg, *problem)
            return
        self._stats.publishes += 1
        delivered = self._fan_out(self._apps[conn.app_id], msg, body)
        conn.traffic.sent[_PUBLISH] += delivered  # its app's (stats.AppTraffic)
        if self.cluster is not None:  # on to the other nodes (docs/cluster.md §3)
            self.cluster.published(conn.app_id, msg, body)
        if msg.ack:
            conn.send(response_to(msg, {"status": "published", "delivered": delivered}))

    def _fan_out(self, app: App, msg: Message, body: bytes | None) -> int:
        """Send the same bytes to every matching connection, once each (§5.3);
        a binary frame's attachments are never copied, and the tagged form a
        peer without ``binary`` gets is made once for all of them (§16.4, §16.5)."""
        targets = app.subscriptions.match(msg.channel_id)
        if not targets:
            return 0
        frame: Frame | None = None
        legacy_frame: Frame | None = None
        delivered = 0
        for target in targets:
            if target.legacy:
                if legacy_frame is None:
                    legacy_frame = frame_parts(encode_message_parts(msg, legacy=True))
                ok = target.send_frame(legacy_frame)
            else:
                if frame is None:
                    frame = frame_parts(encode_message_parts(msg) if body is None else body)
                ok = target.send_frame(frame)
            delivered += ok
        self._stats.deliveries += delivered
        return delivered

    def deliver(self, app: App, msg: Message, body: bytes) -> int:
        """Fan out a publish another node of the cluster received (docs/cluster.md §3)."""
        return self._fan_out(app, msg, body)

    def withdraw(self, conn: ServerConnection, pattern: str, serve: bool) -> None:
        """Drop one registration of ``conn`` as its unsubscribe would, without
        an ack: its user's rights shrank on a reload (docs/security.md §3)."""
        app = self._apps.get(conn.app_id)
        if app is None:
            return
        if serve:
            if app.responders.remove(pattern, conn):
                _discard(conn.responder_for, pattern)
                self._stats.registrations -= 1
                self.announce_service(conn, "removed", pattern)
                if self.cluster is not None:
                    self.cluster.remove(conn, pattern, True)
        elif app.subscriptions.remove(pattern, conn):
            _discard(conn.subscriptions, pattern)
            self._stats.subscriptions -= 1
            if self.cluster is not None:
                self.cluster.remove(conn, pattern, False)

    def withdraw_all(self, conn: ServerConnection) -> None:
        """Drop every subscription and registration of ``conn``, whose peer
        sends no more (half-closed: half_close.py), as its close would."""
        for pattern in list(conn.subscriptions):
            self.withdraw(conn, pattern, False)
        for pattern in list(conn.responder_for):
            self.withdraw(conn, pattern, True)

    def announce_service(self, conn: ServerConnection, event: str, channel: str) -> None:
        """Tell ``$sys.services`` subscribers a responder registration came or went (§7.5);
        every removal passes here, so the schema the registration declared goes too."""
        if event == "removed":
            self.schemas.withdraw(conn.app_id, channel, conn)
        app = self._apps.get(conn.app_id)
        if app is None:
            return
        note = Message.build(
            MessageType.PUBLISH,
            conn.app_id,
            SERVICES_CHANNEL,
            {"event": event, "channel": channel, "connection_id": conn.connection_id, "responders": app.responders.count(channel),
             "schema_digest": self.digest(conn.app_id, channel)},  # fmt: skip
        )
        self._stats.traffic(conn.app_id).sent[MessageType.PUBLISH] += self._fan_out(app, note, None)
        if self.cluster is not None:
            self.cluster.published(conn.app_id, note, None)

    def announce_handler(self, app_id: str | None, event: str, channel: str, fn: Callable[..., Any] | None) -> None:
        """Tell ``$sys.services`` subscribers an in-process handler (``fn``, None
        once removed) came or went (§7.5): no connection, ``responders`` 0;
        every app's subscribers for ``app_id`` None."""
        if self.cluster is not None:  # reachable from the other nodes (docs/cluster.md §3)
            self.cluster.handler_changed(app_id, channel, fn is not None)
        apps = self._apps.items() if app_id is None else [(app_id, self._apps[app_id])] if app_id in self._apps else []
        for name, app in list(apps):
            payload = {"event": event, "channel": channel, "connection_id": None, "responders": 0, "schema_digest": self.digest(name, channel)}
            self._stats.traffic(name).sent[MessageType.PUBLISH] += self._fan_out(app, Message.build(MessageType.PUBLISH, name, SERVICES_CHANNEL, payload), None)

    def digest(self, app_id: str, channel: str) -> str | None:
        """The digest of the schemas ``describe`` publishes for ``channel`` now
        (§14.3): those of the in-process handler that answers it (its name or a
        pattern), else the responders' latest declared; None: nothing declared."""
        handler = self._handlers.serving(app_id, channel)
        return handler_digest(handler.fn) if handler is not None else self.schemas.digest(app_id, channel)
