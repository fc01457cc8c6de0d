"""Circuit breaker: stop calling a service that keeps failing, try again later.

CLOSED -> OPEN after ``failure_threshold`` consecutive failures; OPEN fails
fast with :class:`CircuitOpen` for ``reset_timeout``; then HALF_OPEN lets up
to ``half_open_max_calls`` trial calls through; ``success_threshold``
consecutive successes close it, one failure opens it again
(docs/resilience.md §6). OPEN turns HALF_OPEN when a call is admitted past
``reset_timeout`` (that call is the first trial), never when it is read:
a snapshot changes nothing. ``consecutive_failures`` and
``consecutive_successes`` are the current run of counted outcomes: a
success adds one to the second and zeroes the first, a failure the
reverse, and transitions leave them alone (as the Node breaker,
interop-tests/spec/circuit_breaker.json). Pure: the clock is injected, so
it is tested without sleeping. :class:`Breakers` holds a client's breakers, one per
channel or one for all, and runs a call through its breaker.
"""

from __future__ import annotations

import inspect
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

from ipc_protocol import CircuitOpen, ErrorCode, IPCError, Message, ProtocolError, RemoteError
from ipc_protocol.messages import response_to

from .option_checks import check_callable, check_count, check_seconds

log = logging.getLogger("ipc_client")

__all__ = ["Breakers", "CircuitBreaker", "CircuitBreakerOptions", "CircuitState", "FAILURE_CODES", "breaker_options", "is_failure"]

# Errors that say the service is unavailable; the others say the call was wrong.
FAILURE_CODES = frozenset(
    {
        ErrorCode.TIMEOUT,
        ErrorCode.CONNECTION_LOST,
        ErrorCode.NOT_CONNECTED,
        ErrorCode.NO_RESPONDERS,
        ErrorCode.RESPONDER_LOST,
        ErrorCode.SHUTTING_DOWN,
        ErrorCode.SLOW_CONSUMER,
        ErrorCode.QUEUE_FULL,
    }
)


def is_failure(error: BaseException) -> bool:
    """The default: bridge errors that mean "unavailable"; any non-bridge error."""
    if isinstance(error, IPCError):
        return error.code in FAILURE_CODES
    return isinstance(error, Exception)


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, kw_only=True)
class CircuitBreakerOptions:
    """Args:
    failure_threshold: consecutive failures that open the circuit.
    reset_timeout: seconds OPEN before trial calls are let through.
    success_threshold: consecutive trial successes that close it again.
    half_open_max_calls: trial calls allowed at once while HALF_OPEN.
    scope: ``"channel"`` (one breaker per channel) or ``"client"`` (one for all).
    fallback: ``fallback(channel, payload, error)``, sync or async; its
        result is returned instead of raising CircuitOpen.
    is_failure: which errors count as failures (default :func:`is_failure`;
        None is the default too, as Node's null).
    """

    failure_threshold: int = 5
    reset_timeout: float = 30.0
    success_threshold: int = 2
    half_open_max_calls: int = 1
    scope: str = "channel"
    fallback: Callable[[str, Any, CircuitOpen], Any] | None = None
    is_failure: Callable[[BaseException], bool] | None = is_failure

    def __post_init__(self) -> None:
        # Node's rules (parseBreakerOptions): a NaN reset_timeout kept an open
        # breaker letting every call through, and 1.5 or True passed as counts.
        for name in ("failure_threshold", "success_threshold", "half_open_max_calls"):
            check_count(f"circuit_breaker.{name}", getattr(self, name), minimum=1)
        check_seconds("circuit_breaker.reset_timeout", self.reset_timeout)
        if self.scope not in ("channel", "client"):
            raise ValueError("scope must be 'channel' or 'client'")
        # Taken as they came, a string failed the first call it was meant to judge or answer.
        check_callable("circuit_breaker.fallback", self.fallback)
        check_callable("circuit_breaker.is_failure", self.is_failure)


