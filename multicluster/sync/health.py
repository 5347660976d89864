"""Sync state the API reports: per cluster (reachability, version, types left out) and per cluster x GVR
(status, resourceVersion, last sync, objects skipped). The writer persists the per-GVR states so other replicas
and a restarted daemon can report them."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from multicluster import metrics
from multicluster.gvr import GVR
from multicluster.store.base import SyncState


@dataclass
class ClusterHealth:
    name: str
    host: str = ""
    reachable: bool = False
    last_contact: float = 0.0
    error: str = ""
    version: str = ""
    platform: str = ""
    status: str = "Unknown"  # from the membership health probe: Ready | NotReady | Unreachable | Unknown
    # Types the cluster serves and selects but that are not synced: past sync.maxTypesPerCluster.
    left_out: tuple[GVR, ...] = ()


@dataclass
class Tracker:
    """In-memory sync state of every cluster x GVR; persisted by the writer so other replicas can read it."""

    states: dict[tuple[str, GVR], SyncState] = field(default_factory=dict)
    health: dict[str, ClusterHealth] = field(default_factory=dict)
    dirty: set[tuple[str, GVR]] = field(default_factory=set)
    removed: set[tuple[str, GVR]] = field(default_factory=set)
    # Objects skipped right now (too large, or no store can hold them) and the latest reason, per cluster x GVR.
    skipped: dict[tuple[str, GVR], tuple[int, str]] = field(default_factory=dict)

    def cluster(self, name: str) -> ClusterHealth:
        return self.health.setdefault(name, ClusterHealth(name))

    def update(self, cluster: str, gvr: GVR, **changes: Any) -> None:
        old = self.states.get((cluster, gvr)) or SyncState(cluster, gvr, "syncing")
        self.states[(cluster, gvr)] = SyncState(**{**_asdict(old), **changes})
        self.dirty.add((cluster, gvr))

    def contact(self, cluster: str) -> None:
        h = self.cluster(cluster)
        now = time.time()
        if h.reachable and now - h.last_contact < 0.5:
            return  # called per object: a list page would otherwise pay a metrics lookup for every item
        h.reachable, h.last_contact, h.error = True, now, ""
        metrics.CLUSTER_UP.labels(cluster).set(1)

    def fail(self, cluster: str, error: str) -> None:
        h = self.cluster(cluster)
        h.reachable, h.error = False, error
        metrics.CLUSTER_UP.labels(cluster).set(0)

    def drop(self, cluster: str, gvr: GVR | None = None) -> None:
        for key in [k for k in self.states if k[0] == cluster and (gvr is None or k[1] == gvr)]:
            del self.states[key]
            self.dirty.discard(key)
            self.removed.add(key)
        for key in [k for k in self.skipped if k[0] == cluster and (gvr is None or k[1] == gvr)]:
            del self.skipped[key]
        if gvr is None:
            self.health.pop(cluster, None)


def _asdict(s: SyncState) -> dict[str, Any]:
    return {f: getattr(s, f) for f in SyncState.__dataclass_fields__}
