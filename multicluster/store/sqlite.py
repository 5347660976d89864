"""The embedded store: one SQLite file in WAL mode.

SQLite allows one writer at a time, so there is exactly one writer connection and writes queue on an asyncio
lock instead of on SQLite's busy handler; `BEGIN IMMEDIATE` takes the write lock up front, which is what makes
the read-then-write of apply() safe even if a second process opened the same file. Reads use their own
connection: under WAL they see the last commit and never wait for the writer.

Each connection lives on a thread of its own (sqlite3 blocks). apply() runs its whole transaction on the
writer's thread in one hand-off: awaiting each statement separately cost a trip through the event loop per
statement, and during an initial sync the loop is busy parsing list pages, so a 500-row batch spent half of its
time waiting for the loop to notice that the previous statement had finished.

For a file, the writer connection lives in a child process of its own (WriterProcess) rather than on a thread:
sqlite3 needs the GIL to bind every parameter and to pick up every step's result, and during an initial sync the
event loop thread holds the GIL most of the time parsing list pages, so the writer thread spent half of its
time waiting for it (measured: 1.9 CPU-seconds of work took 3.4-4.3 s of wall time per 60,000 ConfigMaps). Batches
travel to it as MessagePack arrays (see encode). MULTICLUSTER_SQLITE_WRITER=thread keeps the thread.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import multiprocessing
import multiprocessing.connection
import os
import sqlite3
import stat
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from multicluster.errors import StoreError
from multicluster.gvr import GVR
from multicluster.store import ownership, schema, sql
from multicluster.store.base import ApplyResult, Delete, Mutation, Row
from multicluster.store.engine import SQLStore, Step, Steps, Tx, prepare, warn_unfit

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000
WRITER_ENV = "MULTICLUSTER_SQLITE_WRITER"  # "thread": the writer connection on a thread instead of a process
_TRANSIENT = ("locked", "busy", "disk i/o", "database or disk is full", "unable to open")
T = TypeVar("T")


class _Jobs:
    """Calls on a connection that lives elsewhere (a thread, a process), run in the order they are submitted."""

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        raise NotImplementedError

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self.submit(fn)

    async def fetch(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return await self.run(functools.partial(_fetch, text=text, params=list(params)))

    async def execute(self, text: str, params: Sequence[Any] = ()) -> int:
        return await self.run(functools.partial(_execute, text=text, params=list(params)))

    async def fetch_bounded(self, text: str, params: Sequence[Any], max_bytes: int) -> list[tuple[Any, ...]]:
        return await self.run(functools.partial(_fetch_bounded, text=text, params=list(params), max_bytes=max_bytes))


class Connection(_Jobs):
    """A sqlite3 connection confined to one thread; every call is handed to that thread and awaited."""

    def __init__(self, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._conn: sqlite3.Connection | None = None

    async def open(self, path: str, pragmas: Sequence[str]) -> None:
        def connect() -> None:
            self._conn = _connect(path, pragmas)

        await self._call(connect)

    async def _call(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Queue fn(connection) on the connection's thread now; it runs after everything queued before it."""
        return asyncio.get_running_loop().run_in_executor(self._pool, lambda: fn(self._connection()))

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise sqlite3.ProgrammingError("connection is closed")
        return self._conn

    async def close(self) -> None:
        def close() -> None:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

        try:
            await self._call(close)
        finally:
            self._pool.shutdown(wait=False)


# ------------------------------------------------------------------------------------------ writer process

_CHILD: sqlite3.Connection | None = None  # the writer connection, in the writer process


def _connect(path: str, pragmas: Sequence[str]) -> sqlite3.Connection:
    # isolation_level=None: no implicit BEGINs; transactions are explicit (BEGIN IMMEDIATE).
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in pragmas:
            conn.execute(pragma)
    except BaseException:
        conn.close()
        raise
    return conn


def _child_open(path: str, pragmas: Sequence[str]) -> None:
    global _CHILD
    threading.Thread(target=_exit_with_parent, name="exit-with-parent", daemon=True).start()
    _CHILD = _connect(path, pragmas)


