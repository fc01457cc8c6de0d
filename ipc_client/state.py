"""The client's connection state machine: states and every allowed
transition in one table, so a forbidden move fails loudly."""

from __future__ import annotations

from enum import Enum

__all__ = ["ConnectionState", "TRANSITIONS", "InvalidTransition"]


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
