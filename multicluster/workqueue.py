"""Work queues.

CoalescingQueue feeds the store writer: keyed, newest state wins (an object changed twice before it is written is
written once), bounded (a slow or dead store blocks producers — the watches pause — instead of growing memory or
dropping events). Re-putting a key that is already pending replaces its value in place and never blocks, so a
hot object cannot deadlock its own informer.

WorkQueue is the controller-style queue (like client-go's): a key is never processed by two workers at once, a
key added while it is being processed is processed again afterwards, and failures are requeued with backoff.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from multicluster.config import RetryConfig
from multicluster.retry import RetryPolicy

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class CoalescingQueue(Generic[K, V]):
    def __init__(self, maxsize: int = 10_000) -> None:
        self.maxsize = maxsize
        self._items: OrderedDict[K, tuple[V, float]] = OrderedDict()
        self._not_empty = asyncio.Event()
        self._not_full = asyncio.Event()
        self._not_full.set()
        self.coalesced = 0
        # Flush barriers: keys ever added, and items finished (written by the consumer, or discarded). Items
        # leave in FIFO order and the consumer writes batches in order, so once `_finished` reaches the value
        # `_added` had at some moment, everything put before that moment is in the store.
        self._added = 0
        self._finished = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        # The consumer lingering for a fuller batch: woken once `_want` items are pending (one wake-up per batch
        # instead of one per item put).
        self._filling: asyncio.Future[None] | None = None
        self._want = 0

    def __len__(self) -> int:
        return len(self._items)

    def _added_one(self) -> None:
        self._added += 1
        self._not_empty.set()
        if len(self._items) >= self._want:
            wake(self._filling)

    async def put(self, key: K, value: V) -> None:
        """Enqueue; if `key` is pending, replace its value (keeping its place and first-enqueue time)."""
        if key in self._items:
            _, t0 = self._items[key]
            self._items[key] = (value, t0)
            self.coalesced += 1
            return
        while len(self._items) >= self.maxsize:
            self._not_full.clear()
            await self._not_full.wait()
            if key in self._items:  # someone else enqueued it while we waited
                _, t0 = self._items[key]
                self._items[key] = (value, t0)
                self.coalesced += 1
                return
        self._items[key] = (value, time.monotonic())
        self._added_one()

    async def put_many(self, items: list[tuple[K, V]]) -> None:
        """put() for each item in order, without a coroutine per item (a list page hands on 500 at once)."""
        now = time.monotonic()
        pending = self._items
        for key, value in items:
            if key in pending:
                _, t0 = pending[key]
                pending[key] = (value, t0)
                self.coalesced += 1
            elif len(pending) < self.maxsize:
                pending[key] = (value, now)
                self._added_one()
            else:
                await self.put(key, value)  # full: wait like put() does
                now = time.monotonic()

    async def get_batch(self, max_items: int, linger: float) -> list[tuple[K, V, float]]:
        """Wait for at least one item, then up to `linger` seconds for the batch to fill; oldest first."""
        while not self._items:
            self._not_empty.clear()
            await self._not_empty.wait()
        if len(self._items) < max_items and linger > 0:
            self._filling, self._want = asyncio.get_running_loop().create_future(), max_items
            try:
                await settle_within(self._filling, linger)
            finally:
                self._filling = None
        out: list[tuple[K, V, float]] = []
        while self._items and len(out) < max_items:
            k, (v, t0) = self._items.popitem(last=False)
            out.append((k, v, t0))
        if len(self._items) < self.maxsize:
            self._not_full.set()
        return out

    def pending(self) -> list[K]:
        return list(self._items)

    def discard(self, predicate: Callable[[K], bool]) -> int:
        """Drop pending items whose key matches (a cluster being removed must not be written back)."""
        victims = [k for k in self._items if predicate(k)]
        for k in victims:
            del self._items[k]
        if victims and len(self._items) < self.maxsize:
            self._not_full.set()
        self.finished(len(victims))
        return len(victims)

    def finished(self, n: int) -> None:
        """The consumer is done with `n` items it took (written, or given up on for good)."""
        self._finished += n
        if self._waiters:
            still = []
            for target, fut in self._waiters:
                if self._finished >= target:
                    if not fut.done():
                        fut.set_result(None)
                else:
                    still.append((target, fut))
            self._waiters = still

    def mark(self) -> int:
        """How many items have been put so far: a barrier for flushed()."""
        return self._added

    async def flushed(self, mark: int | None = None) -> None:
        """Return once everything put so far (or before `mark()` returned `mark`) has been finished."""
        if mark is None:
            mark = self._added
        if self._finished >= mark:
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((mark, fut))
        await fut


def wake(fut: asyncio.Future[None] | None) -> None:
    """Wake the one reader waiting on `fut` (settle_within), if one is and it has not been woken yet."""
    if fut is not None and not fut.done():
        fut.set_result(None)


async def settle_within(fut: asyncio.Future[None], timeout: float | None) -> None:
    """Wait until `fut` is woken, or `timeout` seconds (None: no limit) have passed. A timer wakes it on time: no
    task is made per wait, as asyncio.wait_for would, which mattered where a hundred watchers wait per batch."""
    timer = asyncio.get_running_loop().call_later(timeout, wake, fut) if timeout is not None else None
    try:
        await fut
    finally:
        if timer is not None:
            timer.cancel()


class WorkQueue(Generic[K]):
    def __init__(self, backoff: RetryPolicy | None = None) -> None:
        self.backoff = backoff or RetryConfig().delivery
        self._queue: asyncio.Queue[K] = asyncio.Queue()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._failures: dict[K, int] = {}
        self._timers: dict[K, asyncio.TimerHandle] = {}

    def __len__(self) -> int:
        return len(self._dirty)

    def add(self, key: K) -> None:
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.put_nowait(key)

    def add_after(self, key: K, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        old = self._timers.pop(key, None)
        if old is not None:
            # Keep the earlier deadline.
            if old.when() <= asyncio.get_running_loop().time() + delay:
                self._timers[key] = old
                return
            old.cancel()
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(delay, self._fire, key)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def requeue_failed(self, key: K, retry_after: float | None = None) -> float:
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        delay = self.backoff.delay(n, retry_after)
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        return self._failures.get(key, 0)

    async def get(self) -> K:
        while True:
            key = await self._queue.get()
            if key in self._dirty and key not in self._processing:
                self._dirty.discard(key)
                self._processing.add(key)
                return key

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.put_nowait(key)

    def shutdown(self) -> None:
        for t in self._timers.values():
            t.cancel()
        self._timers.clear()


class ShardedQueue(Generic[K, V]):
    """N coalescing queues, a key always in the same one, so N writers can work in parallel while every key is
    still written by one writer, in order (a delete can never overtake the upsert it follows)."""

    def __init__(self, shards: int, maxsize: int) -> None:
        n = max(1, shards)
        self.shards: list[CoalescingQueue[K, V]] = [CoalescingQueue(max(1, maxsize // n)) for _ in range(n)]

    def _index(self, key: K) -> int:
        return hash(key) % len(self.shards)

    def _shard(self, key: K) -> CoalescingQueue[K, V]:
        return self.shards[self._index(key)]

    def __len__(self) -> int:
        return sum(len(s) for s in self.shards)

    async def put(self, key: K, value: V) -> None:
        await self._shard(key).put(key, value)

    async def put_many(self, items: list[tuple[K, V]]) -> None:
        if len(self.shards) == 1:
            await self.shards[0].put_many(items)
            return
        by_shard: dict[int, list[tuple[K, V]]] = {}
        for item in items:
            by_shard.setdefault(self._index(item[0]), []).append(item)
        for i, part in by_shard.items():
            await self.shards[i].put_many(part)

    def discard(self, predicate: Callable[[K], bool]) -> int:
        return sum(s.discard(predicate) for s in self.shards)

    def pending(self) -> list[K]:
        return [k for s in self.shards for k in s.pending()]

    async def flushed(self) -> None:
        """Return once everything put so far, in every shard, has been finished."""
        marks = [s.mark() for s in self.shards]  # all at once, before waiting on any
        for shard, mark in zip(self.shards, marks, strict=True):
            await shard.flushed(mark)
