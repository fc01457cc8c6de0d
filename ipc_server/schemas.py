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

from ipc_protocol.contracts import ANY_SCHEMA, schema_digest

__all__ = ["Schemas", "declared_schema"]

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


class Schemas:
    """Declared schemas by app and channel (or pattern), per responder.

    Several responders may serve one channel; the channel publishes the
    schema of the latest registration that declared one."""

    __slots__ = ("_declared",)

    def __init__(self) -> None:
        # (app, channel) -> responder -> (schema, digest), in registration order
        self._declared: dict[tuple[str, str], dict[Hashable, tuple[dict[str, Any], str]]] = {}

    def declare(self, app_id: str, channel: str, responder: Hashable, schema: dict[str, Any] | None) -> bool:
        """Record what ``responder`` declared for ``channel`` (None: nothing);
        True when the channel's published schema changed."""
        key = (app_id, channel)
        before = self.digest(app_id, channel)
        by_responder = self._declared.get(key)
        if by_responder is not None:
            by_responder.pop(responder, None)
        if schema is not None:
            if by_responder is None:
                by_responder = self._declared[key] = {}
            by_responder[responder] = (schema, schema_digest(schema))  # type: ignore[assignment]
        elif by_responder is not None and not by_responder:
            del self._declared[key]
        return self.digest(app_id, channel) != before

    def withdraw(self, app_id: str, channel: str, responder: Hashable) -> None:
        """``responder`` no longer serves ``channel``."""
        self.declare(app_id, channel, responder, None)

    def published(self, app_id: str, channel: str) -> tuple[dict[str, Any], str] | None:
        by_responder = self._declared.get((app_id, channel))
        if not by_responder:
            return None
        return next(reversed(by_responder.values()))

    def digest(self, app_id: str, channel: str) -> str | None:
        """The published schema's digest, for ``$sys.services`` (§7.5); None when none is declared."""
        published = self.published(app_id, channel)
        return None if published is None else published[1]

    def __len__(self) -> int:
        return sum(len(v) for v in self._declared.values())
