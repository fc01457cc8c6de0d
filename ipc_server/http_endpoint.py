"""A minimal HTTP/1.x server on asyncio streams for ``/metrics`` and
``/healthz`` (docs/operations.md §1-§2): one GET (or HEAD) per connection,
answered and closed.

Written on the standard library rather than an HTTP framework: the server
has one runtime dependency (pydantic) and this needs a few dozen lines.
What a scraper never sends is answered, never waited on: the request head
is bounded (``MAX_REQUEST_BYTES``: 431 past it), must arrive within
``READ_TIMEOUT_S`` (408), must be a well-formed HTTP/1.0 or 1.1 request
line and headers (lines ending in CRLF or a bare LF, RFC 9112 §2.2),
with no control character in a field value or the target (400), for a
known path (404; an absolute ``http://`` target is routed by its path)
with GET or HEAD (405). At
most ``MAX_CLIENTS`` sockets are held at once: a newcomer past that evicts
the socket that has waited longest without completing its request head
(answered 503), as the IPC port evicts its oldest pending handshake, so
sockets held open keep a readiness probe out only if more than
``MAX_CLIENTS`` newer ones arrive before its request is read; when every
one has sent its request, the oldest still being answered goes.

A body is written in ``CHUNK_BYTES`` slices, the next once the socket has
drained: asyncio's transport copies what the kernel does not take at once
into its own buffer, so a page written whole was copied per socket (2.8
GB for a 23 MB page and 128 peers that never read). The page itself is
one object shared by the sockets (``Metrics.scrape``). Each socket's
kernel send buffer is ``SEND_BUFFER_BYTES``: autotuned, a loopback socket
took 2.8 MB of an unread page, and filling 128 held the loop 0.3-0.6 s.
A HEAD is answered the headers alone, errors included once its request
line is read (RFC 9110 §9.3.2).

A refused request (400, 404, 405, 408, 431, 505; not a page's own status)
is closed lingering, as nginx and Apache close theirs: the answer, then a
FIN, then what the peer still sends is read and dropped until its own FIN,
for ``LINGER_S`` at most, before the socket is closed. Closed at once, a
socket with unread input makes the kernel send a reset, and a peer still
sending (a 256 KiB head: 5 of 5 runs) never read its 431. What lingering
sockets read is bounded in all, not per socket: ``LINGER_BYTES`` a second
between them (a token bucket), past which a refused socket is closed at
once, as before; 200 peers on loopback sending without end made the
endpoint read 1.3 GB/s with a bound per socket alone, and IPC round trips
rose from a median of 3 ms to 58. A lingering socket still counts against
``MAX_CLIENTS``, and is the first a newcomer evicts: it has had its answer.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import Callable, Mapping

from .listener import listen

__all__ = ["HttpEndpoint", "EndpointBindError", "MAX_REQUEST_BYTES", "READ_TIMEOUT_S", "MAX_CLIENTS", "LINGER_S", "LINGER_BYTES"]

MAX_REQUEST_BYTES = 8192
READ_TIMEOUT_S = 5.0
WRITE_TIMEOUT_S = 10.0
MAX_CLIENTS = 128
CHUNK_BYTES = 64 * 1024
SEND_BUFFER_BYTES = 128 * 1024
# How long a refused socket lingers at most, and the bytes all lingering
# sockets may read and drop a second, in all (module docstring): a head of
# a few MiB still reads its 431, and a flood costs the loop a few ms a second.
LINGER_S = 1.0
LINGER_BYTES = 8 * 1024 * 1024

log = logging.getLogger("ipc_server.metrics")

# A page: (status, content type, body).
Page = tuple[int, str, bytes]
# An answer: its head (status line and headers), its body (shared, not copied).
Answer = tuple[bytes, bytes]
_REASONS = {
    200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout", 500: "Internal Server Error",
    431: "Request Header Fields Too Large", 503: "Service Unavailable", 505: "HTTP Version Not Supported",
}  # fmt: skip
# A token method, a target without controls or spaces, the version (RFC 9112 §3).
_REQUEST_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+) ([!-~\x80-\xff]+) HTTP/(\d)\.(\d)")
# A field value holds visible characters, spaces and tabs only (RFC 9110 §5.5): no NUL or other control.
_HEADER = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t -~\x80-\xff]*")
# An absolute-form target (RFC 9112 §3.2.2), which a server must accept: routed by its path.
_ABSOLUTE = re.compile(rb"https?://[^/?#]*", re.IGNORECASE)


class _Refused(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


def parse_request(head: bytes) -> tuple[str, str]:
    """(method, path) of a request head (through its blank line), or raise
    ``_Refused`` with the status that answers it. Its lines end in CRLF or,
    as RFC 9112 §2.2 lets a recipient accept, a bare LF; a CR anywhere
    else is a control character (400)."""
    lines = [line[:-1] if line.endswith(b"\r") else line for line in head.split(b"\n")[:-2]] or [b""]
    match = _REQUEST_LINE.fullmatch(lines[0])
    if match is None:
        raise _Refused(400, "malformed request line")
    method, target, major, _minor = match.groups()
    if major != b"1":
        raise _Refused(505, "only HTTP/1.0 and HTTP/1.1")
    for line in lines[1:]:
        if _HEADER.fullmatch(line) is None:
            raise _Refused(400, "malformed header line (or a control character in it)")
    absolute = _ABSOLUTE.match(target)
    if absolute is not None:  # the host is not ours to check: a proxy's request, or a client's own name for us
        rest = target[absolute.end() :]
        target = rest if rest.startswith(b"/") else b"/" + rest
    if not target.startswith(b"/"):
        raise _Refused(400, "the target must be a path or an http:// URL")
    return method.decode(), target.split(b"?", 1)[0].decode("latin-1")


async def _read_head(reader: asyncio.StreamReader, lines: list[bytes]) -> bytes:
    """The request head through its empty line, its lines ending in CRLF
    or LF; each line is appended to ``lines`` as it comes (what a refusal
    reads the method from). ``LimitOverrunError`` past ``MAX_REQUEST_BYTES``,
    ``IncompleteReadError`` when the peer stops sending first."""
    size = 0
    while True:
        line = await reader.readuntil(b"\n")  # the stream's limit bounds one line
        lines.append(line)
        size += len(line)
        if size > MAX_REQUEST_BYTES:
            raise asyncio.LimitOverrunError("the request head is too long", size)
        if line in (b"\r\n", b"\n"):
            return b"".join(lines)


def _is_head(lines: list[bytes]) -> bool:
    """Whether the request line read, if any, is a well-formed HEAD's."""
    if not lines:
        return False
    match = _REQUEST_LINE.fullmatch(lines[0].rstrip(b"\r\n"))
    return match is not None and match.group(1) == b"HEAD"


