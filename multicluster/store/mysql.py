"""MySQL/MariaDB (and MySQL-compatible TiDB) via an aiomysql pool.

Several daemon replicas may write the same database, so apply() locks the rows it reads (`SELECT ... FOR
UPDATE`) and the upsert re-checks the resourceVersion in SQL. Sessions run READ COMMITTED: no gap locks, so
two replicas inserting neighbouring new rows do not deadlock each other.

After an outage the pool drops dead connections and opens new ones on the next call; a failed apply() raises a
transient StoreError and the caller retries the same batch (apply is idempotent under the RV guard). Reads,
which are harmless to repeat, retry once by themselves when they hit a connection that died while idle.

Database clusters (store.endpoints, e.g. three Galera nodes): the store uses the first endpoint that answers and,
on Galera, is synced (wsrep_ready ON, wsrep_local_state 4). An error that says the node is gone or out of the
primary component (lost connection, 1047 "WSREP has not yet prepared node") makes the next call choose again,
so the writer's retry of the same batch lands on a live node. Galera certifies a transaction on commit: a
conflict with another node's write is error 1213 there, transient like a deadlock. A batch whose write set could
pass wsrep_max_ws_size is applied in parts, each its own transaction (parts are whole identities, and every part
is idempotent under the RV guard, so a retry after a part landed changes nothing twice). Every table has a
primary key and is InnoDB; no LOCK TABLES, GET_LOCK or temporary tables (Galera replicates none of them).

A node cut off by the network answers nothing and resets nothing, and aiomysql has no read timeout: every
transaction and read therefore has a deadline (store.transactionTimeoutSeconds). Past it the connection, which is
mid-reply, is closed instead of reused, the call fails as transient, and the next call chooses a node again,
giving each candidate PROBE_TIMEOUT seconds to answer.
"""

from __future__ import annotations

import asyncio
import logging
import re
import warnings
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiomysql
import pymysql

from multicluster.config import StoreConfig
from multicluster.errors import StoreError
from multicluster.metrics import STORE_ENDPOINT, STORE_FAILOVERS
from multicluster.store import ownership, schema, sql
from multicluster.store.base import ApplyResult, Mutation, Row
from multicluster.store.engine import SQLStore, Tx, all_new
from multicluster.store.mysql_text import MySQLTx, error_code, read_bounded

log = logging.getLogger(__name__)

# Server/client error codes after which the same statement can succeed later.
_TRANSIENT_CODES = frozenset({
    1040,  # too many connections
    1053,  # server shutdown in progress
    1205,  # lock wait timeout
    1213,  # deadlock; on Galera also a certification conflict with another node's commit
    1047,  # Galera: "WSREP has not yet prepared node for application use" (not in the primary component)
    1290,  # --read-only (a failover in progress)
    1317,  # query interrupted
    1927,  # MariaDB: connection was killed
    # The server refuses every write until an operator acts (grants back, space freed): not a bad row to drop.
    1044, 1142, 1143,  # access denied to database / table / column
    1021, 1114,  # disk full / table is full
    2002, 2003, 2006, 2013, 2055,  # cannot connect / server has gone away / lost connection
    8002, 8022, 8028, 9007,  # TiDB: write conflicts and schema changes, "safe to retry"
})
# The connection itself is dead (0: aiomysql's "connection already closed").
_LOST = frozenset({2006, 2013, 2055, 1927, 0})
# The node is unusable (gone, shutting down, out of the primary component): choose an endpoint again.
_NODE_DOWN = _LOST | {1047, 1053, 1290, 2002, 2003}
_ER_LOCK_DEADLOCK = 1213
SCHEMA_ATTEMPTS = 5  # tries of the schema step at open(), for replicas starting together
_WSREP_SYNCED = "4"
PROBE_TIMEOUT = 5  # seconds a candidate node has to connect and answer while a node is chosen
# A batch is split when its estimated write set passes this share of wsrep_max_ws_size. A row's write set holds
# its image and, with MariaDB's binlog_annotate_row_events (on by default), the statement text too, where the
# object is a hex literal: about three times the object's bytes, plus an allowance for keys, labels and fields
# (measured: 3 objects of 20 kB fit in 200 kB, 4 do not). The change log entry written with an upsert holds no
# object (store/changelog.py), so it adds only its small row to the allowance.
_WS_SHARE = 0.5
_OBJECT_FACTOR = 3
_ROW_OVERHEAD = 2048
_DB_NAME = re.compile(r"[A-Za-z0-9_$-]{1,64}")


