"""The change log: one entry per committed mutation, written in the transaction that makes the mutation.

Both engines append through the same transaction bodies (Steps, see engine.py), so the log cannot drift from the
rows: an entry exists exactly when its row change committed. Positions are per cluster. Appending first bumps the
cluster's row in `change_positions` (an upsert, so it holds that row's lock until commit) and numbers the entries
after the value it read; a second transaction appending for the same cluster waits on that lock, so within a
cluster a higher position is always a later commit, however many replicas write (in lease mode one replica writes
a cluster, and during a hand-over the lock keeps two in order). Across clusters there is no order, and none is
needed: a watcher's resourceVersion is a position per cluster.

Retention is per cluster: after appending, entries older than the newest `retention` are pruned, at most
2 x (entries appended) + PRUNE_SLACK of them per transaction, so a lowered retention catches up over a few
batches instead of in one long delete, and the log never grows without bound. `pruned_to` records the position
up to which entries are gone: a watcher asking to resume from an older position gets 410 Gone (Expired).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

import msgspec

from multicluster.gvr import GVR
from multicluster.store import sql
from multicluster.store.base import Change, LogPosition, Pending
from multicluster.store.sql import Step

DEFAULT_RETENTION = 10_000  # entries kept per cluster (store.changeRetention)
PRUNE_SLACK = 1_000

CHANGE_COLUMNS = ("cluster", "seq", "event_type", "api_group", "version", "resource", "namespace", "name",
                  "resource_version", "object", "selectors")
_JSON = msgspec.json.Encoder()
_UNJSON = msgspec.json.Decoder()


def _selectors(p: Pending) -> bytes:
    out: dict[str, Any] = {"l": dict(p.labels), "f": dict(p.fields)}
    if p.prev_labels is not None:
        out["pl"] = dict(p.prev_labels)
        out["pf"] = dict(p.prev_fields or {})
    return _JSON.encode(out)


def _bump(d: sql.Dialect) -> str:
    if d.name == "mysql":
        return d.sql("INSERT INTO change_positions (cluster, last_seq, pruned_to) VALUES (?, ?, 0) "
                     "ON DUPLICATE KEY UPDATE last_seq = last_seq + VALUES(last_seq)")
    return ("INSERT INTO change_positions (cluster, last_seq, pruned_to) VALUES (?, ?, 0) "
            "ON CONFLICT(cluster) DO UPDATE SET last_seq = last_seq + excluded.last_seq")


def insert_changes(d: sql.Dialect) -> str:
    return d.sql(f"INSERT INTO changes ({', '.join(CHANGE_COLUMNS)}) VALUES ({', '.join('?' * len(CHANGE_COLUMNS))})")


def append(d: sql.Dialect, pending: Sequence[Pending], retention: int) -> Generator[Step, Any, list[Change]]:
    """Steps that log `pending` (in order within each cluster) and prune; returns the entries with positions."""
    by_cluster: dict[str, list[Pending]] = {}
    for p in pending:
        by_cluster.setdefault(p.cluster, []).append(p)
    out: list[Change] = []
    # Clusters in sorted order, so two transactions lock position rows in the same order (no deadlock).
    for cluster in sorted(by_cluster):
        entries = by_cluster[cluster]
        yield Step("execute", _bump(d), [cluster, len(entries)])
        rows = yield Step("fetch", d.sql("SELECT last_seq, pruned_to FROM change_positions WHERE cluster = ?"),
                          [cluster])
        last, pruned = int(rows[0][0]), int(rows[0][1])
        first = last - len(entries) + 1
        params = []
        for i, p in enumerate(entries):
            seq = first + i
            g = p.gvr
            # Only a deletion keeps its object in the log: for the others it is in the row (read back by
            # select_after), so logging costs the position and the selector values, not a second copy.
            params.append((cluster, seq, p.type, g.group, g.version, g.resource, p.namespace, p.name,
                           p.resource_version, p.object if p.type == "DELETED" else b"", _selectors(p)))
            out.append(Change(cluster=cluster, seq=seq, type=p.type, gvr=g, namespace=p.namespace, name=p.name,
                              resource_version=p.resource_version, object=p.object, labels=p.labels,
                              fields=p.fields, prev_labels=p.prev_labels, prev_fields=p.prev_fields))
        yield Step("executemany", insert_changes(d), params)
        cut = min(last - max(retention, 1), pruned + 2 * len(entries) + PRUNE_SLACK)
        if cut > pruned:
            yield Step("execute", d.sql("DELETE FROM changes WHERE cluster = ? AND seq > ? AND seq <= ?"),
                       [cluster, pruned, cut])
            yield Step("execute", d.sql("UPDATE change_positions SET pruned_to = ? WHERE cluster = ?"), [cut, cluster])
    return out


def positions_query() -> str:
    return "SELECT cluster, last_seq, pruned_to FROM change_positions"


def positions(rows: Sequence[Sequence[Any]]) -> dict[str, LogPosition]:
    return {str(c): LogPosition(cluster=str(c), last=int(last), floor=int(pruned)) for c, last, pruned in rows}


def select_after(d: sql.Dialect, cluster: str, seq: int, gvr: GVR | None, limit: int) -> tuple[str, list[Any]]:
    """One cluster's entries after `seq` in order: a range of the primary key (cluster, seq)."""
    where = "c.cluster = ? AND c.seq > ?"
    params: list[Any] = [cluster, seq]
    if gvr is not None:
        where += " AND c.api_group = ? AND c.version = ? AND c.resource = ?"
        params += [gvr.group, gvr.version, gvr.resource]
    params.append(limit)
    cols = ", ".join(f"c.{c}" if c != "object" else _OBJECT for c in CHANGE_COLUMNS)
    return d.sql(f"SELECT {cols} FROM changes c LEFT JOIN resources r ON {_SAME_OBJECT} WHERE {where} "
                 "ORDER BY c.seq LIMIT ?"), params


# An upsert's object is the row's, as it is now: the state the entry logged, or a later one (a later entry of the
# same object follows). Its row gone, the entry reads as superseded (Change.superseded): the DELETED entry that
# removed the row follows and carries the last state.
_SAME_OBJECT = ("r.api_group = c.api_group AND r.version = c.version AND r.resource = c.resource "
                "AND r.cluster = c.cluster AND r.namespace = c.namespace AND r.name = c.name")
_OBJECT = "CASE WHEN c.event_type = 'DELETED' THEN c.object ELSE COALESCE(r.object, c.object) END"


_GVRS: dict[tuple[str, str, str], GVR] = {}


def decode(row: Sequence[Any]) -> Change:
    cluster, seq, event, group, version, resource, namespace, name, rv, obj, selectors = row
    key = (group, version, resource)
    gvr = _GVRS.get(key) or _GVRS.setdefault(key, GVR(group, version, resource))
    s = _UNJSON.decode(bytes(selectors))
    return Change(cluster=cluster, seq=int(seq), type=event, gvr=gvr, namespace=namespace, name=name,
                  resource_version=int(rv), object=bytes(obj or b""), labels=s.get("l") or {}, fields=s.get("f") or {},
                  prev_labels=s.get("pl"), prev_fields=s.get("pf"))
