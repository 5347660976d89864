"""Faults under a Server-Sent Events watcher of a real daemon process: an API server restart after an etcd
compaction (so the daemon's informers get 410 Gone and relist) leaves the watcher's stream gapless and
duplicate-free: each event advances its cluster's position, and replaying the events gives every cluster's own
final state, deletions made while the informers were relisting included."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from multicluster.testing.daemonproc import DaemonProc
from multicluster.testing.harness import Harness
from multicluster.testing.mariadb import MariaDB
from tests.api.sse_client import Seen, collect, final
from tests.faults.helpers import bulk, mkns, mysql_doc, proc_config, rmns, sqlite_doc, wait_for
from tests.sync.helpers import CM, api_index

pytestmark = [pytest.mark.integration, pytest.mark.faults]



def truth(harness: Harness, ns: str) -> dict[tuple[str, str], int]:
    return {(c, name): rv for c in harness.servers for (n, name), rv in api_index(harness, c, CM).items() if n == ns}


async def churn(harness: Harness, ns: str, round_: int) -> None:
    for c in harness.servers:
        await bulk(harness, c, [("POST", CM.path(ns), {"metadata": {"name": f"r{round_}-{i}"}, "data": {"v": "0"}})
                                for i in range(20)])
        await bulk(harness, c, [("PATCH", CM.path(ns) + f"/r{round_}-{i}", b'{"data":{"v":"1"}}')
                                for i in range(0, 20, 2)])
        await bulk(harness, c, [("DELETE", CM.path(ns) + f"/r{round_}-{i}", None) for i in range(0, 20, 5)])


async def test_api_server_restart_and_relist_leave_the_watch_gapless(harness: Harness, tmp_path: Path,
                                                                     unique: str) -> None:
    ns = f"wf-{unique}"
    mkns(harness, ns)
    d = DaemonProc(tmp_path, proc_config(harness, sqlite_doc(tmp_path / "store.db"), ["configmaps", "namespaces"]))
    seen: Seen = []
    ids: list[str] = []
    ready = asyncio.Event()
    task: asyncio.Task[Any] | None = None
    try:
        d.start(env={"MULTICLUSTER_STATE_DIR": str(tmp_path / "state")}, log_level="INFO")
        await asyncio.to_thread(d.wait_ready, 180)
        task = asyncio.create_task(collect(d.url, ns, seen, ids, ready))
        await asyncio.wait_for(ready.wait(), 60)
        await churn(harness, ns, 1)
        # Every watch the daemon holds now starts from a compacted revision when it reconnects: cluster2's API
        # server restarts, its informers' watches fail with 410 Gone and they list again.
        await asyncio.to_thread(harness.compact)
        await asyncio.to_thread(harness.restart_server, "cluster2")
        await churn(harness, ns, 2)
        want = await asyncio.to_thread(truth, harness, ns)
        try:
            await asyncio.to_thread(wait_for, lambda: final(seen) == want or task.done(),  # type: ignore[union-attr]
                                    120, "the watcher to reach every cluster's state", 0.25)
        except AssertionError:
            got = final(seen)
            diff = {k: (got.get(k), want.get(k)) for k in set(got) | set(want) if got.get(k) != want.get(k)}
            raise AssertionError(f"watcher state differs from the clusters' at {len(diff)} objects: "
                                 f"{sorted(diff.items())[:10]}; {len(seen)} events") from None
        if task.done():
            task.result()  # the watcher's own check failed: say why
        assert len(set(ids)) == len(ids)
        assert {c for _, c, _, _ in seen} == set(harness.servers)
        assert "410" in d.log_path.read_text() or "relist" in d.log_path.read_text().lower()
    finally:
        if task is not None:
            task.cancel()
        d.kill()
        rmns(harness, ns)


@pytest.mark.mariadb
async def test_mariadb_restart_in_lease_mode_leaves_each_replicas_watch_gapless(harness: Harness, tmp_path: Path,
                                                                                 unique: str) -> None:
    """Two replicas in lease mode on a MariaDB that is killed (not shut down) during the writes and started
    again: a watcher on each replica ends at every cluster's state, each position once."""
    db = MariaDB(tmp_path / "db")
    db.start()
    ns = f"wdb-{unique}"
    mkns(harness, ns)
    cfg = proc_config(harness, mysql_doc(db, db.create_database("watchdb")), ["configmaps", "namespaces"])
    args = ["--lease-mode", "--lease-name", f"mc-wdb-{unique}", "--lease-namespace", "default"]
    reps = [DaemonProc(tmp_path, cfg) for _ in range(2)]
    seen: list[Seen] = [[], []]
    ids: list[list[str]] = [[], []]
    tasks: list[asyncio.Task[Any]] = []
    try:
        for i, r in enumerate(reps):
            r.start(args, env={"POD_NAME": f"wdb-{i}", "MULTICLUSTER_STATE_DIR": str(tmp_path / f"state{i}")},
                    log_level="INFO")
        for r in reps:
            await asyncio.to_thread(r.wait_ready, 180)
        ready = [asyncio.Event(), asyncio.Event()]
        tasks = [asyncio.create_task(collect(r.url, ns, seen[i], ids[i], ready[i])) for i, r in enumerate(reps)]
        for e in ready:
            await asyncio.wait_for(e.wait(), 60)
        load = asyncio.create_task(churn(harness, ns, 1))
        await asyncio.sleep(0.5)
        await asyncio.to_thread(db.kill)
        await asyncio.sleep(3)  # changes keep coming while the store is gone
        await asyncio.to_thread(db.start)
        await load
        await churn(harness, ns, 2)
        want = await asyncio.to_thread(truth, harness, ns)
        for i in range(2):
            try:
                await asyncio.to_thread(wait_for, lambda i=i: final(seen[i]) == want or tasks[i].done(),  # type: ignore[misc]
                                        180, f"the watcher on replica {i} to reach every cluster's state", 0.25)
            except AssertionError:
                got = final(seen[i])
                diff = {k: (got.get(k), want.get(k)) for k in set(got) | set(want) if got.get(k) != want.get(k)}
                raise AssertionError(f"replica {i}: watcher state differs at {len(diff)} objects: "
                                     f"{sorted(diff.items())[:10]}") from None
            if tasks[i].done():
                tasks[i].result()
            assert len(set(ids[i])) == len(ids[i])
    finally:
        for t in tasks:
            t.cancel()
        for r in reps:
            r.kill()
        db.stop()
        rmns(harness, ns)
