"""The legacy documentation's Express blocks (Basic and Advanced Express
Integration, ``legacy-docs/express-basic.js`` and ``express-advanced.js``)
run unmodified against our server, with real ``express`` 4 from
``legacy-docs/package.json`` (installed once per session with ``npm ci`` when
missing) on a free HTTP port, and a Python service in the block's app.

Their HTTP answers, Server-Sent Events and what the Python side received are
checked, and the blocks' own bugs with the document's line numbers. Every
wait is bounded; every process started here is killed on teardown.
"""

from __future__ import annotations

import asyncio
import http.client
import signal

from conftest import WAIT_S
from http_support import http_json
from legacy_docs_support import USERS, free_port, user_service
from legacy_docs_support import event_streams, express, run_block, service  # noqa: F401 (fixtures)


# -- Express.js: Basic Integration ---------------------------------------------------------


async def test_express_basic_integration(express, start_server, service, run_block, event_streams):
    server = await start_server()
    svc = await service(server, "express-api-server", {"user_service": user_service()})
    port = free_port()
    block = await run_block("express-basic.js", server=server, PORT=str(port))
    await block.wait_line(rf"Express server running on port {port}$")
    assert block.matching(r"Connected to Python IPC server$")

    assert await http_json(port, "GET", "/api/users") == (200, {"success": True, "users": USERS})
    assert await http_json(port, "GET", "/api/users?role=admin") == (200, {"success": True, "users": USERS[:1]})
    assert svc.calls_to("user_service")[1] == {"action": "get_all_users", "filters": {"role": "admin"}}
    status, body = await http_json(port, "POST", "/api/users", {"name": "Grace Hopper", "role": "user"})
    assert (status, body) == (200, {"success": True, "user": {"id": 3, "name": "Grace Hopper", "role": "user"}})
    assert await http_json(port, "GET", "/api/users?name=Grace%20Hopper") == (200, {"success": True, "users": [body["user"]]})
    # A Python exception reaches the HTTP client as the block's 500.
    assert await http_json(port, "POST", "/api/users", {"role": "user"}) == (500, {"success": False, "error": "name is required"})

    # Server-Sent Events: the block's first event, then 'notifications' publications.
    stream = await event_streams(port, "/api/events")
    first = await stream.next()
    assert stream.resp.status == 200 and stream.resp.getheader("Content-Type") == "text/event-stream"
    assert first["type"] == "connected" and isinstance(first["timestamp"], int)
    await svc.wait_subscribed("notifications")
    for n in range(2):
        await svc.client.publish("notifications", {"n": n, "text": "hello"})
    assert [await stream.next() for _ in range(2)] == [{"n": 0, "text": "hello"}, {"n": 1, "text": "hello"}]
    stream.close()  # the block unsubscribes when the request closes
    await svc.wait_subscribed("notifications", count=0)

    status, body = await http_json(port, "GET", "/health")
    assert (status, body["status"]) == (200, "healthy"), body
    await server.kill()
    status, body = await http_json(port, "GET", "/health")
    assert (status, body["status"]) == (200, "unhealthy"), body

    block.signal(signal.SIGINT)  # the block's handler: "Shutting down...", disconnect, exit 0
    assert await block.wait_exit() == 0, block.describe()
    assert block.out[-1] == "Shutting down...", block.describe()


async def test_express_basic_one_event_stream_closing_ends_them_all(express, start_server, service, run_block, event_streams):
    """Document line 469: a closing SSE request calls
    req.ipc.unsubscribe('notifications') on the client all requests share,
    which removes every stream's handler: the streams still open get nothing
    more. (Line 625 of the Advanced block does the same per channel.)"""
    server = await start_server()
    svc = await service(server, "express-api-server")
    port = free_port()
    block = await run_block("express-basic.js", server=server, PORT=str(port))
    await block.wait_line(rf"Express server running on port {port}$")
    staying, leaving = await event_streams(port, "/api/events"), await event_streams(port, "/api/events")
    assert (await staying.next())["type"] == (await leaving.next())["type"] == "connected"
    await svc.wait_subscribed("notifications")
    assert await svc.client.publish("notifications", {"n": 1}, ack=True) == 1  # one Node connection
    assert await staying.next() == await leaving.next() == {"n": 1}
    leaving.close()
    await svc.wait_subscribed("notifications", count=0)
    assert await svc.client.publish("notifications", {"n": 2}, ack=True) == 0  # `staying` is still open


# -- Express.js: Advanced Integration ---------------------------------------------------------


