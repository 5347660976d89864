"""The Store contract over any DB-API-ish async driver: the part of both engines that is not about connecting.

SQLiteStore and MySQLStore supply four primitives (a write transaction, a read, schema application, close);
everything the contract says about batches, guards and pagination lives here once, so the two engines cannot
drift apart in behaviour, only in speed.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from multicluster.gvr import GVR
from multicluster.store import sql
from multicluster.store.base import (
    ApplyResult,
    Delete,
    Mutation,
    Page,
    Query,
    StoredObject,
    SyncState,
    sort_key,
)

log = logging.getLogger(__name__)

DELETE_CHUNK = 1000  # rows per transaction when dropping a cluster: bounded undo logs, TiDB's txn size limit


class Tx(Protocol):
    """One open write transaction."""

    async def fetch(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    async def execute(self, text: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns the affected row count."""

    async def executemany(self, text: str, rows: Sequence[Sequence[Any]]) -> None: ...


class SQLStore(abc.ABC):
    dialect: sql.Dialect

    @abc.abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """A write transaction: committed on exit, rolled back on error; driver errors become StoreError."""

    @abc.abstractmethod
    async def fetch(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One read statement outside any write transaction."""

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    # ----------------------------------------------------------------------------------------------- writes

    async def apply(self, mutations: Sequence[Mutation]) -> ApplyResult:
        if not mutations:
            return ApplyResult()
        p = sql.plan(mutations)
        for m in p.unfit:
            log.warning("not storing %s %s/%s in cluster %s: identity does not fit the store's columns "
                        "(non-ASCII where Kubernetes allows none, or too long)",
                        m.gvr, m.namespace[:80], m.name[:80], m.cluster[:80])
        if len(p.winners) == 0:
            return ApplyResult(skipped=p.skipped)
        d = self.dialect
        # Sorted, so two replicas writing overlapping batches lock rows in the same order (fewer deadlocks).
        ids = sorted(p.winners)
        lock = " FOR UPDATE" if d.name == "mysql" else ""  # SQLite: BEGIN IMMEDIATE already holds the lock
        updated_at = sql.now_rfc3339()
        async with self.transaction() as tx:
            dec = sql.decide(p, await self._versions(tx, ids, lock))
            for part in sql.chunks(dec.deletes):
                await tx.execute(d.sql(f"DELETE FROM resources WHERE id IN {sql.ids_in(len(part))}"), part)
            if dec.rows:
                await tx.executemany(sql.upsert_resources(d),
                                     [sql.resource_params(rid, r, updated_at) for rid, r in dec.rows])
            if lock and len(dec.replaced) < len(dec.rows):
                # A row that did not exist had no lock to take: another replica may have inserted it since,
                # and the guard in the upsert may have kept theirs. Keep only the rows that are now ours.
                existed = set(dec.replaced)
                fresh = [rid for rid, _ in dec.rows if rid not in existed]
                now = await self._versions(tx, fresh, lock)
                ours = {rid for rid, r in dec.rows if rid in existed or now.get(rid) == r.resource_version}
                dec.skipped += len(dec.rows) - len(ours)
                dec.rows = [(rid, r) for rid, r in dec.rows if rid in ours]
            touched = [*(rid for rid, _ in dec.rows), *dec.deletes]
            for part in sql.chunks(touched):
                for table in ("resource_labels", "resource_fields"):
                    await tx.execute(d.sql(f"DELETE FROM {table} WHERE id IN {sql.ids_in(len(part))}"), part)
            labels = [(rid, k, v) for rid, r in dec.rows for k, v in sql.index_pairs(r.labels)]
            fields = [(rid, k, v) for rid, r in dec.rows for k, v in sql.index_pairs(r.fields)]
            if labels:
                await tx.executemany(sql.insert_index(d, "resource_labels"), labels)
            if fields:
                await tx.executemany(sql.insert_index(d, "resource_fields"), fields)
        return ApplyResult(written=len(dec.rows), deleted=len(dec.deletes), skipped=dec.skipped)

    async def _versions(self, tx: Tx, ids: Sequence[int], lock: str) -> dict[int, int]:
        """id -> stored resource_version for the ids that exist."""
        out: dict[int, int] = {}
        for part in sql.chunks(ids):
            marks = sql.ids_in(len(part))
            text = f"SELECT id, resource_version FROM resources WHERE id IN {marks}{lock}"
            rows = await tx.fetch(self.dialect.sql(text), part)
            out.update((int(rid), int(rv)) for rid, rv in rows)
        return out

    async def _delete_where(self, where: str, params: Sequence[Any]) -> int:
        """Delete matching rows with their labels/fields, in bounded transactions."""
        d = self.dialect
        total = 0
        while True:
            async with self.transaction() as tx:
                found = await tx.fetch(d.sql(f"SELECT id FROM resources WHERE {where} LIMIT ?"),
                                       [*params, DELETE_CHUNK])
                ids = [row[0] for row in found]
                if ids:
                    marks = sql.ids_in(len(ids))
                    for table in ("resource_labels", "resource_fields", "resources"):
                        await tx.execute(d.sql(f"DELETE FROM {table} WHERE id IN {marks}"), ids)
            total += len(ids)
            if len(ids) < DELETE_CHUNK:
                return total

    async def delete_cluster(self, cluster: str) -> int:
        n = await self._delete_where("cluster = ?", [cluster])
        async with self.transaction() as tx:
            await tx.execute(self.dialect.sql("DELETE FROM sync_state WHERE cluster = ?"), [cluster])
        return n

    async def delete_gvr(self, cluster: str, gvr: GVR) -> int:
        ident = [cluster, gvr.group, gvr.version, gvr.resource]
        n = await self._delete_where("cluster = ? AND api_group = ? AND version = ? AND resource = ?", ident)
        async with self.transaction() as tx:
            await tx.execute(self.dialect.sql("DELETE FROM sync_state WHERE cluster = ? AND api_group = ? "
                                              "AND version = ? AND resource = ?"), ident)
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
        text, params = sql.select_page(self.dialect, q)
        rows = await self.fetch(text, params)
        more = bool(q.limit) and len(rows) > q.limit
        items = [_stored(q.gvr, row) for row in (rows[: q.limit] if more else rows)]
        next_after = sort_key(q.order, items[-1]) if more else None
        remaining: int | None = None
        if q.count_remaining:
            remaining = 0
            if next_after is not None:
                text, params = sql.count_after(self.dialect, q, next_after)
                remaining = int((await self.fetch(text, params))[0][0])
        return Page(items=items, next_after=next_after, remaining=remaining)

    async def get(self, cluster: str, gvr: GVR, namespace: str, name: str) -> StoredObject | None:
        if not sql.fits(Delete(cluster, gvr, namespace, name)):
            return None
        text, params = sql.select_one(self.dialect, cluster, gvr, namespace, name)
        rows = await self.fetch(text, params)
        return _stored(gvr, rows[0]) if rows else None

    async def counts(self) -> dict[tuple[str, GVR], int]:
        rows = await self.fetch("SELECT cluster, api_group, version, resource, COUNT(*) FROM resources "
                                "GROUP BY cluster, api_group, version, resource")
        return {(c, GVR(g, v, r)): int(n) for c, g, v, r, n in rows}

    async def gvrs(self) -> list[GVR]:
        rows = await self.fetch("SELECT DISTINCT api_group, version, resource FROM resources")
        return sorted(GVR(g, v, r) for g, v, r in rows)

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