def _exit_with_parent() -> None:
    """Leave when the daemon is gone, however it went. A spawned pool worker holds both ends of its job pipe, so a
    SIGKILLed daemon never closes it and the worker would wait for jobs forever, keeping the database open. An open
    transaction is simply not committed (WAL)."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(0)


def _child_close() -> None:
    global _CHILD
    conn, _CHILD = _CHILD, None
    if conn is not None:
        conn.close()


def _in_child(fn: Callable[[sqlite3.Connection], T]) -> T:
    if _CHILD is None:  # opening it failed: transient ("unable to open"), the next writer process retries
        raise sqlite3.OperationalError("unable to open the database in the writer process")
    return fn(_CHILD)


class WriterProcess(_Jobs):
    """The writer connection in a child process, with Connection's interface. Jobs are module-level functions
    (or partials of them) taking the connection; one worker runs them in the order they were submitted. A dead
    child is replaced, and its connection reopened, on the next call."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._open_args: tuple[str, list[str]] | None = None
        self._opening: asyncio.Future[None] | None = None

    async def open(self, path: str, pragmas: Sequence[str]) -> None:
        self._open_args = (path, list(pragmas))
        self._ensure()
        assert self._opening is not None
        await self._opening

    def _ensure(self) -> ProcessPoolExecutor:
        """The worker, started (and its connection opened, as its first job) if there is none."""
        if self._pool is None:
            if self._open_args is None:
                raise sqlite3.ProgrammingError("connection is closed")
            # spawn, not fork: the daemon has threads (a forked child could inherit a lock one of them held).
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
            path, pragmas = self._open_args
            self._opening = asyncio.get_running_loop().run_in_executor(self._pool, _child_open, path, pragmas)
            # Awaited by open(); after a restart a failure shows on the jobs queued behind it instead.
            self._opening.add_done_callback(lambda f: f.cancelled() or f.exception())
        return self._pool

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        pool = self._ensure()
        try:
            fut = asyncio.get_running_loop().run_in_executor(pool, _in_child, fn)
        except BrokenProcessPool:
            # The child died while idle (the OOM killer, a signal): nothing queued was lost, so this job simply
            # goes to a new child instead of failing.
            self._drop(pool)
            pool = self._ensure()
            fut = asyncio.get_running_loop().run_in_executor(pool, _in_child, fn)
        fut.add_done_callback(functools.partial(self._drop_if_broken, pool))
        return fut

    def _drop_if_broken(self, pool: ProcessPoolExecutor, fut: asyncio.Future[Any]) -> None:
        """A child that dies with jobs queued breaks its pool for good: let the next call start a new one (the
        callers of those jobs see the error)."""
        if not fut.cancelled() and isinstance(fut.exception(), BrokenProcessPool):
            self._drop(pool)

    def _drop(self, pool: ProcessPoolExecutor) -> None:
        if self._pool is pool:
            self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)

    async def close(self) -> None:
        self._open_args = None
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            with suppress(BrokenProcessPool):
                await asyncio.get_running_loop().run_in_executor(pool, _child_close)
        finally:
            await asyncio.get_running_loop().run_in_executor(None, functools.partial(pool.shutdown, wait=True))


