"""A typed result that may hold bytes, serialised as JSON values with its
bytes kept (docs/typed-contracts.md §1; ipc_protocol/contracts.py).

pydantic's JSON mode is what the published schema describes: a model's
``ser_json_*`` settings and its ``when_used="json"`` serializers apply. But
it writes bytes as text, and fails on bytes that are not UTF-8, while
bytes must stay bytes for the binary frame (docs/protocol.md §16). So a
result whose Python-mode dump holds bytes is dumped in JSON mode too (if
that fails on bytes that are not UTF-8, again with those left out by
``exclude``), and the bytes of the Python dump are put back where the JSON
dump wrote them as text (in the ``ser_json_bytes`` of the type's models)
or left them out: the rest of the answer is pydantic's JSON mode, exactly.

Save for NaN and infinity: JSON mode writes them as ``null`` where it
infers a value's type (an ``Any`` field, a ``dict`` value) and keeps them
where a ``float`` is declared. The bridge's JSON refuses them (§1.1), so
:func:`finite_serializer` keeps them everywhere, for the encoder to refuse:
a result is never changed silently. A model met where the type is inferred
is written by its own serializer, out of that rewrite's reach: where its
NaN became ``null``, :func:`~.contract_finite.finite_back` puts it back.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter
from pydantic_core import CoreConfig, PydanticSerializationError, SchemaSerializer, to_json, to_jsonable_python

from .contract_finite import finite_back, has_inferred, holds_non_finite
from .payload_paths import LEAVES, holds_binary

__all__ = ["BytesKeepingDump", "finite_serializer"]

_BUFFERS = (bytes, bytearray, memoryview)
_LEFT_OUT = object()  # where the JSON dump has nothing: left out by ``exclude``
# How JSON mode writes bytes, by ``ser_json_bytes`` (pydantic's base64 is the URL-safe one).
_AS_TEXT: dict[str, Callable[[bytes], str]] = {
    "utf8": lambda data: data.decode("utf-8"),
    "base64": lambda data: base64.urlsafe_b64encode(data).decode(),
    "hex": lambda data: data.hex(),
}


def finite_serializer(adapter: TypeAdapter[Any], type_: Any) -> SchemaSerializer:
    """``adapter``'s serializer, NaN and infinity kept as floats where its type
    is inferred (``ser_json_inf_nan="constants"``), for the encoder to refuse
    them as it does a ``float`` field's: pydantic's default writes them as
    ``null``. A config that sets ``ser_json_inf_nan`` itself is left as it is."""
    schema = _constants(adapter.core_schema)
    # The serializer's own config, which an inferred value goes by: a model's
    # (or a dataclass's) is its schema's, any other type's the default.
    outer = schema
    if schema.get("type") == "definitions":  # a recursive model: its schema is among the definitions
        outer = schema["schema"]
        ref = outer.get("schema_ref") if outer.get("type") == "definition-ref" else None
        outer = next((d for d in schema["definitions"] if ref is not None and d.get("ref") == ref), outer)
    own = isinstance(type_, type) and "__pydantic_serializer__" in vars(type_)
    config = outer.get("config") if own and isinstance(outer.get("config"), dict) else None
    return SchemaSerializer(schema, config or CoreConfig(ser_json_inf_nan="constants"))


def _constants(node: Any) -> Any:
    """A copy of a core schema whose configs say ``ser_json_inf_nan="constants"``
    unless they say otherwise (the node itself where none changes)."""
    if isinstance(node, list):
        items = [_constants(item) for item in node]
        return node if all(a is b for a, b in zip(items, node)) else items
    if not isinstance(node, dict):
        return node
    copy = {key: _constants(value) if key != "config" else value for key, value in node.items()}
    config = node.get("config")
    if isinstance(config, dict) and "ser_json_inf_nan" not in config:
        copy["config"] = {**config, "ser_json_inf_nan": "constants"}
    return node if all(copy[key] is node[key] for key in node) else copy


class BytesKeepingDump:
    """Dumps a value of ``adapter``'s type in JSON mode by alias, its bytes kept as bytes."""

    __slots__ = ("_dump", "_as_text", "_custom", "_inferred")

    def __init__(self, adapter: TypeAdapter[Any], serializer: SchemaSerializer) -> None:
        # Called as ``adapter.dump_python`` calls it, without that wrapper's
        # cost (about 0.3 µs a call): a result without bytes costs what it
        # did when it was dumped in Python mode alone.
        self._dump = serializer.to_python
        modes = {"utf8"} | {mode for mode in _bytes_modes(adapter.core_schema) if mode in _AS_TEXT}
        self._as_text = tuple(_AS_TEXT[mode] for mode in sorted(modes))
        # A serializer of its own may write bytes that are not UTF-8 (as hex, say): JSON mode is tried first.
        self._custom = _has_serializer(adapter.core_schema)
        self._inferred = has_inferred(adapter.core_schema)  # where a model is written by its own serializer

    def __call__(self, value: Any) -> Any:
        python = self._dump(value, by_alias=True)
        out = self._json(value, python)
        # An inferred model's NaN, written as null by its own serializer
        # (which finite_serializer's configs never reach): put back for the
        # encoder to refuse (contract_finite.py).
        if not self._inferred or not holds_non_finite(python):
            return out
        return finite_back(value, python, out)

    def _json(self, value: Any, python: Any) -> Any:
        """The JSON-mode dump of ``value`` (whose Python-mode dump is ``python``), its bytes kept."""
        dump = self._dump
        if not holds_binary(python):
            return dump(value, mode="json", by_alias=True)
        if self._custom or not _holds_unwritable(python):
            try:
                return _graft(python, dump(value, mode="json", by_alias=True), self._as_text)
            except (UnicodeDecodeError, PydanticSerializationError) as exc:
                if not _not_text(exc):
                    raise
        # Bytes JSON mode cannot write as text (not UTF-8, a memoryview): left
        # out. ``exclude`` names a model's fields by name: the dump by name says where.
        exclude = _unwritable_paths(dump(value, by_alias=False))
        try:
            return _graft(python, dump(value, mode="json", by_alias=True, exclude=exclude), self._as_text)
        except (UnicodeDecodeError, PydanticSerializationError) as exc:
            if not _not_text(exc):
                raise
            # Bytes that ``exclude`` cannot reach (returned by a custom
            # serializer, say): the Python dump, made JSON values.
            return _jsonable(python)


