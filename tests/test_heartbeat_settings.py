"""Heartbeat intervals that parse but cannot work (docs/protocol.md §9): an
interval under 10 ms is refused wherever it is given, the interval a server
advertises is never rounded down to 0 (off), and its sweep is never a busy
loop."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ipc_client import ConnectionPool, IPCClient, LoadBalancedClient
from ipc_protocol.constants import MIN_HEARTBEAT_INTERVAL_S
from ipc_protocol.messages import connect_request
from ipc_protocol.server_protocol import ServerProtocol
from ipc_server import IPCServer
from ipc_server.config import ServerConfig, load_config
from ipc_server.heartbeat_sweep import sweep_period

from .test_protocol_base import feed, frame_of, sent

ROOT = Path(__file__).resolve().parent.parent
TOO_SHORT = ["0.0001", "1e-300", "0.009", "5e-324"]


@pytest.mark.parametrize("value", TOO_SHORT)
def test_a_heartbeat_interval_under_10_ms_is_refused_in_code_env_and_toml(tmp_path: Path, value: str) -> None:
    message = r"heartbeat_interval_s must be at least 0\.01 s \(or 0 or None to turn heartbeats off\), got "
    with pytest.raises(ValueError, match="^" + message):
        ServerConfig(heartbeat_interval_s=float(value))
    with pytest.raises(ValueError, match="^" + message):
        IPCServer("127.0.0.1", 0, heartbeat_interval_s=float(value))
    with pytest.raises(ValueError, match="^IPC_SERVER_HEARTBEAT_INTERVAL_S: " + message):
        load_config(env={"IPC_SERVER_HEARTBEAT_INTERVAL_S": value})
    path = tmp_path / "server.toml"
    path.write_text(f"[server]\nheartbeat_interval_s = {value}\n")
    with pytest.raises(ValueError, match=r"server\.toml: heartbeat_interval_s: " + message):
        load_config(path=path, env={})


@pytest.mark.parametrize("value", ["0.0001", "1e-300"])
def test_the_cli_refuses_a_heartbeat_interval_under_10_ms(value: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ipc_server", "--port", "0", "--heartbeat-interval", value],
        cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 2
    assert "invalid configuration: command line: heartbeat_interval_s must be at least 0.01 s" in done.stderr


def test_off_the_minimum_and_long_intervals_are_accepted_and_past_2_53_ms_refused() -> None:
    for value in (None, 0, 0.0, MIN_HEARTBEAT_INTERVAL_S, 3e6):
        assert ServerConfig(heartbeat_interval_s=value).heartbeat_interval_s == value
    with pytest.raises(ValueError, match=r"^heartbeat_interval_s must be at most .* \(2\^53-1 ms\), got 1e\+20"):
        ServerConfig(heartbeat_interval_s=1e20)  # 1e306 s made every accept raise OverflowError


def test_a_cluster_heartbeat_under_10_ms_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^IPC_SERVER_CLUSTER_HEARTBEAT_S: cluster_heartbeat_s must be at least 0\.01 s, got 0\.001"):
        load_config(env={"IPC_SERVER_CLUSTER_HEARTBEAT_S": "0.001"})


@pytest.mark.parametrize(("interval_s", "advertised_ms"), [(0.0004, 1), (0.0155, 16), (0.57, 570), (15.0, 15000), (None, 0), (0, 0)])
def test_the_advertised_interval_is_rounded_and_never_0_when_on(interval_s: float | None, advertised_ms: int) -> None:
    """The sans-I/O core takes any positive interval (an embedder's own
    ServerProtocol): 0.4 ms is advertised 1, not 0, which clients read as off."""
    proto = ServerProtocol(heartbeat_interval_s=interval_s, server_name="test")
    feed(proto, frame_of(connect_request("app", "c1", client="test", protocol=2)))
    proto.accept("c1", now=0.0)
    (reply,) = sent(proto)
    assert reply.payload["heartbeat_interval_ms"] == advertised_ms


def test_the_sweep_period_has_a_floor() -> None:
    assert sweep_period(1e-300) == MIN_HEARTBEAT_INTERVAL_S / 4
    assert sweep_period(MIN_HEARTBEAT_INTERVAL_S) == MIN_HEARTBEAT_INTERVAL_S / 4
    assert sweep_period(0.4) == 0.1 and sweep_period(15.0) == 0.25 and sweep_period(None) == 0.25


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("heartbeat_interval", math.nan),
        ("heartbeat_interval", math.inf),
        ("heartbeat_interval", 0.001),
        ("heartbeat_interval", 0),
        ("heartbeat_timeout", math.nan),
        ("heartbeat_timeout", math.inf),
        ("heartbeat_timeout", 0.001),
        ("heartbeat_timeout", -1.0),
    ],
)
def test_the_python_client_refuses_a_heartbeat_setting_that_cannot_work(option: str, value: float) -> None:
    """nan turned heartbeats off unseen: health said unhealthy and its
    interval nan forever (Node refuses it with a TypeError)."""
    with pytest.raises(ValueError, match=rf"^{option} must be a finite number of seconds >= 0\.01, or None, got "):
        IPCClient("app", "127.0.0.1", 1, **{option: value})


def test_the_python_client_takes_the_minimum_none_and_a_0_timeout() -> None:
    client = IPCClient("app", "127.0.0.1", 1, heartbeat_interval=MIN_HEARTBEAT_INTERVAL_S, heartbeat_timeout=0.02)
    assert (client.heartbeat_interval, client.heartbeat_timeout) == (0.01, 0.02)
    client = IPCClient("app", "127.0.0.1", 1, heartbeat_interval=None, heartbeat_timeout=0)  # 0, as None: twice the interval
    assert (client.heartbeat_interval, client.heartbeat_timeout) == (None, 0)


def test_pools_and_load_balancers_check_their_members_options_when_made() -> None:
    """Checked by the constructor (as Node's), not first at ``start()``."""
    nan = {"heartbeat_interval": math.nan}
    with pytest.raises(ValueError, match="^heartbeat_interval must be a finite number"):
        ConnectionPool("app", "127.0.0.1", 1, **nan)
    with pytest.raises(ValueError, match="^heartbeat_interval must be a finite number"):
        LoadBalancedClient("app", [("127.0.0.1", 1)], **nan)
    with pytest.raises(ValueError, match="^request_timeout must be a finite number of seconds > 0, got -1"):
        ConnectionPool("app", "127.0.0.1", 1, request_timeout=-1)
    with pytest.raises(ValueError, match="^max_delay must be >= initial_delay"):
        LoadBalancedClient("app", [("127.0.0.1", 1)], initial_delay=1, max_delay=0.5)
    with pytest.raises(TypeError, match="unexpected keyword argument 'heartbeat'"):
        ConnectionPool("app", "127.0.0.1", 1, heartbeat=5)
