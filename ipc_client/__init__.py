"""The bridge's asyncio Python client, and what is built on it: a connection
pool, a load-balanced client, a service client for gateways and a blocking
facade (docs/resilience.md)."""

from ipc_protocol import Message, MessageType
from ipc_protocol.codes import ErrorCode
from ipc_protocol.exceptions import *  # noqa: F403
from ipc_protocol.exceptions import __all__ as _exceptions_all
from ipc_protocol.version import __version__

from .backoff import Backoff
from .circuit_breaker import CircuitBreakerOptions, CircuitState
from .client import IPCClient
from .load_balanced_client import LoadBalancedClient
from .offline_queue import OverflowPolicy
from .pool import ConnectionPool
from .queue_store import QueueFileInUse
from .service_client import ServiceClient
from .state import ConnectionState
from .streams import Stream
from .sync import SyncIPCClient

__all__ = [
    "IPCClient",
    "ConnectionPool",
    "LoadBalancedClient",
    "ServiceClient",
    "SyncIPCClient",
    "Stream",
    "ConnectionState",
    "Backoff",
    "CircuitBreakerOptions",
    "CircuitState",
    "OverflowPolicy",
    "QueueFileInUse",
    "Message",
    "MessageType",
    "ErrorCode",
    "__version__",
    *_exceptions_all,
]
