"""Composition root: config → store → writer → per-cluster informers → delivery controller → HTTP API.

Also the ApiBackend the HTTP layer reads from (resolve spellings against live discovery, cluster views, readiness)
and graceful shutdown: stop accepting requests, stop the watches, flush what is queued, close the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from multicluster import gvr as gvrmod
from multicluster import memory, metrics
from multicluster.api.backend import ClusterView
from multicluster.config import ClusterConfig, Config, load_config
from multicluster.errors import GVRError, MulticlusterError
from multicluster.gvr import GVR, APIResource
from multicluster.kube import ClusterClient
from multicluster.store import open_store
from multicluster.store.base import Store, SyncState
from multicluster.sync import ClusterSync, Tracker, WriteQueue, Writer
from multicluster.tasks import Supervisor
from multicluster.workqueue import ShardedQueue

if TYPE_CHECKING:
    from multicluster.leader import LeaderElector, ShardMembership
    from multicluster.membership import Membership

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Removal:
    """What stopping a cluster did to the shared store."""

    rows: int  # rows purged
    kept_for: tuple[str, ...] = ()  # other replicas that still sync the cluster (its rows were kept for them)


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.supervisor = Supervisor("daemon")
        self.tracker = Tracker()
        # store.writers (default 2) lets a MySQL server take one batch while the daemon prepares the next: an initial
        # sync on the 2-core harness went from 0.26 to 0.34 of a bare list's rate (4 runs each; 3 and 4 writers were no
        # better). Before ids came from reserved blocks, concurrent batches contended in InnoDB's AUTO_INCREMENT
        # lock and made it worse. SQLite always has one writer (its writer process pipelines instead).
        writers = config.store.writers if config.store.type == "mysql" else 1
        self.queue: WriteQueue = ShardedQueue(writers, config.sync.queue_size)
        self.clients: dict[str, ClusterClient] = {}
        self.syncs: dict[str, ClusterSync] = {}
        self._store: Store | None = None
        self.writer: Writer | None = None
        self.controller: Any = None
        self.started = time.time()
        self._runner: Any = None
        self._health_runner: Any = None  # --HealthPort
        self._stop = asyncio.Event()
        self.membership: Membership | None = None
        self.elector: LeaderElector | None = None
        self.shards: ShardMembership | None = None
        self._remote_states: list[SyncState] = []
        self._lease_client: ClusterClient | None = None
        self.api_address = ""

    # ------------------------------------------------------------------ ApiBackend

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the daemon has not been started")
        return self._store

    @property
    def token(self) -> str | None:
        return self.config.server.token

    def _resources(self) -> list[APIResource]:
        seen: dict[GVR, APIResource] = {}
        for s in self.syncs.values():
            for r in s.resources:
                seen.setdefault(r.gvr, r)
        return list(seen.values())

    def resolve(self, spelling: str) -> APIResource:
        """Resolve against what the clusters serve; fall back to the GVRs already stored (clusters down)."""
        resources = self._resources()
        try:
            return gvrmod.resolve(spelling, resources)
        except GVRError:
            if resources:
                raise
        stored = [
            APIResource(gvr=g, kind="", namespaced=True, verbs=frozenset({"list", "watch"})) for g in self._stored_gvrs
        ]
        return gvrmod.resolve(spelling, stored)

    _stored_gvrs: list[GVR] = []

    # A cluster that is unreachable at start must not keep every replica out of its Service forever: after this
    # grace period it stops blocking readiness (its data is reported stale/missing per query instead).
    startup_grace = 60.0

    def ready(self) -> bool:
        if not self.syncs:
            return False
        grace_over = time.time() - self.started > self.startup_grace
        return all(
            s.synced() or (grace_over and not self.tracker.cluster(name).reachable) for name, s in self.syncs.items()
        )

    def sync_states(self) -> list[SyncState]:
        return list(self.tracker.states.values())

    # A store that refuses writes for this long makes every cluster's data stale (a blip of a few failed
    # batches, retried, does not).
    writer_stale_after = 30.0

    def clusters(self) -> list[ClusterView]:
        out = []
        failing = self.supervisor.failing()
        writer_fault = self.writer.stale_reason(self.writer_stale_after) if self.writer is not None else ""
        for name, sync in self.syncs.items():
            h = self.tracker.cluster(name)
            cluster_fault, type_faults = sync.stale_reasons(failing)
            states = [st if st.gvr not in type_faults else replace(st, status="error", error=type_faults[st.gvr])
                      for (c, _g), st in self.tracker.states.items() if c == name]
            local = {st.gvr for st in states}
            states += [st for st in self._remote_states if st.cluster == name and st.gvr not in local]
            synced = [st.synced_at for st in states if st.synced_at]
            last = max([h.last_contact, *synced]) if (synced or h.last_contact) else None
            out.append(
                ClusterView(
                    name=name,
                    is_master=sync.cluster.is_master,
                    host=h.host or sync.client.host,
                    reachable=h.reachable,
                    ready=sync.synced(),
                    last_sync=last or None,
                    error=h.error,
                    syncs=tuple(states),
                    version=h.version,
                    platform=h.platform,
                    stale_reason=writer_fault or cluster_fault,
                    left_out=frozenset(h.left_out),
                    skipped={g: v for (c, g), v in self.tracker.skipped.items() if c == name},
                )
            )
        return out

    # ------------------------------------------------------------------ lifecycle

    def add_cluster(self, name: str) -> None:
        cluster = self.config.cluster(name)
        assert cluster is not None
        self.add_member(cluster)

    def add_member(self, cluster: ClusterConfig) -> None:
        """Start syncing a cluster (from the config file, a join, or a reload)."""
        name = cluster.name
        client = ClusterClient(cluster, limits=self.config.sync)
        self.clients[name] = client
        sync = ClusterSync(
            cluster,
            self.config,
            client,
            self.store,
            self.queue,
            self.tracker,
            self.supervisor,
            rediscover_seconds=self.config.sync.rediscover_seconds,
        )
        self.syncs[name] = sync
        if self.shards is not None:
            shards = self.shards
            sync.owns = lambda c, g: shards.owns(f"{c}/{g}", c)
            shards.set_clusters(self.syncs)
        self.supervisor.spawn(f"cluster/{name}", sync.run)
        self._notify_controller()

    async def remove_member(self, name: str) -> Removal:
        """Stop a cluster's informers and queued writes, then purge its rows unless another replica still syncs
        the cluster (lease mode: the rows are shared, and that replica keeps them current).

        Order matters: informers first (nothing new is queued), then pending queue items, then wait for the
        batch in flight, then delete — so no row of the cluster can be written back after the purge."""
        sync = self.syncs.pop(name)
        await self.supervisor.stop(f"cluster/{name}")
        await sync.stop()
        self.queue.discard(lambda k: k[0] == name)
        kept_for: list[str] = []
        if self.shards is not None:
            self.shards.set_clusters(self.syncs)
            kept_for = await self.shards.others_holding(name)
        rows = 0
        if kept_for:
            log.info("cluster %s: rows kept, replicas %s still sync it", name, ", ".join(kept_for))
        elif self.writer is not None:
            async with self.writer.paused():
                rows = await self.store.delete_cluster(name)
        else:
            rows = await self.store.delete_cluster(name)
        self.tracker.drop(name)
        client = self.clients.pop(name, None)
        if client is not None:
            await client.close()
        self._notify_controller()
        return Removal(rows, tuple(kept_for))

    def _notify_controller(self) -> None:
        """Membership changed: the delivery controller re-checks placements (new clusters get their copies)."""
        if self.controller is not None and hasattr(self.controller, "clusters_changed"):
            self.supervisor.spawn(
                f"controller-clusters-changed-{time.monotonic()}", self.controller.clusters_changed, restart=False
            )

    async def reload(self) -> None:
        """SIGHUP: re-read the config file; add/remove clusters and apply resource include/exclude changes."""
        if self.config.source is None:
            return
        try:
            new = load_config(self.config.source)
        except MulticlusterError as exc:
            log.error("config reload failed, keeping the running config: %s", exc)
            return
        old_names = {c.name for c in self.config.clusters}
        new_by_name = {c.name: c for c in new.clusters}
        joined = set(self.membership.joined) if self.membership else set()
        self.config = replace(self.config, clusters=new.clusters, include=new.include, exclude=new.exclude)
        for name in sorted(old_names - new_by_name.keys() - joined):
            if name in self.syncs:
                removal = await self.remove_member(name)
                log.info("reload: cluster %s removed (%d rows purged)", name, removal.rows)
        for name, c in new_by_name.items():
            if name in self.syncs and self.syncs[name].cluster != c:
                await self.remove_member(name)
                log.info("reload: cluster %s changed; restarting its sync", name)
            if name not in self.syncs:
                self.add_member(c)
                log.info("reload: cluster %s added", name)
        for sync in self.syncs.values():
            sync.config = self.config
            sync.kick()
        log.info("config reloaded from %s", self.config.source)

    async def start(self, *, api: bool = True, controller: bool = True) -> None:
        cfg = self.config
        where = (
            cfg.store.path if cfg.store.type == "sqlite" else f"{cfg.store.host}:{cfg.store.port}/{cfg.store.database}"
        )
        log.info("opening %s store at %s", cfg.store.type, where)
        self._store = open_store(cfg.store)
        await self._store.open()
        try:
            self._stored_gvrs = await self.store.gvrs()
        except Exception:  # a cosmetic fallback only
            self._stored_gvrs = []
        from multicluster.membership import Membership

        self.membership = Membership(self)
        joined = self.membership.load()
        configured = {c.name for c in cfg.clusters} | {c.name for c in joined}
        self.writer = Writer(
            self.store, self.queue, self.tracker, batch_size=cfg.store.batch_size, linger=cfg.store.flush_interval
        )
        self.supervisor.spawn("writer", self.writer.run)
        metrics.LEADER.set(0 if cfg.lease.enabled else 1)
        if cfg.lease.enabled:
            await self._start_leases(configured)
        await self._purge_unconfigured(configured)
        for c in cfg.clusters:
            self.add_cluster(c.name)
        for c in joined:
            if c.name in self.syncs:
                log.warning("joined cluster %s is also in the config file; using the config file's entry", c.name)
                continue
            self.add_member(c)
            log.info("restored joined cluster %s", c.name)
        self.supervisor.spawn("membership", self.membership.run)
        if api:
            await self._start_api()
        if controller and self.elector is None:
            await self._start_controller()
        elif controller and self.elector is not None:
            self._controller_wanted = True
            self.supervisor.spawn("leader-election", self.elector.run)

    _controller_wanted = False

    async def _purge_unconfigured(self, configured: set[str]) -> None:
        """Rows of clusters no longer configured (nor joined) would otherwise be served forever. In lease mode the
        store is shared: a cluster another live replica syncs (e.g. joined there) keeps its rows."""
        for cluster in sorted({c for c, _g in await self.store.counts()} - configured):
            others = await self.shards.others_holding(cluster) if self.shards is not None else []
            if others:
                log.info("rows of cluster %s kept: not configured here, but replicas %s sync it", cluster,
                         ", ".join(others))
                continue
            n = await self.store.delete_cluster(cluster)
            log.info("removed %d rows of cluster %s (no longer configured)", n, cluster)

    async def _start_leases(self, clusters: set[str]) -> None:
        """Leader election + informer sharding (--lease-mode). Leases live on the master (or first) cluster."""
        from multicluster.leader import LeaderElector, LeaseLock, LeaseTiming, ShardMembership, default_identity

        cfg = self.config
        home = cfg.master or cfg.clusters[0]
        client = ClusterClient(home)
        self._lease_client = client
        identity = default_identity()
        timing = LeaseTiming()
        self.shards = ShardMembership(client, cfg.lease.namespace, cfg.lease.name, identity, timing, self._on_shards)
        self.shards.set_clusters(clusters)  # published with our first renewal, before any informer starts
        try:
            # Learn the current members before starting any informer, so N replicas starting together do not all
            # watch everything for the first round.
            await self.shards.lock.try_acquire()
            self.shards.members = sorted({*await self.shards._live(), identity})
        except MulticlusterError as exc:
            log.warning("shard membership not available yet (%s); starting with this replica only", exc)
        log.info("lease mode: identity %s, shard members %s", identity, ", ".join(self.shards.members))
        self.supervisor.spawn("shards", self.shards.run)
        metrics.LEADER.set(0)
        self.elector = LeaderElector(
            LeaseLock(client, cfg.lease.namespace, cfg.lease.name, identity, timing),
            on_start=self._lead,
            on_stop=self._unlead,
        )
        if self.membership is not None:
            self.membership.publish = False
        self.supervisor.spawn("sync-state-refresh", self._refresh_remote_states)

    async def _on_shards(self, members: list[str]) -> None:
        for sync in self.syncs.values():
            sync.kick()

    async def _lead(self) -> None:
        if self.membership is not None:
            self.membership.publish = True
        if self._controller_wanted and "controller" not in self.supervisor:
            await self._start_controller()

    async def _unlead(self) -> None:
        if self.membership is not None:
            self.membership.publish = False
        await self.supervisor.stop("controller")
        self.controller = None

    async def _refresh_remote_states(self) -> None:
        """Other replicas' sync states (persisted by their writers), so any replica can answer freshness."""
        while True:
            try:
                self._remote_states = await self.store.sync_states()
            except MulticlusterError as exc:
                log.debug("reading sync states failed: %s", exc)
            await asyncio.sleep(2.0)

    @property
    def is_leader(self) -> bool:
        return self.elector.leader if self.elector is not None else True

    async def _start_api(self) -> None:
        from multicluster.api import Access, build_app
        from multicluster.api.server import start as start_api_server
        from multicluster.config import check_exposure

        server = self.config.server
        for warning in check_exposure(server):  # raises ConfigError for an open API off loopback
            log.warning("%s", warning)
        app = build_app(self, Access.from_server(server))
        ssl_ctx = None
        if self.config.server.cert_dir is not None:
            import ssl

            ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_ctx.load_cert_chain(self.config.server.cert_dir / "tls.crt", self.config.server.cert_dir / "tls.key")
        # Limits per request, keep-alive, head and body deadlines (server.*): see multicluster.api.server.
        runner = await start_api_server(app, server, ssl_ctx)
        self._runner = runner
        scheme = "https" if ssl_ctx else "http"
        self.api_address = f"{scheme}://{self.config.server.bind}:{self.config.server.port}"
        scopes = " (bearer token required" + ("; admin token for join/unjoin)" if server.admin_token else ")")
        log.info("API listening on %s%s", self.api_address, scopes if self.token else
                 " (admin token required for join/unjoin)" if server.admin_token else "")
        if server.health_port is not None and server.health_port != server.port:
            await self._start_health_port(server.health_port)

    async def _start_health_port(self, port: int) -> None:
        """--HealthPort (the Go original's probe port): /healthz and /readyz, and nothing else, also answer on a
        second port, in plain HTTP for kubelet probes. The same middleware runs, so /readyz without the token
        answers counts only there too."""
        from aiohttp import web

        from multicluster.api import ACCESS, BACKEND, Access, routes
        from multicluster.api import server as api_server
        from multicluster.api.middleware import api_middleware

        app = web.Application(middlewares=[api_middleware])
        app[BACKEND] = self
        app[ACCESS] = Access.from_server(self.config.server)
        app.router.add_get("/healthz", routes.healthz, allow_head=False)
        app.router.add_get("/readyz", routes.readyz, allow_head=False)
        # The same deadlines as the API port: a probe port is reachable by the same clients.
        self._health_runner = await api_server.start(app, replace(self.config.server, port=port))
        log.info("health checks also on http://%s:%d (/healthz, /readyz)", self.config.server.bind, port)

    async def _start_controller(self) -> None:
        master = self.config.master
        if master is None:
            log.info("no cluster has isMaster: true; delivery controller is off (query-only daemon)")
            return
        import importlib

        try:
            controller_cls = importlib.import_module("multicluster.reconciler").Controller
        except ImportError:
            log.info("delivery controller not available in this build")
            return
        self.controller = controller_cls(self.config, self.clients, self.supervisor)
        self.supervisor.spawn("controller", self.controller.run)

    async def wait_ready(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.ready():
            if deadline is not None and time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.1)
        return True

    def request_stop(self) -> None:
        self._stop.set()

    async def serve_forever(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(
                signal.SIGHUP, lambda: self.supervisor.spawn(f"reload-{time.monotonic()}", self.reload, restart=False)
            )
        await self.start()
        t0 = time.monotonic()
        ready_task = asyncio.create_task(self._log_ready(t0))
        await self._stop.wait()
        ready_task.cancel()
        await self.shutdown()

    async def _log_ready(self, t0: float) -> None:
        await self.wait_ready()
        if self.writer is not None:
            await self.writer.drain(60)
        memory.release()
        log.info("initial sync of %d clusters done in %.1fs; ready", len(self.syncs), time.monotonic() - t0)

    async def shutdown(self, grace: float = 20.0) -> None:
        log.info("shutting down: closing the API, stopping watches, flushing writes")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._health_runner is not None:
            await self._health_runner.cleanup()
            self._health_runner = None
        for name in list(self.syncs):
            await self.supervisor.stop(f"cluster/{name}")
            await self.syncs[name].stop()
        await self.supervisor.stop("controller")
        if self.writer is not None:
            drained = await self.writer.drain(grace)
            if not drained:
                log.error("%d queued changes were not written before the grace period ended", len(self.queue))
            try:
                await self.writer.flush_states()
            except Exception as exc:
                log.warning("could not save sync state: %s", exc)
        await self.supervisor.stop_all()
        for c in [*self.clients.values(), *([self._lease_client] if self._lease_client else [])]:
            await c.close()
        if self._store is not None:
            await self._store.close()
        log.info("stopped")
