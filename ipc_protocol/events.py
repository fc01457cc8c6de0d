"""What a protocol connection's ``receive_frame`` returns besides an
ordinary message (docs/architecture.md): small slotted objects, the same
names in every language (Node: ``js-client/lib/protocol/events.js``). The
roles add their handshake's events beside their protocol classes."""

from __future__ import annotations

from .codes import ErrorCode
from .envelope import Message
from .exceptions import FrameError, MessageError, ProtocolError

__all__ = ["Event", "PingReceived", "PongReceived", "MessageRefused", "ProtocolViolation"]

class Event:
    """Base of what ``receive_frame`` returns besides an ordinary message."""

    __slots__: tuple[str, ...] = ()

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"


class PingReceived(Event):
    """The peer pinged (§9); a request has already been answered with a pong."""

    __slots__ = ("message",)

    def __init__(self, message: Message) -> None:
        self.message = message


class PongReceived(Event):
    """The answer to a ping this connection sent (§9). ``latency_s``: since
    the first unanswered ping, when the pump's clock was passed in."""

    __slots__ = ("message", "latency_s")

    def __init__(self, message: Message, latency_s: float | None) -> None:
        self.message = message
        self.latency_s = latency_s


class MessageRefused(Event):
    """The core answered ``message`` with an error response, or dropped it
    (a notification, which expects no answer); the connection stays open."""

    __slots__ = ("message", "code", "text")

    def __init__(self, message: Message, code: ErrorCode, text: str) -> None:
        self.message = message
        self.code = code
        self.text = text


class ProtocolViolation(Event):
    """The peer broke the protocol: the error frame is queued and the state
    is ``error``; the pump writes what is queued and closes (§6.4).
    ``message``: the offending message when the frame was a valid envelope.
    ``error``: the typed error for the pump to report, the one raised when
    there was one (a client reports its own ``FrameError``, not a remote
    error: the peer sent no error frame)."""

    __slots__ = ("code", "text", "message", "error")

    def __init__(self, code: ErrorCode | str, text: str, message: Message | None = None, error: ProtocolError | None = None) -> None:
        self.code = code
        self.text = text
        self.message = message
        self.error = error if error is not None else FrameError(text) if code == ErrorCode.BAD_FRAME else MessageError(text, code=code)
