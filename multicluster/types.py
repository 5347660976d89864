"""Types for the raw Kubernetes documents the daemon and the plugin read and write, and names for our own keys.

Objects stay plain dicts parsed from JSON (a generated model class per object costs several times the parse),
so these are TypedDicts: they name the keys the code reads and say what each holds, and mypy checks every access.
All are total=False: a member cluster, a stored row or a request decides what is present, and the code that
reads a key handles its absence. Fields the code passes on without looking inside (a spec, a status) are `Any`.

Only the shapes of the Kubernetes API (meta/v1, discovery, Table, Status, watch events) and of our HTTP API's
documents live here; the MultiClusterResource spec and status are typed next to the controller (delivery/).
"""

from __future__ import annotations

from typing import Any, Literal, NewType, TypedDict

# ------------------------------------------------------------------------------------------------- names

ClusterName = NewType("ClusterName", str)
"""A member cluster's name as configured or joined: the first part of every row's key."""

EventType = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"]
"""A watch event's `type`."""

# ------------------------------------------------------------------------------------------------- meta/v1


class OwnerReference(TypedDict, total=False):
    apiVersion: str
    kind: str
    name: str
    uid: str
    controller: bool
    blockOwnerDeletion: bool


class ObjectMeta(TypedDict, total=False):
    name: str
    generateName: str
    namespace: str
    uid: str
    resourceVersion: str
    generation: int
    creationTimestamp: str | None
    deletionTimestamp: str | None
    deletionGracePeriodSeconds: int
    labels: dict[str, str]
    annotations: dict[str, str]
    ownerReferences: list[OwnerReference]
    finalizers: list[str]
    managedFields: list[dict[str, Any]]


# Functional form: `continue` is a Python keyword.
ListMeta = TypedDict("ListMeta", {"resourceVersion": str, "continue": str, "remainingItemCount": int}, total=False)


class KubeObject(TypedDict, total=False):
    """Any Kubernetes object. The keys below are the ones some code reads; the rest pass through untouched."""

    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: Any
    status: Any
    # ConfigMap, Secret
    data: Any
    binaryData: Any
    stringData: Any
    type: str
    # ServiceAccount
    secrets: Any
    # Lists parsed as one document
    items: Any


class KubeList(TypedDict, total=False):
    """A list page (`<Kind>List`): its items and the continue token of the next page."""

    apiVersion: str
    kind: str
    metadata: ListMeta
    items: list[KubeObject]


class WatchEvent(TypedDict, total=False):
    type: EventType
    object: KubeObject


class StatusCause(TypedDict, total=False):
    reason: str
    message: str
    field: str


class StatusDetails(TypedDict, total=False):
    name: str
    group: str
    kind: str
    uid: str
    causes: list[StatusCause]
    retryAfterSeconds: int


class Status(TypedDict, total=False):
    """meta/v1 Status: the body of every failed Kubernetes API request."""

    kind: str
    apiVersion: str
    metadata: ListMeta
    status: str
    message: str
    reason: str
    details: StatusDetails
    code: int


class VersionInfo(TypedDict, total=False):
    """GET /version."""

    major: str
    minor: str
    gitVersion: str
    gitCommit: str
    gitTreeState: str
    buildDate: str
    goVersion: str
    compiler: str
    platform: str


# ------------------------------------------------------------------------------------------------- discovery


class APIResource(TypedDict, total=False):
    """One entry of an APIResourceList."""

    name: str
    singularName: str
    namespaced: bool
    group: str
    version: str
    kind: str
    verbs: list[str]
    shortNames: list[str]
    categories: list[str]


class APIResourceList(TypedDict, total=False):
    kind: str
    apiVersion: str
    groupVersion: str
    resources: list[APIResource]


class GroupVersion(TypedDict, total=False):
    groupVersion: str
    version: str


class ServerAddress(TypedDict, total=False):
    clientCIDR: str
    serverAddress: str


class APIVersions(TypedDict, total=False):
    """GET /api: the versions of the legacy group."""

    kind: str
    apiVersion: str
    versions: list[str]
    serverAddressByClientCIDRs: list[ServerAddress]


class APIGroup(TypedDict, total=False):
    kind: str
    apiVersion: str
    name: str
    versions: list[GroupVersion]
    preferredVersion: GroupVersion


