"""SQL shared by both engines: row identity, the write plan of a batch, and query building.

Everything here is pure (no I/O) so it can be read, and tested, apart from the drivers. Statements are written
once with `?` placeholders; the MySQL dialect swaps in `%s`. No caller-supplied string ever becomes SQL text:
values travel as parameters, and the only identifiers spliced in come from the fixed tables below.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from multicluster.errors import QueryError
from multicluster.gvr import GVR
from multicluster.store.base import ROW_OVERHEAD, Delete, Mutation, Query, Requirement, Row, SortOrder

# Column widths of schema.sql. MySQL in strict mode rejects a value that does not fit, which would fail the
# whole batch over one odd object, so apply() checks identities first (see `fits`).
WIDTH = {"cluster": 63, "api_group": 253, "version": 63, "resource": 253, "namespace": 63, "name": 253}
INDEX_KEY_WIDTH = 317  # label key: 253-char DNS prefix + "/" + 63-char name
INDEX_VALUE_WIDTH = 512  # label values are <= 63 by validation; field values are bounded here
ERROR_WIDTH = 8000

# `id` is not among them: the store assigns it (AUTO_INCREMENT / SQLite's INTEGER PRIMARY KEY).
RESOURCE_COLUMNS = (
    "cluster", "api_group", "version", "resource", "namespace", "name", "kind", "uid", "owner",
    "created_at", "updated_at", "object", "resource_version",
)
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


@dataclass(frozen=True, slots=True)
class Dialect:
    name: Literal["sqlite", "mysql"]

    def sql(self, text: str) -> str:
        """Placeholders for the driver: sqlite3 takes `?`, PyMySQL `%s` (so no literal `%` may appear)."""
        if self.name == "mysql":
            assert "%" not in text, text
            return text.replace("?", "%s")
        return text


SQLITE = Dialect("sqlite")
MYSQL = Dialect("mysql")


Ident = tuple[str, GVR, str, str]  # (cluster, gvr, namespace, name): what resources_identity keys on


def ident(m: Mutation) -> Ident:
    return (m.cluster, m.gvr, m.namespace, m.name)


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def fits(m: Mutation) -> bool:
    """Whether a mutation fits the columns (ASCII where the schema says so, within the widths)."""
    if not _gvr_fits(m.gvr):
        return False
    cluster, namespace, name = m.cluster, m.namespace, m.name
    if (len(cluster) > WIDTH["cluster"] or len(namespace) > WIDTH["namespace"] or not 0 < len(name) <= WIDTH["name"]
            or not cluster.isascii()
            or not namespace.isascii() or "\x00" in cluster or "\x00" in namespace or "\x00" in name):
        return False
    return not isinstance(m, Row) or (len(m.uid) <= 128 and len(m.owner) <= 128 and len(m.kind) <= 253
                                      and len(m.created_at) <= 40 and m.created_at.isascii())


@functools.lru_cache(maxsize=1024)
def _gvr_fits(gvr: GVR) -> bool:
    return all(len(v) <= WIDTH[col] and v.isascii() and "\x00" not in v
               for col, v in (("api_group", gvr.group), ("version", gvr.version), ("resource", gvr.resource)))


def index_pairs(values: Mapping[str, str]) -> list[tuple[str, str]]:
    """Label/field (key, value) pairs as stored: keys that cannot be indexed are left out (no selector could
    name them), over-long values are cut to the column width (queries cut theirs the same way)."""
    return [(k, v[:INDEX_VALUE_WIDTH]) for k, v in values.items() if _indexable(k)]


def index_changes(
    rows: Sequence[tuple[int, Mapping[str, str]]], existed: set[int], stored: Mapping[int, Mapping[str, str]]
) -> tuple[list[int], list[tuple[int, str, str]]]:
    """Which ids need their label (or field) rows cleared, and which rows to insert.

    A new row only inserts; a replaced row whose indexed values did not change (the usual update: status or
    data moved, labels did not) writes nothing to the index table at all.
    """
    clear: list[int] = []
    insert: list[tuple[int, str, str]] = []
    for rid, values in rows:
        pairs = index_pairs(values)
        if rid in existed:
            if dict(pairs) == (stored.get(rid) or {}):
                continue
            clear.append(rid)
        insert.extend((rid, k, v) for k, v in pairs)
    return clear, insert


def _indexable(key: str) -> bool:
    return key.isascii() and 0 < len(key) <= INDEX_KEY_WIDTH


# --------------------------------------------------------------------------------------------------- writes


@dataclass(frozen=True, slots=True)
class Step:
    """One statement of a write transaction, for whichever driver runs it.

    The transaction logic of apply() is a generator of Steps (see engine.apply_steps) so it is written once: the
    MySQL engine awaits each step on its async driver, the SQLite engine runs the whole generator inside its
    writer thread, so a batch costs one hand-off between threads instead of one per statement.
    fetch -> list of row tuples, execute -> affected row count, executemany -> None, insert_new -> whether
    every row was inserted (see Tx.insert_new).
    """

    kind: Literal["fetch", "execute", "executemany", "insert_new"]
    text: str
    params: Sequence[Any]


@dataclass(slots=True)
class WritePlan:
    """What one apply() call will do once the stored rows are known."""

    winners: dict[Ident, Mutation] = field(default_factory=dict)
    skipped: int = 0  # superseded inside the batch, or unfit for the columns
    unfit: list[Mutation] = field(default_factory=list)


def _supersedes(new: Mutation, old: Mutation) -> bool:
    """Within one batch, later events are newer; an RV only says otherwise when both carry one."""
    if new.resource_version == 0 or old.resource_version == 0:
        return True  # an unconditional Delete, or whatever follows it, acts in batch order
    if new.resource_version != old.resource_version:
        return new.resource_version > old.resource_version
    return isinstance(new, Delete)  # a delete at the same RV is the object's last word


def plan(mutations: Sequence[Mutation]) -> WritePlan:
    p = WritePlan()
    for m in mutations:
        if not fits(m):
            p.skipped += 1
            p.unfit.append(m)
            continue
        key = ident(m)
        old = p.winners.get(key)
        if old is None:
            p.winners[key] = m
        elif _supersedes(m, old):
            p.winners[key] = m
            p.skipped += 1
        else:
            p.skipped += 1
    return p


@dataclass(slots=True)
class Decision:
    rows: list[tuple[Ident, Row]] = field(default_factory=list)
    replaced: dict[Ident, int] = field(default_factory=dict)  # rows that exist -> their ids
    deletes: list[int] = field(default_factory=list)  # ids
    deleted: list[tuple[int, Ident, int]] = field(default_factory=list)  # (id, identity, the Delete's RV)
    skipped: int = 0


def decide(p: WritePlan, stored: Mapping[Ident, tuple[int, int]]) -> Decision:
    """Apply the resourceVersion guard: `stored` maps identity -> (id, RV) of the rows that exist."""
    d = Decision(skipped=p.skipped)
    for key, m in p.winners.items():
        current = stored.get(key)
        if isinstance(m, Row):
            if current is not None and m.resource_version <= current[1]:
                d.skipped += 1
                continue
            d.rows.append((key, m))
            if current is not None:
                d.replaced[key] = current[0]
        elif current is not None:
            if m.resource_version and m.resource_version < current[1]:
                d.skipped += 1
            else:
                d.deletes.append(current[0])
                d.deleted.append((current[0], key, m.resource_version))
    return d


def lookups(d: Dialect, keys: Sequence[Ident], lock: str) -> list[tuple[tuple[str, GVR, str], str, list[Any]]]:
    """Statements reading (id, name, resource_version) of the given identities through resources_identity:
    one per (cluster, type, namespace) and chunk of names, so every one is a set of point lookups. Each comes
    with the (cluster, gvr, namespace) its names belong to."""
    groups: dict[tuple[str, GVR, str], list[str]] = {}
    for cluster, gvr, namespace, name in keys:
        groups.setdefault((cluster, gvr, namespace), []).append(name)
    out: list[tuple[tuple[str, GVR, str], str, list[Any]]] = []
    for group, names in groups.items():
        cluster, gvr, namespace = group
        for part in chunks(names):
            text = ("SELECT id, name, resource_version FROM resources WHERE api_group = ? AND version = ? "
                    f"AND resource = ? AND cluster = ? AND namespace = ? AND name IN {ids_in(len(part))}{lock}")
            out.append((group, d.sql(text), [gvr.group, gvr.version, gvr.resource, cluster, namespace, *part]))
    return out


def resource_params(r: Row, updated_at: str) -> tuple[Any, ...]:
    """Parameters in RESOURCE_COLUMNS order."""
    return (r.cluster, r.gvr.group, r.gvr.version, r.gvr.resource, r.namespace, r.name, r.kind, r.uid,
            r.owner, r.created_at, updated_at, r.object, r.resource_version)


def _insert_resources(with_id: bool) -> str:
    cols = ("id", *RESOURCE_COLUMNS) if with_id else RESOURCE_COLUMNS
    return f"INSERT INTO resources ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"


def insert_new_resources(d: Dialect) -> str:
    """A plain insert of numbered rows (an `id` parameter leads each row): an existing identity or id makes the
    statement fail instead of changing any row."""
    return d.sql(_insert_resources(True))


_UPDATED = [c for c in RESOURCE_COLUMNS if c not in ("cluster", "api_group", "version", "resource",
                                                        "namespace", "name", "resource_version")]


def upsert_resources(d: Dialect, *, with_id: bool = False) -> str:
    """Batch upsert that refuses to go backwards even if another replica wrote in between. `with_id`: the
    caller numbers new rows itself (an `id` parameter leads each row)."""
    if d.name == "mysql":
        # MySQL evaluates assignments left to right, so resource_version must be assigned last or the
        # IF()s after it would compare against the new value.
        sets = [f"{c} = IF(VALUES(resource_version) > resource_version, VALUES({c}), {c})" for c in _UPDATED]
        sets.append("resource_version = GREATEST(resource_version, VALUES(resource_version))")
        return d.sql(f"{_insert_resources(with_id)} ON DUPLICATE KEY UPDATE {', '.join(sets)}")
    sets = [f"{c} = excluded.{c}" for c in [*_UPDATED, "resource_version"]]
    return f"{_insert_resources(with_id)} ON CONFLICT(api_group, version, resource, cluster, namespace, name) " \
           f"DO UPDATE SET {', '.join(sets)} " \
           "WHERE excluded.resource_version > resources.resource_version"


def insert_index(d: Dialect, table: str) -> str:
    assert table in ("resource_labels", "resource_fields")
    return d.sql(f"INSERT INTO {table} (id, `key`, `value`) VALUES (?, ?, ?)")


def ids_in(n: int) -> str:
    return "(" + ", ".join("?" * n) + ")"


def upsert_sync_state(d: Dialect) -> str:
    cols = ("cluster", "api_group", "version", "resource", "status", "resource_version", "synced_at", "error",
            "objects")
    head = f"INSERT INTO sync_state ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
    if d.name == "mysql":
        return d.sql(head + " ON DUPLICATE KEY UPDATE " + ", ".join(f"{c} = VALUES({c})" for c in cols[4:]))
    return head + " ON CONFLICT(cluster, api_group, version, resource) DO UPDATE SET " + \
        ", ".join(f"{c} = excluded.{c}" for c in cols[4:])


def chunks(items: Sequence[Any], size: int = 500) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


_VALUES = re.compile(r"\bVALUES\s*(\((?:\s*\?\s*,)*\s*\?\s*\))")
MAX_PARAMS = 30_000  # SQLite's limit on bound parameters per statement is 32,766 (since 3.32)


@functools.lru_cache(maxsize=64)
def multi_row(text: str, rows: int) -> str:
    """An `INSERT ... VALUES (?, ...)` statement rewritten to insert `rows` rows at once.

    sqlite3's executemany() steps the statement once per row and gives up the GIL around every step; while
    the event loop thread is busy parsing list pages each step then waits for the GIL again (measured: 200
    rows/s instead of 5,400 against one CPU-bound thread). One statement per chunk takes the GIL once.
    """
    m = _VALUES.search(text)
    if m is None:
        raise ValueError(f"not a single-row INSERT ... VALUES statement: {text[:80]}")
    group = m.group(1)
    return f"{text[: m.start(1)]}{', '.join([group] * rows)}{text[m.end(1):]}"


def row_chunks(rows: Sequence[Sequence[Any]], width: int, max_rows: int = 2500) -> list[Sequence[Sequence[Any]]]:
    """Chunks of rows that stay under the bound-parameter limit when inserted with multi_row(). Large, because
    every statement costs the writer thread one more wait for the GIL: a batch's 1,500 label rows go in one."""
    per = max(1, min(max_rows, MAX_PARAMS // max(1, width)))
    return chunks(rows, per)


# --------------------------------------------------------------------------------------------------- reads


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
    if not _indexable(req.key):
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
        if _indexable(req.key):
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
        if op not in ("=", "in") or not values or not _indexable(req.key):
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
