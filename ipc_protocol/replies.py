"""A handler's outcome as the reply that answers its request (docs/protocol.md §6.3).

One pure helper for everyone who runs handlers: the server's in-process
handlers and the clients' responders answer the same way, so a result, a
raised :class:`RemoteError` (its code kept) and any other exception
(``handler_error``) look alike on the wire whoever ran the handler.
"""

from __future__ import annotations

from typing import Any

from .attachments import BinaryFrame
from .envelope import ErrorInfo, Message, encode_message, encode_response_parts
from .messages import error_info_from_exception, error_response

__all__ = ["UNSENDABLE_RESULT", "failure_reply", "handler_reply"]

# What an error says when the handler succeeded but its result cannot be
# put on the wire (NaN, an arbitrary object): the caller's mistake is not the
# handler's exception.
UNSENDABLE_RESULT = "the handler's result cannot be sent: "


def failure_reply(request: Message, exc: BaseException, *, include_stack: bool, prefix: str = "") -> Message:
    """The error response answering ``request`` whose handler raised ``exc``;
    ``prefix`` goes before the exception's text."""
    info = error_info_from_exception(exc, include_stack=include_stack)
    return error_response(
        request,
        info.code,
        prefix + info.message,
        details=info.details,
        remote_type=info.remote_type,
        remote_stack=info.remote_stack,
    )


def handler_reply(
    request: Message,
    result: Any = None,
    failure: BaseException | None = None,
    *,
    legacy: bool,
    include_stack: bool,
    unsendable_prefix: str = UNSENDABLE_RESULT,
) -> tuple[bytes | BinaryFrame, ErrorInfo | None]:
    """The frame body answering ``request``, and the error it carries (None
    for a result); a result holding bytes is a binary body, its buffers
    not joined (§16).

    ``failure``: the exception the handler raised, else ``result`` is its
    return value. A result that cannot be encoded is answered as a failure
    whose text starts with ``unsendable_prefix``. ``legacy``: encode for a
    version-1 peer (§10).
    """
    if failure is None:
        try:
            return encode_response_parts(request, result, legacy=legacy), None
        except Exception as exc:  # noqa: BLE001 - the result cannot be encoded (NaN, an object...)
            reply = failure_reply(request, exc, include_stack=include_stack, prefix=unsendable_prefix)
    else:
        reply = failure_reply(request, failure, include_stack=include_stack)
    return encode_message(reply, legacy=legacy), reply.error
