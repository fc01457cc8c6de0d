"""The Python client's lifecycle against real servers: connect, failures,
heartbeats, reconnection with restored subscriptions and responders."""

from __future__ import annotations

import asyncio
import logging
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
    assert await c.health_check() is True


async def test_health_check_reports_latency(make_client) -> None:
    c = await make_client()
    health = await c.health()
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
    assert loop.time() - t0 < 0.6 + 2.0
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


async def test_disconnect_while_connecting_leaves_nothing_open(server) -> None:
    c = IPCClient("app", "127.0.0.1", server.port)
    connecting = asyncio.ensure_future(c.connect())
    await asyncio.sleep(0)  # connect() is now waiting on TCP
    await c.disconnect()
    with pytest.raises(NotConnected):
        await connecting
    assert c.state is ConnectionState.DISCONNECTED
    while server.connections:  # the server sees the connection go away
        await asyncio.sleep(0.01)


async def test_frames_over_the_advertised_limit_are_refused_locally() -> None:
    from ipc_protocol import FrameTooLarge
    from ipc_server import IPCServer

    async with IPCServer("127.0.0.1", 0, max_frame_size=1024) as server:
        async with IPCClient("app", "127.0.0.1", server.port) as c:
            with pytest.raises(FrameTooLarge):
                await c.publish("x", "y" * 2000)
            with pytest.raises(FrameTooLarge):
                await c.send_request("x", "y" * 2000)
            assert await c.health_check() is True  # the connection survived


async def test_a_handler_on_overlapping_patterns_runs_once(make_client) -> None:
    sub, pub = await make_client(), await make_client()
    calls: list[str] = []
    await sub.subscribe("orders.*", calls.append)
    await sub.subscribe("orders.>", calls.append)
    await sub.subscribe("fence", calls.append)
    await pub.publish("orders.1", 1)
    await pub.publish("fence", 2)
    while len(calls) < 2:
        await asyncio.sleep(0.01)
    assert [m.channel_id for m in calls] == ["orders.1", "fence"]


async def test_late_answers_to_timed_out_requests_are_not_reported_as_errors(server, make_client) -> None:
    errors: list = []
    worker = await make_client()
    await worker.serve("hang", lambda m: asyncio.sleep(3600))
    c = await make_client(on_error=errors.append)
    with pytest.raises(RequestTimeout):
        await c.request("hang", timeout=0.1)
    while server.stats.errors["timeout"] < 1:  # the server's own timeout answer went out
        await asyncio.sleep(0.01)
    await c.health_check()  # a fence: everything sent before it has been read
    assert errors == []


async def test_subscribe_and_serve_during_a_reconnection_are_not_lost(spawn) -> None:
    srv = await spawn("-m", "ipc_server", "--port", "0")
    port = srv.port
    c = IPCClient("app", "127.0.0.1", port, initial_delay=0.05, max_delay=0.1)
    await c.connect()
    srv.proc.kill()
    srv.proc.wait()
    while c.state is not ConnectionState.RECONNECTING:
        await asyncio.sleep(0.01)
    inbox: asyncio.Queue = asyncio.Queue()
    registration = c.serve("late.svc", lambda m: "served")
    subscribing = asyncio.ensure_future(c.subscribe("late.news", inbox.put_nowait))
    await spawn("-m", "ipc_server", "--port", str(port))
    await asyncio.wait_for(subscribing, WAIT_S)
    await asyncio.wait_for(registration, WAIT_S)
    services = await c.system("services")
    assert services["services"] == {"late.svc": 1}
    assert await c.request("late.svc") == "served"
    assert await c.publish("late.news", 1, ack=True) == 1
    await c.disconnect()


async def test_reconnect_gives_up_when_credentials_are_refused(spawn) -> None:
    srv = await spawn("-m", "ipc_server", "--port", "0", "--token", "old")
    port = srv.port
    c = IPCClient("app", "127.0.0.1", port, token="old", initial_delay=0.01, max_delay=0.05)
    failed = asyncio.get_running_loop().create_future()
    c.on("reconnect_failed", lambda n: failed.done() or failed.set_result(n))
    await c.connect()
    srv.proc.kill()
    srv.proc.wait()
    await spawn("-m", "ipc_server", "--port", str(port), "--token", "new")
    await asyncio.wait_for(failed, WAIT_S)
    assert c.state is ConnectionState.DISCONNECTED


