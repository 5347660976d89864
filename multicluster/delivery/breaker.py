"""Per-cluster circuit breaker: a member that fails at the connection level is skipped for a short while.

Without it every CR placed on a dead cluster would wait out its own request timeout; with it a dead cluster costs
one timeout, then reconciles report it unreachable at once until the breaker closes again (the config's
`retry.memberBreaker`: 0.5 s doubling to 30 s).
A successful apply closes it. Reconcile and finalize share one `Breakers`; nobody else reads or writes its state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from multicluster.errors import ClusterError
from multicluster.retry import RetryPolicy


@dataclass(slots=True)
class _Breaker:
    until: float
    failures: int
    error: str


class Breakers:
    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self._breakers: dict[str, _Breaker] = {}

    def open(self, cluster: str) -> str | None:
        """Why `cluster` is skipped right now, or None when requests may go to it."""
        b = self._breakers.get(cluster)
        if b is not None and time.monotonic() < b.until:
            return f"unreachable ({b.error}); retrying"
        return None

    def trip(self, cluster: str, exc: ClusterError) -> None:
        b = self._breakers.get(cluster) or _Breaker(0.0, 0, "")
        if time.monotonic() < b.until:
            return  # already open: this failure is the breaker's own verdict, or a concurrent one
        b.failures += 1
        b.until = time.monotonic() + self.policy.delay(b.failures - 1)
        b.error = exc.reason
        self._breakers[cluster] = b

    def close(self, cluster: str) -> None:
        """A request to `cluster` went through: forget its failures."""
        self._breakers.pop(cluster, None)
