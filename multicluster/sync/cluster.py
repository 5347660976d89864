"""One cluster's sync: discovery, one informer per selected type, periodic rediscovery (new CRDs appear, deleted
ones are dropped with their rows), and retries with backoff while the cluster is down — the others carry on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping

from multicluster import metrics
from multicluster.config import ClusterConfig, Config
from multicluster.errors import ClusterError, GVRError, MulticlusterError
from multicluster.gvr import GVR, APIResource, selected
from multicluster.kube import ClusterClient
from multicluster.logsetup import cluster_logger
from multicluster.store.base import Store
from multicluster.sync.health import Tracker
from multicluster.sync.informer import Informer, InformerOptions
from multicluster.sync.sink import StoreSink
from multicluster.sync.writer import WriteQueue
from multicluster.tasks import Supervisor, TaskFailure
from multicluster.types import ClusterName

log = logging.getLogger(__name__)


def _names_something(spelling: str, resources: list[APIResource]) -> bool:
    try:
        return bool(selected(resources, (spelling,), ()))
    except GVRError:
        return False


class ClusterSync:
    """Discovery and informer management for one cluster: starts an informer per selected type, rediscovers
    periodically (new CRDs appear, deleted ones are dropped with their rows), and never gives up on a cluster
    that is down — it keeps retrying while the others carry on."""

    def __init__(
        self,
        cluster: ClusterConfig,
        config: Config,
        client: ClusterClient,
        store: Store,
        queue: WriteQueue,
        tracker: Tracker,
        supervisor: Supervisor,
        *,
        rediscover_seconds: float = 60.0,
    ) -> None:
        self.cluster = cluster
        self.config = config
        self.client = client
        self.store = store
        self.queue = queue
        self.tracker = tracker
        self.supervisor = supervisor
        self.rediscover_seconds = rediscover_seconds
        self.log = cluster_logger(log, cluster.name)
        self.informers: dict[GVR, Informer] = {}
        self.resources: list[APIResource] = []
        self.discovered = asyncio.Event()
        self.on_discovery: list[Callable[[str, list[APIResource]], None]] = []
        self._report: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()
        self._unresolved: set[str] = set()  # include entries already warned about
        # Sharding hook: whether this replica should run the informer of (cluster, gvr). Default: all.
        self.owns: Callable[[str, GVR], bool] = lambda _c, _g: True

    def kick(self) -> None:
        """Rediscover now (config reload, or a caller that knows a CRD was just created)."""
        self._kick.set()

    @property
    def prefix(self) -> str:
        return f"informer/{self.cluster.name}/"

    def synced(self) -> bool:
        return self.discovered.is_set() and all(i.synced.is_set() or i.denied for i in self.informers.values())

    async def run(self) -> None:
        backoff = self.config.retry.discovery
        attempt = 0
        health = self.tracker.cluster(self.cluster.name)
        while True:
            try:
                await self.client.connect()
                health.host = self.client.host
                if not health.version:
                    v = await self.client.server_version()
                    health.version, health.platform = str(v.get("gitVersion", "")), str(v.get("platform", ""))
                resources = await self.client.discover(refresh=True)
                self.tracker.contact(self.cluster.name)
                await self._reconcile_informers(resources)
                attempt = 0
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kick.wait(), self.rediscover_seconds)
                self._kick.clear()
            except (ClusterError, MulticlusterError) as exc:
                self.tracker.fail(self.cluster.name, str(exc))
                delay = backoff.delay(attempt)
                if attempt == 0:
                    self.log.warning("%s; retrying in %.1fs (other clusters are unaffected)", exc, delay)
                attempt += 1
                await asyncio.sleep(delay)

    def wanted(self, resources: list[APIResource]) -> list[APIResource]:
        include = self.config.include + self.cluster.include
        exclude = self.config.exclude + self.cluster.exclude
        try:
            return selected(resources, include, exclude)
        except GVRError:
            # An include entry names nothing here: a typo, or a CRD deleted from this cluster. Sync what the other
            # entries name (a vanished type is then dropped with its rows) instead of failing the whole cluster.
            usable = [s for s in include if _names_something(s, resources)]
            if not usable:
                if self.informers:
                    return []  # everything this cluster synced is gone
                raise
            for s in include:
                if s not in usable and s not in self._unresolved:
                    self.log.warning("resources.include entry %r names nothing this cluster serves; syncing the "
                                     "other entries", s)
            self._unresolved = {s for s in include if s not in usable}
            return selected(resources, usable, exclude)

    def capped(self, wanted: list[APIResource]) -> dict[GVR, APIResource]:
        """At most sync.maxTypesPerCluster of the wanted types: those already syncing first, then in GVR order
        (core first). The rest are left out and reported, so a member advertising thousands of types cannot
        make thousands of informers."""
        cap = self.config.sync.max_types_per_cluster
        health = self.tracker.cluster(self.cluster.name)
        if len(wanted) <= cap:
            health.left_out = ()
            return {r.gvr: r for r in wanted}
        ordered = [r for r in wanted if r.gvr in self.informers] + [r for r in wanted if r.gvr not in self.informers]
        left_out = tuple(r.gvr for r in ordered[cap:])
        if len(left_out) != len(health.left_out):
            metrics.MEMBER_LIMITS.labels(self.cluster.name, "maxTypesPerCluster").inc()
            self.log.warning("the cluster serves %d selected types, over sync.maxTypesPerCluster (%d): %d are not "
                             "synced (%s...); raise the limit or narrow resources.include/exclude",
                             len(wanted), cap, len(left_out), ", ".join(str(g) for g in left_out[:5]))
        health.left_out = left_out
        return {r.gvr: r for r in ordered[:cap]}

    def stale_reasons(self, failing: Mapping[str, TaskFailure]) -> tuple[str, dict[GVR, str]]:
        """Why this cluster's data (first) or some types' data (second) may not be current although the last
        list succeeded: its supervised tasks keep crashing."""
        cluster = ""
        crash = failing.get(f"cluster/{self.cluster.name}")
        if crash is not None:
            cluster = f"its discovery task keeps crashing ({crash.crashes}x, last: {crash.error})"
        types: dict[GVR, str] = {}
        for gvr in self.informers:
            crash = failing.get(self.prefix + str(gvr))
            if crash is not None:
                types[gvr] = f"its informer keeps crashing ({crash.crashes}x, last: {crash.error})"
        return cluster, types

    async def _reconcile_informers(self, resources: list[APIResource]) -> None:
        try:
            wanted = self.capped(self.wanted(resources))
        except GVRError as exc:
            raise MulticlusterError(f"cluster {self.cluster.name}: {exc}", hint=exc.hint) from exc
        self.resources = resources
        for cb in self.on_discovery:
            cb(self.cluster.name, resources)
        for gvr in [g for g in self.informers if g not in wanted]:
            cluster_logger(log, self.cluster.name, gvr).info("no longer served or selected; dropping its rows")
            await self.supervisor.stop(self.prefix + str(gvr))
            del self.informers[gvr]
            await self.store.delete_gvr(self.cluster.name, gvr)
            self.tracker.drop(self.cluster.name, gvr)
        for gvr in [g for g in self.informers if not self.owns(self.cluster.name, g)]:
            # Another replica owns it now: stop watching but keep the rows (the owner keeps them current).
            cluster_logger(log, self.cluster.name, gvr).info("moved to another replica")
            await self.supervisor.stop(self.prefix + str(gvr))
            del self.informers[gvr]
            self.tracker.drop(self.cluster.name, gvr)
        for gvr, res in wanted.items():
            if gvr in self.informers or not self.owns(self.cluster.name, gvr):
                continue
            index = await self.store.load_index(self.cluster.name, gvr)
            sink = StoreSink(ClusterName(self.cluster.name), res, self.queue, self.tracker, index, self.config)
            self.tracker.update(self.cluster.name, gvr, status="syncing", objects=len(index))
            inf = Informer(
                self.client,
                res,
                sink,
                index=index,
                options=InformerOptions(
                    page_size=self.config.sync.page_size,
                    watch_timeout=self.config.sync.watch_timeout_seconds,
                    resync_seconds=self.config.sync.resync_seconds,
                    max_object_bytes=self.config.sync.max_object_bytes,
                    list_timeout=self.config.sync.list_timeout_seconds,
                    backoff=self.config.retry.watch,
                ),
            )
            self.informers[gvr] = inf
            self.supervisor.spawn(self.prefix + str(gvr), inf.run)
        metrics.INFORMERS.labels(self.cluster.name).set(len(self.informers))
        if not self.discovered.is_set():
            self.log.info("syncing %d resource types", len(wanted))
            self._report = asyncio.get_running_loop().create_task(self._report_initial_sync(time.monotonic()))
        self.discovered.set()

    async def _report_initial_sync(self, t0: float) -> None:
        await asyncio.gather(*(i.synced.wait() for i in list(self.informers.values())))
        objects = sum(len(i.index) for i in self.informers.values())
        self.log.info(
            "initial sync done: %d types, %s objects in %.1f s; watching",
            len(self.informers),
            f"{objects:,}",
            time.monotonic() - t0,
        )

    async def stop(self) -> None:
        if self._report is not None:
            self._report.cancel()
        await self.supervisor.stop_prefix(self.prefix)
        self.informers.clear()
