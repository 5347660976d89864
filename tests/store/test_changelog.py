"""Contract: the change log. Every committed mutation appends an entry in its own transaction, numbered per
cluster in commit order; deletes (one at a time, a cluster's or a type's rows) log the last stored state;
retention prunes each cluster's log and records how far."""

from __future__ import annotations

import asyncio

from multicluster.config import StoreConfig
from multicluster.errors import StoreError
from multicluster.store import ApplyResult, Delete, Row, Store, open_store
from multicluster.store.base import Change
from multicluster.store.engine import SQLStore

from .helpers import DEPLOYS, PODS, row


def brief(changes: list[Change] | tuple[Change, ...]) -> list[tuple[str, int, str, str, int]]:
    return [(c.cluster, c.seq, c.type, c.name, c.resource_version) for c in changes]


async def test_apply_logs_each_written_mutation_with_its_position(store: Store) -> None:
    seen: list[Change] = []
    store.listen(seen.extend)
    res = await store.apply([row("a", 5, labels={"app": "web"}, fields={"status.phase": "Running"}),
                             row("b", 6, cluster="c2")])
    assert sorted(brief(res.changes)) == [("c1", 1, "ADDED", "a", 5), ("c2", 1, "ADDED", "b", 6)]
    res = await store.apply([row("a", 7, labels={"app": "api"}, fields={"status.phase": "Pending"}),
                             row("a", 2),  # older than stored: refused, not logged
                             row("c", 3)])
    assert brief(res.changes) == [("c1", 2, "MODIFIED", "a", 7), ("c1", 3, "ADDED", "c", 3)]
    modified = res.changes[0]
    assert modified.labels == {"app": "api"} and modified.fields == {"status.phase": "Pending"}
    assert modified.prev_labels == {"app": "web"} and modified.prev_fields == {"status.phase": "Running"}
    assert res.changes[1].prev_labels is None
    assert (await store.apply([row("a", 7)])).changes == ()  # equal RV: nothing written, nothing logged
    res = await store.apply([Delete("c1", PODS, "default", "a", 9), Delete("c1", PODS, "default", "nope", 9)])
    assert brief(res.changes) == [("c1", 4, "DELETED", "a", 9)]
    deleted = res.changes[0]
    # DELETED carries the last stored state and its selector values (a watcher filtering on them needs them).
    assert deleted.object == row("a", 7).object
    assert deleted.labels == {"app": "api"} and deleted.fields == {"status.phase": "Pending"}
    # What the listener saw is what the results said, in commit order.
    assert brief(seen) == [("c1", 1, "ADDED", "a", 5), ("c2", 1, "ADDED", "b", 6), ("c1", 2, "MODIFIED", "a", 7),
                           ("c1", 3, "ADDED", "c", 3), ("c1", 4, "DELETED", "a", 9)]
    # The durable log reads back the same entries, from any position, optionally for one type.
    log = await store.changes_after("c1", 0)
    assert brief(log) == [b for b in brief(seen) if b[0] == "c1"]
    assert [(c.labels, c.fields, c.prev_labels, c.prev_fields) for c in log] == \
        [(c.labels, c.fields, c.prev_labels, c.prev_fields) for c in seen if c.cluster == "c1"]
    # Only a deletion keeps its object in the log; an upsert reads back with the row's current object, and as
    # superseded once the row is gone (a's two upserts: its DELETED entry follows with the last state).
    assert [(c.name, c.type, c.superseded, c.object) for c in log] == [
        ("a", "ADDED", True, b""), ("a", "MODIFIED", True, b""), ("c", "ADDED", False, row("c", 3).object),
        ("a", "DELETED", False, row("a", 7).object)]
    await store.apply([row("c", 8)])
    assert [c.object for c in await store.changes_after("c1", 2, limit=1)] == [row("c", 8).object]
    assert brief(await store.changes_after("c1", 2, limit=1)) == [("c1", 3, "ADDED", "c", 3)]
    assert await store.changes_after("c1", 0, DEPLOYS) == []
    assert await store.changes_after("nowhere", 0) == []
    positions = await store.log_positions()
    assert {c: (p.last, p.floor) for c, p in positions.items()} == {"c1": (5, 0), "c2": (1, 0)}


