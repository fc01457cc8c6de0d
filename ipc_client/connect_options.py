"""What a client's connections need of its options, checked when the
client is made: :class:`ConnectOptions` (js-client/lib/options.js checks
Node's)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ipc_protocol.constants import MAX_FRAME_LIMIT, MIN_HEARTBEAT_INTERVAL_S

from .backoff import Backoff
from .option_checks import check_seconds
from .tls import ClientTLS

__all__ = ["ConnectOptions"]


@dataclass(frozen=True)
class ConnectOptions:
    """What the connection's lifecycle needs of the client's options."""

    app_id: str
    host: str
    port: int
    connect_timeout: float
    token: str | None
    max_frame_size: int | None
    heartbeat_interval: float | None
    heartbeat_timeout: float | None
    reconnect: bool
    wait_on_first_connect: bool
    backoff: Backoff
    max_retries: int | None
    user: str | None = None  # with token: a user of the server's users file (docs/security.md §3)
    tls: ClientTLS | None = None  # None: plaintext (docs/security.md §2)

    def __post_init__(self) -> None:
        if not isinstance(self.app_id, str) or not self.app_id:
            raise ValueError("app_id must be a non-empty string")
        # nan or inf: a connect that never gives up on a peer that never answers (Node refuses them too).
        check_seconds("connect_timeout", self.connect_timeout, exclusive=True)
        # nan or inf would turn heartbeats off unseen (Node refuses them too); under
        # 10 ms a ping is due before it can be answered (docs/protocol.md §9).
        _check_heartbeat_setting("heartbeat_interval", self.heartbeat_interval)
        if self.heartbeat_timeout != 0:  # 0, as None: twice the interval
            _check_heartbeat_setting("heartbeat_timeout", self.heartbeat_timeout)
        if self.max_retries is not None and self.max_retries < 0:
            raise ValueError("max_retries must be >= 0 or None")
        limit = self.max_frame_size  # what the server accepts in a connect (docs/protocol.md §12.3), as Node's maxFrameSize
        if limit is not None and (limit.__class__ is not int or not 0 < limit <= MAX_FRAME_LIMIT):
            raise ValueError(f"max_frame_size must be an integer 1..{MAX_FRAME_LIMIT} or None, got {limit!r}")
        if self.user is not None and (not isinstance(self.user, str) or not self.user):
            raise ValueError("user must be a non-empty string or None")

    @property
    def peer(self) -> str:
        return f"{self.host}:{self.port}"


def _check_heartbeat_setting(name: str, seconds: float | None) -> None:
    if seconds is not None and not (math.isfinite(seconds) and seconds >= MIN_HEARTBEAT_INTERVAL_S):
        raise ValueError(f"{name} must be a finite number of seconds >= {MIN_HEARTBEAT_INTERVAL_S:g}, or None, got {seconds!r}")
