"""The store on a real multi-primary database: three MariaDB Galera nodes on loopback (multicluster.testing.galera).

Store level: a node that leaves the primary component answers 1047, which is transient and moves the store to a
synced node; a batch whose write set passes wsrep_max_ws_size lands in parts; a node SIGKILLed while a batch's
transaction is open makes the retry land on another node, once. Daemon level: two replicas in lease mode, each
writing through a different node, converge exactly to the clusters while a node is SIGKILLed under load and
brought back; the replicas move to live nodes and the rejoined node catches up.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiomysql
import pytest
import yaml

import multicluster.store
from multicluster.config import Overrides, StoreConfig, apply_overrides, load_config
from multicluster.errors import ConfigError, StoreError
from multicluster.gvr import GVR
from multicluster.store.base import ApplyResult, Mutation, Row
from multicluster.store.mysql import MySQLStore
from multicluster.testing.daemonproc import DaemonProc
from multicluster.testing.galera import GaleraCluster, Node
from multicluster.testing.harness import Harness, free_port
from tests.partition import Partition
from tests.sync.helpers import CM, api_index

pytestmark = [pytest.mark.integration, pytest.mark.mariadb]

GVR_CM = GVR("", "v1", "configmaps")


# ------------------------------------------------------------------------------------------------ configuration


def test_store_endpoints_and_db_endpoint_list(tmp_path: Path) -> None:
    kc = tmp_path / "kc"
    kc.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    head = f"clusters:\n- metadata: {{clusterName: c1, configPath: {kc}, isMaster: true}}\n"
    path = tmp_path / "c.yaml"
    path.write_text(head + "store: {type: mysql, endpoints: ['db-0:3306', 'db-1:3307', '[::1]:3308']}\n")
    cfg = load_config(path, check_files=False)
    assert cfg.store.endpoints == (("db-0", 3306), ("db-1", 3307), ("::1", 3308))
    assert (cfg.store.host, cfg.store.port) == ("db-0", 3306)

    over = apply_overrides(cfg, Overrides(db_endpoint="h1:1,h2:2,h3:3"))
    assert over.store.endpoints == (("h1", 1), ("h2", 2), ("h3", 3)) and over.store.type == "mysql"
    one = apply_overrides(cfg, Overrides(db_endpoint="h9:9"))
    assert (one.store.host, one.store.port, one.store.endpoints) == ("h9", 9, ())

    for bad, message in [
        ("endpoints: []", "store.endpoints: no endpoint given"),
        ("endpoints: ['db-0']", 'store.endpoints[0]: "db-0" is not HOST:PORT'),
        ("endpoints: ['a:1', 'a:1']", 'store.endpoints[1]: "a:1" is listed twice'),
        ("endpoints: ['a:70000']", "store.endpoints[0]: 70000 is not a port number"),
        ("endpoints: 'a:1'", "store.endpoints: expected a list"),
        ("host: x, endpoints: ['a:1']", "store: give either host/port or endpoints, not both"),
    ]:
        path.write_text(head + f"store: {{type: mysql, {bad}}}\n")
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            load_config(path, check_files=False)
    with pytest.raises(ConfigError, match=r'--db-endpoint\[1\]: "" is not HOST:PORT'):
        apply_overrides(cfg, Overrides(db_endpoint="h1:1,"))


# ------------------------------------------------------------------------------------------------ harness command


async def test_mariadb_cluster_command(tmp_path: Path) -> None:
    """`python -m multicluster.testing mariadb-cluster`: READY once every node is synced, the three files, and
    SIGTERM stops every mariadbd it started."""
    out = tmp_path / "gal"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "multicluster.testing", "mariadb-cluster", "--nodes", "2", "--dir", str(out),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    pids: list[int] = []
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 180)
        assert line == b"READY\n", line
        endpoints = (out / "endpoints").read_text().split()
        creds = yaml.safe_load((out / "credentials").read_text())
        pids = [int(p) for p in (out / "pids").read_text().split()]
        assert len(endpoints) == len(pids) == 2 and set(creds) == {"user", "password", "database"}
        sizes = []
        for ep in endpoints:
            host, port = ep.rsplit(":", 1)
            conn = await aiomysql.connect(host=host, port=int(port), user=creds["user"], password=creds["password"],
                                          db=creds["database"])
            async with conn.cursor() as cur:
                await cur.execute("SHOW STATUS LIKE 'wsrep_cluster_size'")
                sizes.append((await cur.fetchone())[1])
            conn.close()
        assert sizes == ["2", "2"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 90) == 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


# ------------------------------------------------------------------------------------------------ store level


def _row(name: str, rv: int, size: int = 100, labels: dict[str, str] | None = None, ns: str = "default") -> Row:
    body = json.dumps({"metadata": {"name": name, "namespace": ns, "resourceVersion": str(rv)},
                       "data": {"x": "y" * size}}).encode()
    return Row(cluster="c1", gvr=GVR_CM, namespace=ns, name=name, uid=f"uid-{name}", kind="ConfigMap",
               resource_version=rv, object=body, labels=labels or {"app": name}, new=True)


def _config(g: GaleraCluster, database: str, order: Sequence[int]) -> StoreConfig:
    nodes = [g.nodes[i] for i in order]
    return StoreConfig(type="mysql", host="127.0.0.1", port=nodes[0].port,
                       endpoints=tuple(("127.0.0.1", n.port) for n in nodes), user=g.user, password=g.password,
                       database=database)


async def _apply_retrying(store: MySQLStore, batch: list[Mutation], attempts: int = 40) -> tuple[ApplyResult, int]:
    """What the writer does: retry the same batch while the store says the error is transient."""
    failures = 0
    while True:
        try:
            return await store.apply(batch), failures
        except StoreError as exc:
            failures += 1
            assert exc.transient, f"a node failure must be transient, got: {exc}"
            assert failures < attempts, f"still failing after {attempts} attempts: {exc}"
            await asyncio.sleep(0.25)


def _read(node: Node, query: str) -> str:
    """A read that first waits for the node to apply every transaction the cluster committed before it (Galera
    applies other nodes' write sets asynchronously after certification)."""
    return node.sql("SET SESSION wsrep_sync_wait = 1; " + query)


def _rows(node: Node, database: str) -> list[tuple[str, str, int]]:
    out = _read(node, f"SELECT namespace, name, resource_version FROM `{database}`.resources "
                      "ORDER BY namespace, name")
    return [(ns, n, int(rv)) for ns, n, rv in (line.split("\t") for line in out.splitlines())]


def _orphan_index_rows(node: Node, database: str) -> int:
    """Label rows without their object, or objects whose label rows do not match their one `app` label."""
    out = _read(
        node,
        f"SELECT (SELECT COUNT(*) FROM `{database}`.resource_labels l LEFT JOIN `{database}`.resources r "
        f"ON r.id = l.id WHERE r.id IS NULL) + (SELECT COUNT(*) FROM `{database}`.resources r WHERE "
        f"(SELECT COUNT(*) FROM `{database}`.resource_labels l WHERE l.id = r.id AND l.`key` = 'app' "
        "AND l.`value` = r.name) <> 1)")
    return int(out.strip())


@pytest.fixture
async def galera_store(galera_cluster: GaleraCluster, unique: str) -> AsyncIterator[tuple[GaleraCluster, str]]:
    for node in galera_cluster.nodes:  # a previous test may have left one down
        galera_cluster.start_node(node)
    yield galera_cluster, galera_cluster.create_database(f"g_{unique}")


async def test_node_out_of_primary_component_is_transient_and_store_moves(
    galera_store: tuple[GaleraCluster, str]
) -> None:
    g, database = galera_store
    store = MySQLStore(_config(g, database, [0, 1, 2]))
    await store.open()
    try:
        assert store.endpoint == g.nodes[0].endpoint
        await store.apply([_row("a", 1)])
        # gmcast.isolate cuts node 0 off the group: it leaves the primary component and refuses statements with
        # 1047 "WSREP has not yet prepared node for application use" while its connections stay open.
        g.nodes[0].sql("SET GLOBAL wsrep_provider_options = 'gmcast.isolate=1'")
        deadline = time.monotonic() + 30
        while g.nodes[0].synced():
            assert time.monotonic() < deadline, "node 0 did not leave the primary component"
            await asyncio.sleep(0.2)
        result, failures = await _apply_retrying(store, [_row("b", 2), _row("c", 3)])
        assert result.written == 2 and failures >= 1
        assert store.endpoint != g.nodes[0].endpoint
        assert _rows(g.nodes[1], database) == [("default", "a", 1), ("default", "b", 2), ("default", "c", 3)]
    finally:
        g.nodes[0].sql("SET GLOBAL wsrep_provider_options = 'gmcast.isolate=0'")
        await store.close()
    g.wait_synced(g.nodes[0], 60)
    assert _rows(g.nodes[0], database) == _rows(g.nodes[2], database)


async def test_store_keeps_to_what_galera_replicates(galera_store: tuple[GaleraCluster, str]) -> None:
    """The nodes run with wsrep_mode REQUIRED_PRIMARY_KEY,STRICT_REPLICATION (a table without a primary key or of
    another engine is refused), so every test here that opens the store also checks its schema; the statements
    Galera does not replicate (LOCK TABLES, GET_LOCK, temporary tables) appear nowhere in the store's SQL."""
    g, database = galera_store
    with pytest.raises(RuntimeError, match="Galera replication not supported"):
        g.nodes[0].sql(f"CREATE TABLE `{database}`.no_key (a INT) ENGINE=InnoDB")
    store = MySQLStore(_config(g, database, [0, 1, 2]))
    try:
        await store.open()
    finally:
        await store.close()
    tables = _read(g.nodes[2], "SELECT t.TABLE_NAME, t.ENGINE, COUNT(c.CONSTRAINT_NAME) "
                               "FROM information_schema.TABLES t LEFT JOIN information_schema.TABLE_CONSTRAINTS c "
                               "ON c.TABLE_SCHEMA = t.TABLE_SCHEMA AND c.TABLE_NAME = t.TABLE_NAME "
                               f"AND c.CONSTRAINT_TYPE = 'PRIMARY KEY' WHERE t.TABLE_SCHEMA = '{database}' "
                               "GROUP BY t.TABLE_NAME, t.ENGINE")
    found = {name: (engine, int(pk)) for name, engine, pk in (line.split("\t") for line in tables.splitlines())}
    assert set(found) >= {"resources", "resource_labels", "resource_fields", "id_blocks", "sync_state",
                          "changes", "change_positions", "multicluster_schema"}
    assert all(v == ("InnoDB", 1) for v in found.values()), found
    store_dir = Path(multicluster.store.__file__).parent
    sources = [*store_dir.glob("*.py"), store_dir.parent / "schema.sql"]
    for path in sources:
        code = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith(("#", "--")))
        for bad in (r"LOCK\s+TABLES?\s+\w+\s+(READ|WRITE)", r"GET_LOCK\s*\(", r"CREATE\s+TEMPORARY"):
            assert not re.search(bad, code, re.IGNORECASE), f"{path.name} uses {bad}"


