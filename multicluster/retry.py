"""Backoff policy as data: one place decides how long to wait after failures, with jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    initial: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    jitter: float = 0.2  # +/- fraction, so N informers of a cluster that died together do not retry in lockstep

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (0-based). A server's Retry-After wins when larger."""
        base = min(self.cap, self.initial * (self.factor ** max(0, attempt)))
        base *= 1 + random.uniform(-self.jitter, self.jitter)
        if retry_after is not None:
            base = max(base, min(retry_after, self.cap * 4))
        return max(0.0, base)


DEFAULT_BACKOFF = Backoff()
