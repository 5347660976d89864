"""The Store contract: what the informers write and the API reads, independent of the SQL engine.

Optional capabilities are protocols of their own, checked with isinstance by the code that can use them:
PipelinedStore (start_apply: queue the next batch behind the one being written) is offered by SQLite only.

Two implementations pass the same contract tests: sqlite.py (embedded default) and mysql.py (MySQL/MariaDB via
aiomysql). The daemon never holds whole objects; rows arrive already serialised (`object` is JSON bytes) and
leave the same way, so the API can stream them without re-encoding.

Identity: a row is (cluster, gvr, namespace, name); `namespace` is "" for cluster-scoped objects. The resource
version is stored as an integer because every guard compares it: Kubernetes calls RVs opaque, but etcd-backed
servers (every conformant one) issue increasing integers, and the comparison is what keeps an old event from
overwriting a newer row.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from multicluster.gvr import GVR

SortOrder = Literal["cluster", "namespace", "name", "created", "-created"]


@dataclass(slots=True)
class Row:
    """One object's latest state, ready to upsert. Treated as immutable, but not frozen: an initial sync builds
    one per object, twice (informer, writer process), and a frozen dataclass's __init__ costs 2.5 µs instead of 0.9."""

    cluster: str
    gvr: GVR
    namespace: str
    name: str
    uid: str
    kind: str
    resource_version: int
    object: bytes  # JSON, managedFields/secret data already stripped by the informer
    labels: Mapping[str, str] = field(default_factory=dict)
    # Values for field selectors, e.g. {"status.phase": "Running", "spec.nodeName": "n1"}.
    fields: Mapping[str, str] = field(default_factory=dict)
    owner: str = ""  # uid of the first ownerReference
    created_at: str = ""  # metadata.creationTimestamp, RFC 3339
    # A hint: the informer had never seen this object (its index mirrors the store), so the store most likely
    # has no row for it. A batch of such rows is inserted without looking each one up first; a wrong hint
    # (another replica was faster, a stale index) costs that batch a second, checked attempt, never a wrong row.
    new: bool = False


@dataclass(slots=True)
class Delete:
    """An object is gone. Applied only if `resource_version` >= the stored one (0 = unconditional)."""

    cluster: str
    gvr: GVR
    namespace: str
    name: str
    resource_version: int = 0


Mutation = Row | Delete


EventType = Literal["ADDED", "MODIFIED", "DELETED"]


@dataclass(frozen=True, slots=True)
class Pending:
    """A mutation for the change log, before the log gives it its position (see Change for the fields)."""

    type: EventType
    cluster: str
    gvr: GVR
    namespace: str
    name: str
    resource_version: int
    object: bytes
    labels: Mapping[str, str] = field(default_factory=dict)
    fields: Mapping[str, str] = field(default_factory=dict)
    prev_labels: Mapping[str, str] | None = None
    prev_fields: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Change(Pending):
    """One entry of the change log: a committed mutation at its position.

    `seq` is the cluster's own position: each cluster's entries are numbered 1, 2, 3, ... in commit order (one
    counter row per cluster, locked by the transaction that appends, so a later number is always a later commit,
    whichever replica wrote it). `object` is the object as stored (for DELETED, its last stored state; read back
    from the log, an upsert's object is the row's current one, empty once the row is gone: `superseded`);
    `labels` and `fields` are its selector values, `prev_labels`/`prev_fields` those of the version it replaced
    (None for ADDED), so a watcher can tell an object that starts or stops matching its selector without any
    state."""

    seq: int = field(kw_only=True)

    @property
    def superseded(self) -> bool:
        """Read back from the log after its object was deleted: nothing to show; the DELETED entry follows."""
        return not self.object and self.type != "DELETED"


@dataclass(frozen=True, slots=True)
class LogPosition:
    """Where one cluster's change log stands: entries `floor` + 1 .. `last` are kept (0 .. `floor` are pruned)."""

    cluster: str
    last: int
    floor: int


# Called by the store after every commit that appended to the change log, in commit order for each cluster.
ChangeListener = Callable[[Sequence[Change]], None]
# Offered a committed batch's last position per cluster before its entries are built: True when that is all the
# listener needs (the watch hub with no subscriber), and the entries are then never made.
PositionListener = Callable[[Mapping[str, int]], bool]


