"""What the API needs from the daemon, and how it judges each cluster's freshness for a query.

The API never reaches into informers or cluster clients: the daemon hands it an ApiBackend (the store, the
token, a GVR resolver over the union of every cluster's discovery, and a snapshot of cluster health). Keeping
that surface this small lets the tests run the real API over a real store without a daemon, and lets a future
read-only replica serve the API from sync states persisted in the store.

Freshness is the API's promise never to drop a dead cluster silently: every list response says which clusters
answered from current data (`fresh`), from data that may be out of date (`stale`, with the last sync time and
the error), and which could not contribute at all (`missing`: unknown name, or never synced this type).
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from multicluster.feed.hub import Hub
from multicluster.gvr import GVR, APIResource
from multicluster.store.base import Store, SyncState
from multicluster.types import Freshness, ResourceBlock, StaleCluster


@dataclass(frozen=True, slots=True)
class ClusterView:
    """One cluster as the daemon sees it right now."""

    name: str
    is_master: bool
    host: str
    reachable: bool  # the API server answered recently
    ready: bool  # every initial list of this cluster has completed
    last_sync: float | None  # unix time of the last completed list or seen event, None = never
    error: str = ""  # the latest cluster-level error ("" when healthy)
    syncs: Sequence[SyncState] = field(default=())  # one per synced GVR
    version: str = ""  # server gitVersion, e.g. v1.37.2 ("" = not known yet)
    platform: str = ""  # e.g. linux/amd64
    # Why none of this cluster's data may be current although its lists succeeded (the store refuses writes,
    # its sync task keeps crashing); "" when nothing is known to be wrong.
    stale_reason: str = ""
    left_out: frozenset[GVR] = frozenset()  # served types not synced (past sync.maxTypesPerCluster)
    skipped: Mapping[GVR, tuple[int, str]] = field(default_factory=dict)  # objects not stored now, and why

    def sync_for(self, gvr: GVR) -> SyncState | None:
        return next((s for s in self.syncs if s.gvr == gvr), None)


class ApiBackend(Protocol):
    """Implemented by the daemon (and by the tests). Attributes may be plain attributes or properties."""

    @property
    def store(self) -> Store: ...

    @property
    def token(self) -> str | None:
        """Bearer token every route except /healthz and /readyz requires; None disables auth."""

    def resolve(self, spelling: str) -> APIResource | Awaitable[APIResource]:
        """Resolve any GVR spelling against the union of all clusters' discovery (sync or async).

        Raises multicluster.errors.GVRError (with .matches = close names) when nothing matches.
        """

    def clusters(self) -> list[ClusterView]: ...

    @property
    def hub(self) -> Hub:
        """Committed changes as they happen (the watch path subscribes here)."""

    def ready(self) -> bool:
        """True once every cluster's initial sync has completed."""


def freshness(views: Sequence[ClusterView], gvr: GVR, requested: Sequence[str] = ()) -> Freshness:
    """The `clusters` block of a response: fresh / stale / missing for the clusters a query covered.

    - fresh:   reachable, and this GVR's initial sync completed and is not in error (a cluster that is ready but
               does not serve the GVR at all answers "none" truthfully, so it is fresh too)
    - stale:   data exists but may be old: cluster unreachable, or the GVR's sync is in error/stopped
    - missing: requested but unknown, or this GVR (or the whole cluster) never finished a sync, or the cluster
               serves it but does not sync it (past sync.maxTypesPerCluster)
    A cluster with a `stale_reason` (writes failing, tasks crashing) is never fresh.
    """
    by_name = {v.name: v for v in views}
    names = list(dict.fromkeys(requested)) if requested else [v.name for v in views]
    fresh: list[str] = []
    stale: list[StaleCluster] = []
    missing: list[str] = []
    for name in names:
        view = by_name.get(name)
        if view is None:
            missing.append(name)
            continue
        state = view.sync_for(gvr)
        if gvr in view.left_out:
            missing.append(name)
            continue
        if view.stale_reason and (view.last_sync or (state is not None and state.synced_at)):
            stale.append(_stale(name, (state.synced_at if state is not None else 0) or view.last_sync,
                                view.stale_reason))
            continue
        if state is None:
            if view.reachable and view.ready:
                fresh.append(name)
            elif view.last_sync:
                stale.append(_stale(name, view.last_sync, view.error or "cluster is not reachable"))
            else:
                missing.append(name)
            continue
        if not state.synced_at:
            missing.append(name)
        elif view.reachable and state.status in ("synced", "syncing"):
            fresh.append(name)
        elif not view.reachable:
            # The watch was live until the last contact, so the data is current as of then; a quiet type's
            # synced_at (last event seen) may be much older without the data being any staler.
            stale.append(_stale(name, view.last_sync or state.synced_at,
                                view.error or state.error or "cluster is not reachable"))
        else:
            stale.append(_stale(name, state.synced_at, state.error or view.error or f"sync is {state.status}"))
    return {"fresh": fresh, "stale": stale, "missing": missing}


def _stale(name: str, last: float | None, error: str) -> StaleCluster:
    return {"name": name, "lastSync": last, "error": error}


def gvr_json(r: APIResource) -> ResourceBlock:
    """The `resource` block of responses: what a spelling resolved to, so clients can pick columns."""
    return {
        "gvr": str(r.gvr),
        "group": r.gvr.group,
        "version": r.gvr.version,
        "resource": r.gvr.resource,
        "kind": r.kind,
        "namespaced": r.namespaced,
        "printerColumns": list(r.printer_columns),
    }
