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
from .messages import error_info_from_exception, error_response, exception_text

__all__ = ["UNSENDABLE_RESULT", "failure_reply", "handler_reply"]

# What an error says when the handler succeeded but its result cannot be
# put on the wire (NaN, an arbitrary object): the caller's mistake is not the
# handler's exception.
UNSENDABLE_RESULT = "the handler's result cannot be sent: "


def failure_reply(request: Message, exc: BaseException, *, include_stack: bool, prefix: str = "") -> Message:
    """The error response answering ``request`` whose handler raised ``exc``;
    ``prefix`` goes before the exception's text. It always encodes: see
    :func:`_failure`."""
    return _failure(request, exc, include_stack, prefix, False)[0]


def _failure(request: Message, exc: BaseException, include_stack: bool, prefix: str, legacy: bool) -> tuple[Message, bytes]:
    """The error response for ``exc``, and its frame body. The one guarded
    path of every handler's failure, server's and clients': the text of
    an exception whose ``__str__`` fails, or that is not valid Unicode, is
    replaced (``messages.exception_text``); ``details`` that cannot be sent
    (NaN, an object) are dropped, and the message says why. The requester
    gets its ``handler_error`` (or the error's code) whatever the exception."""
    info = error_info_from_exception(exc, include_stack=include_stack)
    reply = error_response(
        request, info.code, prefix + info.message, details=info.details, remote_type=info.remote_type, remote_stack=info.remote_stack
    )
    try:
        return reply, encode_message(reply, legacy=legacy)
    except Exception as problem:  # noqa: BLE001 - the details cannot be encoded
        text = f"{prefix}{info.message} (its details were not sent: {exception_text(problem)})"
        reply = error_response(request, info.code, text, remote_type=info.remote_type, remote_stack=info.remote_stack)
        return reply, encode_message(reply, legacy=legacy)


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
    not joined (§16). Never raises: a failure is answered as
    :func:`_failure` says.

    ``failure``: the exception the handler raised, else ``result`` is its
    return value. A result that cannot be encoded is answered as a failure
    whose text starts with ``unsendable_prefix``. ``legacy``: encode for a
    version-1 peer (§10).
    """
    if failure is None:
        try:
            return encode_response_parts(request, result, legacy=legacy), None
        except Exception as exc:  # noqa: BLE001 - the result cannot be encoded (NaN, an object...)
            reply, body = _failure(request, exc, include_stack, unsendable_prefix, legacy)
    else:
        reply, body = _failure(request, failure, include_stack, "", legacy)
    return body, reply.error
