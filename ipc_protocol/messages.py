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


def error_info_from_exception(exc: BaseException, *, include_stack: bool) -> ErrorInfo:
    """Describe a handler's exception for the wire.

    A :class:`RemoteError` raised on purpose keeps its code (a handler may
    raise ``Forbidden``); anything else is ``handler_error`` with the type's name.
    """
    stack = "".join(traceback.format_exception(exc)) if include_stack else None
    if isinstance(exc, RemoteError):
        return ErrorInfo.model_construct(
            code=str(exc.code),
            message=exc.message,
            details=exc.details,
            remote_type=exc.remote_type or type(exc).__name__,
            remote_stack=stack or exc.remote_stack,
        )
    # Anything else, the bridge's own local errors included (a handler whose
    # downstream call timed out), is the handler's failure, not the caller's.
    return ErrorInfo.model_construct(
        code=str(ErrorCode.HANDLER_ERROR),
        message=str(exc),
        details=None,
        remote_type=type(exc).__name__,
        remote_stack=stack,
    )
