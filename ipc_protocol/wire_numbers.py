"""Numbers read from the wire, judged as a JavaScript peer judges them.

``JSON.parse`` makes ``2.0``, ``1e1`` and ``2`` the same number, so the Node
client cannot tell an integral float from an integer and takes either where
the protocol asks for an integer (``Number.isInteger``); a boolean is never
a number there. Python's JSON keeps ``2.0`` a float and ``True`` an int, so
each check here says what Node says: an integral number counts as its
integer (docs/protocol.md §1.2), ``true`` counts as nothing.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, GetPydanticSchema, Strict
from pydantic_core import core_schema

__all__ = ["NonNegative", "Positive", "Window", "MAX_WINDOW", "whole_number", "wire_number", "delivered_count"]

MAX_WINDOW = 2**31 - 1  # a stream's credit (§15.2): what a 31-bit window holds (HTTP/2's)

# Strict: a number, never a numeric string or a boolean (§2).
NonNegative = Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False)]
Positive = Annotated[float, Strict(), Field(gt=0, allow_inf_nan=False)]

# An integer first (the frames both clients write: no Python call on that
# path), else a float with nothing after the point, as its int; never a
# boolean or a string. One error for all, in the Node decoder's words.
_WINDOW_SCHEMA = core_schema.union_schema(
    [
        core_schema.int_schema(strict=True, ge=1, le=MAX_WINDOW),
        core_schema.no_info_after_validator_function(int, core_schema.float_schema(strict=True, ge=1, le=MAX_WINDOW, multiple_of=1.0)),
    ],
    mode="left_to_right",
    custom_error_type="window",
    custom_error_message=f"must be an integer from 1 to {MAX_WINDOW}",
)
Window = Annotated[int, GetPydanticSchema(lambda _source, _handler: _WINDOW_SCHEMA)]


def whole_number(value: Any) -> int | None:
    """``value`` as an int where ``Number.isInteger`` holds (``1000.0`` and
    ``1e3`` are 1000); None for a fraction, a boolean or a non-number."""
    cls = value.__class__
    if cls is int:
        return int(value)
    if cls is float and value.is_integer():
        return int(value)
    return None


def wire_number(value: Any) -> int | float | None:
    """``value`` if it is a finite JSON number (``typeof v === 'number'``),
    else None: ``true`` is not 1."""
    cls = value.__class__
    if cls is int or (cls is float and value - value == 0):  # finite: inf - inf and nan are nan
        return value  # type: ignore[no-any-return]
    return None


def delivered_count(payload: Any) -> int | None:
    """How many connections a publish ack says it reached (§5.3); None where
    it holds no number, as the Node client resolves ``{delivered: null}``."""
    delivered = wire_number(payload.get("delivered")) if isinstance(payload, dict) else None
    return None if delivered is None else int(delivered)