def valid_database_name(name: str) -> bool:
    """A name the store may put into CREATE DATABASE (whole-string match: `$` alone would accept a newline)."""
    return _DB_NAME.fullmatch(name) is not None


_ER_BAD_DB, _ER_DUP_KEYNAME, _ER_PARSE = 1049, 1061, 1064
_DRIVER_ERRORS = (pymysql.err.Error, OSError, asyncio.IncompleteReadError)


class _IdBlocks:
    """Row ids for batches of new rows, reserved a block at a time in the id_blocks table.

    Numbering rows ourselves spares reading AUTO_INCREMENT ids back. A block is reserved in its own short
    transaction: the counter row stays locked only for that long, not for a whole batch of every replica.
    Blocks start above MAX(id), so ids that AUTO_INCREMENT gave (rows written by the checked path) are never
    handed out again; an id AUTO_INCREMENT gives later, from inside a block, makes one plain insert fail on the
    primary key and its batch take the checked path: slower, never wrong (a plain insert changes no row).
    """

    BLOCK = 10_000

    def __init__(self, store: MySQLStore) -> None:
        self._store = store
        self._next = self._end = 0
        self._lock = asyncio.Lock()

    async def take(self, n: int) -> range:
        async with self._lock:
            if self._end - self._next < n:
                size = max(n, self.BLOCK)
                self._next = await self._reserve(size)
                self._end = self._next + size
            start, self._next = self._next, self._next + n
            return range(start, start + n)

    async def _reserve(self, n: int) -> int:
        # Two replicas writing through different Galera nodes both update the counter row: one of them fails
        # certification (1213) and reserves again, above the block the other one took.
        for attempt in range(5):
            try:
                return await self._reserve_once(n)
            except StoreError as exc:
                if attempt == 4 or f"(error {_ER_LOCK_DEADLOCK})" not in str(exc):
                    raise
                log.info("%s: id block reservation conflicted with another replica; reserving again",
                         self._store.where)
        raise AssertionError("unreachable")

    async def _reserve_once(self, n: int) -> int:
        async with self._store.transaction() as tx:
            # Creates the counter on first use; a no-op update (not INSERT IGNORE, which warns) once it exists.
            await tx.execute("INSERT INTO id_blocks (name, next_id) VALUES ('resources', 1) "
                             "ON DUPLICATE KEY UPDATE next_id = next_id")
            (current,), = await tx.fetch("SELECT next_id FROM id_blocks WHERE name = 'resources' FOR UPDATE")
            (top,), = await tx.fetch("SELECT COALESCE(MAX(id), 0) + 1 FROM resources")
            start = max(int(current), int(top))
            await tx.execute("UPDATE id_blocks SET next_id = %s WHERE name = 'resources'", [start + n])
        return start


