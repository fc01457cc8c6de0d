"""The ``services`` and ``describe`` actions a page at a time (docs/protocol.md
§8), as ``channels``: one answer never costs the whole of a large table.

Both list the channels an app can request in one order: its responders'
registrations (exact channels, then patterns, each as they were first
registered), then the in-process handlers' channels not among them (this
app's own, then those for every app, each as they were registered). A page
skips to its offset through those tables at C speed and builds only its own
entries; the order holds while the tables do not change.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from itertools import chain, filterfalse, islice
from typing import Any

from ipc_protocol.contracts import ANY_SCHEMA, handler_schema

from .router import Handler, HandlerRegistry, ResponderTable
from .schemas import Schemas

__all__ = ["paged", "services_page", "describe_page"]

_EMPTY: Mapping[str, Any] = {}


def paged(key: str, entries: dict[str, Any], payload: Any, offset: int, limit: int, total: int) -> dict[str, Any]:
    """``{key: entries}`` as it always was for a table that fits a page
    unasked; with ``total``, ``offset`` and ``limit`` when the request names
    a page or the table does not fit in one (the rule of every paged action)."""
    result: dict[str, Any] = {key: entries}
    if "offset" in payload or "limit" in payload or total > limit or offset > 0:
        result.update(total=total, offset=offset, limit=limit)
    return result


class _Served:
    """The channels of one app as ``services`` and ``describe`` list them."""

    __slots__ = ("exact", "patterns", "own", "shared", "handlers", "app_id")

    def __init__(self, responders: ResponderTable[Any] | None, handlers: HandlerRegistry, app_id: str) -> None:
        listed: tuple[Mapping[str, Any], Mapping[str, Any]] = responders.listed() if responders is not None else (_EMPTY, _EMPTY)
        self.exact, self.patterns = listed
        self.own: Mapping[str, Handler] = handlers.of_app(app_id)
        self.shared: Mapping[str, Handler] = handlers.of_app(None)
        self.handlers, self.app_id = handlers, app_id

    def handler(self, channel: str) -> Handler | None:
        """The in-process handler that answers ``channel`` as routing picks it
        (§6.1): before any responder, by its name or by a pattern matching it,
        the earliest registered open to the app."""
        return self.handlers.serving(self.app_id, channel)

    def page(self, offset: int, limit: int) -> list[str]:
        """At most ``limit`` channels from ``offset``: whole tables before the
        offset are stepped over by their length, the rest skipped at C speed."""
        exact, patterns = self.exact, self.patterns
        listed = len(exact) + len(patterns)
        # handlers' channels a responder does not already list (each test a C-level dict lookup)
        own = filterfalse(patterns.__contains__, filterfalse(exact.__contains__, self.own))
        shared = filterfalse(patterns.__contains__, filterfalse(exact.__contains__, filterfalse(self.own.__contains__, self.shared)))
        names: Iterator[str]
        if offset < len(exact):
            names, skip = chain(exact, patterns, own, shared), offset
        elif offset < listed:
            names, skip = chain(patterns, own, shared), offset - len(exact)
        else:
            names, skip = chain(own, shared), offset - listed
        return list(islice(names, skip, skip + limit))

    def total(self) -> int:
        """How many channels the pages hold: set intersections, each walking
        the smaller table, never a walk of a large table for its own sake."""
        exact, patterns, own, shared = self.exact.keys(), self.patterns.keys(), self.own.keys(), self.shared.keys()
        both = own & shared

        def listed(names: Any) -> int:  # of names, those a responder lists already
            return len(names & exact) + len(names & patterns)

        handlers_only = len(own) - listed(own) + len(shared) - len(both) - listed(shared) + listed(both)
        return len(exact) + len(patterns) + handlers_only


def services_page(responders: ResponderTable[Any] | None, handlers: HandlerRegistry, app_id: str, payload: Any, offset: int, limit: int) -> dict[str, Any]:
    """``services``' answer: responders per channel, 0 marking an in-process
    handler (it takes precedence in routing, §6.1, and so wins here too)."""
    served = _Served(responders, handlers, app_id)
    entries = {}
    for channel in served.page(offset, limit):
        members = served.exact.get(channel) or served.patterns.get(channel) or ()
        entries[channel] = 0 if served.handler(channel) is not None else len(members)
    return paged("services", entries, payload, offset, limit, served.total())


def describe_page(
    responders: ResponderTable[Any] | None, handlers: HandlerRegistry, schemas: Schemas, app_id: str, payload: Any, offset: int, limit: int
) -> dict[str, Any]:
    """``describe``'s answer: each channel's JSON Schemas, ``{}`` for a side
    nobody declared; an in-process handler's where it answers the channel."""
    served = _Served(responders, handlers, app_id)
    entries: dict[str, Any] = {}
    for channel in served.page(offset, limit):
        handler = served.handler(channel)
        if handler is not None:
            entries[channel] = handler_schema(handler.fn)
        else:
            published = schemas.published(app_id, channel)
            entries[channel] = published[0] if published else {"request": ANY_SCHEMA, "response": ANY_SCHEMA}
    return paged("channels", entries, payload, offset, limit, served.total())
