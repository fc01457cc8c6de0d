"""``python -m ipc_server --loop``: the event loop setting from flags, TOML and
the environment, and a clear error when uvloop is not installed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ipc_client import IPCClient
from ipc_server.command import build_parser, loop_factory
from ipc_server.config import ServerConfig, load_config

from .conftest import ROOT


def test_loop_defaults_to_asyncio_and_rejects_unknown_names() -> None:
    assert ServerConfig().loop == "asyncio"
    assert loop_factory("asyncio") is None
    with pytest.raises(ValueError, match="loop must be one of asyncio, uvloop"):
        ServerConfig(loop="trio")


def test_loop_comes_from_toml_env_and_flag(tmp_path) -> None:
    cfg = tmp_path / "ipc.toml"
    cfg.write_text('[server]\nloop = "uvloop"\n')
    assert load_config(path=cfg, env={}).loop == "uvloop"
    assert load_config(path=cfg, env={"IPC_SERVER_LOOP": "asyncio"}).loop == "asyncio"  # env beats the file
    flags = vars(build_parser().parse_args(["--loop", "asyncio"]))
    assert load_config(env={"IPC_SERVER_LOOP": "uvloop"}, overrides=flags).loop == "asyncio"  # flag beats env
    assert "loop" not in vars(build_parser().parse_args([]))


def test_unknown_loop_flag_is_a_usage_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ipc_server", "--loop", "trio"], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_uvloop_missing_exits_2_with_an_install_hint() -> None:
    # Hide uvloop whether or not it is installed: a None entry in
    # sys.modules makes the import raise ImportError.
    program = "import sys; sys.modules['uvloop'] = None; from ipc_server.__main__ import main; sys.exit(main(['--loop', 'uvloop', '--port', '0']))"
    proc = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert "needs the uvloop package" in proc.stderr and "ipc-bridge[uvloop]" in proc.stderr
    assert "listening" not in proc.stdout


async def test_server_runs_on_uvloop_when_installed(spawn) -> None:
    pytest.importorskip("uvloop")
    srv = await spawn("-m", "ipc_server", "--port", "0", "--loop", "uvloop")
    async with IPCClient("app", "127.0.0.1", srv.port) as c:
        assert c.server_info["protocol"] == 2


def test_client_runs_on_uvloop_when_installed() -> None:
    uvloop = pytest.importorskip("uvloop")
    from ipc_server import IPCServer

    async def round_trip() -> object:
        async with IPCServer("127.0.0.1", 0) as server:
            server.add_handler("echo", lambda m: m.payload)
            async with IPCClient("app", "127.0.0.1", server.port) as c:
                return await c.request("echo", {"on": "uvloop"})

    assert uvloop.run(round_trip()) == {"on": "uvloop"}