async def test_start_skips_a_node_that_does_not_answer(galera_store: tuple[GaleraCluster, str]) -> None:
    g, database = galera_store
    fresh = f"{database}_new"  # missing: the store creates it through the node it chose
    dead = ("127.0.0.1", free_port())
    cfg = _config(g, fresh, [1, 0])
    store = MySQLStore(replace(cfg, host=dead[0], port=dead[1], endpoints=(dead, *cfg.endpoints)))
    try:
        await store.open()
        assert store.endpoint == g.nodes[1].endpoint
        await store.apply([_row("x", 1)])
        assert _rows(g.nodes[2], fresh) == [("default", "x", 1)]
    finally:
        await store.close()
        g.sql(f"DROP DATABASE IF EXISTS `{fresh}`")


async def test_a_node_cut_off_by_the_network_is_left_for_the_next_one(galera_store: tuple[GaleraCluster, str]) -> None:
    """Node 0 stops answering without closing a connection (a partition: no reset, no error): the batch waiting on
    it fails as transient after store.transactionTimeoutSeconds, and its retry lands on node 1 once the probe of
    node 0 gives up. Before the bound the write waited on node 0 forever."""
    g, database = galera_store
    relay = Partition(g.nodes[0].port)
    await relay.start()
    cfg = _config(g, database, [0, 1, 2])
    store = MySQLStore(replace(cfg, port=relay.port, endpoints=(("127.0.0.1", relay.port), *cfg.endpoints[1:]),
                               transaction_timeout=2.0))
    await store.open()
    try:
        await store.apply([_row("a", 1)])
        relay.freeze()
        t0 = time.monotonic()
        result, failures = await asyncio.wait_for(_apply_retrying(store, [_row("b", 2)]), 60)
        assert result.written == 1 and failures >= 1
        assert store.endpoint == g.nodes[1].endpoint
        assert time.monotonic() - t0 < 30
        assert _rows(g.nodes[2], database) == [("default", "a", 1), ("default", "b", 2)]
    finally:
        await relay.stop()
        await store.close()


