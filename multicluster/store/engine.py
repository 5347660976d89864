"""The Store contract over any DB-API-ish async driver: the part of both engines that is not about connecting.

SQLiteStore and MySQLStore supply four primitives (a write transaction, a read, schema application, close);
everything the contract says about batches, guards and pagination lives here once, so the two engines cannot
drift apart in behaviour, only in speed.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Collection, Generator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, cast

from multicluster.gvr import GVR
from multicluster.store import changelog, queries, sql
from multicluster.store.base import (
    ApplyResult,
    Change,
    ChangeListener,
    Delete,
    LogPosition,
    Mutation,
    Page,
    Pending,
    PositionListener,
    Query,
    Row,
    StoredObject,
    SyncState,
    sort_key,
)
from multicluster.store.sql import Step

log = logging.getLogger(__name__)

DELETE_CHUNK = 1000  # rows per transaction when dropping a cluster: bounded undo logs, TiDB's txn size limit


class Tx(Protocol):
    """One open write transaction."""

    async def fetch(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    async def execute(self, text: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns the affected row count."""

    async def executemany(self, text: str, rows: Sequence[Sequence[Any]]) -> object:
        """Insert many rows (INSERT ... VALUES with one row of placeholders)."""

    async def insert_new(self, text: str, rows: Sequence[Sequence[Any]]) -> bool:
        """executemany() of a plain INSERT; False, not an error, if a unique key (identity or id) refused a
        row. Statements that went before the refused one may have written: roll back to a savepoint."""


Steps = Generator[Step, Any, ApplyResult]


def apply_steps(d: sql.Dialect, p: sql.WritePlan, updated_at: str, new_ids: Sequence[int] | None = None,
                retention: int = changelog.DEFAULT_RETENTION) -> Steps:
    """The body of one apply() transaction: the resourceVersion guard, then rows, labels and fields, then the
    change log entries of what was written (see changelog.py).

    `new_ids`: ids reserved for the batch's rows if all of them are hinted new (MySQL; SQLite numbers rows
    itself). Such a batch, most of an initial sync, is first tried as plain inserts (see _insert_new).
    """
    # Sorted, so two replicas writing overlapping batches lock rows in the same order (fewer deadlocks).
    keys = sorted(p.winners)
    if (d.name == "sqlite" or new_ids is not None) and all_new(p.winners.values()):
        done = yield from _insert_new(d, p, keys, updated_at, new_ids, retention)
        if done is not None:
            return done
    lock = " FOR UPDATE" if d.name == "mysql" else ""  # SQLite: BEGIN IMMEDIATE already holds the lock
    dec = sql.decide(p, (yield from _lookup(d, keys, lock)))
    ids = dict(dec.replaced)
    fresh = [key for key, _ in dec.rows if key not in ids]
    if fresh and not lock:
        # SQLite: BEGIN IMMEDIATE keeps every other writer out, so new rows are numbered here, after the current
        # last id (taken before this batch's deletes, so an id is never reused within the transaction). Reading
        # them back instead would cost the writer thread the GIL once per row.
        top = (yield Step("fetch", "SELECT COALESCE(MAX(id), 0) FROM resources", ()))[0][0]
        ids.update((key, int(top) + 1 + i) for i, key in enumerate(fresh))
    # The last stored state of each deleted row, for its DELETED entry in the change log.
    gone: dict[int, tuple[int, bytes]] = {}
    for part in sql.chunks(dec.deletes):
        for rid, rv, obj in (yield Step("fetch", d.sql("SELECT id, resource_version, object FROM resources "
                                                       f"WHERE id IN {sql.ids_in(len(part))}"), part)):
            gone[int(rid)] = (int(rv), bytes(obj))
    for part in sql.chunks(dec.deletes):
        yield Step("execute", d.sql(f"DELETE FROM resources WHERE id IN {sql.ids_in(len(part))}"), part)
    if dec.rows and not lock:
        # A replaced row gets NULL: its identity conflict turns the insert into an update of the row as it is,
        # id included (an explicit id would collide with the row's own primary key first).
        numbered = set(fresh)
        yield Step("executemany", sql.upsert_resources(d, with_id=True),
                   [(ids[key] if key in numbered else None, *sql.resource_params(r, updated_at))
                    for key, r in dec.rows])
    elif dec.rows:
        yield Step("executemany", sql.upsert_resources(d), [sql.resource_params(r, updated_at) for _, r in dec.rows])
    if fresh and lock:
        # MySQL: AUTO_INCREMENT assigned the ids (other replicas may be inserting too); read them back through
        # the identity, and keep only the rows that are ours: another replica may have inserted one first and
        # the guard in the upsert kept its newer version, whose labels are its own to write.
        now = yield from _lookup(d, fresh, lock)
        kept: list[tuple[sql.Ident, Row]] = []
        for key, r in dec.rows:
            if key not in ids:
                found = now.get(key)
                if found is None or found[1] != r.resource_version:
                    dec.skipped += 1
                    continue
                ids[key] = found[0]
            kept.append((key, r))
        dec.rows = kept
    existed = set(dec.replaced.values())
    # MySQL: a row that did not exist when we looked may have been inserted by another replica, with its label
    # rows, before the guard let ours win; those are cleared rather than compared.
    unsure = [] if not lock else [ids[key] for key in fresh if key in ids]
    before: dict[str, dict[int, dict[str, str]]] = {}
    for table, attr in (("resource_labels", "labels"), ("resource_fields", "fields")):
        old = before[attr] = yield from _pairs(d, table, sorted(existed | gone.keys()))
        clear, insert = sql.index_changes([(ids[key], getattr(r, attr)) for key, r in dec.rows], existed, old)
        for part in sql.chunks([*clear, *unsure, *dec.deletes]):
            yield Step("execute", d.sql(f"DELETE FROM {table} WHERE id IN {sql.ids_in(len(part))}"), part)
        if insert:
            yield Step("executemany", sql.insert_index(d, table), insert)
    pending: list[Pending] = []
    for key, r in dec.rows:
        rid = ids[key]
        replaced = key in dec.replaced
        pending.append(Pending(
            "MODIFIED" if replaced else "ADDED", r.cluster, r.gvr, r.namespace, r.name, r.resource_version,
            r.object, r.labels, r.fields, before["labels"].get(rid, {}) if replaced else None,
            before["fields"].get(rid, {}) if replaced else None))
    for rid, (cluster, gvr, namespace, name), delete_rv in dec.deleted:
        rv, obj = gone.get(rid, (0, b"{}"))
        labels, fields = before["labels"].get(rid, {}), before["fields"].get(rid, {})
        pending.append(Pending("DELETED", cluster, gvr, namespace, name, delete_rv or rv, obj,
                               labels, fields, labels, fields))
    changes = yield from changelog.append(d, pending, retention)
    return ApplyResult(written=len(dec.rows), deleted=len(dec.deletes), skipped=dec.skipped, changes=tuple(changes))


