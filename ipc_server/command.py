"""``python -m ipc_server``: run the bridge's server (``__main__`` runs it
once it has caught the signals, or runs a subcommand instead).

Settings come from (lowest to highest) the defaults, a TOML file
(``--config`` or ``IPC_SERVER_CONFIG``), ``IPC_SERVER_*`` environment
variables and these flags. The first line on stdout is
``ipc_server listening on HOST:PORT``, so scripts and tests can start it on
port 0 and read the port back.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any

from ipc_protocol.version import __version__

from .config import LOOPS, SETTINGS, ServerConfig, env_name, load_config
from .decimals import parse_float, parse_int
from .cluster import require_nats
from .cluster.link_files import check_link_files
from .early_signals import EarlySignals
from .http_endpoint import EndpointBindError
from .log_sink import drain_logging
from .logs import LOG_FORMATS, configure_logging, peer_text
from .process import StartRefused, serve_until_signalled
from .program import DEFAULT_PROG, SUBCOMMANDS, message_name
from .server import IPCServer
from .users import read_auth_files
from .tls import server_context

__all__ = ["main", "build_parser", "loop_factory"]

log = logging.getLogger("ipc_server")


def _int(value: str) -> int:
    """An integer in ASCII decimal digits (decimals.py), refused as argparse refuses one ``int`` cannot read."""
    try:
        return parse_int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {value!r}") from None


def _float(value: str) -> float:
    """A decimal number in ASCII digits (decimals.py), refused as argparse refuses one ``float`` cannot read."""
    try:
        return parse_float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {value!r}") from None


def _limit(value: str) -> int | None:
    """A positive number, or ``none``/``off`` for no limit."""
    if value.strip().lower() in ("none", "off"):
        return None
    try:
        return parse_int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'none', got {value!r}") from None


def _seconds_or_off(value: str) -> float | None:
    """Seconds, or ``none``/``off`` for none (0 is off too: ServerConfig
    reads it so from every source)."""
    if value.strip().lower() in ("none", "off"):
        return None
    try:
        return parse_float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds or 'off', got {value!r}") from None


def _port_or_off(value: str) -> int | None:
    """A port number (0: any free one), or ``none``/``off``."""
    if value.strip().lower() in ("none", "off"):
        return None
    try:
        return parse_int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number or 'off', got {value!r}") from None


def _urls(value: str) -> tuple[str, ...]:
    """Comma-separated URLs."""
    return tuple(u.strip() for u in value.split(",") if u.strip())


def _default_text(name: str, value: Any) -> str:
    if value is None or value == ():
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int) and (name.endswith("_bytes") or name == "max_frame_size") and value % 2**20 == 0:
        return f"{value // 2**20} MiB"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _document_settings(parser: argparse.ArgumentParser) -> None:
    """Every setting's help ends with its real default and its variable, so
    ``--help`` cannot drift from ServerConfig."""
    defaults = ServerConfig()
    for action in parser._actions:
        if action.dest not in SETTINGS:
            continue
        shown = _default_text(action.dest, getattr(defaults, action.dest))
        secret = action.dest == "token"
        extra = f"env {env_name(action.dest)}" if secret else f"default {shown}; env {env_name(action.dest)}"
        action.help = f"{action.help} ({extra})"
        if action.type in (_int, _limit, _port_or_off):
            action.metavar = "N"
        elif action.type in (_float, _seconds_or_off):
            action.metavar = "SECONDS"


def _commands_text() -> str:
    """The subcommands, one a line, as git and nats list theirs."""
    width = max(map(len, SUBCOMMANDS))
    return "\n".join(f"  {name.ljust(width)}  {line}" for name, line in SUBCOMMANDS.items())


def build_parser(prog: str = DEFAULT_PROG) -> argparse.ArgumentParser:
    """The server's flags; ``--help`` names the subcommands too. ``prog``:
    the command as it was started (``program.program_name``)."""
    # SUPPRESS: only flags actually given appear, so "none"/"off" (None) can override.
    p = argparse.ArgumentParser(
        prog=prog,
        usage=f"%(prog)s [options]\n       %(prog)s {{{','.join(SUBCOMMANDS)}}} [options]",
        description="IPC bridge server (Python <-> Node)",
        argument_default=argparse.SUPPRESS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"commands (each has its own --help):\n{_commands_text()}\n\n"
        "Settings come from, lowest to highest: the defaults, the TOML file,\nIPC_SERVER_<NAME> variables, these flags.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--config", metavar="FILE", help="TOML file with settings (top level or a [server] table; env IPC_SERVER_CONFIG)")
    p.add_argument("--host", help="interface to bind")
    p.add_argument("--port", type=_int, help="TCP port, 0 for any free port")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR")
    p.add_argument("--max-frame-size", type=_int, help="largest frame body in bytes")
    p.add_argument("--max-connections", type=_limit, help="connections accepted at once; 'none' for no limit")
    p.add_argument("--handshake-timeout", type=_float, dest="handshake_timeout_s", help="seconds to wait for the connect frame; more than 0")
    p.add_argument(
        "--heartbeat-interval",
        type=_seconds_or_off,
        dest="heartbeat_interval_s",
        help="seconds of silence before the server pings a client; 'off' disables",
    )
    p.add_argument("--max-outbound-buffer", type=_limit, dest="max_outbound_buffer_bytes", help="bytes queued for one client before it is cut as a slow consumer")
    p.add_argument("--outbound-soft-limit", type=_limit, dest="outbound_soft_limit_bytes", help="bytes queued for one client that, held for --outbound-soft-limit-time, make it a slow consumer")
    p.add_argument("--outbound-soft-limit-time", type=_float, dest="outbound_soft_limit_s", help="seconds a client may stay over the soft limit")
    p.add_argument("--max-inflight", type=_limit, dest="max_inflight_per_connection", help="requests in flight per connection before reading pauses")
    p.add_argument("--max-pending-handshakes", type=_limit, help="sockets accepted but not yet past the handshake")
    p.add_argument("--max-subscriptions-per-connection", type=_limit, help="subscriptions one connection may hold")
    p.add_argument("--max-subscriptions", type=_limit, help="subscriptions on the whole server")
    p.add_argument("--max-registrations-per-connection", type=_limit, help="channels or patterns one connection may serve")
    p.add_argument("--max-registrations", type=_limit, help="serve registrations on the whole server")
    p.add_argument("--max-pattern-tokens-per-connection", type=_limit, help="tokens of the wildcard patterns one connection may subscribe to and serve, in all")
    p.add_argument("--max-pattern-tokens-per-app", type=_limit, help="tokens of the distinct wildcard patterns one app's connections may subscribe to and serve, in all")
    p.add_argument("--max-schema-bytes-per-connection", type=_limit, help="bytes of the JSON Schemas one connection's serve registrations may declare, in all (encoded)")
    p.add_argument("--max-schema-bytes", type=_limit, help="bytes of the JSON Schemas serve registrations declare on the whole server (encoded)")
    p.add_argument("--default-request-timeout", type=_seconds_or_off, dest="default_request_timeout_s", help="seconds the server holds a request that carries no deadline; 'off' or 0 holds it until answered")
    p.add_argument("--max-held-requests", type=_limit, dest="max_held_requests_per_connection", help="forwarded requests one responder may hold unanswered")
    p.add_argument("--idempotency-window", type=_float, dest="idempotency_window_s", help="seconds the answer of a request with an idempotency key is kept for its retries; 0 keeps none (a retry still joins a running one)")
    p.add_argument("--idempotency-max-keys", type=_limit, help="answers of idempotency keys kept at most; the oldest go first")
    p.add_argument("--idempotency-max-bytes", type=_limit, help="bytes of answers of idempotency keys kept at most; the oldest go first")
    p.add_argument("--shutdown-grace", type=_float, dest="shutdown_grace_s", help="seconds in-flight requests get to finish on shutdown")
    p.add_argument("--no-responders-grace", type=_float, dest="no_responders_grace_s", help="seconds a request for a channel nobody serves waits for a responder after the first client's connect, or when a client replays it; 0: no_responders at once")
    p.add_argument("--lame-duck-duration", type=_float, dest="lame_duck_duration_s", help="seconds clients get to move to another server after SIGTERM before the server closes; 0: close at once")
    p.add_argument("--token", help="shared secret clients must present in the handshake (visible in ps: prefer --token-file)")
    p.add_argument("--token-file", help="file whose content (trailing newline stripped) is the shared secret")
    p.add_argument("--users", dest="users_file", help="TOML file of users, their credentials and permissions (docs/security.md)")
    p.add_argument("--auth-timeout", type=_float, dest="auth_timeout_s", help="seconds a socket gets to present its credentials when auth is on; more than 0")
    p.add_argument("--tls-cert", help="PEM certificate chain: the port speaks TLS only")
    p.add_argument("--tls-key", help="PEM private key of --tls-cert")
    p.add_argument("--tls-ca", help="PEM CA bundle: client certificates are required and verified (mutual TLS)")
    p.add_argument("--expose-stacks", action="store_true", help="send handler stack traces to clients")
    p.add_argument("--metrics-port", type=_port_or_off, help="serve GET /metrics (Prometheus) and GET /healthz on this port, 0 for any free one; 'off' for none (docs/operations.md)")
    p.add_argument("--metrics-host", help="interface of the metrics port (loopback unless told)")
    p.add_argument("--log-format", choices=LOG_FORMATS, help="text, or json: one object per line with ts, level, logger, msg and app, peer, connection_id, reason where they apply")
    p.add_argument("--loop", choices=LOOPS, help="event loop: asyncio or uvloop (pip install 'ipc-bridge[uvloop]')")
    p.add_argument("--cluster", type=_urls, help="NATS URLs (nats://HOST:PORT, comma-separated) this node joins the cluster through (docs/cluster.md; pip install 'ipc-bridge[cluster]')")
    p.add_argument("--cluster-name", help="the cluster's subject namespace on NATS: nodes with the same name form one cluster")
    p.add_argument("--node-name", help="this node's name in the cluster (default: HOST-PID-XXXX: host name, process id, 4 random hex digits)")
    p.add_argument("--cluster-heartbeat", type=_float, dest="cluster_heartbeat_s", help="seconds between a node's heartbeats; a node silent for three is gone")
    p.add_argument("--cluster-max-pending", type=_int, dest="cluster_max_pending_bytes", help="bytes held for NATS that it has not taken before a client's publish (dropped) or a new request (no_responders) is refused; answers and the node's own messages get up to twice that")
    p.add_argument("--cluster-creds", help="NATS credentials file (JWT and NKey seed) for the cluster link")
    p.add_argument("--cluster-tls-ca", help="PEM CA bundle that verifies the NATS servers (tls:// URLs)")
    p.add_argument("--cluster-tls-cert", help="PEM client certificate for the NATS link")
    p.add_argument("--cluster-tls-key", help="PEM private key of --cluster-tls-cert")
    p.add_argument("--reuse-port", action="store_true", help="bind with SO_REUSEPORT, so several servers listen on one port (what --workers does)")
    p.add_argument("--workers", type=_int, help="server processes on one port (SO_REUSEPORT), joined through --cluster or a nats-server started for them (docs/cluster.md §7)")
    _document_settings(p)
    return p


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop factory for ``--loop`` (None: asyncio's default).

    Raises ``ImportError`` with an installation hint when uvloop is missing.
    """
    if name == "asyncio":
        return None
    try:
        import uvloop
    except ImportError as exc:
        raise ImportError(f"--loop {name} needs the uvloop package: pip install 'ipc-bridge[uvloop]'") from exc
    return uvloop.new_event_loop


