"""Idempotency keys (docs/protocol.md §6.6): the header a request carries
its key in, what a key may be, and the digest that tells a retry from
another request sent under the same key.

Pure, shared by the server (which keeps the window of keys) and the Python
client (which sends them); Node's copy is ``js-client/lib/idempotency.js``,
and ``interop-tests/spec/idempotency.json`` holds what both must agree on.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .envelope import Message, MessageType
from .headers import check_headers

__all__ = ["IDEMPOTENCY_HEADER", "MAX_IDEMPOTENCY_KEY_LENGTH", "check_key", "is_keyed", "key_problem", "keyed_headers", "request_digest"]

# A header rather than an envelope field: headers already travel to
# responders unchanged (§2), a version-1 peer never sees them (§10), and the
# envelope stays as it is. The name is HTTP's (draft-ietf-httpapi-idempotency-key-header).
IDEMPOTENCY_HEADER = "idempotency-key"
MAX_IDEMPOTENCY_KEY_LENGTH = 256


def is_keyed(msg: Message) -> bool:
    """Whether ``msg`` is a request (not a stream) with an idempotency key:
    what the server keeps a window for and the responders a record of (§6.6)."""
    headers = msg.headers
    return headers is not None and IDEMPOTENCY_HEADER in headers and msg.message_type is MessageType.REQUEST and msg.window is None


def key_problem(key: object) -> str | None:
    """Why ``key`` cannot be an idempotency key, or None when it can."""
    if not isinstance(key, str):
        return f"an idempotency key is a string, not {type(key).__name__}"
    if not key:
        return "an idempotency key must not be empty"
    if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        return f"an idempotency key has at most {MAX_IDEMPOTENCY_KEY_LENGTH} characters, this one {len(key)}"
    return None


def check_key(key: object) -> str:
    """``key`` if it can be an idempotency key; raises ``TypeError`` (not a
    string) or ``ValueError`` (empty, too long) before anything is sent."""
    problem = key_problem(key)
    if problem is not None:
        raise (TypeError if not isinstance(key, str) else ValueError)(problem)
    return key  # type: ignore[return-value]


def keyed_headers(headers: dict[str, str] | None, key: object) -> dict[str, str]:
    """A request's headers with its idempotency key added (the caller's dict is not changed)."""
    return {**(check_headers(headers) if headers is not None else {}), IDEMPOTENCY_HEADER: check_key(key)}


def request_digest(channel: str, payload: Any) -> bytes:
    """What a key's request is, to refuse the key for another one: the
    channel and the payload as decoded JSON, keys sorted (so ``{"a":1,"b":2}``
    and ``{"b":2,"a":1}`` are the same request; ``1`` and ``1.0`` are not)."""
    text = json.dumps(
        [channel, payload], sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, check_circular=False, default=_bytes_digest
    )
    return hashlib.sha256(text.encode()).digest()


def _bytes_digest(value: Any) -> Any:
    """Binary data (§16) in a request's digest: its own digest."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$sha256": hashlib.sha256(value).hexdigest()}
    raise TypeError(f"{type(value).__name__} is not JSON")
