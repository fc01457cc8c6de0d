"""A request that waited in the server goes on with what is left of its
deadline (docs/protocol.md §6.5): one held for a responder (``grace``), or
for a place under the in-flight limit (``inflight``, ``flow_control``)."""

from __future__ import annotations

import math
from typing import Any

from ipc_protocol import Message, encode_message

__all__ = ["time_left_ms", "with_time_left"]


def time_left_ms(timeout_ms: float, since: float, now: float) -> int:
    """What is left of ``timeout_ms`` after waiting from ``since`` to ``now`` (loop seconds)."""
    return math.ceil(timeout_ms - (now - since) * 1000.0)


def with_time_left(msg: Message, body: Any, left_ms: int) -> tuple[Message, Any]:
    """``msg`` and its frame with ``timeout_ms`` = ``left_ms``: the responder
    is told what is left. A binary frame (§16) goes as it came, its own time
    unchanged; the server's deadline holds."""
    msg = msg.model_copy(update={"timeout_ms": left_ms})
    return msg, body if body[:1] == b"\x00" else encode_message(msg)
