"""The bridge's asyncio server: ``python -m ipc_server`` or embedded with
``async with IPCServer(host, port) as server``.

Its names are imported on first use: ``python -m ipc_server`` imports this
package before its entry point runs, and the entry point catches the
signals before the server's imports (``early_signals``)."""

from __future__ import annotations

from importlib import import_module

TYPE_CHECKING = False  # not typing's: see early_signals
if TYPE_CHECKING:
    from typing import Any

    from ipc_protocol.version import __version__
    from .config import ServerConfig, load_config
    from .server import IPCServer

__all__ = ["IPCServer", "ServerConfig", "load_config", "__version__"]

_MODULES = {"IPCServer": ".server", "ServerConfig": ".config", "load_config": ".config", "__version__": "ipc_protocol.version"}


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_MODULES[name], __name__), name)
    globals()[name] = value
    return value
