"""The files settings name (the configuration file, the users and token
files, TLS certificates and keys, the cluster link's): checked as the
server starts, every error naming the setting and the path, so a server
whose file cannot be used never starts (``python -m ipc_server`` exits 2).

Pure: no asyncio, and nothing of the server imported, so ``config`` can
use it too.
"""

from __future__ import annotations

import logging
import os
import re
import ssl
import tomllib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["readable", "read_utf8", "parse_toml", "no_password", "load_chain", "not_after", "warn_if_expired"]

_PEM_CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


def readable(setting: str, path: str) -> None:
    """Raise ``ValueError`` naming ``setting`` unless ``path`` is a file this process may read."""
    if os.path.isdir(path):
        raise ValueError(f"{setting} {path!r} is a directory, not a file")
    if not os.path.isfile(path):
        raise ValueError(f"{setting}: no such file {path!r}")
    if not os.access(path, os.R_OK):
        raise ValueError(f"{setting}: cannot read {path!r}")


def no_password() -> str:
    """``load_cert_chain``'s password callback: without one OpenSSL would
    prompt on the terminal for an encrypted key's passphrase, and wait."""
    raise ValueError("the key is encrypted with a passphrase, which the server cannot ask for")


def load_chain(context: ssl.SSLContext, cert_setting: str, cert: str, key_setting: str, key: str) -> None:
    """``context.load_cert_chain(cert, key)``, its failures a ``ValueError``
    naming both settings (a key that does not match, a file that is not
    PEM, an encrypted key: never a passphrase prompt)."""
    readable(cert_setting, cert)
    readable(key_setting, key)
    try:
        context.load_cert_chain(cert, key, password=no_password)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ValueError(f"{key_setting} {key!r} does not match the certificate in {cert_setting} {cert!r}") from exc
        raise ValueError(f"{cert_setting} {cert!r} and {key_setting} {key!r} must be a PEM certificate chain and its PEM private key: {exc}") from exc
    except ValueError as exc:
        raise ValueError(f"{key_setting} {key!r}: {exc}") from exc


def read_utf8(setting: str, path: str | os.PathLike[str]) -> str:
    """The file's text. Raises ``OSError`` as ``open`` does, and
    ``ValueError`` naming ``setting`` and the path when it is not UTF-8
    (a file saved as UTF-16 by an editor, say)."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            why = "this one is UTF-16 (it starts with a UTF-16 byte order mark)"
        else:
            why = f"byte 0x{data[exc.start]:02x} at offset {exc.start} is not UTF-8"
        raise ValueError(f"{setting} {os.fspath(path)!r} must be UTF-8 text: {why}") from None


def parse_toml(text: str) -> dict[str, Any]:
    """``tomllib.loads``, every failure a ``ValueError``: Python's TOML parser
    recurses once per level of nesting, so a valid file nested a few
    hundred arrays or inline tables deep (``x = [[[...]]]``) raised
    ``RecursionError``, which no caller's ``except ValueError`` caught (a
    traceback of 3,000 lines at start; a false "not configured" on SIGHUP).
    A ``tomllib.TOMLDecodeError``'s text gives the line and column."""
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise ValueError("arrays or tables nested too deeply (Python's TOML parser reads a few hundred levels at most)") from None


# -- certificates' expiry ------------------------------------------------------------------


def _element(der: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start of the content, end) of the DER element at ``at``."""
    tag, size = der[at], der[at + 1]
    at += 2
    if size & 0x80:
        count = size & 0x7F
        size = int.from_bytes(der[at : at + count], "big")
        at += count
    if at + size > len(der):
        raise ValueError("truncated")
    return tag, at, at + size


def _time(tag: int, text: str) -> datetime:
    if tag == 0x17:  # UTCTime, YYMMDDHHMMSSZ: 50-99 are the 1900s (RFC 5280 §4.1.2.5.1)
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    return datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=timezone.utc)


def not_after(path: str) -> datetime | None:
    """When the first certificate of a PEM file expires (its ``notAfter``),
    or None when the file holds no certificate this can read (the TLS
    checks say what is wrong with it)."""
    try:
        match = _PEM_CERTIFICATE.search(Path(path).read_text(encoding="ascii", errors="replace"))
        if match is None:
            return None
        der = ssl.PEM_cert_to_DER_cert(match.group(0))
        _, at, _ = _element(der, 0)  # Certificate
        _, at, _ = _element(der, at)  # TBSCertificate: [0] version, serial, signature, issuer, validity (RFC 5280 §4.1)
        if der[at] == 0xA0:
            at = _element(der, at)[2]
        for _ in range(3):
            at = _element(der, at)[2]
        _, at, _ = _element(der, at)  # Validity: notBefore, notAfter
        at = _element(der, at)[2]
        tag, start, end = _element(der, at)
        return _time(tag, der[start:end].decode("ascii"))
    except (OSError, ValueError, IndexError):
        return None


def warn_if_expired(setting: str, path: str, log: logging.Logger) -> None:
    """A WARNING naming the certificate when it has expired: the server
    serves it all the same (a renewed one comes with SIGHUP), but every
    client that checks it refuses the handshake."""
    expiry = not_after(path)
    if expiry is not None and expiry <= datetime.now(timezone.utc):
        log.warning("%s %r: the certificate expired on %s: clients will refuse it (certificate_expired) until it is renewed",
                    setting, path, expiry.strftime("%Y-%m-%d %H:%M:%S UTC"))  # fmt: skip
