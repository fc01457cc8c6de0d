"""TLS on the server's port (docs/security.md §2): the ``SSLContext`` built
from the settings, the TLS handshake of each accepted socket, and the
peer's certificate for the rest of the server.

The handshake is run here, not by ``create_server(ssl=...)``: asyncio and
uvloop drop a socket whose handshake fails without a word (they log it in
debug mode only), so the server could say neither who failed nor why. Each
accepted socket starts as a :class:`TLSAccept`, which runs
``loop.start_tls()`` under the handshake deadline, logs a failure at INFO
with the peer and the reason, and otherwise hands the TLS transport to a
fresh connection protocol as if it had just been accepted. A TLS port
speaks TLS only: nothing is read as a frame before the handshake is done.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, cast

from .cert_subjects import render_subject
from .config import ServerConfig
from .logs import peer_text
from .pending_cap import BYTES, SILENT, peek
from .setting_files import load_chain, readable, warn_if_expired

if TYPE_CHECKING:
    from .host_lines import HostLines

__all__ = ["server_context", "handshake_timeout", "TLSPort", "connection_factory", "TLSAccept", "peer_certificate", "peer_subject"]

log = logging.getLogger("ipc_server.tls")


def server_context(config: ServerConfig) -> ssl.SSLContext | None:
    """The context of a TLS port, or None when ``tls_cert`` is not set.

    TLS 1.2 at least; with ``tls_ca`` a client must present a certificate
    that CA signed (mutual TLS). Raises ``ValueError`` naming the setting
    when a file is missing or unreadable, is not PEM, or the key does not
    match the certificate, so a misconfigured server never starts.
    """
    if config.tls_cert is None or config.tls_key is None:
        return None
    cert, key, ca = config.tls_cert, config.tls_key, config.tls_ca
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    load_chain(context, "tls_cert", cert, "tls_key", key)
    if ca is not None:
        readable("tls_ca", ca)
        try:
            context.load_verify_locations(cafile=ca)
        except ssl.SSLError as exc:
            raise ValueError(f"tls_ca {ca!r} must hold PEM CA certificates: {exc}") from exc
        context.verify_mode = ssl.CERT_REQUIRED
    context.sslobject_class = _AlertFirst
    return context


class _AlertFirst(ssl.SSLObject):
    """Tells a refused client why before the handshake fails.

    asyncio and uvloop abort the socket the moment ``do_handshake`` raises,
    so the alert OpenSSL wrote for a refused client (a certificate of an
    unknown CA, expired, none: TLS 1.3's ``certificate_required``; TLS 1.1
    at most: ``protocol_version``; no shared cipher: ``handshake_failure``)
    would never be sent, and the client would see only a closed connection,
    which it retries. A peer that does not speak TLS at all (plaintext, an
    HTTP request) is closed at once: it could not read an alert. Here the failure
    waits one turn: the handshake asks for more data, which sends what is
    written (the alert), and the next call raises it. The client closes on
    the alert, or its next bytes bring that call; the handshake deadline
    bounds the rest.

    The refusal goes to the socket's :class:`TLSAccept` (its owner), which
    logs it with the peer and knows the close that follows is its outcome,
    not a client's own choice: the loop reports that close as a bare reset."""

    _failure: ssl.SSLError | None = None
    _owner: TLSAccept | None = None
    _claimed = False

    def do_handshake(self) -> None:
        if self._failure is not None:
            raise self._failure
        if not self._claimed:
            self._claimed = True
            self._owner = _starting.take()
        try:
            super().do_handshake()
        except ssl.SSLError as exc:
            if isinstance(exc, _NOT_REFUSALS) or exc.reason in _NOT_TLS:
                raise
            if self._owner is not None:
                self._owner.refused(exc)
            else:  # not started by a TLSAccept: the peer is not known here
                log.info("refusing a TLS client: %s", exc)
            self._failure = exc
            raise ssl.SSLWantReadError("the alert goes out first") from None
        self._owner = None  # done: the connection does not keep its accept alive


class _Starting(threading.local):
    """The :class:`TLSAccept` whose TLS protocol is about to make its first
    handshake step, for its ``_AlertFirst`` to claim (an SSL object has no
    way back to its socket; uvloop's TLS protocol is not reachable from
    Python). ``start_tls`` schedules that step as its first callback
    (``connection_made``, on asyncio and uvloop alike); the accept schedules
    the one that sets this just before it, and callbacks run in order, so
    no other socket's step comes between. Per thread: one loop's callbacks."""

    owner: TLSAccept | None = None

    def take(self) -> TLSAccept | None:
        owner, self.owner = self.owner, None
        return owner


_starting = _Starting()


