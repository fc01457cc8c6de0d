"""Protocol constants and shared defaults (units are in the names)."""

from __future__ import annotations

__all__ = [
    "PROTOCOL_VERSION",
    "LEGACY_PROTOCOL_VERSION",
    "SYSTEM_CHANNEL",
    "SERVICES_CHANNEL",
    "RESERVED_PREFIXES",
    "SERVER_SYSTEM_ACTIONS",
    "HEADER_SIZE",
    "MAX_FRAME_LIMIT",
    "DEFAULT_MAX_FRAME_SIZE",
    "HANDSHAKE_MAX_FRAME_SIZE",
    "MAX_CONNECT_ID_LENGTH",
    "DEFAULT_HEARTBEAT_INTERVAL_S",
    "MIN_HEARTBEAT_INTERVAL_S",
    "DEFAULT_REQUEST_TIMEOUT_S",
    "DEFAULT_PORT",
    "DEFAULT_HOST",
]

PROTOCOL_VERSION = 2
LEGACY_PROTOCOL_VERSION = 1

SYSTEM_CHANNEL = "system"
SERVICES_CHANNEL = "$sys.services"
RESERVED_PREFIXES = ("system", "$sys")
# The ``system`` actions the server answers itself (docs/protocol.md §8); any
# other action is a request to whoever serves ``system`` in the app.
SERVER_SYSTEM_ACTIONS = frozenset({"connect", "ping", "stats", "channels", "services", "describe", "connections"})

HEADER_SIZE = 4
MAX_FRAME_LIMIT = 2**32 - 1  # what a uint32 length prefix can express

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8888
DEFAULT_MAX_FRAME_SIZE = 16 * 1024 * 1024
# The largest frame a server reads before it has accepted a connect
# (docs/protocol.md §1 item 1, §3 item 11): a connect is well under 4 KiB
# (ids of at most MAX_CONNECT_ID_LENGTH characters), so a long token still fits.
# A socket that has proved nothing cannot make the server hold 16 MiB.
HANDSHAKE_MAX_FRAME_SIZE = 64 * 1024
# The longest app_id, connection_id, client and user a connect may name, in
# characters (code points; docs/protocol.md §3 item 12): the server keeps
# them for the connection's life, in its stats and metrics.
MAX_CONNECT_ID_LENGTH = 256
DEFAULT_HEARTBEAT_INTERVAL_S = 15.0
# The shortest heartbeat interval either side accepts (docs/protocol.md §9):
# below 10 ms a ping is due before a round trip on most networks ends, and
# the clock work is a busy loop; 0 (or None) is how heartbeats are turned off.
MIN_HEARTBEAT_INTERVAL_S = 0.01
DEFAULT_REQUEST_TIMEOUT_S = 30.0
