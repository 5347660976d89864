"""The MultiClusterResource controller's lifecycle: runs against the master cluster, delivers to every member.

    master: Informer(multiclusterresources, resync) ──▶ WorkQueue[(ns, name)] ──▶ N workers ──▶ reconcile/finalize
    members: Informer(delivered type, managed-by label) per (cluster, type) ──▶ requeue the owning CR

This module owns what runs: CRD installation, the CR informer, the work queue and its workers, the drift watches,
and the dispatch of each key to reconcile.py (deliver, status) or finalize.py (deletion). The pieces of state live
with their one owner: the CR cache and the writes to the master in crs.py, the delivery policy in force in
context.py, the per-cluster circuit breaker in breaker.py (a dead cluster costs one timeout, not one per CR), the
apply memo in reconcile.py, the cleanup deadlines in finalize.py, the delivered-copy index in watches.py.

Echoes of our own writes are not requeued: finalizer/status patch responses are remembered before their watch
events arrive (crs.py), and copy events equal to our last apply are recognised (Reconciler.requeue_delay). Every CR is
still reconciled in full once per resync, the level-triggered safety net. Only the master is watched for CRs.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping

from multicluster import metrics
from multicluster.config import Config, DeliveryConfig
from multicluster.errors import ClusterError, ConfigError, KubeAPIError, MulticlusterError, ReconcileError
from multicluster.kube import ClusterClient
from multicluster.logsetup import cluster_logger
from multicluster.sync.informer import Informer, InformerOptions
from multicluster.tasks import Supervisor
from multicluster.wire import WireObject
from multicluster.workqueue import WorkQueue

from .breaker import Breakers
from .clusterlabels import ClusterLabels
from .context import Context, PolicyHolder
from .crs import MasterCRs
from .events import EventRecorder
from .finalize import Finalizer
from .install import install_crds
from .model import DONE, RETRY, CRKey, DeliveryOptions, Outcome
from .reconcile import Reconciler
from .selector import uses_labels
from .watches import Copy, CopyKey, DeliveredIndex, DriftWatches

__all__ = ["DONE", "RETRY", "Controller"]

log = logging.getLogger(__name__)


class _CRSink:
    """Informer sink for the CRs: keep the newest object per key and queue the key."""

    def __init__(self, ctl: Controller) -> None:
        self.ctl = ctl

    async def upsert(self, obj: WireObject, rv: int) -> None:
        key, newer = self.ctl.crs.remember(obj.as_dict())
        if newer:  # not the echo of our own finalizer/status patch, whose response we already hold
            self.ctl.queue.add(key)

    async def delete(self, namespace: str, name: str, rv: int) -> None:
        self.ctl.crs.drop((namespace, name))
        self.ctl.queue.add((namespace, name))

    async def listed(self, rv: int, count: int, seconds: float, reason: str) -> None:
        # Initial list and periodic resync: every CR is reconciled again (the level-triggered safety net).
        for key in self.ctl.crs.snapshot():
            self.ctl.queue.add(key)
        self.ctl.synced.set()

    async def failed(self, error: str, *, cluster_fault: bool = True) -> None:
        log.warning("watching MultiClusterResources in the master cluster: %s", error)


class Controller:
    """Construct only when the config names a master; `run()` until cancelled (inside a supervised task)."""

    def __init__(self, config: Config, clients: Mapping[str, ClusterClient], supervisor: Supervisor,
                 options: DeliveryOptions | None = None) -> None:
        master = config.master
        if master is None:
            raise ConfigError("the delivery controller needs a master cluster",
                              hint="mark one cluster with isMaster: true")
        if master.name not in clients:
            raise ConfigError(f"cluster {master.name}: the master has no client")
        self.config = config
        self.master_name = master.name
        self.master = clients[master.name]
        # The daemon's own mapping, not a copy: clusters it adds or removes later (reload, join/unjoin) are
        # seen at once; it calls clusters_changed() so CRs are re-evaluated against the new membership.
        self.clients = clients
        self.supervisor = supervisor
        self.opts = options or DeliveryOptions()
        self.queue: WorkQueue[CRKey] = WorkQueue(config.retry.delivery)
        self.crs = MasterCRs(self.master, self.master_name, config.retry.master_types)
        self.watches = DriftWatches(self.clients, supervisor, DeliveredIndex(), self._copy_changed,
                                    prefix=self.opts.task_prefix, resync_seconds=self.opts.watch_resync_seconds,
                                    retry=config.retry.watch)
        self.events = EventRecorder(self.master)
        self.labels = ClusterLabels(self.master, self._labels_changed, retry=config.retry.master_types,
                                    resync_seconds=self.opts.watch_resync_seconds)
        self.synced = asyncio.Event()
        self.policy = PolicyHolder(config.delivery)
        ctx = Context.build(self.crs, clients, self.opts, self.policy, Breakers(config.retry.member_breaker),
                            self.events)
        self.reconciler = Reconciler(ctx, self.watches, labels=self.labels)
        self.finalizer = Finalizer(ctx)

    # ------------------------------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        prefix = self.opts.task_prefix
        self.queue = WorkQueue(self.config.retry.delivery)
        try:
            await self._install()
            resource = await self.crs.discover()
            informer = Informer(self.master, resource, _CRSink(self), options=InformerOptions(
                namespace=self.opts.namespace, emit_unchanged=True, resync_seconds=self.opts.resync_seconds,
                backoff=self.config.retry.watch))
            self.supervisor.spawn(f"{prefix}/events", self.events.run)
            self.supervisor.spawn(f"{prefix}/cluster-labels", self.labels.run)
            self.supervisor.spawn(f"{prefix}/crs", informer.run)
            for i in range(self.opts.workers):
                self.supervisor.spawn(f"{prefix}/worker-{i}", self._worker)
            cluster_logger(log, self.master_name).info(
                "delivery controller running on the master cluster (%d workers, %s)", self.opts.workers,
                f"namespace {self.opts.namespace}" if self.opts.namespace else "all namespaces")
            await asyncio.Event().wait()
        finally:
            self.queue.shutdown()
            await self.supervisor.stop_prefix(prefix + "/")
            self.watches.clear()
            self.watches.index = DeliveredIndex()
            self.synced.clear()

    def set_policy(self, delivery: DeliveryConfig) -> None:
        """A reloaded config's delivery policy and allowAdopt: every CR is checked against it again at once
        (copies the new policy refuses stay where they are and their CRs report Denied; nothing is deleted)."""
        if not self.policy.replace(delivery):
            return
        log.info("delivery policy reloaded (%d rules, allowAdopt %s); reconciling every MultiClusterResource",
                 len(delivery.policy), delivery.allow_adopt)
        for key in self.crs.snapshot():
            self.queue_add(key)

    async def clusters_changed(self) -> None:
        """The set of clusters changed: stop watching removed ones and reconcile every CR again."""
        await self.watches.prune()
        for key in self.crs.snapshot():
            self.queue_add(key)

    async def wait_synced(self, timeout: float = 60.0) -> None:
        """Until the CR informer has listed once (tests, benchmarks)."""
        await asyncio.wait_for(self.synced.wait(), timeout)

    async def _install(self) -> None:
        if not self.opts.install_crds:
            return
        backoff = self.config.retry.crd_install
        attempt = 0
        while True:
            try:
                done = await install_crds(self.master, field_manager=self.opts.field_manager)
                cluster_logger(log, self.master_name).info("CRDs on the master cluster: %s", "; ".join(done))
                return
            except ReconcileError as exc:
                log.error("%s%s", exc, f" (hint: {exc.hint})" if exc.hint else "")
            except (ClusterError, KubeAPIError) as exc:
                cluster_logger(log, self.master_name).warning("cannot install CRDs on the master cluster yet: %s",
                                                              exc)
            await asyncio.sleep(backoff.delay(attempt))
            attempt += 1

    # ------------------------------------------------------------------------------------------ queue

    def queue_add(self, key: CRKey, delay: float = 0.0) -> None:
        if self.opts.namespace is None or key[0] == self.opts.namespace:
            self.queue.add_after(key, delay)

    def _labels_changed(self) -> None:
        """A cluster appeared, left or was relabelled: reconcile the CRs whose placement or overrides use labels."""
        for key in self.crs.snapshot():
            cr = self.crs.get(key)
            spec = cr.get("spec") if cr is not None else None
            if isinstance(spec, dict) and uses_labels(spec):
                self.queue_add(key)

    def _copy_changed(self, owner: CRKey, key: CopyKey, copy: Copy | None) -> None:
        """A watched copy changed: requeue its CR, unless this is the echo of our own last apply; a change of
        the copy's own status alone is coalesced (Reconciler.requeue_delay)."""
        delay = self.reconciler.requeue_delay(owner, key, copy)
        if delay is not None:
            self.queue_add(owner, delay)

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                outcome = await self._handle(key)
            except MulticlusterError as exc:
                metrics.RECONCILES.labels("error").inc()
                retry_after = exc.retry_after if isinstance(exc, KubeAPIError) else None
                delay = self.queue.requeue_failed(key, retry_after)
                log.warning("MultiClusterResource %s/%s: %s; retrying in %.1fs", *key, exc, delay)
            except Exception:
                metrics.RECONCILES.labels("error").inc()
                delay = self.queue.requeue_failed(key)
                log.exception("MultiClusterResource %s/%s: reconcile crashed; retrying in %.1fs", *key, delay)
            else:
                if outcome is DONE:
                    metrics.RECONCILES.labels("success").inc()
                    self.queue.forget(key)
                else:
                    metrics.RECONCILES.labels("retry").inc()
                    self.queue.requeue_failed(key)
                    if outcome is not None and outcome < math.inf:
                        self.queue.add_after(key, max(0.05, outcome))
            finally:
                self.queue.done(key)

    async def _handle(self, key: CRKey) -> Outcome:
        """One key off the queue: gone → forget it; being deleted → finalize; otherwise reconcile."""
        cr = self.crs.get(key)
        if cr is None:
            self._forget(key)
            return DONE
        if (cr.get("metadata") or {}).get("deletionTimestamp"):
            outcome = await self.finalizer.finalize(key, cr, self.watches.index)
            if outcome is DONE:
                self._forget(key)
            return outcome
        return await self.reconciler.reconcile(key, cr)

    def _forget(self, key: CRKey) -> None:
        self.reconciler.forget(key)
        self.finalizer.forget(key)
