"""A cap on the log lines refused sockets make the server write, per peer
host (docs/operations.md §4): a refusal that ends a connection at or before
its handshake (a wrong token, an unknown user, a TLS handshake refused, the
server full, a handshake timeout, a bad first frame) is one line per
connection, so the per-connection limit (``log_limits``) never stops it: a
peer reconnecting as fast as it can with a wrong token wrote ~3,900 lines
(600 KiB) a second.

The same rule as ``log_limits``, keyed by the peer's host (its IP address,
an IPv6 one's /64, as the credential checks queue peers) and reason: the
first ``BURST`` lines are written, the ones after are counted, and every
``WINDOW_S`` seconds one line says how many were suppressed. A key quiet
for a window is dropped (its burst is back), so the table holds the hosts
refused lately, at most ``MAX_HOSTS``; the hosts past it share one key,
whose count line says so. One table per server (the admission's).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ipc_protocol import clipped

from . import log_limits
from .log_limits import LineKey
from .verifier import address_of

__all__ = ["HostLines", "MAX_HOSTS"]

MAX_HOSTS = 4096
_OTHERS = ""  # the key of the hosts past MAX_HOSTS (no host's address is empty)


class HostLines:
    """The server's limits on refused sockets' lines, by peer host and reason."""

    __slots__ = ("hosts", "burst", "window_s", "max_hosts")

    def __init__(self) -> None:
        self.hosts: dict[str, dict[str, LineKey]] = {}
        self.burst = log_limits.BURST  # read here, so a test can shorten them
        self.window_s = log_limits.WINDOW_S
        self.max_hosts = MAX_HOSTS

    def allow(self, peer: Any, reason: str, logger: logging.Logger) -> bool:
        """Whether to write ``peer``'s line for ``reason`` now; if not, it is counted."""
        host = address_of(peer) or "-"
        reasons = self.hosts.get(host)
        if reasons is None:
            if len(self.hosts) >= self.max_hosts:
                host = _OTHERS
                reasons = self.hosts.get(host)
            if reasons is None:
                reasons = self.hosts[host] = {}
        key = reasons.get(reason)
        now = time.monotonic()
        if key is None:
            key = reasons[reason] = LineKey(logger, now, since=now)
            key.timer = asyncio.get_running_loop().call_later(self.window_s, self._window_ended, host, reason)
            return True
        key.last = now
        if key.written < self.burst:
            key.written += 1
            return True
        if key.suppressed == 0:
            key.since = now
        key.suppressed += 1
        return False

    def _window_ended(self, host: str, reason: str) -> None:
        reasons = self.hosts[host]
        key = reasons[reason]
        now = time.monotonic()
        if key.suppressed:
            self._summary(host, reason, key)
            delay = self.window_s
        elif now - key.last >= self.window_s:  # quiet for a window: forgotten, its burst is back
            del reasons[reason]
            if not reasons:
                del self.hosts[host]
            return
        else:
            delay = key.last + self.window_s - now
        key.timer = asyncio.get_running_loop().call_later(delay, self._window_ended, host, reason)

    def _summary(self, host: str, reason: str, key: LineKey) -> None:
        elapsed = time.monotonic() - key.since
        seconds = f"{elapsed:.0f}" if elapsed >= 1 else f"{elapsed:.1f}"
        source = f"host {clipped(host)}" if host != _OTHERS else f"hosts past the {self.max_hosts} tracked"
        key.logger.info("%d more '%s' lines from %s suppressed in the last %s s", key.suppressed, reason, source, seconds, extra={"peer": host or None})
        key.suppressed = 0

    def flush(self) -> None:
        """The server closes: say what was suppressed, stop the timers."""
        for host, reasons in self.hosts.items():
            for reason, key in reasons.items():
                if key.timer is not None:
                    key.timer.cancel()
                if key.suppressed:
                    self._summary(host, reason, key)
        self.hosts.clear()
