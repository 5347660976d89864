"""Where the SQLite writer connection runs: a thread (Connection) or a child process (WriterProcess), and the jobs
sent to it.

The writer connection lives in a child process rather than on a thread for a file: sqlite3 needs the GIL to bind
every parameter and to pick up every step's result, and during an initial sync the event loop thread holds the GIL
most of the time parsing list pages, so a writer thread spends much of its time waiting for it. Batches travel to
the child as MessagePack arrays (see encode). store.sqliteWriter: thread (MULTICLUSTER_SQLITE_WRITER=thread) keeps
the thread.

Each job is a module-level function (or a partial of one) taking the connection, so it pickles by name; apply_job
plans and writes a whole batch in one transaction in one hand-off, and chained batches (`after`) never overtake a
batch that failed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import multiprocessing
import multiprocessing.connection
import os
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import suppress
from typing import Any, TypeVar, cast

import msgspec

from multicluster.gvr import GVR
from multicluster.store import queries, sql
from multicluster.store.base import ApplyResult, Change, Delete, Mutation, Row
from multicluster.store.engine import Steps, prepare
from multicluster.store.sql import Step

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
            size += queries.row_cost(row)
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


def next_seq() -> int:
    """A new batch sequence number (see apply_job's `after`)."""
    return next(_SEQ)


def pack_changes(changes: Sequence[Change], batch: Sequence[Mutation]) -> bytes:
    """A batch's change log entries for the way back from the writer process, without what the parent already
    holds: an upsert's object, labels and fields are those of a mutation in `batch` (the batch as decoded here,
    in the order the parent sent it), so the entry names that mutation's index and unpack_changes puts them back
    from the parent's copy; a deletion's last state, read from the rows, travels whole. Pickling the entries
    whole sent every object of an initial sync back across the pipe."""
    where = {id(m.object): i for i, m in enumerate(batch) if isinstance(m, Row)}
    out: list[tuple[Any, ...]] = []
    for c in changes:
        g = c.gvr
        head = (c.cluster, c.seq, c.type, g.group, g.version, g.resource, c.namespace, c.name, c.resource_version,
                _plain_or_none(c.prev_labels), _plain_or_none(c.prev_fields))
        i = where.get(id(c.object))
        m = batch[i] if i is not None else None
        if isinstance(m, Row) and c.type != "DELETED" and m.labels is c.labels and m.fields is c.fields:
            out.append((*head, i))
        else:
            out.append((*head, c.object, _plain(c.labels), _plain(c.fields)))
    return _PACK.encode(out)


Packed = list[list[Any]]
"""pack_changes' entries as decoded in the parent (unpack_entries), before any Change is built."""


def unpack_entries(payload: bytes) -> Packed:
    return cast(Packed, _UNPACK.decode(payload))


def last_positions(entries: Packed) -> dict[str, int]:
    """The last position per cluster of packed entries."""
    out: dict[str, int] = {}
    for t in entries:
        if t[1] > out.get(t[0], 0):
            out[t[0]] = t[1]
    return out


def unpack_changes(entries: Packed, mutations: Sequence[Mutation]) -> tuple[Change, ...]:
    """Packed entries as Changes, each upsert's object, labels and fields taken from its mutation in `mutations`
    (the batch the parent sent)."""
    out: list[Change] = []
    for t in entries:
        key = (t[3], t[4], t[5])
        gvr = _GVRS.get(key) or _GVRS.setdefault(key, GVR(*key))
        if len(t) == 12:
            m = cast(Row, mutations[t[11]])  # pack_changes names only rows
            obj, labels, fields = m.object, m.labels, m.fields
        else:
            obj, labels, fields = t[11], t[12], t[13]
        out.append(Change(t[2], t[0], gvr, t[6], t[7], t[8], obj, labels, fields, t[9], t[10], seq=t[1]))
    return tuple(out)


def _plain_or_none(values: Mapping[str, str] | None) -> dict[str, str] | None:
    return None if values is None else _plain(values)


def apply_job(conn: sqlite3.Connection, *, batch: bytes | Sequence[Mutation], updated_at: str, seq: int,
              after: int | None, retention: int) -> tuple[ApplyResult, bytes | None, list[str]]:
    """One batch, planned and written in one transaction; returns the result, and the unfit identities. A batch
    that came as bytes (from the parent, to the writer process) gets its change log entries back packed
    (pack_changes) and the result without them."""
    try:
        if after is not None and _OUTCOMES.get(after) is not True:
            raise Skipped("not written because the batch queued before it failed; it will be retried")
        mutations = decode(batch) if isinstance(batch, bytes) else batch
        steps, unfit = prepare(sql.SQLITE, mutations, updated_at, retention=retention)
        result = steps if isinstance(steps, ApplyResult) else \
            _transaction(conn, functools.partial(_drive_sync, steps=steps))
    except BaseException:
        _OUTCOMES[seq] = False
        raise
    finally:
        _OUTCOMES.pop(seq - 64, None)
    _OUTCOMES[seq] = True
    if isinstance(batch, bytes):
        return dataclasses.replace(result, changes=()), pack_changes(result.changes, mutations), unfit
    return result, None, unfit


def execute_many(conn: sqlite3.Connection, text: str, rows: Sequence[Sequence[Any]]) -> None:
    """Multi-row INSERTs rather than sqlite3's executemany(): see sql.multi_row for why."""
    if not rows:
        return
    for part in sql.row_chunks(rows, len(rows[0])):
        conn.execute(sql.multi_row(text, len(part)), [value for row in part for value in row])


_UNIQUE = frozenset({sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY})


def try_insert(conn: sqlite3.Connection, text: str, rows: Sequence[Sequence[Any]]) -> bool:
    try:
        execute_many(conn, text, rows)
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
            result = try_insert(conn, step.text, step.params)
        else:
            execute_many(conn, step.text, step.params)
            result = None


class Skipped(Exception):
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