class APIGroupList(TypedDict, total=False):
    kind: str
    apiVersion: str
    groups: list[APIGroup]


class GroupVersionKind(TypedDict, total=False):
    group: str
    version: str
    kind: str


class APIResourceDiscovery(TypedDict, total=False):
    """One resource of aggregated discovery (apidiscovery.k8s.io/v2)."""

    resource: str
    responseKind: GroupVersionKind
    scope: Literal["Namespaced", "Cluster"]
    singularResource: str
    verbs: list[str]
    shortNames: list[str]
    categories: list[str]


class APIVersionDiscovery(TypedDict, total=False):
    version: str
    resources: list[APIResourceDiscovery]
    freshness: str


class APIGroupDiscovery(TypedDict, total=False):
    metadata: ObjectMeta
    versions: list[APIVersionDiscovery]


class APIGroupDiscoveryList(TypedDict, total=False):
    kind: str
    apiVersion: str
    metadata: ListMeta
    items: list[APIGroupDiscovery]


# ------------------------------------------------------------------------------------------------- Table


class TableColumnDefinition(TypedDict, total=False):
    name: str
    type: str
    format: str
    description: str
    priority: int


class TableRow(TypedDict, total=False):
    cells: list[Any]
    object: KubeObject


class Table(TypedDict, total=False):
    kind: str
    apiVersion: str
    metadata: ListMeta
    columnDefinitions: list[TableColumnDefinition]
    rows: list[TableRow]


class PrinterColumn(TypedDict, total=False):
    """One of a CRD's additionalPrinterColumns."""

    name: str
    type: str
    format: str
    description: str
    priority: int
    jsonPath: str


# ------------------------------------------------------------------------------------------------- our HTTP API


class ResourceBlock(TypedDict, total=False):
    """The `resource` block of /v1/resources: the resolved type of a query."""

    gvr: str
    group: str
    version: str
    resource: str
    kind: str
    namespaced: bool
    printerColumns: list[PrinterColumn]


class StaleCluster(TypedDict, total=False):
    name: str
    lastSync: float | None
    error: str


class Freshness(TypedDict, total=False):
    """The `clusters` block of every /v1/resources answer: which clusters answered from what data."""

    fresh: list[str]
    stale: list[StaleCluster]
    missing: list[str]


class ResourceSyncState(TypedDict, total=False):
    """One resource type of a cluster in /v1/clusters."""

    gvr: str
    status: str
    resourceVersion: int
    syncedAt: float | None
    error: str
    objects: int
    skipped: int
    skippedReason: str


class TypesLeftOut(TypedDict, total=False):
    count: int
    gvrs: list[str]


class ClusterInfo(TypedDict, total=False):
    """One cluster in /v1/clusters: health, per-type sync state, object counts."""

    name: str
    isMaster: bool
    host: str
    version: str
    platform: str
    reachable: bool
    ready: bool
    lastSync: float | None
    error: str
    staleReason: str
    typesLeftOut: TypesLeftOut
    objects: int
    resources: list[ResourceSyncState]


class JoinAnswer(TypedDict, total=False):
    """POST /v1/join's answer (the Go original's `res` text kept)."""

    res: str
    cluster: str
    version: str
    persisted: bool


class UnjoinAnswer(TypedDict, total=False):
    """DELETE /v1/unjoin's answer; `note` and `keptFor` when other replicas keep the cluster's rows."""

    res: str
    cluster: str
    rowsDeleted: int
    note: str
    keptFor: list[str]


class ResourceItem(TypedDict, total=False):
    """One item of a /v1/resources page: the object and the cluster it lives in."""

    cluster: str
    object: KubeObject


# Functional form: `continue` is a Python keyword.
ResourcesPage = TypedDict("ResourcesPage", {
    "apiVersion": str,
    "resource": ResourceBlock,
    "items": list[ResourceItem],
    "continue": str | None,
    "remaining": int | None,
    "remainingCapped": bool,
    "clusters": Freshness,
}, total=False)
"""GET /v1/resources: one page of objects, the resolved type, and each cluster's freshness."""


class LeaseSpec(TypedDict, total=False):
    """coordination.k8s.io/v1 Lease spec: leader election and informer sharding (leader.py)."""

    holderIdentity: str
    leaseDurationSeconds: int
    acquireTime: str
    renewTime: str
    leaseTransitions: int
