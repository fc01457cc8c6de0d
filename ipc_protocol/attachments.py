"""Binary attachments (docs/protocol.md §16), sans-I/O: the binary frame's
codec, and the tagged base64 a peer without ``binary`` gets instead. The
walk that takes bytes out of a payload and puts them back is
``payload_paths`` (re-exported here).

    body:  0x00 | J u32 | N u32 | N x u32 lengths | J bytes of JSON | attachments

The envelope's ``attachments`` field lists, in order, the path of each
attachment in ``payload`` (object keys and list indexes; ``[]`` is the
payload itself), where the JSON holds a null: paths are out of band, so no
user data can pass for a placeholder (§16.2 item 3).

Sending (:func:`encode_body`): ``bytes``, ``bytearray`` and ``memoryview``
found anywhere in a payload leave as attachments of a :class:`BinaryFrame`,
the list of buffers the frame is written from, so megabytes are never
joined into one buffer. ``bytes`` and read-only views go as they are; a
``bytearray`` or writable view is copied once, when the message is encoded,
so the caller may reuse it at once (JSON values are taken then too).
Receiving (:func:`split`, :func:`place`): the layout is checked against the
frame's length before anything is sliced, each attachment is a view of the
frame, and every path must lead to a null. The Node mirror is
``js-client/lib/protocol/attachments.js``.
"""

from __future__ import annotations

import struct
from typing import Any, Union

from ._json import dumps, loads
from .exceptions import FrameError, MessageError
from .payload_paths import (
    BASE64_TAG,
    LEAVES,
    AttachmentError,
    Buffer,
    Path,
    base64_text,
    holds_binary,
    place,
    put,
    steps_of,
    strip,
    tagged_payload,
    with_bytes,
)

__all__ = [
    "BINARY",
    "BINARY_MARKER",
    "BINARY_TYPES",
    "BASE64_TAG",
    "MAX_ATTACHMENTS",
    "AttachmentError",
    "BinaryFrame",
    "BinaryBytes",
    "Frame",
    "joined",
    "as_binary",
    "holds_binary",
    "strip",
    "encode_body",
    "split",
    "place",
    "put",
    "tagged_payload",
    "with_bytes",
]

BINARY = "binary"  # the feature's name in the handshake (§16.1)
BINARY_MARKER = 0x00  # a binary body's first byte; a JSON body never starts with it
MAX_ATTACHMENTS = 65_535
# The message types whose payload may hold attachments (§16.2 item 5).
BINARY_TYPES = frozenset({"request", "response", "notification", "publish", "stream_item"})
_FIXED = 9  # the marker, J and N
_PREFIX = 4  # a frame's length prefix (§1)
_V1_FIELDS = ("message_id", "app_id", "channel_id", "message_type", "payload", "timestamp", "reply_to")
_V1_DEFAULTS: dict[str, Any] = {"payload": None, "timestamp": 0, "reply_to": None}


# -- sending ---------------------------------------------------------------------


def encode_body(wire: dict[str, Any]) -> bytes | BinaryFrame:
    """The frame body of the envelope ``wire`` (its fields in canonical
    order): JSON when its payload holds no binary value, byte for byte what
    it was before §16; else a :class:`BinaryFrame` (``wire`` is changed:
    the placeholders, and ``attachments`` last).

    Raises:
        MessageError: a value JSON cannot carry, binary data in a frame of
            another type (§16.2 item 5), or more than 65,535 attachments.
    """
    payload = wire["payload"]
    if payload.__class__ in LEAVES or not holds_binary(payload):
        return dumps(wire)
    stripped, paths, buffers = strip(payload)
    if not paths:  # an iterator holding none: its items, now a list (it is used up)
        wire["payload"] = stripped
        return dumps(wire)
    if wire["message_type"] not in BINARY_TYPES:
        raise MessageError(f"a {wire['message_type']} cannot carry binary data (§16.2)")
    n = len(paths)
    if n > MAX_ATTACHMENTS:
        raise MessageError(f"a message carries at most {MAX_ATTACHMENTS} binary values, not {n}")
    wire["payload"] = stripped
    wire["attachments"] = paths
    json = dumps(wire)
    lengths = [b.nbytes if isinstance(b, memoryview) else len(b) for b in buffers]
    head = struct.pack(f">BII{n}I", BINARY_MARKER, len(json), n, *lengths) + json
    return BinaryFrame((head, *buffers), n, False, wire)