async def test_express_advanced_integration(express, start_server, service, run_block, event_streams):
    server = await start_server()
    svc = await service(server, "express-service", {"user_service": user_service()})
    port = free_port()
    # The block reads IPC_HOST / IPC_PORT itself; PORT is the free HTTP port.
    block = await run_block("express-advanced.js", server=server, PORT=str(port), IPC_HOST="127.0.0.1", IPC_PORT=str(server.port))
    await block.wait_line(rf"IPC Express Service running on port {port}$")
    assert block.matching(r"IPC client connected$")

    # The generic proxy: /api/:service/:action -> a request on channel :service.
    assert await http_json(port, "GET", "/api/user_service/get_all_users?role=user") == (200, {"success": True, "result": USERS[1:]})
    assert svc.calls_to("user_service")[-1] == {"action": "get_all_users", "data": {}, "query": {"role": "user"}, "method": "GET"}
    status, body = await http_json(port, "POST", "/api/user_service/create_user", {"name": "Grace Hopper"})
    assert (status, body) == (200, {"success": True, "result": {"id": 3, "name": "Grace Hopper"}})
    assert svc.calls_to("user_service")[-1]["method"] == "POST"
    assert await http_json(port, "PUT", "/api/user_service/delete_everything") == (500, {"success": False, "error": "unknown action 'delete_everything'"})
    status, body = await http_json(port, "GET", "/api/billing/get_invoice")  # nobody serves 'billing'
    assert status == 500 and body["success"] is False and "billing" in body["error"], body

    status, body = await http_json(port, "GET", "/status")
    assert status == 200 and body["status"] == "ok", body
    assert body["ipc"]["connected"] is True and body["ipc"]["healthy"] is True, body
    assert body["ipc"]["connection"]["appId"] == "express-service" and body["ipc"]["connection"]["port"] == server.port, body

    # Server-Sent Events of any channel.
    stream = await event_streams(port, "/events/orders")
    await svc.wait_subscribed("orders")
    await svc.client.publish("orders", {"id": 7, "total": 12.5})
    await svc.client.publish("orders", {"id": 8, "total": 3})
    assert [await stream.next() for _ in range(2)] == [{"id": 7, "total": 12.5}, {"id": 8, "total": 3}]
    assert stream.resp.status == 200 and stream.resp.getheader("Content-Type") == "text/event-stream"
    stream.close()
    await svc.wait_subscribed("orders", count=0)

    # The IPC server goes away: the block's /api/* guard answers 503.
    await server.kill()
    await block.wait_line(r"IPC client disconnected$")
    status, body = await http_json(port, "GET", "/api/user_service/get_all_users")
    assert (status, body) == (503, {"error": "IPC service unavailable", "message": "Connection to Python server is not ready"})
    status, body = await http_json(port, "GET", "/status")
    assert status == 200 and body["ipc"]["connected"] is False and body["ipc"]["healthy"] is False, body

    block.signal(signal.SIGINT)
    assert await block.wait_exit() == 0, block.describe()
    assert block.out[-1] == "Shutting down...", block.describe()


def _get_status(port: int, path: str) -> int | None:
    """A GET's status; None when the server closed the connection unanswered."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_S)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except (http.client.RemoteDisconnected, ConnectionResetError):
        return None
    finally:
        conn.close()


BAD_CHANNELS = ["/events/a..b", "/events/ord*", "/events/%20x", "/events/x.", "/events/" + "a" * 600]


async def test_express_advanced_survives_an_invalid_channel_name(express, start_server, service, run_block, event_streams):
    """Document lines 611-625: GET /events/:channel calls
    req.ipc.subscribe(channel, handler) without await, so an invalid name
    (an empty token, a wildcard inside a token, surrounding spaces, over 512
    characters) used to be an unhandled rejection that ended the process
    (exit 1). subscribe() now throws such argument errors at the call:
    Express catches the throw. The block has written its 200 header
    already, so Express can only close that request's connection; the
    service keeps answering, and its client still subscribes."""
    server = await start_server()
    svc = await service(server, "express-service", {"user_service": user_service()})
    port = free_port()
    block = await run_block("express-advanced.js", server=server, PORT=str(port), IPC_HOST="127.0.0.1", IPC_PORT=str(server.port))
    await block.wait_line(rf"IPC Express Service running on port {port}$")
    for path in BAD_CHANNELS:
        assert await asyncio.to_thread(_get_status, port, path) is None, path
        status, body = await http_json(port, "GET", "/status")
        assert status == 200 and body["status"] == "ok" and body["ipc"]["connected"] is True, (path, body, block.describe())
    assert block.proc is not None and block.proc.returncode is None, block.describe()
    await block.wait_line(r"^MessageError: pattern\b.*(has an empty token|wildcards must be whole tokens|is longer than 512)", "err", count=len(BAD_CHANNELS))  # Express logs each
    # The proxy route awaits its call: the same name is its 500, as before.
    status, body = await http_json(port, "GET", "/api/a..b/x")
    assert status == 500 and body["success"] is False and "a..b" in body["error"], body

    stream = await event_streams(port, "/events/orders")  # the shared client still subscribes
    await svc.wait_subscribed("orders")
    await svc.client.publish("orders", {"id": 9})
    assert await stream.next() == {"id": 9}
    block.signal(signal.SIGINT)
    assert await block.wait_exit() == 0, block.describe()
