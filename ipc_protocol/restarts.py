"""What the wire says about restarts (docs/protocol.md §13): the mark a
client puts on a request it replays from its offline queue (§13.2), and the
lame-duck notice a server sends before it closes (§13.1), and the goaway
notice it sends as it closes a connection (§13 item 3).

Pure, shared by the server and the Python client; Node's copy is
``js-client/lib/protocol/restarts.js``, and ``interop-tests/spec/restarts.json``
holds what both must agree on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .constants import SYSTEM_CHANNEL
from .envelope import Message, MessageType

__all__ = [
    "REPLAY_HEADER", "REPLAY_VALUE", "LAME_DUCK", "LAME_DUCK_EVENT", "GOAWAY", "GOAWAY_EVENT",
    "is_replay", "mark_replay", "lame_duck_notice", "lame_duck_deadline_ms", "goaway_notice", "is_goaway",
]  # fmt: skip

# A header, as the idempotency key (§6.6): a server that does not know it
# ignores it, responders receive it unchanged, a version-1 peer never sees it.
REPLAY_HEADER = "ipc-replayed"
REPLAY_VALUE = "1"
# The feature (§15.1) a connection asks for to be sent the notice: a peer that
# does not ask may route a publish on ``system`` to a ``>`` subscriber.
LAME_DUCK = "lame_duck"
LAME_DUCK_EVENT = "lame_duck"
# The feature a connection asks for to be told, as the server closes it, to
# send nothing more on it (HTTP/2's GOAWAY): the server then reads on until
# the client closes, so no reset discards the answers the client has not read.
GOAWAY = "goaway"
GOAWAY_EVENT = "goaway"


def is_replay(headers: Mapping[str, str] | None) -> bool:
    """Whether a request's headers carry the replay mark (§13.2)."""
    return headers is not None and headers.get(REPLAY_HEADER) == REPLAY_VALUE


def mark_replay(msg: Message) -> Message:
    """``msg`` as a client replays it from its offline queue: a request or a
    notification gets the mark (its other headers kept), anything else is
    returned as it is."""
    if msg.message_type is not MessageType.REQUEST and msg.message_type is not MessageType.NOTIFICATION:
        return msg
    return msg.model_copy(update={"headers": {**(msg.headers or {}), REPLAY_HEADER: REPLAY_VALUE}})


def lame_duck_notice(app_id: str, deadline_ms: int) -> Message:
    """The server's notice (§13.1): it closes in ``deadline_ms`` at the latest."""
    return Message.build(MessageType.PUBLISH, app_id, SYSTEM_CHANNEL, {"event": LAME_DUCK_EVENT, "deadline_ms": deadline_ms})


def lame_duck_deadline_ms(msg: Message) -> int | None:
    """The ``deadline_ms`` of a lame-duck notice, or None when ``msg`` is none."""
    if msg.message_type is not MessageType.PUBLISH or msg.channel_id != SYSTEM_CHANNEL:
        return None
    payload: Any = msg.payload
    if not isinstance(payload, dict) or payload.get("event") != LAME_DUCK_EVENT:
        return None
    deadline = payload.get("deadline_ms")
    if isinstance(deadline, bool) or not isinstance(deadline, (int, float)) or deadline < 0:
        return 0  # a notice all the same: the server is leaving, how soon unsaid
    return int(deadline)


def goaway_notice(app_id: str) -> Message:
    """The server's last frame on a connection it closes (§13 item 3): send
    nothing more here; the answers of what was sent follow it."""
    return Message.build(MessageType.PUBLISH, app_id, SYSTEM_CHANNEL, {"event": GOAWAY_EVENT})


def is_goaway(msg: Message) -> bool:
    """Whether ``msg`` is the goaway notice."""
    payload: Any = msg.payload
    return msg.message_type is MessageType.PUBLISH and msg.channel_id == SYSTEM_CHANNEL and isinstance(payload, dict) and payload.get("event") == GOAWAY_EVENT
