"""Token verification off the event loop (docs/security.md §1, §3.2).

scrypt is slow on purpose (tens of milliseconds of one core), so it never
runs on the loop: a small thread pool runs it (hashlib releases the GIL),
at most ``workers`` at once. Two connects presenting the same user and
token share one verification, and a success is remembered for ``ttl_s``
so that a reconnect storm costs one scrypt per user, not one per
connection. The remembered key is an HMAC of the user, the stored hash and
the token under a key made at start-up: the token itself is never kept,
and a changed hash (a reload) never matches an old entry.

Checks wait here, not in the pool's own FIFO, because a FIFO lets one
peer's flood of wrong tokens (each costs a full scrypt, an unknown user's
too: no enumeration) delay everyone else's past the auth timeout. So:

- each peer address has its own queue, and the workers take the next
  check by network (an IPv4 /24, an IPv6 /48) in turn, and within a
  network by address in turn (round robin at both levels): a flood from
  many addresses of one network gets one network's turn, so a check waits
  for at most one check of each other network per check of its own
  network ahead of it;
- an address holds at most ``max_queued_per_peer`` checks (waiting or
  running); past that its connect is refused at once (:class:`VerifierBusy`),
  and at most ``max_queued`` checks are held in all;
- a check nobody waits for any more (its sockets closed, or failed by
  the auth timeout) leaves its queue at once, and one whose turn comes
  with less time left than a check takes (a moving estimate of the last
  checks' durations) is refused busy then, never run: a check that cannot
  finish before its deadline would only take the thread from one that can.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import ipaddress
import os
import time
from collections import deque
from collections.abc import Callable
from typing import Any
from concurrent.futures import ThreadPoolExecutor

from .users import verify_token

__all__ = ["Verifier", "VerifierBusy", "address_of", "network_of"]

DEFAULT_TTL_S = 60.0
DEFAULT_CACHE_SIZE = 4096
DEFAULT_MAX_QUEUED = 256
# One address's checks: 16 at the default cost (50-100 ms each) is about what
# one worker runs within the 2 s auth timeout.
DEFAULT_MAX_QUEUED_PER_PEER = 16
# The estimate of a check's duration: never below this (a clock's jitter, a
# first check not measured yet), each new duration weighing this much.
MIN_CHECK_S = 0.005
CHECK_S_WEIGHT = 0.25


def default_workers() -> int:
    """Leave a core for the loop: one thread on a 2-core machine, at most 4."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def address_of(peername: Any) -> str:
    """What a peer's checks are queued under: its IP address; an IPv6
    one's /64, which one host usually holds whole (as ``::ffff:``-mapped
    IPv4, the IPv4 address)."""
    host = peername[0] if isinstance(peername, tuple) and peername else peername
    try:
        ip = ipaddress.ip_address(str(host).partition("%")[0])
    except ValueError:
        return str(host or "")
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def network_of(address: str) -> str:
    """The network whose turn an address's checks share: an IPv4 /24, an
    IPv6 /48 (what one site is usually given), or the address itself when
    it is not one (a Unix socket's)."""
    try:
        net = ipaddress.ip_network(address, strict=False)
    except ValueError:
        return address
    prefix = 24 if net.version == 4 else 48
    return str(net.supernet(new_prefix=prefix)) if net.prefixlen > prefix else str(net)


class VerifierBusy(Exception):
    """Too many verifications are waiting already: try again later."""


class _Job:
    __slots__ = ("key", "token", "stored", "peer", "network", "future", "waiters", "deadline", "running", "started")

    def __init__(self, key: bytes, token: str, stored: str, peer: str, future: asyncio.Future[bool]) -> None:
        self.key, self.token, self.stored, self.peer, self.future = key, token, stored, peer, future
        self.network = network_of(peer)
        self.waiters = 0
        self.deadline = float("inf")  # on the verifier's clock: the latest of its waiters'
        self.running = False
        self.started = 0.0


