"""Pure parts of the store's SQL: multi-row statements, label/field index diffs, MySQL page plans."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from multicluster.gvr import GVR
from multicluster.store import Mutation, Query, Requirement, Row, queries, sql
from multicluster.store.engine import apply_steps


def test_multi_row_expands_only_the_values_group() -> None:
    text = sql.upsert_resources(sql.SQLITE)
    out = sql.multi_row(text, 3)
    group = "(" + ", ".join("?" * len(sql.RESOURCE_COLUMNS)) + ")"
    assert out.count(group) == 3
    assert out.endswith(text.split(group, 1)[1])  # the ON CONFLICT clause is kept as it was
    assert sql.multi_row("INSERT INTO t (a) VALUES (?)", 1) == "INSERT INTO t (a) VALUES (?)"


def test_multi_row_refuses_what_it_cannot_rewrite() -> None:
    with pytest.raises(ValueError, match="not a single-row INSERT"):
        sql.multi_row("DELETE FROM t WHERE id IN (?, ?)", 2)


def test_multi_row_statement_runs_on_sqlite_with_the_upsert_guard() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)")
    text = "INSERT INTO t (id, v) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET v = excluded.v WHERE excluded.v > t.v"
    conn.execute(sql.multi_row(text, 2), [1, 5, 2, 5])
    conn.execute(sql.multi_row(text, 2), [1, 4, 2, 6])  # 1 goes backwards (refused), 2 forwards
    assert conn.execute("SELECT id, v FROM t ORDER BY id").fetchall() == [(1, 5), (2, 6)]


def test_row_chunks_stay_under_the_parameter_limit() -> None:
    rows = [(i, "k", "v") for i in range(25_000)]
    parts = sql.row_chunks(rows, 3)
    assert sum(len(p) for p in parts) == 25_000
    assert all(len(p) * 3 <= sql.MAX_PARAMS and len(p) <= 2500 for p in parts)
    assert len(sql.row_chunks(rows[:1500], 3)) == 1  # a batch's label rows: one statement
    wide = [tuple(range(5000))] * 20
    assert all(len(p) * 5000 <= sql.MAX_PARAMS for p in sql.row_chunks(wide, 5000))


def test_index_changes() -> None:
    rows = [
        (1, {"app": "a"}),  # replaced, same labels: nothing to do
        (2, {"app": "b"}),  # replaced, value changed
        (3, {}),  # replaced, labels removed
        (4, {"app": "d", "x": "y"}),  # new
        (5, {"app": "e"}),  # replaced, had no labels before
        (6, {"bad key!" * 100: "v"}),  # replaced; the only key cannot be indexed, and nothing was stored
    ]
    stored = {1: {"app": "a"}, 2: {"app": "a"}, 3: {"app": "c"}}
    clear, insert = sql.index_changes(rows, {1, 2, 3, 5, 6}, stored)
    assert clear == [2, 3, 5]
    assert insert == [(2, "app", "b"), (4, "app", "d"), (4, "x", "y"), (5, "app", "e")]


def test_mysql_pages_with_selectors_sort_ids_first() -> None:
    q = Query(gvr=GVR("", "v1", "pods"), labels=(Requirement("app", "=", ("a",)),), limit=500)
    text, params = queries.select_page(sql.MYSQL, q, selective=False)
    assert "FORCE INDEX (resources_identity)" in text and "JOIN resources r ON r.id = page.id" in text
    assert params[-1] == 501
    text, _ = queries.select_page(sql.MYSQL, q, selective=True)
    assert "FORCE INDEX" not in text and "page.id" in text
    plain, _ = queries.select_page(sql.SQLITE, q, selective=False)
    assert "FORCE" not in plain and "page.id" not in plain  # SQLite's planner reads the order index itself


def test_probes_count_positive_index_terms_only() -> None:
    q = Query(gvr=GVR("", "v1", "pods"),
              labels=(Requirement("app", "=", ("a",)), Requirement("tier", "notin", ("x",)),
                      Requirement("team", "exists")),
              fields=(Requirement("status.phase", "==", ("Pending",)), Requirement("metadata.name", "=", ("n",))))
    got = queries.probes(sql.MYSQL, q)
    cap = queries.SELECTIVE + 1
    assert [p for _, p in got] == [["app", "a", cap], ["status.phase", "Pending", cap]]
    assert all("LIMIT %s" in t for t, _ in got)


def _statements(d: sql.Dialect, mutations: list[Mutation], new_ids: list[int] | None,
                results: dict[str, Any]) -> list[str]:
    """Drive apply_steps with canned results; the statements it issues, in order (first words only)."""
    steps = apply_steps(d, sql.plan(mutations), "2026-01-01T00:00:00Z", new_ids)
    out: list[str] = []
    result: Any = None
    while True:
        try:
            step = steps.send(result)
        except StopIteration:
            return out
        words = " ".join(step.text.split()[:3])
        out.append(words)
        fetched = [(6,)] if "MAX(id)" in words else [(2, 0)] if words.startswith("SELECT last_seq,") else []
        default = {"fetch": fetched, "insert_new": True}.get(step.kind, 1)
        result = next((v for k, v in results.items() if words.startswith(k)), default)


def _row(name: str, new: bool) -> Row:
    return Row(cluster="c1", gvr=GVR("", "v1", "pods"), namespace="ns", name=name, uid="u", kind="Pod",
               resource_version=1, object=b"{}", labels={"a": "b"}, new=new)


@pytest.mark.parametrize(("d", "ids"), [(sql.SQLITE, None), (sql.MYSQL, [7, 8])])
def test_a_batch_hinted_new_is_inserted_without_lookups(d: sql.Dialect, ids: list[int] | None) -> None:
    stmts = _statements(d, [_row("a", True), _row("b", True)], ids, {})
    first = ["SELECT COALESCE(MAX(id), 0)"] if d.name == "sqlite" else []
    # Then the change log: the cluster's position bumped and read, its entries appended.
    assert stmts == [*first, "SAVEPOINT new_rows", "INSERT INTO resources", "INSERT INTO resource_labels",
                     "INSERT INTO change_positions", "SELECT last_seq, pruned_to", "INSERT INTO changes"]


@pytest.mark.parametrize(("d", "ids"), [(sql.SQLITE, None), (sql.MYSQL, [7, 8])])
def test_a_refused_new_insert_rolls_back_and_checks_every_row(d: sql.Dialect, ids: list[int] | None) -> None:
    stmts = _statements(d, [_row("a", True), _row("b", True)], ids, {"INSERT INTO resources": False})
    assert stmts[stmts.index("INSERT INTO resources") + 1] == "ROLLBACK TO SAVEPOINT"
    assert "SELECT id, name," in stmts[stmts.index("ROLLBACK TO SAVEPOINT") + 1:]  # the lookup of the checked path


def test_a_mixed_batch_or_mysql_without_ids_takes_the_checked_path() -> None:
    for d, batch, ids in [(sql.SQLITE, [_row("a", True), _row("b", False)], None),
                          (sql.MYSQL, [_row("a", True)], None)]:
        stmts = _statements(d, batch, ids, {})
        assert "SAVEPOINT new_rows" not in stmts and stmts[0] == "SELECT id, name,"
