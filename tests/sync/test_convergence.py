"""The store converges to exactly what the API servers hold (same keys, same RVs), for both stores, through
concurrent changes, CRDs, restarts (without rewriting unchanged rows) and watch expiry (410 Gone)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from multicluster import metrics
from multicluster.config import StoreConfig
from multicluster.daemon import Daemon
from multicluster.gvr import GVR
from multicluster.testing import objects
from multicluster.testing.harness import Harness
from multicluster.testing.mariadb import MariaDB
from tests.sync.helpers import CM, DEPLOY, daemon_config, mysql_store, sqlite_store, wait_converged

pytestmark = pytest.mark.integration

WIDGETS_GROUP = "sync.multicluster.test"
WIDGETS = GVR(WIDGETS_GROUP, "v1", "widgets")
GVRS = [CM, DEPLOY, WIDGETS]
INCLUDE = ("configmaps", "deployments", WIDGETS_GROUP)


def ensure_crd(harness: Harness) -> None:
    crd = objects.crd(WIDGETS_GROUP, "widgets", "Widget")
    for name in harness.servers:
        try:
            harness.request(name, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        except Exception as exc:  # already exists from an earlier test
            if "409" not in str(exc):
                raise
    import time

    for name in harness.servers:
        for _ in range(100):
            try:
                harness.request(name, "GET", WIDGETS.path())
                break
            except Exception:
                time.sleep(0.1)


@pytest.fixture(params=["sqlite", "mariadb"])
def store_cfg(request: pytest.FixtureRequest, tmp_path: Path) -> StoreConfig:
    if request.param == "sqlite":
        return sqlite_store(tmp_path)
    m: MariaDB = request.getfixturevalue("mariadb_server")
    return mysql_store(m, request.getfixturevalue("mariadb_database"))


@pytest.fixture
async def daemon(harness: Harness, store_cfg: StoreConfig) -> AsyncIterator[Daemon]:
    ensure_crd(harness)
    d = Daemon(daemon_config(harness, store_cfg, INCLUDE))
    await d.start(api=False, controller=False)
    assert await d.wait_ready(60), "initial sync did not finish"
    yield d
    await d.shutdown()


def mkns(harness: Harness, ns: str) -> None:
    for c in harness.servers:
        harness.request(c, "POST", "/api/v1/namespaces", {"metadata": {"name": ns}})


def workload(harness: Harness, ns: str, n: int) -> None:
    """n configmaps + n/10 deployments + n/10 widgets per cluster, then updates and deletes of some."""
    for c in harness.servers:
        for i in range(n):
            harness.request(
                c, "POST", CM.path(ns), {"metadata": {"name": f"cm-{i}", "labels": {"i": str(i)}}, "data": {"v": "0"}}
            )
        for i in range(n // 10):
            harness.request(c, "POST", DEPLOY.path(ns), deployment(f"d-{i}"))
            harness.request(
                c,
                "POST",
                WIDGETS.path(ns),
                {
                    "apiVersion": f"{WIDGETS_GROUP}/v1",
                    "kind": "Widget",
                    "metadata": {"name": f"w-{i}"},
                    "spec": {"size": i},
                },
            )
        for i in range(0, n, 3):
            harness.request(
                c,
                "PATCH",
                CM.path(ns, f"cm-{i}"),
                json.dumps({"data": {"v": "1"}}).encode(),
                "application/merge-patch+json",
            )
        for i in range(0, n, 7):
            harness.request(c, "DELETE", CM.path(ns, f"cm-{i}"))
        harness.request(c, "DELETE", WIDGETS.path(ns, "w-0"))


def deployment(name: str) -> dict[str, object]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]},
            },
        },
    }


async def test_converges_under_concurrent_changes(daemon: Daemon, harness: Harness, unique: str) -> None:
    ns = f"conv-{unique}"
    await asyncio.to_thread(mkns, harness, ns)
    await asyncio.to_thread(workload, harness, ns, 120)
    await wait_converged(daemon, harness, GVRS)
    assert daemon.store is not None
    # The stored object is the full object (apiVersion/kind filled in, managedFields dropped).
    got = await daemon.store.get("cluster2", CM, ns, "cm-1")
    assert got is not None
    obj = json.loads(got.object)
    assert obj["kind"] == "ConfigMap" and obj["apiVersion"] == "v1"
    assert "managedFields" not in obj["metadata"]


async def test_restart_rewrites_nothing_unchanged(harness: Harness, store_cfg: StoreConfig, unique: str) -> None:
    ensure_crd(harness)
    ns = f"restart-{unique}"
    await asyncio.to_thread(mkns, harness, ns)
    await asyncio.to_thread(workload, harness, ns, 60)
    # Deployments are left out here: the controller-manager keeps updating their status (e.g. when an earlier
    # test's rollout passes its progress deadline), which would be real changes, not rewrites of unchanged rows.
    static = [CM, WIDGETS]
    cfg = daemon_config(harness, store_cfg, ("configmaps", WIDGETS_GROUP))
    first = Daemon(cfg)
    await first.start(api=False, controller=False)
    assert await first.wait_ready(60)
    await wait_converged(first, harness, static)
    await first.shutdown()

    # While the daemon is down: 5 updates, 4 deletes, 3 creates in cluster1.
    def offline_changes() -> None:
        for i in (1, 2, 4, 5, 8):
            harness.request(
                "cluster1",
                "PATCH",
                CM.path(ns, f"cm-{i}"),
                json.dumps({"data": {"v": "9"}}).encode(),
                "application/merge-patch+json",
            )
        for i in (10, 11, 13, 16):
            harness.request("cluster1", "DELETE", CM.path(ns, f"cm-{i}"))
        for i in range(3):
            harness.request("cluster1", "POST", CM.path(ns), {"metadata": {"name": f"new-{i}"}})

    await asyncio.to_thread(offline_changes)
    second = Daemon(cfg)
    await second.start(api=False, controller=False)
    try:
        assert await second.wait_ready(60)
        await wait_converged(second, harness, static)
        assert second.writer is not None
        await second.writer.drain(10)
        # Exactly what changed while the daemon was down is written: 5 updates + 3 creates.
        assert second.writer.written == 8, f"rows written on restart: {second.writer.written}"
        assert second.writer.deleted == 4
    finally:
        await second.shutdown()


async def test_watch_expiry_relists_and_converges(daemon: Daemon, harness: Harness, unique: str) -> None:
    ns = f"gone-{unique}"
    await asyncio.to_thread(mkns, harness, ns)
    await wait_converged(daemon, harness, GVRS)
    before = _gone_count("cluster2")
    # Compact etcd and restart cluster2's API server: its watch cache restarts at the current revision, and the
    # informers' reconnect from their older RVs is answered with 410 Gone.
    await asyncio.to_thread(harness.compact)
    await asyncio.to_thread(harness.restart_server, "cluster2")
    await asyncio.to_thread(workload, harness, ns, 30)
    await wait_converged(daemon, harness, GVRS, timeout=90)
    print("gone watches:", _gone_count("cluster2") - before, "gone relists:", _relists("cluster2"))
    assert _gone_count("cluster2") > before


def _gone_count(cluster: str) -> float:
    return _count(metrics.WATCH_RESTARTS, cluster)


def _relists(cluster: str) -> float:
    return _count(metrics.RELISTS, cluster)


def _count(counter: object, cluster: str) -> float:
    return sum(
        s.value
        for m in counter.collect()  # type: ignore[attr-defined]
        for s in m.samples
        if s.name.endswith("_total") and s.labels.get("cluster") == cluster and s.labels.get("reason") == "gone"
    )
