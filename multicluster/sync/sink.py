"""The informer-facing end of the write queue for one cluster x GVR: objects become Rows and Deletes keyed by
(cluster, gvr, namespace, name), list completions become sync states."""

from __future__ import annotations

import time

from multicluster import metrics
from multicluster.config import Config
from multicluster.gvr import APIResource
from multicluster.store.base import Delete, Mutation
from multicluster.sync.health import Tracker
from multicluster.sync.informer import Key
from multicluster.sync.rows import to_row
from multicluster.sync.writer import RowKey, WriteQueue
from multicluster.types import ClusterName
from multicluster.wire import WireObject


class StoreSink:
    """The informer-facing end of the write queue for one cluster x GVR."""

    def __init__(
        self,
        cluster: ClusterName,
        resource: APIResource,
        queue: WriteQueue,
        tracker: Tracker,
        index: dict[Key, int],
        sync: Config,
    ) -> None:
        self.cluster = cluster
        self.gvr = resource.gvr
        self.queue = queue
        self.tracker = tracker
        self.index = index
        self.drop_managed = sync.sync.drop_managed_fields
        self.store_secrets = sync.sync.store_secrets
        self._gauge = metrics.OBJECTS.labels(cluster, str(self.gvr))

    async def upsert(self, obj: WireObject, rv: int) -> None:
        row = to_row(
            self.cluster, self.gvr, obj, rv, drop_managed_fields=self.drop_managed, store_secrets=self.store_secrets
        )
        await self.queue.put(RowKey((self.cluster, self.gvr, row.namespace, row.name)), row)
        self.tracker.contact(self.cluster)

    async def upsert_many(self, objs: list[tuple[WireObject, int, bool]]) -> None:
        """upsert() for a list page's changed objects at once; each says whether the informer had never seen it."""
        cluster, gvr, drop, secrets = self.cluster, self.gvr, self.drop_managed, self.store_secrets
        items: list[tuple[RowKey, Mutation]] = []
        for obj, rv, new in objs:
            row = to_row(cluster, gvr, obj, rv, drop_managed_fields=drop, store_secrets=secrets, new=new)
            items.append((RowKey((cluster, gvr, row.namespace, row.name)), row))
        await self.queue.put_many(items)
        self.tracker.contact(cluster)

    async def delete(self, namespace: str, name: str, rv: int) -> None:
        await self.queue.put(
            RowKey((self.cluster, self.gvr, namespace, name)), Delete(self.cluster, self.gvr, namespace, name, rv)
        )
        self.tracker.contact(self.cluster)

    async def listed(self, rv: int, count: int, seconds: float, reason: str) -> None:
        # "synced" (and the daemon's readiness) promises that queries see the list: wait until the writer has
        # stored everything this list queued, not only until it was queued.
        await self.queue.flushed()
        self.tracker.update(
            self.cluster, self.gvr, status="synced", resource_version=rv, synced_at=time.time(), error="", objects=count
        )
        self.tracker.contact(self.cluster)
        self._gauge.set(count)

    async def failed(self, error: str, *, cluster_fault: bool = True) -> None:
        self.tracker.update(self.cluster, self.gvr, status="error", error=error)
        if cluster_fault:
            self.tracker.fail(self.cluster, error)

    async def skipped(self, count: int, reason: str) -> None:
        if count:
            self.tracker.skipped[(self.cluster, self.gvr)] = (count, reason)
        else:
            self.tracker.skipped.pop((self.cluster, self.gvr), None)
