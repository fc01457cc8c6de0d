"""The message envelope (docs/protocol.md, "Envelope").

One pydantic model describes every frame. Unknown fields are ignored so older
peers accept newer ones; the seven fields of protocol version 1 are always
written, the optional version-2 fields only when set, so a legacy
``ipc-framework`` 1.1.x peer (which rejects unknown fields) can read what it is
sent as long as the optional fields are left out.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Strict, ValidationError

from ._json import loads, parse, plain
from .attachments import BINARY_TYPES, AttachmentError, BinaryFrame, encode_body, joined, place, split
from .deferred_payload import DeferredPayload, settling_hash
from .exceptions import FrameError, MessageError
from .wire_numbers import NonNegative, Positive, Window

__all__ = [
    "MessageType",
    "ErrorInfo",
    "Message",
    "decode_message",
    "decode_relayed",
    "encode_message",
    "encode_request",
    "encode_response",
    "encode_message_parts",
    "encode_request_parts",
    "encode_publish_parts",
    "encode_response_parts",
    "new_message_id",
]

_setattr = object.__setattr__

StrictStr = Annotated[str, Strict()]
StrictBool = Annotated[bool, Strict()]

_ID_PREFIX = os.urandom(6).hex()
_id_counter = itertools.count(1)


def new_message_id() -> str:
    """A process-unique id: a random prefix and a counter, much cheaper than uuid4."""
    return f"{_ID_PREFIX}{next(_id_counter):x}"


class MessageType(StrEnum):
    REQUEST = "request"
    RESPONSE = "response"
    NOTIFICATION = "notification"
    PUBLISH = "publish"
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    # Streams and cancellation, when negotiated (docs/protocol.md §15).
    STREAM_ITEM = "stream_item"
    STREAM_END = "stream_end"
    CREDIT = "credit"
    CANCEL = "cancel"


# The members as plain module globals, for the modules that read them on
# every message: on Python 3.11 ``MessageType.REQUEST`` goes through
# EnumType.__getattr__'s slot, 78 ns a read against 8 (docs/performance.md).
REQUEST, RESPONSE, NOTIFICATION, PUBLISH = MessageType.REQUEST, MessageType.RESPONSE, MessageType.NOTIFICATION, MessageType.PUBLISH
SUBSCRIBE, UNSUBSCRIBE = MessageType.SUBSCRIBE, MessageType.UNSUBSCRIBE
STREAM_ITEM, STREAM_END, CREDIT, CANCEL = MessageType.STREAM_ITEM, MessageType.STREAM_END, MessageType.CREDIT, MessageType.CANCEL


class ErrorInfo(BaseModel):
    """The ``error`` object of an error response."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    code: StrictStr
    message: StrictStr = ""
    details: Any = None
    remote_type: StrictStr | None = None
    remote_stack: StrictStr | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            out["details"] = self.details
        if self.remote_type is not None:
            out["remote_type"] = self.remote_type
        if self.remote_stack is not None:
            out["remote_stack"] = self.remote_stack
        return out


class Message(DeferredPayload, BaseModel):
    """One frame's JSON object (its payload possibly still in its frame:
    ``deferred_payload``)."""

    # cache_strings: keys only, as ``_json.parse`` (one-pass decoding, decode_message).
    model_config = ConfigDict(extra="ignore", frozen=True, cache_strings="keys")

    message_id: StrictStr
    app_id: StrictStr
    channel_id: StrictStr
    message_type: MessageType
    payload: Any = None
    timestamp: NonNegative = 0.0
    reply_to: StrictStr | None = None
    headers: dict[StrictStr, StrictStr] | None = None
    error: ErrorInfo | None = None
    timeout_ms: NonNegative | None = None
    ack: StrictBool | None = None
    window: Window | None = None
    idle_timeout_ms: Positive | None = None
    # A binary frame's paths (§16.2), kept on a message decoded from one; its
    # attachments are then in ``payload``. Encoders find bytes themselves.
    attachments: Any = None

    @classmethod
    def build(
        cls,
        message_type: MessageType,
        app_id: str,
        channel_id: str,
        payload: Any = None,
        *,
        message_id: str | None = None,
        **extra: Any,
    ) -> Message:
        """Build an outgoing message without validation: the fields come from
        the bridge itself, and it runs for every request, response and
        publish (``model_construct`` is several times slower)."""
        fields = {
            "message_id": message_id or new_message_id(),
            "app_id": app_id,
            "channel_id": channel_id,
            "message_type": message_type,
            "payload": payload,
            "timestamp": time.time(),
            "reply_to": extra.pop("reply_to", None),
            "headers": extra.pop("headers", None),
            "error": extra.pop("error", None),
            "timeout_ms": extra.pop("timeout_ms", None),
            "ack": extra.pop("ack", None),
            "window": extra.pop("window", None),
            "idle_timeout_ms": extra.pop("idle_timeout_ms", None),
            "attachments": extra.pop("attachments", None),
        }
        if extra:
            raise TypeError(f"unknown message fields: {', '.join(extra)}")
        msg = cls.__new__(cls)
        _setattr(msg, "__dict__", fields)
        _setattr(msg, "__pydantic_fields_set__", set(fields))
        _setattr(msg, "__pydantic_extra__", None)
        _setattr(msg, "__pydantic_private__", None)
        return msg

    def wire_dict(self, *, legacy: bool = False) -> dict[str, Any]:
        """The JSON object as sent; ``legacy`` keeps only the version-1 fields
        and moves an error into the payload."""
        return _wire(
            self.message_id,
            self.app_id,
            self.channel_id,
            self.message_type.value,
            self.payload,
            self.timestamp,
            self.reply_to,
            self.headers,
            self.error,
            self.timeout_ms,
            self.ack,
            legacy,
            self.window,
            self.idle_timeout_ms,
        )


