"""The SELECTs of a store Query, for both engines: filters, keyset pagination, one page, counts, one object.

Pure like sql.py (no I/O), whose dialect, widths and helpers it builds on. No caller-supplied string ever becomes
SQL text: values travel as parameters, and the only identifiers spliced in are the fixed tables and columns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from multicluster.errors import QueryError
from multicluster.gvr import GVR
from multicluster.store.base import ROW_OVERHEAD, Query, Requirement, SortOrder
from multicluster.store.sql import INDEX_VALUE_WIDTH, Dialect, ids_in, indexable

# What a query returns, in StoredObject order after (cluster, namespace, name).
SELECT_COLUMNS = ("r.cluster, r.namespace, r.name, r.uid, r.kind, r.resource_version, r.object, "
                  "r.created_at, r.updated_at")

ORDERS: dict[str, tuple[str, ...]] = {
    "cluster": ("cluster", "namespace", "name"),
    "namespace": ("namespace", "name", "cluster"),
    "name": ("name", "cluster", "namespace"),
    "created": ("created_at", "cluster", "namespace", "name"),
    "-created": ("created_at", "cluster", "namespace", "name"),
}
# Field selector keys that are columns of `resources` rather than rows of resource_fields.
FIELD_COLUMNS = {"metadata.name": "name", "metadata.namespace": "namespace"}
LIKE_ESCAPE = "!"  # not backslash: MySQL and SQLite disagree on how to write a backslash literal


@dataclass(slots=True)
class Where:
    """A conjunction of SQL terms and their parameters, built in order."""

    terms: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)

    def add(self, term: str, *params: Any) -> None:
        self.terms.append(term)
        self.params.extend(params)

    def never(self) -> None:
        self.terms.append("1 = 0")

    def text(self) -> str:
        return _conjunction(self.terms) if self.terms else "1 = 1"


_FLAT = 8  # terms ANDed in a row; more are grouped in parentheses, two groups per level


def _conjunction(terms: Sequence[str]) -> str:
    """`a AND b AND ...` as a balanced tree: a parser nests a flat chain one level per term, and SQLite refuses
    an expression deeper than 1,000 levels (SQLITE_MAX_EXPR_DEPTH). Balanced, n terms nest about log2(n)."""
    if len(terms) <= _FLAT:
        return " AND ".join(terms)
    mid = len(terms) // 2
    return f"({_conjunction(terms[:mid])}) AND ({_conjunction(terms[mid:])})"


def like_escape(s: str) -> str:
    e = LIKE_ESCAPE
    return s.replace(e, e + e).replace("%", e + "%").replace("_", e + "_")


def _ascii_in(w: Where, column: str, values: Sequence[str]) -> None:
    """`column IN (...)` over an ASCII column: a non-ASCII value cannot be stored there, so it matches nothing
    (and MySQL would refuse to compare it with an ASCII column rather than say false)."""
    usable = [v for v in dict.fromkeys(values) if v.isascii()]
    if not usable:
        w.never()
    else:
        w.add(f"r.{column} IN {ids_in(len(usable))}", *usable)


def _index_term(w: Where, table: str, req: Requirement, op: str) -> None:
    """One selector term against resource_labels/resource_fields, with Kubernetes semantics: `!=` and `notin`
    also match objects that lack the key."""
    sub = f"SELECT 1 FROM {table} x WHERE x.id = r.id AND x.`key` = ?"
    values = [v[:INDEX_VALUE_WIDTH] for v in req.values]
    if not indexable(req.key):
        # No stored row can carry this key: positive terms match nothing, negative ones everything.
        if op in ("=", "in", "exists"):
            w.never()
        return
    if op in ("=", "!="):
        if len(values) != 1:
            raise QueryError(f'selector "{req.key}{op}": needs exactly one value')
        w.add(f"{'' if op == '=' else 'NOT '}EXISTS ({sub} AND x.`value` = ?)", req.key, values[0])
    elif op in ("in", "notin"):
        if not values:
            if op == "in":
                w.never()
            return
        w.add(f"{'' if op == 'in' else 'NOT '}EXISTS ({sub} AND x.`value` IN {ids_in(len(values))})",
              req.key, *values)
    elif op in ("exists", "!"):
        w.add(f"{'' if op == 'exists' else 'NOT '}EXISTS ({sub})", req.key)
    else:
        raise QueryError(f'selector "{req.key}": unknown operator "{req.op}"',
                         hint="label selectors take =, ==, !=, in, notin, exists (key) and ! (!key)")


def _label_term(w: Where, req: Requirement) -> None:
    _index_term(w, "resource_labels", req, "=" if req.op == "==" else req.op)


def _field_term(w: Where, req: Requirement) -> None:
    op = "=" if req.op == "==" else req.op
    if op not in ("=", "!="):
        raise QueryError(f'field selector "{req.key}": unsupported operator "{req.op}"',
                         hint="field selectors take =, == and !=")
    if len(req.values) != 1:
        raise QueryError(f'field selector "{req.key}{req.op}": needs exactly one value')
    column = FIELD_COLUMNS.get(req.key)
    value = req.values[0]
    if column is not None:
        if column != "name" and not value.isascii():
            if op == "=":
                w.never()
            return
        w.add(f"r.{column} {'=' if op == '=' else '<>'} ?", value)
    elif value == "":
        # Kubernetes reads a missing field as "": `spec.nodeName=` matches unscheduled pods whether or not
        # the informer recorded the empty value.
        sub = "SELECT 1 FROM resource_fields x WHERE x.id = r.id AND x.`key` = ? AND x.`value` <> ?"
        if indexable(req.key):
            w.add(f"{'NOT ' if op == '=' else ''}EXISTS ({sub})", req.key, "")
        elif op == "!=":
            w.never()
    else:
        _index_term(w, "resource_fields", Requirement(req.key, op, (value,)), op)


def filters(q: Query) -> Where:
    """WHERE terms for everything in a Query except pagination."""
    w = Where()
    g = q.gvr
    if not (g.group.isascii() and g.version.isascii() and g.resource.isascii()):
        w.never()
        return w
    w.add("r.api_group = ? AND r.version = ? AND r.resource = ?", g.group, g.version, g.resource)
    if q.clusters:
        _ascii_in(w, "cluster", q.clusters)
    if q.namespaces:
        _ascii_in(w, "namespace", q.namespaces)
    if q.name is not None:
        w.add("r.name = ?", q.name)
    for prefix, text in (("", q.name_prefix), ("%", q.name_contains)):
        if not text:
            continue
        if "\x00" in text:
            w.never()  # no stored name holds NUL, and SQLite's LIKE would stop reading the pattern there
        else:
            w.add(f"r.name LIKE ? ESCAPE '{LIKE_ESCAPE}'", prefix + like_escape(text) + "%")
    for req in q.labels:
        _label_term(w, req)
    for req in q.fields:
        _field_term(w, req)
    if q.allowed is not None:
        _allowed_term(w, q.allowed)
    return w


def _allowed_term(w: Where, allowed: Sequence[tuple[str, Sequence[str] | None]]) -> None:
    """`(cluster = ? [AND namespace IN (...)]) OR ...`: the clusters and namespaces a user may read."""
    terms: list[str] = []
    params: list[str] = []
    for cluster, namespaces in allowed:
        if not cluster.isascii():
            continue
        if namespaces is None:
            terms.append("r.cluster = ?")
            params.append(cluster)
            continue
        usable = [n for n in dict.fromkeys(namespaces) if n.isascii()]
        if usable:
            terms.append(f"(r.cluster = ? AND r.namespace IN {ids_in(len(usable))})")
            params += [cluster, *usable]
    if not terms:
        w.never()
    else:
        w.add("(" + " OR ".join(terms) + ")", *params)


def namespaces_of(gvr: GVR, clusters: Sequence[str]) -> tuple[str, list[str]]:
    """SELECT the distinct (cluster, namespace) pairs of one type's rows in some clusters (an index range of
    resources_identity)."""
    usable = [c for c in dict.fromkeys(clusters) if c.isascii()]
    if not usable or not (gvr.group.isascii() and gvr.version.isascii() and gvr.resource.isascii()):
        return "SELECT cluster, namespace FROM resources WHERE 1 = 0", []
    return (f"SELECT DISTINCT cluster, namespace FROM resources WHERE api_group = ? AND version = ? AND resource = ? "
            f"AND cluster IN {ids_in(len(usable))}", [gvr.group, gvr.version, gvr.resource, *usable])


def pinned(q: Query) -> dict[str, str]:
    """Sort columns that an equality filter holds to one value (one cluster, one namespace, exact name)."""
    out: dict[str, str] = {}
    if len(q.clusters) == 1:
        out["cluster"] = q.clusters[0]
    if len(q.namespaces) == 1:
        out["namespace"] = q.namespaces[0]
    if q.name is not None:
        out["name"] = q.name
    return out


def keyset(w: Where, order: SortOrder, after: Sequence[str], fixed: Mapping[str, str] | None = None) -> None:
    """Rows strictly after `after` in `order`, as nested OR/AND (portable; no row-value comparison).

    The leading `a >= ?` is redundant but lets both optimisers turn the OR into an index range. Columns that a
    filter pins to the token's own value are left out: every candidate row has that value, and a leading
    `cluster >= ?` would otherwise make SQLite range-scan all later clusters instead of seeking
    `cluster = ? AND namespace = ?`.
    """
    cols = ORDERS[order]
    # Every column but name is ASCII: a token holding anything else was not made by this store.
    if len(after) != len(cols) or not all(isinstance(v, str) and (c == "name" or v.isascii())
                                          for c, v in zip(cols, after, strict=True)):
        raise QueryError(f"continue token does not belong to order={order}",
                         hint="start again without a continue token")
    fixed = fixed or {}
    kept = [(c, v) for c, v in zip(cols, after, strict=True) if fixed.get(c) != v]
    if not kept:
        w.never()  # every sort column is pinned and equal to the token: nothing comes after it
        return
    cols, after = tuple(c for c, _ in kept), [v for _, v in kept]
    gt = "<" if order == "-created" else ">"
    expr = f"r.{cols[-1]} {gt} ?"
    params: list[Any] = [after[-1]]
    for col, value in zip(reversed(cols[:-1]), reversed(after[:-1]), strict=True):
        expr = f"r.{col} {gt} ? OR (r.{col} = ? AND ({expr}))"
        params = [value, value, *params]
    w.add(f"r.{cols[0]} {gt}= ? AND ({expr})", after[0], *params)


def order_by(order: SortOrder) -> str:
    direction = " DESC" if order == "-created" else ""
    return ", ".join(f"r.{c}{direction}" for c in ORDERS[order])


ORDER_INDEX = {"cluster": "resources_identity", "namespace": "resources_by_namespace", "name": "resources_by_name",
               "created": "resources_by_created", "-created": "resources_by_created"}
SELECTIVE = 2000  # matches of one selector term below which a MySQL query is driven from that term's index


def probes(d: Dialect, q: Query) -> list[tuple[str, list[Any]]]:
    """For each positive selector term (=, in), a statement counting its matching index rows, capped at
    SELECTIVE + 1: cheap (one bounded index range) and enough to tell "few" from "many"."""
    out: list[tuple[str, list[Any]]] = []
    terms = [("resource_labels", r) for r in q.labels] + \
        [("resource_fields", r) for r in q.fields if r.key not in FIELD_COLUMNS]
    for table, req in terms:
        op = "=" if req.op == "==" else req.op
        values = [v[:INDEX_VALUE_WIDTH] for v in req.values if v]
        if op not in ("=", "in") or not values or not indexable(req.key):
            continue
        inner = f"SELECT 1 FROM {table} WHERE `key` = ? AND `value` IN {ids_in(len(values))} LIMIT ?"
        out.append((d.sql(f"SELECT COUNT(*) FROM ({inner}) t"), [req.key, *values, SELECTIVE + 1]))
    return out


def select_page(d: Dialect, q: Query, *, selective: bool = True) -> tuple[str, list[Any]]:
    """One page of a query. `selective` (MySQL only): some selector term matches few rows (see probes), so
    the optimiser may drive the query from that term's index; otherwise the page is read in index order."""
    if q.order not in ORDERS:
        raise QueryError(f'unknown order "{q.order}"', hint="order is one of " + ", ".join(ORDERS))
    if q.limit < 0:
        raise QueryError(f"limit {q.limit} is negative", hint="limit is 0 (everything) or a positive number")
    w = filters(q)
    if q.after is not None:
        keyset(w, q.order, q.after, pinned(q))
    params = list(w.params)
    limit = " LIMIT ?" if q.limit else ""
    if q.limit:
        params.append(q.limit + 1)
    if d.name == "mysql" and q.limit and (q.labels or q.fields or q.name_prefix or q.name_contains):
        # MariaDB drives selectors from the label/field index and then sorts every match, object bodies
        # included, in a temporary table (seconds at 1 M rows). Sorting ids first and fetching the page's
        # bodies by primary key afterwards keeps that sort narrow.
        # Left to itself MariaDB also drives a selector that matches most rows (status.phase=Running) from its
        # index and joins every match (seconds); reading the sort order's index and checking each row stops
        # after one page. Only a selective term is better driven from its own index.
        force = "" if selective else f" FORCE INDEX ({ORDER_INDEX[q.order]})"
        inner = f"SELECT r.id FROM resources r{force} WHERE {w.text()} ORDER BY {order_by(q.order)}{limit}"
        text = f"SELECT {SELECT_COLUMNS} FROM ({inner}) page JOIN resources r ON r.id = page.id " \
               f"ORDER BY {order_by(q.order)}"
        return d.sql(text), params
    text = f"SELECT {SELECT_COLUMNS} FROM resources r WHERE {w.text()} ORDER BY {order_by(q.order)}{limit}"
    return d.sql(text), params


