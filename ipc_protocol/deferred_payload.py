"""Messages whose payload is decoded from their frame when first read.

A server relays most frames as the bytes that came in (a forwarded request,
its answer, a publish): it reads their envelope, never their payload.
Building the payload's Python objects is ~9k instructions of a request's
~33k validation (docs/performance.md, "One pass per frame"), so what it
only relays is validated without ``payload`` (``relayed.decode_envelope``),
the frame kept in the message, and the payload decoded if something reads
it after all. Such a message is a plain :class:`~ipc_protocol.Message`:
``==``, ``repr``, ``model_dump``, iteration, pickling and ``hash`` decode
the payload first, so none of them can tell it from one decoded whole.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic_core import SchemaValidator

from ._json import parse

__all__ = ["DeferredPayload", "FRAME", "envelope_validator", "settled", "settling_hash"]

FRAME = "frame"  # the key of the frame in ``__pydantic_private__``
_setattr = object.__setattr__


def settled(msg: Any) -> None:
    """Decode a deferred payload now (nothing if there is none); the
    message is then exactly what decoding the frame whole gives."""
    private = msg.__pydantic_private__
    if private is None or FRAME not in private:
        return
    if "payload" not in msg.__dict__:  # else set since (model_copy(update=...))
        obj = parse(private[FRAME])  # validated and screened when it was decoded
        fields = msg.__dict__
        # The fields in their declared order, as the validator writes them.
        _setattr(msg, "__dict__", {name: obj.get("payload") if name == "payload" else fields[name] for name in type(msg).model_fields})
        if "payload" in obj:
            msg.__pydantic_fields_set__.add("payload")
    _setattr(msg, "__pydantic_private__", None)


def settling_hash(field_hash: Callable[[Any], int]) -> Callable[[Any], int]:
    """pydantic's hash of a frozen model reads every field from
    ``__dict__``: the payload is decoded first."""

    def __hash__(self: Any) -> int:
        settled(self)
        return field_hash(self)

    return __hash__


class DeferredPayload:
    """What ``Message`` needs for a payload left in its frame. Messages
    have no private attributes, so ``__pydantic_private__`` holds the frame
    until the payload is decoded, and is None again after."""

    __slots__ = ()

    if not TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any:
            if name == "payload" and self.__pydantic_private__ is not None:
                settled(self)
                return self.__dict__["payload"]
            return super().__getattr__(name)

        def __eq__(self, other: object) -> bool:
            settled(self)
            if isinstance(other, DeferredPayload):
                settled(other)
            return super().__eq__(other)

        def __iter__(self) -> Any:
            settled(self)
            return super().__iter__()

        def __repr_args__(self) -> Any:
            settled(self)
            return super().__repr_args__()

        def __getstate__(self) -> dict[Any, Any]:
            settled(self)
            return super().__getstate__()

        def model_dump(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            settled(self)
            return super().model_dump(*args, **kwargs)

        def model_dump_json(self, *args: Any, **kwargs: Any) -> str:
            settled(self)
            return super().model_dump_json(*args, **kwargs)


def envelope_validator(model: type[Any], sample: bytes) -> Callable[[bytes | bytearray], Any] | None:
    """A validator of ``model``'s JSON without ``payload`` that makes
    ``model`` instances, or None where this pydantic-core cannot build one.

    pydantic-core reuses a model's own validator for any schema that names
    the model while the class says ``__pydantic_complete__``, so the flag
    is down while this one is built; ``sample`` (a frame with a payload)
    checks that the payload was indeed left out."""
    schema = copy.deepcopy(model.__pydantic_core_schema__)
    fields = schema.get("schema", {}).get("fields") if schema.get("type") == "model" else None
    if not isinstance(fields, dict) or "payload" not in fields:
        return None
    del fields["payload"]
    type.__setattr__(model, "__pydantic_complete__", False)
    try:
        validate: Callable[[bytes | bytearray], Any] = SchemaValidator(schema, schema.get("config")).validate_json
    finally:
        type.__setattr__(model, "__pydantic_complete__", True)
    try:
        built = validate(sample)
    except Exception:  # pragma: no cover - a pydantic-core that validates otherwise
        return None
    return validate if type(built) is model and "payload" not in built.__dict__ else None