def _wire(
    message_id: str,
    app_id: str,
    channel_id: str,
    message_type: str,
    payload: Any,
    timestamp: float,
    reply_to: str | None,
    headers: dict[str, str] | None,
    error: ErrorInfo | None,
    timeout_ms: float | None,
    ack: bool | None,
    legacy: bool,
    window: int | None = None,
    idle_timeout_ms: float | None = None,
) -> dict[str, Any]:
    """The one place that decides what a frame's JSON object holds, in which order."""
    if legacy and error is not None:
        # Version 1 has no ``error`` field: the error travels in the payload (§10).
        payload = {"error": error.to_wire()}
    d: dict[str, Any] = {
        "message_id": message_id,
        "app_id": app_id,
        "channel_id": channel_id,
        "message_type": message_type,
        "payload": payload,
        "timestamp": _number(timestamp),
        "reply_to": reply_to,
    }
    if legacy:
        return d
    if headers is not None:
        d["headers"] = headers
    if error is not None:
        d["error"] = error.to_wire()
    if timeout_ms is not None:
        d["timeout_ms"] = _number(timeout_ms)
    if ack is not None:
        d["ack"] = ack
    if window is not None:  # a stream's credit (§15.2)
        d["window"] = window
    if idle_timeout_ms is not None:
        d["idle_timeout_ms"] = _number(idle_timeout_ms)
    return d


Message.__hash__ = settling_hash(Message.__hash__)  # type: ignore[method-assign, assignment]
_validate: Callable[[Any], Message] = Message.__pydantic_validator__.validate_python
_validate_json: Callable[[bytes | bytearray], Message] = Message.__pydantic_validator__.validate_json


def _number(value: float) -> float | int:
    """Integral values are written as integers, as JavaScript writes them, so
    both languages produce the same bytes for the same message (§1.2)."""
    return int(value) if type(value) is float and value.is_integer() else value


def encode_message(message: Message, *, legacy: bool = False) -> bytes:
    """The frame body (JSON bytes) for ``message``; a binary frame's body
    (§16.2) when its payload holds bytes."""
    return joined(encode_body(message.wire_dict(legacy=legacy)))


def encode_message_parts(message: Message, *, legacy: bool = False) -> bytes | BinaryFrame:
    """:func:`encode_message`, a binary body left in its buffers (nothing
    joined): for the senders that write them as they are (§16.4)."""
    return encode_body(message.wire_dict(legacy=legacy))


# The two frames on every round trip's hot path are encoded straight from
# their fields, without building a Message first.


def encode_request(
    app_id: str,
    channel_id: str,
    payload: Any,
    *,
    timeout_ms: float | None = None,
    headers: dict[str, str] | None = None,
    legacy: bool = False,
) -> tuple[str, bytes]:
    """A new request's message_id and frame body: the bytes of
    ``encode_message(Message.build(MessageType.REQUEST, ...))``."""
    message_id = new_message_id()
    wire = _wire(message_id, app_id, channel_id, "request", payload, time.time(), None, headers, None, timeout_ms, None, legacy)
    return message_id, joined(encode_body(wire))


def encode_request_parts(
    app_id: str,
    channel_id: str,
    payload: Any,
    *,
    timeout_ms: float | None = None,
    headers: dict[str, str] | None = None,
    legacy: bool = False,
) -> tuple[str, bytes | BinaryFrame]:
    """:func:`encode_request`, a binary body left in its buffers."""
    message_id = new_message_id()
    wire = _wire(message_id, app_id, channel_id, "request", payload, time.time(), None, headers, None, timeout_ms, None, legacy)
    return message_id, encode_body(wire)


