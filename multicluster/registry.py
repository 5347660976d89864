"""The running clusters and their one owner: a client, a ClusterSync and a health record per cluster.

Everything that starts or stops syncing a cluster goes through `add` and `remove` (the config file at start, a
SIGHUP reload, a join or unjoin over HTTP); everything that needs to know which clusters run reads `clients`,
`syncs` and `tracker`, or `subscribe`s to be told when the set changes (the delivery controller re-places its
MultiClusterResources). The mappings handed out are read-only views, so no other module can add or drop a cluster
behind the registry's back, and membership, the delivery controller and the API depend on this module, never on
the daemon.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from multicluster.config import ClusterConfig, Config
from multicluster.gvr import GVR, APIResource
from multicluster.kube import ClusterClient
from multicluster.logsetup import cluster_logger
from multicluster.store.base import Store
from multicluster.sync.cluster import ClusterSync
from multicluster.sync.health import Tracker
from multicluster.sync.writer import WriteQueue, Writer
from multicluster.tasks import Supervisor

if TYPE_CHECKING:
    from multicluster.leader import ShardMembership

log = logging.getLogger(__name__)

Listener = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Removal:
    """What stopping a cluster did to the shared store."""

    rows: int  # rows purged
    kept_for: tuple[str, ...] = ()  # other replicas that still sync the cluster (its rows were kept for them)


class ClusterRegistry:
    """Owns the running clusters. `attach` the store and writer before the first `add`."""

    def __init__(self, config: Config, supervisor: Supervisor, queue: WriteQueue, tracker: Tracker) -> None:
        self.config = config  # replaced on reload; new ClusterSyncs read it, running ones are handed it
        self.supervisor = supervisor
        self.queue = queue
        self.tracker = tracker
        self._clients: dict[str, ClusterClient] = {}
        self._syncs: dict[str, ClusterSync] = {}
        self.clients: Mapping[str, ClusterClient] = MappingProxyType(self._clients)
        self.syncs: Mapping[str, ClusterSync] = MappingProxyType(self._syncs)
        self._store: Store | None = None
        self.writer: Writer | None = None
        # Lease mode: which replica runs which informer, and which replicas still hold a cluster's rows.
        self.shards: ShardMembership | None = None
        self._listeners: list[Listener] = []

    def attach(self, store: Store, writer: Writer | None) -> None:
        self._store, self.writer = store, writer

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the cluster registry has no store attached yet")
        return self._store

    def __contains__(self, name: object) -> bool:
        return name in self._syncs

    def __len__(self) -> int:
        return len(self._syncs)

    # ------------------------------------------------------------------ lifecycle

    def add(self, cluster: ClusterConfig) -> ClusterSync:
        """Start syncing a cluster (from the config file, a join, or a reload)."""
        name = cluster.name
        if name in self._syncs:
            raise ValueError(f"cluster {name} is already running")
        client = ClusterClient(cluster, limits=self.config.sync)
        self._clients[name] = client
        sync = ClusterSync(cluster, self.config, client, self.store, self.queue, self.tracker, self.supervisor,
                           rediscover_seconds=self.config.sync.rediscover_seconds)
        self._syncs[name] = sync
        if self.shards is not None:
            shards = self.shards
            sync.owns = lambda c, g: shards.owns(f"{c}/{g}", c)
            shards.set_clusters(self._syncs)
        self.supervisor.spawn(f"cluster/{name}", sync.run)
        self._notify()
        return sync

    async def remove(self, name: str) -> Removal:
        """Stop a cluster's informers and queued writes, then purge its rows unless another replica still syncs
        the cluster (lease mode: the rows are shared, and that replica keeps them current).

        Order matters: informers first (nothing new is queued), then pending queue items, then wait for the
        batch in flight, then delete — so no row of the cluster can be written back after the purge."""
        sync = self._syncs.pop(name)
        await self.supervisor.stop(f"cluster/{name}")
        await sync.stop()
        self.queue.discard(lambda k: k[0] == name)
        kept_for: list[str] = []
        if self.shards is not None:
            self.shards.set_clusters(self._syncs)
            kept_for = await self.shards.others_holding(name)
        rows = 0
        if kept_for:
            cluster_logger(log, name).info("rows kept: replicas %s still sync the cluster", ", ".join(kept_for))
        elif self.writer is not None:
            async with self.writer.paused():
                rows = await self.store.delete_cluster(name)
        else:
            rows = await self.store.delete_cluster(name)
        self.tracker.drop(name)
        client = self._clients.pop(name, None)
        if client is not None:
            await client.close()
        self._notify()
        return Removal(rows, tuple(kept_for))

    async def stop_all(self) -> None:
        """Stop every cluster's informers, keeping clients and rows (shutdown: the writer still drains)."""
        for name, sync in list(self._syncs.items()):
            await self.supervisor.stop(f"cluster/{name}")
            await sync.stop()

    async def close(self) -> None:
        """Close every client (after stop_all, at the end of shutdown)."""
        for client in list(self._clients.values()):
            await client.close()

    # ------------------------------------------------------------------ membership changes

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener()` (in a supervised task) after every add and remove; returns the unsubscribe."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _notify(self) -> None:
        for listener in list(self._listeners):
            self.supervisor.spawn(f"clusters-changed-{time.monotonic()}", listener, restart=False)

    def kick(self) -> None:
        """Every cluster rediscovers now (config reload, shard changes)."""
        for sync in self._syncs.values():
            sync.config = self.config
            sync.kick()

    # ------------------------------------------------------------------ reads

    def resources(self) -> list[APIResource]:
        """The union of every cluster's discovery, one entry per GVR."""
        seen: dict[GVR, APIResource] = {}
        for s in self._syncs.values():
            for r in s.resources:
                seen.setdefault(r.gvr, r)
        return list(seen.values())

    def ready(self, grace_over: bool) -> bool:
        """Every cluster finished its initial lists; after the start-up grace an unreachable one no longer counts."""
        if not self._syncs:
            return False
        return all(s.synced() or (grace_over and not self.tracker.cluster(name).reachable)
                   for name, s in self._syncs.items())

    def master_client(self) -> ClusterClient | None:
        master = self.config.master
        return self._clients.get(master.name) if master is not None else None
