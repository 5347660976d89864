"""Faults during sync: a dead cluster, a frozen API server, a restarted MariaDB. Each scenario ends with the store
equal to the API servers' state (0 missing, 0 stale, 0 orphan rows)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from multicluster.daemon import Daemon
from multicluster.testing.harness import Harness
from multicluster.testing.mariadb import MariaDB
from tests.sync.helpers import CM, daemon_config, mysql_store, sqlite_store, wait_converged

pytestmark = [pytest.mark.integration, pytest.mark.faults]


def mkns(harness: Harness, ns: str, clusters: list[str] | None = None) -> None:
    for c in clusters or list(harness.servers):
        harness.request(c, "POST", "/api/v1/namespaces", {"metadata": {"name": ns}})


def churn(harness: Harness, cluster: str, ns: str, n: int, prefix: str = "cm") -> None:
    for i in range(n):
        harness.request(cluster, "POST", CM.path(ns), {"metadata": {"name": f"{prefix}-{i}"}, "data": {"v": "0"}})
    for i in range(0, n, 2):
        harness.request(
            cluster,
            "PATCH",
            CM.path(ns, f"{prefix}-{i}"),
            json.dumps({"data": {"v": "1"}}).encode(),
            "application/merge-patch+json",
        )
    for i in range(0, n, 5):
        harness.request(cluster, "DELETE", CM.path(ns, f"{prefix}-{i}"))


@pytest.fixture
async def daemon(harness: Harness, tmp_path: Path) -> AsyncIterator[Daemon]:
    d = Daemon(daemon_config(harness, sqlite_store(tmp_path), ("configmaps",), watch_timeout_seconds=4))
    await d.start(api=False, controller=False)
    assert await d.wait_ready(60)
    yield d
    await d.shutdown()


async def test_dead_cluster_does_not_stall_the_others(daemon: Daemon, harness: Harness, unique: str) -> None:
    ns = f"dead-{unique}"
    await asyncio.to_thread(mkns, harness, ns)
    await asyncio.to_thread(harness.kill_server, "cluster3")
    try:
        t0 = time.monotonic()
        await asyncio.to_thread(churn, harness, "cluster1", ns, 40)
        # Converges for the live clusters quickly while cluster3 is down.
        live = {k: v for k, v in harness.servers.items() if k != "cluster3"}
        sub = Harness(harness.workdir, clusters=0)
        sub.servers = live
        await wait_converged(daemon, sub, [CM], timeout=30)
        assert time.monotonic() - t0 < 40
        for _ in range(100):
            if not daemon.tracker.cluster("cluster3").reachable:
                break
            await asyncio.sleep(0.1)
        health = daemon.tracker.cluster("cluster3")
        assert not health.reachable and "cluster3" in health.error
        assert daemon.tracker.cluster("cluster1").reachable
    finally:
        await asyncio.to_thread(harness.start_server, "cluster3")
        await asyncio.to_thread(harness.wait_ready, "cluster3")
    await asyncio.to_thread(churn, harness, "cluster3", ns, 20, "back")
    await wait_converged(daemon, harness, [CM], timeout=60)
    assert daemon.tracker.cluster("cluster3").reachable


async def test_frozen_api_server_longer_than_watch_timeout(daemon: Daemon, harness: Harness, unique: str) -> None:
    ns = f"frozen-{unique}"
    await asyncio.to_thread(mkns, harness, ns)
    await wait_converged(daemon, harness, [CM])
    harness.freeze_server("cluster2")
    try:
        await asyncio.sleep(16)  # > watch timeout (4s) + read slack (10s): the silent stream must be noticed
    finally:
        harness.thaw_server("cluster2")
    await asyncio.to_thread(churn, harness, "cluster2", ns, 30)
    await wait_converged(daemon, harness, [CM], timeout=60)
    stuck = [t for t in asyncio.all_tasks() if t.get_name().startswith("informer/cluster2") and t.done()]
    assert not stuck


@pytest.mark.mariadb
async def test_mariadb_restart_during_heavy_writes(harness: Harness, tmp_path: Path, unique: str) -> None:
    db = MariaDB(tmp_path / "db")
    db.start()
    try:
        database = db.create_database("faults")
        d = Daemon(daemon_config(harness, mysql_store(db, database), ("configmaps",)))
        await d.start(api=False, controller=False)
        try:
            assert await d.wait_ready(60)
            ns = f"dbdown-{unique}"
            await asyncio.to_thread(mkns, harness, ns)
            writer = asyncio.create_task(asyncio.to_thread(churn, harness, "cluster1", ns, 150))
            await asyncio.sleep(1.0)
            await asyncio.to_thread(db.kill)  # crash, not a clean shutdown
            await asyncio.sleep(3)  # writes keep arriving while the DB is gone
            await asyncio.to_thread(db.start)
            await writer
            await wait_converged(d, harness, [CM], timeout=90)
            assert d.writer is not None and d.writer.healthy
        finally:
            await d.shutdown()
    finally:
        db.stop()


async def test_cluster_dead_at_start_stops_blocking_readiness(harness: Harness, tmp_path: Path) -> None:
    from dataclasses import replace

    from multicluster.config import ClusterConfig

    dead_kc = tmp_path / "dead.kubeconfig"
    dead_kc.write_text(
        harness.servers["cluster1"].kubeconfig.read_text().replace(f":{harness.servers['cluster1'].port}", ":1")
    )
    cfg = daemon_config(harness, sqlite_store(tmp_path), ("configmaps",))
    cfg = replace(cfg, clusters=(*cfg.clusters, ClusterConfig("deadatstart", dead_kc)))
    d = Daemon(cfg)
    d.startup_grace = 2.0
    await d.start(api=False, controller=False)
    try:
        assert await d.wait_ready(30), "a dead cluster kept the daemon unready past the grace period"
        view = {v.name: v for v in d.clusters()}["deadatstart"]
        assert not view.reachable and not view.ready and "cannot connect" in view.error
        assert all(v.ready for v in d.clusters() if v.name != "deadatstart")
    finally:
        await d.shutdown()
