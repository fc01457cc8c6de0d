"""The legacy documentation's patterns (Service Discovery, Load Balancer,
Connection Pooling, Message Queuing, Error Handling, Performance
Optimization) run unmodified against our server, each as a real Node process
with a Python service in the block's app answering what it calls and
publishing what it waits for.

Their output and what the Python side received are checked; a block that
cannot do what the document says because of its own code is recorded with
the line of ``ipc-framework-nodejs.md``. Every wait is bounded; every
process started here is killed on teardown.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from conftest import WAIT_S
from legacy_docs_support import actions, user_service
from legacy_docs_support import run_block, service  # noqa: F401 (fixtures)


# -- Service Discovery ----------------------------------------------------------------------


SERVICES = [
    {"name": "validation-service", "healthy": True},
    {"name": "database-service", "healthy": True},
    {"name": "cache-service", "healthy": True},
    {"name": "report-service", "healthy": False},
]


def user_service_backends(cache: dict[str, Any]) -> dict[str, Callable[[Any], Any]]:
    """What UserService calls: the discovery list on ``system``, and the three services."""
    def cache_get(p: Any) -> Any:
        key = p["data"]["key"]
        return {"found": key in cache, "data": cache.get(key)}

    def cache_set(p: Any) -> Any:
        cache[p["data"]["key"]] = p["data"]["data"]
        return {"stored": True}

    def validate_user(p: Any) -> Any:
        errors = [f"{f} is required" for f in ("name", "email") if not p["data"].get(f)]
        return {"valid": not errors, "errors": errors}

    return {
        "system": actions({"list_services": lambda p: {"services": SERVICES}}),
        "validation-service": actions({"validate_user": validate_user}),
        "database-service": actions({
            "create_user": lambda p: {"user_id": 42, "created": True},
            "get_user": lambda p: {"id": p["data"]["user_id"], "name": "Ada Lovelace"},
        }),
        "cache-service": actions({"get": cache_get, "set": cache_set}),
    }


async def test_service_discovery(start_server, service, run_block):
    server = await start_server()
    svc = await service(server, "user-service-client", user_service_backends({}))
    # The block takes IPC_PORT from the environment, a string (document line 699).
    block = await run_block("service-discovery.js", server=server, IPC_HOST="127.0.0.1", IPC_PORT=str(server.port))
    await block.wait_line(r"^User service ready$")
    assert len(block.out) == 2 and block.out[1] == "User service ready", block.describe()
    assert block.out[0].endswith(" user-service initialized with 4 available services"), block.describe()
    await svc.wait_subscribed("service_discovery")
    # The document's usage (lines 855-859) only calls initialize(): nothing
    # reaches validation-service, database-service or cache-service (the next
    # test drives UserService's methods).
    assert svc.calls == [("system", {"action": "list_services"})]


async def test_service_discovery_user_service_methods(start_server, service, run_block):
    server = await start_server()
    cache: dict[str, Any] = {}
    answers = user_service_backends(cache)
    svc = await service(server, "user-service-client", answers, subscribe=("events",))
    block = await run_block("service-discovery.js", server=server, driver="service-discovery.driver.js",
                            IPC_HOST="127.0.0.1", IPC_PORT=str(server.port))
    await block.wait_line(r"^User service ready$")
    await svc.wait_subscribed("service_discovery")

    async def call(op: str, *args: Any, count: int = 1) -> str:
        block.send({"op": op, "args": list(args)})
        return (await block.wait_line(rf"^driver {op} (.*)$", count=count))[1]

    ada = {"name": "Ada Lovelace", "email": "ada@example.com"}
    assert await call("createUser", ada) == '-> {"user_id":42,"created":true}'
    assert svc.calls_to("validation-service")[-1] == {"action": "validate_user", "data": ada, "source_service": "user-service"}
    event = await svc.wait_publication("events")
    assert event["type"] == "user_created" and event["data"] == {"userId": 42, "userData": ada} and event["source"] == "user-service"
    assert await call("createUser", {"name": ""}, count=2) == "!! Validation failed: name is required, email is required"

    # getUserById: database, then cached; a second call comes from the cache.
    assert await call("getUserById", 7) == '-> {"id":7,"name":"Ada Lovelace"}'
    assert cache == {"user:7": {"id": 7, "name": "Ada Lovelace"}}
    assert await call("getUserById", 7, count=2) == '-> {"id":7,"name":"Ada Lovelace"}'
    assert len(svc.calls_to("database-service", "get_user")) == 1

    # Updates on service_discovery (handleServiceUpdate): delivered in order,
    # so once a later line is printed the earlier updates were applied.
    await svc.client.publish("service_discovery", {"action": "service_health_changed", "service": {"name": "cache-service", "healthy": False}})
    await svc.client.publish("service_discovery", {"action": "service_registered", "service": {"name": "search-service", "healthy": True}})
    await block.wait_line(r"Service registered: search-service$")
    assert await call("getUserById", 8, count=3) == '-> {"id":8,"name":"Ada Lovelace"}'
    assert [m[0] for m in block.matching(r"(Cache service unavailable, falling back to database|Failed to cache user data)", "err")] == [
        "Cache service unavailable, falling back to database", "Failed to cache user data",
    ]
    assert "user:8" not in cache and len(svc.calls_to("database-service", "get_user")) == 2
    await svc.client.publish("service_discovery", {"action": "service_unregistered", "service": {"name": "validation-service"}})
    await block.wait_line(r"Service unregistered: validation-service$")
    assert await call("createUser", ada, count=3) == "!! Service not found: validation-service"
    names = await call("getAvailableServices")
    assert [s["name"] for s in json.loads(names.removeprefix("-> "))] == ["database-service", "cache-service", "report-service", "search-service"]


# -- Load Balancer ------------------------------------------------------------------------------


async def test_load_balancer(start_server, service, run_block):
    server = await start_server()
    instances = [
        {"id": "dp-1", "channel": "data-processor-1", "healthy": True, "connections": 4},
        {"id": "dp-2", "channel": "data-processor-2", "healthy": True, "connections": 1},
        {"id": "dp-3", "channel": "data-processor-3", "healthy": False, "connections": 0},
    ]
    attempts: list[str] = []

    def instance(name: str) -> Callable[[Any], Any]:
        def process(p: Any) -> Any:
            attempts.append(name)
            if len(attempts) == 1:
                raise RuntimeError(f"{name} is busy")  # the block retries after 1 s
            return {"instance": name, "rows": 1000, "dataset": p["data"]["dataset"]}

        return process

    def get_service_instances(p: Any) -> Any:
        assert p["service_type"] == "data-processor"
        return {"instances": instances}

    answers = {"system": actions({"get_service_instances": get_service_instances})}
    answers.update({i["channel"]: actions({"process_data": instance(i["id"])}) for i in instances})
    svc = await service(server, "data-processor-lb-client", answers)
    block = await run_block("load-balancer.js", server=server)
    await block.wait_line(r"^Processing result: ")
    assert block.out == [
        "Load balancer initialized for data-processor with 2 instances",  # the unhealthy one left out
        "Processing result: { instance: 'dp-2', rows: 1000, dataset: 'large_dataset.csv' }",
    ], block.describe()
    assert block.matching(r"^Request failed on attempt 1: dp-2 is busy$", "err"), block.describe()
    # least_connections: dp-2 both times, never the unhealthy dp-3.
    assert attempts == ["dp-2", "dp-2"]
    assert svc.calls_to("data-processor-2")[-1] == {
        "action": "process_data", "data": {"dataset": "large_dataset.csv", "algorithm": "machine_learning"}, "instance_id": "dp-2",
    }
    # The block passes its own `strategy` option to IPCClient (document line
    # 870): warned about, not refused.
    assert block.matching(r"unknown option.*strategy", "err"), block.describe()


# -- Connection Pooling ---------------------------------------------------------------------------


async def test_connection_pooling(start_server, service, run_block):
    server = await start_server()
    pools = []
    for n in range(3):
        app = f"api-pool-pool-{n}"  # each pool member is its own app (document line 1037)
        pools.append(await service(server, app, {"api": actions({"get_data": lambda p, app=app: {"id": p["id"], "app": app}})}))
    block = await run_block("connection-pooling.js", server=server)
    await block.wait_line(r"^Pool stats: ")
    assert block.out[0].endswith("Connection pool api-pool initialized with 3 connections"), block.describe()
    assert block.out[1:] == [
        # availableConnections.pop(): the last one created answers
        "Response: { id: 123, app: 'api-pool-pool-2' }",
        "Pool stats: { total: 3, available: 3, inUse: 0, waiting: 0 }",
    ], block.describe()
    assert [len(p.calls) for p in pools] == [0, 0, 1]


# -- Message Queuing -----------------------------------------------------------------------------------


async def test_message_queuing(start_server, service, run_block):
    server = await start_server()
    pending: list[dict[str, Any]] = []
    done: dict[str, Any] = {}
    failed: dict[str, Any] = {}
    retried: dict[str, Any] = {}

    def enqueue(p: Any) -> Any:
        assert p["queue"] == "email"
        pending.append(p["job"])
        return {"queued": True, "position": len(pending)}

    def dequeue(p: Any) -> Any:
        jobs = pending[: p["count"]]
        del pending[: p["count"]]
        return {"jobs": jobs}

    def stats(p: Any) -> Any:
        return {"queue": p["queue"], "pending": len(pending), "completed": len(done), "failed": len(failed), "retried": len(retried)}

    queue_manager = actions({
        "enqueue": enqueue,
        "dequeue": dequeue,
        "job_completed": lambda p: done.update({p["job_id"]: p["result"]}) or {"ok": True},
        "job_failed": lambda p: failed.update({p["job_id"]: p["error"]}) or {"ok": True},
        "retry_job": lambda p: retried.update({p["job_id"]: p["delay"]}) or {"ok": True},
        "get_queue_stats": stats,
    })
    svc = await service(server, "queue-email", {"queue_manager": queue_manager})
    block = await run_block("message-queuing.js", server=server)
    await block.wait_line(r"^Message queue email initialized$")
    await svc.wait_call("queue_manager", "enqueue", count=2)
    welcome, notification = list(pending)
    assert (welcome["type"], welcome["data"]) == ("send_welcome", {"email": "user@example.com", "name": "John Doe"})
    assert notification["type"] == "send_notification" and notification["data"]["subject"] == "Server maintenance scheduled"
    assert all(re.fullmatch(r"\d+-[a-z0-9]+", j["id"]) and j["attempts"] == 0 and j["maxAttempts"] == 3 for j in pending), pending

    # Round 1: a job_available notice; the block dequeues (up to 3) and runs both jobs.
    await svc.wait_subscribed("queue:email")
    await svc.client.publish("queue:email", {"type": "job_available"})
    assert (await svc.wait_call("queue_manager", "dequeue"))["count"] == 3
    await svc._until(lambda: len(done) == 2 or None, "both jobs completed", WAIT_S)
    assert done == {welcome["id"]: {"sent": True, "messageId": "msg-123"}, notification["id"]: {"sent": True, "messageId": "msg-456"}}
    for line in (rf"Processing job {welcome['id']} \(send_welcome\)", "Sending welcome email to user@example.com",
                 rf"Processing job {notification['id']} \(send_notification\)", "Sending notification: Server maintenance scheduled"):
        assert block.matching(f"^{line}$"), block.describe()

    # The block's setInterval asks for the stats every 10 s.
    await block.wait_line(r"^Queue stats: ", timeout=WAIT_S + 5)
    assert block.matching(r"^Queue stats: \{ queue: 'email', pending: 0, completed: 2, failed: 0, retried: 0 \}$"), block.describe()

    # Round 2 (the block is idle: its stats request came after round 1's
    # last answer): a job of a type without a processor, and one whose data
    # makes the processor throw.
    pending.extend([
        {"id": "py-1", "type": "send_sms", "data": {"to": "+100"}, "attempts": 0, "maxAttempts": 3},
        {"id": "py-2", "type": "send_notification", "data": None, "attempts": 0, "maxAttempts": 3},
    ])
    await svc.client.publish("queue:email", {"type": "job_available"})
    await svc._until(lambda: (failed and retried) or None, "the failed job and the retry", WAIT_S)
    assert failed == {"py-1": "No processor available"}
    assert retried == {"py-2": 2000}  # retryDelay 2000 x 1 attempt
    await block.wait_line(r"^No processor registered for job type: send_sms$", "err")
    await block.wait_line(r"^Job py-2 failed: Cannot read properties of null \(reading 'subject'\)$", "err")


# -- Error Handling (RobustIPCClient) ----------------------------------------------------------------


async def test_error_handling(start_server, service, run_block):
    server = await start_server()
    svc = await service(server, "robust-app", {"user_service": user_service()})
    block = await run_block("error-handling.js", server=server)
    await block.wait_line(r"^User data: ")
    assert block.out[-1] == "User data: { id: 123, name: 'Ada Lovelace' }", block.describe()
    assert svc.calls == [("user_service", {"action": "get_user", "user_id": 123})]
    # Document line 1387: the onConnected handler calls
    # this.circuitBreaker.reset(), but the circuit breaker of line 1394 is a
    # plain object without reset(): the handler throws after printing, so
    # 'ipc_connected' is never logged. The client reports the listener's
    # error to the block's onError handler and stays connected.
    assert "IPC Connected [robust-app]" in block.out, block.describe()
    assert not block.matching("ipc_connected"), block.describe()
    await block.wait_line(r"^IPC Error \[robust-app\]: this\.circuitBreaker\.reset is not a function$", "err")


async def test_error_handling_default_value_after_retries(start_server, run_block):
    server = await start_server()  # and nobody serves user_service
    block = await run_block("error-handling.js", server=server)
    await block.wait_line(r"^User data: ", timeout=WAIT_S + 3)
    assert block.out[-1] == "User data: { name: 'Unknown User' }", block.describe()
    retries = [m[0] for m in block.matching(r"Request failed, retrying in \d+ms \(attempt \d/3\)", "err")]
    assert retries == ["Request failed, retrying in 1000ms (attempt 1/3)", "Request failed, retrying in 2000ms (attempt 2/3)"]
    assert block.matching(r"^Request failed, using default value: \{ name: 'Unknown User' \}$", "err"), block.describe()
    logged = block.matching(r'"type": "ipc_request_error"', "err")
    assert len(logged) == 3, block.describe()
    assert not block.matching("Circuit breaker opened", "err")  # 3 failures, threshold 5


# -- Performance Optimization (PerformantIPCClient) -----------------------------------------------------


@pytest.mark.parametrize("batching", ["batch_process", "fallback"])
async def test_performance_optimization(start_server, service, run_block, batching):
    server = await start_server()

    def batch_process(p: Any) -> Any:
        if batching == "fallback":
            raise NotImplementedError("no batches here")  # the block falls back to one request each
        return {"responses": [{"item_id": r["payload"]["item_id"], "square": r["payload"]["item_id"] ** 2} for r in p["requests"]]}

    data_service = actions({
        "batch_process": batch_process,
        "process_item": lambda p: {"item_id": p["item_id"], "square": p["item_id"] ** 2},
    })
    svc = await service(server, "perf-app", {"user_service": user_service(), "data_service": data_service})
    block = await run_block("performance-optimization.js", server=server)
    await block.wait_line(r"^Batch results: 10$")
    metrics = await block.wait_text(r"Metrics: (\{.*?\})")
    flat = " ".join(metrics[1].split())
    # requestCount counts deduplicatedRequest() only, which the usage never
    # calls. batchedRequests is added (document line 1694) once processBatch()
    # has awaited every channel group, after the callers got their results:
    # a batch answered at once is counted before the usage prints, the ten
    # single requests of the fallback (lines 1737, 1741-1752) only after it.
    batched = 10 if batching == "batch_process" else 0
    for part in ("requestCount: 0", "errorCount: 0", "cacheHits: 0", "cacheMisses: 1", f"batchedRequests: {batched},",
                 "cacheSize: 1", "pendingRequests: 0", "queuedBatches: 0"):
        assert part in flat, flat
    assert svc.calls_to("user_service") == [{"action": "get_user", "user_id": 123}]
    batches = svc.calls_to("data_service", "batch_process")
    assert len(batches) == 1  # all ten queued within batchTimeout (5 ms) form one batch
    assert batches[0]["requests"] == [{"id": i, "payload": {"action": "process_item", "item_id": i}} for i in range(10)]
    singles = svc.calls_to("data_service", "process_item")
    assert sorted(p["item_id"] for p in singles) == ([] if batching == "batch_process" else list(range(10)))
