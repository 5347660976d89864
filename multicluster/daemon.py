"""Composition root: config → cluster registry → store and writer → HTTP API → delivery controller; signals and
shutdown.

The daemon wires the parts together and owns nothing they own: the registry owns the running clusters, membership
owns joins, the writer owns the queue's drain, the controller owns delivery. It is also the ApiBackend the HTTP
layer reads from (spellings resolved against live discovery, cluster views, readiness), an adapter over the
registry. Shutdown: stop accepting requests, stop the watches, flush what is queued, close the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from multicluster import gvr as gvrmod
from multicluster import memory, metrics
from multicluster.api.backend import ClusterView
from multicluster.config import Config, load_config
from multicluster.delivery import Controller
from multicluster.errors import GVRError, MulticlusterError
from multicluster.feed.hub import Hub
from multicluster.feed.tail import Tailer
from multicluster.gvr import GVR, APIResource
from multicluster.kube import ClusterClient
from multicluster.logsetup import cluster_logger
from multicluster.membership import Membership
from multicluster.registry import ClusterRegistry
from multicluster.serving import no_master
from multicluster.store import open_store
from multicluster.store.base import Store, SyncState
from multicluster.sync.cluster import ClusterSync
from multicluster.sync.health import Tracker
from multicluster.sync.writer import WriteQueue, Writer
from multicluster.tasks import Supervisor
from multicluster.workqueue import ShardedQueue

if TYPE_CHECKING:
    from aiohttp import web

    from multicluster.api.auth.chain import Authenticators
    from multicluster.apiservice import ServingCert
    from multicluster.leader import LeaderElector

log = logging.getLogger(__name__)

class Daemon:
    def __init__(self, config: Config) -> None:
        self.supervisor = Supervisor("daemon", restart_policy=config.retry.task_restart)
        # store.writers (default 2) lets a MySQL server take one batch while the daemon prepares the next; ids come
        # from reserved blocks so concurrent batches do not contend on InnoDB's AUTO_INCREMENT lock. SQLite always
        # has one writer (its writer process pipelines instead).
        writers = config.store.writers if config.store.type == "mysql" else 1
        self.queue: WriteQueue = ShardedQueue(writers, config.sync.queue_size)
        self.registry = ClusterRegistry(config, self.supervisor, self.queue, Tracker())
        self._store: Store | None = None
        self.writer: Writer | None = None
        # Every committed change, to the watches of the Kubernetes-compatible API (the store's one listener).
        self.hub = Hub(queue_limit=config.server.watch_queue)
        self.tailer: Tailer | None = None  # lease mode only
        self.controller: Controller | None = None
        self._unsubscribe_controller: Callable[[], None] | None = None
        self.started = time.time()
        self._runner: web.AppRunner | None = None
        self._health_runner: web.AppRunner | None = None  # --HealthPort
        self._stop = asyncio.Event()
        self.membership: Membership | None = None
        self.elector: LeaderElector | None = None
        self._remote_states: list[SyncState] = []
        self._stored_gvrs: list[GVR] = []
        self._lease_client: ClusterClient | None = None
        self.api_address = ""
        self._serving: ServingCert | None = None  # --apiservice
        self.authenticators: Authenticators | None = None  # Kubernetes identities (server.auth, --apiservice)

    # The registry owns these; the daemon's names stay for callers that hold a Daemon (cli, tests).

    @property
    def config(self) -> Config:
        return self.registry.config

    @config.setter
    def config(self, config: Config) -> None:
        self.registry.config = config

    @property
    def syncs(self) -> Mapping[str, ClusterSync]:
        return self.registry.syncs

    @property
    def clients(self) -> Mapping[str, ClusterClient]:
        return self.registry.clients

    @property
    def tracker(self) -> Tracker:
        return self.registry.tracker

    # ------------------------------------------------------------------ ApiBackend

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the daemon has not been started")
        return self._store

    @property
    def token(self) -> str | None:
        return self.config.server.token

    def resolve(self, spelling: str) -> APIResource:
        """Resolve against what the clusters serve; fall back to the GVRs already stored (clusters down)."""
        resources = self.registry.resources()
        try:
            return gvrmod.resolve(spelling, resources)
        except GVRError:
            if resources:
                raise
        stored = [
            APIResource(gvr=g, kind="", namespaced=True, verbs=frozenset({"list", "watch"})) for g in self._stored_gvrs
        ]
        return gvrmod.resolve(spelling, stored)

    # A cluster that is unreachable at start must not keep every replica out of its Service forever: after this
    # grace period it stops blocking readiness (its data is reported stale/missing per query instead).
    startup_grace = 60.0

    def ready(self) -> bool:
        return self.registry.ready(grace_over=time.time() - self.started > self.startup_grace)

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

    async def reload(self) -> None:
        """SIGHUP: re-read the config file; add/remove clusters, apply resource include/exclude changes and the
        delivery policy (`delivery.policy`, `delivery.allowAdopt`)."""
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
        self.config = replace(self.config, clusters=new.clusters, include=new.include, exclude=new.exclude,
                              delivery=new.delivery)
        if self.controller is not None:
            self.controller.set_policy(new.delivery)
        registry = self.registry
        for name in sorted(old_names - new_by_name.keys() - joined):
            if name in registry:
                removal = await registry.remove(name)
                cluster_logger(log, name).info("reload: cluster removed (%d rows purged)", removal.rows)
        for name, c in new_by_name.items():
            if name in registry and registry.syncs[name].cluster != c:
                await registry.remove(name)
                cluster_logger(log, name).info("reload: cluster changed; restarting its sync")
            if name not in registry:
                registry.add(c)
                cluster_logger(log, name).info("reload: cluster added")
        registry.kick()
        log.info("config reloaded from %s", self.config.source)

    async def start(self, *, api: bool = True, controller: bool = True) -> None:
        cfg = self.config
        if cfg.server.kubernetes_identities and cfg.master is None:
            raise no_master()
        where = (
            cfg.store.path if cfg.store.type == "sqlite" else f"{cfg.store.host}:{cfg.store.port}/{cfg.store.database}"
        )
        log.info("opening %s store at %s", cfg.store.type, where)
        self._store = open_store(cfg.store)
        await self._store.open()
        # Before anything is written: the hub passes entries on from where the durable log stands.
        self.hub.start({c: p.last for c, p in (await self._store.log_positions()).items()})
        self._store.listen(self.hub.publish, self.hub.advance)
        try:
            self._stored_gvrs = await self.store.gvrs()
        except Exception:  # a cosmetic fallback only
            self._stored_gvrs = []
        self.membership = Membership(self.registry)
        joined = self.membership.load()
        configured = {c.name for c in cfg.clusters} | {c.name for c in joined}
        self.writer = Writer(
            self.store, self.queue, self.tracker, batch_size=cfg.store.batch_size, linger=cfg.store.flush_interval,
            backoff=cfg.retry.write,
        )
        self.registry.attach(self.store, self.writer)
        self.supervisor.spawn("writer", self.writer.run)
        metrics.LEADER.set(0 if cfg.lease.enabled else 1)
        if cfg.lease.enabled:
            # Other replicas write most clusters: their changes reach this replica's watches through the log.
            self.tailer = Tailer(self.store, self.hub)
            self.supervisor.spawn("changelog-tail", self.tailer.run)
            await self._start_leases(configured)
        await self._purge_unconfigured(configured)
        for c in cfg.clusters:
            self.registry.add(c)
        for c in joined:
            if c.name in self.registry:
                cluster_logger(log, c.name).warning(
                    "joined cluster is also in the config file; using the config file's entry")
                continue
            self.registry.add(c)
            cluster_logger(log, c.name).info("restored joined cluster")
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
            shards = self.registry.shards
            others = await shards.others_holding(cluster) if shards is not None else []
            if others:
                cluster_logger(log, cluster).info("rows kept: not configured here, but replicas %s sync the cluster",
                                                  ", ".join(others))
                continue
            n = await self.store.delete_cluster(cluster)
            cluster_logger(log, cluster).info("removed %d rows (cluster no longer configured)", n)

    async def _start_leases(self, clusters: set[str]) -> None:
        """Leader election + informer sharding (--lease-mode). Leases live on the master (or first) cluster."""
        from multicluster.leader import LeaderElector, LeaseLock, LeaseTiming, ShardMembership, default_identity

        cfg = self.config
        home = cfg.master or cfg.clusters[0]
        client = ClusterClient(home)
        self._lease_client = client
        identity = cfg.lease.identity or default_identity()
        timing = LeaseTiming()
        shards = ShardMembership(client, cfg.lease.namespace, cfg.lease.name, identity, timing, self._on_shards)
        self.registry.shards = shards
        shards.set_clusters(clusters)  # published with our first renewal, before any informer starts
        try:
            # Learn the current members before starting any informer, so N replicas starting together do not all
            # watch everything for the first round.
            await shards.lock.try_acquire()
            shards.members = sorted({*await shards._live(), identity})
        except MulticlusterError as exc:
            log.warning("shard membership not available yet (%s); starting with this replica only", exc)
        log.info("lease mode: identity %s, shard members %s", identity, ", ".join(shards.members))
        self.supervisor.spawn("shards", shards.run)
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
        self.registry.kick()

    async def _lead(self) -> None:
        if self.membership is not None:
            self.membership.publish = True
        if self._controller_wanted and "controller" not in self.supervisor:
            await self._start_controller()

    async def _unlead(self) -> None:
        if self.membership is not None:
            self.membership.publish = False
        await self._stop_controller()

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
        from multicluster.api.auth.chain import AUTH
        from multicluster.api.join import MEMBERSHIP
        from multicluster.api.server import start as start_api_server
        from multicluster.api.sse import WATCH, WatchSettings
        from multicluster.config import check_exposure
        from multicluster.serving import cert_dir_context, kubernetes_auth

        server = self.config.server
        for warning in check_exposure(server):  # raises ConfigError for an open API off loopback
            log.warning("%s", warning)
        app = build_app(self, Access.from_server(server))
        app[WATCH] = WatchSettings(heartbeat_seconds=server.watch_heartbeat_seconds)
        if self.membership is not None:
            app[MEMBERSHIP] = self.membership
        ssl_ctx = None
        if server.kubernetes_identities:
            auth = await kubernetes_auth(server, self._master_client(), self.supervisor)
            self._serving, self.authenticators, ssl_ctx = auth.serving, auth.authenticators, auth.ssl_context
            app[AUTH] = auth.authenticators
        elif server.cert_dir is not None:
            ssl_ctx = cert_dir_context(server.cert_dir)
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
        if server.api_service and self._serving is not None:
            from multicluster.apiservice import Registration, register

            client, cfg, ca = self._master_client(), Registration.from_server(server), self._serving.ca_pem
            self.supervisor.spawn("apiservice", lambda: register(client, cfg, server.port, ca))

    def _master_client(self) -> ClusterClient:
        master = self.config.master
        if master is None or master.name not in self.clients:
            raise no_master()
        return self.clients[master.name]

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
        controller = Controller(self.config, self.registry.clients, self.supervisor)
        self.controller = controller
        # Membership changed: the controller re-checks placements (new clusters get their copies).
        self._unsubscribe_controller = self.registry.subscribe(controller.clusters_changed)
        self.supervisor.spawn("controller", controller.run)

    async def _stop_controller(self) -> None:
        if self._unsubscribe_controller is not None:
            self._unsubscribe_controller()
            self._unsubscribe_controller = None
        await self.supervisor.stop("controller")
        self.controller = None

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
        memory.settle()
        log.info("initial sync of %d clusters done in %.1fs; ready", len(self.syncs), time.monotonic() - t0)

    async def shutdown(self, grace: float = 20.0) -> None:
        log.info("shutting down: closing the API, stopping watches, flushing writes")
        self.hub.stop()  # open watch streams end now (clients resume elsewhere or later from their position)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._health_runner is not None:
            await self._health_runner.cleanup()
            self._health_runner = None
        await self.registry.stop_all()
        await self._stop_controller()
        if self.writer is not None:
            drained = await self.writer.drain(grace)
            if not drained:
                log.error("%d queued changes were not written before the grace period ended", len(self.queue))
            try:
                await self.writer.flush_states()
            except Exception as exc:
                log.warning("could not save sync state: %s", exc)
        await self.supervisor.stop_all()
        await self.registry.close()
        if self._lease_client is not None:
            await self._lease_client.close()
        if self._store is not None:
            await self._store.close()
        if self._serving is not None:
            from multicluster.apiservice import remove_generated

            remove_generated(self._serving)
        log.info("stopped")
