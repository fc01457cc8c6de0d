"""``python -m ipc_server``: configuration sources and graceful shutdown on signals."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import pytest

from ipc_client import IPCClient
from ipc_protocol import NoResponders, ShuttingDown
from ipc_server import IPCServer

from .conftest import ROOT, WAIT_S


async def test_env_and_toml_configure_the_cli(spawn, tmp_path) -> None:
    cfg = tmp_path / "ipc.toml"
    cfg.write_text("[server]\nmax_frame_size = 4096\nheartbeat_interval_s = 2.5\n")
    srv = await spawn("-m", "ipc_server", "--port", "0", "--config", str(cfg), env={"IPC_SERVER_MAX_FRAME_SIZE": "8192"})
    async with IPCClient("app", "127.0.0.1", srv.port) as c:
        assert c.server_info["max_frame_size"] == 8192  # env beats the file
        assert c.server_info["heartbeat_interval_ms"] == 2500


def test_invalid_configuration_exits_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ipc_server", "--port", "99999"], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2 and "invalid configuration" in proc.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_signal_lets_in_flight_requests_finish(spawn, sig) -> None:
    # No lame duck, no grace: the shutdown of §13 itself (SIGTERM's lame duck: tests/test_lame_duck.py).
    srv = await spawn("-m", "ipc_server", "--port", "0", "--shutdown-grace", "5", "--lame-duck-duration", "0", "--no-responders-grace", "0")
    worker = IPCClient("app", "127.0.0.1", srv.port, reconnect=False)
    caller = IPCClient("app", "127.0.0.1", srv.port, reconnect=False)
    await worker.connect()
    await caller.connect()
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(msg):
        started.set()
        await release.wait()
        return "finished"

    await worker.serve("slow", slow)
    pending = asyncio.ensure_future(caller.request("slow", timeout=WAIT_S))
    await asyncio.wait_for(started.wait(), WAIT_S)
    srv.signal(sig)
    # The signal lands asynchronously; once the server is shutting down, new
    # requests are refused while the old one is still allowed to finish.
    async def refused() -> None:
        while True:
            try:
                await caller.request("probe", timeout=WAIT_S)
            except ShuttingDown:
                return
            except NoResponders:
                await asyncio.sleep(0.01)

    await asyncio.wait_for(refused(), WAIT_S)
    release.set()
    assert await asyncio.wait_for(pending, WAIT_S) == "finished"
    assert await srv.wait() == 0
    await worker.disconnect()
    await caller.disconnect()


async def test_requests_past_the_grace_period_get_shutting_down() -> None:
    server = IPCServer("127.0.0.1", 0, shutdown_grace_s=0.2)
    await server.start()
    started = asyncio.Event()

    @server.handler("forever")
    async def forever(msg):
        started.set()
        await asyncio.sleep(3600)

    worker = IPCClient("app", "127.0.0.1", server.port, reconnect=False)
    caller = IPCClient("app", "127.0.0.1", server.port, reconnect=False)
    await worker.connect()
    await caller.connect()
    await worker.serve("hang", lambda m: asyncio.sleep(3600))
    a = asyncio.ensure_future(caller.request("forever", timeout=WAIT_S))
    b = asyncio.ensure_future(caller.request("hang", timeout=WAIT_S))
    await asyncio.wait_for(started.wait(), WAIT_S)
    while " forwarded=0 " in repr(server):
        await asyncio.sleep(0.01)
    await server.close()
    results = await asyncio.gather(a, b, return_exceptions=True)
    assert [type(r) for r in results] == [ShuttingDown, ShuttingDown]
    await worker.disconnect()
    await caller.disconnect()


async def test_nothing_of_the_server_runs_once_close_returns() -> None:
    """The heartbeat sweep and the metrics' lag sampler have ended, not
    only been told to: an application that closes its loop next finds no
    task of the server pending."""
    server = IPCServer("127.0.0.1", 0, metrics_port=0)
    await server.start()
    tasks = [server._sweeper, server.metrics._lag_task]
    await server.close()
    assert all(task is not None and task.done() for task in tasks)


async def test_close_before_start_is_harmless() -> None:
    server = IPCServer("127.0.0.1", 0)
    await server.close()
    await server.close()


async def test_cli_can_turn_heartbeats_and_limits_off(spawn) -> None:
    srv = await spawn("-m", "ipc_server", "--port", "0", "--heartbeat-interval", "off", "--max-connections", "none")
    async with IPCClient("app", "127.0.0.1", srv.port) as c:
        assert c.server_info["heartbeat_interval_ms"] == 0
