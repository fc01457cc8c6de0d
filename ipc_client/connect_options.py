"""What a client's connections need of its options, checked when the
client is made: :class:`ConnectOptions` (js-client/lib/options.js checks
Node's)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ipc_protocol.constants import MAX_CONNECT_ID_LENGTH, MAX_FRAME_LIMIT, MIN_HEARTBEAT_INTERVAL_S

from .backoff import Backoff
from .option_checks import check_bool, check_count, check_port, check_seconds
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
        if len(self.app_id) > MAX_CONNECT_ID_LENGTH:  # what the server refuses in a connect (docs/protocol.md §3 item 12)
            raise ValueError(f"app_id must be at most {MAX_CONNECT_ID_LENGTH} characters, got {len(self.app_id)}")
        # The rules of Node's options (js-client/lib/options.js), Python's
        # split: a wrong type is a TypeError, a value out of range a ValueError.
        if not isinstance(self.host, str):
            raise TypeError(f"host must be a non-empty string, got {type(self.host).__name__} {self.host!r:.40}")
        if not self.host:
            raise ValueError("host must be a non-empty string, got ''")
        check_port(self.port)
        # nan or inf: a connect that never gives up on a peer that never answers (Node refuses them too).
        check_seconds("connect_timeout", self.connect_timeout, exclusive=True)
        check_bool("reconnect", self.reconnect)
        check_bool("wait_on_first_connect", self.wait_on_first_connect)
        check_count("max_retries", self.max_retries, none=True, infinite=True)
        # nan or inf would turn heartbeats off unseen (Node refuses them too); under
        # 10 ms a ping is due before it can be answered (docs/protocol.md §9).
        _check_heartbeat_setting("heartbeat_interval", self.heartbeat_interval)
        if self.heartbeat_timeout != 0:  # 0, as None: twice the interval
            _check_heartbeat_setting("heartbeat_timeout", self.heartbeat_timeout)
            if self.heartbeat_interval is not None and self.heartbeat_timeout is not None and self.heartbeat_timeout <= self.heartbeat_interval:
                # Silence past the timeout is a dead connection: one under the interval is declared before a ping is due.
                raise ValueError(f"heartbeat_timeout must be greater than heartbeat_interval, got {self.heartbeat_timeout!r} <= {self.heartbeat_interval!r}")
        if self.token is not None and not isinstance(self.token, str):
            raise TypeError(f"token must be a string or None, got {type(self.token).__name__} {self.token!r:.40}")
        limit = self.max_frame_size  # what the server accepts in a connect (docs/protocol.md §12.3), as Node's maxFrameSize
        if limit is not None and (limit.__class__ is not int or not 0 < limit <= MAX_FRAME_LIMIT):
            raise ValueError(f"max_frame_size must be an integer 1..{MAX_FRAME_LIMIT} or None, got {limit!r}")
        if self.user is not None and (not isinstance(self.user, str) or not self.user):
            raise ValueError("user must be a non-empty string or None")
        if self.user is not None and len(self.user) > MAX_CONNECT_ID_LENGTH:
            raise ValueError(f"user must be at most {MAX_CONNECT_ID_LENGTH} characters, got {len(self.user)}")

    @property
    def peer(self) -> str:
        return f"{self.host}:{self.port}"


def _check_heartbeat_setting(name: str, seconds: float | None) -> None:
    if seconds is not None and not (math.isfinite(seconds) and seconds >= MIN_HEARTBEAT_INTERVAL_S):
        raise ValueError(f"{name} must be a finite number of seconds >= {MIN_HEARTBEAT_INTERVAL_S:g}, or None, got {seconds!r}")
