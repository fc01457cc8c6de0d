"""Sans-I/O core of the IPC bridge: framing, the envelope, channel patterns,
error codes and exceptions. Shared by ``ipc_server`` and ``ipc_client``; it
never imports asyncio or socket, so it is tested and fuzzed on bytes alone."""

from .channels import is_pattern, is_reserved, is_servable, pattern_matches, validate_channel, validate_pattern
from .codes import CLIENT_CODES, WIRE_CODES, ErrorCode
from .constants import LEGACY_PROTOCOL_VERSION, PROTOCOL_VERSION, SERVER_SYSTEM_ACTIONS, SERVICES_CHANNEL, SYSTEM_CHANNEL
from .envelope import ErrorInfo, Message, MessageType, decode_message, decode_relayed, encode_message, encode_request, encode_response, new_message_id
from .exceptions import *  # noqa: F403
from .exceptions import __all__ as _exceptions_all
from .framing import FrameDecoder, encode_frame
from .heartbeat import Heartbeat, HeartbeatAction
from .printable import LOG_TEXT_LIMIT, LOG_VALUE_LIMIT, clipped, printable

from .version import __version__

__all__ = [
    "ErrorCode",
    "WIRE_CODES",
    "CLIENT_CODES",
    "PROTOCOL_VERSION",
    "LEGACY_PROTOCOL_VERSION",
    "SYSTEM_CHANNEL",
    "SERVER_SYSTEM_ACTIONS",
    "SERVICES_CHANNEL",
    "Message",
    "MessageType",
    "ErrorInfo",
    "decode_message",
    "decode_relayed",
    "encode_message",
    "encode_request",
    "encode_response",
    "new_message_id",
    "FrameDecoder",
    "encode_frame",
    "Heartbeat",
    "HeartbeatAction",
    "validate_channel",
    "validate_pattern",
    "is_pattern",
    "is_reserved",
    "is_servable",
    "pattern_matches",
    "printable",
    "clipped",
    "LOG_VALUE_LIMIT",
    "LOG_TEXT_LIMIT",
    "__version__",
    *_exceptions_all,
]