@dataclass(frozen=True, slots=True)
class ApplyResult:
    written: int = 0  # rows inserted or updated
    deleted: int = 0
    skipped: int = 0  # refused by the resourceVersion guard (older than what is stored)
    # The change log entries the batch appended, with their positions. Not compared: a result is equal to
    # another with the same counts.
    changes: tuple[Change, ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class Requirement:
    """One term of a label or field selector. op: "=", "!=", "in", "notin", "exists", "!"."""

    key: str
    op: str
    values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Query:
    gvr: GVR
    clusters: tuple[str, ...] = ()  # empty = all
    namespaces: tuple[str, ...] = ()  # empty = all
    name: str | None = None  # exact
    name_prefix: str | None = None
    name_contains: str | None = None
    labels: tuple[Requirement, ...] = ()
    fields: tuple[Requirement, ...] = ()  # keys like "status.phase"; metadata.name/namespace map to columns
    order: SortOrder = "cluster"
    limit: int = 500  # 0 = no limit
    after: tuple[str, ...] | None = None  # the sort key of the last row already returned (keyset pagination)
    count_remaining: bool = False
    count_limit: int = 0  # count_remaining counts at most this many rows (0 = all)
    # A page ends before the row that would take it past this many bytes, each row counted as its object, its
    # cluster name and ROW_OVERHEAD (0 = no cap). The first row is always returned, whatever its size.
    max_bytes: int = 0
    # Rows only from these clusters, each in every namespace (None) or only in the listed ones: what an
    # authenticated user may read (multicluster.api.auth.access). None = no such limit.
    allowed: tuple[tuple[str, tuple[str, ...] | None], ...] | None = None


@dataclass(frozen=True, slots=True)
class StoredObject:
    cluster: str
    gvr: GVR
    namespace: str
    name: str
    uid: str
    kind: str
    resource_version: int
    object: bytes
    created_at: str
    updated_at: str


@dataclass(frozen=True, slots=True)
class Page:
    items: list[StoredObject]
    next_after: tuple[str, ...] | None  # pass back as Query.after; None = last page
    remaining: int | None = None  # rows after this page, when count_remaining was asked
    remaining_capped: bool = False  # there are more than `remaining` (count_limit was reached)


@dataclass(frozen=True, slots=True)
class SyncState:
    """Per cluster x GVR sync progress, persisted so every replica (and a restarted daemon) can report it."""

    cluster: str
    gvr: GVR
    status: str  # "syncing" | "synced" | "error" | "stopped"
    resource_version: int = 0
    synced_at: float = 0.0  # unix time of the last completed list or seen event
    error: str = ""
    objects: int = 0


ROW_OVERHEAD = 64  # bytes a row costs a page beyond its object and cluster name (the API's JSON around them)


def sort_key(order: SortOrder, obj: StoredObject) -> tuple[str, ...]:
    """The keyset tuple of a row for a given order; a continue token stores this for the last row."""
    if order == "namespace":
        return (obj.namespace, obj.name, obj.cluster)
    if order == "name":
        return (obj.name, obj.cluster, obj.namespace)
    if order in ("created", "-created"):
        return (obj.created_at, obj.cluster, obj.namespace, obj.name)
    return (obj.cluster, obj.namespace, obj.name)


class Store(Protocol):
    async def open(self) -> None:
        """Connect and apply schema.sql (idempotent: creates what is missing)."""

    async def close(self) -> None: ...

    async def apply(self, mutations: Sequence[Mutation]) -> ApplyResult:
        """Write a batch in one transaction. Each Row is written only if its RV is newer than the stored
        row's; each Delete only if its RV is >= the stored row's. Labels/fields index rows change with their
        row. Within a batch the highest RV of a key wins (batch order around a Delete with RV 0)."""

    async def load_index(self, cluster: str, gvr: GVR) -> dict[tuple[str, str], int]:
        """(namespace, name) -> resource_version of every stored row of one cluster x GVR."""

    async def delete_cluster(self, cluster: str) -> int:
        """Remove every row (and sync state) of a cluster; returns rows deleted."""

    async def delete_gvr(self, cluster: str, gvr: GVR) -> int: ...

    async def query(self, q: Query) -> Page: ...

    async def get(self, cluster: str, gvr: GVR, namespace: str, name: str) -> StoredObject | None: ...

    async def counts(self) -> dict[tuple[str, GVR], int]:
        """Rows per cluster x GVR."""

    async def namespaces(self, gvr: GVR, clusters: Sequence[str]) -> list[tuple[str, str]]:
        """The distinct (cluster, namespace) pairs holding rows of `gvr` in `clusters`."""

    async def gvrs(self) -> list[GVR]:
        """Every GVR that has at least one row (lets the API resolve spellings without live discovery)."""

    async def save_sync_state(self, state: SyncState) -> None: ...

    async def sync_states(self) -> list[SyncState]: ...

    def listen(self, listener: ChangeListener | None, positions: PositionListener | None = None) -> None:
        """Hand every committed batch of change log entries to `listener` (one listener; None stops); an engine that
        would have to build the entries first may offer `positions` the batch's last positions instead."""

    async def log_positions(self) -> dict[str, LogPosition]:
        """Every cluster's change log position (clusters that never had an entry are absent)."""

    async def changes_after(self, cluster: str, seq: int, gvr: GVR | None = None, limit: int = 500) -> list[Change]:
        """Up to `limit` entries of one cluster's log after position `seq`, oldest first, optionally of one type."""


@runtime_checkable
class PipelinedStore(Protocol):
    """A store that can queue a batch behind the one being written (the writer pipelines with it)."""

    def start_apply(
        self, mutations: Sequence[Mutation], after: int | None
    ) -> tuple[int, Awaitable[ApplyResult]] | None:
        """Queue `mutations` now and return (its sequence number, its result) at once. `after` chains it to the
        batch with that number: if that one failed, this one fails too (transiently) instead of overtaking it.
        None when the store cannot queue right now (a transaction holds it); the caller then uses apply()."""
