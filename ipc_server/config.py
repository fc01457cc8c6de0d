"""Server settings: defaults, then a TOML file, then environment variables,
then command-line flags, validated once (docs/protocol.md §12)."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
from dataclasses import dataclass, field, fields
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from ipc_protocol import __version__ as _protocol_version
from ipc_protocol.constants import (
    DEFAULT_HEARTBEAT_INTERVAL_S,
    DEFAULT_HOST,
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_PORT,
    MAX_FRAME_LIMIT,
    MIN_HEARTBEAT_INTERVAL_S,
)

from .logs import LOG_FORMATS
from .config_file import config_path, read_settings
from .decimals import ASCII_SPACE, parse_float, parse_int

__all__ = ["ServerConfig", "load_config", "env_name", "SETTINGS", "ENV_PREFIX", "LOOPS", "SERVER_NAME"]

log = logging.getLogger("ipc_server.config")

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
# Restarts (docs/protocol.md §13): how long a request for a channel nobody
# serves waits for a responder after a start or when replayed, and how long
# clients get to move away once told the server is leaving (lame duck).
DEFAULT_NO_RESPONDERS_GRACE_S = 2.0
DEFAULT_LAME_DUCK_DURATION_S = 5.0
# Auth on: a socket gets this long to present its credentials.
DEFAULT_AUTH_TIMEOUT_S = 2.0
# Sockets not yet past the handshake have a cap of their own, so silent ones
# never take the places of clients that hold the right credentials.
DEFAULT_MAX_PENDING_HANDSHAKES = 128
DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION = 100_000
DEFAULT_MAX_SUBSCRIPTIONS = 4_000_000
DEFAULT_MAX_REGISTRATIONS_PER_CONNECTION = 10_000
DEFAULT_MAX_REGISTRATIONS = 1_000_000
# The tokens of one connection's wildcard patterns (subscriptions and
# registrations together): the pattern index costs up to ~300 bytes a
# token, so this keeps one connection's share near 64 MiB, the outbound
# limit's size (docs/protocol.md §12). Exact channels are not counted.
DEFAULT_MAX_PATTERN_TOKENS_PER_CONNECTION = 2**18
# The tokens of the distinct wildcard patterns in one app's index, its
# connections' together: a publish or request walks at most that many nodes,
# whatever the number of connections holding them (docs/security.md §5).
DEFAULT_MAX_PATTERN_TOKENS_PER_APP = 2**19
# The JSON Schemas serve registrations declare, in encoded bytes: held parsed,
# ~11 times that (150 schemas of 1.11 MiB took 1.8 GB), so one connection's
# share stays near the outbound limit's size, the server's under ~1 GB. A
# typed channel's schemas are a few hundred bytes to a few KB.
DEFAULT_MAX_SCHEMA_BYTES_PER_CONNECTION = 4 * 1024 * 1024
DEFAULT_MAX_SCHEMA_BYTES = 64 * 1024 * 1024
# A request that carries no deadline (version 1 clients) is held this long.
DEFAULT_SERVER_REQUEST_TIMEOUT_S = 60.0
DEFAULT_MAX_HELD_REQUESTS_PER_CONNECTION = 4096
# Idempotency keys (docs/protocol.md §6.6): answers kept 5 minutes, at most
# this many, and this many bytes of them (the hard slow-consumer cut's size).
DEFAULT_IDEMPOTENCY_WINDOW_S = 300.0
DEFAULT_IDEMPOTENCY_MAX_KEYS = 100_000
DEFAULT_IDEMPOTENCY_MAX_BYTES = 64 * 1024 * 1024
# Cluster mode: bytes a node holds for NATS before it refuses new traffic
# (twice that for answers and its own messages); NATS's Go client's reconnect buffer.
DEFAULT_CLUSTER_MAX_PENDING_BYTES = 8 * 1024 * 1024
# The longest heartbeat interval: 2^53-1 ms, advertised exactly (§1.1).
_MAX_HEARTBEAT_INTERVAL_S = (2**53 - 1) / 1000
# Event loops ``python -m ipc_server`` can run on; "uvloop" needs the optional
# ``uvloop`` extra.
LOOPS = ("asyncio", "uvloop")


# Settings that are a positive count or None (no limit).
_LIMITS = (
    "max_connections", "max_outbound_buffer_bytes", "outbound_soft_limit_bytes", "max_inflight_per_connection",
    "max_pending_handshakes", "max_subscriptions_per_connection", "max_subscriptions",
    "max_registrations_per_connection", "max_registrations", "max_pattern_tokens_per_connection",
    "max_pattern_tokens_per_app", "max_schema_bytes_per_connection", "max_schema_bytes", "max_held_requests_per_connection",
    "idempotency_max_keys", "idempotency_max_bytes",
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
    max_pattern_tokens_per_connection: int | None = DEFAULT_MAX_PATTERN_TOKENS_PER_CONNECTION
    max_pattern_tokens_per_app: int | None = DEFAULT_MAX_PATTERN_TOKENS_PER_APP
    max_schema_bytes_per_connection: int | None = DEFAULT_MAX_SCHEMA_BYTES_PER_CONNECTION
    max_schema_bytes: int | None = DEFAULT_MAX_SCHEMA_BYTES
    default_request_timeout_s: float | None = DEFAULT_SERVER_REQUEST_TIMEOUT_S
    max_held_requests_per_connection: int | None = DEFAULT_MAX_HELD_REQUESTS_PER_CONNECTION
    idempotency_window_s: float = DEFAULT_IDEMPOTENCY_WINDOW_S
    idempotency_max_keys: int | None = DEFAULT_IDEMPOTENCY_MAX_KEYS
    idempotency_max_bytes: int | None = DEFAULT_IDEMPOTENCY_MAX_BYTES
    shutdown_grace_s: float = DEFAULT_SHUTDOWN_GRACE_S
    no_responders_grace_s: float = DEFAULT_NO_RESPONDERS_GRACE_S
    lame_duck_duration_s: float = DEFAULT_LAME_DUCK_DURATION_S
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
    # Operations (docs/operations.md): GET /metrics and /healthz on this port
    # (None: not served; 0: any free port), bound on loopback unless told;
    # the log's format, text or json (one object per line).
    metrics_port: int | None = None
    metrics_host: str = DEFAULT_HOST
    log_format: str = "text"
    # Only read by ``python -m ipc_server``: an embedded server runs on the
    # loop its caller started.
    loop: str = "asyncio"
    # Cluster mode (docs/cluster.md): the NATS servers the node joins through
    # (empty: a standalone server), the cluster's subject namespace, this
    # node's name (default: host and process id), the heartbeat interval
    # (a node silent for three is gone), the bytes held for NATS before
    # traffic is refused, and the NATS link's credentials and TLS.
    cluster: tuple[str, ...] = ()
    cluster_name: str = "ipcb"
    node_name: str | None = None
    cluster_heartbeat_s: float = 0.5
    cluster_max_pending_bytes: int = DEFAULT_CLUSTER_MAX_PENDING_BYTES
    cluster_creds: str | None = None
    cluster_tls_ca: str | None = None
    cluster_tls_cert: str | None = None
    cluster_tls_key: str | None = None
    # ``python -m ipc_server --workers N``: N server processes on one port
    # (docs/cluster.md §7), each bound with SO_REUSEPORT (``reuse_port``).
    workers: int = 1
    reuse_port: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0-65535, got {self.port}")
        if not 0 < self.max_frame_size <= MAX_FRAME_LIMIT:
            raise ValueError(f"max_frame_size must be 1..{MAX_FRAME_LIMIT}, got {self.max_frame_size}")
        for name in _SECONDS:  # nan passes every comparison, inf overflows the timers
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number of seconds, got {value}")
        for name in _LIMITS:
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive or None")
        for name in ("shutdown_grace_s", "outbound_soft_limit_s", "idempotency_window_s", "no_responders_grace_s", "lame_duck_duration_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        for name in ("handshake_timeout_s", "auth_timeout_s"):  # a socket is never held without a deadline (docs/security.md §4)
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be more than 0 s: a socket that never completes its handshake would be held forever")
        if self.default_request_timeout_s is not None and self.default_request_timeout_s < 0:
            raise ValueError("default_request_timeout_s must not be negative (0, or None, holds a request until it is answered)")
        if self.default_request_timeout_s == 0:  # 0 means off, from every source: the flag's "0" and "0.0", a variable, TOML, code
            object.__setattr__(self, "default_request_timeout_s", None)
        for name in _PATHS:  # an unset variable in a compose file, say: no file at all
            if getattr(self, name) is not None and not getattr(self, name).strip():
                raise ValueError(f"{name} is empty: give a file's path, or leave the setting unset")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if self.tls_ca is not None and self.tls_cert is None:
            raise ValueError("tls_ca (client certificates) needs tls_cert and tls_key")
        for name in ("host", "metrics_host"):  # asyncio binds "" on every interface, IPv4 and IPv6
            if not getattr(self, name).strip():
                raise ValueError(f"{name} must not be empty: give 0.0.0.0 or :: to listen on every interface")
        if self.token == "":  # an unset variable in a compose file, say: no secret at all
            raise ValueError("token must not be empty (unset it to turn the shared token off)")
        if self.token is not None and self.token_file is not None:
            raise ValueError("token and token_file are two ways to give one secret: set one")
        if self.users_file is not None and (self.token is not None or self.token_file is not None):
            raise ValueError("users_file replaces the shared token: give its clients a user (docs/security.md §3), or drop users_file")
        _check_heartbeat(self.heartbeat_interval_s)
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(f"log_level must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {self.log_level!r}")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ValueError(f"metrics_port must be 0-65535 or none, got {self.metrics_port}")
        if self.metrics_port and self.metrics_port + self.workers - 1 > 65535:  # worker I's endpoint is on metrics_port + I - 1
            raise ValueError(f"metrics_port {self.metrics_port} with workers {self.workers}: worker {self.workers}'s endpoint would be on "
                             f"{self.metrics_port + self.workers - 1} (worker I's is on metrics_port + I - 1): give at most {65536 - self.workers}, or 0")  # fmt: skip
        if self.log_format not in LOG_FORMATS:
            raise ValueError(f"log_format must be one of {', '.join(LOG_FORMATS)}, got {self.log_format!r}")
        if self.loop not in LOOPS:
            raise ValueError(f"loop must be one of {', '.join(LOOPS)}, got {self.loop!r}")
        _check_cluster(self)

    @property
    def auth_enabled(self) -> bool:
        """Clients must present credentials (a token or a user's)."""
        return self.token is not None or self.token_file is not None or self.users_file is not None

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert is not None

    def replace(self, **changes: Any) -> ServerConfig:
        return dataclasses.replace(self, **changes)


def _check_heartbeat(interval: float | None) -> None:
    """0 or None turns heartbeats off; anything else is at least 10 ms (a
    shorter interval would close every client and make the sweep a busy
    loop) and at most what the connect reply's ``heartbeat_interval_ms``
    carries exactly to a JavaScript client (2^53-1 ms, docs/protocol.md §1.1)."""
    if interval is not None and interval < 0:
        raise ValueError("heartbeat_interval_s must not be negative (0 or None turns heartbeats off)")
    if interval and interval < MIN_HEARTBEAT_INTERVAL_S:
        raise ValueError(f"heartbeat_interval_s must be at least {MIN_HEARTBEAT_INTERVAL_S:g} s (or 0 or None to turn heartbeats off), got {interval:g}")
    if interval and interval > _MAX_HEARTBEAT_INTERVAL_S:
        raise ValueError(f"heartbeat_interval_s must be at most {_MAX_HEARTBEAT_INTERVAL_S:g} s (2^53-1 ms), got {interval:g}")


def _check_cluster(config: ServerConfig) -> None:
    """The cluster settings' checks (docs/cluster.md §6)."""
    for url in config.cluster:
        if urlsplit(url).scheme not in ("nats", "tls") or not urlsplit(url).hostname:
            raise ValueError(f"cluster must be nats:// or tls:// URLs, got {url!r}")
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", config.cluster_name):
        raise ValueError(f"cluster_name must be 1-64 letters, digits, '-' or '_', got {config.cluster_name!r}")
    if config.node_name is not None and not config.node_name.strip():
        raise ValueError("node_name must not be empty")
    if not config.cluster_heartbeat_s >= MIN_HEARTBEAT_INTERVAL_S:  # a shorter one is a busy loop of NATS publishes
        raise ValueError(f"cluster_heartbeat_s must be at least {MIN_HEARTBEAT_INTERVAL_S:g} s, got {config.cluster_heartbeat_s:g}")
    if config.cluster_max_pending_bytes <= 0:
        raise ValueError(f"cluster_max_pending_bytes must be positive, got {config.cluster_max_pending_bytes}")
    for name in ("cluster_creds", "cluster_tls_ca", "cluster_tls_cert", "cluster_tls_key"):
        if getattr(config, name) is not None and not config.cluster:  # --workers' own nats-server asks for neither
            raise ValueError(f"{name} is for the NATS link of cluster, which is not set: set cluster (NATS URLs), or drop {name}")
    if (config.cluster_tls_cert is None) != (config.cluster_tls_key is None):
        raise ValueError("cluster_tls_cert and cluster_tls_key go together")
    if config.workers < 1:
        raise ValueError(f"workers must be at least 1, got {config.workers}")


_FIELDS = {f.name: f for f in fields(ServerConfig)}
# The settings in seconds (every float one), checked finite.
_SECONDS = tuple(name for name, f in _FIELDS.items() if str(f.type).startswith("float"))
# The settings that name a file.
_PATHS = ("token_file", "users_file", "tls_cert", "tls_key", "tls_ca", "cluster_creds", "cluster_tls_ca", "cluster_tls_cert", "cluster_tls_key")
# Every setting's name (a field of ServerConfig, a TOML key, IPC_SERVER_<NAME>).
SETTINGS = frozenset(_FIELDS)
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_NONE_WORDS = ("none", "null", "off")


def env_name(field_name: str) -> str:
    """The environment variable of a setting: ``port`` -> ``IPC_SERVER_PORT``."""
    return ENV_PREFIX + field_name.upper()


def _coerce(name: str, raw: Any, where: str) -> Any:
    """A TOML or environment value as the field's type; ``where`` names the
    value's origin in the error (``IPC_SERVER_PORT``, ``server.toml: port``)."""
    annotation = str(_FIELDS[name].type)
    optional = "None" in annotation
    if raw is None:
        return None
    text = raw.strip(ASCII_SPACE) if isinstance(raw, str) else raw
    if (
        isinstance(text, str)
        and text.lower() in _NONE_WORDS
        and optional
        and not annotation.startswith("str")  # a token or a path may be any string
    ):
        return None
    if annotation.startswith("tuple"):  # a TOML list, or a comma-separated string
        items = raw.split(",") if isinstance(raw, str) else raw
        if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
            raise ValueError(f"{where}: expected a list of strings or a comma-separated string, got {raw!r}")
        return tuple(i.strip() for i in items if i.strip())
    if annotation.startswith("bool"):
        if isinstance(text, bool) or (type(text) is int and text in (0, 1)):  # TOML's integers 1 and 0 too, as "1" and "0"
            return bool(text)
        if isinstance(text, str) and text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        raise ValueError(f"{where}: expected true or false (or yes/no, on/off, 1/0), got {raw!r}")
    if annotation.startswith("int"):
        if isinstance(text, bool) or isinstance(text, float):
            raise ValueError(f"{where}: expected an integer{' or none' if optional else ''}, got {raw!r}")
        try:
            return parse_int(text) if isinstance(text, str) else int(text)  # ASCII digits: int() takes '８８８８' and '1_0'
        except (TypeError, ValueError):
            raise ValueError(f"{where}: expected an integer{' or none' if optional else ''}, got {raw!r}") from None
    if annotation.startswith("float"):
        if isinstance(text, bool):
            raise ValueError(f"{where}: expected a number of seconds, got {raw!r}")
        try:
            seconds = parse_float(text) if isinstance(text, str) else float(text)
        except (TypeError, ValueError):
            seconds = math.nan
        if not math.isfinite(seconds):  # float() takes 'nan' and 'inf', TOML too
            raise ValueError(f"{where}: expected a number{' or none' if optional else ''}, got {raw!r}")
        return seconds
    if not isinstance(raw, str):
        raise ValueError(f"{where}: expected a string, got {raw!r}")
    return raw


def load_config(
    *,
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    warn: Callable[[str], None] | None = None,
) -> ServerConfig:
    """Merge defaults < TOML file < environment < ``overrides`` (CLI flags).

    The TOML file holds the settings at top level or in a ``[server]`` table;
    ``IPC_SERVER_CONFIG`` names a file when ``path`` is not given; an empty
    path from either is refused. Errors name
    the setting and where its value came from. An unknown key in the file is
    an error; an unknown ``IPC_SERVER_*`` variable only a warning, passed to
    ``warn`` (default: logged), since a stray variable in a shared
    environment must not stop a server.
    """
    env = os.environ if env is None else env
    warn = warn or log.warning
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    path = config_path(path, env)  # an empty one is refused
    if path is not None:
        for name, (key, raw) in read_settings(path, _FIELDS).items():
            origin[name] = f"{path}: {key}"
            values[name] = _coerce(name, raw, origin[name])
    for var, raw in env.items():
        if not var.startswith(ENV_PREFIX) or var == ENV_PREFIX + "CONFIG":
            continue
        name = var[len(ENV_PREFIX) :].lower()
        if name not in _FIELDS:
            warn(f"{var}: unknown setting, ignored")
            continue
        origin[name] = var
        values[name] = _coerce(name, raw, var)
    for name, value in (overrides or {}).items():
        origin[name] = "command line"
        values[name] = value
    try:
        return ServerConfig(**values)
    except ValueError as exc:
        # ServerConfig's checks start with the field's name: add its origin.
        name = str(exc).split(" ", 1)[0]
        if name in origin:
            raise ValueError(f"{origin[name]}: {exc}") from None
        raise
