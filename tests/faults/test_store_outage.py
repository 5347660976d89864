"""A store outage long enough for the writer to retry a batch more than 1,024 times, then recovery.

`2.0 ** attempt` overflows a float at attempt 1024: a writer whose backoff evaluated it crashed after a few hours
of outage (the default backoff retries every 10 s, so ~3 h) and lost the batch it held. The attempt count is
driven here with a backoff of a millisecond, not the wall clock: MariaDB is stopped, the clusters keep
changing, the writer retries until well past attempt 1,024 on every shard, and after MariaDB comes back the
store must equal the API servers exactly (wait_converged: every key and resourceVersion, nothing extra)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from multicluster import metrics
from multicluster.daemon import Daemon
from multicluster.retry import RetryPolicy
from multicluster.testing.harness import Harness
from multicluster.testing.mariadb import MariaDB
from tests.faults.helpers import assert_daemon_healthy, bulk, mkns, rmns
from tests.sync.helpers import CM, daemon_config, mysql_store, wait_converged

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.mariadb]

OLD_OVERFLOW = 1024  # the attempt at which `factor ** attempt` overflowed


def store_errors() -> float:
    return metrics.REGISTRY.get_sample_value("multicluster_store_errors_total") or 0.0


def writer_crashes() -> float:
    return metrics.REGISTRY.get_sample_value("multicluster_task_crashes_total", {"task": "writer"}) or 0.0


@pytest.fixture
async def private_mariadb(tmp_path: Path) -> AsyncIterator[MariaDB]:
    """A MariaDB of this test's own: stopping it must not disturb the session's server."""
    db = MariaDB(tmp_path / "db")
    await asyncio.to_thread(db.start)
    yield db
    await asyncio.to_thread(db.stop)


async def test_an_outage_past_the_old_backoff_overflow_then_recovery(harness: Harness, private_mariadb: MariaDB,
                                                                     unique: str) -> None:
    db = private_mariadb
    cfg = daemon_config(harness, mysql_store(db, db.create_database("overflow")), ("configmaps",))
    d = Daemon(cfg)
    await d.start(api=False, controller=False)
    ns = f"overflow-{unique}"
    try:
        assert await d.wait_ready(60)
        await asyncio.to_thread(mkns, harness, ns)
        for c in harness.servers:
            await bulk(harness, c, [("POST", CM.path(ns), {"metadata": {"name": f"before-{i}"}, "data": {"v": "0"}})
                                    for i in range(20)])
        await wait_converged(d, harness, [CM])
        writer = d.writer
        assert writer is not None
        # Retries a millisecond apart: a thousand attempts take seconds instead of hours.
        writer.backoff = RetryPolicy(initial=0.001, factor=2.0, max=0.002)
        before, crashes = store_errors(), writer_crashes()
        await asyncio.to_thread(db.stop)

        # Changes the writer must hold on to through the whole outage: creates, updates and deletes.
        for c in harness.servers:
            await bulk(harness, c, [("POST", CM.path(ns), {"metadata": {"name": f"during-{i}"}, "data": {"v": "0"}})
                                    for i in range(30)])
            await bulk(harness, c, [("PATCH", CM.path(ns, f"before-{i}"), orjson.dumps({"data": {"v": "1"}}))
                                    for i in range(10)])
            await bulk(harness, c, [("DELETE", CM.path(ns, f"before-{i}"), None) for i in range(10, 15)])

        # Every shard that holds a batch retries it; once the failed attempts pass 1,100 per shard, each such
        # batch has been retried past the old overflow point.
        target = before + (OLD_OVERFLOW + 100) * cfg.store.writers
        deadline = time.monotonic() + 180
        while store_errors() < target:
            assert time.monotonic() < deadline, f"only {store_errors() - before:.0f} failed writes in 180 s"
            await asyncio.sleep(0.2)
        assert not writer.healthy
        assert "writer" in d.supervisor
        assert not getattr(d.supervisor, "failing", dict)(), "a task crashed during the outage"
        assert writer_crashes() == crashes, "the writer crashed during the outage"

        await asyncio.to_thread(db.start)
        await wait_converged(d, harness, [CM], timeout=90)
        await assert_daemon_healthy(d, harness)
    finally:
        await d.shutdown()
        await asyncio.to_thread(rmns, harness, ns)