def _fetch(conn: sqlite3.Connection, text: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(text, params).fetchall()


def _fetch_bounded(conn: sqlite3.Connection, text: str, params: Sequence[Any], max_bytes: int
                   ) -> list[tuple[Any, ...]]:
    """Rows one at a time until their bytes pass max_bytes (see SQLStore.fetch_bounded)."""
    out: list[tuple[Any, ...]] = []
    size = 0
    cur = conn.execute(text, params)
    try:
        for row in cur:
            out.append(row)
            size += sql.row_cost(row)
            if size > max_bytes and len(out) > 1:
                break
    finally:
        cur.close()
    return out


def _execute(conn: sqlite3.Connection, text: str, params: Sequence[Any]) -> int:
    return conn.execute(text, params).rowcount


# A batch on its way to the writer process, as MessagePack arrays: 0.7 µs a row to encode and 1.6 to decode,
# against 4 and 5 for pickled dataclasses.
_GVRS: dict[tuple[str, str, str], GVR] = {}
_PACK = msgspec.msgpack.Encoder()
_UNPACK = msgspec.msgpack.Decoder()


def _plain(values: Mapping[str, str]) -> dict[str, str]:
    return values if type(values) is dict else dict(values)


def encode(mutations: Sequence[Mutation]) -> bytes:
    out: list[tuple[Any, ...]] = []
    for m in mutations:
        g = m.gvr
        if isinstance(m, Row):
            out.append((m.cluster, g.group, g.version, g.resource, m.namespace, m.name, m.resource_version,
                        m.uid, m.kind, m.object, _plain(m.labels), _plain(m.fields), m.owner, m.created_at, m.new))
        else:
            out.append((m.cluster, g.group, g.version, g.resource, m.namespace, m.name, m.resource_version))
    return _PACK.encode(out)


def decode(payload: bytes) -> list[Mutation]:
    out: list[Mutation] = []
    for t in _UNPACK.decode(payload):
        key = (t[1], t[2], t[3])
        gvr = _GVRS.get(key) or _GVRS.setdefault(key, GVR(*key))
        if len(t) == 7:
            out.append(Delete(t[0], gvr, t[4], t[5], t[6]))
        else:
            # Positional, in Row's field order (see sync.to_row).
            out.append(Row(t[0], gvr, t[4], t[5], t[7], t[8], t[6], t[9], t[10], t[11], t[12], t[13], t[14]))
    return out


# Outcome of every recent batch by sequence number, where the batches run (the writer thread or process): a
# batch chained to one that failed is skipped instead of overtaking it.
_OUTCOMES: dict[int, bool] = {}
_SEQ = itertools.count(1)


def _apply_job(conn: sqlite3.Connection, *, batch: bytes | Sequence[Mutation], updated_at: str, seq: int,
               after: int | None) -> tuple[ApplyResult, list[str]]:
    """One batch, planned and written in one transaction; returns the result and the unfit identities."""
    try:
        if after is not None and _OUTCOMES.get(after) is not True:
            raise _Skipped("not written because the batch queued before it failed; it will be retried")
        steps, unfit = prepare(sql.SQLITE, decode(batch) if isinstance(batch, bytes) else batch, updated_at)
        result = steps if isinstance(steps, ApplyResult) else \
            _transaction(conn, functools.partial(_drive_sync, steps=steps))
    except BaseException:
        _OUTCOMES[seq] = False
        raise
    finally:
        _OUTCOMES.pop(seq - 64, None)
    _OUTCOMES[seq] = True
    return result, unfit


def _execute_many(conn: sqlite3.Connection, text: str, rows: Sequence[Sequence[Any]]) -> None:
    """Multi-row INSERTs rather than sqlite3's executemany(): see sql.multi_row for why."""
    if not rows:
        return
    for part in sql.row_chunks(rows, len(rows[0])):
        conn.execute(sql.multi_row(text, len(part)), [value for row in part for value in row])


_UNIQUE = frozenset({sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY})


def _try_insert(conn: sqlite3.Connection, text: str, rows: Sequence[Sequence[Any]]) -> bool:
    try:
        _execute_many(conn, text, rows)
    except sqlite3.IntegrityError as exc:
        if exc.sqlite_errorcode in _UNIQUE:
            return False
        raise
    return True


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
        elif step.kind == "insert_new":
            result = _try_insert(conn, step.text, step.params)
        else:
            _execute_many(conn, step.text, step.params)
            result = None


class _Skipped(Exception):
    """A chained batch whose predecessor failed: not run, so that it cannot overtake it."""


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
    def __init__(self, conn: Connection | WriterProcess) -> None:
        self._conn = conn

    async def fetch(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return await self._conn.fetch(text, params)

    async def execute(self, text: str, params: Sequence[Any] = ()) -> int:
        return await self._conn.execute(text, params)

    async def executemany(self, text: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._conn.run(functools.partial(_execute_many, text=text, rows=[tuple(r) for r in rows]))

    async def insert_new(self, text: str, rows: Sequence[Sequence[Any]]) -> bool:
        return await self._conn.run(functools.partial(_try_insert, text=text, rows=[tuple(r) for r in rows]))


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

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
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
        if not read_only and self.path != ":memory:" and os.environ.get(WRITER_ENV, "process") != "thread":
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
        return await self._finish(fut)

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
        return seq, self._finish(fut)

    def _submit(self, mutations: Sequence[Mutation], after: int | None) -> tuple[int, asyncio.Future[Any]]:
        writer = self._conn(reader=False)
        batch: bytes | Sequence[Mutation] = encode(mutations) if isinstance(writer, WriterProcess) else mutations
        seq = next(_SEQ)
        job = functools.partial(_apply_job, batch=batch, updated_at=sql.now_rfc3339(), seq=seq, after=after)
        return seq, writer.submit(job)

    async def _finish(self, fut: asyncio.Future[tuple[ApplyResult, list[str]]]) -> ApplyResult:
        try:
            result, unfit = await fut
        except (sqlite3.Error, BrokenProcessPool) as exc:
            raise self._error(exc) from exc
        except _Skipped as exc:
            raise StoreError(f"sqlite store {self.path}: {exc}", transient=True) from None
        warn_unfit(unfit)
        return result
