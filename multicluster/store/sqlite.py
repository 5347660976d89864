"""The embedded store: one SQLite file in WAL mode.

SQLite allows one writer at a time, so there is exactly one writer connection and writes queue on an asyncio
lock instead of on SQLite's busy handler; `BEGIN IMMEDIATE` takes the write lock up front, which is what makes
the read-then-write of apply() safe even if a second process opened the same file. Reads use their own
connection: under WAL they see the last commit and never wait for the writer.

Each connection lives on a thread of its own (sqlite3 blocks). apply() runs its whole transaction on the
writer's thread in one hand-off: awaiting each statement separately cost a trip through the event loop per
statement, and during an initial sync the loop is busy parsing list pages, so a 500-row batch spent half of its
time waiting for the loop to notice that the previous statement had finished.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

from multicluster.errors import StoreError
from multicluster.store import schema, sql
from multicluster.store.base import ApplyResult
from multicluster.store.engine import SQLStore, Step, Steps, Tx

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000
_TRANSIENT = ("locked", "busy", "disk i/o", "database or disk is full", "unable to open")
T = TypeVar("T")


class Connection:
    """A sqlite3 connection confined to one thread; every call is handed to that thread and awaited."""

    def __init__(self, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._conn: sqlite3.Connection | None = None

    async def open(self, path: str, pragmas: Sequence[str]) -> None:
        def connect() -> None:
            # isolation_level=None: no implicit BEGINs; transactions are explicit (BEGIN IMMEDIATE below).
            conn = sqlite3.connect(path, isolation_level=None)
            try:
                for pragma in pragmas:
                    conn.execute(pragma)
            except BaseException:
                conn.close()
                raise
            self._conn = conn

        await self._call(connect)

    async def _call(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Call fn(connection) on the connection's thread."""
        return await self._call(lambda: fn(self._connection()))

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise sqlite3.ProgrammingError("connection is closed")
        return self._conn

    async def fetch(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return await self.run(lambda c: c.execute(text, params).fetchall())

    async def execute(self, text: str, params: Sequence[Any] = ()) -> int:
        return await self.run(lambda c: c.execute(text, params).rowcount)

    async def close(self) -> None:
        def close() -> None:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

        try:
            await self._call(close)
        finally:
            self._pool.shutdown(wait=False)


def _execute_many(conn: sqlite3.Connection, text: str, rows: Sequence[Sequence[Any]]) -> None:
    """Multi-row INSERTs rather than sqlite3's executemany(): see sql.multi_row for why."""
    if not rows:
        return
    for part in sql.row_chunks(rows, len(rows[0])):
        conn.execute(sql.multi_row(text, len(part)), [value for row in part for value in row])


def _drive_sync(conn: sqlite3.Connection, steps: Steps) -> ApplyResult:
    """Drive a transaction body synchronously, on the connection's own thread."""
    result: Any = None
    while True:
        try:
            step: Step = steps.send(result)
        except StopIteration as stop:
            out: ApplyResult = stop.value
            return out
        if step.kind == "fetch":
            result = conn.execute(step.text, step.params).fetchall()
        elif step.kind == "execute":
            result = conn.execute(step.text, step.params).rowcount
        else:
            _execute_many(conn, step.text, step.params)
            result = None


def _transaction(conn: sqlite3.Connection, body: Callable[[sqlite3.Connection], T]) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        out = body(conn)
        conn.execute("COMMIT")
    except BaseException:
        with suppress(sqlite3.Error):  # the failure may already have ended the transaction
            conn.execute("ROLLBACK")
        raise
    return out


class _SQLiteTx:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def fetch(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return await self._conn.fetch(text, params)

    async def execute(self, text: str, params: Sequence[Any] = ()) -> int:
        return await self._conn.execute(text, params)

    async def executemany(self, text: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._conn.run(lambda c: _execute_many(c, text, rows))


class SQLiteStore(SQLStore):
    dialect = sql.SQLITE

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._writer: Connection | None = None
        self._reader: Connection | None = None
        self._checkpointer: Connection | None = None
        self._checkpoint_task: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()

    def _error(self, exc: BaseException) -> StoreError:
        text = str(exc)
        transient = isinstance(exc, sqlite3.OperationalError) and any(t in text.lower() for t in _TRANSIENT)
        hint = None if transient else "the file may be damaged, read-only, or not a multicluster database"
        return StoreError(f"sqlite store {self.path}: {text}", transient=transient, hint=hint)

    async def _connect(self, *, read_only: bool) -> Connection:
        conn = Connection("sqlite-reader" if read_only else "sqlite-writer")
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
            await conn.open(self.path, pragmas)
        except BaseException:
            await conn.close()  # its thread would keep the process alive
            raise
        return conn

    async def open(self) -> None:
        if self._writer is not None:
            return
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._writer = await self._connect(read_only=False)
            if await self._writer.fetch(schema.OUTDATED["sqlite"]):
                log.warning("sqlite store %s: %s", self.path, schema.REBUILD_NOTICE)
                for stmt in schema.DROP_OUTDATED:
                    await self._writer.execute(stmt)
            for stmt in schema.for_sqlite():
                await self._writer.execute(stmt)
            # An in-memory database is private to its connection, so reads must share the writer's.
            self._reader = self._writer if self.path == ":memory:" else await self._connect(read_only=True)
            if self.path != ":memory:":
                self._checkpointer = Connection("sqlite-checkpoints")
                await self._checkpointer.open(self.path, [f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}"])
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
            with suppress(sqlite3.Error):
                await checkpointer.close()
        writer, reader = self._writer, self._reader
        self._writer = self._reader = None
        for conn in {id(c): c for c in (reader, writer) if c is not None}.values():
            with suppress(sqlite3.Error):
                await conn.close()

    def _conn(self, reader: bool) -> Connection:
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
            return await self._conn(reader=True).fetch(text, params)
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    async def _run_steps(self, steps: Steps) -> ApplyResult:
        """The whole transaction body on the writer's thread, in one hand-off."""
        async with self._write_lock:
            try:
                return await self._conn(reader=False).run(
                    functools.partial(_transaction, body=functools.partial(_drive_sync, steps=steps)))
            except sqlite3.Error as exc:
                raise self._error(exc) from exc
