"""A gateway's view of several named services (docs/resilience.md §9).

Each service is one :class:`LoadBalancedClient` (one or more servers, its
own app). Calls are counted per service, latencies and rate over the last
1,024 calls, so a status page shows how each backend behaves now rather
than since the gateway started. The names and defaults of a service
description are those of the gateway ServiceClient this one replaces
(``configure_service``, ``get_metrics``, ``get_connection_status``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from ipc_protocol import ErrorCode, IPCError, NotConnected, RequestTimeout

from .latency import LatencyWindow
from .load_balanced_client import LoadBalancedClient
from .pool import _refuse_queue_path
from .balanced_streams import ServiceStreaming
from .timeouts import check_timeout

__all__ = ["ServiceClient"]

# A service description's keys (Python names of §9) and the option each sets.
_OPTION_KEYS = {
    "strategy": "strategy",
    "min_connections": "min_connections",
    "max_connections": "max_connections",
    "timeout": "request_timeout",
    "health_check_interval": "health_check_interval",
    "reconnect_delay": "initial_delay",
}
_SERVICE_KEYS = frozenset({"host", "port", "servers", "app_id", *_OPTION_KEYS})
# What a service description leaves out (seconds where the gateway
# ServiceClient this replaces said milliseconds).
SERVICE_DEFAULTS: Mapping[str, Any] = {
    "max_connections": 10,
    "min_connections": 1,
    "timeout": 5.0,
    "health_check_interval": 30.0,
    "reconnect_delay": 1.0,
}


class _Service:
    """One service: its balanced client and its counters."""

    def __init__(self, name: str, spec: Mapping[str, Any], shared: Mapping[str, Any]) -> None:
        if not isinstance(spec, Mapping):
            raise ValueError(f"service {name!r} must be a mapping, not {type(spec).__name__}")
        unknown = set(spec) - _SERVICE_KEYS
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))} in service {name!r}")
        if "servers" in spec:
            servers = list(spec["servers"])
        elif "port" in spec:
            servers = [{"host": spec.get("host", "localhost"), "port": spec["port"]}]
        else:
            raise ValueError(f"service {name!r} needs {{host, port}} or {{servers: [...]}}")
        # A description's own keys win, then the options shared by every
        # service, then the gateway defaults.
        options = {_OPTION_KEYS[k]: v for k, v in SERVICE_DEFAULTS.items()}
        options.update(shared)
        options.update({_OPTION_KEYS[k]: v for k, v in spec.items() if k in _OPTION_KEYS})
        if "max_connections" not in spec and "max_connections" not in shared:
            options["max_connections"] = max(options["max_connections"], options["min_connections"])
        self.name = name
        self.client = LoadBalancedClient(spec.get("app_id", name), servers, **options)
        self.window = LatencyWindow()
        self.requests = 0
        self.errors = 0
        self.timeouts = 0
        self._starting: asyncio.Future[None] | None = None

    async def start(self) -> None:
        """Start the balanced client once; later callers share that attempt.
        A service none of whose servers answered stays started: its health
        checks bring servers in, and calls meanwhile raise NotConnected."""
        if self._starting is None:
            self._starting = asyncio.ensure_future(self.client.start())
            # Read by every caller that waits for it; once they all gave up (their
            # deadlines), asyncio would log its failure as never retrieved.
            self._starting.add_done_callback(_retrieve)
        await asyncio.shield(self._starting)

    async def ready_within(self, timeout: float | None) -> float | None:
        """Started, its start counted against a call's ``timeout`` (None:
        the client's ``request_timeout`` bounds the start); what is left of
        ``timeout``, None when it was None."""
        if self.ready:
            return timeout
        began = time.monotonic()
        total = self.client.request_timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(total):
                await self.start()  # shielded: others still share it
        except TimeoutError:
            raise RequestTimeout(f"service {self.name!r} did not start within {total:g} s") from None
        return None if timeout is None else max(total - (time.monotonic() - began), 0.001)

    @property
    def started(self) -> bool:
        return self._starting is not None

    @property
    def ready(self) -> bool:
        """Started, and done starting (whether or not a server answered)."""
        return self._starting is not None and self._starting.done()

    def record(self, started: float, error: BaseException | None, answered: float | None = None) -> None:
        """One call ended; its latency ends when it was ``answered`` (a
        stream's first item), else now."""
        ended = time.monotonic()
        self.requests += 1
        if error is not None:
            self.errors += 1
            if isinstance(error, IPCError) and error.code == ErrorCode.TIMEOUT:
                self.timeouts += 1
        self.window.add((ended if answered is None else answered) - started, started)

    def metrics(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "timeouts": self.timeouts,
            "requests_per_s": round(self.window.rate(time.monotonic()), 3),
            "latency_ms": self.window.snapshot(),
        }


class ServiceClient(ServiceStreaming):
    """Named backend services for a gateway.

    Args:
        services: name -> ``{host, port}`` or ``{servers: [...]}``, plus
            optional ``app_id`` (default: the name), ``strategy``,
            ``min_connections`` (1), ``max_connections`` (10), ``timeout``
            (default deadline of its calls, 5 s), ``health_check_interval``
            (30 s) and ``reconnect_delay`` (first backoff delay of its
            clients, 1 s). Optional: :meth:`configure_service` adds services
            later.
        app_id: this gateway's name.
        client_options: passed to every service's clients (``token``...),
            except ``queue_path`` (ValueError): a persisted outbox belongs to
            one client, not to every connection of every service.

    Raises ValueError for a description it cannot read.
    """

    def __init__(self, services: Mapping[str, Mapping[str, Any]] | None = None, *, app_id: str = "gateway", **client_options: Any) -> None:
        if services is not None and not isinstance(services, Mapping):
            raise ValueError("services must map names to descriptions")
        if not isinstance(app_id, str) or not app_id:
            raise ValueError("app_id must be a non-empty string")
        _refuse_queue_path("ServiceClient", client_options)
        self.app_id = app_id
        self._shared = client_options
        self._services = {name: _Service(name, spec, client_options) for name, spec in (services or {}).items()}
        self._retiring: set[asyncio.Task[None]] = set()  # replaced services' clients, closing
        self._closed = False

    @property
    def services(self) -> list[str]:
        return list(self._services)

    def configure_service(self, name: str, config: Mapping[str, Any]) -> None:
        """Add a service, or replace one's description; a replaced service's
        connections close in the background (its calls in flight fail
        ``connection_lost``), its figures carry over, and the new one
        connects on first use."""
        if self._closed:
            raise NotConnected("the service client is shut down")
        if not isinstance(name, str) or not name:
            raise ValueError("a service name must be a non-empty string")
        service = _Service(name, config, self._shared)
        old = self._services.get(name)
        self._services[name] = service
        if old is not None:  # the service's figures go on (as in Node)
            service.window, service.requests, service.errors, service.timeouts = old.window, old.requests, old.errors, old.timeouts
        if old is not None and old.started:
            task = asyncio.ensure_future(old.client.close())
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    def _service(self, name: str) -> _Service:
        if self._closed:
            raise NotConnected("the service client is shut down")
        try:
            return self._services[name]
        except KeyError:
            raise ValueError(f"unknown service {name!r}; known: {', '.join(self._services) or 'none'}") from None

    async def start(self) -> None:
        """Connect to every service (optional: a service connects on first use).

        Raises NotConnected naming the services none of whose servers could
        be reached; those keep trying (health checks) and the others work.
        """
        if self._closed:
            raise NotConnected("the service client is shut down")
        names = list(self._services)
        results = await asyncio.gather(*(s.start() for s in self._services.values()), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, IPCError):
                raise r
        failed = [(n, r) for n, r in zip(names, results) if isinstance(r, BaseException)]
        if failed:
            raise NotConnected(f"unreachable: {', '.join(n for n, _ in failed)}") from failed[0][1]  # the cause, as in Node

    async def request(self, service: str, method: str, data: Any = None, *, timeout: float | None = None) -> Any:
        """Call ``method`` (a channel in the service's app) and return the payload.

        Raises:
            ValueError: ``service`` is not one of the names given.
            NotConnected: after :meth:`shutdown`, or no server of the service is healthy.
            IPCError: the call's failure, as :meth:`LoadBalancedClient.send_request` raises it.
        """
        svc = self._service(service)
        timeout = check_timeout(timeout)
        started = time.monotonic()
        try:
            timeout = await svc.ready_within(svc.client.request_timeout if timeout is None else timeout)
            reply = await svc.client.send_request(method, data, timeout=timeout)
        except Exception as exc:  # a cancelled call is not the service's failure
            svc.record(started, exc)
            raise
        svc.record(started, None)
        return reply.payload

    def metrics(self) -> dict[str, dict[str, Any]]:
        """Per service ``{requests, errors, timeouts, requests_per_s,
        latency_ms: {avg, p50, p99}}``. ``errors`` counts every failed call
        (timeouts included), ``timeouts`` those with code ``timeout``; the
        rate and latencies cover the last 1,024 calls."""
        return {name: svc.metrics() for name, svc in self._services.items()}

    def get_metrics(self, service: str | None = None) -> dict[str, Any]:
        """One service's :meth:`metrics`, or every service's when ``service`` is None."""
        if service is None:
            return self.metrics()
        if service not in self._services:
            raise ValueError(f"unknown service {service!r}")
        return self._services[service].metrics()

    def status(self) -> dict[str, dict[str, Any]]:
        """Per service ``{healthy, servers}``; healthy while one of its servers is."""
        out: dict[str, dict[str, Any]] = {}
        for name, svc in self._services.items():
            servers = svc.client.server_stats()
            out[name] = {"healthy": not self._closed and any(s["healthy"] for s in servers), "servers": servers}
        return out

    def get_connection_status(self) -> dict[str, dict[str, Any]]:
        """The same as :meth:`status`, under the gateway ServiceClient's name."""
        return self.status()

    def clear_cache(self) -> None:
        """Forget every cached answer (``cache_ttl``) of every service's
        connections (docs/resilience.md §11)."""
        for svc in self._services.values():
            svc.client.clear_cache()

    def client(self, service: str) -> LoadBalancedClient:
        """The balanced client behind ``service``, for publish, subscribe and serve."""
        return self._service(service).client

    async def shutdown(self) -> None:
        """Close every connection; later calls raise NotConnected."""
        if self._closed:
            return
        self._closed = True
        await asyncio.gather(*(s.client.close() for s in self._services.values()), *self._retiring)

    async def __aenter__(self) -> ServiceClient:
        try:
            await self.start()
        except BaseException:
            await self.shutdown()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    def __repr__(self) -> str:
        up = sum(1 for s in self._services.values() if s.client.healthy)
        return f"<ServiceClient {self.app_id!r} services={len(self._services)} healthy={up}{' shut down' if self._closed else ''}>"


def _retrieve(attempt: asyncio.Future[None]) -> None:
    if not attempt.cancelled():
        attempt.exception()