# The stores open concurrently in one process here, where warnings.catch_warnings (which _apply_schema uses to
# silence "already exists") is not per task; replicas are processes of their own.
@pytest.mark.filterwarnings("ignore::pymysql.err.Warning")
async def test_replicas_opening_one_new_database_through_two_nodes_both_start(
        galera_store: tuple[GaleraCluster, str]) -> None:
    """Two replicas starting at once through different nodes both write the schema's marks; Galera lets one commit
    and fails the other's at certification (1213). That one tries again instead of exiting (a CI run saw a replica
    exit with "Deadlock found when trying to get lock" at start)."""
    g, database = galera_store
    for round_ in range(6):
        fresh = f"{database}_{round_}"
        g.sql(f"CREATE DATABASE `{fresh}`")
        stores = [MySQLStore(_config(g, fresh, order)) for order in ([0, 1, 2], [1, 0, 2], [2, 1, 0])]
        try:
            await asyncio.gather(*(s.open() for s in stores))
        finally:
            for s in stores:
                await s.close()
            g.sql(f"DROP DATABASE IF EXISTS `{fresh}`")


async def test_batch_larger_than_wsrep_max_ws_size_lands_in_parts(galera_store: tuple[GaleraCluster, str]) -> None:
    g, database = galera_store
    for node in g.nodes:
        node.sql("SET GLOBAL wsrep_max_ws_size = 200000")
    store = MySQLStore(_config(g, database, [1, 2, 0]))
    try:
        await store.open()
        batch: list[Mutation] = [_row(f"big-{i:02d}", 10 + i, size=20_000) for i in range(30)]  # ~600 kB
        result = await store.apply(batch)
        assert result.written == 30
        assert [n for _, n, _ in _rows(g.nodes[0], database)] == [f"big-{i:02d}" for i in range(30)]
        assert _orphan_index_rows(g.nodes[2], database) == 0
    finally:
        for node in g.nodes:
            node.sql("SET GLOBAL wsrep_max_ws_size = 2147483647")
        await store.close()


