"""The server's log lines for operators (docs/operations.md §4): each
connection's opening and closing at INFO, with its app, peer, id and the
reason it closed as structured fields (``extra=``), and the two formats
``--log-format`` chooses: ``text`` (one readable line) and ``json`` (one
object per line, for a log shipper: ``ts``, ``level``, ``logger``, ``msg``,
then the fields that apply).

Peers choose app ids, connection ids, channels and error texts: in a
message they are ``clipped()`` (printable: a newline would forge a second
line, an escape sequence reach the terminal; and cut at 128 characters, 512
for a text, so a long one cannot make a megabyte line), raw but cut as
well in the fields of ``extra=``, which the JSON format encodes.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

from ipc_protocol.codes import ErrorCode
from ipc_protocol.printable import LOG_TEXT_LIMIT, LOG_VALUE_LIMIT, clipped, printable

from .log_sink import QueuedSink

__all__ = ["JsonFormatter", "TextFormatter", "configure_logging", "log_opened", "log_closed", "peer_text", "LOG_FORMATS", "FIELDS"]

LOG_FORMATS = ("text", "json")
# The structured fields a record may carry, in the order a JSON line shows them.
FIELDS = ("app", "peer", "connection_id", "reason", "protocol", "client", "user")
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

log = logging.getLogger("ipc_server.connection")
_CUT = f"{ErrorCode.SLOW_CONSUMER}: "


def peer_text(peer: Any) -> str:
    """``host:port`` (``[v6]:port``) of a socket's peername; ``-`` when unknown."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = str(peer[0])
        return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
    return "-" if peer is None or peer == "" else str(peer)


# What json.dumps(ensure_ascii=False) writes raw and a reader may take for a
# line break or a terminal control: C1 controls (U+0085 NEL, U+009B CSI),
# U+2028/U+2029, the bidi controls (U+061C ARABIC LETTER MARK among them).
# Escaped, the line stays valid JSON and each value decodes unchanged.
_JSON_ESCAPES = {c: f"\\u{c:04x}" for c in [*range(0x80, 0xA0), 0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), 0x2028, 0x2029, *range(0x2066, 0x206A)]}


def _capped(value: Any, limit: int) -> Any:
    """A peer's string cut to ``limit`` characters and marked with its own
    length, as the message's values are (``clipped``); JSON escapes it."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]}\u2026({len(value)} chars)"
    return value


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line. ``ts`` is UTC, ISO 8601 with
    milliseconds; a record's exception goes in ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                out[name] = _capped(value, LOG_TEXT_LIMIT if name == "reason" else LOG_VALUE_LIMIT)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        line = json.dumps(out, ensure_ascii=False, default=str).translate(_JSON_ESCAPES)
        if len(line) > _ATOMIC_LINE_BYTES // 4 and len(line.encode()) > _ATOMIC_LINE_BYTES:
            line = _within_one_write(out, record)
        return line


# A line up to PIPE_BUF (4096 bytes, its newline included) is written to a
# pipe in one piece: the workers of --workers share one stderr, and a
# longer line was cut by another worker's (a peer's fields escaped to 6
# bytes a character made a "closed" line of 4,118 bytes).
_ATOMIC_LINE_BYTES = 4000


def _within_one_write(out: dict[str, Any], record: logging.LogRecord) -> str:
    """``out`` with its peer-given fields (``record``'s, as given) and
    message cut, shorter each round, until its line fits
    ``_ATOMIC_LINE_BYTES`` (a traceback is kept whole: the server's own,
    worth a line that may be cut)."""
    line = ""
    for limit in (64, 32, 16):
        short = {k: (_capped(v if k == "msg" else record.__dict__[k], limit if k != "msg" else limit * 8) if k in _PEER_GIVEN else v) for k, v in out.items()}
        line = json.dumps(short, ensure_ascii=False, default=str).translate(_JSON_ESCAPES)
        if len(line.encode()) <= _ATOMIC_LINE_BYTES:
            break
    return line


_PEER_GIVEN = frozenset(("msg", *FIELDS))


class TextFormatter(logging.Formatter):
    """One event, one line: the message's characters that are not printable
    are escaped here too, for the log calls (the application's, a
    library's) that did not; a traceback or stack follows on lines indented
    by two spaces, so a line that starts in column 0 always starts an event."""

    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        record.message = printable(record.getMessage())
        record.asctime = self.formatTime(record, self.datefmt)
        lines = [self.formatMessage(record)]
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        for block in (record.exc_text, record.stack_info and self.formatStack(record.stack_info)):
            lines.extend("  " + printable(line) for line in (block or "").splitlines())
        return "\n".join(lines)


def configure_logging(level: str, log_format: str = "text", stream: TextIO | None = None) -> QueuedSink:
    """The root logger's one handler, in ``log_format``, writing to
    ``stream`` from its own thread; returns it."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log_format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
    target = logging.StreamHandler(stream or sys.stderr)
    target.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler = QueuedSink(target)  # the loop never waits for the sink (log_sink)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        if isinstance(old, QueuedSink):
            old.stop()
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler


def log_opened(conn: Any, user: str | None = None) -> None:
    """A connection completed its handshake (§3)."""
    peer = peer_text(conn.peer)
    protocol = 1 if conn.legacy else 2
    extra = {"app": conn.app_id, "peer": peer, "connection_id": conn.connection_id, "protocol": protocol, "client": conn.client_name or None, "user": user}
    log.info("connection %s opened: app %s, peer %s, protocol %d", clipped(conn.connection_id), clipped(conn.app_id), peer, protocol, extra=extra)


def log_closed(conn: Any, reason: str, *, quiet: bool = False) -> None:
    """A connection (or a socket that never completed its handshake) closed.
    ``quiet``: a socket that said nothing and went (a port probe): DEBUG."""
    peer = peer_text(conn.peer)
    extra = {"app": conn.app_id or None, "peer": peer, "connection_id": conn.connection_id or None, "reason": reason, "user": getattr(conn, "user", None)}
    if conn.opened:
        level = logging.WARNING if reason.startswith(_CUT) else logging.INFO  # cut as a slow consumer: the operator's concern
        log.log(level, "connection %s closed: app %s, peer %s: %s", clipped(conn.connection_id), clipped(conn.app_id), peer, clipped(reason, LOG_TEXT_LIMIT), extra=extra)
    else:
        log.log(logging.DEBUG if quiet else logging.INFO, "socket from %s closed before its handshake completed: %s", peer, clipped(reason, LOG_TEXT_LIMIT), extra=extra)
