"""Crashes and database trouble: the daemon SIGKILLed in the middle of a large batch (SQLite and MariaDB), a burst
of 3,000 changes while it is down, MariaDB refusing connections for 20 s, and stores that reject writes (SQLite
out of pages = disk full; a MariaDB user whose INSERT privilege is revoked). Every scenario ends with the store
equal to the API servers (0 missing, 0 stale, 0 orphan rows) and a healthy daemon."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import orjson
import pytest

from multicluster import metrics
from multicluster.config import ServerConfig, StoreConfig
from multicluster.daemon import Daemon
from multicluster.store import Query
from multicluster.testing.daemonproc import DaemonProc
from multicluster.testing.harness import Harness, free_port
from multicluster.testing.mariadb import MariaDB
from tests.faults.helpers import (
    assert_daemon_healthy,
    assert_proc_healthy,
    bulk,
    converged,
    mkns,
    mysql_doc,
    opened,
    proc_config,
    rmns,
    sqlite_doc,
    store_config,
)
from tests.sync.helpers import CM, api_index, daemon_config, mysql_store, sqlite_store, wait_converged

pytestmark = [pytest.mark.integration, pytest.mark.faults]

BATCH = 3000
PAYLOAD = "x" * 2000  # ~2 KB per object: 3,000 of them make a 6 MB initial list, written in 500-row batches


@pytest.fixture(scope="module")
async def crash_ns(harness: Harness) -> AsyncIterator[str]:
    """A namespace in cluster2 holding 3,000 ConfigMaps (created once for the module: ~5-10 s)."""
    ns = f"crash-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(mkns, harness, ns, ["cluster2"])
    await bulk(harness, "cluster2",
               [("POST", CM.path(ns), {"metadata": {"name": f"cm-{i}"}, "data": {"v": PAYLOAD}}) for i in range(BATCH)])
    yield ns
    await asyncio.to_thread(rmns, harness, ns, ["cluster2"])


def _state(pid: int) -> str:
    """A process's state from /proc ("" once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return {"Z": "zombie"}.get(stat.rsplit(")", 1)[1].split()[0], "running")


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return out