# OpenSSL's reasons for bytes that are no TLS record at all: a plaintext
# client (a bridge frame's length prefix), an HTTP request, SSH...: OpenSSL
# writes no alert for them, so they are closed at once.
_NOT_TLS = frozenset({"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "HTTPS_PROXY_REQUEST"})
# A handshake going on (want read/write), or the peer gone: nothing to tell it.
_NOT_REFUSALS = (ssl.SSLWantReadError, ssl.SSLWantWriteError, ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)


def handshake_timeout(config: ServerConfig) -> float:
    """The TLS handshake's deadline: the one a client has to present its
    credentials: ``auth_timeout_s`` when auth is on, else
    ``handshake_timeout_s`` (both positive: never without a deadline)."""
    return config.auth_timeout_s if config.auth_enabled else config.handshake_timeout_s


class PendingHandshakes(Protocol):
    """Where sockets in their TLS handshake are counted (the server's
    admission): against the pending-handshake cap, evictable like any socket
    in its handshake (docs/protocol.md §12.1)."""

    lines: HostLines  # their refusals' lines, limited per peer host

    def hold(self, sock: TLSAccept) -> None: ...

    def release(self, sock: TLSAccept, *, failed: bool = False) -> None: ...


class TLSPort:
    """The context a TLS port's new handshakes use. :meth:`reload` (SIGHUP)
    reads the settings' files again, so a renewed certificate, key or CA is
    served without a restart; open connections keep what they were made with."""

    def __init__(self, config: ServerConfig, context: ssl.SSLContext) -> None:
        self._config = config
        self.context = context

    @classmethod
    def of(cls, config: ServerConfig) -> TLSPort | None:
        """The port's TLS, or None when ``tls_cert`` is not set."""
        context = server_context(config)
        if context is None:
            return None
        warn_if_expired("tls_cert", str(config.tls_cert), log)
        return cls(config, context)

    def reload(self) -> None:
        """Raises ``ValueError`` as :func:`server_context` does: the old context then stays."""
        context = server_context(self._config)
        assert context is not None  # tls_cert and tls_key are settings, which a reload does not change
        warn_if_expired("tls_cert", str(self._config.tls_cert), log)
        self.context = context


def connection_factory(
    config: ServerConfig, make: Callable[[float | None], asyncio.BaseProtocol], pending: PendingHandshakes, tls: TLSPort | None
) -> Callable[[], asyncio.BaseProtocol]:
    """The protocol factory for ``create_server``: ``make(None)`` on a
    plaintext port; on a TLS port, a :class:`TLSAccept` per socket, with
    the port's context of the moment, that hands the socket to
    ``make(accepted_at)`` once its handshake is done: the connection's
    handshake deadline counts from the TCP accept (one deadline in all,
    docs/protocol.md §12.1), not from the end of TLS."""
    if tls is None:
        return lambda: make(None)
    timeout = handshake_timeout(config)
    return lambda: TLSAccept(tls.context, timeout, make, pending)


class TLSAccept(asyncio.Protocol):
    """An accepted socket until its TLS handshake is done (or failed)."""

    def __init__(self, context: ssl.SSLContext, timeout: float, make: Callable[[float | None], asyncio.BaseProtocol], pending: PendingHandshakes) -> None:
        self._context = context
        self._timeout = timeout
        self._make = make
        self._pending = pending
        self._transport: asyncio.Transport | None = None
        self._task: asyncio.Task[None] | None = None
        self._accepted_at = 0.0  # the loop's clock at the TCP accept: where the deadline starts
        self.peer: Any = None
        self._hello: list[bytes] = []  # read before start_tls took the socket over
        self._refusal: ssl.SSLError | None = None  # the TLS layer refused the client (logged then)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream protocol is given a Transport (typeshed: BaseTransport)
        self._transport = transport = cast(asyncio.Transport, transport)
        self.peer = transport.get_extra_info("peername")
        transport.pause_reading()  # start_tls reads the ClientHello, not us (asyncio; uvloop starts reading after this)
        self._pending.hold(self)
        loop = asyncio.get_running_loop()
        self._accepted_at = loop.time()
        self._task = loop.create_task(self._handshake())

    def fail(self, code: str, message: str) -> None:
        """Evicted at the pending cap: no frame can be sent before TLS is up."""
        if self._pending.lines.allow(self.peer, f"evicted in its TLS handshake: {code}", log):
            log.info("closing %s in its TLS handshake: %s: %s", peer_text(self.peer), code, message)
        if self._task is not None:
            self._task.cancel()
        if self._transport is not None:
            self._transport.abort()

    def waiting(self) -> int:
        """At the pending cap (pending_cap): records waiting unread, its
        ClientHello or what follows, are BYTES; none, SILENT (evictable)."""
        return BYTES if peek(self._transport)[0] else SILENT

    def data_received(self, data: bytes) -> None:
        # uvloop: the ClientHello came before start_tls; it is handed on first.
        self._hello.append(bytes(data))
        if self._transport is not None:
            self._transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        # Gone before start_tls took the socket over.
        self._pending.release(self)
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def refused(self, exc: ssl.SSLError) -> None:
        """The TLS layer refused the client (its alert goes out next): said
        once, with the peer; the failure that follows is this one."""
        self._refusal = exc
        if self._pending.lines.allow(self.peer, "TLS handshake refused", log):
            log.info("TLS handshake with %s refused: %s", peer_text(self.peer), exc)

    async def _handshake(self) -> None:
        transport = self._transport
        assert transport is not None
        early = _EarlyReads()
        loop = asyncio.get_running_loop()
        # Runs just before the TLS protocol's connection_made, which start_tls schedules.
        loop.call_soon(self._before_tls, transport)
        try:
            left = max(self._accepted_at + self._timeout - loop.time(), 0.001)  # the task starts a turn after the accept
            tls = await loop.start_tls(transport, early, self._context, server_side=True, ssl_handshake_timeout=left)
        except (OSError, EOFError, asyncio.TimeoutError) as exc:  # ssl.SSLError is an OSError
            self._failed(transport, exc)
            return
        except Exception:  # a bug: never a task whose exception nobody retrieves
            self._pending.release(self, failed=True)
            log.exception("TLS handshake with %s failed", peer_text(self.peer))
            transport.abort()
            return
        finally:
            if _starting.owner is self:  # its TLS protocol never made a step
                _starting.owner = None
        self._pending.release(self)
        early.hand_over(self._make(self._accepted_at), tls)  # type: ignore[arg-type]  # typeshed: Transport | None; it returns one or raises

    def _failed(self, transport: asyncio.Transport, exc: BaseException) -> None:
        self._pending.release(self, failed=True)
        # After a refusal the client closes on the alert (a bare reset here),
        # sends more (the refusal again) or waits out the deadline: all said.
        if self._refusal is None and self._pending.lines.allow(self.peer, "TLS handshake failed", log):
            log.info("TLS handshake with %s failed: %s", peer_text(self.peer), describe(exc))
        transport.abort()

    def _before_tls(self, transport: asyncio.BaseTransport) -> None:
        """Claim the first handshake step, and give the TLS protocol the
        bytes read before it was in place (uvloop)."""
        _starting.owner = self
        if not self._hello:
            return
        protocol = cast(asyncio.BufferedProtocol, transport.get_protocol())
        for chunk in self._hello:
            while chunk:
                buffer = cast(memoryview, protocol.get_buffer(len(chunk)))  # typeshed: Buffer
                n = min(len(buffer), len(chunk))
                buffer[:n] = chunk[:n]
                protocol.buffer_updated(n)
                chunk = chunk[n:]
        self._hello.clear()


class _EarlyReads(asyncio.Protocol):
    """The TLS transport's protocol between the end of the handshake and the
    hand-over: asyncio delivers the first data at once (uvloop one callback
    later), before ``start_tls`` has returned; it waits here, in order."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.lost: tuple[Exception | None] | None = None
        self.conn: Any = None

    def data_received(self, data: bytes) -> None:
        if self.conn is not None:  # a callback scheduled before the hand-over
            self.conn.data_received(data)
        else:
            self.chunks.append(bytes(data))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn is not None:
            self.conn.connection_lost(exc)
        else:
            self.lost = (exc,)

    def hand_over(self, conn: Any, transport: asyncio.BaseTransport) -> None:
        transport.set_protocol(conn)
        self.conn = conn
        conn.connection_made(transport)
        for chunk in self.chunks:
            conn.data_received(chunk)
        self.chunks.clear()
        if self.lost is not None:  # what it sent before closing is read first, as on a plaintext port
            conn.connection_lost(self.lost[0])


def describe(exc: BaseException) -> str:
    """A handshake failure as a log line can say it (a reset has no text)."""
    if isinstance(exc, ConnectionResetError) and not str(exc):
        return "the client closed the connection (it may have refused this server's certificate)"
    return str(exc) or type(exc).__name__


# -- the peer's certificate, for credentials (docs/security.md §3) ----------------


def peer_certificate(transport: asyncio.BaseTransport | None) -> dict[str, Any] | None:
    """The client's verified certificate as ``ssl.SSLSocket.getpeercert()``
    returns it (``subject``, ``issuer``, ``subjectAltName``, ``notAfter``...),
    or None: a plaintext port, or TLS without ``tls_ca`` (no certificate is
    asked for). Verified: under mutual TLS the handshake refuses any other."""
    if transport is None:
        return None
    cert = transport.get_extra_info("peercert")
    return cert or None


def peer_subject(transport: asyncio.BaseTransport | None) -> str | None:
    """The subject of the client's verified certificate as an RFC 4514
    string, most specific first (``CN=alice,OU=payments,O=Example``), or None
    without one: the string ``openssl x509 -noout -subject -nameopt RFC2253``
    prints for the certificate file, which a ``cert_subject`` may hold."""
    cert = peer_certificate(transport)
    if cert is None:
        return None
    return render_subject(cert.get("subject", ()))
