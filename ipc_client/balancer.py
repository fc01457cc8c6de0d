"""Choosing a server: the load balancer's strategies and per-server counters
(docs/resilience.md §8).

Pure: no sockets and no clock (latencies are passed in), randomness is
injected, so each strategy is tested by counting its picks.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ipc_protocol import ErrorCode, IPCError, NotConnected, RequestTimeout

__all__ = [
    "FAILOVER_CODES",
    "SERVER_DOWN_CODES",
    "Server",
    "ServerSpec",
    "Strategy",
    "RoundRobin",
    "LeastConnections",
    "SmoothWeighted",
    "RandomChoice",
    "Balancer",
    "STRATEGIES",
    "make_strategy",
    "parse_server",
]

ServerSpec = tuple[str, int] | str | Mapping[str, Any]

# Errors after which a call (or a stream before its first item) is tried on the next healthy server (§8).
FAILOVER_CODES = frozenset(
    {ErrorCode.NOT_CONNECTED, ErrorCode.CONNECTION_LOST, ErrorCode.SHUTTING_DOWN, ErrorCode.NO_RESPONDERS, ErrorCode.CIRCUIT_OPEN}
)
# Of those, the ones that say the server itself is gone: it leaves the rotation.
SERVER_DOWN_CODES = frozenset({ErrorCode.NOT_CONNECTED, ErrorCode.CONNECTION_LOST, ErrorCode.SHUTTING_DOWN})


@dataclass(eq=False)
class Server:
    """One server of a balanced set and what the balancer knows about it.

    Compared by identity: two entries for the same address would still be
    two members of the rotation.
    """

    host: str
    port: int
    weight: float = 1
    healthy: bool = True
    # It said it is leaving (lame duck, docs/protocol.md §13.1): still
    # serving, but calls go elsewhere while another server is healthy.
    leaving: bool = False
    # What server_stats() reports (docs/resilience.md §8), as Node's ServerState:
    # calls in flight, and of the calls that ended (every one since the start),
    # how many, how many failed, and their total latency.
    in_flight: int = 0
    requests: int = 0
    errors: int = 0
    latency_total_s: float = field(default=0.0, repr=False)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def started(self) -> None:
        """A call starts on this server (it is in flight until :meth:`finished`)."""
        self.in_flight += 1

    def finished(self, latency_s: float, *, failed: bool) -> None:
        """A call on this server ended, in a result or an error."""
        self.in_flight = max(self.in_flight - 1, 0)
        self.requests += 1
        if failed:
            self.errors += 1
        self.latency_total_s += max(latency_s, 0.0)

    def snapshot(self) -> dict[str, Any]:
        done = self.requests
        return {
            "host": self.host,
            "port": self.port,
            "weight": self.weight,
            "healthy": self.healthy,
            "in_flight": self.in_flight,
            "requests": done,
            "errors": self.errors,
            "error_rate": self.errors / done if done else 0.0,
            "average_latency_ms": round(self.latency_total_s * 1000 / done, 3) if done else None,
        }


def parse_server(spec: ServerSpec) -> Server:
    """``(host, port)``, ``"host:port"`` (``"[::1]:port"`` for an IPv6
    address, as in a URL) or ``{host, port, weight}`` -> Server."""
    weight: Any = 1
    if isinstance(spec, str):
        host, sep, port_text = spec.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not sep or not host:
            raise ValueError(f"server {spec!r} is not 'host:port'")
        if not (port_text.isascii() and port_text.isdigit()):  # int() takes '８８８８', '1_0' and ' 80'; Node's parseServer none of them
            raise ValueError(f"server {spec!r} has no numeric port")
        port: Any = int(port_text)
    elif isinstance(spec, Mapping):
        if "host" not in spec or "port" not in spec:
            raise ValueError(f"server {dict(spec)!r} needs 'host' and 'port'")
        host, port, weight = spec["host"], spec["port"], spec.get("weight", 1)
    elif isinstance(spec, (tuple, list)) and len(spec) == 2:
        host, port = spec
    else:
        raise ValueError(f"server {spec!r} is not (host, port), 'host:port' or a dict")
    if not isinstance(host, str) or not host:
        raise ValueError(f"server host must be a non-empty string, not {host!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"server port must be an int in 1..65535, not {port!r}")
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight < float("inf"):
        raise ValueError(f"server weight must be a positive number, not {weight!r}")
    return Server(host, port, weight)


class Strategy(Protocol):
    def choose(self, servers: Sequence[Server], eligible: Callable[[Server], bool]) -> Server | None:
        """The server for the next call among the ``eligible`` ones, or None."""
        ...


class RoundRobin:
    """Each eligible server in turn; a server coming back rejoins its place."""

    def __init__(self) -> None:
        self._next = 0

    def choose(self, servers: Sequence[Server], eligible: Callable[[Server], bool]) -> Server | None:
        n = len(servers)
        for i in range(n):
            idx = (self._next + i) % n
            if eligible(servers[idx]):
                self._next = idx + 1
                return servers[idx]
        return None


class LeastConnections:
    """The server with the fewest calls in flight; ties go round robin, so
    sequential calls (always zero in flight) still spread out."""

    def __init__(self) -> None:
        self._tie = RoundRobin()

    def choose(self, servers: Sequence[Server], eligible: Callable[[Server], bool]) -> Server | None:
        loads = [s.in_flight for s in servers if eligible(s)]
        if not loads:
            return None
        least = min(loads)
        return self._tie.choose(servers, lambda s: eligible(s) and s.in_flight == least)


class SmoothWeighted:
    """Smooth weighted round robin (as in nginx): weights 5:1:1 give
    ``a a b a c a a``, never five calls in a row to the heavy server."""

    def __init__(self) -> None:
        self._current: dict[Server, float] = {}

    def choose(self, servers: Sequence[Server], eligible: Callable[[Server], bool]) -> Server | None:
        candidates = [s for s in servers if eligible(s)]
        if not candidates:
            return None
        total = 0.0
        best: Server | None = None
        for s in candidates:
            self._current[s] = self._current.get(s, 0) + s.weight
            total += s.weight
            if best is None or self._current[s] > self._current[best]:
                best = s
        assert best is not None
        self._current[best] -= total
        return best


class RandomChoice:
    """A uniformly random eligible server; pass a seeded ``random.Random``
    to make it reproducible."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def choose(self, servers: Sequence[Server], eligible: Callable[[Server], bool]) -> Server | None:
        candidates = [s for s in servers if eligible(s)]
        return self._rng.choice(candidates) if candidates else None


