"""Lease mode: two stores on one real MariaDB database stand for two replicas. What one replica commits reaches
the other's hub through its Tailer; what both commit for one cluster (a shard moving between them) arrives once
each, in position order, with no gap."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from multicluster.config import StoreConfig
from multicluster.feed.hub import Hub, Subscription
from multicluster.feed.match import Filter
from multicluster.feed.tail import Tailer
from multicluster.store import Store, open_store
from tests.store.conftest import mysql_config
from tests.store.helpers import PODS, row

pytestmark = pytest.mark.mariadb


@pytest.fixture
def shared(request: pytest.FixtureRequest) -> StoreConfig:
    return mysql_config(request)


@pytest.fixture
async def replicas(shared: StoreConfig) -> AsyncIterator[tuple[Store, Store]]:
    a, b = open_store(shared), open_store(shared)
    await a.open()
    await b.open()
    yield a, b
    await a.close()
    await b.close()


async def events(sub: Subscription, n: int) -> list[tuple[str, str, str, int]]:
    out: list[tuple[str, str, str, int]] = []
    while len(out) < n:
        for kind, c, _ in await asyncio.wait_for(sub.next(), 30):
            out.append((kind, c.cluster, c.name, c.seq))
    return out


async def test_the_other_replicas_commits_reach_this_hub_once_in_order(replicas: tuple[Store, Store]) -> None:
    a, b = replicas
    hub = Hub()
    hub.start({c: p.last for c, p in (await a.log_positions()).items()})
    a.listen(hub.publish)
    tailer = Tailer(a, hub, interval=0.02, batch=3)
    task = asyncio.create_task(tailer.run())
    try:
        sub = hub.subscribe(Filter(PODS))
        # Replica B syncs c2; A syncs c1.
        await b.apply([row("x", 1, cluster="c2"), row("y", 1, cluster="c2")])
        await a.apply([row("a", 1)])
        got = await events(sub, 3)
        assert sorted(got) == [("ADDED", "c1", "a", 1), ("ADDED", "c2", "x", 1), ("ADDED", "c2", "y", 2)]
        # c2 moves from B to A in the middle of a burst: B's last entries and A's first ones, and more than one
        # batch of them, arrive each once and in order.
        for i in range(4):
            await b.apply([row(f"m{i}", 1, cluster="c2")])
        for i in range(4):
            await a.apply([row(f"n{i}", 1, cluster="c2")])
        moved = await events(sub, 8)
        assert [(c, n, s) for _, c, n, s in moved] == [("c2", f"m{i}", 3 + i) for i in range(4)] + \
            [("c2", f"n{i}", 7 + i) for i in range(4)]
        assert await sub.next(timeout=0.3) == []  # nothing doubled
        assert tailer.published >= 6
    finally:
        task.cancel()
        a.listen(None)
        hub.stop()


async def test_with_no_watcher_the_tailer_reads_no_entries(replicas: tuple[Store, Store]) -> None:
    a, b = replicas
    hub = Hub()
    hub.start({c: p.last for c, p in (await a.log_positions()).items()})
    tailer = Tailer(a, hub, interval=0.02)
    await b.apply([row("x", 1, cluster="c9"), row("y", 1, cluster="c9")])
    await tailer.poll()
    assert tailer.published == 0 and hub.passed("c9") == 2
    # A watcher that comes later gets only what follows.
    sub = hub.subscribe(Filter(PODS))
    await b.apply([row("z", 1, cluster="c9")])
    await tailer.poll()
    assert [(k, c.name, c.seq) for k, c, _ in await sub.next(timeout=5)] == [("ADDED", "z", 3)]
    hub.stop()