def encode_publish_parts(app_id: str, channel_id: str, payload: Any, *, headers: dict[str, str] | None = None, legacy: bool = False) -> bytes | BinaryFrame:
    """A publish nobody acknowledges, straight from its fields: the body of
    ``encode_message_parts(Message.build(MessageType.PUBLISH, ...))``."""
    wire = _wire(new_message_id(), app_id, channel_id, "publish", payload, time.time(), None, headers, None, None, None, legacy)
    return encode_body(wire)


def encode_response(request: Message, payload: Any, *, legacy: bool = False) -> bytes:
    """The frame body of a successful answer to ``request``: the bytes of
    ``encode_message(response_to(request, payload))``."""
    wire = _wire(
        new_message_id(), request.app_id, request.channel_id, "response", payload, time.time(), request.message_id, None, None, None, None, legacy
    )
    return joined(encode_body(wire))


def encode_response_parts(request: Message, payload: Any, *, legacy: bool = False) -> bytes | BinaryFrame:
    """:func:`encode_response`, a binary body left in its buffers."""
    wire = _wire(
        new_message_id(), request.app_id, request.channel_id, "response", payload, time.time(), request.message_id, None, None, None, None, legacy
    )
    return encode_body(wire)


def decode_message(body: bytes | bytearray, *, views: bool = False) -> Message:
    """Parse and validate one frame body, JSON or binary (§16.2: told by
    its first byte). A binary frame's attachments are ``bytes`` in the
    payload, or with ``views`` views of ``body`` (nothing copied).

    Raises:
        FrameError: the body is not valid UTF-8 JSON holding an object, or
            a binary frame's parts do not add up.
        MessageError: the object is not a valid envelope;
            :class:`~ipc_protocol.attachments.AttachmentError` (one): its
            attachments do not fit it (the message is refused, not the stream).
    """
    if body[:1] == b"\x00":
        return _decode_binary(body, views)
    if plain(body) and (msg := in_one_pass(body)) is not None:
        return msg
    return _validated(loads(body))


def decode_relayed(body: bytes) -> Message:
    """:func:`decode_message` for a body a server already decoded: relayed
    by another node of a cluster (docs/cluster.md §3), or sent to a client
    by a version-2 server. Validated the same, without looking again for
    numbers that overflow a double (the server it entered refused those,
    docs/protocol.md §1.1)."""
    if body[:1] == b"\x00":
        return _decode_binary(body, False)
    if plain(body, screened=True) and (msg := in_one_pass(body)) is not None:
        return msg
    return _validated(parse(body))


def in_one_pass(body: bytes | bytearray, validate: Callable[[bytes | bytearray], Message] = _validate_json) -> Message | None:
    """The message, parsed and validated by pydantic-core in one pass (less
    work than a parse, then a validation: docs/performance.md); None for a
    body it refuses, which the two-step path then refuses in the decoder's
    words. Only for a body ``plain`` passed; ``validate``: another validator
    of the envelope's JSON (``relayed``)."""
    try:
        msg = validate(body)
    except ValidationError:
        return None
    return msg if msg.attachments is None else None


def _validated(obj: Any) -> Message:
    try:
        # Straight to the validator: ``model_validate`` adds a layer per frame.
        msg = _validate(obj)
    except ValidationError as exc:
        raise _invalid(obj, exc) from None
    if msg.attachments is not None:
        raise AttachmentError("invalid envelope: attachments: only a binary frame carries them (§16.2)", msg)
    return msg


def _decode_binary(body: bytes | bytearray, views: bool) -> Message:
    head, attachments = split(body)
    obj = loads(head)
    try:
        msg = _validate(obj)
    except ValidationError as exc:
        raise _invalid(obj, exc) from None
    if msg.message_type.value not in BINARY_TYPES:
        raise AttachmentError(f"a {msg.message_type.value} frame cannot carry attachments (§16.2)", msg)
    if msg.attachments is None:
        raise AttachmentError("invalid envelope: attachments: a binary frame must list its attachments' paths", msg)
    values: list[Any] = attachments if views else [bytes(a) for a in attachments]
    payload = place(msg.payload, msg.attachments, values, msg)
    msg.__dict__["payload"] = payload  # frozen to users; the decoder fills it in
    return msg


def _invalid(obj: Any, exc: ValidationError) -> FrameError | MessageError:
    # A JSON value that is not an object fails validation too; it is the
    # frame that is wrong (§1 item 4), not the envelope (§2).
    if not isinstance(obj, dict):
        return FrameError(f"a frame must hold a JSON object, not {type(obj).__name__}")
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in first["loc"]) or "message"
    return MessageError(f"invalid envelope: {where}: {first['msg']}")