def _response(status: int, content_type: str, body: bytes, *, head_only: bool = False, allow: bool = False) -> Answer:
    """The head, and ``body`` itself (none for a HEAD: its Content-Length is still the body's)."""
    headers = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-store",
        "Connection: close",
    ]
    if allow:
        headers.append("Allow: GET, HEAD")
    return ("\r\n".join(headers) + "\r\n\r\n").encode(), (b"" if head_only else body)


async def _send(writer: asyncio.StreamWriter, answer: Answer) -> None:
    """The head, then the body in ``CHUNK_BYTES`` slices, each once the
    socket has drained the last (module docstring): never a copy of the whole body."""
    head, body = answer
    writer.write(head)
    view = memoryview(body)
    for start in range(0, len(view), CHUNK_BYTES):
        writer.write(view[start : start + CHUNK_BYTES])
        await writer.drain()
    await writer.drain()


class EndpointBindError(OSError):
    """The endpoint's port could not be bound; ``strerror`` names the
    endpoint and its address (not the server's main port) and the reason."""


class HttpEndpoint:
    """Serves ``pages``: path -> a function returning (status, content type, body).

    ``evicted`` counts the sockets evicted to make room (module docstring);
    ``on_evicted`` (optional) is called for each.
    """

    def __init__(self, pages: Mapping[str, Callable[[], Page]], *, on_evicted: Callable[[], None] | None = None) -> None:
        self.pages = pages
        self.port: int | None = None
        self.host: str | None = None
        self.evicted = 0
        self._on_evicted = on_evicted
        self._server: asyncio.base_events.Server | None = None
        # The sockets held, oldest first: those still reading their request
        # head, those being answered, those refused and lingering (_linger).
        self._reading: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._answering: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._lingering: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._linger_budget = float(LINGER_BYTES)  # bytes lingering sockets may still read, refilled LINGER_BYTES a second
        self._linger_at = 0.0  # the loop's time of the last refill

    async def start(self, host: str, port: int) -> None:
        try:
            loop = asyncio.get_running_loop()  # asyncio.start_server's protocol, on listen()'s sockets: one port for every address of host
            self._server = await listen(loop, lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader(limit=MAX_REQUEST_BYTES, loop=loop), self._serve, loop=loop), host, port, reuse_port=False)
        except OSError as exc:
            raise EndpointBindError(exc.errno, f"metrics endpoint {host}:{port}: {exc.strerror or exc}") from None
        self.host, self.port = self._server.sockets[0].getsockname()[:2]
        log.info("metrics on http://%s:%d/metrics", self.host if ":" not in str(self.host) else f"[{self.host}]", self.port)

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in [*self._reading, *self._answering, *self._lingering]:
            task.cancel()
        await self._server.wait_closed()

    @property
    def clients(self) -> int:
        """Sockets held now (at most ``MAX_CLIENTS``)."""
        return len(self._reading) + len(self._answering) + len(self._lingering)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - asyncio runs this callback in a task
            writer.close()
            return
        self._make_room()
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        self._reading[task] = writer
        try:
            answer, refused = await self._answer(reader)
            if self._reading.pop(task, None) is None:
                return  # evicted meanwhile: answered 503 and closed by _make_room()
            self._answering[task] = writer
            async with asyncio.timeout(WRITE_TIMEOUT_S):
                await _send(writer, answer)
            if refused and self._answering.pop(task, None) is not None:  # closed lingering, unless evicted meanwhile
                self._lingering[task] = writer
                await self._linger(reader, writer)
        except (ConnectionError, TimeoutError, asyncio.TimeoutError):
            writer.transport.abort()  # a peer that does not read keeps no answer in our buffer
        except asyncio.CancelledError:  # close(): Python 3.11's stream callback would log a cancelled task as an error
            writer.transport.abort()
        finally:
            self._reading.pop(task, None)
            self._answering.pop(task, None)
            self._lingering.pop(task, None)
            writer.close()

    async def _linger(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """After a refusal: a FIN once the answer is out, then read and drop
        what the peer still sends until its FIN, for ``LINGER_S`` at most,
        while the lingering sockets' shared budget lasts (module docstring)."""
        writer.write_eof()  # shutdown(SHUT_WR) once the transport has written the answer
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(LINGER_S):
                while True:
                    now = loop.time()
                    self._linger_budget = min(float(LINGER_BYTES), self._linger_budget + (now - self._linger_at) * LINGER_BYTES)
                    self._linger_at = now
                    if self._linger_budget < CHUNK_BYTES:  # never reads of a few bytes, each without a wait
                        return  # spent: closed now, with what it still sends unread
                    data = await reader.read(CHUNK_BYTES)
                    if not data:
                        return
                    self._linger_budget -= len(data)
        except TimeoutError:
            pass

    def _make_room(self) -> None:
        """At ``MAX_CLIENTS``, evict the oldest lingering socket (answered
        already), else the socket that has waited longest without completing
        its request head (503); if every one has, the oldest still being
        answered (its peer is not reading)."""
        if self.clients < MAX_CLIENTS:
            return
        if self._lingering:
            self._lingering.pop(next(iter(self._lingering))).transport.abort()
        elif self._reading:
            writer = self._reading.pop(next(iter(self._reading)))
            writer.write(b"".join(_response(503, "text/plain", f"evicted: {MAX_CLIENTS} newer connections are waiting to send their request\n".encode())))
            writer.close()  # its task sees the end of its read, and leaves
        else:
            self._answering.pop(next(iter(self._answering))).transport.abort()
        self.evicted += 1
        if self._on_evicted is not None:
            self._on_evicted()

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[Answer, bool]:
        """The answer, and whether it refuses the request (closed lingering)."""
        lines: list[bytes] = []
        try:
            head = await asyncio.wait_for(_read_head(reader, lines), READ_TIMEOUT_S)
            method, path = parse_request(head)
        except (asyncio.TimeoutError, TimeoutError):
            return _response(408, "text/plain", b"no complete request head in time\n", head_only=_is_head(lines)), True
        except asyncio.LimitOverrunError:
            return _response(431, "text/plain", f"the request head is over {MAX_REQUEST_BYTES} bytes\n".encode(), head_only=_is_head(lines)), True
        except asyncio.IncompleteReadError:
            return _response(400, "text/plain", b"incomplete request\n", head_only=_is_head(lines)), True
        except _Refused as refused:
            return _response(refused.status, "text/plain", f"{refused}\n".encode(), head_only=_is_head(lines)), True
        head_only = method == "HEAD"
        page = self.pages.get(path)
        if page is None:
            return _response(404, "text/plain", f"no {path}; try {', '.join(self.pages)}\n".encode(), head_only=head_only), True
        if method not in ("GET", "HEAD"):
            return _response(405, "text/plain", b"GET or HEAD only\n", allow=True), True  # a body may follow
        try:
            status, content_type, body = page()
        except Exception:  # pragma: no cover - a bug in a page must not kill the endpoint
            log.exception("rendering %s failed", path)
            return _response(500, "text/plain", b"internal error\n", head_only=head_only), False
        return _response(status, content_type, body, head_only=head_only), False

    def __repr__(self) -> str:
        return f"<HttpEndpoint {self.host}:{self.port} clients={self.clients} evicted={self.evicted}>"
