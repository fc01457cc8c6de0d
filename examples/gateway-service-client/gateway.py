"""A gateway in front of several named services, with per-service metrics.

What it shows: one ``ServiceClient`` (docs/resilience.md §9) holding two
services, each its own app on the bridge behind its own pooled,
load-balanced client:

- ``pricing``: ``quote`` answers a price; an unknown SKU raises ``KeyError``
  (a ``handler_error``);
- ``inventory``: ``stock`` answers after a few ms; ``reserve`` takes 300 ms,
  longer than the service's 100 ms deadline (a ``timeout``).

The services are responder clients started by this script (any process, in
either language, could serve them). It sends a mixed load of 200 calls, 16 at
a time, then prints ``metrics()`` as a table (requests, errors, timeouts,
req/s, latency avg/p50/p99) with ``status()``, and the errors by code.

Run it from the repository root, with a server on IPC_HOST:IPC_PORT
(default 127.0.0.1:8888):

    .venv/bin/python -m ipc_server &
    .venv/bin/python examples/gateway-service-client/gateway.py
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import os
from collections.abc import AsyncIterator
from typing import Any

from ipc_client import IPCClient, IPCError, Message, ServiceClient

HOST = os.environ.get("IPC_HOST", "127.0.0.1")
PORT = int(os.environ.get("IPC_PORT", "8888"))
PRICES = {f"SKU-{i}": 10 + i for i in range(11)}  # SKU-11 is unknown
CONCURRENCY = 16


# -- the services (normally other processes) -----------------------------------


async def quote(msg: Message) -> dict[str, Any]:
    sku = msg.payload["sku"]
    return {"sku": sku, "price": PRICES[sku]}  # KeyError for an unknown SKU


async def stock(msg: Message) -> dict[str, Any]:
    await asyncio.sleep(0.005)
    return {"sku": msg.payload["sku"], "stock": 7}


async def reserve(msg: Message) -> dict[str, Any]:
    await asyncio.sleep(0.3)  # slower than the gateway's deadline for inventory
    return {"sku": msg.payload["sku"], "reserved": True}


@contextlib.asynccontextmanager
async def services() -> AsyncIterator[None]:
    """Start the responders of both services; stop them on exit."""
    pricing = IPCClient("pricing", HOST, PORT)
    inventory = IPCClient("inventory", HOST, PORT)
    pricing.serve("quote", quote)
    inventory.serve("stock", stock)
    inventory.serve("reserve", reserve)
    async with pricing, inventory:  # connect() registers the responders before it returns
        yield


# -- the gateway ---------------------------------------------------------------


def mixed_load() -> list[tuple[str, str, dict[str, Any]]]:
    """120 pricing calls (10 for the unknown SKU-11) and 80 inventory calls (5 slow reserves)."""
    pricing = [("pricing", "quote", {"sku": f"SKU-{i % 12}"}) for i in range(120)]
    inventory = [("inventory", "reserve" if i % 16 == 15 else "stock", {"sku": f"SKU-{i % 11}"}) for i in range(80)]
    return [c for pair in itertools.zip_longest(pricing, inventory) for c in pair if c is not None]


async def run_load(gateway: ServiceClient) -> dict[str, collections.Counter[str]]:
    errors: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    limit = asyncio.Semaphore(CONCURRENCY)

    async def call(service: str, method: str, data: dict[str, Any]) -> None:
        async with limit:
            try:
                await gateway.request(service, method, data)
            except IPCError as exc:
                errors[service][exc.code] += 1

    await asyncio.gather(*(call(*c) for c in mixed_load()))
    return errors


def print_table(gateway: ServiceClient, errors: dict[str, collections.Counter[str]]) -> None:
    metrics, status = gateway.metrics(), gateway.status()
    header = f"{'service':<10} {'requests':>8} {'errors':>6} {'timeouts':>8} {'req/s':>8} {'avg ms':>7} {'p50 ms':>7} {'p99 ms':>7}  status"
    print(header)
    print("-" * len(header))
    for name, m in metrics.items():
        lat = m["latency_ms"]
        health = "healthy" if status[name]["healthy"] else "DOWN"
        servers = len(status[name]["servers"])
        print(
            f"{name:<10} {m['requests']:>8} {m['errors']:>6} {m['timeouts']:>8} {m['requests_per_s']:>8.1f}"
            f" {lat['avg']:>7.2f} {lat['p50']:>7.2f} {lat['p99']:>7.2f}  {health} ({servers} server{'s' if servers != 1 else ''})"
        )
    print()
    for name in metrics:
        by_code = ", ".join(f"{code}={n}" for code, n in sorted(errors.get(name, {}).items())) or "none"
        print(f"errors {name}: {by_code}")


async def main() -> None:
    async with services():
        gateway = ServiceClient({
            "pricing": {"host": HOST, "port": PORT, "max_connections": 4, "timeout": 2},
            "inventory": {"host": HOST, "port": PORT, "max_connections": 4, "timeout": 0.1},
        })
        async with gateway:
            errors = await run_load(gateway)
            print_table(gateway, errors)


if __name__ == "__main__":
    asyncio.run(main())