async def test_node_killed_mid_batch_retries_on_another_node_once(galera_store: tuple[GaleraCluster, str]) -> None:
    g, database = galera_store
    victim = g.nodes[2]
    store = MySQLStore(_config(g, database, [2, 0, 1]))
    await store.open()
    blocker: aiomysql.Connection | None = None
    try:
        await store.apply([_row("zz-last", 5)])
        # Another session on the same node holds the row lock of the batch's last object: the batch's transaction
        # is open, its earlier rows are looked up and locked, and it waits there until the node dies.
        blocker = await aiomysql.connect(host="127.0.0.1", port=victim.port, user=g.user, password=g.password,
                                         db=database, autocommit=False)
        async with blocker.cursor() as cur:
            await cur.execute("SELECT id FROM resources WHERE name = 'zz-last' FOR UPDATE")
        existing = _row("zz-last", 6, labels={"app": "zz-last"})
        existing.new = False
        batch: list[Mutation] = [*(_row(f"m-{i:03d}", 100 + i) for i in range(200)), existing]
        task = asyncio.create_task(store.apply(batch))
        deadline = time.monotonic() + 20
        while "FOR UPDATE" not in victim.sql("SELECT GROUP_CONCAT(INFO) FROM information_schema.PROCESSLIST "
                                             "WHERE ID <> CONNECTION_ID() AND INFO LIKE '%FOR UPDATE%'"):
            assert not task.done(), f"the batch did not wait for the lock: {task.result()}"
            assert time.monotonic() < deadline, "the batch never reached the locked row"
            await asyncio.sleep(0.05)
        g.kill(victim)
        with pytest.raises(StoreError) as err:
            await task
        assert err.value.transient
        blocker.close()
        blocker = None
        result, _ = await _apply_retrying(store, batch)
        assert store.endpoint == g.nodes[0].endpoint
        assert result.written + result.skipped == 201
        rows = _rows(g.nodes[1], database)
        assert rows == sorted([("default", f"m-{i:03d}", 100 + i) for i in range(200)] + [("default", "zz-last", 6)])
        assert _orphan_index_rows(g.nodes[0], database) == 0
        count = _read(g.nodes[1], f"SELECT COUNT(*), COUNT(DISTINCT name) FROM `{database}`.resources").split()
        assert count == ["201", "201"]
    finally:
        if blocker is not None:
            blocker.close()
        await store.close()
    g.start_node(victim)
    assert _rows(victim, database) == _rows(g.nodes[0], database)


# ------------------------------------------------------------------------------------------------ daemon level


