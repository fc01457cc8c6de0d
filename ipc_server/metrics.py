"""The server's metrics and health for its operator (docs/operations.md):
what ``GET /metrics`` and ``GET /healthz`` answer (``http_endpoint``).

Nothing here runs per message. The counters are the server's own
(``ServerStats``: totals, messages by app and type; ``request_metrics``:
requests by outcome and their durations), read when scraped; gauges are
counted at scrape time from the live connections. Besides, a task samples
the event loop's lag: how late a timer fires, which is how long the loop
was busy with other work.

A page is rendered at most once per ``RENDER_INTERVAL_S``: the scrapes in
that interval, concurrent or not, are answered the same bytes object, so
N scrapers cost one render and hold one page (``http_endpoint`` writes it
to each socket in chunks, without copying it whole). Prometheus scrapes
every 15 s or more; a page a second old is as fresh as any it reads.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterator

from ipc_protocol import ErrorCode
from ipc_protocol.version import __version__

from .config import ServerConfig
from .connection import ServerConnection
from .exposition import CONTENT_TYPE, Exposition
from .http_endpoint import HttpEndpoint
from .outbound import HARD, SOFT
from .request_metrics import BUCKETS_S, RequestMetrics
from .stats import ServerStats

__all__ = ["Metrics", "LAG_INTERVAL_S", "DEGRADED_LAG_S", "RENDER_INTERVAL_S"]

# How often the loop's lag is sampled; the lag past which /healthz says
# degraded, and for how many samples after (so a stall is seen by a probe
# that comes a few seconds later).
LAG_INTERVAL_S = 0.5
DEGRADED_LAG_S = 1.0
LAG_SAMPLES_KEPT = 10
# How long a rendered /metrics page answers the scrapes that follow it.
RENDER_INTERVAL_S = 1.0

_Samples = Iterator[tuple[dict[str, str], float]]


class Metrics:
    """Metrics of one server.

    Args:
        stats: the server's counters; request metrics are switched on in them.
        connections: the server's live set of connections.
        held: the requests the server holds now, ``{"forwarded": n, "handler": n}``.
        closing: whether the server is shutting down.
    """

    def __init__(
        self,
        config: ServerConfig,
        stats: ServerStats,
        connections: Collection[ServerConnection],
        held: Callable[[], dict[str, int]],
        closing: Callable[[], bool],
    ) -> None:
        self.config = config
        self.stats = stats
        self.requests = stats.timing = RequestMetrics()
        self._connections = connections
        self._held = held
        self._closing = closing
        self.checks: list[Callable[[], str | None]] = []  # more reasons to say degraded (a cluster node's link)
        self.lag_s = 0.0
        self._recent_lags: deque[float] = deque(maxlen=LAG_SAMPLES_KEPT)
        self._lag_task: asyncio.Task[None] | None = None
        self.endpoint: HttpEndpoint | None = None
        self.started_at = time.time()
        self.renders = 0  # pages rendered (scrapes within RENDER_INTERVAL_S share one)
        self._page = b""
        self._rendered_at = -math.inf

    @property
    def port(self) -> int | None:
        """The endpoint's bound port (``metrics_port`` 0 picks one)."""
        return self.endpoint.port if self.endpoint is not None else None

    async def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Sample the loop's lag and listen on ``metrics_host:metrics_port``."""
        assert self.config.metrics_port is not None
        endpoint = HttpEndpoint({"/metrics": self.scrape, "/healthz": self.health}, on_evicted=self._evicted)
        await endpoint.start(self.config.metrics_host, self.config.metrics_port)  # OSError: nothing left running
        self.endpoint = endpoint
        self._lag_task = loop.create_task(self._sample_lag(loop))

    def _evicted(self) -> None:
        self.stats.metrics_sockets_evicted += 1

    async def close(self) -> None:
        if self._lag_task is not None:
            self._lag_task.cancel()
            await asyncio.wait([self._lag_task])  # ended when close() returns
        if self.endpoint is not None:
            await self.endpoint.close()

    async def _sample_lag(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            started = loop.time()
            await asyncio.sleep(LAG_INTERVAL_S)
            self.lag_s = max(0.0, loop.time() - started - LAG_INTERVAL_S)
            self._recent_lags.append(self.lag_s)

    # -- /healthz ----------------------------------------------------------------

    def health(self) -> tuple[int, str, bytes]:
        """200 while accepting; 503 while shutting down or degraded, with the reasons."""
        reasons = []
        status = "ok"
        if self._closing():
            status = "shutting_down"
            reasons.append("the server is shutting down")
        else:
            limit = self.config.max_connections
            open_now = sum(1 for c in self._connections if c.opened)
            if limit is not None and open_now >= limit:
                reasons.append(f"at max_connections ({limit}): new clients are refused")
            worst = max(self._recent_lags, default=0.0)
            if worst > DEGRADED_LAG_S:
                reasons.append(f"the event loop lagged {worst:.2f} s behind in the last {LAG_SAMPLES_KEPT * LAG_INTERVAL_S:g} s")
            reasons.extend(reason for check in self.checks if (reason := check()) is not None)
            if reasons:
                status = "degraded"
        body = {"status": status, "reasons": reasons, "connections": len(self._connections), "version": __version__}
        return (200 if status == "ok" else 503), "application/json", json.dumps(body).encode() + b"\n"

    # -- /metrics ----------------------------------------------------------------

    def scrape(self) -> tuple[int, str, bytes]:
        """The page rendered within the last ``RENDER_INTERVAL_S``, else a new one."""
        if time.monotonic() - self._rendered_at >= RENDER_INTERVAL_S:
            self._page = self.render()
            self._rendered_at = time.monotonic()  # from its end: a slow render still leaves the loop the interval
            self.renders += 1
        return 200, CONTENT_TYPE, self._page

    def render(self) -> bytes:
        stats = self.stats
        out = Exposition()
        out.gauge("ipc_info", "The server's version (always 1).", [({"version": __version__}, 1)])
        out.gauge("ipc_start_time_seconds", "When the server started (Unix time).", [({}, round(self.started_at, 3))])
        out.gauge("ipc_connections", "Connections past the handshake, by app and protocol version.", self._connection_samples())
        out.gauge("ipc_handshakes_pending", "Sockets accepted, not yet past their handshake.", [({}, stats.handshakes_pending)])
        out.counter("ipc_connections_accepted_total", "Sockets the server kept (pending handshakes included).", [({}, stats.connections_total)])
        out.counter("ipc_messages_total", "Messages received (in) and queued for clients (out), by type and app.", self._message_samples())
        out.counter("ipc_bytes_total", "Bytes read from and written to client sockets.", [({"direction": "in"}, stats.bytes_in), ({"direction": "out"}, stats.bytes_out)])
        out.counter("ipc_publishes_total", "Publishes accepted for fan-out.", [({}, stats.publishes)])
        out.counter("ipc_deliveries_total", "Publications queued for subscribers (one per subscriber).", [({}, stats.deliveries)])
        out.counter("ipc_requests_total", "Requests answered, by app, channel and outcome (ok or the error code).", self._request_samples())
        out.histogram(
            "ipc_request_duration_seconds",
            "Seconds from reading a request to queueing its answer, by app and channel.",
            BUCKETS_S,
            self._duration_series(),
        )
        out.counter("ipc_slow_consumers_total", "Connections cut as slow consumers, by the limit they passed.",
                    [({"limit": limit}, stats.slow_consumers_by_limit.get(limit, 0)) for limit in (HARD, SOFT)])  # fmt: skip
        out.counter("ipc_handler_errors_total", "Requests answered handler_error (a handler or responder raised).", [({}, stats.errors.get(ErrorCode.HANDLER_ERROR, 0))])
        out.counter("ipc_errors_total", "Error answers and error frames, by code.", [({"code": code}, n) for code, n in sorted(stats.errors.items())])
        held = self._held()
        out.gauge("ipc_requests_held", "Requests the server holds unanswered: forwarded to a responder, or running in an in-process handler.",
                  [({"kind": kind}, n) for kind, n in held.items()])  # fmt: skip
        out.gauge("ipc_subscriptions", "Subscriptions held.", [({}, stats.subscriptions)])
        out.gauge("ipc_registrations", "Responder registrations held.", [({}, stats.registrations)])
        out.counter("ipc_frames_skipped_total", "Frames not sent: over the limit the receiving client declared.", [({}, stats.frames_skipped)])
        out.gauge("ipc_event_loop_lag_seconds", f"How late a {LAG_INTERVAL_S:g} s timer fired, at the latest sample.", [({}, round(self.lag_s, 6))])
        return out.text()

    def _connection_samples(self) -> _Samples:
        counts: Counter[tuple[str, str]] = Counter()
        for conn in list(self._connections):
            if conn.opened:
                counts[(conn.traffic.app, "1" if conn.legacy else "2")] += 1
        for (app, protocol), n in sorted(counts.items()):
            yield {"app": app, "protocol": protocol}, n

    def _message_samples(self) -> _Samples:
        # A series appears once it counted something (as a labelled counter of a client library does).
        for app, traffic in sorted(self.stats.apps.items()):
            for direction, counts in (("in", traffic.received), ("out", traffic.sent)):
                for mtype, n in counts.items():
                    if n:
                        yield {"direction": direction, "type": mtype.value, "app": app}, n

    def _request_samples(self) -> _Samples:
        for app, channels in sorted(self.requests.apps.items()):
            for channel, series in sorted(channels.items()):
                for outcome, n in sorted(series.outcomes.items()):
                    yield {"app": app, "channel": channel, "outcome": str(outcome)}, n

    def _duration_series(self) -> Iterator[tuple[dict[str, str], list[int], float, int]]:
        for app, channels in sorted(self.requests.apps.items()):
            for channel, series in sorted(channels.items()):
                yield {"app": app, "channel": channel}, list(series.buckets), series.total_s, series.count

    def __repr__(self) -> str:
        return f"<Metrics port={self.port} lag={self.lag_s:.3f}s>"
