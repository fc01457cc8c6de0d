"""TLS for the client (docs/security.md §2), the mirror of
``js-client/lib/tls_options.js``: the ``tls*`` options turned into one
:class:`ClientTLS` (an ``SSLContext`` and the host name to check), and the
ways a TLS connection fails turned into ``not_connected`` errors whose
message names TLS and whose ``__cause__`` is what went wrong underneath.

Which failures are final: a certificate refused by either side (this
client's check of the server's, or the server's alert about ours) and any
other alert of the TLS layer cannot be fixed by trying again, so
``wait_on_first_connect`` and the reconnect loop stop at once, as for a
refused token (:func:`refused`). A connection closed or reset during the
TLS handshake is retried like any network failure: it is what a plaintext
server does to a TLS client (and what a restarting server does to anyone).
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass

from ipc_protocol import ConnectionLost, FrameError, NotConnected
from ipc_protocol.framing import PEER_SPEAKS_TLS

__all__ = ["ClientTLS", "client_tls", "handshake_failure", "closed_during_handshake", "refused"]


@dataclass(frozen=True)
class ClientTLS:
    """How to open a TLS connection: the context (trust, client
    certificate) and the name the server's certificate must carry (None:
    the host connected to)."""

    context: ssl.SSLContext
    server_hostname: str | None = None


def client_tls(
    tls: bool | ssl.SSLContext | None,
    *,
    ca: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    server_hostname: str | None = None,
) -> ClientTLS | None:
    """The client's TLS from its options, or None for a plaintext connection.

    ``tls=True``: the system's trust store, host name checked, TLS 1.2 at
    least. ``tls_ca`` trusts that CA bundle instead of the system's;
    ``tls_cert`` (with ``tls_key`` unless the file holds both) presents a
    client certificate (mutual TLS). Giving any of them turns TLS on;
    ``tls=False`` with one of them is a contradiction. An ``SSLContext`` is
    used as it is: load the CA and certificate into it. Raises
    ``ValueError`` naming the option for a missing or unusable file.
    """
    files = {"tls_ca": ca, "tls_cert": cert, "tls_key": key}
    given = [name for name, value in (*files.items(), ("tls_server_hostname", server_hostname)) if value is not None]
    if tls is False or (tls is None and not given):
        if given:
            raise ValueError(f"{', '.join(given)} need TLS, and tls=False turns it off")
        return None
    if isinstance(tls, ssl.SSLContext):
        loaded = [name for name, value in files.items() if value is not None]
        if loaded:
            raise ValueError(f"tls is an ssl.SSLContext: load {', '.join(loaded)} into it instead")
        return ClientTLS(tls, server_hostname)
    if tls is not True and tls is not None:
        raise TypeError(f"tls must be True, False, None or an ssl.SSLContext, got {tls!r}")
    if key is not None and cert is None:
        raise ValueError("tls_key needs tls_cert (the certificate it belongs to)")
    for name, path in files.items():
        if path is not None and not os.path.isfile(path):
            raise ValueError(f"{name}: no such file {path!r}")
    try:
        context = ssl.create_default_context(cafile=ca)
    except ssl.SSLError as exc:
        raise ValueError(f"tls_ca {ca!r} must hold PEM CA certificates: {exc}") from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None:
        try:
            context.load_cert_chain(cert, key, password=_no_password)
        except ssl.SSLError as exc:
            raise ValueError(f"tls_cert {cert!r} / tls_key {key!r}: not a PEM certificate and its matching key: {exc}") from exc
    return ClientTLS(context, server_hostname)


def _no_password() -> str:
    # Without a callback OpenSSL would prompt on the terminal and wait there.
    raise ValueError("tls_key is encrypted with a passphrase: pass an ssl.SSLContext with the key loaded instead")


# -- failures -------------------------------------------------------------------


# The server's alerts in words, the same as Node's (lib/tls_options.js) but
# for the options' names: each names the cause its alert stands for.
# handshake_failure is OpenSSL's catch-all: over TLS 1.2 it is also what a
# server requiring a client certificate sends when none came.
_ALERTS = {
    "handshake_failure": "the server refused the handshake (handshake_failure): no cipher suite or protocol setting in common with this client, or, over TLS 1.2, no client certificate where the server requires one (mutual TLS: set tls_cert and tls_key)",
    "protocol_version": "the server refused this client's TLS version (protocol_version): the versions the two allow do not overlap, and the server needs TLS 1.2 or later",
    "certificate_required": "the server requires a client certificate and this client presented none (certificate_required; mutual TLS: set tls_cert and tls_key)",
}
# Alerts about the certificate this client presented.
_CERTIFICATE_ALERTS = frozenset({"bad_certificate", "unknown_ca", "certificate_expired", "certificate_revoked", "certificate_unknown", "unsupported_certificate"})


def _alert_words(alert: str) -> str:
    if alert in _ALERTS:
        return _ALERTS[alert]
    if alert in _CERTIFICATE_ALERTS:
        return f"the server refused this client's certificate ({alert}): mutual TLS needs one that a CA the server trusts signed, not expired (tls_cert and tls_key)"
    return f"the server refused the connection ({alert})"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"the server's certificate was refused: {exc.verify_message or exc}"
    if isinstance(exc, ssl.SSLError) and not isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)):
        _, received, alert = (exc.reason or "").partition("ALERT_")  # TLSV1_ALERT_PROTOCOL_VERSION: the server's alert
        if received:
            return f"{_alert_words(alert.lower())}: {exc}"
        return str(exc)
    if isinstance(exc, (ConnectionResetError, ssl.SSLEOFError, EOFError, ConnectionLost)):
        return "the server closed the connection during the TLS handshake: does it speak TLS on this port?"
    return str(exc) or type(exc).__name__


def handshake_failure(exc: BaseException, peer: str) -> NotConnected:
    """A failed TLS handshake (the connect of ``create_connection``) as
    ``not_connected`` naming TLS, with ``exc`` as its cause."""
    error = NotConnected(f"TLS handshake with {peer} failed: {_reason(exc)}")
    error.__cause__ = exc
    return error


def closed_during_handshake(error: BaseException | None, lost: ConnectionLost, peer: str, tls: bool) -> BaseException:
    """What the bridge handshake's ``ConnectionLost`` was, when TLS explains it.

    Over TLS 1.3 the server checks the client's certificate after the
    client's own TLS handshake is done, so a refused or missing one shows as
    the server's alert on the first read, while the connect waits for its
    reply: ``error`` is then the ``ssl.SSLError``. Without TLS, a server
    that closes without answering the connect, or answers in TLS, is most
    likely a TLS port. Otherwise ``lost`` as it was."""
    if tls and isinstance(error, ssl.SSLError):
        failure = NotConnected(f"TLS connection to {peer} refused: {_reason(error)}")
        failure.__cause__ = error
        return failure
    if not tls and isinstance(error, FrameError) and str(error).endswith(PEER_SPEAKS_TLS):
        failure = NotConnected(f"{peer} answered in TLS and this client has TLS off (set tls): {error}")
        failure.__cause__ = error
        return failure
    if not tls and error is None:
        failure = NotConnected(f"{peer} closed the connection without answering the connect: is it a TLS port? (this client has TLS off)")
        failure.__cause__ = lost
        return failure
    return lost


def refused(exc: BaseException) -> bool:
    """Whether a failed connection attempt is final: a certificate refused
    by either side, or another TLS alert (see the module's docstring)."""
    cause = exc.__cause__ if isinstance(exc, NotConnected) else None
    if isinstance(cause, FrameError):
        return str(cause).endswith(PEER_SPEAKS_TLS)
    return isinstance(cause, ssl.SSLError) and not isinstance(cause, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError))
