"""``python -m ipc_server stats|connections|channels|services``: a running
server's figures as tables, or as JSON with ``--json`` (docs/operations.md §3).

It connects with the real Python client, as any application would, and asks
the ``system`` channel (docs/protocol.md §8): ``stats`` the totals,
``connections`` one row per connection (a ``monitor`` user's action when
the server has users), ``channels`` and ``services`` those of ``--app``.
The client is imported only when a view runs, so the server's start pays
nothing for it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from ipc_protocol.constants import DEFAULT_HOST, DEFAULT_PORT, MAX_CONNECT_ID_LENGTH
from ipc_protocol.printable import printable

from .decimals import parse_int
from .program import DEFAULT_PROG, VIEWS, message_name

if TYPE_CHECKING:
    from ipc_client import IPCClient

__all__ = ["main", "VIEWS", "render", "table"]

DEFAULT_APP = "app"
PAGED = ("channels", "services", "connections")  # the views of a paged action (docs/protocol.md §8)
DEFAULT_TIMEOUT_S = 5.0


def _parser(view: str, prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"{prog} {view}",
        description=f"Print the {view} of a running server (docs/operations.md).",
    )
    p.add_argument("--host", type=_host, default=DEFAULT_HOST, help=f"the server's host (default {DEFAULT_HOST})")
    p.add_argument("--port", type=_port, default=DEFAULT_PORT, help=f"the server's port (default {DEFAULT_PORT})")
    p.add_argument("--app", type=_connect_id, default=DEFAULT_APP, help=f"the app to connect as; channels and services are its own (default {DEFAULT_APP})")
    p.add_argument("--user", type=_connect_id, help="the user to connect as (servers with a users file)")
    p.add_argument("--token-file", help="file holding the token (the shared one, or the user's); never on the command line")
    p.add_argument("--tls", action="store_true", help="TLS, verified against the system's CAs")
    p.add_argument("--tls-ca", help="PEM CA bundle that signed the server's certificate (turns TLS on)")
    p.add_argument("--tls-cert", help="PEM client certificate (mutual TLS)")
    p.add_argument("--tls-key", help="PEM key of --tls-cert")
    p.add_argument("--tls-server-hostname", type=_host, help="the name the server's certificate must carry, if not --host")
    p.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT_S, help=f"seconds for connecting and for the answer (default {DEFAULT_TIMEOUT_S:g})")
    if view in PAGED:
        p.add_argument("--offset", type=_count, help="rows to skip: the next page starts where the last one ended (default 0)")
        p.add_argument("--limit", type=_count, help="rows at most (the server's default and most: 1024)")
    p.add_argument("--json", action="store_true", help="print the answer as JSON instead of tables")
    return p


# A decimal number as ipc-bridge-types reads --timeout (not int()'s and
# float()'s " 5", "1_000" or non-ASCII digits), so both take the same values.
_DECIMAL = re.compile(r"\+?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def _port(text: str) -> int:
    """A TCP port: out of range is a usage error, not the socket's OverflowError."""
    port = int(text) if re.fullmatch("[0-9]+", text) else -1
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 1-65535, got {text!r}")
    return port


def _seconds(text: str) -> float:
    """A positive, finite number of seconds: 0, a negative, ``inf`` or
    ``nan`` is a usage error, not a connect that fails for no reason."""
    seconds = float(text) if _DECIMAL.fullmatch(text) else math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise argparse.ArgumentTypeError(f"expected a positive, finite number of seconds, got {text!r}")
    return seconds


def _host(text: str) -> str:
    """A host name or address: an empty one is a usage error, not the
    client's refusal blamed on the server."""
    if not text:
        raise argparse.ArgumentTypeError("expected a host name or address, got ''")
    return text


def _connect_id(text: str) -> str:
    """An app id or user name: what the server accepts in a connect
    (docs/protocol.md §3), non-empty and at most 256 characters."""
    if not 1 <= len(text) <= MAX_CONNECT_ID_LENGTH:
        raise argparse.ArgumentTypeError(f"expected 1 to {MAX_CONNECT_ID_LENGTH} characters, got {len(text)}")
    return text


