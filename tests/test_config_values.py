"""Values that parse but cannot work are refused at start with the setting's
name (exit 2), rather than starting a server that fails later."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ipc_server import IPCServer
from ipc_server.config import ServerConfig, env_name, load_config

ROOT = Path(__file__).resolve().parent.parent
SECONDS = [f.name for f in ServerConfig.__dataclass_fields__.values() if str(f.type).startswith("float")]


@pytest.mark.parametrize("word", ["nan", "inf", "-inf", "NaN", "Infinity"])
@pytest.mark.parametrize("name", SECONDS)
def test_a_variable_in_seconds_must_be_finite(name: str, word: str) -> None:
    with pytest.raises(ValueError, match=f"^{env_name(name)}: expected a number"):
        load_config(env={env_name(name): word})


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_toml_value_in_seconds_must_be_finite(tmp_path: Path, value: str) -> None:
    path = tmp_path / "server.toml"
    path.write_text(f"[server]\nlame_duck_duration_s = {value}\n")
    with pytest.raises(ValueError, match=r"server\.toml: lame_duck_duration_s: expected a number"):
        load_config(path=path, env={})


@pytest.mark.parametrize("name", SECONDS)
def test_a_setting_in_seconds_given_in_code_must_be_finite(name: str) -> None:
    for value in (math.nan, math.inf):
        with pytest.raises(ValueError, match=f"^{name} must be a finite number of seconds"):
            ServerConfig(**{name: value})
    with pytest.raises(ValueError, match="heartbeat_interval_s must be a finite"):
        IPCServer("127.0.0.1", 0, heartbeat_interval_s=math.nan)


@pytest.mark.parametrize(
    "argv",
    [
        ["--lame-duck-duration", "inf"],
        ["--heartbeat-interval", "nan"],
        ["--shutdown-grace", "nan"],
        ["--cluster-heartbeat", "inf"],
    ],
)
def test_the_cli_refuses_a_flag_that_is_not_finite(argv: list[str]) -> None:
    done = run_server("--port", "0", *argv)
    assert done.returncode == 2
    # Not a decimal number: refused as the flag is read (ipc_server/decimals.py), not by the server's checks.
    assert f"error: argument {argv[0]}: " in done.stderr and repr(argv[1]) in done.stderr, done.stderr


def run_server(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m ipc_server`` expected to exit at once; one that starts instead times out."""
    return subprocess.run(
        [sys.executable, "-m", "ipc_server", *argv],
        cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.mark.parametrize("name", ["host", "metrics_host"])
@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_host_is_refused(name: str, value: str) -> None:
    """asyncio would bind "" on every interface, IPv4 and IPv6 (the
    unauthenticated /metrics too): every interface is asked for by name."""
    with pytest.raises(ValueError, match=f"^{env_name(name)}: {name} must not be empty: give 0.0.0.0 or ::"):
        load_config(env={env_name(name): value})
    with pytest.raises(ValueError, match=f"^{name} must not be empty"):
        IPCServer(**{name: value})


def test_the_cli_refuses_an_empty_host() -> None:
    done = run_server("--port", "0", "--host", "")
    assert done.returncode == 2 and "invalid configuration: command line: host must not be empty" in done.stderr
    done = run_server("--port", "0", "--metrics-port", "0", env={"IPC_SERVER_METRICS_HOST": ""})
    assert done.returncode == 2 and "invalid configuration: IPC_SERVER_METRICS_HOST: metrics_host must not be empty" in done.stderr


def test_an_empty_token_is_refused(tmp_path: Path) -> None:
    """An unset variable in a compose file must not make "" the secret."""
    with pytest.raises(ValueError, match="^IPC_SERVER_TOKEN: token must not be empty"):
        load_config(env={"IPC_SERVER_TOKEN": ""})
    path = tmp_path / "server.toml"
    path.write_text('token = ""\n')
    with pytest.raises(ValueError, match=r"server\.toml: token: token must not be empty"):
        load_config(path=path, env={})
    done = run_server("--port", "0", env={"IPC_SERVER_TOKEN": ""})
    assert done.returncode == 2 and "invalid configuration: IPC_SERVER_TOKEN: token must not be empty" in done.stderr
    assert load_config(env={"IPC_SERVER_TOKEN": " s3cret "}).token == " s3cret "  # any other string is the secret, as given


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("port = 1\n[server]\nlog_level = 'DEBUG'\n", r"'port' is at top level next to a \[server\] table: move it under \[server\]"),
        ("metrics-port = 0\n[server]\nport = 0\n", r"'metrics-port' is at top level next to a \[server\] table"),
        ("[server]\nport = 0\n[sever]\nmax_connections = 1\n", r"unknown table \[sever\]"),
        ("[sever]\nmax_connections = 1\n", r"unknown table \[sever\]"),
        ("prot = 1\n[server]\nport = 0\n", r"unknown setting 'prot'"),
    ],
)
def test_a_toml_key_outside_the_settings_is_an_error(tmp_path: Path, text: str, message: str) -> None:
    """Settings go at top level or under [server]: a key beside the table,
    or another table, would be silently ignored."""
    path = tmp_path / "server.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"server\.toml: " + message):
        load_config(path=path, env={})
    done = run_server("--config", str(path))
    assert done.returncode == 2 and "invalid configuration: " in done.stderr


def test_a_toml_file_holds_its_settings_at_top_level_or_under_server(tmp_path: Path) -> None:
    for text in ("port = 9001\nmetrics_port = 0\n", "[server]\nport = 9001\nmetrics_port = 0\n"):
        path = tmp_path / "server.toml"
        path.write_text(text)
        config = load_config(path=path, env={})
        assert (config.port, config.metrics_port) == (9001, 0)


@pytest.mark.parametrize("extra", [[], ["--workers", "2"]])
def test_cluster_without_nats_exits_2_with_an_install_hint(extra: list[str]) -> None:
    """As ``--loop uvloop`` without uvloop: the hint, not a traceback (nats
    hidden whether or not it is installed: None in sys.modules)."""
    argv = ["--cluster", "nats://127.0.0.1:4222", "--port", "0", *extra]
    program = f"import sys; sys.modules['nats'] = None; from ipc_server.__main__ import main; sys.exit(main({argv!r}))"
    proc = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == "ipc_server: --cluster needs the nats-py package: pip install 'ipc-bridge[cluster]'\n"
    assert "listening" not in proc.stdout


@pytest.mark.parametrize(("flag", "name"), [("--token-file", "token_file"), ("--users", "users_file")])
@pytest.mark.parametrize(("path", "reason"), [(".", "Is a directory"), ("missing.txt", "No such file or directory")])
def test_an_auth_file_that_cannot_be_read_names_its_setting(tmp_path: Path, flag: str, name: str, path: str, reason: str) -> None:
    target = tmp_path / path
    done = run_server("--port", "0", flag, str(target))
    assert done.returncode == 2
    assert done.stderr == f"ipc_server: invalid configuration: {name} {str(target)!r}: cannot read it: {reason}\n"
