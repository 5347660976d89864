"""Backoff policy as data: one place decides how long to wait after failures, with jitter."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    initial: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    jitter: float = 0.2  # +/- fraction, so N informers of a cluster that died together do not retry in lockstep

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (0-based). A server's Retry-After wins when larger.

        Outages last for thousands of attempts (a database down for hours), so the exponent is never evaluated
        past the point where the cap is reached: `factor ** attempt` would overflow a float at ~1024.
        """
        n = max(0, attempt)
        if self.initial <= 0.0:
            base = 0.0
        elif n >= self._capped_from():
            base = self.cap
        else:
            base = min(self.cap, self.initial * self.factor**n)
        base *= 1 + random.uniform(-self.jitter, self.jitter)
        if retry_after is not None and math.isfinite(retry_after):
            base = max(base, min(retry_after, self.cap * 4))
        return max(0.0, base)

    def _capped_from(self) -> float:
        """The first attempt whose delay reaches the cap."""
        if self.initial >= self.cap:
            return 0
        if self.factor <= 1.0:
            return math.inf
        return math.ceil(math.log(self.cap / self.initial, self.factor))


DEFAULT_BACKOFF = Backoff()
