"""Watches across replicas: two real daemon processes in lease mode on one real MariaDB split the informers, and
a Server-Sent Events watcher on either replica sees the changes of every cluster, including those the other
replica syncs (feed/tail.py), each change once, ending at each cluster's own state."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from multicluster.leader import owner
from multicluster.testing.daemonproc import DaemonProc
from multicluster.testing.harness import Harness
from multicluster.testing.mariadb import MariaDB
from tests.api.sse_client import collect, final
from tests.ha.test_replicas import LEASE, config, wait
from tests.sync.helpers import CM, api_index

pytestmark = [pytest.mark.integration, pytest.mark.mariadb]

IDENTITIES = ["watch-a", "watch-b"]


async def test_a_watcher_on_each_replica_sees_every_clusters_changes(
        harness: Harness, mariadb_server: MariaDB, tmp_path: Path, unique: str) -> None:
    db = mariadb_server
    database = db.create_database(f"hw_{unique}")
    cfg = config(harness, db, database)
    args = ["--lease-mode", "--lease-name", f"{LEASE}-w{unique}", "--lease-namespace", "default"]
    reps = [DaemonProc(tmp_path, cfg) for _ in IDENTITIES]
    # Who syncs which cluster's ConfigMaps once both replicas are members (rendezvous hashing is deterministic):
    # each replica syncs some, so each watcher depends on the other replica for some clusters.
    owners = {c: owner(f"{c}/{CM}", IDENTITIES) for c in harness.servers}
    assert set(owners.values()) == set(IDENTITIES), owners
    tasks: list[asyncio.Task[None]] = []
    try:
        for ident, r in zip(IDENTITIES, reps, strict=True):
            r.start(args, env={"POD_NAME": ident}, log_level="INFO")
        for r in reps:
            await asyncio.to_thread(r.wait_ready, 180)

        def informers() -> list[float]:
            return [r.metric("multicluster_informers") for r in reps]

        await asyncio.to_thread(wait, lambda: sum(informers()) == 9 and min(informers()) > 0, 60,
                                "the informers split between the replicas")
        ns = f"hw-{unique}"
        seen: list[list[tuple[str, str, str, Any]]] = [[], []]
        ids: list[list[str]] = [[], []]
        ready = [asyncio.Event(), asyncio.Event()]
        tasks = [asyncio.create_task(collect(r.url, ns, seen[i], ids[i], ready[i])) for i, r in enumerate(reps)]
        for e in ready:
            await asyncio.wait_for(e.wait(), 60)

        def churn() -> None:
            for c in harness.servers:
                harness.request(c, "POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
                for i in range(15):
                    harness.request(c, "POST", CM.path(ns), {"metadata": {"name": f"cm-{i}"}, "data": {"v": "0"}})
                for i in range(0, 15, 3):
                    harness.request(c, "PUT", CM.path(ns) + f"/cm-{i}",
                                    {"metadata": {"name": f"cm-{i}"}, "data": {"v": "1"}})
                for i in range(1, 15, 5):
                    harness.request(c, "DELETE", CM.path(ns) + f"/cm-{i}")

        await asyncio.to_thread(churn)
        truth = {(c, name): rv for c in harness.servers for (n, name), rv in api_index(harness, c, CM).items()
                 if n == ns}
        for i in range(2):
            await asyncio.to_thread(wait, lambda i=i: final(seen[i]) == truth, 60,  # type: ignore[misc]
                                    f"the watcher on {IDENTITIES[i]} to reach every cluster's state")
            assert len(set(ids[i])) == len(ids[i]), "an event was sent twice"
            clusters = {c for _, c, _, _ in seen[i]}
            assert clusters == set(harness.servers)
            # Clusters synced by the other replica reached this watcher too.
            assert {c for c, o in owners.items() if o != IDENTITIES[i]} <= clusters
    finally:
        for t in tasks:
            t.cancel()
        for r in reps:
            r.kill()
