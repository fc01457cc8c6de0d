"""The NATS link's files (``cluster_creds``, ``cluster_tls_ca``,
``cluster_tls_cert``, ``cluster_tls_key``): read when the server is
configured, as the server's own TLS files are (docs/security.md §2), so a
missing or unusable one stops ``python -m ipc_server`` with exit code 2
naming the setting and the path, never later as an error of the link.

Without nats-py: ``python -m ipc_server`` checks them before it asks
whether the ``cluster`` extra is installed.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from ..setting_files import load_chain, read_utf8, readable

if TYPE_CHECKING:
    from ..config import ServerConfig

__all__ = ["link_context", "check_link_files"]

# What nats-py looks for in a credentials file (nsc's format): the user's JWT and its NKey seed.
_CREDS_MARKERS = ("BEGIN NATS USER JWT", "BEGIN USER NKEY SEED")


def link_context(config: ServerConfig) -> ssl.SSLContext | None:
    """The TLS context of the NATS link: with a ``tls://`` URL or any
    ``cluster_tls_*`` setting, the system's CAs or ``cluster_tls_ca`` and
    the client certificate of ``cluster_tls_cert``; else None. Raises
    ``ValueError`` naming the setting for a file missing, unreadable, not
    PEM, or a key that does not match its certificate."""
    ca, cert, key = config.cluster_tls_ca, config.cluster_tls_cert, config.cluster_tls_key
    if ca is None and cert is None and not any(u.startswith("tls://") for u in config.cluster):
        return None
    if ca is not None:
        readable("cluster_tls_ca", ca)
    try:  # cluster_tls_ca replaces the system's CAs
        context = ssl.create_default_context(cafile=ca)
    except ssl.SSLError as exc:
        raise ValueError(f"cluster_tls_ca {ca!r} must hold PEM CA certificates: {exc}") from None
    if cert is not None and key is not None:
        load_chain(context, "cluster_tls_cert", cert, "cluster_tls_key", key)
    return context


def check_link_files(config: ServerConfig) -> ssl.SSLContext | None:
    """Read every file of the NATS link (``ValueError`` naming the
    setting); the link's TLS context (``link_context``), None without
    ``cluster``."""
    if not config.cluster:
        return None
    creds = config.cluster_creds
    if creds is not None:
        readable("cluster_creds", creds)
        try:
            text = read_utf8("cluster_creds", creds)
        except OSError as exc:
            raise ValueError(f"cluster_creds {creds!r}: cannot read it: {exc.strerror or exc}") from None
        if not all(marker in text for marker in _CREDS_MARKERS):
            raise ValueError(f"cluster_creds {creds!r} is not a NATS credentials file: it needs a user JWT and its NKey seed (nsc generate creds)")
    return link_context(config)
