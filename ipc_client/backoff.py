"""Reconnect delays: ``min(initial * multiplier**n, max)`` with jitter.

A pure function of the attempt number and a random source, so it is tested
without sleeping.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

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
    """

    initial_delay: float = DEFAULT_INITIAL_DELAY_S
    max_delay: float = DEFAULT_MAX_DELAY_S
    multiplier: float = DEFAULT_MULTIPLIER
    jitter: float = DEFAULT_JITTER

    def __post_init__(self) -> None:
        if self.initial_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must not be negative")
        if self.multiplier < 1:
            raise ValueError("multiplier must be >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay before retry number ``attempt`` (0-based)."""
        base = min(self.initial_delay * self.multiplier ** min(attempt, 64), self.max_delay)
        if self.jitter:
            r = (rng or random).uniform(-self.jitter, self.jitter)
            base = base * (1 + r)
        return min(max(base, 0.0), self.max_delay)
