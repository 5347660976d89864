"""Leader election and sharding across real daemon processes sharing one MariaDB: they split the informers, all
serve queries, exactly one leads; kill -9 the leader → another takes over; kill -9 a shard owner → its share is
picked up and the store keeps converging; SIGTERM during heavy sync exits 0 and loses nothing."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from multicluster.config import ClusterConfig
from multicluster.kube import ClusterClient
from multicluster.leader import LeaseLock, LeaseTiming, owner
from multicluster.testing.daemonproc import DaemonProc
from multicluster.testing.harness import Harness
from multicluster.testing.mariadb import MariaDB
from tests.sync.helpers import CM, api_index

pytestmark = [pytest.mark.integration, pytest.mark.mariadb]

LEASE = "mc-ha-test"


def wait(cond: Any, timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return time.monotonic() - t0
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def config(h: Harness, db: MariaDB, database: str) -> dict[str, Any]:
    return {
        "clusters": [
            {"metadata": {"clusterName": n, "configPath": str(s.kubeconfig), "isMaster": n == "cluster1"}}
            for n, s in h.servers.items()
        ],
        "resources": {"include": ["configmaps", "namespaces", "deployments"]},
        "store": {
            "type": "mysql",
            "host": "127.0.0.1",
            "port": db.port,
            "user": db.user,
            "password": db.password,
            "database": database,
        },
        "sync": {"rediscoverSeconds": 2},
    }


def store_index(db: MariaDB, database: str, cluster: str) -> dict[tuple[str, str], int]:
    out = db.sql(
        f"SELECT namespace, name, resource_version FROM `{database}`.resources WHERE cluster='{cluster}' "
        "AND api_group='' AND version='v1' AND resource='configmaps'"
    )
    idx = {}
    for line in out.splitlines():
        ns, name, rv = line.split("\t")
        idx[(ns, name)] = int(rv)
    return idx


def converged(h: Harness, db: MariaDB, database: str) -> bool:
    return all(api_index(h, c, CM) == store_index(db, database, c) for c in h.servers)


def test_rendezvous_moves_only_the_leavers_share() -> None:
    keys = [f"c{i}/g{j}" for i in range(5) for j in range(40)]
    three = {k: owner(k, ["a", "b", "c"]) for k in keys}
    two = {k: owner(k, ["a", "b"]) for k in keys}
    assert {three[k] for k in keys} == {"a", "b", "c"}
    assert all(two[k] == three[k] for k in keys if three[k] != "c")


async def test_lease_lock_semantics(harness: Harness, unique: str) -> None:
    c = ClusterClient(ClusterConfig("cluster1", harness.servers["cluster1"].kubeconfig))
    timing = LeaseTiming(duration=2, renew_deadline=1.5, retry_period=0.2)
    a = LeaseLock(c, "default", f"lock-{unique}", "a", timing)
    b = LeaseLock(c, "default", f"lock-{unique}", "b", timing)
    try:
        assert await a.try_acquire()
        assert not await b.try_acquire()
        assert await a.try_acquire()  # renew
        assert not await b.try_acquire()  # b sees the renewed record: its clock for expiry starts now
        await asyncio.sleep(2.3)  # a stops renewing: b's own observation of the record ages past the duration
        assert await b.try_acquire()
        assert not await a.try_acquire()
        await b.release()
        assert await a.try_acquire()
        lease = await c.get(f"/apis/coordination.k8s.io/v1/namespaces/default/leases/lock-{unique}")
        assert lease["spec"]["holderIdentity"] == "a" and lease["spec"]["leaseTransitions"] == 2
    finally:
        await c.close()


def test_three_replicas_split_serve_and_fail_over(
    harness: Harness, mariadb_server: MariaDB, tmp_path: Path, unique: str
) -> None:
    db = mariadb_server
    database = db.create_database(f"ha_{unique}")
    cfg = config(harness, db, database)
    args = ["--lease-mode", "--lease-name", f"{LEASE}-{unique}", "--lease-namespace", "default"]
    reps = [DaemonProc(tmp_path, cfg) for _ in range(3)]
    try:
        for i, r in enumerate(reps):
            r.start(args, env={"POD_NAME": f"replica-{i}"}, log_level="INFO")
        for r in reps:
            r.wait_ready(120)
        total = 3 * 3  # clusters x resource types

        def informers() -> list[float]:
            return [r.metric("multicluster_informers") for r in reps if r.alive()]

        wait(lambda: sum(informers()) == total, 30, f"{total} informers split across replicas: {informers()}")
        counts = informers()
        assert max(counts) < total, f"one replica runs everything: {counts}"
        leaders = [i for i, r in enumerate(reps) if r.metric("multicluster_leader") == 1]
        assert len(leaders) == 1, leaders
        # Every replica answers queries from the shared store (identical results).
        # (Ready means every owned list finished; rows may still be in flight to the store, so allow a moment.)
        wait(
            lambda: len({len(json.loads(r.get("/v1/list?gvr=v1/namespaces&limit=0")[1])) for r in reps}) == 1,
            30,
            "every replica to serve the same rows",
        )

        # kill -9 the leader: another replica takes the lease within about one lease duration (15 s).
        leader = reps[leaders[0]]
        leader.kill()
        took = wait(lambda: sum(r.metric("multicluster_leader") for r in reps if r.alive()) == 1, 40, "a new leader")
        assert took < 35

        # kill -9 a replica that owns informers; the survivors take over its share and keep converging.
        owner_rep = max((r for r in reps if r.alive()), key=lambda r: r.metric("multicluster_informers"))
        owner_rep.kill()
        survivor = next(r for r in reps if r.alive())
        wait(lambda: survivor.metric("multicluster_informers") == total, 40, "the survivor to run every informer")
        ns = f"ha-{unique}"
        for c in harness.servers:
            harness.request(c, "POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
            for i in range(20):
                harness.request(c, "POST", CM.path(ns), {"metadata": {"name": f"cm-{i}"}})
        wait(lambda: converged(harness, db, database), 60, "the store to converge through the survivor")
    finally:
        for r in reps:
            r.kill()


def test_sigterm_during_heavy_sync_loses_nothing(
    harness: Harness, mariadb_server: MariaDB, tmp_path: Path, unique: str
) -> None:
    db = mariadb_server
    database = db.create_database(f"term_{unique}")
    cfg = config(harness, db, database)
    ns = f"term-{unique}"
    harness.request("cluster2", "POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    d = DaemonProc(tmp_path, cfg)
    d.start(log_level="INFO")
    d.wait_ready(120)
    import threading

    def churn() -> None:
        for i in range(300):
            harness.request("cluster2", "POST", CM.path(ns), {"metadata": {"name": f"cm-{i}"}, "data": {"x": "y"}})

    t = threading.Thread(target=churn)
    t.start()
    time.sleep(1.0)
    code = d.stop(timeout=30)
    assert code == 0, f"exit code {code}; see {d.log_path}"
    assert "stopped" in d.log_path.read_text()
    t.join()
    d2 = DaemonProc(tmp_path, cfg)
    d2.start()
    try:
        d2.wait_ready(120)
        wait(lambda: converged(harness, db, database), 60, "convergence after restart")
    finally:
        d2.stop()