def main(argv: list[str], *, prog: str = DEFAULT_PROG, early: EarlySignals | None = None) -> int:
    """Run the server with the flags ``argv`` until a signal; the exit code.
    ``prog``: the command as it was started, in its usage and messages;
    ``early``: the signals caught since the process started (``__main__``)."""
    name = message_name(prog)
    overrides: dict[str, Any] = vars(build_parser(prog).parse_args(argv))
    path = overrides.pop("config", None)
    try:
        config: ServerConfig = load_config(path=path, overrides=overrides, warn=lambda text: print(f"{name}: warning: {text}", file=sys.stderr))
        server_context(config)  # a TLS file missing, not PEM or not matching fails here (docs/security.md §2)
        config, users = read_auth_files(config)  # a users or token file that cannot be used fails here, each read once (docs/security.md §3)
        check_link_files(config)  # and the NATS link's credentials and TLS files (docs/cluster.md §6)
    except (ValueError, OSError) as exc:
        print(f"{name}: invalid configuration: {exc}", file=sys.stderr)
        return 2
    try:
        factory = loop_factory(config.loop)
        if config.cluster:
            require_nats()
    except ImportError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level, config.log_format)  # docs/operations.md §4
    if early is not None and early.stop is not None:  # while it started: nothing runs yet, nothing to stop
        log.info("%s while starting: not started", signal.Signals(early.stop).name)
        return 0
    if config.workers > 1:  # a supervisor of N servers on one port (docs/cluster.md §7)
        from .cluster.workers import supervise

        return supervise(config, argv, name=name, early=early)

    def ready(server: Any) -> None:
        drain_logging()  # the lines logged so far come first on a shared terminal (bounded)
        print(f"ipc_server listening on {peer_text((server.host, server.port))}", flush=True)  # [v6]:port, as the logs
        if server.metrics is not None:  # the second line, with --metrics-port: a URL, so an IPv6 host in brackets
            host = str(server.metrics.endpoint.host)
            print(f"ipc_server metrics on http://{f'[{host}]' if ':' in host else host}:{server.metrics.port}/metrics", flush=True)

    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(serve_until_signalled(lambda: IPCServer(config=config, users=users), ready=ready, early=early))
    except StartRefused as exc:  # a setting only the server could check
        drain_logging()  # the lines logged before it first, on the same stderr
        print(f"{name}: invalid configuration: {exc}", file=sys.stderr)
        return 2
    except EndpointBindError as exc:  # the metrics port's, not the main one's
        drain_logging()
        print(f"{name}: cannot listen on the {exc.strerror}", file=sys.stderr)
        return 1
    except OSError as exc:
        drain_logging()
        print(f"{name}: cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 1
    return 0
