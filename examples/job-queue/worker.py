"""A Python worker for the job queue (see manager.py).

What it shows: a responder on ``jobs.work`` in app ``jobs``. The manager
sends each attempt of a job as a request; the return value is the job's
result, and an exception becomes a ``handler_error`` that the manager
retries. Node workers (worker.js) serve the same channel with the same
tasks and the same errors, and the server balances jobs between them.

Run it (server on IPC_HOST:IPC_PORT, default 127.0.0.1:8888), from the
repository root, after the manager:

    .venv/bin/python examples/job-queue/worker.py [NAME]
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import Any

from ipc_client import IPCClient, Message

HOST = os.environ.get("IPC_HOST", "127.0.0.1")
PORT = int(os.environ.get("IPC_PORT", "8888"))
NAME = sys.argv[1] if len(sys.argv) > 1 else f"py-{os.getpid()}"


class JobError(Exception):
    """The job cannot be done this time; the requester sees remote_type 'JobError'."""


def run_task(task: str, args: Any, attempt: int) -> Any:
    if task == "square":
        return args["n"] * args["n"]
    if task == "wordcount":
        return len(args["text"].split())
    if task == "flaky":  # a dependency that is down for the first attempts
        if attempt <= args["fail_times"]:
            raise JobError("upstream busy")
        return f"ok on attempt {attempt}"
    if task == "parse":
        try:
            return json.loads(args["text"])
        except ValueError:
            raise JobError("payload is not valid JSON") from None
    raise JobError(f"unknown task {task!r}")


async def work(msg: Message) -> dict[str, Any]:
    job = msg.payload
    await asyncio.sleep(0.02)  # the job's "work"
    try:
        result = run_task(job["task"], job["args"], job["attempt"])
    except JobError as exc:
        print(f"{NAME} {job['job_id']} attempt {job['attempt']} failed: {exc}", flush=True)
        raise
    print(f"{NAME} {job['job_id']} attempt {job['attempt']} done", flush=True)
    return {"worker": NAME, "result": result}


async def main() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with IPCClient("jobs", HOST, PORT) as client:
        await client.serve("jobs.work", work)  # async: runs on the loop, many at once
        print(f"worker {NAME} ready", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
