"""Where attachments sit in a payload (docs/protocol.md §16.2 item 3,
§16.3), sans-I/O: finding binary values in a payload, taking them out (a
null left at each place, its path noted), putting them back at their
paths after checking every path, and the tagged base64 of §16.5. The
binary frame itself is ``attachments``; the Node mirror of both is
``js-client/lib/protocol/attachments.js``.
"""

from __future__ import annotations

import binascii
from collections import deque
from collections.abc import Iterator
from dataclasses import fields, is_dataclass
from typing import Any, Union

from ._json import MAX_DEPTH, dumps, parse
from .exceptions import MessageError

__all__ = [
    "AttachmentError",
    "BASE64_TAG",
    "Buffer",
    "Path",
    "LEAVES",
    "holds_binary",
    "read_once",
    "snapshot",
    "strip",
    "place",
    "steps_of",
    "put",
    "tagged_payload",
    "with_bytes",
    "base64_text",
]

BASE64_TAG = "$base64"  # §16.5: {"$base64": "..."} stands for an attachment
_BUFFERS = (bytes, bytearray, memoryview)
LEAVES = frozenset({str, int, float, bool, type(None)})  # JSON's scalars: no bytes below them
_BUFFER_CLASSES = frozenset(_BUFFERS)

Buffer = Union[bytes, bytearray, memoryview]
Path = list[Union[str, int]]


class AttachmentError(MessageError):
    """A binary frame whose envelope is valid but whose attachments do not
    fit it (§16.2 items 4-5): ``bad_message``, the message is refused and
    the connection stays open. ``envelope``: the decoded message."""

    def __init__(self, text: str, envelope: Any) -> None:
        super().__init__(text)
        self.envelope = envelope


# -- sending ---------------------------------------------------------------------


def holds_binary(value: Any, depth: int = 1) -> bool:
    """Whether ``value`` holds a binary value anywhere (§16.3), or may: then
    :func:`strip` walks it. Every payload sent passes here; a plain loop over
    each container's items, scalars skipped on their class, was the
    cheapest of the ways tried (docs/performance.md, "Binary payloads");
    ``type()`` is read faster than ``__class__`` on 3.11 (a proxy still
    passes the isinstance checks). A binary dict key answers True too, for
    :func:`strip` to refuse it where it is: JSON's keys are strings, and
    the encoder would write its bytes as one."""
    cls = type(value)
    if cls is dict:
        if depth > MAX_DEPTH:  # too deep for any peer: the JSON encoder refuses it
            return False
        for key, item in value.items():
            if key.__class__ is not str and isinstance(key, _BUFFERS):  # (``type()`` is dearer here)
                return True
            cls = type(item)
            if cls in LEAVES:
                continue
            if cls in _BUFFER_CLASSES or holds_binary(item, depth + 1):
                return True
        return False
    if cls is list or cls is tuple:
        values: Any = value
    elif cls in LEAVES:
        return False
    elif cls in _BUFFER_CLASSES or isinstance(value, _BUFFERS):
        return True
    elif isinstance(value, dict):
        return holds_binary(dict(value), depth)
    elif isinstance(value, (list, tuple)):
        values = value
    elif _KINDS.get(cls) == _OPAQUE:  # a datetime, a UUID, an Enum...: a dict lookup
        return False
    else:
        return _other_holds_binary(value, depth)
    if depth > MAX_DEPTH:  # too deep for any peer: the JSON encoder refuses it
        return False
    for item in values:
        cls = type(item)
        if cls in LEAVES:
            continue
        if cls in _BUFFER_CLASSES or holds_binary(item, depth + 1):
            return True
    return False


def _other_holds_binary(value: Any, depth: int) -> bool:
    """:func:`holds_binary` for a value of any other class: one the JSON
    encoder writes as a list or an object of its own accord (a set, a
    deque, a dataclass, an iterator), whose bytes it would write as a
    string, is looked into; an iterator may hold some (it cannot be looked
    into without being used up: :func:`strip` makes it a list)."""
    kind = _kind(type(value))
    if kind == _ITERATOR:
        return True
    return kind != _OPAQUE and holds_binary(_expanded(value, kind), depth)


_OPAQUE, _ITEMS, _ITERATOR, _FIELDS = 0, 1, 2, 3  # how the encoder writes a class's instances
_KINDS: dict[type, int] = {}  # per class: a datetime or an Enum costs a dict lookup, not ABC checks (µs)
_MAX_KINDS = 4096  # classes made on the fly must not grow it without bound


def _kind(cls: type) -> int:
    kind = _KINDS.get(cls)
    if kind is None:
        if issubclass(cls, (set, frozenset, deque)):
            kind = _ITEMS
        elif issubclass(cls, Iterator):
            kind = _ITERATOR
        elif is_dataclass(cls):
            kind = _FIELDS
        else:
            kind = _OPAQUE
        if len(_KINDS) >= _MAX_KINDS:
            _KINDS.clear()
        _KINDS[cls] = kind
    return kind


