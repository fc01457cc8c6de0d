"""Smoke tests of the advanced examples (examples/job-queue, resilience,
gateway-service-client): each runs as a user would run it, in its own
processes against the real server on a free port (IPC_PORT), and its printed
lines are checked. The resilience demo starts and restarts its own server.

Every wait is bounded and waits on an output line or an exit, never a fixed
sleep; every process started here is killed on teardown.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any

import pytest

from example_process import ExampleProcess


# -- 5. job queue ----------------------------------------------------------------

JOB_SUMMARY = [
    "summary: 6 jobs, 5 done, 1 dead",
    "  job-1  square     priority 0  done attempts 1  result 49",
    "  job-2  wordcount  priority 5  done attempts 1  result 4",
    '  job-3  flaky      priority 1  done attempts 3  result "ok on attempt 3"',
    '  job-4  parse      priority 0  done attempts 1  result {"ok":true}',
    "  job-5  parse      priority 9  dead attempts 3  error JobError: payload is not valid JSON",
    "  job-6  square     priority 5  done attempts 1  result 144",
]


async def test_job_queue(start_server: Callable[..., Any], run_example: Callable[..., Any]) -> None:
    """Jobs submitted from Node before any worker exists are dispatched by
    priority once workers (Node and Python) register; a job that fails twice
    succeeds on its third attempt after 0.1 s and 0.2 s backoffs; a poison job
    is published on jobs.dead after 3 attempts; both sides print the same summary."""
    server = await start_server()
    manager = await run_example("job-queue/manager.py", server=server)
    await manager.wait_line(r"manager ready on .*")
    producer = await run_example("job-queue/producer.js", server=server)
    await producer.wait_line(r"submitted 6 jobs; waiting for them to finish")
    assert [m[1] for m in producer.matching(r"submitted (job-\d) .*")] == [f"job-{i}" for i in range(1, 7)]
    assert manager.matching(r"dispatch .*") == []  # no worker yet: every job waits

    workers = [
        await run_example("job-queue/worker.js", "node-w", server=server),
        await run_example("job-queue/worker.py", "py-w", server=server),
    ]
    for w in workers:
        await w.wait_line(r"worker \S+ ready")
    assert await producer.wait_exit(timeout=20) == 0, producer.describe()

    assert producer.lines[-len(JOB_SUMMARY):] == JOB_SUMMARY
    assert producer.matching(r"dead letter: .*")[0][0] == (
        "dead letter: job-5 parse after 3 attempts (JobError: payload is not valid JSON)"
    )
    await manager.wait_line(re.escape(JOB_SUMMARY[-1]))
    assert manager.lines[-len(JOB_SUMMARY):] == JOB_SUMMARY
    # First attempts leave in priority order, first come first served within one.
    firsts = [m[1] for m in manager.matching(r"dispatch (job-\d) \S+ priority \d+ attempt 1")]
    assert firsts == ["job-5", "job-2", "job-6", "job-3", "job-1", "job-4"]
    retries = [m[0] for m in manager.matching(r"retry job-3 .*")]
    assert retries == [
        "retry job-3 in 0.1 s: attempt 1 failed (JobError: upstream busy)",
        "retry job-3 in 0.2 s: attempt 2 failed (JobError: upstream busy)",
    ]
    assert len(manager.matching(r"dead job-5 after 3 attempts: JobError: payload is not valid JSON")) == 1
    done_by = {m[1] for m in manager.matching(r"done job-\d by (\S+) on attempt \d+: .*")}
    assert done_by <= {"node-w", "py-w"} and done_by
    attempts = sum(len(w.matching(r"\S+ job-\d attempt \d (done|failed: .*)")) for w in workers)
    assert attempts == 4 * 1 + 3 + 3  # four jobs done at once, job-3 and job-5 three times each



async def test_job_queue_in_one_command(node: str, run_example: Callable[..., Any]) -> None:
    """run.py starts the server, the manager, the producer and both workers,
    prints their lines with a prefix and stops them all at the end."""
    run = await run_example("job-queue/run.py", port=0, NODE=node)
    assert await run.wait_exit(timeout=20) == 0, run.describe()
    producer = [m[1] for m in run.matching(r"\[producer\] (.*)")]
    assert producer[-len(JOB_SUMMARY):] == JOB_SUMMARY
    assert run.matching(r"\[node-w  \] worker node-w ready") and run.matching(r"\[py-w    \] worker py-w ready")

# -- 6. resilience -----------------------------------------------------------------


def check_resilience(demo: ExampleProcess, delays_s: list[tuple[int, float]]) -> None:
    """What both demos print, in the same words: events in order, backoff
    delays doubling from 0.2 s, three requests queued and answered by
    priority after the restart, the breaker open and then closed."""
    lines = demo.lines
    events = [line for line in lines if line.startswith("event: ")]
    assert events[:2] == ["event: connecting", "event: connected"]
    assert events[2].startswith("event: disconnected (")
    assert len(delays_s) >= 3
    assert delays_s == [(n, min(0.2 * 2 ** (n - 1), 2.0)) for n in range(1, len(delays_s) + 1)]
    assert f"event: reconnected after {len(delays_s)} attempt(s)" in events

    assert "queue: size=3 by_priority={0: 1, 1: 1, 5: 1}" in lines
    replay = [m[1] for m in demo.matching(r"  handling order (\d) \(priority \d\)")]
    assert replay == ["1", "3", "4", "2"]  # order 1 before the crash, then by priority
    assert [line for line in lines if line.startswith("delivered: ")] == [f"delivered: order {n} -> created" for n in (2, 3, 4)]
    assert "queue: size=0 dropped=0" in lines

    calls = [line for line in lines if line.startswith("call: ")]
    assert calls == [
        "call: 1 inventory.check -> no_responders",
        "call: 2 inventory.check -> no_responders",
        "call: 3 inventory.check -> no_responders",
        "call: 4 inventory.check -> circuit_open (retry after 1.0s)",
        "call: trial inventory.check -> stock 7",
    ]
    circuit = [line.split()[1] for line in events if line.startswith("event: circuit_")]
    assert circuit == ["circuit_open", "circuit_half_open", "circuit_closed"]
    assert [line for line in lines if line.startswith("breaker: ")] == ["breaker: open", "breaker: closed"]
    # circuit_open counts as failed: at least the one call that met it, more when a
    # loaded machine wakes the trial's retry before the breaker's reset time.
    metrics = [line for line in lines if line.startswith("metrics: ")]
    found = re.fullmatch(r"metrics: reconnections=1 delivered=8 failed=(\d+)", metrics[0]) if metrics else None
    assert found is not None and int(found[1]) >= 1, metrics
    assert lines[-1] == "done: ok"


async def test_resilience_demo(run_example: Callable[..., Any]) -> None:
    """demo.py starts its own server on a free port, crashes and restarts it."""
    demo = await run_example("resilience/demo.py", port=0)
    assert await demo.wait_exit(timeout=25) == 0, demo.describe()
    assert "event: disconnected (connection_lost)" in demo.lines
    delays = [(int(m[1]), float(m[2])) for m in demo.matching(r"event: reconnecting attempt=(\d+) delay=([\d.]+)s")]
    check_resilience(demo, delays)


async def test_resilience_demo_node(run_example: Callable[..., Any]) -> None:
    """demo.js does the same with the Node client (the server still in Python)."""
    demo = await run_example("resilience/demo.js", port=0, PYTHON=sys.executable)
    assert await demo.wait_exit(timeout=25) == 0, demo.describe()
    delays = [(int(m[1]), int(m[2]) / 1000) for m in demo.matching(r"event: reconnecting attempt=(\d+) delay=(\d+)ms")]
    check_resilience(demo, delays)


# -- 7. gateway with a service client ------------------------------------------------


@pytest.mark.parametrize("script", ["gateway.py", "gateway.js"])
async def test_gateway_service_client(script: str, start_server: Callable[..., Any], run_example: Callable[..., Any]) -> None:
    """Per-service rows with the exact request, error and timeout counts of the
    mixed load, plausible rates and latencies, both services healthy; the
    Python and the Node gateway print the same table."""
    server = await start_server()
    gateway = await run_example(f"gateway-service-client/{script}", server=server)
    assert await gateway.wait_exit(timeout=20) == 0, gateway.describe()
    row = r"(\w+) +(\d+) +(\d+) +(\d+) +([\d.]+) +([\d.]+) +([\d.]+) +([\d.]+)  (healthy|DOWN) \(1 server\)"
    rows = {m[1]: m for m in gateway.matching(row)}
    assert set(rows) == {"pricing", "inventory"}
    assert [int(rows["pricing"][i]) for i in (2, 3, 4)] == [120, 10, 0]
    assert [int(rows["inventory"][i]) for i in (2, 3, 4)] == [80, 5, 5]
    for m in rows.values():
        rate, avg, p50, p99 = (float(m[i]) for i in (5, 6, 7, 8))
        assert rate > 0 and 0 < p50 <= p99 and avg > 0
        assert m[9] == "healthy"
    assert float(rows["inventory"][8]) >= 50  # the 100 ms timeouts are in the tail
    assert "errors pricing: handler_error=10" in gateway.lines
    assert "errors inventory: timeout=5" in gateway.lines
