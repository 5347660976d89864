"""Contract: apply() and its resourceVersion guard, deletes, sync state, schema idempotence."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from multicluster.config import StoreConfig
from multicluster.store import ApplyResult, Delete, Query, Requirement, Row, Store, SyncState, open_store, sqlite_writer
from multicluster.store.engine import SQLStore
from multicluster.store.sqlite import SQLiteStore

from .helpers import DEPLOYS, PODS, row


async def names(store: Store, q: Query | None = None) -> list[str]:
    page = await store.query(q or Query(gvr=PODS, limit=0))
    return [o.name for o in page.items]


async def test_upsert_get_round_trip(store: Store) -> None:
    body = b'{"metadata":{"name":"p1"},"spec":{"x":"\xc3\xa9 \\\\ \' \\" %s ?"}}'
    r = row("p1", 5, labels={"app": "web"}, body=body, created_at="2026-02-03T04:05:06Z")
    assert await store.apply([r]) == ApplyResult(written=1)
    got = await store.get("c1", PODS, "default", "p1")
    assert got is not None
    assert (got.cluster, got.gvr, got.namespace, got.name) == ("c1", PODS, "default", "p1")
    assert (got.uid, got.kind, got.resource_version) == (r.uid, "Pod", 5)
    assert got.object == body
    assert got.created_at == "2026-02-03T04:05:06Z"
    assert got.updated_at.startswith("20") and got.updated_at.endswith("Z")
    assert await store.get("c1", PODS, "default", "nope") is None
    # Bytes that are not UTF-8 still come back unchanged (the column is binary).
    await store.apply([row("bin", 1, body=b"\x00\xff\xfe\x80 raw")])
    got = await store.get("c1", PODS, "default", "bin")
    assert got is not None and got.object == b"\x00\xff\xfe\x80 raw"
    assert await store.get("c2", PODS, "default", "p1") is None
    assert await store.get("c1", DEPLOYS, "default", "p1") is None


async def test_empty_batch_is_a_no_op(store: Store) -> None:
    assert await store.apply([]) == ApplyResult()


async def test_rv_guard(store: Store) -> None:
    await store.apply([row("p", 5, body=b'{"v":5}')])
    assert await store.apply([row("p", 3, body=b'{"v":3}')]) == ApplyResult(skipped=1)
    assert await store.apply([row("p", 5, body=b'{"v":"5b"}')]) == ApplyResult(skipped=1)
    got = await store.get("c1", PODS, "default", "p")
    assert got is not None and (got.resource_version, got.object) == (5, b'{"v":5}')
    assert await store.apply([row("p", 7, body=b'{"v":7}')]) == ApplyResult(written=1)
    got = await store.get("c1", PODS, "default", "p")
    assert got is not None and (got.resource_version, got.object) == (7, b'{"v":7}')
    # Out-of-order across keys within one batch, with one stale entry.
    res = await store.apply([row("q", 9), row("p", 6), row("r", 2), row("p", 8, body=b'{"v":8}')])
    assert res == ApplyResult(written=3, skipped=1)
    got = await store.get("c1", PODS, "default", "p")
    assert got is not None and (got.resource_version, got.object) == (8, b'{"v":8}')


async def test_same_key_twice_highest_rv_wins(store: Store) -> None:
    res = await store.apply([row("p", 3, labels={"v": "3"}), row("p", 5, labels={"v": "5"}),
                             row("p", 4, labels={"v": "4"})])
    assert res == ApplyResult(written=1, skipped=2)
    got = await store.get("c1", PODS, "default", "p")
    assert got is not None and got.resource_version == 5
    assert await names(store, Query(gvr=PODS, labels=(Requirement("v", "=", ("5",)),))) == ["p"]
    assert await names(store, Query(gvr=PODS, labels=(Requirement("v", "in", ("3", "4")),))) == []
    # A delete newer than the update in the same batch removes the object.
    assert await store.apply([row("p", 6), Delete("c1", PODS, "default", "p", 7)]) == ApplyResult(deleted=1,
                                                                                                  skipped=1)
    assert await store.get("c1", PODS, "default", "p") is None
    # An update older than a delete in the same batch loses, whatever the order.
    await store.apply([row("p", 8)])
    assert await store.apply([Delete("c1", PODS, "default", "p", 10), row("p", 9)]) == ApplyResult(deleted=1,
                                                                                                   skipped=1)
    assert await store.get("c1", PODS, "default", "p") is None
    # Batch order decides around an unconditional delete: the object was deleted then re-created.
    await store.apply([row("p", 11)])
    assert await store.apply([Delete("c1", PODS, "default", "p"), row("p", 12)]) == ApplyResult(written=1,
                                                                                                skipped=1)
    got = await store.get("c1", PODS, "default", "p")
    assert got is not None and got.resource_version == 12


async def test_delete_guard(store: Store) -> None:
    await store.apply([row("p", 10, labels={"app": "x"}, fields={"status.phase": "Running"})])
    assert await store.apply([Delete("c1", PODS, "default", "p", 5)]) == ApplyResult(skipped=1)
    assert await store.get("c1", PODS, "default", "p") is not None
    assert await store.apply([Delete("c1", PODS, "default", "p", 10)]) == ApplyResult(deleted=1)
    assert await store.get("c1", PODS, "default", "p") is None
    # Deleting what is not there is neither a delete nor a skip.
    assert await store.apply([Delete("c1", PODS, "default", "p", 11)]) == ApplyResult()
    # Labels and fields went with the row: a re-created object without them does not match old selectors.
    await store.apply([row("p", 12)])
    assert await names(store, Query(gvr=PODS, labels=(Requirement("app", "exists"),))) == []
    assert await names(store, Query(gvr=PODS, fields=(Requirement("status.phase", "=", ("Running",)),))) == []
    assert await store.apply([Delete("c1", PODS, "default", "p", 0)]) == ApplyResult(deleted=1)
    assert await store.get("c1", PODS, "default", "p") is None


async def test_update_replaces_labels_and_fields(store: Store) -> None:
    await store.apply([row("p", 1, labels={"a": "1", "b": "2"}, fields={"status.phase": "Pending"})])
    await store.apply([row("p", 2, labels={"a": "3"}, fields={"status.phase": "Running"})])
    assert await names(store, Query(gvr=PODS, labels=(Requirement("b", "exists"),))) == []
    assert await names(store, Query(gvr=PODS, labels=(Requirement("a", "=", ("3",)),))) == ["p"]
    assert await names(store, Query(gvr=PODS, labels=(Requirement("a", "=", ("1",)),))) == []
    assert await names(store, Query(gvr=PODS, fields=(Requirement("status.phase", "=", ("Running",)),))) == ["p"]
    # A refused (stale) update leaves the labels alone too.
    await store.apply([row("p", 1, labels={"stale": "yes"})])
    assert await names(store, Query(gvr=PODS, labels=(Requirement("stale", "exists"),))) == []
    assert await names(store, Query(gvr=PODS, labels=(Requirement("a", "=", ("3",)),))) == ["p"]


async def test_large_batches_are_chunked(store: Store) -> None:
    rows = [row(f"p{i:05d}", 1, labels={"i": str(i), "app": "bulk"}) for i in range(1203)]
    assert await store.apply(rows) == ApplyResult(written=1203)
    assert await store.apply([row(r.name, 2) for r in rows]) == ApplyResult(written=1203)
    assert await store.apply([row(r.name, 2) for r in rows]) == ApplyResult(skipped=1203)
    assert await names(store, Query(gvr=PODS, labels=(Requirement("app", "exists"),), limit=0)) == []
    res = await store.apply([Delete("c1", PODS, "default", r.name, 2) for r in rows[:700]])
    assert res == ApplyResult(deleted=700)
    assert (await store.counts())[("c1", PODS)] == 503


async def test_unicode_and_long_names(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    uni = "pod-ünïcödé-名前-🚀"
    long = "n" * 253
    assert await store.apply([row(uni, 1), row(long, 1)]) == ApplyResult(written=2)
    got = await store.get("c1", PODS, "default", uni)
    assert got is not None and got.name == uni
    got = await store.get("c1", PODS, "default", long)
    assert got is not None and got.name == long
    assert await names(store, Query(gvr=PODS, name=uni)) == [uni]
    assert await names(store, Query(gvr=PODS, name_contains="名前")) == [uni]
    assert await names(store, Query(gvr=PODS, name_prefix="n" * 200)) == [long]
    # Identities that cannot fit the columns are refused one by one, not by failing the whole batch.
    res = await store.apply([row("n" * 254, 1), row("ok", 1), row("x", 1, namespace="ns-ü")])
    assert res == ApplyResult(written=1, skipped=2)
    assert sum("does not fit" in r.getMessage() for r in caplog.records) == 2
    assert await store.get("c1", PODS, "default", "n" * 254) is None
    assert await store.get("c1", PODS, "ns-ü", "x") is None


async def test_load_index(store: Store) -> None:
    await store.apply([row("a", 3), row("b", 4, namespace="kube-system"), row("c", 5, cluster="c2"),
                       row("d", 6, gvr=DEPLOYS)])
    assert await store.load_index("c1", PODS) == {("default", "a"): 3, ("kube-system", "b"): 4}
    assert await store.load_index("c2", PODS) == {("default", "c"): 5}
    assert await store.load_index("c1", DEPLOYS) == {("default", "d"): 6}
    assert await store.load_index("c3", PODS) == {}


async def test_delete_cluster_and_gvr(store: Store, monkeypatch: object) -> None:
    import multicluster.store.engine as engine

    monkeypatch.setattr(engine, "DELETE_CHUNK", 7)  # type: ignore[attr-defined]
    await store.apply([row(f"p{i}", 1, labels={"app": "x"}, fields={"spec.nodeName": "n1"}) for i in range(20)])
    await store.apply([row(f"d{i}", 1, gvr=DEPLOYS, labels={"app": "x"}) for i in range(3)])
    await store.apply([row("keep", 1, cluster="c2", labels={"app": "x"})])
    await store.save_sync_state(SyncState("c1", PODS, "synced", 10, 1.5))
    await store.save_sync_state(SyncState("c1", DEPLOYS, "synced", 11, 1.5))
    await store.save_sync_state(SyncState("c2", PODS, "synced", 12, 1.5))
    assert await store.delete_gvr("c1", DEPLOYS) == 3
    assert await store.load_index("c1", DEPLOYS) == {}
    assert {(s.cluster, s.gvr) for s in await store.sync_states()} == {("c1", PODS), ("c2", PODS)}
    assert await store.delete_cluster("c1") == 20
    assert await store.counts() == {("c2", PODS): 1}
    assert [(s.cluster, s.gvr) for s in await store.sync_states()] == [("c2", PODS)]
    # Re-created rows without labels must not inherit the deleted rows' labels.
    await store.apply([row("p1", 1)])
    assert await names(store, Query(gvr=PODS, labels=(Requirement("app", "exists"),))) == ["keep"]
    assert await names(store, Query(gvr=PODS, fields=(Requirement("spec.nodeName", "=", ("n1",)),))) == []
    assert await store.delete_cluster("nope") == 0


async def test_counts_and_gvrs(store: Store) -> None:
    assert await store.counts() == {}
    assert await store.gvrs() == []
    await store.apply([row("a", 1), row("b", 1), row("c", 1, cluster="c2"), row("d", 1, gvr=DEPLOYS)])
    assert await store.counts() == {("c1", PODS): 2, ("c2", PODS): 1, ("c1", DEPLOYS): 1}
    assert await store.gvrs() == sorted([PODS, DEPLOYS])


async def test_sync_state_round_trip(store: Store) -> None:
    s1 = SyncState("c1", PODS, "syncing", 0, 0.0)
    await store.save_sync_state(s1)
    assert await store.sync_states() == [s1]
    s2 = SyncState("c1", PODS, "error", 123456789012, 1764106588.25, error="watch failed: ünïcode " * 3,
                   objects=42)
    s3 = SyncState("c0", DEPLOYS, "synced", 7, 2.5, objects=1)
    await store.save_sync_state(s2)
    await store.save_sync_state(s3)
    assert await store.sync_states() == [s3, s2]


async def test_schema_applied_twice_is_idempotent(store_config: StoreConfig) -> None:
    first = open_store(store_config)
    await first.open()
    try:
        await first.apply([row("p", 1, labels={"a": "b"})])
    finally:
        await first.close()
    second = open_store(store_config)
    await second.open()  # the schema is applied again on an existing database
    try:
        got = await second.get("c1", PODS, "default", "p")
        assert got is not None and got.resource_version == 1
        assert await names(second, Query(gvr=PODS, labels=(Requirement("a", "=", ("b",)),))) == ["p"]
        await second.apply([row("p", 2)])
    finally:
        await second.close()


@pytest.mark.parametrize("hinted", [False, True], ids=["checked", "hinted-new"])
async def test_concurrent_writers_keep_the_newest(store_config: StoreConfig, hinted: bool) -> None:
    """Two stores on one database (two daemon replicas) racing on the same keys: the highest RV wins and
    the labels belong to the winning version. Hinted: both replicas believe every object new (both listing
    an empty store at once, then wrong hints), so each batch starts as plain inserts and loses the race."""
    a, b = open_store(store_config), open_store(store_config)
    await a.open()
    await b.open()
    try:
        keys = [f"p{i}" for i in range(60)]
        for rnd in range(4):
            rv_a, rv_b = 10 * rnd + 1 + (rnd % 2), 10 * rnd + 2 - (rnd % 2)
            batch_a = [replace(row(k, rv_a, labels={"by": "a", "rv": str(rv_a)}), new=hinted) for k in keys]
            batch_b = [replace(row(k, rv_b, labels={"by": "b", "rv": str(rv_b)}), new=hinted) for k in reversed(keys)]
            for attempt in range(5):  # the caller's retry: deadlocks are transient by contract
                try:
                    await asyncio.gather(a.apply(batch_a), b.apply(batch_b))
                    break
                except Exception as exc:
                    from multicluster.errors import StoreError

                    assert isinstance(exc, StoreError) and exc.transient, exc
                    assert attempt < 4
            winner = str(max(rv_a, rv_b))
            page = await a.query(Query(gvr=PODS, labels=(Requirement("rv", "=", (winner,)),), limit=0))
            assert sorted(o.name for o in page.items) == sorted(keys)
            assert {o.resource_version for o in page.items} == {int(winner)}
            assert isinstance(a, SQLStore)
            for table in ("resource_labels", "resource_fields"):  # no index row outlives or misses its object
                orphans = await a.fetch(f"SELECT COUNT(*) FROM {table} x LEFT JOIN resources r ON r.id = x.id "
                                        "WHERE r.id IS NULL")
                assert orphans == [(0,)], table
            labels = await a.fetch("SELECT COUNT(*) FROM resource_labels")
            assert labels == [(2 * len(keys),)]
    finally:
        await a.close()
        await b.close()


async def test_index_rows_follow_label_changes_in_mixed_batches(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New rows, replaced rows with the same labels, with changed labels and with labels removed, in one batch
    that crosses the chunk size: the label/field tables end exactly as the objects say, and rows whose labels
    did not change cause no label writes at all."""
    assert isinstance(store, SQLStore)
    first = [row(f"p{i:04d}", 1, labels={"app": "a", "i": str(i)}, fields={"status.phase": "Pending"})
             for i in range(1100)]
    await store.apply(first)
    second = []
    for i in range(1300):
        if i < 400:  # same labels, new RV: the index rows must stay as they are
            second.append(row(f"p{i:04d}", 2, labels={"app": "a", "i": str(i)}, fields={"status.phase": "Pending"}))
        elif i < 800:  # one label changed, field changed
            second.append(row(f"p{i:04d}", 2, labels={"app": "b", "i": str(i)}, fields={"status.phase": "Running"}))
        elif i < 1100:  # every label and field removed
            second.append(row(f"p{i:04d}", 2))
        else:  # new objects
            second.append(row(f"p{i:04d}", 1, labels={"app": "c"}))
    label_writes: list[int] = []
    writer: SQLStore = store
    if isinstance(store, SQLiteStore):
        # The writer's statements are counted in this process: a second store on the file, writer on a thread.
        writer = SQLiteStore(store.path, writer="thread")
        await writer.open()
        real = sqlite_writer.execute_many

        def counting(conn: sqlite3.Connection, text: str, rows: Sequence[Sequence[Any]]) -> None:
            if "resource_labels" in text:
                label_writes.append(len(rows))
            real(conn, text, rows)

        monkeypatch.setattr(sqlite_writer, "execute_many", counting)
    assert await writer.apply(second) == ApplyResult(written=1300)
    if writer is not store:
        await writer.close()

    async def count(selector: Requirement, *, fields: bool = False) -> int:
        if fields:
            return len((await store.query(Query(gvr=PODS, limit=0, fields=(selector,)))).items)
        return len((await store.query(Query(gvr=PODS, limit=0, labels=(selector,)))).items)

    assert await count(Requirement("app", "=", ("a",))) == 400
    assert await count(Requirement("app", "=", ("b",))) == 400
    assert await count(Requirement("app", "=", ("c",))) == 200
    assert await count(Requirement("i", "exists")) == 800
    assert await count(Requirement("status.phase", "=", ("Pending",)), fields=True) == 400
    assert await count(Requirement("status.phase", "=", ("Running",)), fields=True) == 400
    assert (await store.fetch("SELECT COUNT(*) FROM resource_labels"))[0][0] == 400 * 2 + 400 * 2 + 200
    assert (await store.fetch("SELECT COUNT(*) FROM resource_fields"))[0][0] == 800
    if isinstance(store, SQLiteStore):
        assert sum(label_writes) == 400 * 2 + 200  # changed and new objects only