def _kill_after_first_commit(p: DaemonProc, children: list[int] | None = None, timeout: float = 120) -> float:
    """SIGKILL the daemon as soon as its writer has committed some rows; returns the rows written by then.
    `children` receives the daemon's child processes as they were just before."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not p.alive():
            raise AssertionError(f"daemon exited by itself; see {p.log_path}")
        try:
            written = p.metric("multicluster_store_rows_total", 'op="written"')
        except OSError:  # API not listening yet
            written = 0.0
        if written > 0:
            if children is not None and p.proc is not None:
                children.extend(_children(p.proc.pid))
            p.kill()
            return written
        time.sleep(0.005)
    raise AssertionError("the daemon wrote nothing")


def _total_configmaps(harness: Harness) -> int:
    return sum(len(api_index(harness, c, CM)) for c in harness.servers)


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
async def test_sigkill_during_large_batch_then_restart_converges(
    engine: str, harness: Harness, crash_ns: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if engine == "sqlite":
        doc = sqlite_doc(tmp_path / "store.db")
    else:
        db: MariaDB = request.getfixturevalue("mariadb_server")
        doc = mysql_doc(db, request.getfixturevalue("mariadb_database"))
    cfg = proc_config(harness, doc, ["configmaps"])
    total = await asyncio.to_thread(_total_configmaps, harness)
    assert total >= BATCH
    p = DaemonProc(tmp_path, cfg)
    p.start(log_level="INFO")
    children: list[int] = []
    try:
        assert p.proc is not None
        written = await asyncio.to_thread(_kill_after_first_commit, p, children)
    finally:
        p.kill()
    # The SQLite writer process does not outlive a SIGKILLed daemon (it would keep the database open forever).
    assert (engine == "sqlite") == bool(children), children
    for _ in range(100):
        if not any(Path(f"/proc/{c}").exists() and "zombie" not in _state(c) for c in children):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"writer process(es) {children} still running 10 s after the daemon was killed")
    async with opened(store_config(doc)) as store:
        rows = sum(n for (_, gvr), n in (await store.counts()).items() if gvr == CM)
    # Killed mid-sync: some batches committed, not all (so a batch was in flight or queued).
    assert 0 < written <= rows < total, (written, rows, total)

    if engine == "sqlite":
        con = sqlite3.connect(doc["path"])
        try:
            assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        finally:
            con.close()
    else:
        out = db.sql(f"CHECK TABLE `{doc['database']}`.resources, `{doc['database']}`.resource_labels")
        assert all(line.endswith("\tOK") for line in out.splitlines() if "\tstatus\t" in line), out

    p2 = DaemonProc(tmp_path, cfg)
    p2.start(log_level="INFO")
    try:
        await asyncio.to_thread(p2.wait_ready, 120)
        async with opened(store_config(doc)) as store:
            await converged(store, harness, [CM])
        await asyncio.to_thread(assert_proc_healthy, p2, harness)
    finally:
        code = p2.stop()
    assert code == 0, f"exit code {code}; see {p2.log_path}"


def _sqlite_index(path: Path) -> dict[tuple[str, str, str], int]:
    con = sqlite3.connect(path)
    try:
        rows = con.execute("SELECT cluster, namespace, name, resource_version FROM resources "
                           "WHERE api_group = '' AND version = 'v1' AND resource = 'configmaps'").fetchall()
    finally:
        con.close()
    return {(c, ns, n): int(rv) for c, ns, n, rv in rows}


async def test_burst_while_down_restart_writes_exactly_the_changed_rows(
    harness: Harness, crash_ns: str, tmp_path: Path
) -> None:
    doc = sqlite_doc(tmp_path / "store.db")
    cfg = proc_config(harness, doc, ["configmaps"])
    p = DaemonProc(tmp_path, cfg)
    p.start()
    try:
        await asyncio.to_thread(p.wait_ready, 120)
        async with opened(store_config(doc)) as store:
            await converged(store, harness, [CM])
    finally:
        p.kill()
    before = _sqlite_index(Path(doc["path"]))

    # 3,000 changes while nobody watches: 1,500 updates, 500 deletes, 1,000 creates.
    existing = sorted(n for (c, ns, n) in before if c == "cluster2" and ns == crash_ns)
    assert len(existing) >= 2000
    patch = orjson.dumps({"data": {"v": "changed-while-down"}})
    ops = [("PATCH", CM.path(crash_ns, n), patch) for n in existing[:1500]]
    ops += [("DELETE", CM.path(crash_ns, n), None) for n in existing[1500:2000]]
    ops += [("POST", CM.path(crash_ns), {"metadata": {"name": f"burst-{i}"}, "data": {"v": "new"}})
            for i in range(1000)]
    await bulk(harness, "cluster2", ops)

    p2 = DaemonProc(tmp_path, cfg)
    p2.start()
    try:
        await asyncio.to_thread(p2.wait_ready, 120)
        async with opened(store_config(doc)) as store:
            await converged(store, harness, [CM])
        after = _sqlite_index(Path(doc["path"]))
        changed = sum(1 for k, rv in after.items() if before.get(k) != rv)
        gone = len(before.keys() - after.keys())
        assert changed >= 2500 and gone >= 500, (changed, gone)
        written = await asyncio.to_thread(p2.metric, "multicluster_store_rows_total", 'op="written"')
        deleted = await asyncio.to_thread(p2.metric, "multicluster_store_rows_total", 'op="deleted"')
        # Exactly the changed rows: the ~6 MB of unchanged ConfigMaps in the other clusters are not rewritten.
        assert (written, deleted) == (changed, gone)
        await asyncio.to_thread(assert_proc_healthy, p2, harness)
    finally:
        assert p2.stop() == 0


# --------------------------------------------------------------------------------------------- database outages


def store_errors() -> float:
    return metrics.REGISTRY.get_sample_value("multicluster_store_errors_total") or 0.0


def _refuses(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) != 0


async def _churn_for(harness: Harness, ns: str, seconds: float) -> int:
    """Keep creating, updating and deleting ConfigMaps in every cluster for `seconds`; returns rounds done."""
    t0 = time.monotonic()
    rnd = 0
    while time.monotonic() - t0 < seconds:
        for c in harness.servers:
            ops: list[tuple[str, str, object]] = [
                ("POST", CM.path(ns), {"metadata": {"name": f"r{rnd}-{i}"}, "data": {"v": "0"}}) for i in range(20)
            ]
            if rnd:
                prev = rnd - 1
                ops += [("PATCH", CM.path(ns, f"r{prev}-{i}"), orjson.dumps({"data": {"v": "1"}})) for i in range(5)]
                ops += [("DELETE", CM.path(ns, f"r{prev}-{i}"), None) for i in range(5, 10)]
            await bulk(harness, c, ops)
        rnd += 1
        await asyncio.sleep(0.5)
    return rnd


@pytest.fixture
async def private_mariadb(tmp_path: Path) -> AsyncIterator[MariaDB]:
    """A MariaDB of this test's own: stopping it must not disturb the session's server."""
    db = MariaDB(tmp_path / "db")
    await asyncio.to_thread(db.start)
    yield db
    await asyncio.to_thread(db.stop)


@pytest.mark.mariadb
async def test_mariadb_refusing_connections_for_20s(
    harness: Harness, private_mariadb: MariaDB, tmp_path: Path, unique: str
) -> None:
    db = private_mariadb
    port = free_port()
    cfg = daemon_config(harness, mysql_store(db, db.create_database("outage")), ("configmaps",))
    d = Daemon(replace(cfg, server=ServerConfig(port=port)))
    await d.start(controller=False)
    url = f"http://127.0.0.1:{port}"
    ns = f"outage-{unique}"
    try:
        assert await d.wait_ready(60)
        await asyncio.to_thread(mkns, harness, ns)
        await wait_converged(d, harness, [CM])
        errors_before = store_errors()
        await asyncio.to_thread(db.stop)
        assert _refuses(db.port)
        t0 = time.monotonic()
        churn = asyncio.create_task(_churn_for(harness, ns, 20))
        async with aiohttp.ClientSession() as http:
            while not churn.done():
                # Queries during the outage: a retryable 503 with a hint, never a 500; liveness unaffected.
                async with http.get(f"{url}/v1/resources", params={"gvr": "configmaps"}) as r:
                    assert r.status == 503, await r.text()
                    body = await r.json()
                    assert body["error"].startswith("the store is unavailable") and body["hint"]
                    assert r.headers["Retry-After"]
                async with http.get(f"{url}/healthz") as r:
                    assert r.status == 200
                await asyncio.sleep(2)
        rounds = await churn
        assert rounds >= 5 and time.monotonic() - t0 >= 20
        assert d.writer is not None and not d.writer.healthy
        assert store_errors() > errors_before
        await asyncio.to_thread(db.start)
        await wait_converged(d, harness, [CM], timeout=90)
        await assert_daemon_healthy(d, harness)
        async with aiohttp.ClientSession() as http, http.get(f"{url}/v1/resources",
                                                             params={"gvr": "configmaps", "namespace": ns}) as r:
            assert r.status == 200
    finally:
        await d.shutdown()
        await asyncio.to_thread(rmns, harness, ns)


async def test_sqlite_disk_full_then_space_freed(harness: Harness, tmp_path: Path, unique: str) -> None:
    """Disk full on the real engine: the daemon's own write connection is capped at its current page count
    (PRAGMA max_page_count), so SQLite fails every growing write with SQLITE_FULL ("database or disk is full")
    exactly as on a full file system; lifting the cap is the operator freeing space."""
    d = Daemon(daemon_config(harness, sqlite_store(tmp_path), ("configmaps",)))
    await d.start(api=False, controller=False)
    ns = f"full-{unique}"
    try:
        assert await d.wait_ready(60)
        await asyncio.to_thread(mkns, harness, ns)
        await wait_converged(d, harness, [CM])
        store = d.store
        conn = store._writer  # type: ignore[attr-defined]  # the one write connection (max_page_count is per connection)
        async with store._write_lock:  # type: ignore[attr-defined]
            original = (await conn.fetch("PRAGMA max_page_count"))[0][0]
            pages = (await conn.fetch("PRAGMA page_count"))[0][0]
            await conn.execute(f"PRAGMA max_page_count = {pages}")
        assert d.writer is not None
        for c in harness.servers:
            await bulk(harness, c, [("POST", CM.path(ns), {"metadata": {"name": f"f{i}"}, "data": {"v": PAYLOAD}})
                                    for i in range(300)])
        for _ in range(100):
            if not d.writer.healthy:
                break
            await asyncio.sleep(0.1)
        assert not d.writer.healthy, "600 KB per cluster fitted in the free pages"
        # Reads keep working while writes fail.
        assert (await store.query(Query(gvr=CM, namespaces=(ns,), limit=10))).items is not None
        await asyncio.sleep(3)  # a few failed retries
        assert d.writer is not None and not d.writer.healthy
        async with store._write_lock:  # type: ignore[attr-defined]
            await conn.execute(f"PRAGMA max_page_count = {original}")
        await wait_converged(d, harness, [CM], timeout=60)
        await assert_daemon_healthy(d, harness)
        con = sqlite3.connect(tmp_path / "store.db")
        try:
            assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        finally:
            con.close()
    finally:
        await d.shutdown()
        await asyncio.to_thread(rmns, harness, ns)


@pytest.mark.mariadb
async def test_mariadb_insert_privilege_revoked_then_regranted(
    harness: Harness, mariadb_server: MariaDB, mariadb_database: str, unique: str
) -> None:
    """The database rejects writes (the daemon's user loses INSERT on the resources table) and accepts them again
    later: nothing written in between may be lost."""
    db, database = mariadb_server, mariadb_database
    admin = mysql_store(db, database)
    async with opened(admin):
        pass  # the schema exists, so table-level grants can name the tables
    user, password = f"mc_{unique}", f"pw-{unique}"
    tables = ["resources", "resource_labels", "resource_fields", "id_blocks", "sync_state", "changes",
              "change_positions"]
    db.sql(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{password}';"
           f"GRANT SELECT, UPDATE, DELETE, CREATE, INDEX, ALTER ON `{database}`.* TO '{user}'@'127.0.0.1';"
           + "".join(f"GRANT INSERT ON `{database}`.`{t}` TO '{user}'@'127.0.0.1';" for t in tables))
    store = StoreConfig(type="mysql", host="127.0.0.1", port=db.port, user=user, password=password,
                        database=database, batch_size=500, flush_interval=0.02)
    d = Daemon(daemon_config(harness, store, ("configmaps",)))
    await d.start(api=False, controller=False)
    ns = f"revoke-{unique}"
    try:
        assert await d.wait_ready(60)
        await asyncio.to_thread(mkns, harness, ns)
        await wait_converged(d, harness, [CM])
        # Table privileges apply to open connections at their next statement.
        db.sql(f"REVOKE INSERT ON `{database}`.`resources` FROM '{user}'@'127.0.0.1'")
        for c in harness.servers:
            await bulk(harness, c, [("POST", CM.path(ns), {"metadata": {"name": f"p{i}"}, "data": {"v": "0"}})
                                    for i in range(50)])
        assert d.writer is not None
        for _ in range(100):
            if not d.writer.healthy:
                break
            await asyncio.sleep(0.1)
        assert not d.writer.healthy
        await asyncio.sleep(3)
        db.sql(f"GRANT INSERT ON `{database}`.`resources` TO '{user}'@'127.0.0.1'")
        await wait_converged(d, harness, [CM], timeout=60)
        await assert_daemon_healthy(d, harness)
    finally:
        await d.shutdown()
        db.sql(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")