def all_new(mutations: Collection[Mutation]) -> bool:
    """Whether a batch is only rows hinted new, the batches apply() first tries as plain inserts."""
    return bool(mutations) and all(type(m) is Row and m.new for m in mutations)


def _insert_new(d: sql.Dialect, p: sql.WritePlan, keys: Sequence[sql.Ident], updated_at: str,
                new_ids: Sequence[int] | None, retention: int) -> Generator[Step, Any, ApplyResult | None]:
    """Rows the informer had never seen, inserted without looking up any of them first (on MySQL a lookup and
    the read-back of AUTO_INCREMENT ids were 25 % of the server's work in an initial sync). None if one of them
    exists after all: the attempt is rolled back and the caller checks every row."""
    rows = [cast(Row, p.winners[key]) for key in keys]
    if new_ids is None:
        # SQLite: BEGIN IMMEDIATE keeps every other writer out; number the rows after the current last id.
        top = int((yield Step("fetch", "SELECT COALESCE(MAX(id), 0) FROM resources", ()))[0][0])
        new_ids = range(top + 1, top + 1 + len(rows))
    yield Step("execute", "SAVEPOINT new_rows", ())
    if not (yield Step("insert_new", sql.insert_new_resources(d),
                       [(rid, *sql.resource_params(r, updated_at)) for rid, r in zip(new_ids, rows, strict=False)])):
        yield Step("execute", "ROLLBACK TO SAVEPOINT new_rows", ())
        return None
    for table, attr in (("resource_labels", "labels"), ("resource_fields", "fields")):
        _, insert = sql.index_changes([(rid, getattr(r, attr)) for rid, r in zip(new_ids, rows, strict=False)],
                                      set(), {})
        if insert:
            yield Step("executemany", sql.insert_index(d, table), insert)
    changes = yield from changelog.append(d, [
        Pending("ADDED", r.cluster, r.gvr, r.namespace, r.name, r.resource_version, r.object, r.labels,
                r.fields) for r in rows], retention)
    return ApplyResult(written=len(rows), skipped=p.skipped, changes=tuple(changes))