def count_after(d: Dialect, q: Query, after: Sequence[str], cap: int = 0) -> tuple[str, list[Any]]:
    """Rows after `after`; with `cap`, at most cap + 1 of them are counted (more than cap: the count is capped)."""
    w = filters(q)
    keyset(w, q.order, after, pinned(q))
    if cap > 0:
        return d.sql(f"SELECT COUNT(*) FROM (SELECT 1 FROM resources r WHERE {w.text()} LIMIT ?) t"), \
            [*w.params, cap + 1]
    return d.sql(f"SELECT COUNT(*) FROM resources r WHERE {w.text()}"), list(w.params)


def row_cost(row: Sequence[Any]) -> int:
    """What a row of select_page() costs a page (Query.max_bytes): its object, its cluster name, ROW_OVERHEAD."""
    return len(row[6]) + len(row[0]) + ROW_OVERHEAD


def select_one(d: Dialect, cluster: str, gvr: GVR, namespace: str, name: str) -> tuple[str, list[Any]]:
    text = (f"SELECT {SELECT_COLUMNS} FROM resources r WHERE r.api_group = ? AND r.version = ? "
            "AND r.resource = ? AND r.cluster = ? AND r.namespace = ? AND r.name = ?")
    return d.sql(text), [gvr.group, gvr.version, gvr.resource, cluster, namespace, name]
