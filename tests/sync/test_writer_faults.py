"""The writer cannot stop: whatever one row makes the store raise, the rest of its batch is stored, the queue's
bookkeeping is released, and later writes go through. Runs against real SQLite (both writer transports) and a real
MariaDB."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any

import pytest

from multicluster import metrics
from multicluster.config import StoreConfig
from multicluster.retry import RetryPolicy
from multicluster.store import Query, Store, open_store
from multicluster.store.base import ApplyResult, Mutation
from multicluster.store.mysql import MySQLStore
from multicluster.store.sqlite import SQLiteStore
from multicluster.sync import Tracker, Writer
from multicluster.workqueue import CoalescingQueue
from tests.store.conftest import mysql_config
from tests.store.helpers import PODS, row


@pytest.fixture(params=["sqlite-process", "sqlite-thread", pytest.param("mysql", marks=pytest.mark.mariadb)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> StoreConfig:
    if request.param == "mysql":
        return mysql_config(request)
    return StoreConfig(type="sqlite", path=tmp_path / "store.db", sqlite_writer=request.param.removeprefix("sqlite-"))


def _dropped() -> float:
    return sum(s.value for m in metrics.ROWS_DROPPED.collect() for s in m.samples if s.name.endswith("_total"))


@pytest.mark.parametrize("bad_rv", [2**63, 2**64, -1])
async def test_a_row_the_store_cannot_take_does_not_stop_the_writer(engine: StoreConfig, bad_rv: int) -> None:
    """A resourceVersion outside what the store's BIGINT holds (a hostile or broken member) used to kill the
    writer mid-batch with OverflowError: the batch was lost, flushed() never returned, nothing was written again."""
    store = open_store(engine)
    await store.open()
    queue: CoalescingQueue[Any, Any] = CoalescingQueue(maxsize=10_000)
    writer = Writer(store, queue, Tracker(), batch_size=100, linger=0, backoff=RetryPolicy(initial=0.01, max=0.05))
    task = asyncio.create_task(writer.run())
    before = _dropped()
    try:
        for i in range(40):
            await queue.put(("c1", PODS, "default", f"ok{i}"), row(f"ok{i}", rv=5))
        await queue.put(("c1", PODS, "default", "bad"), row("bad", rv=bad_rv))
        for i in range(40, 80):
            await queue.put(("c1", PODS, "default", f"ok{i}"), row(f"ok{i}", rv=5))
        await asyncio.wait_for(queue.flushed(), 30)
        names = {o.name for o in (await store.query(Query(gvr=PODS, limit=1000))).items}
        assert names == {f"ok{i}" for i in range(80)}
        assert _dropped() == before + 1
        assert not task.done()
        # The writer keeps working after the bad row.
        await queue.put(("c1", PODS, "default", "later"), row("later", rv=7))
        await asyncio.wait_for(queue.flushed(), 30)
        assert "later" in {o.name for o in (await store.query(Query(gvr=PODS, limit=1000))).items}
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await store.close()


class _PoisonedSQLite(SQLiteStore):
    """The real SQLite store, except that a batch holding the object named "poison" fails with an error that is
    not a StoreError (what a driver raises for data it cannot bind): a failure no real row produces on demand."""

    def start_apply(
        self, mutations: Sequence[Mutation], after: int | None
    ) -> tuple[int, Awaitable[ApplyResult]] | None:
        if any(m.name == "poison" for m in mutations):
            async def fail() -> ApplyResult:
                raise ValueError("cannot bind parameter 7")
            return -1, fail()
        return super().start_apply(mutations, after)

    async def apply(self, mutations: Sequence[Mutation]) -> ApplyResult:
        if any(m.name == "poison" for m in mutations):
            raise ValueError("cannot bind parameter 7")
        return await super().apply(mutations)


class _PoisonedMySQL(MySQLStore):
    async def apply(self, mutations: Sequence[Mutation]) -> ApplyResult:
        if any(m.name == "poison" for m in mutations):
            raise ValueError("cannot bind parameter 7")
        return await super().apply(mutations)


async def test_any_error_of_one_row_is_isolated_to_that_row(engine: StoreConfig) -> None:
    """Only StoreError was handled: any other exception out of a batch killed the writer with the batch."""
    store: Store = (_PoisonedSQLite(engine.path, writer=engine.sqlite_writer) if engine.type == "sqlite"
                    else _PoisonedMySQL(engine))
    await store.open()
    queue: CoalescingQueue[Any, Any] = CoalescingQueue(maxsize=10_000)
    writer = Writer(store, queue, Tracker(), batch_size=64, linger=0.05, backoff=RetryPolicy(initial=0.01, max=0.05))
    task = asyncio.create_task(writer.run())
    before = _dropped()
    try:
        items = [(("c1", PODS, "default", f"ok{i}"), row(f"ok{i}", rv=5)) for i in range(300)]
        items.insert(150, (("c1", PODS, "default", "poison"), row("poison", rv=5)))
        await queue.put_many(items)
        await asyncio.wait_for(queue.flushed(), 30)
        names = {o.name for o in (await store.query(Query(gvr=PODS, limit=1000))).items}
        assert names == {f"ok{i}" for i in range(300)}
        assert _dropped() == before + 1 and not task.done()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await store.close()