Stored = dict[sql.Ident, tuple[int, int]]


def _lookup(d: sql.Dialect, keys: Sequence[sql.Ident], lock: str) -> Generator[Step, Any, Stored]:
    """identity -> (id, stored resource_version) for the identities that exist."""
    out: Stored = {}
    for (cluster, gvr, namespace), text, params in sql.lookups(d, keys, lock):
        rows = yield Step("fetch", text, params)
        for rid, name, rv in rows:
            out[(cluster, gvr, namespace, name)] = (int(rid), int(rv))
    return out


def _pairs(d: sql.Dialect, table: str, ids: Sequence[int]) -> Generator[Step, Any, dict[int, dict[str, str]]]:
    """id -> {key: value} of the label (or field) rows stored for those ids."""
    out: dict[int, dict[str, str]] = {}
    for part in sql.chunks(ids):
        rows = yield Step("fetch", d.sql(f"SELECT id, `key`, `value` FROM {table} "
                                         f"WHERE id IN {sql.ids_in(len(part))}"), part)
        for rid, key, value in rows:
            out.setdefault(int(rid), {})[key] = value
    return out


def prepare(d: sql.Dialect, mutations: Sequence[Mutation], updated_at: str,
            new_ids: Sequence[int] | None = None,
            retention: int = changelog.DEFAULT_RETENTION) -> tuple[Steps | ApplyResult, list[str]]:
    """A batch's transaction body (or its result already, if nothing in it can be written), and the identities
    left out because they do not fit the columns. Plain data out, so the SQLite writer process can run it."""
    p = sql.plan(mutations)
    unfit = [f"{m.gvr} {m.namespace[:80]}/{m.name[:80]} in cluster {m.cluster[:80]}" for m in p.unfit]
    if not p.winners:
        return ApplyResult(skipped=p.skipped), unfit
    return apply_steps(d, p, updated_at, new_ids, retention), unfit


def warn_unfit(unfit: Sequence[str]) -> None:
    for what in unfit:
        log.warning("not storing %s: identity does not fit the store's columns (non-ASCII where Kubernetes "
                    "allows none, or too long)", what)


async def drive_log(tx: Tx, steps: Generator[Step, Any, list[Change]]) -> list[Change]:
    """Run changelog.append's steps on an async driver."""
    result: Any = None
    while True:
        try:
            step = steps.send(result)
        except StopIteration as stop:
            return cast(list[Change], stop.value)
        result = await _run(tx, step)


async def _run(tx: Tx, step: Step) -> Any:
    if step.kind == "fetch":
        return await tx.fetch(step.text, step.params)
    if step.kind == "execute":
        return await tx.execute(step.text, step.params)
    if step.kind == "insert_new":
        return await tx.insert_new(step.text, step.params)
    await tx.executemany(step.text, step.params)
    return None


async def drive(tx: Tx, steps: Steps) -> ApplyResult:
    """Run a transaction body on an async driver, one awaited statement per step."""
    result: Any = None
    while True:
        try:
            step = steps.send(result)
        except StopIteration as stop:
            return cast(ApplyResult, stop.value)
        result = await _run(tx, step)


