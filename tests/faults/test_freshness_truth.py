"""Freshness tells the truth: a cluster whose data cannot be current (its tasks keep crashing, or the store has
refused writes for a while) is reported stale with the reason, in query answers and in /v1/clusters, although
its last list succeeded."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from multicluster.config import ServerConfig, StoreConfig
from multicluster.daemon import Daemon
from multicluster.testing.harness import Harness, free_port
from multicluster.testing.mariadb import MariaDB
from tests.faults.helpers import bulk, get_json, mkns, opened, rmns, until
from tests.sync.helpers import CM, daemon_config, mysql_store, sqlite_store

pytestmark = [pytest.mark.integration, pytest.mark.faults]


async def _freshness(url: str) -> dict[str, Any]:
    return dict((await get_json(f"{url}/v1/resources?gvr=configmaps&limit=1"))["clusters"])


async def _crashing() -> None:
    raise RuntimeError("a bug the informer does not survive")


async def test_a_cluster_whose_tasks_keep_crashing_is_stale_with_the_reason(harness: Harness,
                                                                             tmp_path: Path) -> None:
    """A crash-looping informer (or discovery task) left the last list's state "synced": queries called the
    cluster fresh while nothing kept its data current."""
    port = free_port()
    cfg = daemon_config(harness, sqlite_store(tmp_path), ("configmaps",))
    d = Daemon(replace(cfg, server=ServerConfig(port=port)))
    await d.start(controller=False)
    url = f"http://127.0.0.1:{port}"
    try:
        assert await d.wait_ready(60)
        assert set((await _freshness(url))["fresh"]) == set(harness.servers)
        # Fault injection: the tasks of cluster2's ConfigMap informer and of cluster3's discovery crash at once.
        informer = "informer/cluster2/v1/configmaps"
        await d.supervisor.stop(informer)
        d.supervisor.spawn(informer, _crashing)
        await d.supervisor.stop("cluster/cluster3")
        d.supervisor.spawn("cluster/cluster3", _crashing)

        async def stale() -> dict[str, str]:
            block = await _freshness(url)
            return {s["name"]: s["error"] for s in block["stale"]} if len(block["stale"]) == 2 else {}
        reasons = await until(stale)
        assert "informer keeps crashing" in reasons["cluster2"], reasons
        assert "a bug the informer does not survive" in reasons["cluster2"], reasons
        assert "discovery task keeps crashing" in reasons["cluster3"], reasons
        assert (await _freshness(url))["fresh"] == ["cluster1"]
        clusters = {c["name"]: c for c in (await get_json(f"{url}/v1/clusters"))["clusters"]}
        assert "keeps crashing" in clusters["cluster3"]["staleReason"], clusters["cluster3"]
        cm2 = {r["gvr"]: r for r in clusters["cluster2"]["resources"]}["v1/configmaps"]
        assert cm2["status"] == "error" and "keeps crashing" in cm2["error"], cm2
        assert clusters["cluster1"]["staleReason"] == "", clusters["cluster1"]
    finally:
        await d.shutdown()


@pytest.mark.mariadb
async def test_every_cluster_is_stale_while_the_store_refuses_writes(
    harness: Harness, mariadb_server: MariaDB, mariadb_database: str, unique: str
) -> None:
    """Writer.healthy was False for as long as the database refused writes, and every query still called every
    cluster fresh. Now past `writer_stale_after` they are stale with the store's error, and fresh again once the
    writes go through."""
    db, database = mariadb_server, mariadb_database
    async with opened(mysql_store(db, database)):
        pass  # the schema exists, so a table-level grant can name the table
    user, password = f"mcf_{unique}", f"pw-{unique}"
    tables = ["resources", "resource_labels", "resource_fields", "id_blocks", "sync_state", "changes",
              "change_positions"]
    # INSERT per table: table privileges apply to open connections at their next statement (database ones only
    # at the next USE), so revoking it takes effect at once.
    db.sql(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{password}';"
           f"GRANT SELECT, UPDATE, DELETE, CREATE, INDEX, ALTER ON `{database}`.* TO '{user}'@'127.0.0.1';"
           + "".join(f"GRANT INSERT ON `{database}`.`{t}` TO '{user}'@'127.0.0.1';" for t in tables))
    store = StoreConfig(type="mysql", host="127.0.0.1", port=db.port, user=user, password=password,
                        database=database, batch_size=500, flush_interval=0.02)
    port = free_port()
    d = Daemon(replace(daemon_config(harness, store, ("configmaps",)), server=ServerConfig(port=port)))
    d.writer_stale_after = 1.0
    await d.start(controller=False)
    url = f"http://127.0.0.1:{port}"
    ns = f"fresh-{unique}"
    try:
        assert await d.wait_ready(60)
        assert set((await _freshness(url))["fresh"]) == set(harness.servers)
        db.sql(f"REVOKE INSERT ON `{database}`.`resources` FROM '{user}'@'127.0.0.1'")
        await asyncio.to_thread(mkns, harness, ns, ["cluster1"])
        await bulk(harness, "cluster1", [("POST", CM.path(ns), {"metadata": {"name": "during"}})])

        async def all_stale() -> dict[str, str]:
            block = await _freshness(url)
            return {s["name"]: s["error"] for s in block["stale"]} if not block["fresh"] else {}
        reasons = await until(all_stale)
        assert set(reasons) == set(harness.servers), reasons
        assert all("the store has not accepted writes" in r for r in reasons.values()), reasons
        clusters = (await get_json(f"{url}/v1/clusters"))["clusters"]
        assert all("the store has not accepted writes" in c["staleReason"] for c in clusters), clusters

        db.sql(f"GRANT INSERT ON `{database}`.`resources` TO '{user}'@'127.0.0.1'")

        async def fresh_again() -> bool:
            return set((await _freshness(url))["fresh"]) == set(harness.servers)
        await until(fresh_again, timeout=60)
    finally:
        await d.shutdown()
        db.sql(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")
        await asyncio.to_thread(rmns, harness, ns, ["cluster1"])