class BinaryFrame:
    """A binary frame (§16.2), or its body, as the buffers it is written
    from: the head (with the length prefix once framed), then each
    attachment, never joined into one buffer. ``len()`` is its size in
    bytes, as for a frame held in ``bytes``; ``bytes()`` joins it (a copy).

    :meth:`tagged` is the same message as a JSON frame for a peer without
    ``binary`` (§16.5), made once per frame and form, so a publish fanned
    out to many such peers is encoded once for all of them.
    """

    __slots__ = ("parts", "nbytes", "count", "framed", "_source", "_tagged")

    def __init__(self, parts: tuple[Buffer, ...], count: int, framed: bool, source: dict[str, Any] | Buffer) -> None:
        self.parts = parts
        self.nbytes = sum(p.nbytes if isinstance(p, memoryview) else len(p) for p in parts)
        self.count = count  # attachments
        self.framed = framed  # the length prefix is in parts[0]
        self._source = source  # the envelope (payload stripped), or a received body
        self._tagged: dict[bool, bytes] = {}

    @classmethod
    def received(cls, body: bytes | bytearray | memoryview) -> BinaryFrame:
        """The frame of a binary body read from a peer (the decoder checked
        it), to send on as it is: its prefix, then the body itself, uncopied (§16.4)."""
        n = len(body)
        return cls((n.to_bytes(_PREFIX, "big"), body), int.from_bytes(body[5:9], "big"), True, body)

    def with_prefix(self) -> BinaryFrame:
        """This body as a frame (§1: the prefix counts the whole body)."""
        if self.framed:
            return self
        head = self.nbytes.to_bytes(_PREFIX, "big") + self.parts[0]
        return BinaryFrame((head, *self.parts[1:]), self.count, True, self._source)

    def __len__(self) -> int:
        return self.nbytes

    def __bytes__(self) -> bytes:
        return b"".join(self.parts)

    def body(self) -> bytes:
        """The body, joined (a copy), without the length prefix."""
        data = bytes(self)
        return data[_PREFIX:] if self.framed else data

    def head_json(self) -> bytes:
        """The JSON envelope alone (placeholders and ``attachments`` in it)."""
        envelope, _, _ = self._parts()
        return envelope if isinstance(envelope, bytes) else dumps(envelope)

    def tagged(self, legacy: bool = False) -> bytes:
        """The message as a JSON frame (or body, as this is) with each
        attachment as ``{"$base64": "..."}`` (§16.5); ``legacy``: the
        version-1 fields only (§10). Made once per form."""
        out = self._tagged.get(legacy)
        if out is None:
            envelope, paths, buffers = self._parts()
            wire = loads(envelope) if isinstance(envelope, bytes) else dict(envelope)
            wire.pop("attachments", None)
            wire["payload"] = put(wire.get("payload"), paths, [{BASE64_TAG: base64_text(b)} for b in buffers])
            if legacy:
                wire = {name: wire.get(name, _V1_DEFAULTS.get(name)) for name in _V1_FIELDS}
            out = dumps(wire)
            if self.framed:
                out = len(out).to_bytes(_PREFIX, "big") + out
            self._tagged[legacy] = out
        return out

    def _parts(self) -> tuple[dict[str, Any] | bytes, list[Path], list[Buffer]]:
        """The envelope (a dict, or the received JSON), the paths, the attachments."""
        source = self._source
        if isinstance(source, dict):
            return source, source["attachments"], list(self.parts[1:])
        head, attachments = split(source)
        paths = [steps_of(path) or [] for path in loads(head).get("attachments") or []]  # checked when it was received
        return head, paths, list(attachments)

    def __repr__(self) -> str:
        return f"<BinaryFrame {self.nbytes} bytes, {self.count} attachments{' framed' if self.framed else ''}>"


class BinaryBytes(bytes):
    """A whole frame in one buffer (prefix included) whose body is binary,
    as :func:`~ipc_protocol.framing.encode_frame` makes it from a binary
    body: ``bytes`` to every caller, told apart by its class where frames
    are sent, so a peer without ``binary`` still gets the tagged form."""

    def binary(self) -> BinaryFrame:
        """As a :class:`BinaryFrame` (its body a view of this one), made once."""
        frame: BinaryFrame | None = self.__dict__.get("frame")
        if frame is None:
            frame = self.__dict__["frame"] = BinaryFrame.received(memoryview(self)[_PREFIX:])
        return frame


Frame = Union[bytes, BinaryFrame]


def joined(body: bytes | BinaryFrame) -> bytes:
    """``body`` in one buffer (a binary body's buffers joined: a copy)."""
    return body if body.__class__ is bytes else bytes(body)


def as_binary(frame: bytes | BinaryFrame) -> BinaryFrame:
    """A frame of a binary body (a :class:`BinaryFrame` or :class:`BinaryBytes`) as buffers."""
    return frame if isinstance(frame, BinaryFrame) else BinaryBytes.binary(frame)  # type: ignore[arg-type]


# -- receiving -------------------------------------------------------------------


def split(body: bytes | bytearray | memoryview) -> tuple[bytes, list[memoryview]]:
    """The JSON envelope and the attachments (views of ``body``) of a binary
    body, its layout checked against its length before anything is sliced
    (§16.2 items 1-2).

    Raises:
        FrameError: ``bad_frame``: the parts do not add up to the body.
    """
    size = len(body)
    if size < _FIXED:
        raise FrameError(f"a binary frame of {size} bytes is shorter than its header")
    j, n = struct.unpack_from(">II", body, 1)
    if n == 0 or n > MAX_ATTACHMENTS:
        raise FrameError(f"a binary frame carries 1 to {MAX_ATTACHMENTS} attachments, not {n}")
    start = _FIXED + 4 * n
    if start > size:
        raise FrameError(f"a binary frame of {size} bytes cannot hold {n} attachment lengths")
    lengths = struct.unpack_from(f">{n}I", body, _FIXED)
    end = start + j
    if end + sum(lengths) != size:
        raise FrameError(f"a binary frame's parts add up to {end + sum(lengths)} bytes, not its length {size}")
    view = memoryview(body)
    attachments = []
    at = end
    for length in lengths:
        attachments.append(view[at : at + length])
        at += length
    return bytes(view[start:end]), attachments


