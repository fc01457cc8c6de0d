"""Every exception the bridge raises, in one place.

Each carries a stable ``code`` from :class:`~ipc_protocol.codes.ErrorCode`;
match on the class or on ``.code``, never on the message text::

    IPCError                      base class, .code
    ├── ProtocolError             bytes or JSON that break the protocol
    │   ├── FrameError            bad_frame: zero length, invalid UTF-8/JSON, not an object
    │   ├── FrameTooLarge         too_large: length prefix over the limit (.size, .limit)
    │   └── MessageError          bad_message: valid JSON, invalid envelope or value
    ├── NotConnected              not_connected: call needs a connection and there is none
    ├── ConnectionLost            connection_lost: the connection dropped mid-call
    ├── RequestTimeout            timeout: no response before the deadline (also TimeoutError)
    ├── CircuitOpen               circuit_open: the breaker fails fast
    ├── QueueFull                 queue_full: the offline queue is at its limit
    ├── QueueFileError            queue_file: the offline queue's file cannot be opened or written (.path)
    ├── AlreadyServing            already_serving: serve() of a channel already served (also ValueError)
    ├── Cancelled                 cancelled: the caller gave up (Node's AbortError; Python raises asyncio.CancelledError)
    └── RemoteError               an ``error`` response from the server or a responder
        ├── NoResponders          no_responders
        ├── ResponderLost         responder_lost
        ├── HandlerError          handler_error (.remote_type, .remote_stack)
        ├── Unauthorized          unauthorized
        ├── Forbidden             forbidden
        ├── SlowConsumer          slow_consumer
        ├── ShuttingDown          shutting_down
        ├── TooManyConnections    too_many_connections
        ├── LimitExceeded         limit_exceeded
        ├── BadRequest            bad_request: a typed handler refused the payload (.errors)
        ├── IdempotencyConflict   idempotency_conflict: the key was used for another request
        └── TooLarge              too_large: over the receiver's declared limit; also a FrameTooLarge

A remote ``timeout`` error (the server gave up on a forwarded request) is raised
as :class:`RequestTimeout` too, so one ``except`` covers both; a remote
``too_large`` (docs/protocol.md §12.3) is a :class:`FrameTooLarge` too, for
the same reason.
"""

from __future__ import annotations

import builtins
from typing import Any

from .codes import ErrorCode

__all__ = [
    "IPCError",
    "ProtocolError",
    "FrameError",
    "FrameTooLarge",
    "MessageError",
    "NotConnected",
    "ConnectionLost",
    "RequestTimeout",
    "CircuitOpen",
    "QueueFull",
    "QueueFileError",
    "AlreadyServing",
    "Cancelled",
    "RemoteError",
    "NoResponders",
    "ResponderLost",
    "HandlerError",
    "Unauthorized",
    "Forbidden",
    "SlowConsumer",
    "ShuttingDown",
    "TooManyConnections",
    "LimitExceeded",
    "BadRequest",
    "IdempotencyConflict",
    "TooLarge",
    "error_from_wire",
]


class IPCError(Exception):
    """Base class of every error raised by the bridge."""

    code: ErrorCode = ErrorCode.BAD_MESSAGE

    def __init__(self, message: str = "", *, code: ErrorCode | str | None = None) -> None:
        super().__init__(message or self.__class__.__doc__ or "")
        if code is not None:
            self.code = ErrorCode(code) if code in ErrorCode._value2member_map_ else code  # type: ignore[assignment]

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ProtocolError(IPCError):
    """The peer sent bytes that break the protocol; the connection cannot continue."""


class FrameError(ProtocolError):
    """A frame is malformed: zero length, invalid UTF-8 or JSON, or not a JSON object."""

    code = ErrorCode.BAD_FRAME


class FrameTooLarge(ProtocolError):
    """A frame's length prefix is over the negotiated limit. ``size`` and
    ``limit`` are None in a :class:`TooLarge` (the server's answer)."""

    code = ErrorCode.TOO_LARGE
    size: int | None
    limit: int | None

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class MessageError(ProtocolError):
    """A frame is valid JSON but not a valid envelope, or a value cannot be sent."""

    code = ErrorCode.BAD_MESSAGE


class NotConnected(IPCError):
    """The call needs a connection and the client has none."""

    code = ErrorCode.NOT_CONNECTED


class ConnectionLost(IPCError, builtins.ConnectionError):
    """The connection dropped before the call completed."""

    code = ErrorCode.CONNECTION_LOST


class RequestTimeout(IPCError, builtins.TimeoutError):
    """No response arrived before the request's deadline."""

    code = ErrorCode.TIMEOUT


