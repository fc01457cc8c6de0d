"""Server settings: defaults, then a TOML file, then environment variables,
then command-line flags, validated once (docs/protocol.md §12)."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from ipc_protocol import __version__ as _protocol_version
from ipc_protocol.constants import (
    DEFAULT_HEARTBEAT_INTERVAL_S,
    DEFAULT_HOST,
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_PORT,
    MAX_FRAME_LIMIT,
)

__all__ = ["ServerConfig", "load_config", "ENV_PREFIX", "LOOPS", "SERVER_NAME"]

ENV_PREFIX = "IPC_SERVER_"
# What the handshake's reply names as the server (§3).
SERVER_NAME = f"ipc-bridge/{_protocol_version}"

DEFAULT_MAX_CONNECTIONS = 10_000
DEFAULT_HANDSHAKE_TIMEOUT_S = 10.0
# The hard slow-consumer cut is nats-server's 64 MiB; the soft limit only
# cuts a subscriber that stays behind (Redis's client-output-buffer-limit shape).
DEFAULT_MAX_OUTBOUND_BUFFER_BYTES = 64 * 1024 * 1024
DEFAULT_OUTBOUND_SOFT_LIMIT_BYTES = 16 * 1024 * 1024
DEFAULT_OUTBOUND_SOFT_LIMIT_S = 60.0
DEFAULT_MAX_INFLIGHT_PER_CONNECTION = 1024
DEFAULT_SHUTDOWN_GRACE_S = 5.0
# Auth on: a socket gets this long to present its credentials.
DEFAULT_AUTH_TIMEOUT_S = 2.0
# Sockets not yet past the handshake have a cap of their own, so silent ones
# never take the places of clients that hold the right credentials.
DEFAULT_MAX_PENDING_HANDSHAKES = 128
DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION = 100_000
DEFAULT_MAX_SUBSCRIPTIONS = 4_000_000
DEFAULT_MAX_REGISTRATIONS_PER_CONNECTION = 10_000
DEFAULT_MAX_REGISTRATIONS = 1_000_000
# A request that carries no deadline (version 1 clients) is held this long.
DEFAULT_SERVER_REQUEST_TIMEOUT_S = 60.0
DEFAULT_MAX_HELD_REQUESTS_PER_CONNECTION = 4096
# Event loops ``python -m ipc_server`` can run on; "uvloop" needs the optional
# ``uvloop`` extra.
LOOPS = ("asyncio", "uvloop")


# Settings that are a positive count or None (no limit).
_LIMITS = (
    "max_connections", "max_outbound_buffer_bytes", "outbound_soft_limit_bytes", "max_inflight_per_connection",
    "max_pending_handshakes", "max_subscriptions_per_connection", "max_subscriptions",
    "max_registrations_per_connection", "max_registrations", "max_held_requests_per_connection",
)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """Every server setting. ``None`` disables a limit where noted."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    log_level: str = "INFO"
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    max_connections: int | None = DEFAULT_MAX_CONNECTIONS
    handshake_timeout_s: float = DEFAULT_HANDSHAKE_TIMEOUT_S
    heartbeat_interval_s: float | None = DEFAULT_HEARTBEAT_INTERVAL_S
    max_outbound_buffer_bytes: int | None = DEFAULT_MAX_OUTBOUND_BUFFER_BYTES
    outbound_soft_limit_bytes: int | None = DEFAULT_OUTBOUND_SOFT_LIMIT_BYTES
    outbound_soft_limit_s: float = DEFAULT_OUTBOUND_SOFT_LIMIT_S
    max_inflight_per_connection: int | None = DEFAULT_MAX_INFLIGHT_PER_CONNECTION
    max_pending_handshakes: int | None = DEFAULT_MAX_PENDING_HANDSHAKES
    max_subscriptions_per_connection: int | None = DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION
    max_subscriptions: int | None = DEFAULT_MAX_SUBSCRIPTIONS
    max_registrations_per_connection: int | None = DEFAULT_MAX_REGISTRATIONS_PER_CONNECTION
    max_registrations: int | None = DEFAULT_MAX_REGISTRATIONS
    default_request_timeout_s: float | None = DEFAULT_SERVER_REQUEST_TIMEOUT_S
    max_held_requests_per_connection: int | None = DEFAULT_MAX_HELD_REQUESTS_PER_CONNECTION
    shutdown_grace_s: float = DEFAULT_SHUTDOWN_GRACE_S
    token: str | None = field(default=None, repr=False)
    token_file: str | None = None
    users_file: str | None = None
    auth_timeout_s: float = DEFAULT_AUTH_TIMEOUT_S
    # TLS (docs/security.md): a certificate and key make the port TLS only;
    # a CA makes client certificates required and checked against it.
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    expose_stacks: bool = False
    # Only read by ``python -m ipc_server``: an embedded server runs on the
    # loop its caller started.
    loop: str = "asyncio"

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0-65535, got {self.port}")
        if not 0 < self.max_frame_size <= MAX_FRAME_LIMIT:
            raise ValueError(f"max_frame_size must be 1..{MAX_FRAME_LIMIT}")
        for name in _LIMITS:
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive or None")
        for name in ("handshake_timeout_s", "shutdown_grace_s", "auth_timeout_s", "outbound_soft_limit_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.default_request_timeout_s is not None and self.default_request_timeout_s <= 0:
            raise ValueError("default_request_timeout_s must be positive or None")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if self.tls_ca is not None and self.tls_cert is None:
            raise ValueError("tls_ca (client certificates) needs tls_cert and tls_key")
        if self.token is not None and self.token_file is not None:
            raise ValueError("token and token_file are two ways to give one secret: set one")
        if self.heartbeat_interval_s is not None and self.heartbeat_interval_s < 0:
            raise ValueError("heartbeat_interval_s must not be negative (0 or None turns heartbeats off)")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(f"unknown log level {self.log_level!r}")
        if self.loop not in LOOPS:
            raise ValueError(f"loop must be one of {', '.join(LOOPS)}, got {self.loop!r}")

    @property
    def auth_enabled(self) -> bool:
        """Clients must present credentials (a token or a user's)."""
        return self.token is not None or self.token_file is not None or self.users_file is not None

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert is not None

    def replace(self, **changes: Any) -> ServerConfig:
        return dataclasses.replace(self, **changes)


_FIELDS = {f.name: f for f in fields(ServerConfig)}


def _coerce(name: str, raw: Any) -> Any:
    """Convert a TOML or environment value to the field's type."""
    annotation = str(_FIELDS[name].type)
    if raw is None:
        return None
    if (
        isinstance(raw, str)
        and raw.strip().lower() in ("none", "null", "off")
        and "None" in annotation
        and not annotation.startswith("str")  # a token may be any string
    ):
        return None
    if annotation.startswith("bool"):
        if isinstance(raw, bool):
            return raw
        return str(raw).strip().lower() in ("1", "true", "yes", "on")
    if annotation.startswith("int"):
        return int(raw)
    if annotation.startswith("float"):
        return float(raw)
    return str(raw)


def _from_mapping(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, raw in values.items():
        name = key.replace("-", "_")
        if name not in _FIELDS:
            raise ValueError(f"{source}: unknown setting {key!r}")
        out[name] = _coerce(name, raw)
    return out


def load_config(
    *,
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ServerConfig:
    """Merge defaults < TOML file < environment < ``overrides`` (CLI flags).

    The TOML file holds the settings at top level or in a ``[server]`` table;
    ``IPC_SERVER_CONFIG`` names a file when ``path`` is not given.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    path = path or env.get(ENV_PREFIX + "CONFIG")
    if path:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        values.update(_from_mapping(data.get("server", data), str(path)))
    env_values = {
        key[len(ENV_PREFIX) :].lower(): value
        for key, value in env.items()
        if key.startswith(ENV_PREFIX) and key != ENV_PREFIX + "CONFIG"
    }
    values.update(_from_mapping(env_values, "environment"))
    values.update({k: v for k, v in (overrides or {}).items()})
    return ServerConfig(**values)
