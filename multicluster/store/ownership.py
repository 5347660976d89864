"""Which tables of the database are the store's own: the multicluster_schema table.

The daemon may be pointed at a database that other software uses too, and our table names (`resources`,
`sync_state`, ...) are ordinary words. So every table the daemon creates is first recorded in multicluster_schema
with the layout it is created in, and start-up acts on that record alone:

- a table marked ours in an older layout is dropped and created anew (the store mirrors the clusters, so the
  next sync refills it rather than the daemon migrating rows in place);
- a table marked ours in the current layout is used as it is;
- a table with one of our names that is not marked is someone else's: the daemon refuses to start and changes
  nothing, not even by creating its own tables beside it;
- a table marked by a newer layout is refused too (a downgrade would misread it).

Stores written before the marks existed are recognised by their exact set of tables and columns (the layouts
below are history and never change) and marked as that layout, after which the rules above apply.

Plain DDL and single-row writes only, each table with a primary key (InnoDB): no LOCK TABLES or GET_LOCK, which
Galera does not replicate. Replicas starting together can both run this; marking is an insert that ignores an
existing mark, and of two replicas that find an old layout only the one whose conditional UPDATE of the mark
changes it drops the table.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from multicluster.errors import StoreError
from multicluster.store import schema, sql

log = logging.getLogger(__name__)

# The layout schema.sql describes. Bump it when a change to schema.sql makes rows written by the previous layout
# unusable (they are then dropped and refilled at start); a new table or index alone needs no bump.
#   1: resources.id is a hash of the identity (until November 2026)
#   2: resources.id is assigned in insertion order (AUTO_INCREMENT / SQLite's rowid)
LAYOUT = 2

MARKER = "multicluster_schema"
MARKER_DDL = (
    f"CREATE TABLE IF NOT EXISTS {MARKER} ( "
    "table_name VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY, "
    "layout INT NOT NULL, "
    "marked_at VARCHAR(40) CHARACTER SET ascii COLLATE ascii_bin NOT NULL "
    ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
)
_MARKER_COLUMNS = frozenset({"table_name", "layout", "marked_at"})

# The tables of the daemons that wrote no marks, with exactly these columns (layouts 1 and 2 share them; what
# tells them apart is whether resources.id is serial). id_blocks came late in layout 2, so it may be missing.
_UNMARKED_REQUIRED: Mapping[str, frozenset[str]] = {
    "resources": frozenset({"id", "cluster", "api_group", "version", "resource", "namespace", "name", "kind", "uid",
                            "resource_version", "owner", "created_at", "updated_at", "object"}),
    "resource_labels": frozenset({"id", "key", "value"}),
    "resource_fields": frozenset({"id", "key", "value"}),
    "sync_state": frozenset({"cluster", "api_group", "version", "resource", "status", "resource_version",
                             "synced_at", "error", "objects"}),
}
_UNMARKED_OPTIONAL: Mapping[str, frozenset[str]] = {"id_blocks": frozenset({"name", "next_id"})}

FIX = "point store.database/store.path at an empty database, or drop the table yourself"
REBUILD_NOTICE = ("the store was written by an older multicluster (layout {old}, now {new}); dropping its tables "
                  "so this sync refills them from the clusters")

_CREATE_TABLE = re.compile(r"^CREATE TABLE IF NOT EXISTS `?(\w+)`?", re.IGNORECASE)
_PLAIN_NAME = re.compile(r"^[a-z0-9_]{1,64}$")


def owned_tables(statements: Iterable[str]) -> list[str]:
    """The tables the schema creates, in its order."""
    return [m.group(1).lower() for s in statements if (m := _CREATE_TABLE.match(s))]


@dataclass(frozen=True, slots=True)
class Table:
    """A table (or view) found in the database under one of the names we care about."""

    columns: frozenset[str]
    serial_id: bool  # its `id` column is numbered by the database (AUTO_INCREMENT / SQLite's rowid)
    view: bool = False


# Tables and views with the given (lower-case) names, one row per column: name, kind, column, serial id.
_INTROSPECT = {
    "sqlite": (
        "SELECT lower(m.name), m.type, lower(p.name), p.pk = 1 AND upper(p.type) = 'INTEGER' "
        "FROM sqlite_master AS m, pragma_table_info(m.name) AS p "
        "WHERE m.type IN ('table', 'view') AND lower(m.name) IN ({names})"
    ),
    "mysql": (
        "SELECT LOWER(c.TABLE_NAME), t.TABLE_TYPE, LOWER(c.COLUMN_NAME), LOCATE('auto_increment', c.EXTRA) > 0 "
        "FROM information_schema.COLUMNS AS c JOIN information_schema.TABLES AS t "
        "ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME "
        "WHERE c.TABLE_SCHEMA = DATABASE() AND LOWER(c.TABLE_NAME) IN ({names})"
    ),
}
_MARK = {
    "sqlite": f"INSERT INTO {MARKER} (table_name, layout, marked_at) VALUES (?, ?, ?) "
              "ON CONFLICT (table_name) DO NOTHING",
    "mysql": f"INSERT INTO {MARKER} (table_name, layout, marked_at) VALUES (?, ?, ?) "
             "ON DUPLICATE KEY UPDATE table_name = table_name",
}


def tables_from_rows(rows: Iterable[Sequence[Any]]) -> dict[str, Table]:
    columns: dict[str, set[str]] = {}
    serial: dict[str, bool] = {}
    views: set[str] = set()
    for name, kind, column, is_serial in rows:
        columns.setdefault(name, set()).add(column)
        if column == "id" and is_serial:
            serial[name] = True
        if "view" in str(kind).lower():
            views.add(name)
    return {n: Table(frozenset(c), serial.get(n, False), n in views) for n, c in columns.items()}


@dataclass(frozen=True, slots=True)
class Plan:
    """What start-up does: mark unmarked tables of an earlier daemon (adopt), rebuild tables marked with an older
    layout (rebuild: table -> the layout its mark holds), then mark and create the rest."""

    adopt: Mapping[str, int]
    rebuild: Mapping[str, int]


def unmarked_layout(found: Mapping[str, Table]) -> int | None:
    """The layout of a store written before the marks, or None if what is there is not exactly one."""
    expected = {**_UNMARKED_REQUIRED, **_UNMARKED_OPTIONAL}
    if any(t not in found for t in _UNMARKED_REQUIRED):
        return None
    if any(t.view or t.columns != expected.get(name) for name, t in found.items() if name != MARKER):
        return None
    return 2 if found["resources"].serial_id else 1


def plan(found: Mapping[str, Table], marks: Mapping[str, int], owned: Sequence[str], where: str) -> Plan:
    """Decide start-up from what the database holds; StoreError (permanent) when it holds what is not ours."""
    marker = found.get(MARKER)
    if marker is not None and (marker.view or marker.columns != _MARKER_COLUMNS):
        raise StoreError(
            f"{where}: the database already holds a table `{MARKER}` that multicluster did not create (its "
            f"columns are {', '.join(sorted(marker.columns))}); it is where multicluster records which tables "
            "are its own, so the store does not start", hint=FIX, transient=False)
    present = [t for t in owned if t in found]
    unmarked = [t for t in present if t not in marks]
    adopt: dict[str, int] = {}
    if unmarked:
        layout = unmarked_layout(found) if not marks else None
        if layout is None:
            names = ", ".join(f"`{t}`" for t in unmarked)
            what, it = ("a table", "it") if len(unmarked) == 1 else ("tables", "them")
            raise StoreError(
                f"{where}: the database already holds {what} {names} that multicluster did not create (not "
                f"recorded in `{MARKER}`, and not exactly the tables of an earlier multicluster); the store "
                f"neither uses nor changes {it}, and does not start", hint=FIX, transient=False)
        adopt = dict.fromkeys(unmarked, layout)
    marks = {**marks, **adopt}
    newer = {t: v for t, v in marks.items() if v > LAYOUT}
    if newer:
        raise StoreError(
            f"{where}: the store was written by a newer multicluster (layout {max(newer.values())}; this one "
            f"writes layout {LAYOUT})", hint="run the newer multicluster, or point store.database/store.path at "
                                             "another database", transient=False)
    return Plan(adopt=adopt, rebuild={t: v for t, v in marks.items() if v < LAYOUT})


class Conn(Protocol):
    """A connection that runs one statement at a time (the store's writer during start-up)."""

    async def fetch(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    async def execute(self, text: str, params: Sequence[Any] = ()) -> Any: ...


async def _inspect(conn: Conn, d: sql.Dialect, names: Sequence[str]) -> dict[str, Table]:
    query = _INTROSPECT[d.name].format(names=", ".join("?" * len(names)))
    return tables_from_rows(await conn.fetch(d.sql(query), [n.lower() for n in names]))


async def survey(conn: Conn, d: sql.Dialect, where: str) -> tuple[dict[str, int], Plan]:
    """Read what the database holds and decide (the marks, the plan); StoreError if it holds what is not ours.
    Reads only, so it can run before anything else touches a database that may belong to someone else."""
    owned = owned_tables(schema.for_mysql())
    found = await _inspect(conn, d, [*owned, MARKER])
    marks: dict[str, int] = {}
    if MARKER in found and found[MARKER].columns == _MARKER_COLUMNS:
        rows = await conn.fetch(f"SELECT table_name, layout FROM {MARKER}")
        # Only plain names: a mark is later spliced into DROP TABLE.
        marks = {t: int(v) for t, v in ((str(t).lower(), v) for t, v in rows) if _PLAIN_NAME.match(t)}
    return marks, plan(found, marks, owned, where)


async def claim(conn: Conn, d: sql.Dialect, where: str, commit: Callable[[], Any] | None = None) -> None:
    """Make sure every table schema.sql creates is marked ours and in the current layout, before it is created.

    Runs before the schema's CREATE statements; `commit` ends the transaction of the mark writes on engines
    that have one open (MySQL; SQLite's writer is in autocommit mode)."""
    owned = owned_tables(schema.for_mysql())
    marks, p = await survey(conn, d, where)  # raises before anything is created or changed

    async def done() -> None:
        if commit is not None:
            await commit()

    now = sql.now_rfc3339()
    if not marks:  # a fresh database, or one written before the marks
        await conn.execute(schema.to_sqlite(MARKER_DDL) if d.name == "sqlite" else MARKER_DDL)
    if p.adopt:
        for table, layout in p.adopt.items():
            await conn.execute(d.sql(_MARK[d.name]), [table, layout, now])
        await done()
        log.info("%s: tables %s were written by an earlier multicluster (layout %d) and are now marked as its own "
                 "in %s", where, ", ".join(p.adopt), max(p.adopt.values()), MARKER)
    if p.rebuild:
        log.warning("%s: %s", where, REBUILD_NOTICE.format(old=min(p.rebuild.values()), new=LAYOUT))
        for table, layout in p.rebuild.items():
            # Of replicas starting together, only the one whose update changes the mark drops the table.
            if table in owned:
                changed = await conn.execute(
                    d.sql(f"UPDATE {MARKER} SET layout = ?, marked_at = ? WHERE table_name = ? AND layout = ?"),
                    [LAYOUT, now, table, layout])
            else:  # a table a former layout had and this one has not
                changed = await conn.execute(d.sql(f"DELETE FROM {MARKER} WHERE table_name = ? AND layout = ?"),
                                             [table, layout])
            await done()
            if changed:
                await conn.execute(f"DROP TABLE IF EXISTS `{table}`")
    # Marks are written only when missing: with grants per table, a user may have no INSERT on this one.
    unmarked = [t for t in owned if t not in marks and t not in p.adopt]
    for table in unmarked:
        await conn.execute(d.sql(_MARK[d.name]), [table, LAYOUT, now])
    if unmarked:
        await done()
