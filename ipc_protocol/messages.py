"""Builders for the protocol's own messages: handshake, heartbeats, errors,
acks (docs/protocol.md, "Handshake", "Heartbeats", "System channel")."""

from __future__ import annotations

import traceback
from typing import Any

from .codes import ErrorCode
from .constants import PROTOCOL_VERSION, SYSTEM_CHANNEL
from .envelope import ErrorInfo, Message, MessageType
from .exceptions import RemoteError

__all__ = [
    "connect_request",
    "ping_request",
    "response_to",
    "error_response",
    "error_info_from_exception",
    "exception_text",
    "sendable_text",
]


def connect_request(
    app_id: str,
    connection_id: str,
    *,
    client: str,
    token: str | None = None,
    protocol: int | None = PROTOCOL_VERSION,
    user: str | None = None,
) -> Message:
    """The first frame a client sends. ``protocol=None`` is a version-1 connect.
    ``user`` and ``token``: the credentials (docs/protocol.md §3)."""
    payload: dict[str, Any] = {"action": "connect", "connection_id": connection_id}
    if protocol is not None:
        payload["protocol"] = protocol
        payload["client"] = client
        if user is not None:
            payload["user"] = user
        if token is not None:
            payload["token"] = token
    return Message.build(MessageType.REQUEST, app_id, SYSTEM_CHANNEL, payload)


def ping_request(app_id: str) -> Message:
    return Message.build(MessageType.REQUEST, app_id, SYSTEM_CHANNEL, {"action": "ping"})


def response_to(request: Message, payload: Any, *, headers: dict[str, str] | None = None) -> Message:
    """A successful response answering ``request``."""
    return Message.build(
        MessageType.RESPONSE,
        request.app_id,
        request.channel_id,
        payload,
        reply_to=request.message_id,
        headers=headers,
    )


def error_response(request: Message, code: ErrorCode | str, message: str, **fields: Any) -> Message:
    """An error response answering ``request`` (payload null, ``error`` set)."""
    info = ErrorInfo.model_construct(
        code=str(code),
        message=message,
        details=fields.get("details"),
        remote_type=fields.get("remote_type"),
        remote_stack=fields.get("remote_stack"),
    )
    return Message.build(
        MessageType.RESPONSE,
        request.app_id,
        request.channel_id,
        None,
        reply_to=request.message_id,
        error=info,
    )


def sendable_text(text: str) -> str:
    """``text`` as the wire can carry it (valid Unicode, _json.py): a lone
    surrogate (``"\\ud800"``, from a bad decode) is escaped as Python writes
    it, ``\\ud800``, rather than failing the frame it goes in."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text


def exception_text(exc: BaseException) -> str:
    """``str(exc)``, never raising and sendable: an exception whose
    ``__str__`` fails is ``<unprintable ValueError object>``, as the
    traceback module once wrote it."""
    try:
        return sendable_text(str(exc))
    except Exception:  # noqa: BLE001 - its own __str__ failed
        return f"<unprintable {_text(type(exc).__name__)} object>"


def _text(value: object) -> str:
    """Any value an exception carries (a code, a type name, a message) as sendable text."""
    try:
        return sendable_text(value if value.__class__ is str else str(value))
    except Exception:  # noqa: BLE001 - its own __str__ failed
        return f"<unprintable {type(value).__name__} object>"


def _stack(exc: BaseException) -> str | None:
    try:
        return sendable_text("".join(traceback.format_exception(exc)))
    except Exception:  # noqa: BLE001 - a stack that cannot be written is not sent
        return None


def error_info_from_exception(exc: BaseException, *, include_stack: bool) -> ErrorInfo:
    """Describe a handler's exception for the wire; never raises.

    A :class:`RemoteError` raised on purpose keeps its code (a handler may
    raise ``Forbidden``); anything else is ``handler_error`` with the type's name.
    Its text is always sendable (:func:`exception_text`); its ``details``
    are as given: ``replies.failure_reply`` drops those that cannot be sent.
    """
    stack = _stack(exc) if include_stack else None
    if isinstance(exc, RemoteError):
        try:
            message = _text(exc.message)
        except Exception:  # noqa: BLE001 - its argument's __str__ failed
            message = f"<unprintable {_text(type(exc).__name__)} object>"
        return ErrorInfo.model_construct(
            code=_text(exc.code),
            message=message,
            details=exc.details,
            remote_type=_text(exc.remote_type or type(exc).__name__),
            remote_stack=stack or (None if exc.remote_stack is None else _text(exc.remote_stack)),
        )
    # Anything else, the bridge's own local errors included (a handler whose
    # downstream call timed out), is the handler's failure, not the caller's.
    return ErrorInfo.model_construct(
        code=str(ErrorCode.HANDLER_ERROR),
        message=exception_text(exc),
        details=None,
        remote_type=_text(type(exc).__name__),
        remote_stack=stack,
    )
