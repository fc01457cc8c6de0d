"""What SIGHUP reloads without a restart: the users file (docs/security.md
§3.4) and the TLS files (§2.4), each one the server has. A file that does
not load changes nothing: what was loaded stays, and the error is logged
(or raised, to an embedded server's caller)."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

from .auth import Auth
from .recheck import UsersReload
from .tls import TLSPort
from .users import load_users

__all__ = ["reload_users", "reload_tls", "reload_on_sighup"]

log = logging.getLogger("ipc_server")


def reload_users(users_file: str | None, auth: Auth | None, withdraw: Callable[..., Any], *, mutual_tls: bool = True, loop: asyncio.AbstractEventLoop | None = None) -> UsersReload:
    """Read the users file again and apply it (``Auth.replace``): at once to
    what comes next, then to the open connections, re-checked in slices
    (recheck.py). Returns ``{"disconnected": n, "withdrawn": n}``, final
    once awaited. Raises here ``ValueError`` or ``OSError`` (a bad file, or
    a ``cert_subject`` user without ``mutual_tls``: the old users stay),
    ``RuntimeError`` without a users file. Called from another thread than
    the server's ``loop`` (``asyncio.to_thread``, which 2.0.0 allowed), it
    is made in that loop, never beside it, and waited for."""
    if loop is not None and loop.is_running() and _running_loop() is not loop:
        again = partial(reload_users, users_file, auth, withdraw, mutual_tls=mutual_tls, loop=loop)
        return asyncio.run_coroutine_threadsafe(_call(again), loop).result()
    if auth is None or users_file is None:
        raise RuntimeError("this server has no users file (--users)")
    users = load_users(users_file, mutual_tls=mutual_tls)
    started = time.monotonic()

    def over(counts: UsersReload) -> None:
        log.info("users reloaded from %s: %d users, %d connections disconnected, %d registrations withdrawn (%d subscriptions and registrations re-checked in %.2f s%s)",
                 users_file, len(users), counts["disconnected"], counts["withdrawn"], counts.checked, time.monotonic() - started,
                 "" if counts.finished else "; then a later reload took over the re-check")  # fmt: skip

    return auth.replace(users, withdraw, over)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def _call(function: Callable[[], UsersReload]) -> UsersReload:
    return function()


def reload_tls(tls_cert: str | None, tls: TLSPort | None) -> None:
    """Read ``tls_cert``, ``tls_key`` and ``tls_ca`` again: new connections
    handshake with them, open ones keep what they were made with. Raises
    ``ValueError`` (a file missing, not PEM, a key that does not match: the
    old ones stay), ``RuntimeError`` without TLS."""
    if tls is None:
        raise RuntimeError("this server has no TLS (--tls-cert)")
    tls.reload()
    log.info("TLS certificate reloaded from %s", tls_cert)


class _Configured(Protocol):
    @property
    def users_file(self) -> str | None: ...

    @property
    def tls_cert(self) -> str | None: ...


class _Reloadable(Protocol):
    @property
    def config(self) -> _Configured: ...

    def reload_users(self) -> object: ...

    def reload_tls(self) -> object: ...


def reload_on_sighup(loop: asyncio.AbstractEventLoop, server: _Reloadable) -> None:
    """SIGHUP reloads what the server's configuration names of the two;
    installed with neither too, so a stray SIGHUP never ends the server.
    What is configured is read from the configuration, never guessed from
    an exception: any failure of a configured reload is its ERROR line."""

    def failed(what: str, exc: BaseException) -> None:
        if isinstance(exc, (ValueError, OSError)):  # the file's fault: what it says is enough
            log.error("SIGHUP: %s: %s", what, exc)
        else:  # the server's own fault: its traceback too, and the server goes on
            log.error("SIGHUP: %s: %s", what, exc, exc_info=exc)

    def on_sighup() -> None:
        config = server.config
        if config.users_file is None and config.tls_cert is None:
            log.warning("SIGHUP ignored: this server has neither a users file (--users) nor TLS (--tls-cert)")
            return
        if config.users_file is not None:
            try:
                server.reload_users()  # applies them, or raises; the re-check goes on in slices (recheck.py)
            except Exception as exc:  # noqa: BLE001 - logged; the old users stay
                failed("users file not reloaded, the previous users stay", exc)
        if config.tls_cert is not None:
            try:
                server.reload_tls()
            except Exception as exc:  # noqa: BLE001 - logged; the old certificate stays
                failed("TLS files not reloaded, the previous certificate stays", exc)

    try:
        loop.add_signal_handler(signal.SIGHUP, on_sighup)
    except (AttributeError, NotImplementedError, RuntimeError):  # pragma: no cover - non-Unix
        pass
