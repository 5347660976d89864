"""The batch writer: drains the shared coalescing write queue into the store.

One writer drains one bounded queue for all clusters (one consumer per shard), so a batch mixes objects from every
informer and the store sees few, large transactions. When the store is down the writer retries the same batch with
backoff, the queue fills, and `put` blocks the informers: watches pause instead of memory growing or events being
dropped. A store with the PipelinedStore capability gets the next batch queued behind the one being written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from typing import NewType

from multicluster import metrics
from multicluster.config import RetryConfig
from multicluster.errors import StoreError
from multicluster.gvr import GVR
from multicluster.logsetup import cluster_logger
from multicluster.retry import RetryPolicy
from multicluster.store.base import ApplyResult, Mutation, PipelinedStore, Store
from multicluster.sync.health import Tracker
from multicluster.types import ClusterName
from multicluster.workqueue import CoalescingQueue, ShardedQueue

log = logging.getLogger(__name__)

RowKey = NewType("RowKey", tuple[ClusterName, GVR, str, str])
"""(cluster, resource type, namespace, name): one object's identity in the write queue and the store; the queue
keeps only the latest change of each key."""
WriteQueue = CoalescingQueue[RowKey, Mutation] | ShardedQueue[RowKey, Mutation]


class Writer:
    """Drains the write queue into the store in batches; never drops a mutation on a transient error."""

    def __init__(
        self,
        store: Store,
        queue: WriteQueue,
        tracker: Tracker,
        *,
        batch_size: int = 500,
        linger: float = 0.01,
        backoff: RetryPolicy | None = None,
    ) -> None:
        self.store = store
        self.queue = queue
        self.tracker = tracker
        self.batch_size = batch_size
        self.linger = linger
        self.backoff = backoff or RetryConfig().write
        self.written = 0
        self.deleted = 0
        self.skipped = 0
        self.last_error = ""  # the latest failed write, for the freshness report
        self._unhealthy_since = 0.0
        self._idle: list[asyncio.Event] = []
        self._locks: list[asyncio.Lock] = []

    @property
    def healthy(self) -> bool:
        return not self._unhealthy_since

    @healthy.setter
    def healthy(self, ok: bool) -> None:
        if ok:
            self._unhealthy_since = 0.0
        elif not self._unhealthy_since:
            self._unhealthy_since = time.monotonic()

    def stale_reason(self, after: float) -> str:
        """Why no cluster's data is current: writes have failed for more than `after` seconds ("" otherwise)."""
        if not self._unhealthy_since or time.monotonic() - self._unhealthy_since < after:
            return ""
        return (f"the store has not accepted writes for {time.monotonic() - self._unhealthy_since:.0f}s "
                f"({self.last_error})")

    async def run(self) -> None:
        shards = self.queue.shards if isinstance(self.queue, ShardedQueue) else [self.queue]
        self._idle = [asyncio.Event() for _ in shards]
        self._locks = [asyncio.Lock() for _ in shards]
        saver = asyncio.create_task(self._save_states(), name="writer/sync-state")
        try:
            async with asyncio.TaskGroup() as tg:
                for i, shard in enumerate(shards):
                    tg.create_task(self._consume(shard, self._idle[i], self._locks[i]), name=f"writer/{i}")
        finally:
            saver.cancel()

    async def _consume(self, shard: CoalescingQueue[RowKey, Mutation], idle: asyncio.Event,
                       lock: asyncio.Lock) -> None:
        while True:
            if not len(shard):
                idle.set()
            batch = _storable(shard, await shard.get_batch(self.batch_size, self.linger))
            idle.clear()
            async with lock:
                if isinstance(self.store, PipelinedStore):
                    await self._pipeline(self.store, shard, batch)
                else:
                    try:
                        await self._write(_mutations(batch))
                    finally:
                        _finished(shard, batch)

    async def _pipeline(self, store: PipelinedStore, shard: CoalescingQueue[RowKey, Mutation], batch: Batch) -> None:
        """Write `batch` while the next one, if it is ready, waits queued on the writer behind it.

        The writer then starts the next batch the moment it commits one, instead of idling until the event loop
        (busy parsing list pages) gets round to handing it over. The queued batch is chained to the one before:
        if that fails, the store skips it, and both are written again in order the ordinary way. Bounded, so a
        long initial sync still lets paused() in between runs.
        """
        unfinished = [batch]  # released on every way out, so flushed() can never wait for a lost batch
        try:
            current = _start(store, batch, None)
            for run in range(PIPELINE_RUN):
                if current is None:  # a transaction() holds the store: the ordinary way
                    await self._write(_mutations(batch))
                    return
                last = run == PIPELINE_RUN - 1
                following = None
                if len(shard) and not last:
                    following = _storable(shard, await shard.get_batch(self.batch_size, 0)) or None
                if following:
                    unfinished.append(following)
                queued = _start(store, following, current[0]) if following else None
                t0 = time.monotonic()
                try:
                    res = await current[1]
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # StoreError or anything else a row made the store raise: the queued batch is skipped (its
                    # predecessor failed), and both go the ordinary way, which retries or isolates the bad row.
                    if queued is not None:
                        with contextlib.suppress(Exception):
                            await queued[1]
                    for b in (batch, following):
                        if b:
                            await self._write(_mutations(b))
                            _finished(shard, unfinished.pop(0))
                    return
                self._succeeded(res, len(batch), t0)
                _finished(shard, unfinished.pop(0))
                if following is None:
                    return
                batch, current = following, queued
        finally:
            for b in unfinished:
                _finished(shard, b)

    @contextlib.asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        """Hold every writer between batches (a cluster purge waits for in-flight rows of that cluster)."""
        async with contextlib.AsyncExitStack() as stack:
            for lock in self._locks:
                await stack.enter_async_context(lock)
            yield

    async def drain(self, timeout: float) -> bool:
        """Wait until everything queued so far is written (graceful shutdown)."""
        deadline = time.monotonic() + timeout
        while len(self.queue) or not all(e.is_set() for e in self._idle):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def _write(self, mutations: list[Mutation]) -> None:
        if not mutations:
            return
        attempt = 0
        while True:
            t0 = time.monotonic()
            try:
                res = await self.store.apply(mutations)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # A StoreError says whether retrying can help; anything else (a driver's OverflowError, an
                # encoding error) comes from the data of some row and never heals by waiting.
                transient = isinstance(exc, StoreError) and exc.transient
                metrics.STORE_ERRORS.inc()
                self.healthy = False
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                if not transient and len(mutations) > 1:
                    # Isolate the bad mutation instead of failing the whole batch forever.
                    mid = len(mutations) // 2
                    await self._write(mutations[:mid])
                    await self._write(mutations[mid:])
                    return
                if not transient:
                    reason = "rejected" if isinstance(exc, StoreError) else "error"
                    metrics.ROWS_DROPPED.labels(reason).inc()
                    m = mutations[0]
                    cluster_logger(log, m.cluster, m.gvr).error(
                        "store rejected %s: %s: %s (dropped)", _describe(m), type(exc).__name__, exc)
                    self.healthy = True
                    return
                delay = self.backoff.delay(attempt)
                attempt += 1
                log.warning("store write of %d changes failed: %s; retrying in %.1fs", len(mutations), exc, delay)
                await asyncio.sleep(delay)
                continue
            self._succeeded(res, len(mutations), t0)
            return

    def _succeeded(self, res: ApplyResult, n: int, t0: float) -> None:
        self.healthy = True
        metrics.BATCH_SIZE.observe(n)
        metrics.BATCH_SECONDS.observe(time.monotonic() - t0)
        self.written += res.written
        self.deleted += res.deleted
        self.skipped += res.skipped
        metrics.ROWS.labels("written").inc(res.written)
        metrics.ROWS.labels("deleted").inc(res.deleted)
        metrics.ROWS.labels("skipped").inc(res.skipped)

    async def _save_states(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.flush_states()
            except StoreError as exc:
                log.debug("saving sync state failed: %s", exc)

    async def flush_states(self) -> None:
        dirty, self.tracker.dirty = self.tracker.dirty, set()
        try:
            for key in dirty:
                st = self.tracker.states.get(key)
                if st is not None:
                    await self.store.save_sync_state(st)
        except StoreError:
            self.tracker.dirty |= dirty
            raise


Batch = list[tuple[RowKey, Mutation, float]]
PIPELINE_RUN = 16  # batches written back to back before the writer lock is let go (see Writer._pipeline)


def _mutations(batch: Batch) -> list[Mutation]:
    return [m for _, m, _ in batch]


def _start(store: PipelinedStore, batch: Batch, after: int | None) -> tuple[int, Awaitable[ApplyResult]] | None:
    """store.start_apply for the batch's storable mutations; None (the caller writes it the ordinary way, which
    isolates bad rows) when the store is busy or encoding the batch failed."""
    try:
        return store.start_apply(_mutations(batch), after)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.debug("queueing a batch on the writer failed (%s); writing it the ordinary way", exc)
        return None


def _finished(shard: CoalescingQueue[RowKey, Mutation], batch: Batch) -> None:
    shard.finished(len(batch))
    now = time.monotonic()
    for _, _, t0 in batch:
        metrics.EVENT_LAG.observe(now - t0)


MAX_RESOURCE_VERSION = 2**63 - 1


def _storable(shard: CoalescingQueue[RowKey, Mutation], batch: Batch) -> Batch:
    """The batch without mutations no store can hold (a member sent a resourceVersion outside the stores' signed
    64-bit column): those are dropped here, counted, logged and marked finished, so they never reach a
    transaction with other clusters' rows."""
    if all(0 <= m.resource_version <= MAX_RESOURCE_VERSION for _, m, _ in batch):
        return batch
    kept: Batch = []
    dropped: Batch = []
    for item in batch:
        m = item[1]
        if 0 <= m.resource_version <= MAX_RESOURCE_VERSION:
            kept.append(item)
        else:
            dropped.append(item)
            metrics.ROWS_DROPPED.labels("resource-version-out-of-range").inc()
            cluster_logger(log, m.cluster, m.gvr).error(
                "%s has resourceVersion %d, outside 0..2^63-1 (dropped)", _describe(m), m.resource_version)
    _finished(shard, dropped)
    return kept


def _describe(m: Mutation) -> str:
    """The object a mutation is about; its cluster and type are the log record's fields."""
    return f"{m.namespace}/{m.name}" if m.namespace else m.name