_FIELDS = frozenset(field.name for field in fields(CircuitBreakerOptions))


class CircuitBreaker:
    """One breaker. ``on_change(breaker, old_state)`` is told of every
    transition. ``clock`` is the monotonic clock it runs on, ``wall`` the
    wall clock ``opened_at`` is reported on (read at each snapshot), as
    Node's ``now`` and ``wall``."""

    def __init__(
        self,
        name: str,
        options: CircuitBreakerOptions | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        on_change: Callable[[CircuitBreaker, CircuitState], None] | None = None,
    ) -> None:
        self.name = name
        self.options = options or CircuitBreakerOptions()
        self._is_failure = self.options.is_failure or is_failure  # None: the default, as Node's null
        self._clock = clock
        self._wall = wall
        self._on_change = on_change
        self.state = CircuitState.CLOSED
        self.consecutive_failures = 0
        self.consecutive_successes = 0
        self.failures = 0
        self.successes = 0
        self.rejected = 0
        self.opened_at: float | None = None  # clock time it last opened; kept through half-open, None once closed
        self._trials = 0
        self._generation = 0  # results of calls started before a transition are not trials

    def before_call(self) -> int:
        """Admit a call or raise CircuitOpen; returns a token for :meth:`record`."""
        if self.state is CircuitState.OPEN:
            assert self.opened_at is not None
            wait = self.opened_at + self.options.reset_timeout - self._clock()
            if wait > 0:
                self.rejected += 1
                raise CircuitOpen(f"circuit {self.name!r} is open; retry in {wait:.3g} s", retry_after=wait)
            self._transition(CircuitState.HALF_OPEN)
        if self.state is CircuitState.HALF_OPEN:
            if self._trials >= self.options.half_open_max_calls:
                self.rejected += 1
                raise CircuitOpen(f"circuit {self.name!r} is half-open and its trial calls are in flight", retry_after=0.0)
            self._trials += 1
        return self._generation

    def record(self, token: int, error: BaseException | None) -> None:
        """Report how an admitted call ended (``error`` None for success)."""
        failed = error is not None and self._is_failure(error)
        if failed:
            self.failures += 1
        else:
            self.successes += 1
        if token != self._generation:
            return  # started under another state: it says nothing about this one
        if self.state is CircuitState.HALF_OPEN:
            self._trials = max(0, self._trials - 1)
        if failed:
            self.consecutive_failures += 1
            self.consecutive_successes = 0
            if self.state is CircuitState.HALF_OPEN or self.consecutive_failures >= self.options.failure_threshold:
                self._transition(CircuitState.OPEN)
        else:
            self.consecutive_successes += 1
            self.consecutive_failures = 0
            if self.state is CircuitState.HALF_OPEN and self.consecutive_successes >= self.options.success_threshold:
                self._transition(CircuitState.CLOSED)

    def release(self, token: int) -> None:
        """An admitted call ended without an outcome (cancelled): free its trial slot."""
        if token == self._generation and self.state is CircuitState.HALF_OPEN:
            self._trials = max(0, self._trials - 1)

    def _transition(self, new: CircuitState) -> None:
        """Leaves the counters as they are: each is the run of outcomes that
        ended with the last counted one, whatever the state (the spec,
        interop-tests/spec/circuit_breaker.json)."""
        old, self.state = self.state, new
        self._generation += 1
        self._trials = 0
        if new is CircuitState.OPEN:
            self.opened_at = self._clock()
        elif new is CircuitState.CLOSED:
            self.opened_at = None
        if self._on_change is not None:
            self._on_change(self, old)

    def snapshot(self) -> dict[str, Any]:
        return {
            "key": self.name,
            "state": self.state.value,
            "consecutive_failures": self.consecutive_failures,
            "consecutive_successes": self.consecutive_successes,
            "failures": self.failures,
            "successes": self.successes,
            "rejected": self.rejected,
            # wall-clock time, for dashboards: a wall-clock step since does not shift it
            "opened_at": None if self.opened_at is None else self._wall() - (self._clock() - self.opened_at),
        }


