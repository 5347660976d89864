"""SQL shared by both engines: the dialect, row identity and widths, index rows, and the write plan of a batch.

Query building (the SELECTs of a Query) is in queries.py. Everything here is pure (no I/O) so it can be read, and
tested, apart from the drivers. Statements are written once with `?` placeholders; the MySQL dialect swaps in
`%s`. No caller-supplied string ever becomes SQL text: values travel as parameters, and the only identifiers
spliced in come from the fixed tables below.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from multicluster.gvr import GVR
from multicluster.store.base import Delete, Mutation, Row

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
    return [(k, v[:INDEX_VALUE_WIDTH]) for k, v in values.items() if indexable(k)]


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


def indexable(key: str) -> bool:
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