def _client(args: argparse.Namespace, parser: argparse.ArgumentParser) -> IPCClient:
    """The client of the flags, made before anything connects: a file a
    flag names that cannot be used is a usage error naming the flag (exit
    2), as the server's own start refuses it (docs/operations.md §3)."""
    from ipc_client import IPCClient
    from ipc_server.users import read_token_file

    if args.tls_key is not None and args.tls_cert is None:
        parser.error("argument --tls-key: needs --tls-cert (the certificate it belongs to)")
    files = {"--token-file": args.token_file, "--tls-ca": args.tls_ca, "--tls-cert": args.tls_cert, "--tls-key": args.tls_key}
    token = None
    for flag, path in files.items():
        if path is None:
            continue
        if not os.path.isfile(path):
            parser.error(f"argument {flag}: {'not a file' if os.path.exists(path) else 'no such file'}: {path!r}")
        try:
            if flag == "--token-file":
                token = read_token_file(path)
            else:
                open(path, "rb").close()  # readable; its PEM is the client's to check
        except OSError as exc:
            parser.error(f"argument {flag}: cannot read {path!r}: {exc.strerror or exc}")
        except ValueError as exc:  # a token file empty or not UTF-8
            parser.error(f"argument {flag}: {exc}")
    try:
        return IPCClient(
            args.app, args.host, args.port, reconnect=False, connect_timeout=args.timeout, request_timeout=args.timeout,
            user=args.user, token=token, tls=True if args.tls else None, tls_ca=args.tls_ca, tls_cert=args.tls_cert,
            tls_key=args.tls_key, tls_server_hostname=args.tls_server_hostname,
        )  # fmt: skip
    except (TypeError, ValueError) as exc:  # what the flags' checks leave: a TLS file that is not PEM (named by the client)
        parser.error(printable(exc))


def _count(text: str) -> int:
    """A number of rows, 0 or more (what the ``connections`` action accepts)."""
    try:
        count = parse_int(text)  # ASCII digits: int() takes '١' and '1_0'
    except ValueError:
        count = -1
    if count < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return count


async def _ask(client: IPCClient, args: argparse.Namespace, view: str) -> Any:
    await client.connect()
    try:
        page = {name: value for name in ("offset", "limit") if (value := getattr(args, name, None)) is not None}
        return await client.system(view, timeout=args.timeout, params=page or None)
    finally:
        await client.disconnect()


def main(argv: Sequence[str], stdout: TextIO | None = None, stderr: TextIO | None = None, *, prog: str = DEFAULT_PROG) -> int:
    """``argv``: the view's name, then its flags; ``prog``: the command as
    it was started (``program.program_name``), in the usage and the messages."""
    from ipc_protocol import IPCError

    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    view = argv[0]
    parser = _parser(view, prog)
    args = parser.parse_args(list(argv[1:]))
    client = _client(args, parser)
    name = f"{message_name(prog)} {view}"
    try:
        answer = asyncio.run(_ask(client, args, view))
    except IPCError as exc:  # its text is the server's
        print(f"{name}: {exc.code}: {printable(exc)}", file=stderr)
        return 1
    except (OSError, ValueError, OverflowError) as exc:
        print(f"{name}: {args.host}:{args.port}: {printable(exc)}", file=stderr)
        return 1
    print(json.dumps(answer, indent=2, sort_keys=True) if args.json else render(view, answer), file=stdout)
    return 0


# -- tables ---------------------------------------------------------------------


