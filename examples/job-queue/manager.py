"""Job queue manager: priorities, retries with exponential backoff, dead letters.

What it shows: a Python service in app ``jobs`` that
- accepts jobs from any client on ``jobs.submit`` (``{task, args, priority}``,
  answered with the job id) and keeps them in a priority queue (higher
  priority first, first come first served within one);
- dispatches each job as a request on ``jobs.work``, which Node and Python
  workers serve (the server hands it to the least busy worker), at most
  ``--slots`` at a time, and holds jobs back while no worker is registered
  (it watches ``$sys.services``);
- retries a failed attempt after 0.1 s, 0.2 s, 0.4 s... (``--backoff``) and,
  after ``--max-attempts``, publishes the job on the dead-letter channel
  ``jobs.dead``;
- answers ``jobs.drain`` once every job submitted so far is done or dead,
  with a summary, which it also prints.

Run it (server on IPC_HOST:IPC_PORT, default 127.0.0.1:8888), each in its
own terminal, from the repository root:

    .venv/bin/python -m ipc_server
    .venv/bin/python examples/job-queue/manager.py
    node examples/job-queue/producer.js
    node examples/job-queue/worker.js
    .venv/bin/python examples/job-queue/worker.py

or all of it at once: ``.venv/bin/python examples/job-queue/run.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import itertools
import json
import os
import signal
from dataclasses import dataclass
from typing import Any

from ipc_client import IPCClient, IPCError, Message, NoResponders

HOST = os.environ.get("IPC_HOST", "127.0.0.1")
PORT = int(os.environ.get("IPC_PORT", "8888"))
WORK_CHANNEL = "jobs.work"


@dataclass
class Job:
    id: str
    task: str
    args: Any
    priority: int
    attempts: int = 0
    status: str = "queued"  # queued -> running -> (retrying -> running)* -> done | dead
    result: Any = None
    error: str | None = None

    def describe(self) -> dict[str, Any]:
        out = {"id": self.id, "task": self.task, "priority": self.priority, "status": self.status, "attempts": self.attempts}
        if self.status == "done":
            out["result"] = self.result
        else:
            out["error"] = self.error
        return out


class JobQueue:
    """The queue: a heap of ready jobs, slots for jobs in flight, timers for retries."""

    def __init__(self, client: IPCClient, *, slots: int, max_attempts: int, backoff: float, job_timeout: float) -> None:
        self.client = client
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.job_timeout = job_timeout
        self.jobs: dict[str, Job] = {}
        self._ids = itertools.count(1)
        self._seq = itertools.count()
        self._heap: list[tuple[int, int, str]] = []  # (-priority, arrival, job id)
        self._slots = asyncio.Semaphore(slots)
        self._workers = 0  # responders on jobs.work, from $sys.services
        self._wake = asyncio.Event()  # a job became ready or a worker appeared
        self._open = 0  # jobs submitted and not yet done or dead-lettered
        self._finished = asyncio.Event()  # set while _open == 0
        self._finished.set()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- the service's endpoints ---------------------------------------------

    async def submit(self, msg: Message) -> dict[str, Any]:
        body = msg.payload
        if not isinstance(body, dict) or not isinstance(body.get("task"), str):
            raise ValueError("a job is {task: str, args: any, priority: int}")
        job = Job(f"job-{next(self._ids)}", body["task"], body.get("args"), int(body.get("priority", 0)))
        self.jobs[job.id] = job
        self._open += 1
        self._finished.clear()
        print(f"queued {job.id} {job.task} priority {job.priority}", flush=True)
        self._push(job)
        return {"job_id": job.id}

    async def drain(self, msg: Message) -> dict[str, Any]:
        await self._finished.wait()
        summary = self.summary()
        print_summary(summary)
        return summary

    def summary(self) -> dict[str, Any]:
        jobs = [job.describe() for job in self.jobs.values()]
        return {
            "total": len(jobs),
            "done": sum(1 for j in jobs if j["status"] == "done"),
            "dead": sum(1 for j in jobs if j["status"] == "dead"),
            "jobs": jobs,
        }

    def on_services(self, msg: Message) -> None:
        """``$sys.services``: responders come and go (docs/protocol.md §7.5)."""
        if msg.payload.get("channel") == WORK_CHANNEL:
            self._set_workers(msg.payload["responders"])

    def _set_workers(self, count: int) -> None:
        if count and not self._workers:
            print(f"workers online: {count}", flush=True)
        self._workers = count
        self._wake.set()

    # -- dispatching -----------------------------------------------------------

    def _push(self, job: Job) -> None:
        heapq.heappush(self._heap, (-job.priority, next(self._seq), job.id))
        self._wake.set()

    async def run(self) -> None:
        services = await self.client.system("services")
        self._set_workers(services["services"].get(WORK_CHANNEL, 0))
        while True:
            await self._slots.acquire()
            while not (self._heap and self._workers):
                self._wake.clear()
                await self._wake.wait()
            _, _, job_id = heapq.heappop(self._heap)
            task = asyncio.create_task(self._attempt(self.jobs[job_id]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _attempt(self, job: Job) -> None:
        try:
            job.attempts += 1
            job.status = "running"
            print(f"dispatch {job.id} {job.task} priority {job.priority} attempt {job.attempts}", flush=True)
            work = {"job_id": job.id, "task": job.task, "args": job.args, "attempt": job.attempts}
            try:
                reply = await self.client.request(WORK_CHANNEL, work, timeout=self.job_timeout)
            except NoResponders:
                # The last worker left between our check and the call: not
                # the job's fault, so the attempt does not count.
                job.attempts -= 1
                job.status = "queued"
                self._workers = 0
                self._push(job)
                return
            except IPCError as exc:
                self._failed(job, exc)
                return
            job.status, job.result = "done", reply["result"]
            print(f"done {job.id} by {reply['worker']} on attempt {job.attempts}: {compact(job.result)}", flush=True)
            self._close()
        finally:
            self._slots.release()

    def _failed(self, job: Job, exc: IPCError) -> None:
        reason = f"{getattr(exc, 'remote_type', None) or exc.code}: {exc.message}"  # e.g. JobError: upstream busy
        job.error = reason
        if job.attempts < self.max_attempts:
            delay = self.backoff * 2 ** (job.attempts - 1)
            job.status = "retrying"
            print(f"retry {job.id} in {delay:g} s: attempt {job.attempts} failed ({reason})", flush=True)
            asyncio.get_running_loop().call_later(delay, self._push, job)
            return
        job.status = "dead"
        print(f"dead {job.id} after {job.attempts} attempts: {reason}", flush=True)
        task = asyncio.create_task(self._dead_letter(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _dead_letter(self, job: Job) -> None:
        # With ack=True the publish reached the server before drain() can
        # answer, so a subscriber sees the dead letter before the summary.
        try:
            await self.client.publish("jobs.dead", job.describe(), ack=True)
        finally:
            self._close()

    def _close(self) -> None:
        self._open -= 1
        if not self._open:
            self._finished.set()


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def print_summary(summary: dict[str, Any]) -> None:
    print(f"summary: {summary['total']} jobs, {summary['done']} done, {summary['dead']} dead", flush=True)
    for j in summary["jobs"]:
        outcome = f"result {compact(j['result'])}" if j["status"] == "done" else f"error {j['error']}"
        print(f"  {j['id']:<6} {j['task']:<10} priority {j['priority']:<2} {j['status']:<4} attempts {j['attempts']}  {outcome}", flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slots", type=int, default=2, help="jobs in flight at once")
    parser.add_argument("--max-attempts", type=int, default=3, help="attempts before a job is dead-lettered")
    parser.add_argument("--backoff", type=float, default=0.1, help="first retry delay, s (doubles each time)")
    parser.add_argument("--job-timeout", type=float, default=5.0, help="deadline of one attempt, s")
    args = parser.parse_args()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async with IPCClient("jobs", HOST, PORT) as client:
        queue = JobQueue(client, slots=args.slots, max_attempts=args.max_attempts, backoff=args.backoff, job_timeout=args.job_timeout)
        await client.subscribe("$sys.services", queue.on_services)
        await client.serve("jobs.submit", queue.submit)
        await client.serve("jobs.drain", queue.drain)
        dispatcher = asyncio.create_task(queue.run())
        print(f"manager ready on {HOST}:{PORT} ({args.max_attempts} attempts, backoff {args.backoff:g} s, {args.slots} slots)", flush=True)
        await stop.wait()
        dispatcher.cancel()


if __name__ == "__main__":
    asyncio.run(main())
