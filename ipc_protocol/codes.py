"""The error codes shared by every language.

The list is mirrored in ``interop-tests/spec/error_codes.json``; the Python and
Node test suites both assert that their enum equals that file, so a code can
never exist on one side only (docs/protocol.md, "Error codes").
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ErrorCode", "WIRE_CODES", "CLIENT_CODES"]


class ErrorCode(StrEnum):
    """Stable string codes carried in ``error.code`` and on exceptions."""

    # Sent on the wire by the server (or by a responder).
    BAD_FRAME = "bad_frame"
    TOO_LARGE = "too_large"
    BAD_MESSAGE = "bad_message"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NO_RESPONDERS = "no_responders"
    TIMEOUT = "timeout"
    RESPONDER_LOST = "responder_lost"
    HANDLER_ERROR = "handler_error"
    SLOW_CONSUMER = "slow_consumer"
    SHUTTING_DOWN = "shutting_down"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    LIMIT_EXCEEDED = "limit_exceeded"
    BAD_REQUEST = "bad_request"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    # Raised by clients only; never sent by the server.
    NOT_CONNECTED = "not_connected"
    CONNECTION_LOST = "connection_lost"
    CIRCUIT_OPEN = "circuit_open"
    QUEUE_FULL = "queue_full"
    QUEUE_FILE = "queue_file"
    ALREADY_SERVING = "already_serving"
    CANCELLED = "cancelled"


CLIENT_CODES = frozenset(
    {
        ErrorCode.NOT_CONNECTED,
        ErrorCode.CONNECTION_LOST,
        ErrorCode.CIRCUIT_OPEN,
        ErrorCode.QUEUE_FULL,
        ErrorCode.QUEUE_FILE,
        ErrorCode.ALREADY_SERVING,
        ErrorCode.CANCELLED,
    }
)
WIRE_CODES = frozenset(ErrorCode) - CLIENT_CODES