class CircuitOpen(IPCError):
    """The circuit breaker is open: the call failed fast without being sent.

    Attributes:
        retry_after: seconds until the breaker lets a trial call through.
    """

    code = ErrorCode.CIRCUIT_OPEN

    def __init__(self, message: str = "", *, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QueueFull(IPCError):
    """The offline queue is full."""

    code = ErrorCode.QUEUE_FULL


class QueueFileError(IPCError):
    """The offline queue's file (``queue_path``) cannot be opened, read or
    written, or is not a queue file. ``path`` names it; ``__cause__`` is the
    OS or SQLite error, so the cause is kept without matching on its text."""

    code = ErrorCode.QUEUE_FILE

    def __init__(self, message: str = "", *, path: str = "") -> None:
        super().__init__(message)
        self.path = path


class AlreadyServing(IPCError, builtins.ValueError):
    """serve() of a channel this client already serves; unserve() it first."""

    code = ErrorCode.ALREADY_SERVING


class Cancelled(IPCError):
    """The caller gave up on the call (docs/protocol.md §15.4). A Python
    caller's own cancellation is ``asyncio.CancelledError``, re-raised as
    asyncio wants; this is the code's exception where a cancellation has
    to be reported as an error (a Node caller's is ``AbortError``)."""

    code = ErrorCode.CANCELLED


class RemoteError(IPCError):
    """The server or a responder answered with an error.

    Attributes:
        code: the wire error code.
        details: optional JSON details sent with the error.
        remote_type: the exception type on the remote side (``ValueError``,
            ``TypeError``...), for ``handler_error``.
        remote_stack: the remote stack trace, when the remote side shares it.
    """

    def __init__(
        self,
        message: str = "",
        *,
        code: ErrorCode | str | None = None,
        details: Any = None,
        remote_type: str | None = None,
        remote_stack: str | None = None,
    ) -> None:
        # Not super(): in TooLarge the next class is FrameTooLarge, which takes sizes.
        IPCError.__init__(self, message, code=code)
        self.details = details
        self.remote_type = remote_type
        self.remote_stack = remote_stack

    def __str__(self) -> str:
        prefix = f"{self.remote_type}: " if self.remote_type else ""
        return f"[{self.code}] {prefix}{self.message}"


class NoResponders(RemoteError):
    """Nobody handles the channel: no in-process handler and no responder."""

    code = ErrorCode.NO_RESPONDERS


class ResponderLost(RemoteError):
    """The responder's connection dropped before it answered."""

    code = ErrorCode.RESPONDER_LOST


class HandlerError(RemoteError):
    """The remote handler raised; ``remote_type`` names the exception type."""

    code = ErrorCode.HANDLER_ERROR


class Unauthorized(RemoteError):
    """The server refused the handshake's credentials."""

    code = ErrorCode.UNAUTHORIZED


def revoked_for_good(exc: object) -> bool:
    """An ``unauthorized`` no reconnection can fix: a refused handshake, or a
    users reload that removed the user or its app. Not a reload cut whose
    ``details.reason`` is ``credential``: the token may only have been hashed
    again, and the next handshake tells (docs/security.md §3.4)."""
    if not isinstance(exc, Unauthorized):
        return False
    details = exc.details
    return not (isinstance(details, dict) and details.get("reason") == "credential")


class Forbidden(RemoteError):
    """The connection may not do this (reserved channel, another app_id)."""

    code = ErrorCode.FORBIDDEN


class SlowConsumer(RemoteError):
    """The connection fell too far behind reading and was closed."""

    code = ErrorCode.SLOW_CONSUMER


class ShuttingDown(RemoteError):
    """The server is shutting down and did not finish the request."""

    code = ErrorCode.SHUTTING_DOWN


class TooManyConnections(RemoteError):
    """The server refused the connection: it holds as many as it may
    (``max_connections``, or sockets still in their handshake)."""

    code = ErrorCode.TOO_MANY_CONNECTIONS


class LimitExceeded(RemoteError):
    """A per-connection or server-wide cap refused this subscription,
    registration or request; the connection stays open."""

    code = ErrorCode.LIMIT_EXCEEDED


class BadRequest(RemoteError):
    """A typed handler refused the request's payload: it does not match the
    handler's contract (docs/typed-contracts.md). ``details`` is
    ``{"errors": [...]}``; :attr:`errors` is that list."""

    code = ErrorCode.BAD_REQUEST

    @property
    def errors(self) -> list[dict[str, Any]]:
        """The field errors, each ``{"loc": [...], "msg": str, "type": str}``."""
        details = self.details
        errors = details.get("errors") if isinstance(details, dict) else None
        return errors if isinstance(errors, list) else []


class IdempotencyConflict(RemoteError):
    """The request's idempotency key was used, within the server's window,
    for another request (another channel or payload): nothing ran
    (docs/protocol.md §6.6). Use a new key for a new request."""

    code = ErrorCode.IDEMPOTENCY_CONFLICT


class TooLarge(RemoteError, FrameTooLarge):
    """The server answered ``too_large``: the request, its answer or a
    stream item is larger than its receiver declared it accepts
    (docs/protocol.md §12.3); the connection stays open. It is a
    :class:`FrameTooLarge` too, as the README pairs the class with the code:
    one ``except`` covers a frame refused here and one refused there."""

    code = ErrorCode.TOO_LARGE
    size = None  # the message gives them, in the server's words
    limit = None


_REMOTE_CLASSES: dict[str, type[RemoteError]] = {
    cls.code: cls
    for cls in (
        NoResponders,
        ResponderLost,
        HandlerError,
        Unauthorized,
        Forbidden,
        SlowConsumer,
        ShuttingDown,
        TooManyConnections,
        LimitExceeded,
        BadRequest,
        IdempotencyConflict,
        TooLarge,
    )
}


def error_from_wire(error: dict[str, Any] | Any) -> IPCError:
    """Turn an envelope's ``error`` object into the matching exception.

    A ``code`` that is not a non-empty string is ``handler_error`` and a
    ``message`` that is not a string is empty, as in Node: a 1.1.x handler's
    ``{"error": {"code": 5}}`` (docs/legacy.md) was ``RemoteError("5")`` here."""
    get = error.get if isinstance(error, dict) else lambda k, d=None: getattr(error, k, d)
    code, message = get("code"), get("message")
    code = str(code) if isinstance(code, str) and code else str(ErrorCode.HANDLER_ERROR)
    message = message if isinstance(message, str) else ""
    if code == ErrorCode.TIMEOUT:
        return RequestTimeout(message or "the request timed out remotely")
    cls = _REMOTE_CLASSES.get(code, RemoteError)
    return cls(
        message,
        code=code,
        details=get("details"),
        remote_type=get("remote_type"),
        remote_stack=get("remote_stack"),
    )
