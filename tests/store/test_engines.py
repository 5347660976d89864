"""Engine-specific behaviour: schema translation, error translation, reconnects, the factory."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from multicluster.config import StoreConfig
from multicluster.errors import StoreError
from multicluster.retry import RetryPolicy
from multicluster.store import Delete, Query, open_store, schema
from multicluster.store.mysql import MySQLStore
from multicluster.store.sqlite import SQLiteStore
from multicluster.testing.mariadb import MariaDB

from .conftest import mysql_config
from .helpers import PODS, row

# ------------------------------------------------------------------------------------------ schema translation


def test_schema_sql_is_the_packaged_file_and_the_top_level_symlink() -> None:
    top = Path(__file__).resolve().parents[2] / "schema.sql"
    assert top.is_symlink()
    assert top.read_text() == schema.load()


def test_mysql_statements_are_idempotent_and_portable() -> None:
    stmts = schema.for_mysql()
    assert {s.split(" (")[0].rsplit(" ", 1)[-1] for s in stmts if s.startswith("CREATE TABLE")} == {
        "resources", "resource_labels", "resource_fields", "id_blocks", "sync_state", "changes", "change_positions"}
    for s in stmts:
        assert s.startswith(("CREATE TABLE IF NOT EXISTS", "CREATE INDEX IF NOT EXISTS",
                             "CREATE UNIQUE INDEX IF NOT EXISTS")), s
        for banned in ("TRIGGER", "PROCEDURE", "FULLTEXT", "FOREIGN KEY", "--"):
            assert banned not in s.upper(), (banned, s)


def test_sqlite_translation() -> None:
    mysql = ("CREATE TABLE IF NOT EXISTS t ( id BIGINT NOT NULL PRIMARY KEY, "
             "a VARCHAR(10) CHARACTER SET ascii COLLATE ascii_bin NOT NULL, n BIGINT UNSIGNED NOT NULL, "
             "k INT AUTO_INCREMENT, b LONGBLOB NOT NULL ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin")
    assert schema.to_sqlite(mysql) == ("CREATE TABLE IF NOT EXISTS t ( id BIGINT NOT NULL PRIMARY KEY, "
                                       "a VARCHAR(10) NOT NULL, n BIGINT NOT NULL, k INT, b LONGBLOB NOT NULL )")
    # Statements without MySQL-only clauses pass through unchanged.
    idx = "CREATE INDEX IF NOT EXISTS x ON t (a, `key`)"
    assert schema.to_sqlite(idx) == idx
    assert schema.statements("-- c; not a statement\nCREATE TABLE a (x INT);\n\n -- end\n") == [
        "CREATE TABLE a (x INT)"]


def test_translated_schema_runs_twice_on_sqlite() -> None:
    conn = sqlite3.connect(":memory:")
    for _ in range(2):
        for s in schema.for_sqlite():
            conn.execute(s)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"resources", "resource_labels", "resource_fields", "id_blocks", "sync_state", "changes",
                      "change_positions"}
    for s in schema.for_sqlite():
        for banned in ("ENGINE", "CHARSET", "CHARACTER SET", "COLLATE", "UNSIGNED", "AUTO_INCREMENT"):
            assert banned not in s.upper(), (banned, s)


def test_the_serial_id_becomes_sqlites_rowid() -> None:
    stmt = "CREATE TABLE IF NOT EXISTS t ( id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, a INT )"
    assert schema.to_sqlite(stmt) == "CREATE TABLE IF NOT EXISTS t ( id INTEGER PRIMARY KEY, a INT )"
    conn = sqlite3.connect(":memory:")
    for s in schema.for_sqlite():
        conn.execute(s)
    assert conn.execute("SELECT type, pk FROM pragma_table_info('resources') WHERE name = 'id'").fetchall() == [
        ("INTEGER", 1)]
    # Tables keyed by a composite primary key are clustered on it, as InnoDB does: one B-tree per label row.
    without_rowid = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND "
                                                 "sql LIKE '%WITHOUT ROWID'")}
    assert without_rowid == {"resource_labels", "resource_fields", "sync_state", "changes"}


def _layout_1() -> list[str]:
    """The schema as it was while ids were hashes of the identity (computed by the daemon)."""
    return [s.replace("id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY", "id BIGINT NOT NULL PRIMARY KEY")
            for s in schema.for_mysql() if " changes " not in s and " change_positions " not in s]


def _create_layout_1(cfg: StoreConfig) -> None:
    old_row = ("INSERT INTO resources (id, cluster, api_group, version, resource, namespace, name, kind, uid, "
               "resource_version, owner, created_at, updated_at, object) VALUES (-42, 'c1', '', 'v1', 'pods', "
               "'default', 'old', 'Pod', 'u', 1, '', '', '', '{}')")
    if cfg.type == "sqlite":
        conn = sqlite3.connect(cfg.path)
        for stmt in _layout_1():
            conn.execute(schema.to_sqlite(stmt))
        conn.execute(old_row)
        conn.commit()
        conn.close()
        return
    import pymysql

    conn2 = pymysql.connect(host=cfg.host, port=cfg.port, user=cfg.user, password=cfg.password,
                            database=cfg.database, autocommit=True)
    try:
        with conn2.cursor() as cur:
            for stmt in _layout_1():
                cur.execute(stmt)
            cur.execute(old_row)
    finally:
        conn2.close()


async def test_a_layout_1_store_is_rebuilt_and_new_rows_get_ids_in_insertion_order(
    store_config: StoreConfig, caplog: pytest.LogCaptureFixture
) -> None:
    _create_layout_1(store_config)
    s = open_store(store_config)
    with caplog.at_level("WARNING"):
        await s.open()
    try:
        assert "older multicluster" in caplog.text
        assert await s.counts() == {}  # the old rows went with the old tables
        names = ["p-3", "p-1", "p-2", "p-0"]
        await s.apply([row(n) for n in names])
        await s.apply([row("p-4")])
        engine = s if isinstance(s, (SQLiteStore, MySQLStore)) else None
        assert engine is not None
        ids = await engine.fetch("SELECT name, id FROM resources ORDER BY id")
        assert [n for n, _ in ids] == [*names, "p-4"]  # appended in the order they were written
    finally:
        await s.close()
    again = open_store(store_config)
    caplog.clear()
    with caplog.at_level("WARNING"):
        await again.open()
    try:
        assert "older multicluster" not in caplog.text  # the current layout is kept
        assert sum((await again.counts()).values()) == 5
    finally:
        await again.close()


def test_open_store_picks_the_engine(tmp_path: Path) -> None:
    assert isinstance(open_store(StoreConfig(type="sqlite", path=tmp_path / "x.db")), SQLiteStore)
    assert isinstance(open_store(StoreConfig(type="mysql")), MySQLStore)


# ------------------------------------------------------------------------------------------ sqlite


async def test_sqlite_errors_become_store_errors(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-db.db"
    bad.write_bytes(b"this is not a sqlite database" * 100)
    s = SQLiteStore(bad)
    with pytest.raises(StoreError) as err:
        await s.open()
    assert str(bad) in str(err.value) and not err.value.transient
    with pytest.raises(StoreError):
        await SQLiteStore(tmp_path / "unopened.db").apply([row("p")])


async def test_sqlite_queued_batches_keep_their_order(tmp_path: Path) -> None:
    """start_apply() queues a batch behind the one being written; a chained batch never overtakes a failed one."""
    s = SQLiteStore(tmp_path / "q.db")
    await s.open()
    try:
        # Chained and both fine: applied in order (the delete follows the upsert it must win over).
        first = s.start_apply([row("p", rv=5)], None)
        assert first is not None
        second = s.start_apply([Delete("c1", PODS, "default", "p", 6), row("q", rv=1)], first[0])
        assert second is not None
        assert (await first[1]).written == 1
        assert (await second[1]).deleted == 1
        assert [o.name for o in (await s.query(Query(gvr=PODS))).items] == ["q"]

        # The first batch fails (a body sqlite3 cannot bind): the one queued behind it is skipped, not applied.
        bad = replace(row("r", rv=1), object={"not": "bytes"})  # type: ignore[arg-type]
        failing = s.start_apply([bad], None)
        assert failing is not None
        behind = s.start_apply([Delete("c1", PODS, "default", "q", 2)], failing[0])
        assert behind is not None
        with pytest.raises(StoreError) as err:
            await failing[1]
        assert not err.value.transient
        with pytest.raises(StoreError) as skipped:
            await behind[1]
        assert skipped.value.transient and "failed" in str(skipped.value)
        assert [o.name for o in (await s.query(Query(gvr=PODS))).items] == ["q"]  # the delete did not run
        # Unchained (its caller saw the failure): runs.
        again = s.start_apply([Delete("c1", PODS, "default", "q", 2)], None)
        assert again is not None and (await again[1]).deleted == 1

        # While a transaction() holds the writer, nothing is queued around it.
        async with s.transaction():
            assert s.start_apply([row("z")], None) is None
    finally:
        await s.close()


async def test_sqlite_in_memory_and_wal(tmp_path: Path) -> None:
    mem = SQLiteStore(":memory:")
    await mem.open()
    try:
        await mem.apply([row("p")])
        assert (await mem.query(Query(gvr=PODS))).items[0].name == "p"
    finally:
        await mem.close()
    s = SQLiteStore(tmp_path / "sub" / "dir" / "w.db")
    await s.open()
    try:
        assert (await s.fetch("PRAGMA journal_mode"))[0][0] == "wal"
    finally:
        await s.close()


# ------------------------------------------------------------------------------------------ mysql


@pytest.mark.mariadb
async def test_mysql_bad_password_is_permanent_and_secret(request: pytest.FixtureRequest) -> None:
    cfg = replace(mysql_config(request), password="s3cret-wrong-password")
    s = MySQLStore(cfg)
    with pytest.raises(StoreError) as err:
        await s.open()
    msg = str(err.value)
    assert cfg.database in msg and "s3cret" not in msg and "1045" in msg
    assert not err.value.transient and err.value.hint


@pytest.mark.mariadb
async def test_mysql_unreachable_is_transient(request: pytest.FixtureRequest) -> None:
    from multicluster.testing.harness import free_port

    cfg = replace(mysql_config(request), port=free_port())
    with pytest.raises(StoreError) as err:
        await MySQLStore(cfg).open()
    assert err.value.transient and cfg.database in str(err.value)


@pytest.mark.mariadb
async def test_mysql_creates_a_missing_database(mariadb_server: MariaDB, request: pytest.FixtureRequest) -> None:
    name = "mc_created_" + request.getfixturevalue("unique")
    cfg = replace(mysql_config(request), database=name)
    s = MySQLStore(cfg)
    await s.open()
    try:
        await s.apply([row("p")])
        assert name in mariadb_server.sql("SHOW DATABASES")
    finally:
        await s.close()
        mariadb_server.sql(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.mark.mariadb
async def test_mysql_schema_errors_are_permanent(mariadb_server: MariaDB, request: pytest.FixtureRequest) -> None:
    cfg = mysql_config(request)
    s = MySQLStore(cfg)
    await s.open()
    try:
        mariadb_server.sql(f"ALTER TABLE `{cfg.database}`.resource_labels DROP COLUMN `value`")
        with pytest.raises(StoreError) as err:
            await s.apply([row("p", labels={"a": "b"})])
        assert not err.value.transient and cfg.database in str(err.value)
        assert await s.get("c1", PODS, "default", "p") is None  # the failed batch was rolled back
    finally:
        await s.close()


@pytest.mark.mariadb
async def test_mysql_survives_a_server_restart(mariadb_server: MariaDB, request: pytest.FixtureRequest) -> None:
    cfg = mysql_config(request)
    s = MySQLStore(cfg)
    await s.open()
    try:
        await s.apply([row("before", 1)])
        await asyncio.gather(*(s.get("c1", PODS, "default", "before") for _ in range(4)))  # fill the pool
        await asyncio.to_thread(mariadb_server.stop)
        with pytest.raises(StoreError) as err:
            await s.apply([row("during", 1)])
        assert err.value.transient and cfg.database in str(err.value) and cfg.password not in str(err.value)
        with pytest.raises(StoreError):
            await s.get("c1", PODS, "default", "before")
        await asyncio.to_thread(mariadb_server.start)
        # Reads reconnect by themselves; the caller retries the batch that failed.
        assert await s.get("c1", PODS, "default", "before") is not None
        assert (await s.apply([row("during", 1)])).written == 1
        assert (await s.query(Query(gvr=PODS, limit=0))).items[1].name == "during"
    finally:
        if mariadb_server.proc is None:
            mariadb_server.start()
        await s.close()


async def test_sqlite_lock_timeout_is_transient(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import multicluster.store.sqlite as sqlite_store

    monkeypatch.setattr(sqlite_store, "BUSY_TIMEOUT_MS", 200)
    path = tmp_path / "locked.db"
    s = SQLiteStore(path)
    await s.open()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with pytest.raises(StoreError) as err:
            await s.apply([row("p")])
        assert err.value.transient and str(path) in str(err.value)
        other.execute("ROLLBACK")
        assert (await s.apply([row("p")])).written == 1  # the caller's retry succeeds
    finally:
        other.close()
        await s.close()


async def test_writer_pipeline_keeps_order_through_a_locked_store(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Many batches queued back to back while another process holds the write lock for a while: every batch
    fails, is retried in order, and the end state is the last word on every key (deletes included)."""
    import multicluster.store.sqlite as sqlite_store
    from multicluster.sync import Tracker, Writer
    from multicluster.workqueue import CoalescingQueue

    monkeypatch.setattr(sqlite_store, "BUSY_TIMEOUT_MS", 50)
    path = tmp_path / "pipe.db"
    s = SQLiteStore(path)
    await s.open()
    queue: CoalescingQueue[Any, Any] = CoalescingQueue(maxsize=100_000)
    writer = Writer(s, queue, Tracker(), batch_size=50, linger=0, backoff=RetryPolicy(initial=0.05, max=0.1))
    other = sqlite3.connect(path, isolation_level=None)
    task = asyncio.create_task(writer.run())
    try:
        other.execute("BEGIN IMMEDIATE")
        for i in range(600):
            await queue.put(("c1", PODS, "default", f"p{i}"), row(f"p{i}", rv=10))
        await asyncio.sleep(0.3)  # batches fail against the lock meanwhile
        other.execute("ROLLBACK")
        await asyncio.wait_for(queue.flushed(), 30)
        for i in range(0, 600, 2):  # every other object deleted, then half of those recreated
            await queue.put(("c1", PODS, "default", f"p{i}"), Delete("c1", PODS, "default", f"p{i}", 11))
        await asyncio.wait_for(queue.flushed(), 30)
        for i in range(0, 600, 4):
            await queue.put(("c1", PODS, "default", f"p{i}"), row(f"p{i}", rv=12))
        await asyncio.wait_for(queue.flushed(), 30)
        stored = {o.name: o.resource_version for o in (await s.query(Query(gvr=PODS))).items}
        want = {f"p{i}": 10 for i in range(1, 600, 2)} | {f"p{i}": 12 for i in range(0, 600, 4)}
        assert stored == want
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        other.close()
        await s.close()