def _text(value: Any) -> str:
    """A cell's text, characters that are not printable escaped as ``repr``
    does: clients choose app ids and channel names, and a newline would
    forge a row, an escape sequence reach the operator's terminal."""
    return "-" if value is None else printable(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell; numbers right-aligned."""
    cells = [[_text(h) for h in headers]] + [[_text(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [all(isinstance(row[i], (int, float)) and not isinstance(row[i], bool) for row in rows) and bool(rows) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [cell.rjust(w) if num else cell.ljust(w) for cell, w, num in zip(row, widths, numeric)]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{seconds:.1f}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)  # pragma: no cover


def render(view: str, answer: Any) -> str:
    """The tables of one view's answer."""
    if view == "stats":
        return _stats(answer)
    if view == "connections":
        return _connections(answer)
    key, column = ("channels", "SUBSCRIBERS") if view == "channels" else ("services", "RESPONDERS")
    # A page keeps the server's order (exact channels, then patterns, as they came), so pages follow on.
    entries = list(answer[key].items()) if "total" in answer else sorted(answer.get(key, {}).items())
    rows = [(name, n if view == "channels" or n else "in-process") for name, n in entries]
    out = table(("CHANNEL", column), rows) if rows else f"(no {key})"
    if "total" in answer:  # a page of a larger table (docs/protocol.md §8)
        out += "\n\n" + _page_footer(answer, len(rows), key)
    return out


def _page_footer(answer: dict[str, Any], shown: int, key: str) -> str:
    """``N of TOTAL`` and, when rows follow, how to see them."""
    offset = answer.get("offset", 0) if isinstance(answer.get("offset"), int) else 0
    total = answer.get("total", shown)
    first = f"{offset + 1}-{offset + shown}" if offset else str(shown)
    text = f"{first} of {total} {key}"
    if isinstance(total, int) and offset + shown < total:
        text += f" (the next: --offset {offset + shown})"
    return text


def _stats(stats: dict[str, Any]) -> str:
    scalars = [(name, value) for name, value in sorted(stats.items()) if not isinstance(value, (dict, list))]
    parts = [table(("FIGURE", "VALUE"), scalars)]
    by_type = stats.get("messages_by_type")
    if by_type:
        types = sorted(set(by_type.get("in", {})) | set(by_type.get("out", {})))
        rows = [(t, by_type.get("in", {}).get(t, 0), by_type.get("out", {}).get(t, 0)) for t in types]
        parts.append(table(("MESSAGE TYPE", "IN", "OUT"), rows))
    if stats.get("errors"):
        parts.append(table(("ERROR CODE", "COUNT"), sorted(stats["errors"].items())))
    if stats.get("slow_consumers_cut"):
        parts.append(table(("CUT AS SLOW CONSUMER", "APP", "LIMIT", "BUFFERED"),
                           [(r["connection_id"], r["app_id"], r["limit"], _bytes(r["buffered_bytes"])) for r in stats["slow_consumers_cut"]]))  # fmt: skip
    if stats.get("frames_skipped_by_connection"):
        parts.append(table(("FRAMES SKIPPED FOR", "APP", "FRAMES"),
                           [(r["connection_id"], r["app_id"], r["frames"]) for r in stats["frames_skipped_by_connection"]]))  # fmt: skip
    return "\n\n".join(parts)


def _connections(answer: dict[str, Any]) -> str:
    rows = answer.get("connections", [])
    with_user = any("user" in row for row in rows)
    headers = ["ID", "APP", *(["USER"] if with_user else []), "PEER", "PROTO", "UPTIME", "MSGS IN", "MSGS OUT", "PENDING", "SERVING", "SUBS", "OUT BUFFER"]
    out = []
    for r in rows:
        out.append([r["connection_id"], r["app_id"], *([r.get("user")] if with_user else []), r["peer"], f"v{r['protocol']}{'+tls' if r.get('tls') else ''}",
                    _duration(r["uptime_s"]), r["messages_in"], r["messages_out"], r["pending_requests"], r["serving"], r["subscriptions"],
                    _bytes(r["outbound_bytes"])])  # fmt: skip
    shown = _page_footer(answer, len(rows), "connections")
    pending = answer.get("handshakes_pending", 0)
    footer = shown + (f", {pending} sockets in their handshake" if pending else "")
    return (table(headers, out) + "\n\n" if out else "") + footer
