"""The embedded store: one SQLite file in WAL mode.

SQLite allows one writer at a time, so there is exactly one writer connection and writes queue on an asyncio
lock instead of on SQLite's busy handler; `BEGIN IMMEDIATE` takes the write lock up front, which is what makes
the read-then-write of apply() safe even if a second process opened the same file. Reads use their own
connection: under WAL they see the last commit and never wait for the writer.

Each connection lives on a thread of its own (sqlite3 blocks). apply() runs its whole transaction on the
writer's thread in one hand-off: awaiting each statement separately cost a trip through the event loop per
statement, and during an initial sync the loop is busy parsing list pages, so a 500-row batch spent half of its
time waiting for the loop to notice that the previous statement had finished.

For a file, the writer connection lives in a child process of its own (sqlite_writer.WriterProcess) rather than on
a thread; store.sqliteWriter: thread (MULTICLUSTER_SQLITE_WRITER=thread) keeps the thread. The store also offers
start_apply (the optional PipelinedStore capability of store.base): a batch queued on the writer behind the one
being written.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import sqlite3
import stat
from collections.abc import AsyncIterator, Awaitable, Sequence
from concurrent.futures.process import BrokenProcessPool
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

from multicluster.errors import StoreError
from multicluster.store import changelog, ownership, schema, sql
from multicluster.store.base import ApplyResult, Mutation
from multicluster.store.engine import SQLStore, Tx, warn_unfit
from multicluster.store.sqlite_writer import (
    Connection,
    Skipped,
    WriterProcess,
    apply_job,
    encode,
    execute_many,
    last_positions,
    next_seq,
    try_insert,
    unpack_changes,
    unpack_entries,
)

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000
_TRANSIENT = ("locked", "busy", "disk i/o", "database or disk is full", "unable to open")


class _SQLiteTx:
    def __init__(self, conn: Connection | WriterProcess) -> None:
        self._conn = conn

    async def fetch(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return await self._conn.fetch(text, params)

    async def execute(self, text: str, params: Sequence[Any] = ()) -> int:
        return await self._conn.execute(text, params)

    async def executemany(self, text: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._conn.run(functools.partial(execute_many, text=text, rows=[tuple(r) for r in rows]))

    async def insert_new(self, text: str, rows: Sequence[Sequence[Any]]) -> bool:
        return await self._conn.run(functools.partial(try_insert, text=text, rows=[tuple(r) for r in rows]))


# The store mirrors every object the daemon syncs, Secrets included when configured, so no other local user may
# read its files. SQLite creates the -wal, -shm and -journal files with the mode of the database file, hence
# creating that one 0600 before SQLite opens it is enough for the files to come.


def _create_private(path: str) -> bool:
    """Create the database file (and its directory) readable by its owner only; False if it existed."""
    db = Path(path)
    db.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(db, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    except FileExistsError:
        return False
    return True


def _narrow(path: str) -> None:
    """Make files an earlier daemon left readable by others owner-only, saying so once."""
    db = Path(path)
    narrowed, stuck = [], []
    for f in (db, *(Path(f"{db}{suffix}") for suffix in ("-wal", "-shm", "-journal"))):
        try:
            mode = stat.S_IMODE(f.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            try:
                f.chmod(0o600)
                narrowed.append(f"{f.name} ({mode:04o})")
            except OSError as exc:  # another user's file, a read-only mount: the store still works
                stuck.append(f"{f.name} ({mode:04o}: {exc.strerror})")
    if narrowed:
        log.warning("sqlite store %s: %s open to other users; narrowed to 0600 (owner only)", path,
                    ", ".join(narrowed))
    if stuck:
        log.warning("sqlite store %s: %s open to other users and could not be narrowed; make them owner-only "
                    "(chmod 600) or move the store", path, ", ".join(stuck))


class SQLiteStore(SQLStore):
    dialect = sql.SQLITE

    def __init__(self, path: Path | str, retention: int = changelog.DEFAULT_RETENTION, *,
                 writer: str = "process") -> None:
        self.path = str(path)
        self.writer_mode = writer  # store.sqliteWriter: "thread" keeps the writer connection in this process
        self.retention = retention
        self._writer: Connection | WriterProcess | None = None
        self._reader: Connection | None = None
        self._checkpointer: Connection | None = None
        self._checkpoint_task: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()

    def _error(self, exc: BaseException) -> StoreError:
        if isinstance(exc, BrokenProcessPool):
            return StoreError(f"sqlite store {self.path}: the writer process died; starting a new one",
                              transient=True)
        text = str(exc)
        transient = isinstance(exc, sqlite3.OperationalError) and any(t in text.lower() for t in _TRANSIENT)
        hint = None if transient else "the file may be damaged, read-only, or not a multicluster database"
        return StoreError(f"sqlite store {self.path}: {text}", transient=transient, hint=hint)

    async def _connect(self, *, read_only: bool) -> Connection | WriterProcess:
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
        if not read_only and self.path != ":memory:" and self.writer_mode != "thread":
            proc = WriterProcess()
            try:
                await proc.open(self.path, pragmas)
                return proc
            except BrokenProcessPool:
                # multiprocessing's spawn re-imports the parent's __main__ in the child; a main it cannot import
                # (a script piped to python) or not guarded by `if __name__ == "__main__"` kills the child.
                await proc.close()
                log.warning("sqlite store %s: could not start the writer process; writing from a thread instead",
                            self.path)
            except BaseException:
                await proc.close()
                raise
        conn = Connection("sqlite-reader" if read_only else "sqlite-writer")
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
            where = f"sqlite store {self.path}"
            if self.path != ":memory:" and not _create_private(self.path):
                # The file may hold someone else's tables: look before the writer turns on WAL (a lasting change
                # to the file) or the files are narrowed.
                probe = Connection("sqlite-probe")
                try:
                    await probe.open(self.path, [f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}", "PRAGMA query_only = ON"])
                    await ownership.survey(probe, sql.SQLITE, where)
                finally:
                    await probe.close()
            self._writer = await self._connect(read_only=False)
            await ownership.claim(self._writer, sql.SQLITE, where)
            if self.path != ":memory:":
                _narrow(self.path)
            for stmt in schema.for_sqlite():
                await self._writer.execute(stmt)
            # An in-memory database is private to its connection, so reads must share the writer's.
            if self.path == ":memory:":
                assert isinstance(self._writer, Connection)
                self._reader = self._writer
            else:
                reader = await self._connect(read_only=True)
                assert isinstance(reader, Connection)
                self._reader = reader
            if self.path != ":memory:":
                self._checkpointer = Connection("sqlite-checkpoints")
                await self._checkpointer.open(self.path, [f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}"])
                self._checkpoint_task = asyncio.get_running_loop().create_task(
                    self._checkpoints(), name="sqlite-checkpoints")
        except (sqlite3.Error, OSError, BrokenProcessPool) as exc:
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

    def _conn(self, reader: bool) -> Connection | WriterProcess:
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
            except (sqlite3.Error, BrokenProcessPool) as exc:
                raise self._error(exc) from exc
            try:
                yield _SQLiteTx(conn)
                await conn.execute("COMMIT")
            except BaseException as exc:
                with suppress(sqlite3.Error):  # the failure may already have ended the transaction
                    await conn.execute("ROLLBACK")
                if isinstance(exc, (sqlite3.Error, BrokenProcessPool)):
                    raise self._error(exc) from exc
                raise

    async def fetch(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return await self._conn(reader=True).fetch(text, params)
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    async def fetch_bounded(self, text: str, params: Sequence[Any], max_bytes: int) -> list[tuple[Any, ...]]:
        try:
            return await self._conn(reader=True).fetch_bounded(text, params, max_bytes)
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    async def apply(self, mutations: Sequence[Mutation]) -> ApplyResult:
        """The whole batch, planned and written in one transaction, in one hand-off to the writer."""
        async with self._write_lock:
            fut = self._submit(mutations, None)[1]
        return await self._finish(fut, mutations)

    def start_apply(
        self, mutations: Sequence[Mutation], after: int | None
    ) -> tuple[int, Awaitable[ApplyResult]] | None:
        """Queue a batch on the writer now, behind whatever is queued there already, and return at once.

        The writer then goes from one batch to the next without waiting for the event loop to hand it the next
        one (that wait was a quarter of the writer thread's time during an initial sync). `after` chains it to
        the batch queued just before (the number this returned for it): if that one fails, this one is skipped
        (a transient error) instead of overtaking it, so a delete can never be applied before the upsert it
        follows. None if a transaction() holds the writer right now; the caller then uses apply().
        """
        if self._write_lock.locked():
            return None
        seq, fut = self._submit(mutations, after)
        return seq, self._finish(fut, mutations)

    def _submit(self, mutations: Sequence[Mutation], after: int | None) -> tuple[int, asyncio.Future[Any]]:
        writer = self._conn(reader=False)
        batch: bytes | Sequence[Mutation] = encode(mutations) if isinstance(writer, WriterProcess) else mutations
        seq = next_seq()
        job = functools.partial(apply_job, batch=batch, updated_at=sql.now_rfc3339(), seq=seq, after=after,
                                retention=self.retention)
        return seq, writer.submit(job)

    async def _finish(self, fut: asyncio.Future[tuple[ApplyResult, bytes | None, list[str]]],
                      mutations: Sequence[Mutation]) -> ApplyResult:
        try:
            result, packed, unfit = await fut
        except (sqlite3.Error, BrokenProcessPool) as exc:
            raise self._error(exc) from exc
        except Skipped as exc:
            raise StoreError(f"sqlite store {self.path}: {exc}", transient=True) from None
        warn_unfit(unfit)
        if packed is not None:
            entries = unpack_entries(packed)
            if self._positions is not None and self._positions(last_positions(entries)):
                return result  # nobody would see the entries: they are not built
            result = dataclasses.replace(result, changes=unpack_changes(entries, mutations))
        return self._published(result)
