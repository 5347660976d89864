"""The labels of the member clusters: a watch of the MultiCluster objects on the master.

membership.py publishes one MultiCluster object per configured cluster in the master's `default` namespace (named
like the cluster) and deletes it at unjoin. It writes its own labels with server-side apply, so labels a user adds
(`kubectl label multicluster cluster2 env=prod`) belong to the user's field manager and stay. This module keeps
`cluster name → labels` (a few strings per cluster, never the objects) and calls `on_change()` when a cluster
appears, disappears or is relabelled, so the controller reconciles the CRs that place or override by label.

Until the first list is in (`synced`), nobody may conclude that no cluster matches a selector: the reconciler
waits for it rather than remove copies from clusters it simply has not seen yet.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from multicluster import crds
from multicluster.errors import ClusterError, KubeAPIError
from multicluster.gvr import APIResource
from multicluster.kube import ClusterClient
from multicluster.logsetup import cluster_logger
from multicluster.retry import RetryPolicy
from multicluster.sync.informer import Informer, InformerOptions
from multicluster.wire import WireObject

log = logging.getLogger(__name__)

NAMESPACE = "default"  # where membership.py publishes the MultiCluster objects
_MAX_LABELS = 256  # per cluster; Kubernetes allows more, a selector never needs them


class ClusterLabels:
    """Owns `cluster → labels`; `run()` watches the master until cancelled."""

    def __init__(self, master: ClusterClient, on_change: Callable[[], None], *, retry: RetryPolicy,
                 resync_seconds: float = 600.0) -> None:
        self.retry = retry  # the config's retry.masterTypes, while the MultiCluster type is not served
        self.master = master
        self.on_change = on_change
        self.resync_seconds = resync_seconds
        self.synced = asyncio.Event()
        self._labels: dict[str, dict[str, str]] = {}

    def get(self, cluster: str) -> Mapping[str, str]:
        return self._labels.get(cluster, {})

    def snapshot(self) -> Mapping[str, Mapping[str, str]]:
        return dict(self._labels)

    async def run(self) -> None:
        # A new informer starts from an empty index, so it reports no deletes of what an earlier run held.
        self._labels.clear()
        resource = await self._discover()
        informer = Informer(self.master, resource, self, options=InformerOptions(
            namespace=NAMESPACE, resync_seconds=self.resync_seconds))
        try:
            await informer.run()
        finally:
            self.synced.clear()

    async def _discover(self) -> APIResource:
        attempt = 0
        while True:
            try:
                for r in await self.master.discover(refresh=attempt > 0):
                    if (r.gvr.group, r.gvr.version, r.kind) == (crds.GROUP, crds.VERSION, "MultiCluster"):
                        return r
                problem = "not served yet"
            except (ClusterError, KubeAPIError) as exc:
                problem = str(exc)
            if attempt % 10 == 0:
                cluster_logger(log, self.master.name).warning(
                    "master cluster: MultiCluster type %s; placement by label waits", problem)
            await asyncio.sleep(self.retry.delay(attempt))
            attempt += 1

    # ------------------------------------------------------------------------------------------ informer sink

    async def upsert(self, obj: WireObject, rv: int) -> None:
        raw = (obj.as_dict().get("metadata") or {}).get("labels") or {}
        labels = {str(k): str(v) for k, v in list(raw.items())[:_MAX_LABELS]} if isinstance(raw, dict) else {}
        if self._labels.get(obj.name) != labels:
            self._labels[obj.name] = labels
            if self.synced.is_set():
                self.on_change()

    async def delete(self, namespace: str, name: str, rv: int) -> None:
        if self._labels.pop(name, None) is not None and self.synced.is_set():
            self.on_change()

    async def listed(self, rv: int, count: int, seconds: float, reason: str) -> None:
        if not self.synced.is_set():
            self.synced.set()
            self.on_change()

    async def failed(self, error: str, *, cluster_fault: bool = True) -> None:
        log.warning("watching MultiCluster objects in the master cluster: %s", error)