class MySQLStore(SQLStore):
    dialect = sql.MYSQL

    def __init__(self, cfg: StoreConfig) -> None:
        self.cfg = cfg
        self._pool: aiomysql.Pool | None = None
        self._ids = _IdBlocks(self)
        self._endpoints: tuple[tuple[str, int], ...] = cfg.endpoints or ((cfg.host, cfg.port),)
        self._current = 0  # index into _endpoints of the node _pool connects to
        self._suspect = False  # the node in use failed: choose again before the next statement
        self._choosing = asyncio.Lock()
        self._ws_budget = 0  # bytes per transaction on Galera (a share of wsrep_max_ws_size); 0 = no limit

    @property
    def endpoint(self) -> str:
        """HOST:PORT of the database node in use (shown in /v1/clusters and the metrics)."""
        host, port = self._endpoints[self._current]
        return f"{host}:{port}"

    async def _reserve_ids(self, mutations: Sequence[Mutation]) -> Sequence[int] | None:
        if all_new(mutations):
            return await self._ids.take(len(mutations))
        return None

    @property
    def where(self) -> str:
        """How messages name the database: never with the password."""
        return f"mysql store {self.cfg.user}@{self.endpoint}/{self.cfg.database}"

    def _error(self, exc: BaseException) -> StoreError:
        code = error_code(exc)
        transient = code in _TRANSIENT_CODES or code == 0 or not isinstance(exc, pymysql.err.Error)
        detail = exc.args[1] if isinstance(exc, pymysql.err.Error) and len(exc.args) > 1 else str(exc)
        hint = None
        if code == 1045:
            hint = "check store.user and store.password (or --db-user/--db-password)"
        elif code in (2002, 2003):
            hint = ("is the database server running and reachable at store.host:store.port?" if len(self._endpoints)
                    == 1 else "is any node of store.endpoints running, reachable and synced?")
        elif code == 1049:
            hint = "create the database, or grant the user CREATE so the daemon can"
        return StoreError(f"{self.where}: {detail or type(exc).__name__}"
                          + (f" (error {code})" if code > 0 else ""), transient=transient, hint=hint)

    async def _create_pool(self, db: str | None, index: int | None = None) -> aiomysql.Pool:
        c = self.cfg
        host, port = self._endpoints[self._current if index is None else index]
        return await aiomysql.create_pool(
            host=host, port=port, user=c.user, password=c.password, db=db,
            minsize=min(c.pool_min_size, c.pool_size), maxsize=c.pool_size, autocommit=False, charset="utf8mb4",
            connect_timeout=10 if len(self._endpoints) == 1 else PROBE_TIMEOUT,
            pool_recycle=c.connection_max_lifetime if c.connection_max_lifetime > 0 else -1,
            init_command="SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
        )

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            try:
                await self._choose()
            except pymysql.err.OperationalError as exc:
                if error_code(exc) != _ER_BAD_DB or not valid_database_name(self.cfg.database):
                    raise
                await self.close()
                await self._create_database()
                await self._choose()
            for attempt in range(1, SCHEMA_ATTEMPTS + 1):
                try:
                    await self._apply_schema()
                    break
                except pymysql.err.Error as exc:
                    # Replicas starting together write the same marks; on Galera the one that loses
                    # certification gets 1213. Every schema step is idempotent: this one looks again.
                    if error_code(exc) != _ER_LOCK_DEADLOCK or attempt == SCHEMA_ATTEMPTS:
                        raise
                    log.info("%s: another replica wrote the schema at the same time (%s); looking again",
                             self.where, exc.args[-1])
                    await asyncio.sleep(0.2 * attempt)
        except _DRIVER_ERRORS as exc:
            await self.close()
            raise self._error(exc) from exc

    async def _usable(self, conn: aiomysql.Connection) -> tuple[bool, int]:
        """Whether a node may take writes (any server without Galera; a Galera node only while synced), and the
        write-set budget it imposes (0 = none)."""
        async with conn.cursor() as cur:
            await cur.execute("SHOW GLOBAL VARIABLES LIKE 'wsrep%'")
            variables = {str(k).lower(): str(v) for k, v in await cur.fetchall()}
            if variables.get("wsrep_on", "OFF").upper() != "ON":
                return True, 0
            await cur.execute("SHOW GLOBAL STATUS LIKE 'wsrep%'")
            status = {str(k).lower(): str(v) for k, v in await cur.fetchall()}
        await conn.rollback()
        budget = int(int(variables.get("wsrep_max_ws_size", "0") or 0) * _WS_SHARE)
        return status.get("wsrep_ready", "").upper() == "ON" and status.get("wsrep_local_state") == _WSREP_SYNCED, \
            budget

    async def _choose(self) -> None:
        """Point the pool at the first endpoint that answers and is synced; keep the pool if that is the node
        in use. Raises the last node's error when none is usable."""
        last: BaseException | None = None
        for index, (host, port) in enumerate(self._endpoints):
            keep = self._pool is not None and index == self._current
            pool: aiomysql.Pool | None = self._pool if keep else None
            conn: aiomysql.Connection | None = None
            reason: BaseException | None = None
            probe = asyncio.timeout(PROBE_TIMEOUT)  # a node cut off by the network answers nothing at all
            try:
                async with probe:
                    try:
                        if pool is None:
                            pool = await self._create_pool(self.cfg.database, index)
                    except _DRIVER_ERRORS as exc:
                        if error_code(exc) == _ER_BAD_DB:
                            if self._pool is None:
                                self._current = index
                            raise
                        last = exc
                        log.warning("%s: database node %s:%d does not answer: %s", self.where, host, port, exc)
                        continue
                    conn = await pool.acquire()
                    usable, budget = await self._usable(conn)
            except _DRIVER_ERRORS as exc:  # the probe's TimeoutError is an OSError too
                usable, budget, reason = False, 0, exc
                if probe.expired():
                    if conn is not None:
                        conn.close()  # mid-reply: dropped, never reused
                    reason = pymysql.err.OperationalError(
                        2013, f"database node {host}:{port} did not answer within {PROBE_TIMEOUT}s")
                elif error_code(exc) == _ER_BAD_DB:
                    if not keep and pool is not None:
                        pool.terminate()
                    if self._pool is None:
                        self._current = index  # open() creates the database on this node, which answers
                    raise
            except BaseException:
                if not keep and pool is not None:
                    pool.terminate()
                raise
            finally:
                if conn is not None and pool is not None:
                    await pool.release(conn)
            assert pool is not None
            if not usable:
                last = reason or pymysql.err.OperationalError(
                    1047, f"database node {host}:{port} is not synced with its cluster (wsrep_ready, "
                          "wsrep_local_state)")
                log.warning("%s: database node %s:%d is not usable (%s)", self.where, host, port, last)
                if not keep:
                    pool.terminate()
                continue
            if not keep:
                moved = self._pool is not None
                old, self._pool, self._current = self._pool, pool, index
                if old is not None:
                    # Connections still out on the old node fail now rather than hang; their callers retry.
                    old.terminate()
                if moved:
                    STORE_FAILOVERS.inc()
                    log.warning("%s: moved to database node %s:%d", self.where, host, port)
            self._ws_budget = budget
            for i, (h, p) in enumerate(self._endpoints):
                STORE_ENDPOINT.labels(f"{h}:{p}").set(1 if i == index else 0)
            self._suspect = False
            return
        assert last is not None
        raise last

    async def _live_pool(self) -> aiomysql.Pool:
        """The pool, after choosing a node again if the one in use failed."""
        pool = self._pool_or_raise()
        if not self._suspect:
            return pool
        async with self._choosing:
            if self._suspect:
                try:
                    await self._choose()
                except _DRIVER_ERRORS as exc:
                    raise self._error(exc) from exc
        return self._pool_or_raise()

    def _failed(self, pool: aiomysql.Pool, exc: BaseException) -> None:
        """Note an error; one that says the node is gone makes the next call choose a node again."""
        if pool is self._pool and (error_code(exc) in _NODE_DOWN or not isinstance(exc, pymysql.err.Error)):
            self._suspect = True

    async def apply(self, mutations: Sequence[Mutation]) -> ApplyResult:
        """Galera refuses a transaction whose write set passes wsrep_max_ws_size: a batch that could is applied
        in parts, each under the budget."""
        parts = list(_split(mutations, self._ws_budget)) if self._ws_budget else [mutations]
        if len(parts) == 1:
            return await super().apply(mutations)
        total = ApplyResult()
        for part in parts:
            r = await super().apply(part)
            total = ApplyResult(written=total.written + r.written, deleted=total.deleted + r.deleted,
                                skipped=total.skipped + r.skipped, changes=total.changes + r.changes)
        return total

    async def _create_database(self) -> None:
        """The configured database is missing: create it (the name was checked against _DB_NAME)."""
        log.info("%s: creating database", self.where)
        pool = await self._create_pool(None)
        try:
            async with pool.acquire() as conn, conn.cursor() as cur:
                name = self.cfg.database
                await cur.execute(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4")
        finally:
            pool.close()
            await pool.wait_closed()

    async def _apply_schema(self) -> None:
        assert self._pool is not None
        async with self._pool.acquire() as conn, conn.cursor() as cur:
            # "already exists" notes are the expected outcome of IF NOT EXISTS, not news.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", pymysql.Warning)
                await self._run_schema(cur)
            await conn.commit()

    async def _run_schema(self, cur: aiomysql.Cursor) -> None:
        await ownership.claim(MySQLTx(cur), sql.MYSQL, self.where, cur.connection.commit)
        for stmt in schema.for_mysql():
            try:
                await cur.execute(stmt)
            except pymysql.err.Error as exc:
                code = error_code(exc)
                if code == _ER_DUP_KEYNAME:
                    continue  # a concurrent replica created the same index
                if code == _ER_PARSE and " IF NOT EXISTS " in stmt and "INDEX" in stmt:
                    # MySQL 8 has no CREATE INDEX IF NOT EXISTS: create it plainly, tolerate "exists".
                    try:
                        await cur.execute(stmt.replace(" IF NOT EXISTS ", " ", 1))
                    except pymysql.err.Error as again:
                        if error_code(again) != _ER_DUP_KEYNAME:
                            raise
                    continue
                raise

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
            await pool.wait_closed()

    def _pool_or_raise(self) -> aiomysql.Pool:
        if self._pool is None:
            raise StoreError(f"{self.where}: not open", transient=False,
                             hint="call open() before using the store")
        return self._pool

    async def _release(self, pool: aiomysql.Pool, conn: aiomysql.Connection, *, ok: bool) -> None:
        """Return a connection to its pool; after a failure close it instead, so the pool never hands out a broken
        one (one closed already, past a deadline, is only handed back to be dropped)."""
        if not ok and not conn.closed:
            try:
                await conn.rollback()
            except _DRIVER_ERRORS:
                conn.close()
        await pool.release(conn)

    def _no_answer(self, pool: aiomysql.Pool, conn: aiomysql.Connection | None) -> StoreError:
        """The deadline passed with a statement waiting on the server: the connection is mid-reply, so it is
        closed (never reused), and the node is suspect."""
        if conn is not None:
            conn.close()
        if pool is self._pool:
            self._suspect = True
        seconds = self.cfg.transaction_timeout
        return StoreError(f"{self.where}: no answer from the database within {seconds:g}s", transient=True,
                          hint="is the database node reachable? store.transactionTimeoutSeconds sets the wait")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """A transaction bounded by store.transactionTimeoutSeconds from acquiring its connection to the commit."""
        pool = await self._live_pool()  # choosing a node bounds each probe itself (PROBE_TIMEOUT)
        conn: aiomysql.Connection | None = None
        ok = False
        deadline = asyncio.timeout(self.cfg.transaction_timeout)
        try:
            async with deadline:
                conn = await pool.acquire()
                async with conn.cursor() as cur:
                    yield MySQLTx(cur)
                await conn.commit()
                ok = True
        except _DRIVER_ERRORS as exc:  # the deadline's TimeoutError is an OSError too
            if deadline.expired():
                raise self._no_answer(pool, conn) from None
            self._failed(pool, exc)
            raise self._error(exc) from exc
        finally:
            if conn is not None:
                await self._release(pool, conn, ok=ok)

    async def fetch(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return await self._read(text, params, 0)

    async def fetch_bounded(self, text: str, params: Sequence[Any], max_bytes: int) -> list[tuple[Any, ...]]:
        return await self._read(text, params, max_bytes)

    async def _read(self, text: str, params: Sequence[Any], max_bytes: int) -> list[tuple[Any, ...]]:
        for attempt in (1, 2):
            pool = await self._live_pool()
            conn: aiomysql.Connection | None = None
            ok = False
            deadline = asyncio.timeout(self.cfg.transaction_timeout)
            try:
                async with deadline:
                    conn = await pool.acquire()
                    if max_bytes > 0:
                        rows = await read_bounded(conn, text, params, max_bytes)
                    else:
                        async with conn.cursor() as cur:
                            rows = await MySQLTx(cur).fetch(text, params)
                    await conn.rollback()  # end the read's transaction so it holds no metadata lock
                ok = True
                return rows
            except _DRIVER_ERRORS as exc:  # the deadline's TimeoutError is an OSError too
                if deadline.expired():
                    raise self._no_answer(pool, conn) from None
                self._failed(pool, exc)
                if attempt == 1 and error_code(exc) in _NODE_DOWN:
                    log.info("%s: connection lost (%s), retrying the read once", self.where, exc)
                    continue
                raise self._error(exc) from exc
            finally:
                if conn is not None:
                    await self._release(pool, conn, ok=ok)
        raise AssertionError("unreachable")


def _split(mutations: Sequence[Mutation], budget: int) -> Iterator[Sequence[Mutation]]:
    """Parts of a batch whose estimated write sets stay under `budget` bytes; every change of one identity stays
    in one part (the batch's last change of an object wins, which only the whole run of them can tell)."""
    runs: dict[tuple[str, str, str, str], list[Mutation]] = {}
    for m in mutations:
        runs.setdefault((m.cluster, str(m.gvr), m.namespace, m.name), []).append(m)
    part: list[Mutation] = []
    size = 0
    for run in runs.values():
        cost = sum(_ROW_OVERHEAD + (_OBJECT_FACTOR * len(m.object) if isinstance(m, Row) else 0) for m in run)
        if part and size + cost > budget:
            yield part
            part, size = [], 0
        part.extend(run)
        size += cost
    if part:
        yield part