# ------------------------------------------------------------------------------------- rows hinted new


def new(r: Row) -> Row:
    return replace(r, new=True)


async def labelled(store: Store, key: str, value: str) -> list[str]:
    return await names(store, Query(gvr=PODS, labels=(Requirement(key, "=", (value,)),), limit=0))


async def test_rows_hinted_new_are_inserted_with_their_labels_and_fields(store: Store) -> None:
    rows = [new(row(f"p{i:04d}", 10 + i, labels={"app": f"a{i % 3}", "all": "yes"},
                    fields={"status.phase": "Running"})) for i in range(1203)]
    assert await store.apply(rows) == ApplyResult(written=1203)
    assert len(await labelled(store, "all", "yes")) == 1203
    assert len(await labelled(store, "app", "a1")) == 401
    got = await store.get("c1", PODS, "default", "p0007")
    assert got is not None and got.resource_version == 17
    # Two hinted batches in a row get distinct ids: nothing of the first is overwritten by the second.
    assert await store.apply([new(row(f"q{i}", 1, labels={"q": "yes"})) for i in range(5)]) == ApplyResult(written=5)
    assert len(await labelled(store, "all", "yes")) == 1203 and len(await labelled(store, "q", "yes")) == 5
    assert (await store.counts())[("c1", PODS)] == 1208


