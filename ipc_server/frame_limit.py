"""The frame limit of what a connection is sent (docs/protocol.md §1.1, §3, §12).

A client reads frames up to the smaller of its own limit and the server's
advertised one; a larger frame fails its whole connection (``too_large``).
A version-2 client may declare its own in the connect (``max_frame_size``),
so the server holds every frame it sends that connection to the smaller of
the two, checked on the frame's length before it is queued (one comparison
per frame). What does not fit is never sent:

- a publication is skipped for that subscriber, and counted
  (``frames_skipped``, total and per connection, in the stats);
- a response becomes a ``too_large`` error answering the same request, so
  the requester's call ends with a typed error instead of a broken
  connection (counted the same way);
- a request or notification for a responder is refused before it is
  forwarded (``forwarding``): the requester gets ``too_large``.
"""

from __future__ import annotations

from typing import Any

from ipc_protocol import ErrorCode, Message, MessageType, ProtocolError, decode_message
from ipc_protocol.attachments import AttachmentError, Frame, as_binary
from ipc_protocol.envelope import ErrorInfo
from ipc_protocol.wire_numbers import whole_number

__all__ = ["send_limit", "PREFIX_BYTES", "replacement"]

PREFIX_BYTES = 4  # the length prefix: limits count frame bodies, checks see whole frames


def send_limit(connect_payload: Any, server_limit: int) -> int:
    """The largest frame body to send a connection: the ``max_frame_size``
    its connect declared (the protocol core checked it is a positive
    integer), if smaller than the server's own limit."""
    declared = whole_number(connect_payload.get("max_frame_size")) if isinstance(connect_payload, dict) else None
    if declared is not None and 0 < declared < server_limit:  # 4096.0 is 4096, as the core took it
        return declared
    return server_limit


def too_large_text(size: int, limit: int) -> str:
    return f"the answer ({size} bytes) is larger than the requester accepts ({limit} bytes)"


def replacement(frame: Frame, app_id: str, limit: int) -> Message | None:
    """What to send instead of ``frame``, over the connection's limit: for a
    response, a ``too_large`` error answering the same request; for
    anything else nothing (None: the frame is skipped)."""
    body = frame[PREFIX_BYTES:] if frame.__class__ is bytes else as_binary(frame).head_json()
    try:
        msg = decode_message(body)
    except AttachmentError as exc:  # a binary frame's envelope (§16), its attachments left out
        msg = exc.envelope
    except ProtocolError:
        return None
    if msg.message_type is not MessageType.RESPONSE or msg.reply_to is None:
        return None
    info = ErrorInfo.model_construct(
        code=str(ErrorCode.TOO_LARGE), message=too_large_text(len(frame) - PREFIX_BYTES, limit), details=None, remote_type=None, remote_stack=None
    )
    return Message.build(MessageType.RESPONSE, app_id, msg.channel_id, None, reply_to=msg.reply_to, error=info)
