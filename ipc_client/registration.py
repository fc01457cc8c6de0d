"""What :meth:`IPCClient.serve` returns: done once the server registered
the responder (or refused it)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = ["Registration"]


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