STRATEGIES: dict[str, Callable[[random.Random | None], Strategy]] = {
    "round_robin": lambda rng: RoundRobin(),
    "least_connections": lambda rng: LeastConnections(),
    "weighted": lambda rng: SmoothWeighted(),
    "random": lambda rng: RandomChoice(rng),
}


def make_strategy(name: str, rng: random.Random | None = None) -> Strategy:
    try:
        return STRATEGIES[name](rng)
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; one of {', '.join(STRATEGIES)}") from None


class Balancer:
    """Picks among the healthy servers with one strategy."""

    def __init__(self, servers: Iterable[Server], strategy: str = "round_robin", *, rng: random.Random | None = None) -> None:
        self.servers = list(servers)
        if not self.servers:
            raise ValueError("at least one server is needed")
        self.strategy_name = strategy
        self.strategy = make_strategy(strategy, rng)

    def pick(self, exclude: Iterable[Server] = ()) -> Server | None:
        """A healthy server not in ``exclude``, or None when there is none;
        one that is leaving only when no other is left."""
        skip = set(exclude)
        staying = self.strategy.choose(self.servers, lambda s: s.healthy and not s.leaving and s not in skip)
        return staying if staying is not None else self.strategy.choose(self.servers, lambda s: s.healthy and s not in skip)

    def next_server(self, tried: set[Server], last: IPCError | None, left: float, what: str, total: float) -> Server:
        """The next server a call fails over to, added to ``tried``. Raises
        when there is none: ``RequestTimeout`` once ``left`` is spent (the
        last server's own timeout, if that is how it failed), the last error
        when it is one no other server can fix, else ``NotConnected``."""
        if left <= 0:
            if last is not None and last.code == ErrorCode.TIMEOUT:
                raise last
            raise RequestTimeout(f"no server {what} within {total:g} s")
        server = self.pick(exclude=tried)
        if server is None:
            if last is not None and last.code not in SERVER_DOWN_CODES:
                raise last  # no_responders or circuit_open everywhere: say so
            raise NotConnected("no healthy server" + (f" (last error: {last})" if last else "")) from last
        tried.add(server)
        return server

    def __repr__(self) -> str:
        healthy = sum(s.healthy for s in self.servers)
        return f"<Balancer {self.strategy_name} healthy={healthy}/{len(self.servers)}>"
