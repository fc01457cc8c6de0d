"""Smoke tests of the basic examples (examples/quickstart, http-gateway,
python-workers, node-service): each one runs as a user would run it, as
separate processes against the real server on a free port (IPC_PORT), and
its printed lines are checked.

Every wait is bounded and waits on an output line or an HTTP answer, never a
fixed sleep; every process started here is killed on teardown.
"""

from __future__ import annotations

import asyncio
import json
import signal

from http_support import EventStream, http_json


# -- quickstart ---------------------------------------------------------------


async def test_quickstart(start_server, run_example):
    server = await start_server()
    service = await run_example("quickstart/service.py", server=server, TICK_INTERVAL_S="0.05")
    await service.wait_line(r"service ready on .*")

    client = await run_example("quickstart/client.js", server=server, TICKS="3")
    assert await client.wait_exit() == 0, client.describe()
    assert client.lines[:2] == ['greet.hello -> {"greeting":"Hello, Ada!"}', "math.add -> 3"]
    ticks = client.matching(r"tick ticks\.(\d+) (\{.*\})")
    assert len(ticks) == 3, client.describe()
    numbers = [int(m[1]) for m in ticks]
    assert [json.loads(m[2])["n"] for m in ticks] == numbers
    assert numbers == list(range(numbers[0], numbers[0] + 3))  # consecutive, in order
    assert client.lines[-1] == "done after 3 ticks"


# -- node-service ---------------------------------------------------------------


async def test_node_service_called_from_python(start_server, run_example):
    server = await start_server()
    service = await run_example("node-service/service.js", server=server)
    await service.wait_line(r"inventory service ready on .*")

    caller = await run_example("node-service/caller.py", server=server)
    assert await caller.wait_exit() == 0, caller.describe()
    assert caller.lines == [
        "lookup -> {'sku': 'A-1', 'stock': 7}",
        "reserve -> {'sku': 'A-1', 'reserved': 2, 'left': 5}",
        "HandlerError code=handler_error remote_type=OutOfStockError message='only 5 of A-1 left, 100 wanted'",
        "HandlerError code=handler_error remote_type=UnknownSkuError message='unknown sku \"Z-9\"'",
    ]


# -- http-gateway -----------------------------------------------------------------


async def test_http_gateway(start_server, run_example):
    server = await start_server()
    service = await run_example("http-gateway/users_service.py", server=server, REPORT_DELAY_S="5")
    await service.wait_line(r"users service ready on .*")
    gateway = await run_example("http-gateway/gateway.js", server=server, GATEWAY_PORT="0", GATEWAY_TIMEOUT_MS="500")
    first = await gateway.wait_line(r"gateway listening on http://127\.0\.0\.1:(\d+)")
    assert gateway.lines[0] == first[0]
    port = int(first[1])

    assert await http_json(port, "GET", "/api/users/1") == (
        200, {"id": "1", "name": "Ada Lovelace", "email": "ada@example.com"},
    )
    status, body = await http_json(port, "GET", "/api/users/99")
    assert status == 502
    assert body == {"error": {"code": "handler_error", "message": "no user with id 99", "remote_type": "UserNotFound"}}
    status, body = await http_json(port, "GET", "/api/users/1/report")
    assert (status, body["error"]["code"]) == (504, "timeout")
    status, body = await http_json(port, "GET", "/health")
    assert (status, body["status"], body["bridge"]["state"]) == (200, "ok", "connected")
    assert (await http_json(port, "GET", "/nowhere"))[0] == 404
    status, body = await http_json(port, "POST", "/api/users", {"email": "x@example.com"})
    assert (status, body["error"]["code"], body["error"]["remote_type"]) == (502, "handler_error", "ValueError")

    # SSE: publications on users.created (the service publishes each new user).
    stream = await asyncio.to_thread(EventStream, port, "/events/users.created")
    try:
        assert stream.resp.status == 200
        assert stream.resp.getheader("Content-Type") == "text/event-stream"
        ready = await asyncio.to_thread(stream.next_event)
        assert (ready["event"], json.loads(ready["data"])) == ("subscribed", {"channel": "users.created"})
        created = []
        for name in ("Alan Turing", "Barbara Liskov"):
            status, user = await http_json(port, "POST", "/api/users", {"name": name, "email": None})
            assert (status, user["name"]) == (201, name)
            created.append(user)
        events = [await asyncio.to_thread(stream.next_event) for _ in created]
        assert [json.loads(e["data"]) for e in events] == [{"channel": "users.created", "data": u} for u in created]
        assert all(e.get("id") for e in events)

        # The bridge server goes away: the gateway answers 503 at once while it reconnects.
        await server.kill()
        await gateway.wait_line(r"bridge disconnected.*, now reconnecting")
        status, body = await http_json(port, "GET", "/api/users/1")
        assert (status, body["error"]["code"]) == (503, "not_connected")
        status, body = await http_json(port, "GET", "/health")
        assert (status, body["status"], body["bridge"]["state"]) == (503, "unavailable", "reconnecting")
    finally:
        stream.close()


# -- python-workers -----------------------------------------------------------------


async def test_python_workers_share_the_load_and_only_a_killed_ones_in_flight_requests_fail(
    start_server, run_example
):
    requests, concurrency = 600, 9
    server = await start_server()
    api = await run_example(
        "python-workers/api.js", server=server, MIN_WORKERS="3", REQUESTS=str(requests), CONCURRENCY=str(concurrency)
    )
    await api.wait_line(r"waiting for 3 worker\(s\) on work\.square, 0 now")

    workers = {}
    for name in ("w1", "w2", "w3"):
        proc = await run_example("python-workers/worker.py", name, server=server, WORK_S="0.05")
        ready = await proc.wait_line(rf"worker {name} ready, connection (\S+)")
        workers[name] = (proc, ready[1])
        # The API sees each worker arrive on $sys.services.
        await api.wait_line(rf"services: added work\.square {ready[1]} \(\d now\)")
    await api.wait_line(r"sending 600 requests, 9 at a time, to 3 worker\(s\)")

    # Kill w2 in the middle of the load.
    await api.wait_line(r"progress 100/600")
    victim, victim_id = workers["w2"]
    await victim.kill()
    await api.wait_line(rf"services: removed work\.square {victim_id} \(2 now\)")

    assert await api.wait_exit(timeout=20) == 0, api.describe()
    summary = json.loads((await api.wait_line(r"summary (\{.*\})"))[1])
    failed = summary["failed"]
    # Nothing lost: every request was answered, except those w2 held when it
    # died, which failed with responder_lost (at most one per sender).
    assert set(failed) <= {"responder_lost"}, api.describe()
    lost = failed.get("responder_lost", 0)
    assert summary["ok"] + lost == requests
    assert lost <= concurrency, api.describe()  # usually a few; none if w2 was idle at that instant
    assert len(api.matching(r"request \d+ failed: responder_lost")) == lost
    assert sum(summary["byWorker"].values()) == summary["ok"]
    assert all(summary["byWorker"].get(name, 0) > 0 for name in workers), summary
    assert summary["byWorker"]["w2"] < summary["byWorker"]["w1"]  # nothing went to w2 once it was gone

    # Ctrl-C (SIGINT) stops a worker gracefully: it unregisters, finishes what
    # it holds and exits.
    survivor = workers["w3"][0]
    assert survivor.proc is not None
    survivor.proc.send_signal(signal.SIGINT)
    await survivor.wait_line(r"worker w3 drained after \d+ requests")
    assert await survivor.wait_exit() == 0, survivor.describe()
