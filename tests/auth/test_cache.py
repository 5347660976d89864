"""The review cache: bounded, expiring, one review per key for concurrent callers, failures not kept, and a
caller that goes away does not cancel the answer the others wait for."""

from __future__ import annotations

import asyncio

import pytest

from multicluster.api.auth.cache import ExpiringCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_entries_expire_and_the_oldest_go_first() -> None:
    clock = Clock()
    cache: ExpiringCache[str, int] = ExpiringCache(3, clock)
    for i, key in enumerate("abcd"):
        cache.put(key, i, ttl=10)
    assert len(cache) == 3 and cache.get("a") is None and cache.get("b") == 1
    cache.put("e", 4, ttl=10)  # b was used last: c goes
    assert cache.get("c") is None and cache.get("b") == 1
    clock.now = 10.0
    assert cache.get("b") is None and len(cache) == 2
    cache.put("z", 0, ttl=0)
    assert cache.get("z") is None
    cache.put("y", 1, ttl=10)
    cache.forget(lambda key: key == "e")
    assert cache.get("e") is None and cache.get("y") == 1
    with pytest.raises(ValueError):
        ExpiringCache(0)


async def test_concurrent_misses_share_one_load_and_failures_are_not_kept() -> None:
    cache: ExpiringCache[str, str] = ExpiringCache(10)
    calls: list[str] = []
    gate = asyncio.Event()

    async def load() -> str:
        calls.append("x")
        await gate.wait()
        return "answer"

    waiters = [asyncio.create_task(cache.get_or_load("k", load, lambda _v: 5)) for _ in range(5)]
    await asyncio.sleep(0)
    waiters[0].cancel()  # this caller goes away; the others still get the answer
    gate.set()
    assert await asyncio.gather(*waiters[1:]) == ["answer"] * 4 and calls == ["x"]
    assert await cache.get_or_load("k", load, lambda _v: 5) == "answer" and calls == ["x"] and cache.hits == 1

    async def broken() -> str:
        raise RuntimeError("master unreachable")

    for _ in range(2):
        with pytest.raises(RuntimeError):
            await cache.get_or_load("bad", broken, lambda _v: 5)
    assert cache.get("bad") is None and cache.misses == 3
