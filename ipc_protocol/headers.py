"""What a message's ``headers`` may be (docs/protocol.md §2): an object of
strings to strings. Checked where a call's own headers come in (the
client's ``tracing.outgoing``, ``stream()``, ``keyed_headers``), so a call
given other headers fails before anything is sent, with the text Node's
``checkHeaders`` (js-client/lib/envelope.js) gives, rather than the server
taking the frame for a bad envelope and closing the connection. Not at
each encoding: headers the bridge makes (a ``traceparent``) or decoded
already need none, and the check costs ~100 ns a message.
"""

from __future__ import annotations

from typing import Any

from .exceptions import MessageError

__all__ = ["check_headers"]


def check_headers(headers: Any) -> dict[str, str]:
    """``headers`` when they are a dict of strings to strings; else
    :class:`MessageError` (``bad_message``) naming the first that is not."""
    if not isinstance(headers, dict):
        raise MessageError("invalid envelope: headers: must be an object")
    for key, value in headers.items():
        if key.__class__ is not str and not isinstance(key, str):
            raise MessageError(f"invalid envelope: headers: a key must be a string, not {type(key).__name__}")
        if value.__class__ is not str and not isinstance(value, str):
            raise MessageError(f"invalid envelope: headers.{key}: must be a string")
    return headers
