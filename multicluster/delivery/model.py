"""Names, options and records shared by the delivery modules.

Everything here is data: the label/annotation/finalizer names that mark what we own, the controller's tunables,
the per-cluster outcome of one reconcile (`ClusterResult`), which status.py turns into the CR's status, and the
outcome of a whole reconcile as the work queue sees it (`Outcome`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from multicluster.crds import GROUP, VERSION

from .health import HEALTHY, UNKNOWN, CopySummary
from .types import TargetRef

PREFIX = "multicluster.practice.com"
MANAGED_BY_LABEL = f"{PREFIX}/managed-by"
MANAGED_BY_VALUE = "multicluster"
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"
OWNER_ANNOTATION = f"{PREFIX}/owner"  # "<namespace>/<name>" of the MultiClusterResource
OWNER_UID_ANNOTATION = f"{PREFIX}/owner-uid"
CLUSTER_ANNOTATION = f"{PREFIX}/cluster"  # the config name of the cluster the copy was delivered to
ADOPT_ANNOTATION = f"{PREFIX}/adopt"  # on the CR: "true" takes over pre-existing objects not managed by us
# On a copy: it existed before its MultiClusterResource took it over, so it is released (our marks removed), not
# deleted, when the MultiClusterResource lets go of it.
ADOPTED_ANNOTATION = f"{PREFIX}/adopted"
FINALIZER = f"{PREFIX}/cleanup"
FIELD_MANAGER = "multicluster"

MCR_API_VERSION = f"{GROUP}/{VERSION}"
MCR_KIND = "MultiClusterResource"

CRKey = tuple[str, str]  # (namespace, name) of a MultiClusterResource

# A reconcile's outcome: DONE when finished; otherwise seconds until the latest useful retry (RETRY: whenever the
# work queue's backoff says).
Outcome = float | None
DONE: Outcome = None
RETRY: Outcome = math.inf


@dataclass(frozen=True, slots=True)
class DeliveryOptions:
    """Tunables of the controller; defaults suit a handful of clusters and a few thousand CRs."""

    workers: int = 4  # 100 CRs x 3 clusters: p99 create→delivered 0.26 s with 4, 1.4-1.9 s with 2 (bench/delivery.py)
    # Full relist of the CRs (every CR is reconciled again) and validity of the "nothing changed" shortcut.
    resync_seconds: float = 300.0
    # Relist period of the informers that watch delivered copies (drift detection); watches do the real work.
    watch_resync_seconds: float = 600.0
    # A copy whose own status changes (a rolling Deployment) updates its CR's status at most this often.
    status_interval: float = 1.0
    # A cluster that cannot be reached for this long no longer blocks the deletion of a CR.
    cleanup_timeout: float = 60.0
    # Per request to a member cluster; short, so one frozen cluster does not hold a worker for long.
    request_timeout: float = 10.0
    field_manager: str = FIELD_MANAGER
    # Watch the CRs of one namespace only (None: all namespaces). Delivered copies may live anywhere.
    namespace: str | None = None
    install_crds: bool = True
    # Prefix of the supervisor task names, so two controllers can share a supervisor (tests, benchmarks).
    task_prefix: str = "delivery"


class Phase(StrEnum):
    """Per-cluster outcome written to status.clusters[].phase; also the Event reason for failures."""

    APPLIED = "Applied"
    CONFLICT = "Conflict"  # another server-side applier owns a field we set
    NOT_OWNED = "NotOwned"  # an object of that name exists and is not ours
    NAMESPACE_MISSING = "NamespaceMissing"
    INVALID = "Invalid"  # the member cluster rejected the object (422)
    INVALID_PATCH = "InvalidPatch"  # a customize action cannot be applied
    INVALID_OVERRIDE = "InvalidOverride"  # an override rule is malformed or does not fit (delivery/overriders.py)
    INVALID_SPEC = "InvalidSpec"  # a lifecycle field (suspend, conflictResolution, ...) is malformed
    INVALID_TEMPLATE = "InvalidTemplate"
    UNKNOWN_KIND = "UnknownKind"
    UNKNOWN_CLUSTER = "UnknownCluster"
    DENIED = "Denied"  # the delivery policy refuses it (delivery/policy.py); nothing was written
    UNREACHABLE = "Unreachable"
    FORBIDDEN = "Forbidden"
    FAILED = "Failed"
    REMOVING = "Removing"  # no longer placed; its copy could not be removed yet


# Failures that only a change of the CR (or the config) can fix: no point retrying with backoff.
PERMANENT = frozenset({Phase.INVALID, Phase.INVALID_PATCH, Phase.INVALID_OVERRIDE, Phase.INVALID_SPEC,
                       Phase.INVALID_TEMPLATE, Phase.UNKNOWN_CLUSTER, Phase.DENIED})


@dataclass(frozen=True, slots=True)
class Target:
    """Where a copy lives in one cluster: enough to find and delete it without discovery."""

    api_version: str
    kind: str
    resource: str
    namespace: str
    name: str

    @property
    def group_version(self) -> tuple[str, str]:
        group, _, version = self.api_version.rpartition("/")
        return group, version

    def path(self, name: bool = True) -> str:
        group, version = self.group_version
        base = f"/apis/{group}/{version}" if group else f"/api/{version}"
        if self.namespace:
            base += f"/namespaces/{self.namespace}"
        base += f"/{self.resource}"
        return f"{base}/{self.name}" if name else base

    def describe(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"

    def to_status(self, uid: str = "") -> TargetRef:
        out: TargetRef = {"apiVersion": self.api_version, "kind": self.kind, "resource": self.resource,
                          "namespace": self.namespace, "name": self.name}
        if uid:
            out["uid"] = uid
        return out

    @classmethod
    def from_status(cls, data: Any) -> Target | None:
        if not isinstance(data, dict):
            return None
        try:
            t = cls(str(data["apiVersion"]), str(data["kind"]), str(data["resource"]),
                    str(data.get("namespace") or ""), str(data["name"]))
        except KeyError:
            return None
        return t if t.api_version and t.resource and t.name else None


@dataclass(slots=True)
class ClusterResult:
    """What happened in one cluster during one reconcile."""

    cluster: str
    phase: Phase
    message: str = ""
    target: Target | None = None  # the copy that exists there now (after this reconcile)
    uid: str = ""
    changed: bool = False  # the copy was created or modified by this reconcile
    last_applied: str = ""  # RFC 3339
    summary: CopySummary | None = None  # the copy's own status, as last seen (applied copies only)
    retry: bool = False  # worth retrying with backoff
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)
    denied_by: str = ""  # phase Denied: the policy rule that refused it (the Denied condition's reason)
    # spec.propagateDependencies (dependencies.py): the copies this cluster holds, as status entries, and what
    # kept some from being delivered (the Dependencies condition)
    dependencies: list[dict[str, str]] = field(default_factory=list)
    dependency_problems: list[tuple[str, str]] = field(default_factory=list)  # (reason, message)

    @property
    def applied(self) -> bool:
        return self.phase == Phase.APPLIED

    @property
    def health(self) -> str:
        return self.summary.health if self.summary is not None else UNKNOWN

    @property
    def health_message(self) -> str:
        return self.summary.message if self.summary is not None else "no status seen yet"

    @property
    def ready(self) -> bool:
        return self.applied and self.health == HEALTHY