@pytest.mark.mariadb
async def test_mysql_lock_wait_timeout_is_transient(mariadb_server: MariaDB, request: pytest.FixtureRequest) -> None:
    import aiomysql

    cfg = mysql_config(request)
    mariadb_server.sql("SET GLOBAL innodb_lock_wait_timeout = 1")  # sessions opened from now on
    s = MySQLStore(cfg)
    holder = None
    try:
        await s.open()
        await s.apply([row("p", 1)])
        holder = await aiomysql.connect(host="127.0.0.1", port=cfg.port, user=cfg.user, password=cfg.password,
                                        db=cfg.database, autocommit=False)
        async with holder.cursor() as cur:
            await cur.execute("SELECT id FROM resources FOR UPDATE")  # another replica's long transaction
        with pytest.raises(StoreError) as err:
            await s.apply([row("p", 2)])
        assert err.value.transient and "1205" in str(err.value)
        await holder.rollback()
        assert (await s.apply([row("p", 2)])).written == 1
    finally:
        mariadb_server.sql("SET GLOBAL innodb_lock_wait_timeout = 50")
        if holder is not None:
            holder.close()
        await s.close()


def test_mysql_error_classification() -> None:
    import pymysql

    s = MySQLStore(StoreConfig(type="mysql", user="u", password="pw-secret", database="db1"))
    cases = [
        (pymysql.err.OperationalError(1213, "Deadlock found"), True),
        (pymysql.err.OperationalError(2006, "MySQL server has gone away"), True),
        (pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query"), True),
        (pymysql.err.InterfaceError(0, ""), True),
        (ConnectionResetError("reset by peer"), True),
        (pymysql.err.ProgrammingError(1146, "Table 'db1.resources' doesn't exist"), False),
        (pymysql.err.ProgrammingError(1064, "You have an error in your SQL syntax"), False),
        (pymysql.err.DataError(1406, "Data too long for column 'name'"), False),
    ]
    for exc, transient in cases:
        err = s._error(exc)
        assert err.transient is transient, exc
        assert "db1" in str(err) and "pw-secret" not in str(err)


def test_sqlite_writer_falls_back_to_a_thread_when_no_process_can_start(tmp_path: Path) -> None:
    """A main module multiprocessing cannot re-import in the child (here: a script piped to python) must not
    stop the store: it writes from a thread instead, and says so."""
    import subprocess
    import sys

    script = f"""
import asyncio
from multicluster.store import Query
from multicluster.store.sqlite import SQLiteStore
from tests.store.helpers import PODS, row

async def main():
    s = SQLiteStore({str(tmp_path / "f.db")!r})
    await s.open()
    await s.apply([row("p")])
    print("stored", [o.name for o in (await s.query(Query(gvr=PODS))).items])
    await s.close()

asyncio.run(main())
"""
    res = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[2], check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "stored ['p']" in res.stdout
    assert "writing from a thread instead" in res.stderr


async def test_sqlite_writer_process_is_replaced_when_it_dies(tmp_path: Path) -> None:
    import os
    import signal

    from multicluster.store.sqlite import WriterProcess

    s = SQLiteStore(tmp_path / "k.db")
    await s.open()
    try:
        assert isinstance(s._writer, WriterProcess)
        await s.apply([row("a")])
        pool = s._writer._pool
        assert pool is not None
        for pid in list(pool._processes):  # the child, killed as the OOM killer would
            os.kill(pid, signal.SIGKILL)
        with pytest.raises(StoreError) as err:
            for _ in range(50):
                await s.apply([row("b")])
                await asyncio.sleep(0.05)
        assert err.value.transient  # the writer retries...
        assert (await s.apply([row("b")])).written == 1  # ...and the next call gets a new process
        assert sorted(o.name for o in (await s.query(Query(gvr=PODS))).items) == ["a", "b"]
        # Killed while idle, with nothing queued: the next write just goes to a new child.
        pool = s._writer._pool
        assert pool is not None
        for pid in list(pool._processes):
            os.kill(pid, signal.SIGKILL)
        for _ in range(100):  # until the executor has noticed
            if pool._broken:
                break
            await asyncio.sleep(0.02)
        assert pool._broken
        assert (await s.apply([row("c")])).written == 1
        assert sorted(o.name for o in (await s.query(Query(gvr=PODS))).items) == ["a", "b", "c"]
    finally:
        await s.close()


# ------------------------------------------------------------------------------------------ MySQL literals


@pytest.mark.mariadb
@pytest.mark.parametrize("sql_mode", ["STRICT_ALL_TABLES", "STRICT_ALL_TABLES,NO_BACKSLASH_ESCAPES"])
async def test_mysql_literals_round_trip_in_both_escaping_modes(request: pytest.FixtureRequest, sql_mode: str) -> None:
    """The store writes values as SQL literals it builds itself; whatever the server's escaping mode, every value
    comes back as it went in, and a batch over the statement size limit is split without losing a row."""
    import aiomysql

    from multicluster.store.mysql_text import STATEMENT_BYTES, MySQLTx

    from ..unit.test_mysql_literals import SPECIALS

    cfg = mysql_config(request)
    conn = await aiomysql.connect(host=cfg.host, port=cfg.port, user=cfg.user, password=cfg.password,
                                  db=cfg.database, autocommit=True, charset="utf8mb4")
    try:
        async with conn.cursor() as cur:
            await cur.execute(f"SET SESSION sql_mode = '{sql_mode}'")
            await cur.execute("CREATE TABLE lit (k INT PRIMARY KEY, s VARCHAR(64) CHARACTER SET utf8mb4 "
                              "COLLATE utf8mb4_bin NOT NULL, b LONGBLOB NOT NULL)")
            tx = MySQLTx(cur)
            rows = [(i, s, s.encode()) for i, s in enumerate(SPECIALS)]
            big = [(1000 + i, f"big-{i}", bytes([i]) * (STATEMENT_BYTES // 5)) for i in range(12)]  # > 2 statements
            inserted = await tx.executemany("INSERT INTO lit (k, s, b) VALUES (%s, %s, %s)", rows + big)
            assert inserted == len(rows) + len(big)
            back = await tx.fetch("SELECT k, s, b FROM lit ORDER BY k")
            assert [(k, s, bytes(b)) for k, s, b in back] == rows + big
            # Parameters of reads go through the same literals.
            hits = await tx.fetch("SELECT k FROM lit WHERE s IN (%s, %s, %s) ORDER BY k",
                                  ["o'brien", "back\\slash", "%s"])
            assert [k for (k,) in hits] == [SPECIALS.index(v) for v in ("o'brien", "back\\slash", "%s")]
    finally:
        conn.close()
