"""The embedded store: one SQLite file in WAL mode via aiosqlite.

SQLite allows one writer at a time, so there is exactly one writer connection and writes queue on an asyncio
lock instead of on SQLite's busy handler; `BEGIN IMMEDIATE` takes the write lock up front, which is what makes
the read-then-write of apply() safe even if a second process opened the same file. Reads use their own
connection: under WAL they see the last commit and never wait for the writer.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import aiosqlite

from multicluster.errors import StoreError
from multicluster.store import schema, sql
from multicluster.store.engine import SQLStore, Tx

BUSY_TIMEOUT_MS = 10_000
_TRANSIENT = ("locked", "busy", "disk i/o", "database or disk is full", "unable to open")


class _SQLiteTx:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def fetch(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async with self._conn.execute(text, params) as cur:
            return [tuple(r) for r in await cur.fetchall()]

    async def execute(self, text: str, params: Sequence[Any] = ()) -> int:
        async with self._conn.execute(text, params) as cur:
            return cur.rowcount

    async def executemany(self, text: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._conn.executemany(text, rows)


class SQLiteStore(SQLStore):
    dialect = sql.SQLITE

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._checkpointer: aiosqlite.Connection | None = None
        self._checkpoint_task: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()

    def _error(self, exc: BaseException) -> StoreError:
        text = str(exc)
        transient = isinstance(exc, sqlite3.OperationalError) and any(t in text.lower() for t in _TRANSIENT)
        hint = None if transient else "the file may be damaged, read-only, or not a multicluster database"
        return StoreError(f"sqlite store {self.path}: {text}", transient=transient, hint=hint)

    async def _connect(self, *, read_only: bool) -> aiosqlite.Connection:
        # isolation_level=None: no implicit BEGINs; transactions are explicit (BEGIN IMMEDIATE below).
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        pragmas = [f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}", "PRAGMA journal_mode = WAL",
                   "PRAGMA synchronous = NORMAL", "PRAGMA case_sensitive_like = ON"]
        if read_only:
            # Reads go through a memory map of the file: the OS page cache serves them, shared and reclaimable,
            # instead of a private page cache that would count against the daemon's own memory.
            pragmas += ["PRAGMA query_only = ON", "PRAGMA cache_size = -16384", "PRAGMA mmap_size = 1073741824"]
        else:
            # Writes are mostly appends to the tail of each index: a small cache suffices. Checkpoints (copying
            # the WAL back into the file, with an fsync) took over half of every commit's time when SQLite ran
            # them inline; a background connection runs them on its own thread instead (see _checkpoints).
            pragmas += ["PRAGMA cache_size = -8192", "PRAGMA wal_autocheckpoint = 0"]
        try:
            for pragma in pragmas:
                await conn.execute(pragma)
        except BaseException:
            # Each connection owns a thread that keeps the process alive until closed.
            with suppress(sqlite3.Error):
                await conn.close()
            raise
        return conn

    async def open(self) -> None:
        if self._writer is not None:
            return
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._writer = await self._connect(read_only=False)
            for stmt in schema.for_sqlite():
                await self._writer.execute(stmt)
            # An in-memory database is private to its connection, so reads must share the writer's.
            self._reader = self._writer if self.path == ":memory:" else await self._connect(read_only=True)
            if self.path != ":memory:":
                self._checkpointer = await aiosqlite.connect(self.path, isolation_level=None)
                await self._checkpointer.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                self._checkpoint_task = asyncio.get_running_loop().create_task(
                    self._checkpoints(), name="sqlite-checkpoints")
        except (sqlite3.Error, OSError) as exc:
            await self.close()
            raise self._error(exc) from exc

    async def _checkpoints(self, interval: float = 0.5, analyze_every: float = 300.0) -> None:
        """Copy committed WAL pages into the database file in the background; PASSIVE never blocks the writer
        or readers, and once a checkpoint has caught up SQLite starts the WAL over from its beginning.

        Also refresh the planner's statistics now and then (sampled, so it stays cheap on large files): without
        them SQLite drives label and field selectors from the wrong index and scans the table."""
        conn = self._checkpointer
        assert conn is not None
        next_analyze = asyncio.get_running_loop().time() + 30.0
        while True:
            await asyncio.sleep(interval)
            with suppress(sqlite3.Error):
                await conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            if asyncio.get_running_loop().time() >= next_analyze:
                next_analyze += analyze_every
                with suppress(sqlite3.Error):
                    await conn.execute("PRAGMA analysis_limit = 1000")
                    await conn.execute("ANALYZE")

    async def close(self) -> None:
        task, self._checkpoint_task = self._checkpoint_task, None
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            with suppress(sqlite3.Error):
                await checkpointer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                await checkpointer.close()
        writer, reader = self._writer, self._reader
        self._writer = self._reader = None
        for conn in {id(c): c for c in (reader, writer) if c is not None}.values():
            with suppress(sqlite3.Error):
                await conn.close()

    def _conn(self, reader: bool) -> aiosqlite.Connection:
        conn = self._reader if reader else self._writer
        if conn is None:
            raise StoreError(f"sqlite store {self.path}: not open", transient=False,
                             hint="call open() before using the store")
        return conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self._write_lock:
            conn = self._conn(reader=False)
            try:
                await conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._error(exc) from exc
            try:
                yield _SQLiteTx(conn)
                await conn.execute("COMMIT")
            except BaseException as exc:
                with suppress(sqlite3.Error):  # the failure may already have ended the transaction
                    await conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise self._error(exc) from exc
                raise

    async def fetch(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return await _SQLiteTx(self._conn(reader=True)).fetch(text, params)
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