class Verifier:
    """Checks tokens against stored scrypt hashes: bounded, fair between
    peer addresses, shared and cached. ``check`` is what runs in a worker
    (``verify_token``, its errors a failure)."""

    def __init__(
        self,
        *,
        workers: int | None = None,
        ttl_s: float = DEFAULT_TTL_S,
        cache_size: int = DEFAULT_CACHE_SIZE,
        max_queued: int = DEFAULT_MAX_QUEUED,
        max_queued_per_peer: int = DEFAULT_MAX_QUEUED_PER_PEER,
        clock: Callable[[], float] = time.monotonic,
        check: Callable[[str, str], bool] | None = None,
    ) -> None:
        self._workers = workers or default_workers()
        self._ttl_s = ttl_s
        self._cache_size = cache_size
        self._max_queued = max_queued
        self._max_per_peer = max_queued_per_peer
        self._clock = clock
        self._check = check or _check
        self._key = os.urandom(32)
        self._cache: dict[bytes, float] = {}  # key -> expiry on the clock
        self._jobs: dict[bytes, _Job] = {}  # waiting or running
        # network -> peer -> its waiting checks; dict order = the order of turns, at both levels
        self._queues: dict[str, dict[str, deque[_Job]]] = {}
        self._held: dict[str, int] = {}  # peer -> its checks waiting or running
        self._running = 0
        self._executor: ThreadPoolExecutor | None = None
        self.verified = 0  # scrypt runs that succeeded / failed, for tests and logs
        self.failed = 0
        self.dropped = 0  # checks dropped before they ran: nobody waited, or too late
        self.late = 0  # of those, refused busy: too little time left when their turn came
        self.check_s = MIN_CHECK_S  # how long a check takes: a moving estimate
        self._measured = False

    def key(self, user: str, stored: str, token: str) -> bytes:
        data = b"\0".join(s.encode("utf-8", "surrogatepass") for s in (user, stored, token))
        return hmac.new(self._key, data, hashlib.sha256).digest()

    def cached(self, key: bytes) -> bool:
        """A success remembered and not yet expired."""
        expiry = self._cache.get(key)
        if expiry is None:
            return False
        if expiry <= self._clock():
            del self._cache[key]
            return False
        return True

    def held(self, peer: str) -> int:
        """The checks of ``peer`` waiting or running."""
        return self._held.get(peer, 0)

    def start(self, key: bytes, token: str, stored: str, *, peer: str = "", within_s: float | None = None) -> asyncio.Future[bool]:
        """The verification of ``token`` against ``stored``, shared by every
        caller with the same ``key``, queued under ``peer`` (an address) and
        of no use after ``within_s``; call :meth:`release` when no longer
        interested. Raises :class:`VerifierBusy` when too many wait, in all
        or from ``peer``. The future is cancelled if the check is dropped,
        and fails with :class:`VerifierBusy` if its turn comes too late."""
        job = self._jobs.get(key)
        if job is None:
            if len(self._jobs) >= self._max_queued:
                raise VerifierBusy(f"{len(self._jobs)} credential checks already waiting")
            held = self._held.get(peer, 0)
            if held >= self._max_per_peer:
                raise VerifierBusy(f"{held} credential checks from {peer or 'this address'} already waiting, the most one address may have")
            job = self._jobs[key] = _Job(key, token, stored, peer, asyncio.get_running_loop().create_future())
            self._held[peer] = held + 1
            self._queues.setdefault(job.network, {}).setdefault(peer, deque()).append(job)
        job.waiters += 1
        deadline = float("inf") if within_s is None else self._clock() + within_s
        job.deadline = deadline if job.waiters == 1 else max(job.deadline, deadline)
        self._pump()
        return job.future

    def release(self, key: bytes) -> None:
        """One caller lost interest (its connection closed): a verification
        nobody waits for any more leaves its queue if it has not started."""
        job = self._jobs.get(key)
        if job is None:
            return
        job.waiters -= 1
        if job.waiters <= 0 and not job.running:
            peers = self._queues.get(job.network, {})
            queue = peers.get(job.peer)
            if queue is not None and job in queue:
                queue.remove(job)
                if not queue:
                    del peers[job.peer]
                    if not peers:
                        del self._queues[job.network]
            self._drop(job)

    def _drop(self, job: _Job, late: str = "") -> None:
        self._gone(job)
        self.dropped += 1
        if late:
            self.late += 1
            job.future.set_exception(VerifierBusy(late))
        else:
            job.future.cancel()

    def _gone(self, job: _Job) -> None:
        self._jobs.pop(job.key, None)
        left = self._held.get(job.peer, 0) - 1
        if left > 0:
            self._held[job.peer] = left
        else:
            self._held.pop(job.peer, None)

    def _next(self) -> _Job | None:
        """The next check to run: the head of the first address's queue in
        the first network's, both going to the back of their turns; one
        with less time left than a check takes is refused, not run."""
        while self._queues:
            network = next(iter(self._queues))
            peers = self._queues.pop(network)
            peer = next(iter(peers))
            queue = peers.pop(peer)
            job = queue.popleft()
            if queue:
                peers[peer] = queue
            if peers:
                self._queues[network] = peers
            left = job.deadline - self._clock()
            if left < self.check_s:
                self._drop(job, f"its turn came {max(left, 0.0):.3f} s before its deadline, a check takes about {self.check_s:.3f} s")
                continue
            return job
        return None

    def _pump(self) -> None:
        while self._running < self._workers:
            job = self._next()
            if job is None:
                return
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self._workers, thread_name_prefix="ipc-auth")
            job.running = True
            job.started = self._clock()
            self._running += 1
            ran = asyncio.get_running_loop().run_in_executor(self._executor, self._check, job.token, job.stored)
            ran.add_done_callback(functools.partial(self._finished, job))

    def _finished(self, job: _Job, ran: asyncio.Future[bool]) -> None:
        self._running -= 1
        self._gone(job)
        if not ran.cancelled():
            took = self._clock() - job.started
            weight = CHECK_S_WEIGHT if self._measured else 1.0  # the first measure replaces the guess
            self._measured = True
            self.check_s = max(MIN_CHECK_S, self.check_s + weight * (took - self.check_s))
        ok = not ran.cancelled() and ran.exception() is None and ran.result()
        if ok:
            self.verified += 1
            if len(self._cache) >= self._cache_size:
                now = self._clock()
                self._cache = {k: e for k, e in self._cache.items() if e > now}
                if len(self._cache) >= self._cache_size:
                    self._cache.clear()
            self._cache[job.key] = self._clock() + self._ttl_s
        elif not ran.cancelled():
            self.failed += 1
        if not job.future.done():
            if ran.cancelled():
                job.future.cancel()
            else:
                job.future.set_result(bool(ok))
        if self._executor is not None:
            self._pump()

    def forget(self) -> None:
        """Drop every remembered success (a reload)."""
        self._cache.clear()

    def close(self) -> None:
        for job in self._jobs.values():
            job.future.cancel()
        self._jobs.clear()
        self._queues.clear()
        self._held.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def __repr__(self) -> str:
        return f"<Verifier workers={self._workers} running={self._running} waiting={len(self._jobs) - self._running} networks={len(self._queues)} check_s={self.check_s:.3f} cached={len(self._cache)}>"


def _check(token: str, stored: str) -> bool:
    try:
        return verify_token(token, stored)
    except (ValueError, TypeError, MemoryError):
        return False
