"""What :meth:`IPCClient.serve` returns: done once the server registered
the responder (or refused it); and the rules of a registration that hold
before and after it: what may be served, what the server withdraws."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ipc_protocol import ErrorCode, Forbidden, is_servable, validate_pattern

__all__ = ["Registration", "check_servable", "withdrawal"]


class Registration:
    """Awaitable result of :meth:`IPCClient.serve`: done once the server
    registered the responder. It can be created before the event loop runs."""

    def __init__(self, channel: str, own_loop: Callable[[], object] | None = None) -> None:
        self.channel = channel
        self._own_loop = own_loop  # the client's loop check: its event is set there
        self._event = asyncio.Event()
        self._error: BaseException | None = None

    def _settle(self, error: BaseException | None) -> None:
        self._error = error
        self._event.set()

    def done(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        if self._own_loop is not None:
            self._own_loop()
        await self._event.wait()
        if self._error is not None:
            raise self._error

    def __await__(self) -> Any:
        return self.wait().__await__()

    def __repr__(self) -> str:
        return f"<Registration {self.channel!r} {'done' if self.done() else 'pending'}>"


def check_servable(channel: str) -> None:
    """A channel or pattern a client may serve, checked before anything is
    sent: ``Forbidden`` for a reserved one (protocol.md §4.4), as the server
    would answer and as publish() and notify() refuse theirs."""
    validate_pattern(channel)
    if not is_servable(channel):
        raise Forbidden(f"channel {channel!r} is reserved for the server")


def withdrawal(error: BaseException) -> tuple[bool, str] | None:
    """(serve, channel) of the registration an error frame withdraws
    (docs/protocol.md §3: ``forbidden`` with ``details.revoked``), else None."""
    details = getattr(error, "details", None)
    if getattr(error, "code", None) != ErrorCode.FORBIDDEN or not isinstance(details, dict) or details.get("revoked") is not True:
        return None
    operation, channel = details.get("operation"), details.get("channel")
    if operation not in ("subscribe", "serve") or not isinstance(channel, str):
        return None
    return operation == "serve", channel
