"""The bridge's asyncio server: ``python -m ipc_server`` or embedded with
``async with IPCServer(host, port) as server``."""

from ipc_protocol.version import __version__

from .config import ServerConfig, load_config
from .server import IPCServer

__all__ = ["IPCServer", "ServerConfig", "load_config", "__version__"]