async def test_publish_waits_for_a_socket_that_cannot_drain() -> None:
    """A peer that stops reading: publish() blocks instead of buffering without bound."""
    import json

    from ipc_protocol import encode_frame

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        header = await reader.readexactly(4)
        hello = json.loads(await reader.readexactly(int.from_bytes(header, "big")))
        reply = {"message_id": "r", "app_id": "app", "channel_id": "system", "message_type": "response",
                 "payload": {"status": "connected", "connection_id": "c", "protocol": 2, "heartbeat_interval_ms": 0,
                             "max_frame_size": 1 << 24}, "timestamp": 0, "reply_to": hello["message_id"]}
        writer.write(encode_frame(json.dumps(reply).encode()))
        await asyncio.sleep(3600)  # then never read again

    stub = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = stub.sockets[0].getsockname()[1]
    c = IPCClient("app", "127.0.0.1", port, reconnect=False)
    await c.connect()
    sent = 0

    async def flood() -> None:
        nonlocal sent
        for _ in range(1000):
            await c.publish("x", "z" * 65536)
            sent += 1

    task = asyncio.ensure_future(flood())
    conn = c._link.conn  # the client's Lifecycle owns the connection
    while not conn.writing_paused:  # the transport reported its buffer full
        await asyncio.sleep(0.01)
    before = sent
    await asyncio.sleep(0.1)
    assert sent == before and not task.done()  # blocked, not buffering on
    assert conn.transport.get_write_buffer_size() < 2 * 1024 * 1024
    # A request meets the same full socket: it waits for its turn, never past its deadline, and is never sent.
    with pytest.raises(RequestTimeout, match="was not sent: the connection's send buffer stayed full"):
        await c.request("y", timeout=0.3)
    assert len(c._calls) == 0
    task.cancel()
    await c.disconnect()
    stub.close()


async def test_a_call_given_up_after_its_deadline_settled_it_leaves_nothing_unretrieved() -> None:
    """A request whose write waited for a full socket past its deadline:
    the deadline may settle its answer before the wait gives up and
    forgets the call; asyncio must not then log that answer's error as
    never retrieved (the caller got the wait's own RequestTimeout)."""
    import gc

    from ipc_client.calls import Calls
    from ipc_client.metrics import ClientMetrics

    loop = asyncio.get_running_loop()
    logged: list[str] = []
    loop.set_exception_handler(lambda _loop, context: logged.append(context["message"]))
    try:
        fut: asyncio.Future[object] = loop.create_future()
        fut.set_exception(RequestTimeout("no response on 'y' within 0.3 s"))
        Calls("app", ClientMetrics())._forget("m1", fut)  # type: ignore[arg-type]
        del fut
        gc.collect()
        assert logged == []
    finally:
        loop.set_exception_handler(None)


async def test_a_serve_cut_by_disconnect_is_no_error_event(server, caplog: pytest.LogCaptureFixture) -> None:
    """As subscribe() and publish(ack=True), and Node's serve(): the
    Registration carries the connection's end; nothing is emitted (with no
    listener, nothing logged)."""
    c = IPCClient("app", "127.0.0.1", server.port)
    await c.connect()
    errors: list[BaseException] = []
    c.on("error", errors.append)
    registration = c.serve("late.svc", lambda m: 1)  # its ack not awaited
    await c.disconnect()
    with pytest.raises((ConnectionLost, NotConnected)):
        await asyncio.wait_for(registration.wait(), WAIT_S)
    assert errors == []

    quiet = IPCClient("app", "127.0.0.1", server.port)  # no error listener: a warning each, before
    await quiet.connect()
    registration = quiet.serve("late.svc", lambda m: 1)
    await quiet.disconnect()
    with pytest.raises((ConnectionLost, NotConnected)):
        await asyncio.wait_for(registration.wait(), WAIT_S)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
