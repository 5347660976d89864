"""Work queue semantics: coalescing, backpressure, per-key serialisation, backoff requeue."""

from __future__ import annotations

import asyncio

from multicluster.retry import RetryPolicy
from multicluster.workqueue import CoalescingQueue, WorkQueue


async def test_newest_state_wins_and_keeps_its_place() -> None:
    q: CoalescingQueue[str, int] = CoalescingQueue(maxsize=10)
    await q.put("a", 1)
    await q.put("b", 1)
    await q.put("a", 2)
    await q.put("a", 3)
    batch = await q.get_batch(10, 0)
    assert [(k, v) for k, v, _ in batch] == [("a", 3), ("b", 1)]
    assert q.coalesced == 2


async def test_full_queue_blocks_producers_until_drained() -> None:
    q: CoalescingQueue[int, int] = CoalescingQueue(maxsize=2)
    await q.put(1, 1)
    await q.put(2, 2)
    blocked = asyncio.create_task(q.put(3, 3))
    await asyncio.sleep(0.05)
    assert not blocked.done()  # backpressure, not growth and not a drop
    await q.put(1, 10)  # re-putting a pending key never blocks
    batch = await q.get_batch(1, 0)
    assert [(k, v) for k, v, _ in batch] == [(1, 10)]
    await asyncio.wait_for(blocked, 1)
    assert sorted(k for k, _, _ in await q.get_batch(10, 0)) == [2, 3]


async def test_get_batch_lingers_to_fill() -> None:
    q: CoalescingQueue[int, int] = CoalescingQueue()

    async def produce() -> None:
        for i in range(5):
            await q.put(i, i)
            await asyncio.sleep(0.01)

    t = asyncio.create_task(produce())
    batch = await q.get_batch(5, 0.5)
    await t
    assert len(batch) == 5


async def test_workqueue_never_processes_a_key_twice_at_once() -> None:
    wq: WorkQueue[str] = WorkQueue()
    wq.add("x")
    wq.add("x")
    assert len(wq) == 1
    key = await wq.get()
    wq.add("x")  # changed while processing: must be processed again, but only after done()
    second = asyncio.create_task(wq.get())
    await asyncio.sleep(0.05)
    assert not second.done()
    wq.done(key)
    assert await asyncio.wait_for(second, 1) == "x"


async def test_requeue_failed_backs_off_and_forget_resets() -> None:
    wq: WorkQueue[str] = WorkQueue(RetryPolicy(initial=0.05, factor=2, max=1, jitter=0))
    wq.add("k")
    k = await wq.get()
    assert wq.requeue_failed(k) == 0.05
    wq.done(k)
    t0 = asyncio.get_running_loop().time()
    assert await asyncio.wait_for(wq.get(), 1) == "k"
    assert asyncio.get_running_loop().time() - t0 >= 0.04
    assert wq.requeue_failed("k") == 0.1
    wq.forget("k")
    assert wq.failures("k") == 0
    wq.shutdown()


def test_backoff_caps_and_honours_retry_after() -> None:
    b = RetryPolicy(initial=1, factor=2, max=30, jitter=0)
    assert [b.delay(i) for i in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert b.delay(0, retry_after=12) == 12
    jittered = RetryPolicy(initial=10, jitter=0.2)
    assert all(8 <= jittered.delay(0) <= 12 for _ in range(50))


async def test_sharded_queue_keeps_each_key_in_one_shard() -> None:
    from multicluster.workqueue import ShardedQueue

    q: ShardedQueue[str, int] = ShardedQueue(4, maxsize=400)
    for i in range(100):
        await q.put(f"k{i % 10}", i)  # 10 keys, each put 10 times: coalesced to its newest value
    assert len(q) == 10
    got = {}
    for shard in q.shards:
        for k, v, _ in await shard.get_batch(100, 0) if len(shard) else []:
            assert k not in got  # a key lives in exactly one shard
            got[k] = v
    assert got == {f"k{j}": 90 + j for j in range(10)}
    assert q.discard(lambda k: True) == 0


async def test_flushed_waits_for_what_was_put_before_it_only() -> None:
    from multicluster.workqueue import ShardedQueue

    q: ShardedQueue[str, int] = ShardedQueue(2, maxsize=100)
    keys: dict[int, list[str]] = {0: [], 1: []}
    i = 0
    while min(len(v) for v in keys.values()) < 2:  # string hashes vary per process: make both shards busy
        keys[q.shards.index(q._shard(f"k{i}"))].append(f"k{i}")
        i += 1
    for k in keys[0][:2] + keys[1][:2]:
        await q.put(k, 1)
    barrier = asyncio.create_task(q.flushed())
    await asyncio.sleep(0)  # the barrier is taken when flushed() starts
    await q.put("late", 1)  # put after the barrier: never waited for
    taken = {id(s): await s.get_batch(100, 0) for s in q.shards}
    assert not barrier.done()
    first, second = q.shards
    first.finished(len(taken[id(first)]))  # written
    await asyncio.sleep(0)
    assert not barrier.done()  # the other shard's batch is still being written
    done_before_late = [k for k, _, _ in taken[id(second)] if k != "late"]
    second.finished(len(done_before_late))
    await asyncio.wait_for(barrier, 1)
    # Nothing pending at all: returns at once; a discard counts as finished.
    await asyncio.wait_for(CoalescingQueue[str, int]().flushed(), 1)
    c: CoalescingQueue[str, int] = CoalescingQueue()
    await c.put("x", 1)
    waiting = asyncio.create_task(c.flushed())
    await asyncio.sleep(0)
    assert not waiting.done()
    assert c.discard(lambda k: True) == 1
    await asyncio.wait_for(waiting, 1)


async def test_put_many_coalesces_keeps_order_and_waits_when_full() -> None:
    q: CoalescingQueue[str, int] = CoalescingQueue(maxsize=3)
    await q.put("a", 0)
    await q.put_many([("b", 1), ("a", 2), ("c", 3)])
    assert [(k, v) for k, v, _ in await q.get_batch(10, 0)] == [("a", 2), ("b", 1), ("c", 3)]
    await q.put_many([("x", 1), ("y", 2), ("z", 3)])
    blocked = asyncio.create_task(q.put_many([("z", 4), ("w", 5)]))  # z coalesces at once; w waits for room
    await asyncio.sleep(0.01)
    assert not blocked.done() and len(q) == 3
    first = await q.get_batch(1, 0)
    assert [(k, v) for k, v, _ in first] == [("x", 1)]
    await asyncio.wait_for(blocked, 1)
    assert [(k, v) for k, v, _ in await q.get_batch(10, 0)] == [("y", 2), ("z", 4), ("w", 5)]


async def test_sharded_put_many_puts_each_key_in_its_shard() -> None:
    from multicluster.workqueue import ShardedQueue

    q: ShardedQueue[str, int] = ShardedQueue(3, maxsize=300)
    await q.put_many([(f"k{i}", i) for i in range(30)])
    await q.put_many([(f"k{i}", 100 + i) for i in range(0, 30, 2)])
    assert len(q) == 30
    for shard in q.shards:
        for k, v, _ in await shard.get_batch(100, 0) if len(shard) else []:
            assert q._shard(k) is shard
            i = int(k[1:])
            assert v == (100 + i if i % 2 == 0 else i)
