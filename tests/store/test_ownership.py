"""The store changes only tables it marked as its own (multicluster_schema), and its SQLite files are private.

Every start-up case runs against SQLite and a real MariaDB: a database that holds someone else's `resources`
table, a store written by an older layout, a store written before the marks existed, a fresh database.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from multicluster.config import StoreConfig
from multicluster.errors import StoreError
from multicluster.store import open_store, ownership, schema
from multicluster.store.mysql import MySQLStore
from multicluster.store.sqlite import Connection, SQLiteStore, WriterProcess
from multicluster.testing.mariadb import MariaDB

from .conftest import mysql_config
from .helpers import PODS, row

OURS = {"resources", "resource_labels", "resource_fields", "id_blocks", "sync_state", "changes", "change_positions"}
# Tables that came with the marks: a store written before them never has them.
MARKED_ONLY = ("changes", "change_positions")


def _before_marks(stmts: list[str]) -> list[str]:
    return [s for s in stmts if not any(f" {t} " in f" {s} " or f" {t}(" in s for t in MARKED_ONLY)]
FIX = "point store.database/store.path at an empty database, or drop the table yourself"


class Raw:
    """A plain driver connection next to the store, to build what a database held before the daemon started."""

    def __init__(self, cfg: StoreConfig) -> None:
        self.cfg = cfg
        self.sqlite = cfg.type == "sqlite"
        if self.sqlite:
            self._conn: Any = sqlite3.connect(cfg.path, isolation_level=None)
        else:
            import pymysql

            self._conn = pymysql.connect(host=cfg.host, port=cfg.port, user=cfg.user, password=cfg.password,
                                         database=cfg.database, autocommit=True)

    def run(self, stmt: str, params: Sequence[Any] = ()) -> None:
        """One statement written in MySQL's dialect (translated for SQLite), `?` placeholders."""
        if self.sqlite:
            self._conn.execute(schema.to_sqlite(stmt), params)
        else:
            with self._conn.cursor() as cur:
                cur.execute(stmt.replace("?", "%s"), params or None)

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        if self.sqlite:
            return [tuple(r) for r in self._conn.execute(query).fetchall()]
        with self._conn.cursor() as cur:
            cur.execute(query)
            return [tuple(r) for r in cur.fetchall()]

    def tables(self) -> set[str]:
        if self.sqlite:
            return {r[0] for r in self.rows("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return {r[0] for r in self.rows("SHOW TABLES")}

    def columns(self, table: str) -> list[str]:
        if self.sqlite:
            return [r[0] for r in self.rows(f"SELECT name FROM pragma_table_info('{table}') ORDER BY cid")]
        return [r[0] for r in self.rows(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
            f"AND TABLE_NAME = '{table}' ORDER BY ORDINAL_POSITION")]

    def marks(self) -> dict[str, int]:
        return {str(t): int(v) for t, v in self.rows("SELECT table_name, layout FROM multicluster_schema")}

    def close(self) -> None:
        self._conn.close()


@contextmanager
def raw(cfg: StoreConfig) -> Iterator[Raw]:
    r = Raw(cfg)
    try:
        yield r
    finally:
        r.close()


def where(cfg: StoreConfig) -> str:
    return str(cfg.path) if cfg.type == "sqlite" else cfg.database


def create_schema(r: Raw, statements: Sequence[str]) -> None:
    for stmt in statements:
        r.run(stmt)


def insert_pod(r: Raw, name: str, id_: int | None = None) -> None:
    cols = "cluster, api_group, version, resource, namespace, name, kind, uid, resource_version, owner, " \
           "created_at, updated_at, object"
    values = ["c1", "", "v1", "pods", "default", name, "Pod", "u", 1, "", "", "", b"{}"]
    if id_ is not None:
        cols, values = "id, " + cols, [id_, *values]
    r.run(f"INSERT INTO resources ({cols}) VALUES ({', '.join('?' * len(values))})", values)


def layout_1() -> list[str]:
    """The schema while ids were hashes of the identity (layout 1)."""
    return [s.replace("id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY", "id BIGINT NOT NULL PRIMARY KEY")
            for s in _before_marks(schema.for_mysql())]


def layout_2(*, id_blocks: bool = True) -> list[str]:
    """The schema of the daemon before the marks, with or without id_blocks (added within layout 2)."""
    return [s for s in _before_marks(schema.for_mysql()) if id_blocks or "id_blocks" not in s]


async def open_fails(cfg: StoreConfig) -> StoreError:
    s = open_store(cfg)
    with pytest.raises(StoreError) as err:
        await s.open()
    await s.close()
    return err.value


# ------------------------------------------------------------------------------------------ foreign tables


FOREIGN_RESOURCES = ("CREATE TABLE resources ( id VARCHAR(36) NOT NULL PRIMARY KEY, title VARCHAR(200) NOT NULL, "
                     "url VARCHAR(500) NOT NULL ) ENGINE=InnoDB")


async def test_a_foreign_resources_table_survives_and_the_start_fails(store_config: StoreConfig) -> None:
    with raw(store_config) as r:
        r.run(FOREIGN_RESOURCES)
        r.run("INSERT INTO resources (id, title, url) VALUES (?, ?, ?)", ["8f3c", "handbook", "https://x.example"])
    if store_config.type == "sqlite":
        os.chmod(store_config.path, 0o644)  # whatever the other application chose
    err = await open_fails(store_config)
    text = str(err)
    assert "`resources`" in text and where(store_config) in text, text
    assert err.hint is not None and FIX in err.hint
    assert not err.transient
    with raw(store_config) as r:
        assert r.columns("resources") == ["id", "title", "url"]
        assert r.rows("SELECT id, title FROM resources") == [("8f3c", "handbook")]
        assert r.tables() == {"resources"}  # nothing of ours was created beside it either
        if r.sqlite:  # nor was the file changed: its journal mode, its permissions
            assert r.rows("PRAGMA journal_mode") == [("delete",)]
            assert _mode(Path(store_config.path)) == 0o644


@pytest.mark.parametrize("table", ["sync_state", "resource_labels"])
async def test_any_foreign_table_with_one_of_our_names_is_refused(store_config: StoreConfig, table: str) -> None:
    with raw(store_config) as r:
        r.run(f"CREATE TABLE {table} ( k VARCHAR(20) NOT NULL PRIMARY KEY, v INT NOT NULL ) ENGINE=InnoDB")
        r.run(f"INSERT INTO {table} (k, v) VALUES ('a', 1)")
    err = await open_fails(store_config)
    assert f"`{table}`" in str(err) and err.hint is not None and FIX in err.hint
    with raw(store_config) as r:
        assert r.rows(f"SELECT k, v FROM {table}") == [("a", 1)]
        assert r.tables() == {table}


async def test_an_unmarked_set_that_is_not_exactly_a_layout_we_wrote_is_refused(store_config: StoreConfig) -> None:
    # Our table names with one extra column: someone else's tables (or ours, altered by hand): not ours to drop.
    with raw(store_config) as r:
        create_schema(r, layout_1())
        r.run("ALTER TABLE sync_state ADD COLUMN note VARCHAR(20)")
        insert_pod(r, "kept", id_=-7)
    err = await open_fails(store_config)
    assert "`sync_state`" in str(err) and err.hint is not None and FIX in err.hint
    with raw(store_config) as r:
        assert r.rows("SELECT id, name FROM resources") == [(-7, "kept")]
        assert "multicluster_schema" not in r.tables()


async def test_a_foreign_marker_table_is_refused(store_config: StoreConfig) -> None:
    with raw(store_config) as r:
        r.run("CREATE TABLE multicluster_schema ( version INT NOT NULL PRIMARY KEY ) ENGINE=InnoDB")
        r.run("INSERT INTO multicluster_schema (version) VALUES (17)")
    err = await open_fails(store_config)
    assert "`multicluster_schema`" in str(err) and err.hint is not None
    with raw(store_config) as r:
        assert r.rows("SELECT version FROM multicluster_schema") == [(17,)]
        assert r.tables() == {"multicluster_schema"}


async def test_a_store_marked_by_a_newer_layout_is_refused(store_config: StoreConfig) -> None:
    s = open_store(store_config)
    await s.open()
    await s.apply([row("p")])
    await s.close()
    with raw(store_config) as r:
        r.run("UPDATE multicluster_schema SET layout = ?", [ownership.LAYOUT + 1])
    err = await open_fails(store_config)
    assert "newer" in str(err) and where(store_config) in str(err)
    with raw(store_config) as r:
        assert r.rows("SELECT name FROM resources") == [("p",)]


# ------------------------------------------------------------------------------------------ our own tables


async def test_a_fresh_store_marks_every_table_it_creates(store_config: StoreConfig) -> None:
    s = open_store(store_config)
    await s.open()
    try:
        await s.apply([row("p")])
    finally:
        await s.close()
    with raw(store_config) as r:
        assert r.marks() == dict.fromkeys(OURS, ownership.LAYOUT)
        assert r.tables() == OURS | {"multicluster_schema"}
        if not r.sqlite:
            pk = r.rows("SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = DATABASE() "
                        "AND TABLE_NAME = 'multicluster_schema' AND CONSTRAINT_NAME = 'PRIMARY'")
            assert pk == [("table_name",)]  # Galera replicates only tables with a primary key
            engine = r.rows("SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
                            "AND TABLE_NAME = 'multicluster_schema'")
            assert engine == [("InnoDB",)]
    again = open_store(store_config)
    await again.open()
    try:
        assert sum((await again.counts()).values()) == 1  # the current layout is used as it is
    finally:
        await again.close()


async def test_an_outdated_marked_store_is_rebuilt_and_nothing_else_is_touched(
    store_config: StoreConfig, caplog: pytest.LogCaptureFixture
) -> None:
    s = open_store(store_config)
    await s.open()
    await s.apply([row("old")])
    await s.close()
    with raw(store_config) as r:
        r.run("UPDATE multicluster_schema SET layout = 1")
        r.run("CREATE TABLE audit ( id INT NOT NULL PRIMARY KEY, what VARCHAR(20) NOT NULL ) ENGINE=InnoDB")
        r.run("INSERT INTO audit (id, what) VALUES (1, 'kept')")
    again = open_store(store_config)
    with caplog.at_level(logging.WARNING):
        await again.open()
    try:
        assert "older multicluster" in caplog.text
        assert await again.counts() == {}  # dropped and left for the sync to refill
        await again.apply([row("new")])
        assert await again.get("c1", PODS, "default", "new") is not None
    finally:
        await again.close()
    with raw(store_config) as r:
        assert r.marks() == dict.fromkeys(OURS, ownership.LAYOUT)
        assert r.rows("SELECT id, what FROM audit") == [(1, "kept")]


@pytest.mark.parametrize("id_blocks", [True, False], ids=["with-id_blocks", "without-id_blocks"])
async def test_a_store_of_the_previous_unmarked_layout_is_adopted(
    store_config: StoreConfig, id_blocks: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with raw(store_config) as r:
        create_schema(r, layout_2(id_blocks=id_blocks))
        insert_pod(r, "kept")
    s = open_store(store_config)
    with caplog.at_level(logging.INFO):
        await s.open()
    try:
        assert "marked" in caplog.text
        assert (await s.get("c1", PODS, "default", "kept")) is not None  # adopted as it is, not rebuilt
        await s.apply([row("more")])
        assert sum((await s.counts()).values()) == 2
    finally:
        await s.close()
    with raw(store_config) as r:
        assert r.marks() == dict.fromkeys(OURS, ownership.LAYOUT)
        assert r.tables() == OURS | {"multicluster_schema"}


async def test_a_store_of_the_unmarked_layout_1_is_adopted_and_rebuilt(
    store_config: StoreConfig, caplog: pytest.LogCaptureFixture
) -> None:
    with raw(store_config) as r:
        create_schema(r, layout_1())
        insert_pod(r, "old", id_=-42)
    s = open_store(store_config)
    with caplog.at_level(logging.WARNING):
        await s.open()
    try:
        assert "older multicluster" in caplog.text
        assert await s.counts() == {}
        await s.apply([row("a"), row("b")])
        engine = s if isinstance(s, (SQLiteStore, MySQLStore)) else None
        assert engine is not None
        assert [n for n, _ in await engine.fetch("SELECT name, id FROM resources ORDER BY id")] == ["a", "b"]
    finally:
        await s.close()
    with raw(store_config) as r:
        assert r.marks() == dict.fromkeys(OURS, ownership.LAYOUT)


# ------------------------------------------------------------------------------------------ SQLite file modes


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual default umask, under which files are created world-readable unless created otherwise."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("umask_022")
@pytest.mark.parametrize("writer", ["process", "thread"])
async def test_sqlite_files_are_created_owner_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   writer: str) -> None:
    path = tmp_path / "sub" / "store.db"
    s = SQLiteStore(path, writer=writer)
    await s.open()
    try:
        assert isinstance(s._writer, WriterProcess if writer == "process" else Connection)
        files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
        assert {str(p): _mode(p) for p in files} == dict.fromkeys(map(str, files), 0o600)
        await s.apply([row(f"p-{i}") for i in range(200)])
        assert {str(p): _mode(p) for p in files} == dict.fromkeys(map(str, files), 0o600)
        assert _mode(path.parent) == 0o700
    finally:
        await s.close()
    assert _mode(path) == 0o600


@pytest.mark.usefixtures("umask_022")
@pytest.mark.parametrize("writer", ["process", "thread"])
async def test_existing_world_readable_sqlite_files_are_narrowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, writer: str
) -> None:
    path = tmp_path / "store.db"
    s = SQLiteStore(path, writer=writer)
    await s.open()
    await s.apply([row("p")])
    await s.close()
    # As an earlier daemon left them: 0644, and a WAL still open by another connection.
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("PRAGMA journal_mode = WAL")
    other.execute("UPDATE resources SET kind = 'Pod'")
    files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
    for p in files:
        os.chmod(p, 0o644)
    try:
        again = SQLiteStore(path)
        with caplog.at_level(logging.WARNING, logger="multicluster.store.sqlite"):
            await again.open()
        try:
            assert {str(p): _mode(p) for p in files} == dict.fromkeys(map(str, files), 0o600)
            assert await again.get("c1", PODS, "default", "p") is not None
        finally:
            await again.close()
    finally:
        other.close()
    narrowed = [r for r in caplog.records if "0600" in r.getMessage()]
    assert len(narrowed) == 1, [r.getMessage() for r in caplog.records]
    assert str(path) in narrowed[0].getMessage()
    # Already private: nothing to say the next time.
    caplog.clear()
    third = SQLiteStore(path)
    with caplog.at_level(logging.WARNING, logger="multicluster.store.sqlite"):
        await third.open()
    await third.close()
    assert not [r for r in caplog.records if "0600" in r.getMessage()]


# ------------------------------------------------------------------------------------------ MariaDB specifics


@pytest.mark.mariadb
@pytest.mark.parametrize("before", ["empty", "layout-1", "layout-2"])
# The stores silence "already exists" notes with catch_warnings, which is process-wide, not per task: three
# stores opening concurrently in one process restore each other's filters. A daemon opens one.
@pytest.mark.filterwarnings("ignore::pymysql.Warning")
async def test_replicas_starting_together_agree(request: pytest.FixtureRequest, before: str) -> None:
    cfg = mysql_config(request)
    with raw(cfg) as r:
        if before != "empty":
            create_schema(r, layout_1() if before == "layout-1" else layout_2())
            insert_pod(r, "old", id_=-42 if before == "layout-1" else None)
    stores = [MySQLStore(cfg) for _ in range(3)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        await asyncio.gather(*(s.apply([row(f"from-{i}")]) for i, s in enumerate(stores)))
        names = {n for (n,) in await stores[0].fetch("SELECT name FROM resources")}
        assert names == {"from-0", "from-1", "from-2"} | ({"old"} if before == "layout-2" else set())
    finally:
        await asyncio.gather(*(s.close() for s in stores))
    with raw(cfg) as r:
        assert r.marks() == dict.fromkeys(OURS, ownership.LAYOUT)


@pytest.mark.mariadb
async def test_a_user_with_grants_per_table_starts_a_marked_store(
    mariadb_server: MariaDB, request: pytest.FixtureRequest
) -> None:
    """Marks are read, not rewritten, at every start: a user granted INSERT only on the data tables starts."""
    cfg = mysql_config(request)
    admin = MySQLStore(cfg)
    await admin.open()
    await admin.close()
    user, password, db = f"mc_{request.getfixturevalue('unique')}", "pw-grants", cfg.database
    mariadb_server.sql(
        f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{password}';"
        f"GRANT SELECT, UPDATE, DELETE, CREATE, INDEX ON `{db}`.* TO '{user}'@'127.0.0.1';"
        + "".join(f"GRANT INSERT ON `{db}`.`{t}` TO '{user}'@'127.0.0.1';" for t in sorted(OURS)))
    try:
        s = MySQLStore(replace(cfg, user=user, password=password))
        await s.open()
        try:
            await s.apply([row("p")])
            assert await s.get("c1", PODS, "default", "p") is not None
        finally:
            await s.close()
    finally:
        mariadb_server.sql(f"DROP USER '{user}'@'127.0.0.1'")


# ------------------------------------------------------------------------------------------ the decision alone


def _found(**tables: tuple[frozenset[str], bool]) -> dict[str, ownership.Table]:
    return {n: ownership.Table(cols, serial) for n, (cols, serial) in tables.items()}


def _previous(serial: bool) -> dict[str, ownership.Table]:
    return _found(resources=(ownership._UNMARKED_REQUIRED["resources"], serial),
                  **{t: (c, False) for t, c in ownership._UNMARKED_REQUIRED.items() if t != "resources"})


def test_plan() -> None:
    owned = sorted(OURS)
    plan = ownership.plan
    current = dict.fromkeys(owned, ownership.LAYOUT)
    assert plan({}, {}, owned, "w") == ownership.Plan(adopt={}, rebuild={})
    assert plan(_previous(True), current, owned, "w") == ownership.Plan(adopt={}, rebuild={})
    assert plan(_previous(True), {}, owned, "w").adopt == dict.fromkeys(ownership._UNMARKED_REQUIRED, 2)
    p = plan(_previous(False), {}, owned, "w")
    assert p.adopt == p.rebuild == dict.fromkeys(ownership._UNMARKED_REQUIRED, 1)
    # Marked tables that no longer exist are simply created again; a retired table of ours is dropped.
    assert plan({}, {"resources": 1, "old_index": 1}, owned, "w").rebuild == {"resources": 1, "old_index": 1}
    # Unmarked beside marked: never adopted, even when the columns match.
    with pytest.raises(StoreError, match="`sync_state`"):
        plan(_previous(True), {t: ownership.LAYOUT for t in owned if t != "sync_state"}, owned, "w")
    # A partial set of an earlier daemon's tables is not a layout it wrote.
    partial = _previous(True)
    del partial["sync_state"]
    with pytest.raises(StoreError, match="`resources`"):
        plan(partial, {}, owned, "w")
    view = {**_previous(True), "resources": ownership.Table(ownership._UNMARKED_REQUIRED["resources"], False, True)}
    with pytest.raises(StoreError):
        plan(view, {}, owned, "w")
    with pytest.raises(StoreError, match="newer"):
        plan({}, {"resources": ownership.LAYOUT + 1}, owned, "w")


def test_owned_tables_are_the_tables_schema_sql_creates() -> None:
    assert ownership.owned_tables(schema.for_mysql()) == [
        "resources", "resource_labels", "resource_fields", "id_blocks", "sync_state", "changes", "change_positions"]
    assert ownership.MARKER not in ownership.owned_tables(schema.for_mysql())
