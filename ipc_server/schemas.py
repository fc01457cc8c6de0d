"""The channels' published JSON Schemas (docs/typed-contracts.md) that
responder clients declared in their serve registrations (docs/protocol.md
§7.1): the ``describe`` answer (§8, ``served_pages``) shows them beside
what in-process handlers' annotations say (``ipc_protocol.contracts``).

Pure bookkeeping, like ``router``: ``PubSub`` tells it of registrations as
they come and go, the server asks it for ``describe``.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from ipc_protocol.contracts import ANY_SCHEMA, schema_text, text_digest

__all__ = ["Schemas", "declared_schema", "measure"]

_SIDES = ("request", "response")


def declared_schema(payload: Any) -> dict[str, Any] | None:
    """The ``schema`` of a serve registration's payload (§7.1), or None.

    Raises ValueError when it is not ``{"request"?: schema, "response"?: schema}``
    (each a JSON Schema: an object or a boolean)."""
    schema = payload.get("schema") if isinstance(payload, dict) else None
    if schema is None:
        return None
    if not isinstance(schema, dict) or not set(schema) <= set(_SIDES):
        raise ValueError('a serve registration\'s "schema" must be an object with "request" and/or "response"')
    for side in _SIDES:
        if not isinstance(schema.get(side, ANY_SCHEMA), dict | bool):
            raise ValueError(f'"schema.{side}" must be a JSON Schema (an object or a boolean)')
    return {side: schema.get(side, ANY_SCHEMA) for side in _SIDES}


def measure(schema: dict[str, Any]) -> tuple[str, int]:
    """(digest, encoded bytes) of declared schemas: one encoding for both."""
    text = schema_text(schema)
    return text_digest(text), len(text)


class Schemas:
    """Declared schemas by app and channel (or pattern), per responder.

    Several responders may serve one channel; the channel publishes the
    schema of the latest registration that declared one. What each
    responder's declarations hold, in encoded bytes, and the server's
    total, are counted for the budgets (docs/security.md §5): a withdrawn
    registration gives its bytes back."""

    __slots__ = ("_declared", "_held", "total_bytes")

    def __init__(self) -> None:
        # (app, channel) -> responder -> (schema, digest, bytes), in registration order
        self._declared: dict[tuple[str, str], dict[Hashable, tuple[dict[str, Any], str, int]]] = {}
        self._held: dict[Hashable, int] = {}  # responder -> bytes of its declared schemas
        self.total_bytes = 0

    def held(self, responder: Hashable) -> int:
        """Bytes of the schemas ``responder`` declared, all channels together."""
        return self._held.get(responder, 0)

    def held_for(self, app_id: str, channel: str, responder: Hashable) -> int:
        """Bytes of the schema ``responder`` declared for ``channel`` (0: none),
        which a new declaration for it would replace."""
        entry = self._declared.get((app_id, channel), {}).get(responder)
        return 0 if entry is None else entry[2]

    def declare(self, app_id: str, channel: str, responder: Hashable, schema: dict[str, Any] | None, measured: tuple[str, int] | None = None) -> bool:
        """Record what ``responder`` declared for ``channel`` (None: nothing),
        ``measured`` its :func:`measure` if known; True when the channel's
        published schema changed."""
        key = (app_id, channel)
        before = self.digest(app_id, channel)
        by_responder = self._declared.get(key)
        if by_responder is not None:
            gone = by_responder.pop(responder, None)
            if gone is not None:
                self._count(responder, -gone[2])
        if schema is not None:
            digest, size = measured if measured is not None else measure(schema)
            if by_responder is None:
                by_responder = self._declared[key] = {}
            by_responder[responder] = (schema, digest, size)
            self._count(responder, size)
        elif by_responder is not None and not by_responder:
            del self._declared[key]
        return self.digest(app_id, channel) != before

    def _count(self, responder: Hashable, size: int) -> None:
        held = self._held.get(responder, 0) + size
        self.total_bytes += size
        if held:
            self._held[responder] = held
        else:
            self._held.pop(responder, None)  # nothing kept for a responder that holds nothing

    def withdraw(self, app_id: str, channel: str, responder: Hashable) -> None:
        """``responder`` no longer serves ``channel``."""
        self.declare(app_id, channel, responder, None)

    def published(self, app_id: str, channel: str) -> tuple[dict[str, Any], str] | None:
        """(schema, digest) the channel publishes, or None."""
        by_responder = self._declared.get((app_id, channel))
        if not by_responder:
            return None
        schema, digest, _ = next(reversed(by_responder.values()))
        return schema, digest

    def digest(self, app_id: str, channel: str) -> str | None:
        """The published schema's digest, for ``$sys.services`` (§7.5); None when none is declared."""
        published = self.published(app_id, channel)
        return None if published is None else published[1]

    def __len__(self) -> int:
        return sum(len(v) for v in self._declared.values())