def read_once(payload: Any) -> Any:
    """An iterator payload (a generator) as the list of its items, anything
    else as it is: called once where a send API takes a payload, before any
    key, size, encoding or retry reads it, since each of those would use up
    an iterator and send what is left ([]) (docs/protocol.md §16.3). Only
    the payload itself: one nested in a container is read by the encoder.
    A JSON scalar, a dict or a list costs one set lookup."""
    cls = type(payload)
    if cls is dict or cls in _NOT_ITERATORS:
        return payload
    return list(payload) if _kind(cls) == _ITERATOR else payload


_NOT_ITERATORS = LEAVES | {list, tuple} | _BUFFER_CLASSES


def snapshot(payload: Any) -> Any:
    """``payload`` as the encoder writes it now, for a call sent later than
    it is made (the offline queue's replay, a keyed request's resend, a
    turn in a full send buffer's line): its JSON values parsed back from
    the encoder's own text, so a dict or list the caller changes afterwards
    is not what is sent (docs/protocol.md §16.3), and each binary value as
    the encoder takes it (a ``bytearray`` or writable ``memoryview`` as its
    ``bytes``). The caller's payload is untouched; a JSON scalar comes back
    as it is. Never on the hot path of a call written at once: it costs an
    encoding and a parse (docs/performance.md).

    Raises:
        MessageError: what the encoder would refuse (at the call, then).
    """
    if payload.__class__ in LEAVES:
        return payload
    if not holds_binary(payload):  # the common case: one walk, cheaper than strip()'s
        return parse(dumps(payload))  # dumps refuses what loads would
    stripped, paths, buffers = strip(payload)
    value = parse(dumps(stripped))
    for path, buf in zip(paths, buffers):
        if not path:
            return buf
        node = value
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = buf
    return value


def _expanded(value: Any, kind: int) -> list[Any] | dict[str, Any]:
    """``value`` as the list or dict the JSON encoder (pydantic-core) writes it as."""
    if kind == _FIELDS:
        return {f.name: getattr(value, f.name) for f in fields(value)}
    return list(value)


def strip(payload: Any) -> tuple[Any, list[Path], list[Buffer]]:
    """Take the binary values out of ``payload`` (§16.3), in JSON's order:
    the payload with a null where each was (the containers on the way
    copied, the caller's untouched; tuples become lists), their paths, and
    their bytes. Without any, the payload itself comes back (nothing copied).
    A set, a frozenset, a deque, an iterator or a dataclass instance that
    holds one becomes the list or dict the JSON encoder would have written
    (an iterator always does: it is used up), so its bytes go as
    attachments too rather than as the encoder's UTF-8 string.

    Raises:
        MessageError: a binary value under a dict key that is not a string,
            or a binary dict key.
    """
    cls = payload.__class__
    if cls in LEAVES:
        return payload, [], []
    paths: list[Path] = []
    buffers: list[Buffer] = []
    return _strip(payload, [], paths, buffers, 1), paths, buffers


def _strip(value: Any, path: list[Any], paths: list[Path], buffers: list[Buffer], depth: int) -> Any:
    cls = value.__class__
    if cls in _BUFFER_CLASSES or (cls not in LEAVES and cls is not dict and cls is not list and isinstance(value, _BUFFERS)):
        paths.append(path.copy())
        buffers.append(_frozen(value))
        return None
    if depth > MAX_DEPTH:  # too deep for any peer: the JSON encoder refuses it
        return value
    if cls is dict or (cls is not list and isinstance(value, dict)):
        out: Any = None
        for key, item in value.items():
            if key.__class__ is not str and isinstance(key, _BUFFERS):
                raise MessageError(f"binary data cannot be a dict key ({key!r} at {path!r}): JSON's keys are strings (§16.3)")
            if item.__class__ in LEAVES:
                continue
            path.append(key)
            new = _strip(item, path, paths, buffers, depth + 1)
            path.pop()
            if new is not item:
                if key.__class__ is not str:
                    raise MessageError(f"binary data must sit under string keys, not {key!r} (§16.2)")
                if out is None:
                    out = dict(value)
                out[key] = new
        return value if out is None else out
    if cls is list or cls is tuple or isinstance(value, (list, tuple)):
        copy: list[Any] | None = None
        for i, item in enumerate(value):
            if item.__class__ in LEAVES:
                continue
            path.append(i)
            new = _strip(item, path, paths, buffers, depth + 1)
            path.pop()
            if new is not item:
                if copy is None:
                    copy = list(value)
                copy[i] = new
        return value if copy is None else copy
    kind = _kind(cls)
    if kind == _OPAQUE:
        return value
    expanded = _expanded(value, kind)
    new = _strip(expanded, path, paths, buffers, depth)
    # An iterator is used up: its list goes on. Anything else holding no
    # binary value is left for the encoder, which writes it as it did.
    return new if new is not expanded or kind == _ITERATOR else value


