"""The Python client's lifecycle against real servers: connect, failures,
heartbeats, reconnection with restored subscriptions and responders."""

from __future__ import annotations

import asyncio
import signal

import pytest

from ipc_client import ConnectionState, IPCClient
from ipc_protocol import ConnectionLost, MessageError, NotConnected, RequestTimeout

from .conftest import WAIT_S


async def test_connect_failure_raises_not_connected() -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nobody listens there now
    c = IPCClient("app", "127.0.0.1", port, connect_timeout=2)
    with pytest.raises(NotConnected):
        await c.connect()
    assert c.state is ConnectionState.DISCONNECTED


async def test_calls_before_connect_raise_not_connected() -> None:
    c = IPCClient("app", "127.0.0.1", 1)
    with pytest.raises(NotConnected):
        await c.send_request("x")
    with pytest.raises(NotConnected):
        await c.publish("x", 1)


async def test_context_manager_and_callbacks(server) -> None:
    events: list[str] = []
    c = IPCClient(
        "app", "127.0.0.1", server.port,
        on_connected=lambda info: events.append("connected:" + info["state"]),
        on_disconnected=lambda reason: events.append("disconnected"),
    )
    async with c:
        assert c.connected
        info = c.get_connection_info()
        assert info["protocol"] == 2 and info["server"].startswith("ipc-bridge/")
    assert events == ["connected:connected", "disconnected"]
    assert c.state is ConnectionState.DISCONNECTED


async def test_nan_is_refused_before_sending(make_client) -> None:
    c = await make_client()
    with pytest.raises(MessageError):
        await c.publish("x", float("nan"))
    assert c.get_connection_info()["pending_requests"] == 0
    assert (await c.health_check())["healthy"]


async def test_health_check_reports_latency(make_client) -> None:
    c = await make_client()
    health = await c.health_check()
    assert health["healthy"] and health["latency_ms"] > 0 and health["state"] == "connected"


async def test_disconnect_fails_pending_requests(make_client) -> None:
    worker = await make_client()
    await worker.serve("hang", lambda m: asyncio.sleep(3600))
    c = await make_client()
    pending = asyncio.ensure_future(c.request("hang", timeout=60))
    await asyncio.sleep(0.05)
    await c.disconnect()
    with pytest.raises(ConnectionLost):
        await asyncio.wait_for(pending, WAIT_S)


async def test_client_detects_a_silent_server_within_its_heartbeat_timeout(spawn) -> None:
    srv = await spawn("-m", "ipc_server", "--port", "0")
    lost = asyncio.get_running_loop().create_future()
    c = IPCClient(
        "app", "127.0.0.1", srv.port, heartbeat_interval=0.2, heartbeat_timeout=0.6, reconnect=False,
        on_disconnected=lambda reason: lost.done() or lost.set_result(reason),
    )
    await c.connect()
    timeouts: list = []
    c.on("heartbeat_timeout", timeouts.append)
    loop = asyncio.get_running_loop()
    srv.signal(signal.SIGSTOP)  # the TCP connection stays open: a half-dead peer
    t0 = loop.time()
    try:
        reason = await asyncio.wait_for(lost, WAIT_S)
    finally:
        srv.signal(signal.SIGCONT)
    assert loop.time() - t0 < 0.6 + 0.5
    assert isinstance(reason, ConnectionLost) and "heartbeat" in str(reason)
    assert len(timeouts) == 1
    await c.disconnect()


async def test_reconnect_restores_subscriptions_and_responders(spawn) -> None:
    srv = await spawn("-m", "ipc_server", "--port", "0")
    port = srv.port
    kw = dict(initial_delay=0.05, max_delay=0.2)
    worker = IPCClient("app", "127.0.0.1", port, **kw)
    sub = IPCClient("app", "127.0.0.1", port, **kw)
    reconnected: asyncio.Queue = asyncio.Queue()
    for c in (worker, sub):
        c.on("reconnected", reconnected.put_nowait)
        await c.connect()
    await worker.serve("svc.echo", lambda m: m.payload)
    inbox: asyncio.Queue = asyncio.Queue()
    await sub.subscribe("news.>", lambda m: inbox.put_nowait(m.payload))
    assert await sub.request("svc.echo", 1) == 1

    srv.proc.kill()
    srv.proc.wait()
    srv2 = await spawn("-m", "ipc_server", "--port", str(port))
    for _ in range(2):
        info = await asyncio.wait_for(reconnected.get(), WAIT_S)
        assert info["attempts"] >= 1
    # Nothing was re-done by hand: the responder and the subscription are back.
    assert await sub.request("svc.echo", 2) == 2
    assert await worker.publish("news.eu", "back", ack=True) == 1
    assert await asyncio.wait_for(inbox.get(), WAIT_S) == "back"
    assert sub.get_connection_info()["reconnects"] == 1
    await worker.disconnect()
    await sub.disconnect()
    srv2.stop()


async def test_requests_wait_for_the_reconnection_within_their_timeout(spawn) -> None:
    srv = await spawn("-m", "ipc_server", "--port", "0")
    port = srv.port
    c = IPCClient("app", "127.0.0.1", port, initial_delay=0.05, max_delay=0.1)
    await c.connect()
    states: list[str] = []
    c.on("reconnecting", lambda info: states.append("reconnecting"))
    srv.proc.kill()
    srv.proc.wait()
    while c.state is not ConnectionState.RECONNECTING:
        await asyncio.sleep(0.01)
    # While the server is down, a short request times out instead of hanging.
    with pytest.raises(RequestTimeout):
        await c.system("stats", timeout=0.2)
    pending = asyncio.ensure_future(c.system("stats", timeout=WAIT_S))
    await spawn("-m", "ipc_server", "--port", str(port))
    stats = await asyncio.wait_for(pending, WAIT_S)
    assert stats["connections"] == 1
    assert states
    await c.disconnect()


async def test_max_retries_gives_up(spawn) -> None:
    srv = await spawn("-m", "ipc_server", "--port", "0")
    failed = asyncio.get_running_loop().create_future()
    c = IPCClient("app", "127.0.0.1", srv.port, initial_delay=0.01, max_delay=0.02, max_retries=3)
    c.on("reconnect_failed", lambda n: failed.done() or failed.set_result(n))
    await c.connect()
    srv.proc.kill()
    assert await asyncio.wait_for(failed, WAIT_S) == 3
    assert c.state is ConnectionState.DISCONNECTED
    with pytest.raises(NotConnected):
        await c.send_request("x")


async def test_serve_before_the_event_loop_runs(server) -> None:
    """Handlers may be declared in plain setup code, before any loop runs;
    connect() registers them."""
    port = server.port

    def setup_then_run() -> str:  # runs in a thread with no event loop
        worker = IPCClient("app", "127.0.0.1", port)
        registration = worker.serve("early", lambda m: "registered early")
        assert not registration.done()

        async def main() -> str:
            async with worker, IPCClient("app", "127.0.0.1", port) as caller:
                await registration
                return await caller.request("early")

        return asyncio.run(main())

    assert await asyncio.wait_for(asyncio.to_thread(setup_then_run), WAIT_S) == "registered early"
