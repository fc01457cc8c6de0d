"""The files settings name (the configuration file, the users and token
files, TLS certificates and keys, the cluster link's): checked as the
server starts, every error naming the setting and the path, so a server
whose file cannot be used never starts (``python -m ipc_server`` exits 2).

Pure: no asyncio, and nothing of the server imported, so ``config`` can
use it too.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["readable", "read_utf8", "no_password"]


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
