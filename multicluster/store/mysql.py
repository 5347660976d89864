"""MySQL/MariaDB (and MySQL-compatible TiDB) via an aiomysql pool.

Several daemon replicas may write the same database, so apply() locks the rows it reads (`SELECT ... FOR
UPDATE`) and the upsert re-checks the resourceVersion in SQL. Sessions run READ COMMITTED: no gap locks, so
two replicas inserting neighbouring new rows do not deadlock each other.

After an outage the pool drops dead connections and opens new ones on the next call; a failed apply() raises a
transient StoreError and the caller retries the same batch (apply is idempotent under the RV guard). Reads,
which are harmless to repeat, retry once by themselves when they hit a connection that died while idle.
"""

from __future__ import annotations

import asyncio
import logging
import re
import warnings
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiomysql
import pymysql
import pymysql.converters

from multicluster.config import StoreConfig
from multicluster.errors import StoreError
from multicluster.store import schema, sql
from multicluster.store.engine import SQLStore, Tx

log = logging.getLogger(__name__)

# Server/client error codes after which the same statement can succeed later.
_TRANSIENT_CODES = frozenset({
    1040,  # too many connections
    1053,  # server shutdown in progress
    1205,  # lock wait timeout
    1213,  # deadlock
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
_DB_NAME = re.compile(r"^[A-Za-z0-9_$-]{1,64}$")
_ER_BAD_DB, _ER_DUP_KEYNAME, _ER_PARSE = 1049, 1061, 1064
_DRIVER_ERRORS = (pymysql.err.Error, OSError, asyncio.IncompleteReadError)


def _code(exc: BaseException) -> int:
    if isinstance(exc, pymysql.err.Error) and exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    return -1


class _Blob:
    """Bytes on their way to a binary column, written as a hex literal.

    aiomysql 0.3.2 escapes `bytes` with a PyMySQL helper that PyMySQL 1.2 removed, so bytes cannot be passed
    as they are. A hex literal is also the cheaper encoding: bytes.hex() runs in C, while escaping a 2.5 KB
    JSON string character by character was the largest client-side cost of a batch. It is binary-safe and
    independent of the server's sql_mode (NO_BACKSLASH_ESCAPES).
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


def _escape_blob(value: _Blob, mapping: object = None) -> str:
    return "X'" + value.data.hex() + "'"


# PyMySQL looks encoders up by exact type in this module-level table; the entry only concerns our own type.
pymysql.converters.encoders[_Blob] = _escape_blob


def _args(params: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(_Blob(p) if isinstance(p, bytes) else p for p in params)


class _MySQLTx:
    def __init__(self, cur: aiomysql.Cursor) -> None:
        self._cur = cur

    async def fetch(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        await self._cur.execute(text, _args(params))
        return list(await self._cur.fetchall())

    async def execute(self, text: str, params: Sequence[Any] = ()) -> int:
        return int(await self._cur.execute(text, _args(params)))

    async def executemany(self, text: str, rows: Sequence[Sequence[Any]]) -> None:
        # aiomysql rewrites INSERT ... VALUES (...) into multi-row statements of up to ~1 MB each.
        await self._cur.executemany(text, [_args(r) for r in rows])


class MySQLStore(SQLStore):
    dialect = sql.MYSQL

    def __init__(self, cfg: StoreConfig) -> None:
        self.cfg = cfg
        self._pool: aiomysql.Pool | None = None

    @property
    def where(self) -> str:
        """How messages name the database: never with the password."""
        return f"mysql store {self.cfg.user}@{self.cfg.host}:{self.cfg.port}/{self.cfg.database}"

    def _error(self, exc: BaseException) -> StoreError:
        code = _code(exc)
        transient = code in _TRANSIENT_CODES or code == 0 or not isinstance(exc, pymysql.err.Error)
        detail = exc.args[1] if isinstance(exc, pymysql.err.Error) and len(exc.args) > 1 else str(exc)
        hint = None
        if code == 1045:
            hint = "check store.user and store.password (or --db-user/--db-password)"
        elif code in (2002, 2003):
            hint = "is the database server running and reachable at store.host:store.port?"
        elif code == 1049:
            hint = "create the database, or grant the user CREATE so the daemon can"
        return StoreError(f"{self.where}: {detail or type(exc).__name__}"
                          + (f" (error {code})" if code > 0 else ""), transient=transient, hint=hint)

    async def _create_pool(self, db: str | None) -> aiomysql.Pool:
        c = self.cfg
        return await aiomysql.create_pool(
            host=c.host, port=c.port, user=c.user, password=c.password, db=db, minsize=0,
            maxsize=c.pool_size, autocommit=False, charset="utf8mb4", pool_recycle=3600, connect_timeout=10,
            init_command="SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
        )

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            try:
                self._pool = await self._create_pool(self.cfg.database)
                await self._release(await self._pool.acquire(), ok=True)  # fail here, not on first use
            except pymysql.err.OperationalError as exc:
                if _code(exc) != _ER_BAD_DB or not _DB_NAME.match(self.cfg.database):
                    raise
                await self.close()
                await self._create_database()
                self._pool = await self._create_pool(self.cfg.database)
            await self._apply_schema()
        except _DRIVER_ERRORS as exc:
            await self.close()
            raise self._error(exc) from exc

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
        await cur.execute(schema.OUTDATED["mysql"])
        if await cur.fetchall():
            log.warning("%s: %s", self.where, schema.REBUILD_NOTICE)
            for stmt in schema.DROP_OUTDATED:
                await cur.execute(stmt)
        for stmt in schema.for_mysql():
            try:
                await cur.execute(stmt)
            except pymysql.err.Error as exc:
                code = _code(exc)
                if code == _ER_DUP_KEYNAME:
                    continue  # a concurrent replica created the same index
                if code == _ER_PARSE and " IF NOT EXISTS " in stmt and "INDEX" in stmt:
                    # MySQL 8 has no CREATE INDEX IF NOT EXISTS: create it plainly, tolerate "exists".
                    try:
                        await cur.execute(stmt.replace(" IF NOT EXISTS ", " ", 1))
                    except pymysql.err.Error as again:
                        if _code(again) != _ER_DUP_KEYNAME:
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

    async def _release(self, conn: aiomysql.Connection, *, ok: bool) -> None:
        """Return a connection; after a failure close it instead, so the pool never hands out a broken one."""
        pool = self._pool_or_raise()
        if not ok:
            try:
                await conn.rollback()
            except _DRIVER_ERRORS:
                conn.close()
        await pool.release(conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        pool = self._pool_or_raise()
        try:
            conn = await pool.acquire()
        except _DRIVER_ERRORS as exc:
            raise self._error(exc) from exc
        ok = False
        try:
            async with conn.cursor() as cur:
                yield _MySQLTx(cur)
            await conn.commit()
            ok = True
        except _DRIVER_ERRORS as exc:
            raise self._error(exc) from exc
        finally:
            await self._release(conn, ok=ok)

    async def fetch(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        pool = self._pool_or_raise()
        for attempt in (1, 2):
            conn: aiomysql.Connection | None = None
            ok = False
            try:
                conn = await pool.acquire()
                async with conn.cursor() as cur:
                    rows = await _MySQLTx(cur).fetch(text, params)
                await conn.rollback()  # end the read's transaction so it holds no metadata lock
                ok = True
                return rows
            except _DRIVER_ERRORS as exc:
                if attempt == 1 and _code(exc) in _LOST:
                    log.info("%s: connection lost (%s), retrying the read once", self.where, exc)
                    continue
                raise self._error(exc) from exc
            finally:
                if conn is not None:
                    await self._release(conn, ok=ok)
        raise AssertionError("unreachable")
