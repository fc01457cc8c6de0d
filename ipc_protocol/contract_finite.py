"""NaN and infinity in a typed result where its type is inferred (docs/typed-contracts.md §1).

:func:`~.contract_dump.finite_serializer` makes the response type's own
configs keep NaN and infinity for the encoder to refuse. But a pydantic
model (or pydantic dataclass) met where the type is inferred (an ``Any``
field, a ``dict[str, Any]`` value, a ``list[Any]`` item) is written by that
model's own serializer, under its own config, out of that rewrite's reach:
JSON mode writes its NaN as ``null``. The Python-mode dump, which a type
with an inferred position is dumped in anyway (for its bytes), keeps the
float: where it holds one that is not finite and the JSON dump has ``null``
in its place, the float is put back, for the encoder to refuse it as it
refuses any other (``MessageError``: "NaN and Infinity are not valid JSON").

Left as pydantic wrote it when a model in the result says what to do with
such a float (a ``ser_json_inf_nan`` of its own) or has a serializer for
JSON mode alone (``when_used="json"``): its ``null`` may be its choice.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

__all__ = ["finite_back", "has_inferred", "holds_non_finite"]

_MAX_DEPTH = 200  # deeper than the encoder writes: nothing to find below
_SCALARS = (str, int, bool, type(None))
_CONTAINERS = (list, tuple, set, frozenset)
_JSON_ONLY = ("json", "json-unless-none")  # a serializer that writes JSON mode alone
_plain: weakref.WeakKeyDictionary[type, bool] = weakref.WeakKeyDictionary()  # a model class -> whether its NaN is pydantic's default


def has_inferred(node: Any) -> bool:
    """Whether a pydantic core schema infers a value's type somewhere (an ``any`` node)."""
    if isinstance(node, dict):
        return node.get("type") == "any" or any(has_inferred(value) for value in node.values())
    if isinstance(node, (list, tuple)):
        return any(has_inferred(value) for value in node)
    return False


def holds_non_finite(value: Any, depth: int = 0) -> bool:
    """Whether a Python-mode dump holds NaN or an infinity anywhere."""
    cls = type(value)
    if cls is float:
        return not math.isfinite(value)
    if cls is dict:
        items: Any = value.values()
    elif cls is list or cls is tuple or cls is set or cls is frozenset:
        items = value
    else:
        return False
    if depth > _MAX_DEPTH:
        return False
    for item in items:
        cls = type(item)
        if cls in _SCALARS:
            continue
        if cls is float:
            if not math.isfinite(item):
                return True
        elif holds_non_finite(item, depth + 1):
            return True
    return False


def finite_back(value: Any, python: Any, out: Any) -> Any:
    """``out`` (the JSON dump of ``value``) with the NaN and infinities of
    ``python`` (its Python dump) where JSON mode wrote ``null`` for them."""
    if not _models_plain(value, 0):
        return out
    return _put_back(python, out, 0)


def _put_back(python: Any, out: Any, depth: int) -> Any:
    cls = type(python)
    if cls is float:
        return python if out is None and not math.isfinite(python) else out
    if depth > _MAX_DEPTH:
        return out
    if cls is dict and type(out) is dict and len(out) == len(python):
        # Both dumps list a dict's keys in the same order (JSON mode writes non-str ones as text).
        for name, item, written in zip(list(out), python.values(), list(out.values())):
            if type(item) not in _SCALARS:
                out[name] = _put_back(item, written, depth + 1)
        return out
    if cls in _CONTAINERS and type(out) is list and len(out) == len(python):
        return [_put_back(item, written, depth + 1) for item, written in zip(python, out)]
    return out


def _models_plain(value: Any, depth: int) -> bool:
    """Whether every pydantic model or dataclass in ``value`` goes by
    pydantic's defaults for NaN: no ``ser_json_inf_nan``, no serializer of its own."""
    if depth > _MAX_DEPTH or type(value) in _SCALARS or type(value) is float:
        return True
    if isinstance(value, dict):
        return all(_models_plain(item, depth + 1) for item in value.values())
    if isinstance(value, _CONTAINERS):
        return all(_models_plain(item, depth + 1) for item in value)
    cls = type(value)
    schema = getattr(cls, "__pydantic_core_schema__", None)
    if schema is not None:
        plain = _plain.get(cls)
        if plain is None:
            plain = _plain[cls] = not _says_itself(schema)
        if not plain:
            return False
    fields = getattr(value, "__dict__", None)
    if isinstance(fields, dict) and not _models_plain(fields, depth + 1):
        return False
    extra = getattr(value, "__pydantic_extra__", None)
    return not isinstance(extra, dict) or _models_plain(extra, depth + 1)


def _says_itself(node: Any) -> bool:
    """Whether a core schema sets ``ser_json_inf_nan`` or has a serializer of
    its own for JSON mode alone (one for both modes writes what the Python dump shows)."""
    if isinstance(node, dict):
        config, serialization = node.get("config"), node.get("serialization")
        if isinstance(config, dict) and "ser_json_inf_nan" in config:
            return True
        if isinstance(serialization, dict) and serialization.get("when_used") in _JSON_ONLY:
            return True
        return any(_says_itself(item) for key, item in node.items() if key != "config")
    if isinstance(node, (list, tuple)):
        return any(_says_itself(item) for item in node)
    return False
