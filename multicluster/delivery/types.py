"""The MultiClusterResource as raw JSON: TypedDicts for what the delivery modules read and write.

A CR arrives from the master as a parsed JSON dict and stays one (no model classes); these types name its fields
so mypy checks the spelling. They describe the shape the CRD schema documents, not a validated object: every
field is optional (total=False) and a value can still have the wrong type when the API server's schema lets it
through (x-kubernetes-preserve-unknown-fields), so readers keep their isinstance checks. `crs.py` is where a dict
from the master becomes an `MCR`.
"""

from __future__ import annotations

from typing import Any, TypedDict


class ObjectMeta(TypedDict, total=False):
    name: str
    namespace: str
    uid: str
    resourceVersion: str
    generation: int
    creationTimestamp: str
    deletionTimestamp: str
    labels: dict[str, str]
    annotations: dict[str, str]
    finalizers: list[str]


# ------------------------------------------------------------------------------------------------ spec


class ClusterRef(TypedDict, total=False):
    """spec.placement.clusters[]: one member by its name in the daemon's config."""

    name: str


class LabelSelectorRequirement(TypedDict, total=False):
    key: str
    operator: str  # In | NotIn | Exists | DoesNotExist
    values: list[str]


class LabelSelector(TypedDict, total=False):
    """A Kubernetes LabelSelector (metav1.LabelSelector): all terms must match; an empty selector matches all."""

    matchLabels: dict[str, str]
    matchExpressions: list[LabelSelectorRequirement]


class Placement(TypedDict, total=False):
    clusters: list[ClusterRef]
    clusterSelector: LabelSelector  # over the labels of the MultiCluster objects on the master


# One RFC 6902 operation as the seed wrote it ("from" is a keyword, hence the functional form); `value` may be
# the seed's list form (patches.seed_value).
PatchOperation = TypedDict("PatchOperation", {"op": str, "path": str, "from": str, "type": str, "value": Any},
                           total=False)


class ClusterCustomization(TypedDict, total=False):
    name: str
    action: list[PatchOperation]


class Customize(TypedDict, total=False):
    clusters: list[ClusterCustomization]


class MCRSpec(TypedDict, total=False):
    template: dict[str, Any]  # any Kubernetes object: apiVersion, kind, metadata.name, ...
    placement: Placement
    customize: Customize
    overrideRules: list[dict[str, Any]]  # Karmada-style overriders, checked by overriders.parse
    serviceAccountName: str
    # Lifecycle switches (see docs/delivery.md for what each does).
    suspend: bool
    propagateDependencies: bool
    conflictResolution: str  # Abort | Overwrite
    deletionPolicy: str  # Delete | Orphan
    retain: list[str]  # JSON pointers the members own once the copy exists (lifecycle.py)


# ------------------------------------------------------------------------------------------------ status


class Condition(TypedDict, total=False):
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str
    lastTransitionTime: str
    observedGeneration: int


class TargetRef(TypedDict, total=False):
    """What was delivered where: enough to find and remove the copy again after a restart."""

    apiVersion: str
    kind: str
    resource: str
    namespace: str
    name: str
    uid: str


class CopyCondition(TypedDict, total=False):
    """One condition of a delivered copy, in short form (no timestamps)."""

    type: str
    status: str
    reason: str


class DependencyRef(TypedDict, total=False):
    """A dependency copy one cluster holds (spec.propagateDependencies)."""

    kind: str
    namespace: str
    name: str


class ClusterStatus(TypedDict, total=False):
    """status.clusters[]: one placed cluster (or one whose copy is still being removed)."""

    name: str
    applied: bool
    ready: bool
    phase: str  # model.Phase
    message: str
    lastAppliedTime: str
    health: str  # Healthy | Progressing | Unhealthy | Unknown
    healthMessage: str
    target: TargetRef
    dependencies: list[DependencyRef]
    # The copy's own status, summarised (only the fields its kind reports).
    generation: int
    observedGeneration: int
    replicas: int
    readyReplicas: int
    availableReplicas: int
    updatedReplicas: int
    conditions: list[CopyCondition]


class MCRStatus(TypedDict, total=False):
    observedGeneration: int
    targetClusters: str  # comma-separated resolved placement
    placedClusters: int
    appliedClusters: int
    readyClusters: int
    applied: str  # "2/3": the APPLIED printer column
    ready: str  # "1/3": the READY printer column
    message: str
    conditions: list[Condition]
    clusters: list[ClusterStatus]


class MCR(TypedDict, total=False):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: MCRSpec
    status: MCRStatus