async def test_batches_of_new_rows_are_logged_too(store: Store) -> None:
    """An initial sync's batches (every row hinted new) take the plain-insert path: it logs as well."""
    rows = [row(f"p{i}", i + 1) for i in range(20)]
    for r in rows:
        r.new = True
    res = await store.apply(rows)
    assert [c.seq for c in res.changes] == list(range(1, 21))
    assert {c.type for c in res.changes} == {"ADDED"}
    assert len(await store.changes_after("c1", 0)) == 20


async def test_delete_cluster_and_type_log_every_row_and_keep_positions(store: Store) -> None:
    await store.apply([row("a", 1, labels={"x": "1"}), row("b", 2), row("d", 3, gvr=DEPLOYS),
                       row("e", 4, cluster="c2")])
    seen: list[Change] = []
    store.listen(seen.extend)
    assert await store.delete_gvr("c1", DEPLOYS) == 1
    assert brief(seen) == [("c1", 4, "DELETED", "d", 3)]
    assert await store.delete_cluster("c1") == 2
    assert sorted(brief(seen[1:])) == [("c1", 5, "DELETED", "a", 1), ("c1", 6, "DELETED", "b", 2)]
    assert next(c for c in seen if c.name == "a").labels == {"x": "1"}
    # The position row outlives the cluster's rows: a rejoined cluster continues, never reuses a position.
    res = await store.apply([row("a", 10)])
    assert brief(res.changes) == [("c1", 7, "ADDED", "a", 10)]
    store.listen(None)
    await store.delete_cluster("c2")
    assert len(seen) == 4  # the apply above; nothing after listen(None)


async def test_retention_prunes_each_cluster_and_records_the_floor(store_config: StoreConfig) -> None:
    s = open_store(store_config)
    assert isinstance(s, SQLStore)
    s.retention = 5
    await s.open()
    try:
        for i in range(12):
            await s.apply([row("a", i + 1), row("q", i + 1, cluster="quiet")] if i == 0 else [row("a", i + 1)])
        positions = await s.log_positions()
        assert (positions["c1"].last, positions["c1"].floor) == (12, 7)
        assert [c.seq for c in await s.changes_after("c1", 0)] == [8, 9, 10, 11, 12]
        # Another cluster's history is its own: a busy cluster does not push it out.
        assert (positions["quiet"].last, positions["quiet"].floor) == (1, 0)
        # A lowered retention catches up in bounded steps, not one long delete.
        s.retention = 1
        await s.apply([row("a", 100)])
        positions = await s.log_positions()
        assert positions["c1"].floor == 12 and [c.seq for c in await s.changes_after("c1", 0)] == [13]
    finally:
        await s.close()


async def apply_retrying(s: Store, mutations: list[Row]) -> ApplyResult:
    """What the writer does: a transient error (MariaDB picks a deadlock victim among concurrent inserts) means
    the batch is written again."""
    while True:
        try:
            return await s.apply(mutations)
        except StoreError as exc:
            if not exc.transient:
                raise


async def test_positions_follow_commit_order_under_concurrent_writers(store_config: StoreConfig) -> None:
    """Several batches for one cluster in flight at once (MySQL: store.writers connections; SQLite: queued on
    its writer): positions are dense (a rolled back batch gives its positions back), and each batch's positions
    are consecutive."""
    s = open_store(store_config)
    await s.open()
    try:
        results = await asyncio.gather(*(apply_retrying(s, [row(f"p{b}-{i}", 1) for i in range(5)])
                                         for b in range(8)))
        seqs = sorted(c.seq for r in results for c in r.changes)
        assert seqs == list(range(1, 41))
        for r in results:
            mine = [c.seq for c in r.changes]
            assert mine == list(range(mine[0], mine[0] + 5))
        assert [c.seq for c in await s.changes_after("c1", 0, limit=100)] == seqs
    finally:
        await s.close()
