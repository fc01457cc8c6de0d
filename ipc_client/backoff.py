"""Reconnect delays: ``min(initial * multiplier**n, max)`` with jitter.

A pure function of the attempt number and a random source, so it is tested
without sleeping. The pools' refills use it too (pool_core.py).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from .option_checks import as_number, check_seconds

__all__ = ["Backoff", "DEFAULT_INITIAL_DELAY_S", "DEFAULT_MAX_DELAY_S", "DEFAULT_MULTIPLIER", "DEFAULT_JITTER"]

# The same defaults as the Node client (reconnectDelay 500 ms, 30 s, x2, ±50 %).
DEFAULT_INITIAL_DELAY_S = 0.5
DEFAULT_MAX_DELAY_S = 30.0
DEFAULT_MULTIPLIER = 2.0
DEFAULT_JITTER = 0.5


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """Args:
    initial_delay: delay before the first retry, seconds.
    max_delay: cap on any delay, seconds.
    multiplier: growth factor per attempt.
    jitter: fraction of the delay added or removed at random (0.5 = ±50 %),
        so clients that lost the same server do not return in lock step.
        A delay never exceeds ``max_delay``: see :meth:`delay` for the rule.
    """

    initial_delay: float = DEFAULT_INITIAL_DELAY_S
    max_delay: float = DEFAULT_MAX_DELAY_S
    multiplier: float = DEFAULT_MULTIPLIER
    jitter: float = DEFAULT_JITTER

    def __post_init__(self) -> None:
        # The rules of Node's initialDelay, maxDelay, multiplier and jitter
        # (js-client/lib/options.js): nan would make every delay nan, inf a wait with no end.
        check_seconds("initial_delay", self.initial_delay)
        check_seconds("max_delay", self.max_delay)
        if self.max_delay < self.initial_delay:
            raise ValueError(f"max_delay must be >= initial_delay, got {self.max_delay!r} < {self.initial_delay!r}")
        multiplier = as_number("multiplier", self.multiplier, "a finite number >= 1")
        if not (math.isfinite(multiplier) and multiplier >= 1):
            raise ValueError(f"multiplier must be a finite number >= 1, got {self.multiplier!r}")
        if not 0 <= as_number("jitter", self.jitter, "a number between 0 and 1") <= 1:
            raise ValueError(f"jitter must be a number between 0 and 1, got {self.jitter!r}")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay before retry number ``attempt`` (0-based).

        Uniform in ``[c * (1 - jitter), min(c * (1 + jitter), max_delay)]``
        with ``c = min(initial_delay * multiplier**attempt, max_delay)``: the
        capped base is jittered, and where its upper spread passes the cap the
        range ends at the cap. Clamping after the jitter instead makes half of
        the delays at the cap exactly ``max_delay``, so a fleet dropped
        together would retry together there.
        At the cap, jitter 0.5 is AWS's "equal jitter" (``c/2 + U(0, c/2)``)
        and jitter 1 its "full jitter" (``U(0, c)``), from "Exponential
        Backoff And Jitter" (AWS Architecture Blog, 2015); nats.js instead
        adds ``U(0, reconnectJitter)`` to a fixed wait. Same rule as
        js-client/lib/backoff.js.
        """
        capped = min(self.initial_delay * self.multiplier ** min(attempt, 64), self.max_delay)
        if not self.jitter:
            return capped
        low = capped * (1 - self.jitter)
        high = min(capped * (1 + self.jitter), self.max_delay)
        return min((rng or random).uniform(low, high), self.max_delay)
