"""RetryPolicy and the task supervisor over very long outages: thousands of attempts never overflow or give up."""

from __future__ import annotations

import asyncio
import math

import pytest

from multicluster import metrics
from multicluster.retry import RetryPolicy
from multicluster.tasks import Supervisor


@pytest.mark.parametrize("attempt", [0, 10, 1023, 1024, 5000, 10**9])
def test_backoff_never_overflows(attempt: int) -> None:
    b = RetryPolicy(initial=0.5, factor=2.0, max=30.0, jitter=0.0)
    d = b.delay(attempt)
    assert d == (min(30.0, 0.5 * 2**attempt) if attempt < 100 else 30.0)


def test_backoff_with_large_factor_and_odd_retry_after() -> None:
    b = RetryPolicy(initial=1.0, factor=1e10, max=60.0, jitter=0.2)
    assert 48.0 <= b.delay(400) <= 72.0
    for ra in (math.inf, math.nan, -5.0):
        d = b.delay(0, retry_after=ra)
        assert math.isfinite(d) and 0.0 <= d <= 240.0


async def test_supervisor_outlives_a_thousand_crashes() -> None:
    """The delay of crash number ~1024 raised OverflowError inside the handler and stopped the task for good."""
    crashes = 0

    async def flaky() -> None:
        nonlocal crashes
        crashes += 1
        if crashes <= 1100:
            raise RuntimeError("still broken")

    sup = Supervisor()
    task = sup.spawn("flaky", flaky, backoff=RetryPolicy(initial=1e-6, max=1e-6, jitter=0.0))
    await asyncio.wait_for(task, 60)
    assert task.exception() is None and crashes == 1101


async def test_supervisor_resets_the_backoff_after_a_healthy_run() -> None:
    """A task that ran fine for a long time and then crashes restarts at the first delay, not at the cap."""
    delays: list[float] = []
    runs = 0

    class Recording(RetryPolicy):
        def delay(self, attempt: int, retry_after: float | None = None) -> float:
            d = super().delay(attempt, retry_after)
            delays.append(attempt)
            return d

    async def task_body() -> None:
        nonlocal runs
        runs += 1
        if runs == 4:  # a long healthy run before this crash
            await asyncio.sleep(0.2)
        if runs < 6:
            raise RuntimeError("crash")

    sup = Supervisor(healthy_after=0.1)
    t = sup.spawn("t", task_body, backoff=Recording(initial=1e-4, max=1e-4, jitter=0.0))
    await asyncio.wait_for(t, 10)
    assert delays == [0, 1, 2, 0, 1]


async def test_supervisor_counts_crashes_in_a_metric() -> None:
    async def broken() -> None:
        raise ValueError("x")

    def crashes() -> float:
        return sum(s.value for m in metrics.TASK_CRASHES.collect() for s in m.samples
                   if s.name.endswith("_total") and s.labels.get("task") == "writer")

    before = crashes()
    sup = Supervisor()
    t = sup.spawn("writer", broken, restart=False)
    await asyncio.wait_for(t, 5)
    assert crashes() == before + 1
    assert sup.failing()["writer"].crashes == 1 and "ValueError" in sup.failing()["writer"].error
