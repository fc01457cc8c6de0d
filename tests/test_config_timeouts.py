"""A zero timeout means the same from every source, a flag (``0`` or
``0.0``), a variable, the TOML file or code (README "The server"):
``default_request_timeout_s`` 0 holds a request until it is answered, as
``off`` does; ``handshake_timeout_s`` and ``auth_timeout_s`` 0 are refused,
since a socket that never completes its handshake would then be held
forever (docs/security.md §1, §4)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ipc_server.command import build_parser
from ipc_server.config import ServerConfig, load_config


def from_each_source(tmp_path: Path, name: str, flag: str, text: str) -> dict[str, Any]:
    """The setting ``name`` given as ``text``: by flag, variable, TOML and
    code; each the loaded value, or the ``ValueError``'s text."""
    out: dict[str, Any] = {}
    toml = tmp_path / "server.toml"
    toml.write_text(f"{name} = {text}\n")
    sources = {
        "flag": lambda: load_config(env={}, overrides=vars(build_parser().parse_args([flag, text]))),
        "env": lambda: load_config(env={f"IPC_SERVER_{name.upper()}": text}),
        "toml": lambda: load_config(path=toml, env={}),
        "code": lambda: ServerConfig(**{name: float(text)}),
    }
    for source, load in sources.items():
        try:
            out[source] = getattr(load(), name)
        except ValueError as exc:
            out[source] = str(exc)
    return out


@pytest.mark.parametrize("text", ["0", "0.0", "0e3"])
def test_a_zero_default_request_timeout_is_off_from_every_source(tmp_path: Path, text: str) -> None:
    """It was off from the flag's ``0`` only; ``0.0`` there, and 0 anywhere else, was refused ``must be positive``."""
    assert from_each_source(tmp_path, "default_request_timeout_s", "--default-request-timeout", text) == dict.fromkeys(("flag", "env", "toml", "code"))


def test_off_and_a_negative_default_request_timeout(tmp_path: Path) -> None:
    assert load_config(env={}, overrides=vars(build_parser().parse_args(["--default-request-timeout", "off"]))).default_request_timeout_s is None
    assert load_config(env={"IPC_SERVER_DEFAULT_REQUEST_TIMEOUT_S": "none"}).default_request_timeout_s is None
    refused = from_each_source(tmp_path, "default_request_timeout_s", "--default-request-timeout", "-1")
    assert all("default_request_timeout_s must not be negative" in text for text in refused.values()), refused
    assert ServerConfig(default_request_timeout_s=0.25).default_request_timeout_s == 0.25


@pytest.mark.parametrize(("name", "flag"), [("handshake_timeout_s", "--handshake-timeout"), ("auth_timeout_s", "--auth-timeout")])
@pytest.mark.parametrize("text", ["0", "0.0", "-1"])
def test_a_handshake_or_auth_deadline_cannot_be_turned_off(tmp_path: Path, name: str, flag: str, text: str) -> None:
    """0 was accepted and removed the deadline: a silent socket stayed open."""
    reason = f"{name} must be more than 0 s: a socket that never completes its handshake would be held forever"
    assert from_each_source(tmp_path, name, flag, text) == {
        "flag": f"command line: {reason}",
        "env": f"IPC_SERVER_{name.upper()}: {reason}",
        "toml": f"{tmp_path / 'server.toml'}: {name}: {reason}",
        "code": reason,
    }


@pytest.mark.parametrize("name", ["handshake_timeout_s", "auth_timeout_s"])
def test_a_short_handshake_or_auth_deadline_is_kept(name: str) -> None:
    assert getattr(ServerConfig(**{name: 0.01}), name) == 0.01


def test_other_zero_seconds_keep_their_documented_meaning() -> None:
    """0 turns heartbeats, the idempotency window, the no-responders grace,
    the lame duck and the shutdown grace off (README), from code as from a flag."""
    config = ServerConfig(heartbeat_interval_s=0, idempotency_window_s=0, no_responders_grace_s=0, lame_duck_duration_s=0, shutdown_grace_s=0)
    assert (config.heartbeat_interval_s, config.idempotency_window_s, config.no_responders_grace_s) == (0, 0, 0)
    assert load_config(env={}, overrides=vars(build_parser().parse_args(["--heartbeat-interval", "0.0"]))).heartbeat_interval_s == 0