def _frozen(value: Buffer) -> Buffer:
    """The bytes to send: as they are when nobody can change them, else a copy."""
    if value.__class__ is bytes:
        return value
    if isinstance(value, memoryview) and value.readonly and value.c_contiguous:
        return value if value.format == "B" and value.ndim == 1 else value.cast("B")
    return bytes(value)


def base64_text(data: Buffer) -> str:
    """``data`` in standard base64 with padding (RFC 4648 §4), as §16.5 writes it."""
    return binascii.b2a_base64(data, newline=False).decode("ascii")


# -- receiving -------------------------------------------------------------------


def place(payload: Any, paths: Any, attachments: list[Any], envelope: Any = None) -> Any:
    """Put attachment *i* at path *i* of a decoded ``payload`` (changed in
    place, ``paths`` too: an integral float becomes an int) and return it.
    Every path is checked first: a list of keys and indexes that leads to
    a null, no path twice, as many paths as attachments (§16.2 item 4).

    Raises:
        AttachmentError: carrying ``envelope``, the decoded message.
    """
    if not isinstance(paths, list) or len(paths) != len(attachments):
        raise AttachmentError(f"invalid envelope: attachments: must be a list of {len(attachments)} paths", envelope)
    seen: set[tuple[Any, ...]] = set()
    places: list[tuple[Any, Any] | None] = []
    for i, path in enumerate(paths):
        steps = steps_of(path)
        if steps is None:
            raise AttachmentError(f"invalid envelope: attachments[{i}]: a path is a list of keys and indexes", envelope)
        key = tuple(steps)
        if key in seen:
            raise AttachmentError(f"invalid envelope: attachments[{i}]: the path {path!r} comes twice", envelope)
        seen.add(key)
        spot = _resolve(payload, steps)
        if spot is False:
            raise AttachmentError(f"invalid envelope: attachments[{i}]: the path {path!r} does not lead to a null in payload", envelope)
        places.append(spot)  # type: ignore[arg-type]
        paths[i] = steps  # 2.0 read as 2, for whoever walks the paths later
    for spot, attachment in zip(places, attachments):
        if spot is None:
            payload = attachment
        else:
            spot[0][spot[1]] = attachment
    return payload


def steps_of(path: Any) -> list[str | int] | None:
    """A path's steps; an integral float is an index, as JavaScript reads it."""
    if not isinstance(path, list):
        return None
    steps: list[str | int] = []
    for step in path:
        cls = step.__class__
        if cls is str or (cls is int and step >= 0):
            steps.append(step)
        elif cls is float and step.is_integer() and step >= 0:
            steps.append(int(step))
        else:
            return None
    return steps


def _resolve(root: Any, steps: list[str | int]) -> tuple[Any, Any] | None | bool:
    """Where a path ends (container, key), None for the payload itself,
    False when it does not lead to a null."""
    if not steps:
        return None if root is None else False
    node = root
    last = len(steps) - 1
    for i, step in enumerate(steps):
        if step.__class__ is str:
            if node.__class__ is not dict or step not in node:
                return False
        elif node.__class__ is not list or step >= len(node):  # type: ignore[operator]
            return False
        if i == last:
            return (node, step) if node[step] is None else False
        node = node[step]
    return False  # pragma: no cover - the loop returns


def put(payload: Any, paths: list[Path], values: list[Any]) -> Any:
    """``payload`` with value *i* at path *i*, the containers on the way
    copied (``payload`` itself is not changed); the paths are known good."""
    for path, value in zip(paths, values):
        payload = _put(payload, path, 0, value)
    return payload


def _put(node: Any, path: Path, i: int, value: Any) -> Any:
    if i == len(path):
        return value
    step = path[i]
    copy = dict(node) if isinstance(node, dict) else list(node)
    copy[step] = _put(node[step], path, i + 1, value)  # type: ignore[index]
    return copy


def tagged_payload(payload: Any) -> Any:
    """``payload`` with each binary value as ``{"$base64": "..."}`` (§16.5)."""
    stripped, paths, buffers = strip(payload)
    return put(stripped, paths, [{BASE64_TAG: base64_text(b)} for b in buffers]) if paths else stripped


def with_bytes(payload: Any, paths: list[Path]) -> Any:
    """A received payload whose attachments are views of their frame, with
    ``bytes`` at each path instead (for code that is handed the payload)."""
    values = []
    for path in paths:
        node = payload
        for step in path:
            node = node[step]
        values.append(bytes(node))
    return put(payload, paths, values)
