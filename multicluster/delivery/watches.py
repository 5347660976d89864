"""Watch the copies we delivered, so hand edits and deletes are corrected within a second and health stays fresh.

One Informer per (member cluster, resource type we delivered there), selecting our managed-by label. Every event
requeues the owning MultiClusterResource (named by the copy's owner annotation). The informers keep no objects;
`DeliveredIndex` keeps a few facts per copy: its owner, a digest of everything but status (to tell a real edit
from a status update), and its health. The controller uses the index to
- skip the apply when nothing but status changed since its own last apply (a steady state costs no requests),
- read health without a GET,
- find stray copies of a CR (left by a crash between apply and status write) and remove them.
A copy that loses our label (someone removed it) leaves the selector: the watch reports it deleted, the owner is
requeued and the label is applied again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from multicluster.gvr import GVR, APIResource
from multicluster.kube import ClusterClient
from multicluster.logsetup import cluster_logger
from multicluster.retry import RetryPolicy
from multicluster.sync.informer import Informer, InformerOptions
from multicluster.tasks import Supervisor
from multicluster.wire import WireObject

from .health import CopySummary, summarize
from .model import ADOPTED_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE, MANAGED_SELECTOR, OWNER_ANNOTATION, CRKey
from .patches import digest

log = logging.getLogger(__name__)

CopyKey = tuple[str, GVR, str, str]  # cluster, gvr, namespace, name
OnChange = Callable[[CRKey, CopyKey, "Copy | None"], None]  # (owner, copy, copy now or None when gone)
_VOLATILE = ("resourceVersion", "managedFields", "generation")


@dataclass(frozen=True, slots=True)
class Copy:
    owner: CRKey
    content: str
    uid: str
    status: CopySummary  # its own status, summarised (a change requeues the owner for a status update)
    rv: str = field(default="", compare=False)  # newest seen; not part of "did it change" (status bumps it too)
    adopted: bool = False  # carries the adopted mark: released, not deleted, when its owner lets go


def content_digest(obj: dict[str, Any]) -> str:
    """Digest of an object without status and the metadata every write changes; equal digests = no edit."""
    md = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _VOLATILE}
    return digest({**{k: v for k, v in obj.items() if k != "status"}, "metadata": md})


def owner_of(obj: dict[str, Any]) -> CRKey | None:
    """The MultiClusterResource a copy belongs to, or None when it is not managed by us.

    The owner annotation decides; the managed-by label only feeds the watches' selector. A copy whose label
    someone removed is still ours (and gets the label back), not a foreign object.
    """
    md = obj.get("metadata") or {}
    ns, sep, name = str((md.get("annotations") or {}).get(OWNER_ANNOTATION) or "").partition("/")
    return (ns, name) if sep and name else None


def is_labelled(obj: dict[str, Any]) -> bool:
    return ((obj.get("metadata") or {}).get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE


def describe_copy(obj: dict[str, Any]) -> Copy | None:
    owner = owner_of(obj)
    if owner is None or not is_labelled(obj):
        return None
    md = obj.get("metadata") or {}
    adopted = str((md.get("annotations") or {}).get(ADOPTED_ANNOTATION)) == "true"
    return Copy(owner, content_digest(obj), str(md.get("uid") or ""), summarize(obj),
                str(md.get("resourceVersion") or ""), adopted)


class DeliveredIndex:
    def __init__(self) -> None:
        self._copies: dict[CopyKey, Copy] = {}
        self._by_owner: dict[CRKey, set[CopyKey]] = {}

    def __len__(self) -> int:
        return len(self._copies)

    def get(self, key: CopyKey) -> Copy | None:
        return self._copies.get(key)

    def put(self, key: CopyKey, copy: Copy) -> Copy | None:
        old = self._copies.get(key)
        if old is not None and old.owner != copy.owner:
            self._unlink(key, old.owner)
        self._copies[key] = copy
        self._by_owner.setdefault(copy.owner, set()).add(key)
        return old

    def remove(self, key: CopyKey) -> Copy | None:
        old = self._copies.pop(key, None)
        if old is not None:
            self._unlink(key, old.owner)
        return old

    def _unlink(self, key: CopyKey, owner: CRKey) -> None:
        keys = self._by_owner.get(owner)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_owner[owner]

    def owned_by(self, owner: CRKey) -> list[CopyKey]:
        return sorted(self._by_owner.get(owner, ()))

    def drop_cluster(self, cluster: str) -> None:
        """Forget a cluster that is no longer configured (its copies can no longer be seen or removed)."""
        for key in [k for k in self._copies if k[0] == cluster]:
            self.remove(key)


class _CopySink:
    """Informer sink for one (cluster, type): keep the index current and requeue owners."""

    def __init__(self, cluster: str, gvr: GVR, index: DeliveredIndex, on_change: OnChange) -> None:
        self.cluster = cluster
        self.gvr = gvr
        self.index = index
        self.on_change = on_change

    async def upsert(self, wire: WireObject, rv: int) -> None:
        key: CopyKey = (self.cluster, self.gvr, wire.namespace, wire.name)
        copy = describe_copy(wire.as_dict())
        if copy is None:
            old = self.index.remove(key)
            if old is not None:
                self.on_change(old.owner, key, None)
            return
        old = self.index.put(key, copy)
        if old is not None and old.owner != copy.owner:
            self.on_change(old.owner, key, None)
        if old != copy:
            self.on_change(copy.owner, key, copy)

    async def delete(self, namespace: str, name: str, rv: int) -> None:
        key = (self.cluster, self.gvr, namespace, name)
        old = self.index.remove(key)
        if old is not None:
            self.on_change(old.owner, key, None)

    async def listed(self, rv: int, count: int, seconds: float, reason: str) -> None:
        return None

    async def failed(self, error: str, *, cluster_fault: bool = True) -> None:
        cluster_logger(log, self.cluster, self.gvr).debug("watch of delivered objects: %s", error)


class DriftWatches:
    """Starts (once) the informer for each (cluster, type) we deliver to, under the supervisor."""

    def __init__(self, clients: Mapping[str, ClusterClient], supervisor: Supervisor, index: DeliveredIndex,
                 on_change: OnChange, *, prefix: str, resync_seconds: float, retry: RetryPolicy) -> None:
        self.clients = clients
        self.supervisor = supervisor
        self.index = index
        self.on_change = on_change
        self.prefix = prefix
        self.resync_seconds = resync_seconds
        self.retry = retry
        self._informers: dict[tuple[str, GVR], Informer] = {}

    def ensure(self, cluster: str, resource: APIResource) -> Informer:
        key = (cluster, resource.gvr)
        inf = self._informers.get(key)
        if inf is not None:
            return inf
        client = self.clients[cluster]
        sink = _CopySink(cluster, resource.gvr, self.index, self.on_change)
        inf = Informer(client, resource, sink, options=InformerOptions(
            label_selector=MANAGED_SELECTOR, resync_seconds=self.resync_seconds, backoff=self.retry))
        self._informers[key] = inf
        self.supervisor.spawn(f"{self.prefix}/watch/{cluster}/{resource.gvr}", inf.run)
        cluster_logger(log, cluster, resource.gvr).debug("watching delivered objects")
        return inf

    async def prune(self) -> None:
        """Stop the watches of clusters that left the configuration."""
        for cluster, gvr in [k for k in self._informers if k[0] not in self.clients]:
            del self._informers[(cluster, gvr)]
            await self.supervisor.stop(f"{self.prefix}/watch/{cluster}/{gvr}")
            self.index.drop_cluster(cluster)
            cluster_logger(log, cluster, gvr).info("stopped watching delivered objects (cluster no longer configured)")

    def watching(self, cluster: str, gvr: GVR) -> bool:
        inf = self._informers.get((cluster, gvr))
        return inf is not None and inf.synced.is_set()

    def clear(self) -> None:
        self._informers.clear()