async def test_a_wrong_new_hint_costs_a_checked_retry_not_a_wrong_row(store: Store) -> None:
    """The hint says "never seen" but the row exists (another replica was faster, a stale index): the whole
    batch is then checked row by row, with the resourceVersion guard and label replacement as usual."""
    await store.apply([row("old", 5, labels={"gen": "5", "stale": "yes"}, body=b'{"v":5}'),
                       row("kept", 9, labels={"gen": "9"}, body=b'{"v":9}')])
    batch = [new(row("a", 1, labels={"gen": "1"})), new(row("old", 6, labels={"gen": "6"}, body=b'{"v":6}')),
             new(row("kept", 8, labels={"gen": "8"}, body=b'{"v":8}')), new(row("z", 1, labels={"gen": "1"}))]
    assert await store.apply(batch) == ApplyResult(written=3, skipped=1)
    old, kept = await store.get("c1", PODS, "default", "old"), await store.get("c1", PODS, "default", "kept")
    assert old is not None and (old.resource_version, old.object) == (6, b'{"v":6}')
    assert kept is not None and (kept.resource_version, kept.object) == (9, b'{"v":9}')
    assert await labelled(store, "gen", "1") == ["a", "z"]
    assert await labelled(store, "gen", "6") == ["old"]
    assert await labelled(store, "gen", "9") == ["kept"]
    assert await labelled(store, "stale", "yes") == [] and await labelled(store, "gen", "8") == []
    assert (await store.counts())[("c1", PODS)] == 4


async def test_new_rows_after_checked_inserts_get_fresh_ids(store: Store) -> None:
    """Checked writes (MySQL: AUTO_INCREMENT ids) and hinted batches (ids the store hands out) interleave: no
    hinted row may take an id a checked one got, nor the other way round."""
    for k in range(4):
        assert await store.apply([new(row(f"n{k}-{i}", 1, labels={"k": str(k)})) for i in range(3)]) == \
            ApplyResult(written=3)
        assert await store.apply([row(f"c{k}", 1, labels={"k": str(k)})]) == ApplyResult(written=1)
    for k in range(4):
        assert await labelled(store, "k", str(k)) == [f"c{k}", *(f"n{k}-{i}" for i in range(3))]
    assert (await store.counts())[("c1", PODS)] == 16


def test_batches_cross_to_the_writer_process_unchanged() -> None:
    batch: list[Row | Delete] = [new(row("a", 3, labels={"x": "1"}, fields={"status.phase": "Running"})),
                                 row("b", 4), Delete("c1", PODS, "ns", "c", 5), Delete("c2", DEPLOYS, "", "d")]
    assert sqlite_writer.decode(sqlite_writer.encode(batch)) == batch