def _has_serializer(node: Any) -> bool:
    """Whether a core schema has a serializer of its own anywhere (a field's, a model's, an ``Annotated`` one)."""
    if isinstance(node, list):
        return any(map(_has_serializer, node))
    return isinstance(node, dict) and ("serialization" in node or any(map(_has_serializer, node.values())))


def _bytes_modes(node: Any) -> set[str]:
    """The ``ser_json_bytes`` of every model (or dataclass) config in a core schema."""
    if isinstance(node, list):
        return set().union(*map(_bytes_modes, node)) if node else set()
    if not isinstance(node, dict):
        return set()
    config = node.get("config")
    found = {config["ser_json_bytes"]} if isinstance(config, dict) and "ser_json_bytes" in config else set()
    return found.union(*(_bytes_modes(value) for key, value in node.items() if key != "config"))


def _not_text(exc: Exception) -> bool:
    """Whether JSON mode failed on bytes that are not UTF-8 (in a custom serializer, pydantic wraps that)."""
    return isinstance(exc, UnicodeDecodeError) or "UnicodeDecodeError" in str(exc)


def _jsonable(value: Any) -> Any:
    """A Python-mode dump as JSON values, bytes kept (what mode="json" would
    do to the rest: datetimes to ISO strings, enums to values, tuples to lists)."""
    cls = type(value)
    if cls in LEAVES or isinstance(value, _BUFFERS):
        return value
    if isinstance(value, dict):
        return {k if type(k) is str else to_jsonable_python(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    return to_jsonable_python(value)


def _is_text(data: Any) -> bool:
    """Whether bytes are UTF-8 text (JSON mode writes them so, by default)."""
    data = data if isinstance(data, (bytes, bytearray)) else bytes(data)
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _unwritable(data: Any) -> bool:
    """Whether JSON mode cannot write these bytes as text: not UTF-8, or a memoryview (which it does not know)."""
    return type(data) is memoryview or not _is_text(data)


def _holds_unwritable(value: Any) -> bool:
    if isinstance(value, _BUFFERS):
        return _unwritable(value)
    if isinstance(value, dict):
        return any(_holds_unwritable(v) for v in value.values())
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_holds_unwritable(v) for v in value)
    return False


def _unwritable_paths(value: Any) -> Any:
    """pydantic's ``exclude`` for the bytes JSON mode cannot write (a set holding any: the set)."""
    if isinstance(value, _BUFFERS):
        return True if _unwritable(value) else None
    if isinstance(value, (set, frozenset)):
        return True if _holds_unwritable(value) else None
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    found = {key: paths for key, item in items if (paths := _unwritable_paths(item)) is not None}
    return found or None


_Texts = tuple[Callable[[bytes], str], ...]


def _graft(python: Any, out: Any, as_text: _Texts) -> Any:
    """The JSON dump ``out`` with the bytes of the Python dump put back: where
    ``out`` has them as their text, or nothing (left out). Where a serializer
    of JSON mode wrote something else, what it wrote stays."""
    if isinstance(python, _BUFFERS):
        return python if out is _LEFT_OUT or (type(out) is str and _written(bytes(python), out, as_text)) else out
    if out is _LEFT_OUT:
        return _jsonable(python)
    cls = type(python)
    if cls in LEAVES:
        return out
    if isinstance(python, dict) and type(out) is dict:
        return _graft_dict(python, out, as_text)
    if isinstance(python, (list, tuple)) and type(out) is list:
        return _graft_list(python, out, as_text)
    if isinstance(python, (set, frozenset)) and type(out) is list:
        texts = {text: bytes(item) for item in python if isinstance(item, _BUFFERS) for text in _texts(bytes(item), as_text)}
        return [texts.get(item, item) if type(item) is str else item for item in out]
    return out


def _written(data: bytes, text: str, as_text: _Texts) -> bool:
    return text in _texts(data, as_text)


def _texts(data: bytes, as_text: _Texts) -> list[str]:
    """The texts JSON mode may have written ``data`` as (none in UTF-8 if it is not UTF-8)."""
    found = []
    for write in as_text:
        try:
            found.append(write(data))
        except UnicodeDecodeError:
            pass
    return found


def _graft_dict(python: dict[Any, Any], out: dict[str, Any], as_text: _Texts) -> dict[str, Any]:
    if len(out) == len(python) and any(type(key) is not str for key in python):
        names: list[str] = list(out)  # keys JSON mode wrote for non-str ones, in the same order
    else:
        names = [key if type(key) is str else _json_key(key) for key in python]
    inserted = False
    for name, item in zip(names, python.values()):
        if type(item) in LEAVES:
            continue
        written = out.get(name, _LEFT_OUT)
        inserted = inserted or written is _LEFT_OUT
        out[name] = _graft(item, written, as_text)
    if not inserted:
        return out
    merged = {name: out.pop(name) for name in names if name in out}  # in the Python dump's order
    merged.update(out)  # keys only JSON mode writes (a serializer's own)
    return merged


def _graft_list(python: list[Any] | tuple[Any, ...], out: list[Any], as_text: _Texts) -> list[Any]:
    if len(out) == len(python):
        for i, item in enumerate(python):
            if type(item) not in LEAVES:
                out[i] = _graft(item, out[i], as_text)
        return out
    written = iter(out)  # the items ``exclude`` left out are missing from it
    merged = [_graft(item, _LEFT_OUT if _unwritable_paths(item) is True else next(written, _LEFT_OUT), as_text) for item in python]
    merged.extend(written)
    return merged


def _json_key(key: Any) -> str:
    """A dict key as JSON mode writes it (``1`` as ``"1"``, an enum as its value)."""
    text = to_json(key).decode()
    return str(to_jsonable_python(key)) if text.startswith('"') else text
