"""Retry policy as data: how long to wait after failures, with jitter. Every retry loop in the daemon takes a named
RetryPolicy from the config's `retry` section (multicluster.config.schema.RetryConfig); none carries its own numbers.
The bounds below are checked when a policy comes from config.yaml."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Annotated

import msgspec


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    initial: Annotated[float, msgspec.Meta(ge=0)] = field(
        default=0.5, metadata={"doc": "seconds before the first retry"})
    max: Annotated[float, msgspec.Meta(gt=0)] = field(
        default=30.0, metadata={"doc": "seconds between retries at most (a server's Retry-After may ask up to 4x)"})
    factor: Annotated[float, msgspec.Meta(ge=1)] = field(
        default=2.0, metadata={"doc": "each retry waits this much longer than the one before"})
    # +/- fraction, so N informers of a cluster that died together do not retry in lockstep.
    jitter: Annotated[float, msgspec.Meta(ge=0, le=1)] = field(
        default=0.2, metadata={"doc": "each wait is changed by up to this fraction, either way"})

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (0-based). A server's Retry-After wins when larger.

        Outages last for thousands of attempts (a database down for hours), so the exponent is never evaluated
        past the point where the cap is reached: `factor ** attempt` would overflow a float at ~1024.
        """
        n = max(0, attempt)
        if self.initial <= 0.0:
            base = 0.0
        elif n >= self._capped_from():
            base = self.max
        else:
            base = min(self.max, self.initial * self.factor**n)
        base *= 1 + random.uniform(-self.jitter, self.jitter)
        if retry_after is not None and math.isfinite(retry_after):
            base = max(base, min(retry_after, self.max * 4))
        return max(0.0, base)

    def _capped_from(self) -> float:
        """The first attempt whose delay reaches the cap."""
        if self.initial >= self.max:
            return 0
        if self.factor <= 1.0:
            return math.inf
        return math.ceil(math.log(self.max / self.initial, self.factor))
