"""The well-behaved clients of the live fuzz run (bench/fuzz.py): three
``IPCClient``s in an app no hostile connection names, doing request/response
through a responder client and pub/sub with acks, without pause, while
hostile connections hammer the same server. Every call must succeed with
the right answer, every publication arrive, in order, and no client may
see an error or a disconnection."""

from __future__ import annotations

import asyncio
import random
import secrets
from typing import Any

from _fuzz_frames import random_value

from ipc_client import IPCClient

__all__ = ["GoodClients"]

ECHO = "good.echo"
EVENTS = "good.events.tick"
CALL_TIMEOUT_S = 10.0
KEPT_ERRORS = 10


class GoodClients:
    """A responder, a subscriber and a requester/publisher, each on its own connection."""

    def __init__(self, host: str, port: int, seed: int) -> None:
        self.app_id = f"good-{secrets.token_hex(6)}"  # no hostile connection can guess it
        self.rng = random.Random(seed)
        make = lambda: IPCClient(self.app_id, host, port, request_timeout=CALL_TIMEOUT_S, connect_timeout=CALL_TIMEOUT_S)  # noqa: E731
        self.responder, self.subscriber, self.requester = make(), make(), make()
        self.requests = 0
        self.publishes = 0
        self.received: list[int] = []
        self.errors = 0
        self.error_examples: list[str] = []
        self.disconnects = 0
        self._closing = False
        for client in (self.responder, self.subscriber, self.requester):
            client.on_error(lambda *args: self._error(f"error event: {args!r}"))
            client.on_disconnected(self._disconnected)

    def _error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_examples) < KEPT_ERRORS:
            self.error_examples.append(what[:300])

    def _disconnected(self, *args: Any) -> None:
        if not self._closing:
            self.disconnects += 1
            self._error(f"disconnected: {args!r}")

    async def start(self) -> None:
        for client in (self.responder, self.subscriber, self.requester):
            await client.connect()
        await self.responder.serve(ECHO, lambda msg: msg.payload)
        await self.subscriber.subscribe("good.events.>", lambda msg: self.received.append(msg.payload["n"]))

    async def run(self, stop: asyncio.Event) -> None:
        """Request/response and publish, back to back, until ``stop``."""
        rng = self.rng
        while not stop.is_set():
            payload = {"n": self.requests, "value": random_value(rng, 3)}
            try:
                answer = await self.requester.request(ECHO, payload)
                if answer != payload:
                    self._error(f"request {self.requests}: answered {answer!r:.100} for {payload!r:.100}")
                if self.requests % 4 == 0:
                    delivered = await self.requester.publish(EVENTS, {"n": self.publishes}, ack=True)
                    self.publishes += 1
                    if delivered != 1:
                        self._error(f"publish {self.publishes - 1}: delivered to {delivered}, not 1")
            except Exception as exc:  # every failure is the point of the count
                self._error(f"request {self.requests}: {type(exc).__name__}: {exc}")
            self.requests += 1

    async def finish(self) -> dict[str, Any]:
        """Check the deliveries, ask the server for its counters, close."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        while len(self.received) < self.publishes and loop.time() < deadline:
            await asyncio.sleep(0.02)  # a bounded wait for the last publications in flight
        if self.received != list(range(self.publishes)):
            missing = sorted(set(range(self.publishes)) - set(self.received))
            self._error(f"subscriber got {len(self.received)} of {self.publishes} publications (missing {missing[:10]}), in order: {self.received == sorted(self.received)}")
        healthy = await self.requester.health_check(CALL_TIMEOUT_S)
        if not healthy:
            self._error("the server does not answer a ping at the end")
        stats: Any = None
        try:
            stats = await self.requester.system("stats")
        except Exception as exc:
            self._error(f"stats: {type(exc).__name__}: {exc}")
        self._closing = True
        for client in (self.requester, self.subscriber, self.responder):
            await client.disconnect()
        return {
            "app_id": self.app_id,
            "requests": self.requests,
            "publishes": self.publishes,
            "deliveries": len(self.received),
            "errors": self.errors,
            "disconnects": self.disconnects,
            "error_examples": self.error_examples,
            "server_answers_at_end": healthy,
            "server_stats": stats,
        }
