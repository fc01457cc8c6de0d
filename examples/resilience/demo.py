"""A Python client that keeps working while its server crashes and comes back.

What it shows, in one process that runs the server itself as a subprocess
(``python -m ipc_server``) so it can crash and restart it:

1. Reconnection: the lifecycle events (connecting, connected, disconnected,
   reconnecting {attempt, delay}, reconnected) and the backoff delays
   (0.2 s, 0.4 s, 0.8 s..., no jitter so they read exactly).
2. The offline queue: requests made while the server is down wait in the
   queue (``queue_stats()``), highest priority first, and are answered after
   the restart. The client serves ``orders.create`` itself; responders are
   re-registered before the queue is replayed, so the replay finds it.
3. The circuit breaker: calls to ``inventory.check``, which nobody serves,
   fail with ``no_responders``; after 3 the circuit opens and calls fail fast
   with ``circuit_open``. A responder appears; after ``reset_timeout`` a trial
   call succeeds and the circuit closes.

Run it from the repository root (the server listens on IPC_HOST:IPC_PORT,
default 127.0.0.1:8888; IPC_PORT=0 picks a free port):

    .venv/bin/python examples/resilience/demo.py
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from ipc_client import CircuitBreakerOptions, CircuitOpen, IPCClient, Message, NoResponders

HOST = os.environ.get("IPC_HOST", "127.0.0.1")
PORT = int(os.environ.get("IPC_PORT", "8888"))
APP = "shop"


def say(what: str, text: str) -> None:
    print(f"{what}: {text}", flush=True)


class Server:
    """``python -m ipc_server`` as a subprocess that can be killed and restarted on its port."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ipc_server", "--host", self.host, "--port", str(self.port), "--log-level", "WARNING",
            stdout=asyncio.subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        line = (await asyncio.wait_for(self.proc.stdout.readline(), 10)).decode()
        if not line.startswith("ipc_server listening on "):
            raise RuntimeError(f"the server did not start: {line!r}")
        self.port = int(line.rsplit(":", 1)[1])  # the port it picked, when asked for 0

    async def kill(self) -> None:
        """SIGKILL: a crash, no goodbye to the clients."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


class Events:
    """Prints every lifecycle event of a client and lets the demo wait for them."""

    def __init__(self, client: IPCClient) -> None:
        self.disconnected = asyncio.Event()
        self.reconnected = asyncio.Event()
        self.reconnecting: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        on = self._printer(client)
        on("connecting")
        on("connected")
        on("disconnected", lambda err: f"({err.code if err is not None else 'closed'})", lambda _: self.disconnected.set())
        on("reconnecting", lambda e: f"attempt={e['attempt']} delay={e['delay']:.2f}s", self.reconnecting.put_nowait)
        on("reconnected", lambda e: f"after {e['attempts']} attempt(s)", lambda _: self.reconnected.set())
        for state in ("open", "half_open", "closed"):
            on(f"circuit_{state}", lambda snap: f"{snap['key']} failures={snap['consecutive_failures']}")

    @staticmethod
    def _printer(client: IPCClient) -> Any:
        def on(name: str, describe: Any = None, then: Any = None) -> None:
            def callback(*args: Any) -> None:
                say("event", name + (f" {describe(*args)}" if describe else ""))
                if then is not None:
                    then(*args)

            client.on(name, callback)

        return on



async def create_order(msg: Message) -> dict[str, Any]:
    print(f"  handling order {msg.payload['order']} (priority {msg.payload['priority']})", flush=True)
    return {"order": msg.payload["order"], "status": "created"}


async def reconnection_and_queue(server: Server, client: IPCClient, events: Events) -> None:
    await client.serve("orders.create", create_order)
    reply = await client.request("orders.create", {"order": 1, "priority": 0}, timeout=5)
    say("request", f"order 1 -> {reply['status']}")

    say("server", "crash (SIGKILL)")
    await server.kill()
    await events.disconnected.wait()  # the client is reconnecting now

    # Made while the server is down: they wait in the offline queue, each
    # with its own deadline (time in the queue included).
    orders = [(2, 0), (3, 5), (4, 1)]
    calls = [
        asyncio.create_task(client.request("orders.create", {"order": n, "priority": p}, priority=p, timeout=15))
        for n, p in orders
    ]
    await asyncio.sleep(0)  # let each call reach the queue
    stats = client.queue_stats()
    say("queue", f"size={stats['size']} by_priority={dict(sorted(stats['by_priority'].items()))}")

    # The server stays down through three reconnection attempts.
    while (await events.reconnecting.get())["attempt"] < 3:
        pass
    await server.start()
    say("server", f"restarted on {server.host}:{server.port}")
    await events.reconnected.wait()
    for (n, _), reply in zip(orders, await asyncio.gather(*calls)):
        say("delivered", f"order {n} -> {reply['status']}")
    stats = client.queue_stats()
    say("queue", f"size={stats['size']} dropped={stats['dropped']}")


async def circuit_breaker(client: IPCClient) -> None:
    for i in range(1, 5):
        try:
            await client.request("inventory.check", {"sku": "A-1"}, timeout=2)
        except NoResponders as exc:
            say("call", f"{i} inventory.check -> {exc.code}")
        except CircuitOpen as exc:
            say("call", f"{i} inventory.check -> {exc.code} (retry after {exc.retry_after:.1f}s)")
    say("breaker", client.circuit_breakers()["inventory.check"]["state"])

    # A responder appears (another client in the same app).
    async with IPCClient(APP, client.host, client.port) as inventory:
        await inventory.serve("inventory.check", lambda msg: {"sku": msg.payload["sku"], "stock": 7})
        say("responder", "inventory.check is served")
        while True:  # calls fail fast until reset_timeout has passed; then one trial goes through
            try:
                reply = await client.request("inventory.check", {"sku": "A-1"}, timeout=2)
                break
            except CircuitOpen as exc:
                await asyncio.sleep(exc.retry_after)
        say("call", f"trial inventory.check -> stock {reply['stock']}")
        say("breaker", client.circuit_breakers()["inventory.check"]["state"])


async def main() -> None:
    server = Server(HOST, PORT)
    await server.start()
    say("server", f"started on {server.host}:{server.port}")
    client = IPCClient(
        APP, server.host, server.port,
        initial_delay=0.2, max_delay=2, jitter=0,  # no jitter: the delays print exactly
        circuit_breaker=CircuitBreakerOptions(failure_threshold=3, reset_timeout=1, success_threshold=1),
    )
    events = Events(client)
    try:
        async with client:
            await reconnection_and_queue(server, client, events)
            await circuit_breaker(client)
            metrics = client.metrics()
            say("metrics", f"reconnections={metrics['reconnections']} delivered={metrics['messages_delivered']} failed={metrics['messages_failed']}")
    finally:
        await server.kill()
    say("done", "ok")


if __name__ == "__main__":
    asyncio.run(main())
