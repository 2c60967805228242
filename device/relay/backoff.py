"""Capped exponential backoff with jitter, shared by reconnects and outbox retries."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential delays with downward jitter.

    Attempt ``n`` (0-based) waits ``min(cap, initial·factorⁿ)·(1 − jitter·U)`` seconds, U uniform in
    [0, 1): never more than ``cap``, and devices that lost the same relay at the same moment spread out.
    """

    initial: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not (self.initial > 0 and self.factor >= 1 and self.cap >= self.initial and 0 <= self.jitter < 1):
            raise ValueError(
                f"invalid backoff {self!r}: need initial > 0, factor ≥ 1, cap ≥ initial, 0 ≤ jitter < 1"
            )

    def delay(self, attempt: int, *, rand: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt``; ``rand`` in [0, 1) replaces the random draw."""
        attempt = max(0, attempt)
        if self.factor > 1 and attempt * math.log(self.factor) >= math.log(self.cap / self.initial):
            base = self.cap  # also avoids float overflow for huge attempt numbers
        else:
            base = min(self.cap, self.initial * self.factor**attempt)
        u = random.random() if rand is None else rand  # jitter, not cryptography
        return base * (1.0 - self.jitter * u)