def _wait(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _daemon_config(h: Harness, g: GaleraCluster, database: str, order: Sequence[int]) -> dict[str, Any]:
    return {
        "clusters": [
            {"metadata": {"clusterName": n, "configPath": str(s.kubeconfig), "isMaster": n == "cluster1"}}
            for n, s in h.servers.items()
        ],
        "resources": {"include": ["configmaps", "namespaces"]},
        "store": {"type": "mysql", "endpoints": [g.nodes[i].endpoint for i in order], "user": g.user,
                  "password": g.password, "database": database, "flushInterval": 0.02},
        "sync": {"rediscoverSeconds": 2},
    }


def _store_index(node: Node, database: str, cluster: str) -> dict[tuple[str, str], int]:
    out = _read(node, f"SELECT namespace, name, resource_version FROM `{database}`.resources "
                      f"WHERE cluster='{cluster}' AND api_group='' AND version='v1' AND resource='configmaps'")
    return {(ns, n): int(rv) for ns, n, rv in (line.split("\t") for line in out.splitlines())}


def _converged(h: Harness, node: Node, database: str) -> bool:
    return all(api_index(h, c, CM) == _store_index(node, database, c) for c in h.servers)


def _node_in_use(d: DaemonProc) -> str:
    status, body = d.get("/v1/clusters")
    assert status == 200, body
    return str(json.loads(body)["store"]["endpoint"])


def test_replicas_on_galera_survive_a_killed_node(
    harness: Harness, galera_cluster: GaleraCluster, tmp_path: Path, unique: str
) -> None:
    g = galera_cluster
    for node in g.nodes:
        g.start_node(node)
    database = g.create_database(f"rep_{unique}")
    args = ["--lease-mode", "--lease-name", f"mc-galera-{unique}", "--lease-namespace", "default"]
    # Each replica prefers a different node: they write through node 0 and node 1 at the same time.
    reps = [DaemonProc(tmp_path, _daemon_config(harness, g, database, order)) for order in ([0, 1, 2], [1, 2, 0])]
    ns = f"gal-{unique}"
    stop = threading.Event()
    errors: list[BaseException] = []

    def churn() -> None:
        # Objects change at a steady rate in every cluster: creates, updates and deletes.
        i = 0
        try:
            while not stop.is_set():
                for c in harness.servers:
                    harness.request(c, "POST", CM.path(ns), {"metadata": {"name": f"cm-{i}"}, "data": {"v": "0"}})
                    if i >= 3:
                        harness.request(c, "PUT", CM.path(ns, f"cm-{i - 3}"),
                                        {"metadata": {"name": f"cm-{i - 3}"}, "data": {"v": "1"}})
                    if i >= 6 and i % 3 == 0:
                        harness.request(c, "DELETE", CM.path(ns, f"cm-{i - 6}"))
                i += 1
                time.sleep(0.05)
        except BaseException as exc:
            errors.append(exc)

    try:
        for i, r in enumerate(reps):
            r.start(args, env={"POD_NAME": f"galera-replica-{i}"}, log_level="INFO")
        for r in reps:
            r.wait_ready(120)
        assert [_node_in_use(r) for r in reps] == [g.nodes[0].endpoint, g.nodes[1].endpoint]
        for c in harness.servers:
            harness.request(c, "POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
        writer = threading.Thread(target=churn)
        writer.start()
        time.sleep(3)
        g.kill(g.nodes[0])  # under load: replica 0's node vanishes
        _wait(lambda: _node_in_use(reps[0]) != g.nodes[0].endpoint, 30, "replica 0 to move to a live node")
        assert reps[0].metric("multicluster_store_failovers_total") >= 1
        assert reps[0].metric("multicluster_store_endpoint", f'endpoint="{g.nodes[0].endpoint}"') == 0
        time.sleep(3)
        g.start_node(g.nodes[0])  # it rejoins and receives what it missed
        time.sleep(2)
        stop.set()
        writer.join(30)
        assert not errors, errors
        _wait(lambda: _converged(harness, g.nodes[1], database), 60, "the store to converge to the clusters")
        g.wait_synced(g.nodes[0], 60)
        _wait(lambda: _converged(harness, g.nodes[0], database), 20, "the rejoined node to catch up")
        for node in g.nodes:
            counted = _read(node, "SELECT COUNT(*), COUNT(DISTINCT cluster, api_group, version, resource, namespace, "
                                  f"name), COUNT(DISTINCT id) FROM `{database}`.resources").split()
            assert len(set(counted)) == 1, f"duplicate rows on {node.endpoint}: {counted}"
        assert all(r.alive() for r in reps), "a replica exited"
    finally:
        stop.set()
        for r in reps:
            r.kill()
