"""Backoff policy for reconnection attempts: 1, 2, 4, 8, 16, 30, 30, ... seconds by default."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True, kw_only=True)
class BackoffPolicy:
    """``delay(n) = min(initial * factor**(n-1), cap)``, optionally spread by +/- ``jitter``.

    ``n`` counts consecutive failures (1 for the first retry). The counter lives with the
    lifecycle, which resets it on every successful connection; the policy itself is stateless.
    """

    initial: float = 1.0
    factor: float = 2.0
    cap: float = 30.0
    #: Fraction of the delay to spread randomly (0.1 = +/-10 %), so that many servers restarted
    #: together do not all knock on Temporal in the same instant.
    jitter: float = 0.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.initial <= 0:
            raise ValueError(f"initial must be > 0, got {self.initial}")
        if self.factor < 1:
            raise ValueError(f"factor must be >= 1, got {self.factor}")
        if self.cap < self.initial:
            raise ValueError(f"cap ({self.cap}) must be >= initial ({self.initial})")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter}")

    def base_delay(self, failures: int) -> float:
        """The delay before retry number ``failures`` (>= 1), without jitter."""
        if failures < 1:
            raise ValueError(f"failures must be >= 1, got {failures}")
        # Compare exponents instead of computing factor**n for huge n (overflow after ~1000 failures).
        delay = self.initial
        for _ in range(failures - 1):
            delay *= self.factor
            if delay >= self.cap:
                return self.cap
        return min(delay, self.cap)

    def delay(self, failures: int) -> float:
        """The delay before retry number ``failures``, with jitter applied (never above ``cap``)."""
        base = self.base_delay(failures)
        if not self.jitter:
            return base
        spread = base * self.jitter
        return min(self.cap, max(0.0, base + self.rng.uniform(-spread, spread)))

    def schedule(self, failures: int) -> list[float]:
        """The first ``failures`` delays without jitter, e.g. for docs and ``--help``."""
        return [self.base_delay(n) for n in range(1, failures + 1)]
