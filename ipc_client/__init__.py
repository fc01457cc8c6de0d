"""The bridge's asyncio Python client."""

from ipc_protocol import Message, MessageType
from ipc_protocol.codes import ErrorCode
from ipc_protocol.exceptions import *  # noqa: F403
from ipc_protocol.exceptions import __all__ as _exceptions_all

from .backoff import Backoff
from .circuit_breaker import CircuitBreakerOptions, CircuitState
from .client import IPCClient
from .offline_queue import OverflowPolicy
from .state import ConnectionState

__all__ = [
    "IPCClient",
    "ConnectionState",
    "Backoff",
    "CircuitBreakerOptions",
    "CircuitState",
    "OverflowPolicy",
    "Message",
    "MessageType",
    "ErrorCode",
    *_exceptions_all,
]

# Pool, load balancing, gateway and blocking clients (docs/resilience.md §7-10).
from .load_balanced import LoadBalancedClient  # noqa: E402
from .pool import ConnectionPool  # noqa: E402
from .service_client import ServiceClient  # noqa: E402
from .sync import SyncIPCClient  # noqa: E402

__all__ += ["ConnectionPool", "LoadBalancedClient", "ServiceClient", "SyncIPCClient"]
