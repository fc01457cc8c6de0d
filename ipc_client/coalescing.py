"""Shared calls (docs/resilience.md §11): request coalescing and the TTL
response cache, the legacy package's ``deduplicatedRequest`` and
``cachedRequest`` (seed 001, "Performance Optimization") inside the client.

Both are opt-in per call and keyed by :func:`request_key` (channel and
canonical payload). With ``coalesce=True`` identical calls in flight share
one round trip: each caller gets the answer (or the error), under its own
timeout; a caller that times out or is cancelled leaves the shared call
running for the others. With ``cache_ttl`` a successful answer is reused
for that many seconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pydantic_core

from ipc_protocol import Message, MessageError, RequestTimeout
from ipc_protocol.attachments import strip

from .circuit_breaker import Breakers, CircuitState
from .metrics import ClientMetrics
from .response_cache import DEFAULT_CACHE_MAX_ENTRIES, ResponseCache, check_cache_ttl
from .timeouts import seconds_text

__all__ = ["SharedCalls", "request_key", "DEFAULT_CACHE_MAX_ENTRIES"]


def request_key(channel: str, payload: Any) -> str | None:
    """The channel and the payload as canonical JSON (keys sorted, no
    spaces), so equal payloads share a key whatever their key order; None
    for a payload that JSON cannot carry (such a call is sent as is and
    fails there, with its usual error)."""
    try:
        payload, paths, buffers = strip(payload)  # bytes apart (§16): b"ab" and "ab" are not the same request
        text = json.dumps(
            pydantic_core.to_jsonable_python(payload), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError, pydantic_core.PydanticSerializationError, MessageError):
        return None
    if paths:
        text += "\x00" + json.dumps([paths, [hashlib.sha256(b).hexdigest() for b in buffers]])
    return f"{channel}\x00{text}"


class SharedCalls:
    """The calls in flight that others may join, and the response cache."""

    def __init__(
        self, metrics: ClientMetrics, cache_max_entries: int, request_timeout: float, breakers: Callable[[], Breakers | None] = lambda: None
    ) -> None:
        self.cache = ResponseCache(cache_max_entries, metrics)
        self.request_timeout = request_timeout
        self._breakers = breakers
        self._metrics = metrics
        self._inflight: dict[str, asyncio.Future[Message]] = {}

    def __len__(self) -> int:
        return len(self._inflight)

    def carries(self, key: str) -> bool:
        """Whether a coalesced call of ``key`` is in flight (a pool sends an identical one here)."""
        return key in self._inflight

    async def request(
        self, send: Callable[[], Awaitable[Message]], channel: str, payload: Any, *, coalesce: bool, cache_ttl: float | None, timeout: float | None,
        named: float | None = None,
    ) -> Message:
        """``send()`` once for everyone asking the same (``coalesce``), or not at all while a fresh answer is cached;
        ``named``: the timeout a joiner's timeout error names (a pool's call: its own, ``timeout`` being what is left)."""
        ttl = None if cache_ttl is None else check_cache_ttl(cache_ttl)
        key = request_key(channel, payload)
        if key is None:
            return await send()
        if ttl is not None and (hit := self.cache.get(key)) is not None:
            return hit
        reply = await (self._join(key, send, channel, timeout, named) if coalesce else send())
        if ttl is not None and self._storable(channel, reply):
            self.cache.put(key, reply, ttl)  # only answers: an error was raised above
        return reply

    def _storable(self, channel: str, reply: Message) -> bool:
        """Whether an answer is the service's, given while its circuit is
        closed. Never the breaker's fallback: the state now does not tell
        (a fallback still running when a trial call closed the circuit
        answers after), so the breaker says which answers its fallback gave."""
        breakers = self._breakers()
        return breakers is None or (not breakers.from_fallback(reply) and breakers.get(channel).state is CircuitState.CLOSED)

    async def _join(self, key: str, send: Callable[[], Awaitable[Message]], channel: str, timeout: float | None, named: float | None = None) -> Message:
        shared = self._inflight.get(key)
        if shared is None:
            # The first caller's call, with its deadline, in a task of its own:
            # a caller that goes away does not take it from the others.
            shared = self._inflight[key] = asyncio.ensure_future(self._run(key, send))
            shared.add_done_callback(_retrieve)
            return await asyncio.shield(shared)
        self._metrics.requests_coalesced += 1
        wait = self.request_timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(wait):  # not wait_for: on 3.11 it may swallow a cancel that comes with the answer
                return await asyncio.shield(shared)
        except RequestTimeout:
            raise  # the shared call's own deadline
        except (asyncio.TimeoutError, TimeoutError):
            raise RequestTimeout(f"no response on {channel!r} within {seconds_text(wait if named is None else named)} s (a coalesced call)") from None

    async def _run(self, key: str, send: Callable[[], Awaitable[Message]]) -> Message:
        try:
            return await send()
        finally:
            # Leaves the table the moment it settles: a later caller starts a new call.
            if self._inflight.get(key) is asyncio.current_task():
                del self._inflight[key]


def _retrieve(fut: asyncio.Future[Message]) -> None:
    """Mark a shared call's error retrieved: every caller may have gone."""
    if not fut.cancelled():
        fut.exception()
