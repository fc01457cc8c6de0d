"""Token verification off the event loop (docs/security.md §3).

scrypt is slow on purpose (tens of milliseconds of one core), so it never
runs on the loop: a small thread pool runs it (hashlib releases the GIL),
at most ``workers`` at once, with at most ``max_queued`` verifications
waiting. Two connects presenting the same user and token share one
verification, and a success is remembered for ``ttl_s`` so that a
reconnect storm costs one scrypt per user, not one per connection. The
remembered key is an HMAC of the user, the stored hash and the token
under a key made at start-up: the token itself is never kept, and a
changed hash (a reload) never matches an old entry.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from .users import verify_token

__all__ = ["Verifier", "VerifierBusy"]

DEFAULT_TTL_S = 60.0
DEFAULT_CACHE_SIZE = 4096
DEFAULT_MAX_QUEUED = 256


def default_workers() -> int:
    """Leave a core for the loop: one thread on a 2-core machine, at most 4."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


class VerifierBusy(Exception):
    """Too many verifications are waiting already: try again later."""


class _Job:
    __slots__ = ("future", "waiters")

    def __init__(self, future: asyncio.Future[bool]) -> None:
        self.future = future
        self.waiters = 0


class Verifier:
    """Checks tokens against stored scrypt hashes, bounded and cached.
    ``check`` is what runs in a worker (``verify_token``, its errors a failure)."""

    def __init__(
        self,
        *,
        workers: int | None = None,
        ttl_s: float = DEFAULT_TTL_S,
        cache_size: int = DEFAULT_CACHE_SIZE,
        max_queued: int = DEFAULT_MAX_QUEUED,
        clock: Callable[[], float] = time.monotonic,
        check: Callable[[str, str], bool] | None = None,
    ) -> None:
        self._workers = workers or default_workers()
        self._ttl_s = ttl_s
        self._cache_size = cache_size
        self._max_queued = max_queued
        self._clock = clock
        self._check = check or _check
        self._key = os.urandom(32)
        self._cache: dict[bytes, float] = {}  # key -> expiry on the clock
        self._jobs: dict[bytes, _Job] = {}
        self._executor: ThreadPoolExecutor | None = None
        self.verified = 0  # scrypt runs that succeeded / failed, for tests and logs
        self.failed = 0

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

    def start(self, key: bytes, token: str, stored: str) -> asyncio.Future[bool]:
        """The verification of ``token`` against ``stored``, shared by every
        caller with the same ``key``; call :meth:`release` when no longer
        interested. Raises :class:`VerifierBusy` when too many wait."""
        job = self._jobs.get(key)
        if job is None:
            if len(self._jobs) >= self._max_queued:
                raise VerifierBusy(f"{len(self._jobs)} credential checks already waiting")
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self._workers, thread_name_prefix="ipc-auth")
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(self._executor, self._check, token, stored)
            job = self._jobs[key] = _Job(future)
            future.add_done_callback(lambda f: self._finished(key, f))
        job.waiters += 1
        return job.future

    def release(self, key: bytes) -> None:
        """One caller lost interest (its connection closed): a verification
        nobody waits for any more is dropped if it has not started."""
        job = self._jobs.get(key)
        if job is None:
            return
        job.waiters -= 1
        if job.waiters <= 0 and job.future.cancel():
            self._jobs.pop(key, None)

    def _finished(self, key: bytes, future: asyncio.Future[bool]) -> None:
        self._jobs.pop(key, None)
        if future.cancelled():
            return
        if future.exception() is None and future.result():
            self.verified += 1
            if len(self._cache) >= self._cache_size:
                now = self._clock()
                self._cache = {k: e for k, e in self._cache.items() if e > now}
                if len(self._cache) >= self._cache_size:
                    self._cache.clear()
            self._cache[key] = self._clock() + self._ttl_s
        else:
            self.failed += 1

    def forget(self) -> None:
        """Drop every remembered success (a reload)."""
        self._cache.clear()

    def close(self) -> None:
        for job in self._jobs.values():
            job.future.cancel()
        self._jobs.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def __repr__(self) -> str:
        return f"<Verifier workers={self._workers} waiting={len(self._jobs)} cached={len(self._cache)}>"


def _check(token: str, stored: str) -> bool:
    try:
        return verify_token(token, stored)
    except (ValueError, TypeError, MemoryError):
        return False