def breaker_options(value: object) -> CircuitBreakerOptions | None:
    """A client's ``circuit_breaker`` option, checked when the client is made
    (as Node's ``circuitBreaker``): ``None``/``False`` off, ``True`` the
    defaults, a :class:`CircuitBreakerOptions`, or a mapping of its fields
    (Node's plain object); anything else is a ``TypeError`` naming it."""
    if value is None or value is False:
        return None
    if value is True:
        return CircuitBreakerOptions()
    if isinstance(value, CircuitBreakerOptions):
        return value
    if isinstance(value, Mapping):
        unknown = sorted(repr(key) for key in value if key not in _FIELDS)
        if unknown:  # as Node's "unknown circuitBreaker option"; a bad value raises naming its field
            raise TypeError(f"circuit_breaker: unknown field {', '.join(unknown)}")
        return CircuitBreakerOptions(**value)
    raise TypeError(f"circuit_breaker must be None, a bool, CircuitBreakerOptions or a mapping of its fields, got {type(value).__name__} {value!r:.40}")


class Breakers:
    """A client's breakers, created on first use: one per channel, or one
    (``*``) for all with ``scope="*"``."""

    def __init__(self, options: CircuitBreakerOptions, emit: Callable[..., None]) -> None:
        self.options = options
        self._emit = emit
        self._breakers: dict[str, CircuitBreaker] = {}
        # The answers fallbacks gave, by identity (a message's own hash reads its payload, maybe unhashable).
        self._fallback_answers: weakref.WeakValueDictionary[int, Message] = weakref.WeakValueDictionary()

    def _on_change(self, breaker: CircuitBreaker, old: CircuitState) -> None:
        """Each transition is an event: ``circuit_open``, ``circuit_half_open``, ``circuit_closed``."""
        log.info("circuit %r: %s -> %s", breaker.name, old.value, breaker.state.value)
        self._emit(f"circuit_{breaker.state.value}", breaker.snapshot())

    def get(self, channel: str) -> CircuitBreaker:
        key = channel if self.options.scope == "channel" else "*"
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = self._breakers[key] = CircuitBreaker(key, self.options, on_change=self._on_change)
        return breaker

    def snapshots(self) -> dict[str, dict[str, Any]]:
        return {key: breaker.snapshot() for key, breaker in self._breakers.items()}

    def from_fallback(self, reply: Message) -> bool:
        """Whether ``reply`` is an answer the fallback gave (the response cache stores none, docs/resilience.md §11)."""
        return self._fallback_answers.get(id(reply)) is reply

    async def guard(self, msg: Message, call: Callable[[], Awaitable[Message]], refused: Callable[[], None]) -> Message:
        """``call()`` through the breaker of ``msg``'s channel; while it is
        open, the fallback's answer or CircuitOpen (``refused()`` told)."""
        breaker = self.get(msg.channel_id)
        try:
            token = breaker.before_call()
        except CircuitOpen as exc:
            if self.options.fallback is None:
                refused()
                raise
            result = self.options.fallback(msg.channel_id, msg.payload, exc)
            if inspect.isawaitable(result):
                result = await result
            answer = result if isinstance(result, Message) else response_to(msg, result)
            self._fallback_answers[id(answer)] = answer
            return answer
        try:
            reply = await call()
        except RemoteError as exc:  # an answer (a TooLarge is a ProtocolError too)
            breaker.record(token, exc)
            raise
        except (ProtocolError, ValueError):  # refused locally: says nothing about the service
            breaker.release(token)
            raise
        except Exception as exc:
            breaker.record(token, exc)
            raise
        except BaseException:
            breaker.release(token)
            raise
        breaker.record(token, None)
        return reply
