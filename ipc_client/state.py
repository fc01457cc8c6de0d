"""The client's connection state machine: states and every allowed
transition in one table, so a forbidden move fails loudly."""

from __future__ import annotations

import asyncio
from enum import Enum

from ipc_protocol import NotConnected, RequestTimeout

__all__ = ["ConnectionState", "TRANSITIONS", "InvalidTransition", "StateMachine"]


class ConnectionState(Enum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    DISCONNECTING = "disconnecting"


S = ConnectionState

TRANSITIONS: dict[ConnectionState, frozenset[ConnectionState]] = {
    S.DISCONNECTED: frozenset({S.CONNECTING}),
    # CONNECTING -> RECONNECTING: a failed first attempt with wait_on_first_connect.
    S.CONNECTING: frozenset({S.CONNECTED, S.RECONNECTING, S.DISCONNECTED, S.DISCONNECTING}),
    S.CONNECTED: frozenset({S.RECONNECTING, S.DISCONNECTING, S.DISCONNECTED}),
    S.RECONNECTING: frozenset({S.CONNECTED, S.DISCONNECTED, S.DISCONNECTING}),
    S.DISCONNECTING: frozenset({S.DISCONNECTED}),
}


class InvalidTransition(RuntimeError):
    """A state change the table does not allow: a bug, never user error."""


class StateMachine:
    """The client's state, moved only along :data:`TRANSITIONS`, and the
    callers waiting for the connection to come back."""

    def __init__(self) -> None:
        self.state = ConnectionState.DISCONNECTED
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def waiting(self) -> bool:
        """Whether the connection is being made or remade."""
        return self.state is S.CONNECTING or self.state is S.RECONNECTING

    def set(self, new: ConnectionState) -> None:
        if new is self.state:
            return
        if new not in TRANSITIONS[self.state]:
            raise InvalidTransition(f"{self.state.value} -> {new.value}")
        self.state = new
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    async def changed(self) -> None:
        """Wait for the next move."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    async def until_connected(self, deadline: float | None) -> None:
        """Wait while (re)connecting; raise if the client will not be connected."""
        loop = asyncio.get_running_loop()
        while self.state is not S.CONNECTED:
            if not self.waiting:
                raise NotConnected(f"not connected ({self.state.value})")
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise RequestTimeout("timed out waiting for the connection to come back")
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout(remaining):
                    await waiter
            except (asyncio.TimeoutError, TimeoutError):
                raise RequestTimeout("timed out waiting for the connection to come back") from None
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