class SQLStore(abc.ABC):
    dialect: sql.Dialect
    retention: int = changelog.DEFAULT_RETENTION  # change log entries kept per cluster
    _listener: ChangeListener | None = None
    _positions: PositionListener | None = None

    def listen(self, listener: ChangeListener | None, positions: PositionListener | None = None) -> None:
        self._listener = listener
        self._positions = positions if listener is not None else None

    def _published(self, result: ApplyResult) -> ApplyResult:
        """Hand a committed batch's change log entries to the listener (the watch hub), then return it."""
        self._publish(result.changes)
        return result

    def _publish(self, changes: Sequence[Change]) -> None:
        if changes and self._listener is not None:
            try:
                self._listener(changes)
            except Exception:  # a listener's bug must not turn a committed write into a failed one
                log.exception("change listener failed")

    @abc.abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """A write transaction: committed on exit, rolled back on error; driver errors become StoreError."""

    @abc.abstractmethod
    async def fetch(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One read statement outside any write transaction."""

    async def fetch_bounded(self, text: str, params: Sequence[Any], max_bytes: int) -> list[tuple[Any, ...]]:
        """The rows of a select_page() statement, read until their row_cost() passes `max_bytes`: the row that
        passes it is the last one returned, and never the first (a page holds one row whatever its size, and the
        next row says whether there is more). Engines that can stream a result override this so that a page
        of large objects is never held whole."""
        return await self.fetch(text, params)

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    # ----------------------------------------------------------------------------------------------- writes

    async def _reserve_ids(self, mutations: Sequence[Mutation]) -> Sequence[int] | None:
        """Ids for a batch of rows all hinted new, for an engine that cannot number rows inside the transaction."""
        return None

    async def apply(self, mutations: Sequence[Mutation]) -> ApplyResult:
        """One transaction, a statement at a time on the async driver."""
        new_ids = await self._reserve_ids(mutations)
        steps, unfit = prepare(self.dialect, mutations, sql.now_rfc3339(), new_ids, self.retention)
        warn_unfit(unfit)
        if isinstance(steps, ApplyResult):
            return steps
        async with self.transaction() as tx:
            result = await drive(tx, steps)
        return self._published(result)

    async def _delete_where(self, where: str, params: Sequence[Any]) -> int:
        """Delete matching rows with their labels/fields, in bounded transactions, each logging a DELETED entry
        (with the row's last state) for every row it removes."""
        d = self.dialect
        total = 0
        while True:
            async with self.transaction() as tx:
                found = await tx.fetch(d.sql("SELECT id, cluster, api_group, version, resource, namespace, name, "
                                             f"resource_version, object FROM resources WHERE {where} LIMIT ?"),
                                       [*params, DELETE_CHUNK])
                ids = [row[0] for row in found]
                changes: list[Change] = []
                if ids:
                    marks = sql.ids_in(len(ids))
                    selectors: dict[str, dict[int, dict[str, str]]] = {}
                    for table in ("resource_labels", "resource_fields"):
                        selectors[table] = {}
                        for rid, key, value in await tx.fetch(
                                d.sql(f"SELECT id, `key`, `value` FROM {table} WHERE id IN {marks}"), ids):
                            selectors[table].setdefault(int(rid), {})[key] = value
                    for table in ("resource_labels", "resource_fields", "resources"):
                        await tx.execute(d.sql(f"DELETE FROM {table} WHERE id IN {marks}"), ids)
                    pending = []
                    for rid, cluster, group, version, resource, namespace, name, rv, obj in found:
                        labels = selectors["resource_labels"].get(int(rid), {})
                        fields = selectors["resource_fields"].get(int(rid), {})
                        pending.append(Pending("DELETED", cluster, GVR(group, version, resource), namespace,
                                               name, int(rv), bytes(obj), labels, fields, labels, fields))
                    changes = await drive_log(tx, changelog.append(d, pending, self.retention))
            self._publish(changes)
            total += len(ids)
            if len(ids) < DELETE_CHUNK:
                return total

    async def delete_cluster(self, cluster: str) -> int:
        n = 0
        for gvr in await self.gvrs():  # type by type, so every delete is a prefix of resources_identity
            n += await self._delete_where(*self._gvr_where(cluster, gvr))
        async with self.transaction() as tx:
            await tx.execute(self.dialect.sql("DELETE FROM sync_state WHERE cluster = ?"), [cluster])
        return n

    @staticmethod
    def _gvr_where(cluster: str, gvr: GVR) -> tuple[str, list[str]]:
        return "api_group = ? AND version = ? AND resource = ? AND cluster = ?", [
            gvr.group, gvr.version, gvr.resource, cluster]

    async def delete_gvr(self, cluster: str, gvr: GVR) -> int:
        n = await self._delete_where(*self._gvr_where(cluster, gvr))
        async with self.transaction() as tx:
            await tx.execute(self.dialect.sql("DELETE FROM sync_state WHERE cluster = ? AND api_group = ? "
                                              "AND version = ? AND resource = ?"),
                             [cluster, gvr.group, gvr.version, gvr.resource])
        return n

    async def save_sync_state(self, state: SyncState) -> None:
        g = state.gvr
        async with self.transaction() as tx:
            await tx.execute(sql.upsert_sync_state(self.dialect), [
                state.cluster, g.group, g.version, g.resource, state.status, state.resource_version,
                state.synced_at, state.error[: sql.ERROR_WIDTH], state.objects,
            ])

    # ----------------------------------------------------------------------------------------------- reads

    async def load_index(self, cluster: str, gvr: GVR) -> dict[tuple[str, str], int]:
        if not sql.fits(Delete(cluster, gvr, "", "x")):
            return {}
        rows = await self.fetch(
            self.dialect.sql("SELECT namespace, name, resource_version FROM resources "
                             "WHERE api_group = ? AND version = ? AND resource = ? AND cluster = ?"),
            [gvr.group, gvr.version, gvr.resource, cluster],
        )
        return {(ns, name): int(rv) for ns, name, rv in rows}

    async def query(self, q: Query) -> Page:
        selective = True
        if self.dialect.name == "mysql" and q.limit and (q.labels or q.fields):
            # Two or more positive terms: their intersection is usually narrow even when each is broad, and
            # MariaDB's semi-join plan beats reading the whole type in order to find the few rows in both. So
            # only a single positive term is probed: one bounded statement, whatever the selector holds.
            probes = queries.probes(self.dialect, q)
            selective = len(probes) > 1 or (
                len(probes) == 1 and int((await self.fetch(*probes[0]))[0][0]) <= queries.SELECTIVE)
        text, params = queries.select_page(self.dialect, q, selective=selective)
        rows = await (self.fetch_bounded(text, params, q.max_bytes) if q.max_bytes > 0 else self.fetch(text, params))
        items: list[StoredObject] = []
        size, more = 0, False
        for row in rows:
            cost = queries.row_cost(row) if q.max_bytes > 0 else 0
            if (q.limit and len(items) == q.limit) or (items and size + cost > q.max_bytes > 0):
                more = True  # the page ends here; the continue token resumes at this row
                break
            items.append(_stored(q.gvr, row))
            size += cost
        next_after = sort_key(q.order, items[-1]) if more else None
        remaining: int | None = None
        capped = False
        if q.count_remaining:
            remaining = 0
            if next_after is not None:
                text, params = queries.count_after(self.dialect, q, next_after, q.count_limit)
                remaining = int((await self.fetch(text, params))[0][0])
                if 0 < q.count_limit < remaining:
                    remaining, capped = q.count_limit, True
        return Page(items=items, next_after=next_after, remaining=remaining, remaining_capped=capped)

    async def get(self, cluster: str, gvr: GVR, namespace: str, name: str) -> StoredObject | None:
        if not sql.fits(Delete(cluster, gvr, namespace, name)):
            return None
        text, params = queries.select_one(self.dialect, cluster, gvr, namespace, name)
        rows = await self.fetch(text, params)
        return _stored(gvr, rows[0]) if rows else None

    async def counts(self) -> dict[tuple[str, GVR], int]:
        # Grouped in resources_identity's column order: one pass over that index, no temporary table.
        rows = await self.fetch("SELECT cluster, api_group, version, resource, COUNT(*) FROM resources "
                                "GROUP BY api_group, version, resource, cluster")
        return {(c, GVR(g, v, r)): int(n) for c, g, v, r, n in rows}

    async def namespaces(self, gvr: GVR, clusters: Sequence[str]) -> list[tuple[str, str]]:
        text, params = queries.namespaces_of(gvr, clusters)
        return [(str(c), str(n)) for c, n in await self.fetch(self.dialect.sql(text), params)]

    async def gvrs(self) -> list[GVR]:
        rows = await self.fetch("SELECT DISTINCT api_group, version, resource FROM resources")
        return sorted(GVR(g, v, r) for g, v, r in rows)

    async def log_positions(self) -> dict[str, LogPosition]:
        return changelog.positions(await self.fetch(changelog.positions_query()))

    async def changes_after(self, cluster: str, seq: int, gvr: GVR | None = None, limit: int = 500) -> list[Change]:
        if not cluster.isascii() or len(cluster) > sql.WIDTH["cluster"]:
            return []
        text, params = changelog.select_after(self.dialect, cluster, seq, gvr, limit)
        return [changelog.decode(row) for row in await self.fetch(text, params)]

    async def sync_states(self) -> list[SyncState]:
        rows = await self.fetch("SELECT cluster, api_group, version, resource, status, resource_version, "
                                "synced_at, error, objects FROM sync_state")
        out = [SyncState(cluster=c, gvr=GVR(g, v, r), status=st, resource_version=int(rv),
                         synced_at=float(at), error=err, objects=int(n))
               for c, g, v, r, st, rv, at, err, n in rows]
        return sorted(out, key=lambda s: (s.cluster, s.gvr))


def _stored(gvr: GVR, row: Sequence[Any]) -> StoredObject:
    cluster, namespace, name, uid, kind, rv, obj, created, updated = row
    return StoredObject(cluster=cluster, gvr=gvr, namespace=namespace, name=name, uid=uid, kind=kind,
                        resource_version=int(rv), object=bytes(obj), created_at=created, updated_at=updated)
