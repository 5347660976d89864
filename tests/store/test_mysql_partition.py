"""A database node cut off by the network: a relay in front of the real MariaDB stops passing bytes both ways while
every connection stays open, which is what a partition looks like to the client (no reset, no answer). Without a
bound of its own the store waited on such a node forever, and the writer with it."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from multicluster.errors import StoreError
from multicluster.store import Query
from multicluster.store.mysql import PROBE_TIMEOUT, MySQLStore
from tests.partition import Partition

from .conftest import mysql_config
from .helpers import PODS, row

pytestmark = pytest.mark.mariadb

TIMEOUT = 1.5


async def test_a_partitioned_node_fails_writes_and_reads_within_the_timeout_and_the_store_recovers(
        request: pytest.FixtureRequest) -> None:
    cfg = mysql_config(request)
    relay = Partition(cfg.port)
    await relay.start()
    s = MySQLStore(replace(cfg, port=relay.port, transaction_timeout=TIMEOUT))
    await s.open()
    try:
        assert (await s.apply([row("before", 1)])).written == 1
        relay.freeze()
        t0 = time.monotonic()
        with pytest.raises(StoreError) as err:
            # The outer bound only keeps a regression from hanging the suite: the store's own must fire first.
            await asyncio.wait_for(s.apply([row("during", 1)]), 10 * TIMEOUT)
        took = time.monotonic() - t0
        assert err.value.transient and cfg.password not in str(err.value)
        assert f"no answer from the database within {TIMEOUT:g}s" in str(err.value)
        assert TIMEOUT * 0.9 <= took < TIMEOUT * 3, took
        # The node is suspect now: the next call probes it first, and that probe has its own bound.
        t0 = time.monotonic()
        with pytest.raises(StoreError) as err:
            await asyncio.wait_for(s.query(Query(gvr=PODS, limit=0)), 4 * PROBE_TIMEOUT)
        assert err.value.transient and "did not answer within" in str(err.value), err.value
        assert time.monotonic() - t0 < 2 * PROBE_TIMEOUT
        relay.thaw()
        # The connections that were waiting were dropped; the retry of the batch goes through new ones.
        assert (await s.apply([row("during", 1)])).written == 1
        assert [r.name for r in (await s.query(Query(gvr=PODS, limit=0))).items] == ["before", "during"]
    finally:
        await relay.stop()
        await s.close()
