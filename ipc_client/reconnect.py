"""The reconnection policy and loop (docs/resilience.md §1): retry with
backoff and jitter (``backoff.py``) while reconnecting, give up after
``max_retries`` or on a refusal retrying cannot fix (credentials), and
``wait_on_first_connect``, where a failed first connect() retries the same way.

The loop starts only on the move to RECONNECTING and runs only while the
state stays there, so there is never more than one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ipc_protocol import ConnectionLost, IPCError, NotConnected, RequestTimeout, Unauthorized, printable
from ipc_protocol.exceptions import revoked_for_good

from .backoff import Backoff
from .state import ConnectionState, StateMachine
from .tls import refused

__all__ = ["Reconnector", "connect_failure", "why"]

log = logging.getLogger("ipc_client")

_RECONNECTING = ConnectionState.RECONNECTING


def why(exc: BaseException) -> str:
    """``exc``'s text, or its type's name where it has none (a bare ``TimeoutError()``)."""
    return str(exc) or type(exc).__name__


def connect_failure(exc: BaseException, peer: str) -> BaseException:
    """What connect() raises for a failed attempt: the server's own refusal
    as it is, an unreachable or silent server as NotConnected."""
    if isinstance(exc, IPCError) and not isinstance(exc, (ConnectionLost, RequestTimeout)):
        return exc
    if isinstance(exc, (OSError, IPCError, asyncio.TimeoutError)):
        return NotConnected(f"cannot connect to {peer}: {why(exc)}")
    return exc


class Reconnector:
    """Runs connection attempts (``establish(generation)``) until one succeeds
    or the policy gives up.

    ``on_success(first_connect, attempts, elapsed)`` is called once connected;
    ``give_up(error)`` when the client will not reconnect."""

    def __init__(
        self,
        backoff: Backoff,
        max_retries: int | None,
        *,
        state: StateMachine,
        establish: Callable[[int], Awaitable[None]],
        on_success: Callable[[bool, int, float], None],
        give_up: Callable[[IPCError], None],
        emit: Callable[..., None],
        peer: str,
    ) -> None:
        self.backoff = backoff
        self.max_retries = max_retries
        self._sm = state
        self._establish = establish
        self._on_success = on_success
        self._give_up = give_up
        self._emit = emit
        self._peer = peer
        self._task: asyncio.Task[None] | None = None
        self.last_failure: BaseException | None = None  # of the latest connection attempt

    def start(self, generation: int, *, first_connect: bool = False) -> None:
        self._task = asyncio.ensure_future(self._loop(generation, first_connect))

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def keep_connecting(self, generation: int, failure: BaseException) -> bool:
        """``wait_on_first_connect``: retry as a reconnection does, and return
        once connected (the diagram's Connecting -> Reconnecting)."""
        self.last_failure = failure
        self._sm.set(_RECONNECTING)
        self.start(generation, first_connect=True)
        try:
            await self._sm.until_connected(None)
        except NotConnected:
            last = self.last_failure
            if isinstance(last, Unauthorized):
                raise last from None
            if refused(last):  # a refused certificate: raised with its cause (ipc_client/tls.py)
                raise last
            raise NotConnected(f"cannot connect to {self._peer}: {self._sm.state.value} after retrying: {last}") from last
        return True

    async def _loop(self, generation: int, first_connect: bool) -> None:
        """Retry with backoff while RECONNECTING; ``first_connect``: the
        attempts of a first connect() (no ``reconnected`` event)."""
        sm = self._sm
        attempt = 0
        started = asyncio.get_running_loop().time()
        last = self.last_failure if first_connect else None  # of this loop's attempts
        while sm.state is _RECONNECTING:
            if self.max_retries is not None and attempt >= self.max_retries:
                self._stop(attempt, last, first_connect)
                return
            delay = self.backoff.delay(attempt)
            attempt += 1
            self._emit("reconnecting", {"attempt": attempt, "delay": delay})
            await asyncio.sleep(delay)
            if sm.state is not _RECONNECTING:
                return
            try:
                await self._establish(generation)
            except (OSError, IPCError, asyncio.TimeoutError) as exc:
                self.last_failure = last = exc
                if revoked_for_good(exc) or refused(exc):  # retrying cannot fix credentials
                    log.error("reconnect refused: %s", printable(exc))
                    self._stop(attempt, exc, first_connect)
                    return
                log.debug("reconnect attempt %d failed: %s", attempt, printable(exc))
                continue
            if sm.state is not _RECONNECTING:  # pragma: no cover
                return
            self._task = None
            self._on_success(first_connect, attempt, asyncio.get_running_loop().time() - started)
            return

    def _stop(self, attempts: int, cause: BaseException | None, first_connect: bool) -> None:
        """Give up, as Node's client does: queued calls fail ``NotConnected``
        whose ``__cause__`` is the ``ConnectionLost`` reported on ``error``
        (unless a waiting connect() raises instead), itself caused by the
        last attempt's failure, as connect() would raise it."""
        lost = ConnectionLost(f"gave up reconnecting after {attempts} attempts")
        if cause is not None:
            lost.__cause__ = failure = connect_failure(cause, self._peer)  # an unreachable server: NotConnected
            if failure is not cause:
                failure.__cause__ = cause
        gone = NotConnected("gave up reconnecting")
        gone.__cause__ = lost
        self._sm.set(ConnectionState.DISCONNECTED)
        self._give_up(gone)
        self._emit("reconnect_failed", attempts)
        if not first_connect:
            self._emit("error", lost)
