"""The MultiClusterResource controller: runs against the master cluster, delivers to every configured cluster.

    master: Informer(multiclusterresources, resync) ──▶ WorkQueue[(ns, name)] ──▶ N workers ──▶ reconcile
    members: Informer(delivered type, managed-by label) per (cluster, type) ──▶ requeue the owning CR

Reconcile is level-triggered and idempotent: from the CR as it is now (and what its status says was delivered
before) it computes, for every placed cluster, the one object that should exist there; applies it; removes
copies that should no longer exist; writes status only when it changed; retries failures with backoff. Each
cluster is handled on its own, so bad input or a dead cluster only shows up in that cluster's status entry.

Behaviour the seed had and we keep: empty placement = master only; group spelling `mulitcluster`; seed patch
values. Seed bugs we do not repeat (inventory §8, 8-10): kinds are resolved through the member's discovery (never
lower(kind)+"s"); customize entries of clusters that are not placed are ignored; finalizer is one name
(`multicluster.practice.com/cleanup`), not the cluster list; an unknown or unreachable cluster delays deletion by
at most `cleanup_timeout` (then a Warning Event says what was left behind); renames, kind changes and placement
changes remove the old copies (only ours: NotFound is success, foreign objects are never deleted).
CRs in other clusters are never looked at: only the master is watched.

Authorization (policy.py): every per-cluster object is checked against the delivery policy (`delivery.policy`,
default: namespaced, unrestricted kinds, the CR's own namespace only) after rendering and before any write; a
refusal is phase Denied, the `Denied` condition and a Warning Event naming the rule. `adopt` needs
`delivery.allowAdopt`. `spec.serviceAccountName` makes every read and write of copies impersonate
`system:serviceaccount:<cr-namespace>:<name>` in the member, whose RBAC then decides (apply.Member).

What keeps it cheap: a memo per (CR, cluster) of the last apply lets a reconcile skip members whose copy is
unchanged since (the watch index says so), so a steady state costs no requests; the echoes of our own writes
(finalizer/status patches coming back as CR events, applies coming back as copy events) are recognised and not
requeued; a cluster that fails at the connection level opens a short circuit breaker (0.5 s doubling to 30 s),
so a dead cluster costs one timeout, not one per CR. Every CR is still reconciled in full once per resync.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from multicluster import crds, metrics
from multicluster.config import Config
from multicluster.errors import (
    ClusterError,
    ConfigError,
    Forbidden,
    KubeAPIError,
    MulticlusterError,
    NotFound,
    ReconcileError,
)
from multicluster.gvr import GVR, APIResource
from multicluster.kube import MERGE_PATCH, ClusterClient
from multicluster.retry import Backoff
from multicluster.sync.informer import Informer, InformerOptions
from multicluster.tasks import Supervisor
from multicluster.wire import WireObject
from multicluster.workqueue import WorkQueue

from . import apply, policy
from .events import NORMAL, WARNING, EventRecorder
from .install import install_crds
from .model import ADOPT_ANNOTATION, FINALIZER, PERMANENT, ClusterResult, CRKey, DeliveryOptions, Phase, Target
from .patches import (
    PatchError,
    TemplateError,
    apply_actions,
    check_template,
    customize_for,
    digest,
    placement,
    render,
    stamp,
)
from .status import build_status, now_rfc3339, previous_entry, recorded_targets, same_status
from .watches import Copy, DeliveredIndex, DriftWatches, content_digest

log = logging.getLogger(__name__)

DONE: float | None = None  # reconcile outcome: finished; otherwise seconds until the latest useful retry
RETRY = math.inf
_SA_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


@dataclass(slots=True)
class _Memo:
    """What the last successful apply of a CR to one cluster sent and got back."""

    desired: str
    target: Target
    content: str
    uid: str
    at: float
    last_applied: str
    health: tuple[str, str]  # what the status says now; a watch event with the same content and health is an echo


@dataclass(slots=True)
class _Breaker:
    until: float
    failures: int
    error: str


class _CRSink:
    """Informer sink for the CRs: keep the newest object per key and queue the key."""

    def __init__(self, ctl: Controller) -> None:
        self.ctl = ctl

    async def upsert(self, obj: WireObject, rv: int) -> None:
        key, newer = self.ctl.remember(obj.as_dict())
        if newer:  # not the echo of our own finalizer/status patch, whose response we already hold
            self.ctl.queue.add(key)

    async def delete(self, namespace: str, name: str, rv: int) -> None:
        self.ctl.crs.pop((namespace, name), None)
        self.ctl.queue.add((namespace, name))

    async def listed(self, rv: int, count: int, seconds: float, reason: str) -> None:
        # Initial list and periodic resync: every CR is reconciled again (the level-triggered safety net).
        for key in list(self.ctl.crs):
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
        self.policy = config.delivery
        self.queue: WorkQueue[CRKey] = WorkQueue(Backoff(initial=0.5, cap=30.0))
        self.crs: dict[CRKey, dict[str, Any]] = {}
        self.index = DeliveredIndex()
        self.watches = DriftWatches(self.clients, supervisor, self.index, self._copy_changed,
                                    prefix=self.opts.task_prefix, resync_seconds=self.opts.watch_resync_seconds)
        self.events = EventRecorder(self.master)
        self.synced = asyncio.Event()
        self._mcr: APIResource | None = None
        self._memo: dict[CRKey, dict[str, _Memo]] = {}
        self._failing_since: dict[tuple[CRKey, str], float] = {}
        self._breakers: dict[str, _Breaker] = {}
        self._rediscovered: dict[str, float] = {}

    # ------------------------------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        prefix = self.opts.task_prefix
        self.queue = WorkQueue(Backoff(initial=0.5, cap=30.0))
        try:
            await self._install()
            self._mcr = await self._mcr_resource()
            informer = Informer(self.master, self._mcr, _CRSink(self), options=InformerOptions(
                namespace=self.opts.namespace, emit_unchanged=True, resync_seconds=self.opts.resync_seconds))
            self.supervisor.spawn(f"{prefix}/events", self.events.run)
            self.supervisor.spawn(f"{prefix}/crs", informer.run)
            for i in range(self.opts.workers):
                self.supervisor.spawn(f"{prefix}/worker-{i}", self._worker)
            log.info("delivery controller running on master cluster %s (%d workers, %s)", self.master_name,
                     self.opts.workers, f"namespace {self.opts.namespace}" if self.opts.namespace else "all namespaces")
            await asyncio.Event().wait()
        finally:
            self.queue.shutdown()
            await self.supervisor.stop_prefix(prefix + "/")
            self.watches.clear()
            self.index = DeliveredIndex()
            self.watches.index = self.index
            self.synced.clear()

    async def clusters_changed(self) -> None:
        """The set of clusters changed: stop watching removed ones and reconcile every CR again."""
        await self.watches.prune()
        for key in list(self.crs):
            self.queue_add(key)

    async def wait_synced(self, timeout: float = 60.0) -> None:
        """Until the CR informer has listed once (tests, benchmarks)."""
        await asyncio.wait_for(self.synced.wait(), timeout)

    async def _install(self) -> None:
        if not self.opts.install_crds:
            return
        backoff = Backoff(initial=1.0, cap=60.0)
        attempt = 0
        while True:
            try:
                done = await install_crds(self.master, field_manager=self.opts.field_manager)
                log.info("CRDs on master cluster %s: %s", self.master_name, "; ".join(done))
                return
            except ReconcileError as exc:
                log.error("%s%s", exc, f" (hint: {exc.hint})" if exc.hint else "")
            except (ClusterError, KubeAPIError) as exc:
                log.warning("cannot install CRDs on master cluster %s yet: %s", self.master_name, exc)
            await asyncio.sleep(backoff.delay(attempt))
            attempt += 1

    async def _mcr_resource(self) -> APIResource:
        crd = crds.multiclusterresource()
        attempt = 0
        while True:
            try:
                for r in await self.master.discover(refresh=True):
                    if r.gvr.group == crds.GROUP and r.gvr.version == crds.VERSION and r.gvr.resource == crd.plural:
                        return r
                problem = "not served yet"
            except (ClusterError, KubeAPIError) as exc:
                problem = str(exc)
            if attempt % 10 == 0:
                log.warning("master cluster %s: %s %s; waiting", self.master_name, crd.name, problem)
            attempt += 1
            await asyncio.sleep(min(5.0, 0.2 * (attempt + 1)))

    # ------------------------------------------------------------------------------------------ queue

    def queue_add(self, key: CRKey) -> None:
        if self.opts.namespace is None or key[0] == self.opts.namespace:
            self.queue.add(key)

    def remember(self, obj: dict[str, Any]) -> tuple[CRKey, bool]:
        """Keep the newest version of a CR (informer events and our own patch responses race).
        Returns the key and whether `obj` is newer than what we held."""
        md = obj.get("metadata") or {}
        key = (str(md.get("namespace") or ""), str(md.get("name") or ""))
        old = self.crs.get(key)
        newer = old is None or _rv(old) < _rv(obj) or (old.get("metadata") or {}).get("uid") != md.get("uid")
        if newer:
            self.crs[key] = obj
        return key, newer

    def _copy_changed(self, owner: CRKey, key: tuple[str, GVR, str, str], copy: Copy | None) -> None:
        """A watched copy changed: requeue its CR, unless this is the echo of our own last apply."""
        memo = self._memo.get(owner, {}).get(key[0])
        if copy is not None and memo is not None and copy.owner == owner:
            same_object = (memo.target.resource, memo.target.namespace, memo.target.name, memo.uid) == \
                (key[1].resource, key[2], key[3], copy.uid)
            if same_object and memo.content == copy.content and memo.health == (copy.health, copy.health_message):
                return
        self.queue_add(owner)

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                outcome = await self._reconcile(key)
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

    # ------------------------------------------------------------------------------------------ reconcile

    async def _reconcile(self, key: CRKey) -> float | None:
        cr = self.crs.get(key)
        if cr is None:
            self._forget(key)
            return DONE
        md = cr.get("metadata") or {}
        if md.get("deletionTimestamp"):
            return await self._finalize(key, cr)
        finalizers = list(md.get("finalizers") or [])
        spec = cr.get("spec") if isinstance(cr.get("spec"), dict) else {}
        assert isinstance(spec, dict)
        status_now = cr.get("status")
        previous: dict[str, Any] = status_now if isinstance(status_now, dict) else {}
        placed, problems = placement(spec, self.master_name)
        recorded = recorded_targets(previous)
        owner = self._owner(key, cr)
        try:
            check_template(spec.get("template"))
            template_error: TemplateError | None = None
        except TemplateError as exc:
            template_error = exc
        await self._watch_recorded(recorded)

        # The finalizer patch runs alongside the first deliveries' reads; every write to a member waits for it
        # (apply.deliver's gate), so no copy can exist without a guaranteed cleanup.
        gate: asyncio.Task[dict[str, Any] | None] | None = None
        if FINALIZER not in finalizers:
            gate = asyncio.create_task(self._set_finalizers(cr, [*finalizers, FINALIZER]))
        try:
            results = list(await asyncio.gather(
                *(self._deliver(cr, spec, owner, c, template_error, recorded.get(c), previous, gate)
                  for c in placed)))
        finally:
            if gate is not None:
                await asyncio.wait([gate])
        if gate is not None:
            updated = gate.result()  # a failed finalizer patch fails the reconcile (retried with backoff)
            if updated is None:
                return DONE  # the CR is gone
            cr = updated
        leaving = sorted((set(recorded) | {ck[0] for ck in self.index.owned_by(key)}) - set(placed))
        for r in await asyncio.gather(*(self._remove_unplaced(cr, owner, c, recorded.get(c)) for c in leaving)):
            if r is not None:
                results.append(r)

        status = build_status(generation=int(md.get("generation") or 0), placed=placed, results=results,
                              problems=problems, previous=previous)
        if not same_status(status, previous):
            await self._write_status(cr, status)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("reconciled %s/%s gen %s: %s", *key, md.get("generation"),
                      ", ".join(f"{r.cluster}={r.phase}{'*' if r.changed else ''}" for r in results))
        for problem in problems:
            self.events.record(cr, WARNING, "InvalidSpec", problem)
        for r in results:
            for etype, reason, message in r.events:
                self.events.record(cr, etype, reason, message)
        return RETRY if any(r.retry for r in results) else DONE

    def _owner(self, key: CRKey, cr: dict[str, Any]) -> apply.Owner:
        md = cr.get("metadata") or {}
        adopt = str((md.get("annotations") or {}).get(ADOPT_ANNOTATION, "")).lower() == "true"
        return apply.Owner(key, str(md.get("uid") or ""), adopt, self.opts.field_manager)

    async def _deliver(self, cr: dict[str, Any], spec: dict[str, Any], owner: apply.Owner, cluster: str,
                       template_error: TemplateError | None, recorded: Target | None,
                       previous: dict[str, Any], gate: asyncio.Future[Any] | None) -> ClusterResult:
        """Make the one copy for `cluster` right; on failure keep reporting the copy that is there."""
        prev = previous_entry(previous, cluster)

        def fail(phase: Phase, message: str) -> ClusterResult:
            r = ClusterResult(cluster, phase, message, target=recorded,
                              uid=str((prev.get("target") or {}).get("uid") or ""),
                              retry=phase not in PERMANENT)
            r.events.append((WARNING, str(phase), f"cluster {cluster}: {message}"))
            return r

        def deny(d: policy.Denial) -> ClusterResult:
            r = fail(Phase.DENIED, f"{d.reason}: {d.message}")
            r.denied_by = d.reason
            return r

        client = self.clients.get(cluster)
        if client is None:
            return fail(Phase.UNKNOWN_CLUSTER, "not configured in this daemon "
                                               f"(known clusters: {', '.join(sorted(self.clients))})")
        if template_error is not None:
            return fail(Phase.INVALID_TEMPLATE, template_error.message)
        if owner.adopt and not self.policy.allow_adopt:
            return deny(policy.adopt_denial())
        member = self._member(client, cr)
        if member is None:
            return fail(Phase.INVALID_TEMPLATE, f"spec.serviceAccountName {spec.get('serviceAccountName')!r} is not "
                                                "a service account name")
        down = self._breaker_open(cluster)
        if down is not None:
            return fail(Phase.UNREACHABLE, down)
        try:
            desired, target, resource = await self._render(client, spec, owner, cluster)
        except PatchError as exc:
            return fail(Phase.INVALID_PATCH, exc.message)
        except TemplateError as exc:
            return fail(Phase.INVALID_TEMPLATE, exc.message)
        except ReconcileError as exc:
            return fail(Phase.UNKNOWN_KIND, exc.message)
        except ClusterError as exc:
            self._trip(cluster, exc)
            return fail(Phase.UNREACHABLE, exc.reason)
        except KubeAPIError as exc:
            return fail(Phase.FAILED, f"discovery failed: {exc.body.get('message') or exc.message}")
        denial = policy.check(self.policy, self._request(owner, resource, target))
        if denial is not None:
            return deny(denial)
        self.watches.ensure(cluster, resource)

        want = digest(desired)
        memo = self._memo.get(owner.key, {}).get(cluster)
        copy = self.index.get((cluster, resource.gvr, target.namespace, target.name))
        if (memo is not None and memo.desired == want and memo.target == target and copy is not None
                and copy.owner == owner.key and copy.content == memo.content
                and time.monotonic() - memo.at < self.opts.resync_seconds * 0.9):
            # Nothing but status changed since our own apply: no request needed.
            result = ClusterResult(cluster, Phase.APPLIED, target=target, uid=memo.uid,
                                   last_applied=memo.last_applied, health=copy.health,
                                   health_message=copy.health_message)
            memo.health = (copy.health, copy.health_message)
        else:
            # Our copy, as the watch last saw it: skip the read, pin its uid (see apply.deliver).
            known = (copy.uid, copy.rv) if copy is not None and copy.owner == owner.key and copy.uid \
                and self.watches.watching(cluster, resource.gvr) else None
            try:
                result, stored = await apply.deliver(member, owner, desired, target, known=known, gate=gate,
                                                     adopted=copy is not None and copy.adopted,
                                                     timeout=self.opts.request_timeout)
            except ClusterError as exc:
                self._trip(cluster, exc)
                return fail(Phase.UNREACHABLE, exc.reason)
            self._breakers.pop(cluster, None)
            if not result.applied or stored is None:
                result.target, result.uid = recorded, str((prev.get("target") or {}).get("uid") or "")
                return result
            result.last_applied = result.last_applied or str(prev.get("lastAppliedTime") or "") or now_rfc3339()
            self._memo.setdefault(owner.key, {})[cluster] = _Memo(
                want, target, content_digest(stored), result.uid, time.monotonic(), result.last_applied,
                (result.health, result.health_message))
        await self._remove_stale(member, owner, cluster, resource.gvr, target, recorded, result)
        return result

    def _member(self, client: ClusterClient, cr: dict[str, Any]) -> apply.Member | None:
        """The client this CR writes through: impersonating spec.serviceAccountName when set (None: invalid)."""
        spec = cr.get("spec") if isinstance(cr.get("spec"), dict) else {}
        sa = (spec or {}).get("serviceAccountName")
        if sa is None or sa == "":
            return apply.Member(client)
        if not isinstance(sa, str) or not _SA_NAME.match(sa):
            return None
        ns = str((cr.get("metadata") or {}).get("namespace") or "")
        return apply.Member(client, policy.impersonation(ns, sa))

    def _remover(self, client: ClusterClient, cr: dict[str, Any]) -> apply.Member:
        # An invalid serviceAccountName never delivered anything as a service account; what this CR's owner
        # annotation marks was written by the daemon, so the daemon removes it.
        return self._member(client, cr) or apply.Member(client)

    @staticmethod
    def _request(owner: apply.Owner, resource: APIResource, target: Target) -> policy.Request:
        return policy.Request(owner.key[0], resource.gvr.group, resource.kind, resource.namespaced, target.namespace)

    async def _render(self, client: ClusterClient, spec: dict[str, Any], owner: apply.Owner,
                      cluster: str) -> tuple[dict[str, Any], Target, APIResource]:
        template = spec["template"]
        api_version, kind, _ = check_template(template)
        resource = await self._resolve(client, api_version, kind)
        obj = render(template, owner.key[0], namespaced=resource.namespaced)
        obj = apply_actions(obj, customize_for(spec, cluster))
        api_version2, kind2, name = check_template(obj)
        if (api_version2, kind2) != (api_version, kind):
            resource = await self._resolve(client, api_version2, kind2)
        obj = render(obj, owner.key[0], namespaced=resource.namespaced)
        obj = stamp(obj, cr_namespace=owner.key[0], cr_name=owner.key[1], cr_uid=owner.uid, cluster=cluster)
        ns = str(obj["metadata"].get("namespace") or "") if resource.namespaced else ""
        return obj, Target(api_version2, kind2, resource.gvr.resource, ns, name), resource

    async def _resolve(self, client: ClusterClient, api_version: str, kind: str) -> APIResource:
        """kind → resource through the member's discovery (refreshed at most every 5 s when a kind is missing)."""
        group, _, version = api_version.rpartition("/")

        def find(resources: list[APIResource]) -> APIResource | None:
            return next((r for r in resources if r.gvr.group == group and r.gvr.version == version
                         and r.kind == kind), None)

        resources = await client.discover()
        found = find(resources)
        if found is None and time.monotonic() - self._rediscovered.get(client.name, 0.0) > 5.0:
            self._rediscovered[client.name] = time.monotonic()
            resources = await client.discover(refresh=True)
            found = find(resources)
        if found is None:
            served = sorted({r.gvr.api_version for r in resources if r.kind == kind})
            why = f"{kind} is served there as {', '.join(served)}" if served else \
                f"no API group there serves kind {kind} (is its CRD installed?)"
            raise ReconcileError(f"{api_version} {kind} is not served by this cluster: {why}",
                                 reason="UnknownKind")
        return found

    async def _remove_stale(self, client: apply.Member, owner: apply.Owner, cluster: str, gvr: GVR,
                            target: Target, recorded: Target | None, result: ClusterResult) -> None:
        """After a rename or kind change: remove the copies of this CR in `cluster` other than `target`."""
        victims: list[Target] = []
        if recorded is not None and (recorded.group_version[0], recorded.resource, recorded.namespace,
                                     recorded.name) != (gvr.group, gvr.resource, target.namespace, target.name):
            victims.append(recorded)
        current = (gvr.group, gvr.resource, target.namespace, target.name)
        for c, g, ns, name in self.index.owned_by(owner.key):
            if c != cluster or (g.group, g.resource, ns, name) == current:
                continue
            copy = self.index.get((c, g, ns, name))
            if copy is not None and copy.uid == result.uid:
                continue  # the same object seen through another version or group of its type
            victims.append(Target(g.api_version, "", g.resource, ns, name))
        for v in _unique(victims):
            try:
                what = await apply.remove(client, owner.key, v, timeout=self.opts.request_timeout,
                                          field_manager=self.opts.field_manager)
            except (ClusterError, KubeAPIError) as exc:
                result.retry = True
                result.events.append((WARNING, "RemoveFailed", f"cluster {cluster}: removing the old copy "
                                                               f"{_desc(v)} failed: {_why(exc)}"))
                continue
            if what in ("deleted", "released"):
                result.events.append((NORMAL, _REASON[what], f"cluster {cluster}: old copy {_desc(v)} {what}"))

    async def _remove_unplaced(self, cr: dict[str, Any], owner: apply.Owner, cluster: str,
                               recorded: Target | None) -> ClusterResult | None:
        """A cluster left the placement: delete our copies there. None when nothing is left to track."""
        victims = ([recorded] if recorded else []) + self._cached_targets(owner.key, cluster)
        client = self.clients.get(cluster)
        if client is None:
            for v in victims:
                self.events.record(cr, WARNING, "CleanupSkipped",
                                       f"cluster {cluster} is not configured any more; {_desc(v)} was left there")
            return None
        down = self._breaker_open(cluster)
        try:
            if down is not None:
                raise ClusterError(cluster, down)
            for v in _unique(victims):
                what = await apply.remove(self._remover(client, cr), owner.key, v,
                                          timeout=self.opts.request_timeout, field_manager=self.opts.field_manager)
                if what in ("deleted", "released"):
                    self.events.record(cr, NORMAL, _REASON[what],
                                       f"cluster {cluster} left the placement: {_desc(v)} {what}")
        except (ClusterError, KubeAPIError) as exc:
            if isinstance(exc, ClusterError):
                self._trip(cluster, exc)
            phase = Phase.UNREACHABLE if isinstance(exc, ClusterError) else Phase.REMOVING
            what = f"removing {_desc(victims[0])} failed: {_why(exc)}" if victims else _why(exc)
            return ClusterResult(cluster, phase, what, target=recorded, retry=True,
                                 events=[(WARNING, "RemoveFailed", f"cluster {cluster}: {what}")])
        return None

    def _cached_targets(self, key: CRKey, cluster: str) -> list[Target]:
        return [Target(g.api_version, "", g.resource, ns, name)
                for c, g, ns, name in self.index.owned_by(key) if c == cluster]

    async def _watch_recorded(self, recorded: Mapping[str, Target]) -> None:
        """After a restart, watch the types a CR's status says were delivered, so strays are found again."""
        for cluster, t in recorded.items():
            client = self.clients.get(cluster)
            if client is None or self._breaker_open(cluster) is not None:
                continue
            group, version = t.group_version
            if self.watches.watching(cluster, GVR(group, version, t.resource)):
                continue
            try:
                for r in await client.discover():
                    if r.gvr == GVR(group, version, t.resource):
                        self.watches.ensure(cluster, r)
            except (ClusterError, KubeAPIError):
                continue

    # ------------------------------------------------------------------------------------------ deletion

    async def _finalize(self, key: CRKey, cr: dict[str, Any]) -> float | None:
        md = cr.get("metadata") or {}
        finalizers = list(md.get("finalizers") or [])
        if FINALIZER not in finalizers:
            self._forget(key)
            return DONE
        spec = cr.get("spec") if isinstance(cr.get("spec"), dict) else {}
        assert isinstance(spec, dict)
        owner = self._owner(key, cr)
        victims: dict[str, list[Target]] = {}
        for cluster, t in recorded_targets(cr.get("status")).items():
            victims.setdefault(cluster, []).append(t)
        for c, g, ns, name in self.index.owned_by(key):
            victims.setdefault(c, []).append(Target(g.api_version, "", g.resource, ns, name))
        placed, _ = placement(spec, self.master_name)
        # A placed cluster we cannot reach may hold a copy nobody recorded (crash before the status write):
        # it counts as failing, so deletion waits for it up to cleanup_timeout instead of forgetting it.
        blocked: dict[str, str] = {}
        guesses: dict[str, set[str]] = {}
        for cluster in placed:
            victims.setdefault(cluster, [])
            client = self.clients.get(cluster)
            if client is None:
                continue
            if (down := self._breaker_open(cluster)) is not None:
                blocked[cluster] = down
                continue
            try:
                _, target, resource = await self._render(client, spec, owner, cluster)
                if policy.check(self.policy, self._request(owner, resource, target)) is None:
                    if all(t.path() != target.path() for t in victims[cluster]):
                        guesses.setdefault(cluster, set()).add(target.path())
                    victims[cluster].append(target)
            except ClusterError as exc:
                self._trip(cluster, exc)
                blocked[cluster] = exc.reason
            except MulticlusterError:
                continue  # the template cannot be rendered there, so it was never delivered as such
        outcomes = await asyncio.gather(*(self._cleanup_cluster(cr, key, c, ts, blocked.get(c), guesses.get(c, set()))
                                          for c, ts in victims.items()))
        waiting = [(c, left, why) for c, left, why in outcomes if left is not None]
        if waiting:
            # No countdown in the text: an unchanged message means no status write and no self-triggered requeue.
            msg = "deleting: waiting for " + "; ".join(f"{c} ({why})" for c, _, why in waiting) + \
                f"; a cluster is skipped after {self.opts.cleanup_timeout:.0f}s of failures"

            if (cr.get("status") or {}).get("message") != msg:
                await self._write_status(cr, {"message": msg[:1024]})
            return min(left for _, left, _ in waiting)
        await self._set_finalizers(cr, [f for f in finalizers if f != FINALIZER])
        log.info("MultiClusterResource %s/%s: copies removed, finalizer released", *key)
        self._forget(key)
        return DONE

    async def _cleanup_cluster(self, cr: dict[str, Any], key: CRKey, cluster: str, targets: list[Target],
                               blocked: str | None, guesses: set[str]) -> tuple[str, float | None, str]:
        """Remove every copy in one cluster. Returns (cluster, seconds left before giving up or None, why).
        `guesses`: paths known only from rendering the template (no record of a delivery): a service account that
        may not even read them there cannot have delivered them, so Forbidden is not a failure for those."""
        targets = _unique(targets)
        client = self.clients.get(cluster)
        if client is None:
            if targets:
                self.events.record(cr, WARNING, "CleanupSkipped",
                                       f"cluster {cluster} is not configured; left in place: "
                                       + ", ".join(_desc(t) for t in targets))
            return cluster, None, ""
        try:
            down = blocked or self._breaker_open(cluster)
            if down is not None:
                raise ClusterError(cluster, down)
            member = self._remover(client, cr)
            for t in targets:
                try:
                    what = await apply.remove(member, key, t, timeout=self.opts.request_timeout,
                                              field_manager=self.opts.field_manager)
                except Forbidden:
                    if t.path() in guesses:
                        continue
                    raise
                if what in ("deleted", "released"):
                    self.events.record(cr, NORMAL, _REASON[what], f"cluster {cluster}: {_desc(t)} {what}")
        except (ClusterError, KubeAPIError) as exc:
            if isinstance(exc, ClusterError):
                self._trip(cluster, exc)
            now = time.monotonic()
            since = self._failing_since.setdefault((key, cluster), now)
            waited = now - since
            if waited < self.opts.cleanup_timeout:
                return cluster, self.opts.cleanup_timeout - waited, _why(exc)
            self._failing_since.pop((key, cluster), None)
            left = ", ".join(_desc(t) for t in targets) or "whatever was delivered there"
            self.events.record(cr, WARNING, "CleanupSkipped",
                                   f"cluster {cluster}: copies could not be removed for {waited:.0f}s ({_why(exc)}); "
                                   f"giving up, left in place: {left}")
            return cluster, None, ""
        self._failing_since.pop((key, cluster), None)
        return cluster, None, ""

    # ------------------------------------------------------------------------------------------ writes

    def _cr_path(self, cr: dict[str, Any]) -> str:
        assert self._mcr is not None
        md = cr.get("metadata") or {}
        return self._mcr.gvr.path(str(md.get("namespace") or ""), str(md.get("name") or ""))

    async def _set_finalizers(self, cr: dict[str, Any], finalizers: list[str]) -> dict[str, Any] | None:
        # resourceVersion makes this an optimistic-concurrency write: a stale cache fails with 409 and retries.
        rv = (cr.get("metadata") or {}).get("resourceVersion")
        body = {"metadata": {"finalizers": finalizers, "resourceVersion": rv}}
        try:
            updated = await self.master.request("PATCH", self._cr_path(cr), body=body, content_type=MERGE_PATCH)
        except NotFound:
            return None
        self.remember(updated)
        return updated

    async def _write_status(self, cr: dict[str, Any], status: dict[str, Any]) -> None:
        try:
            updated = await self.master.request("PATCH", self._cr_path(cr) + "/status", body={"status": status},
                                                content_type=MERGE_PATCH)
        except NotFound:
            return
        self.remember(updated)

    # ------------------------------------------------------------------------------------------ helpers

    def _forget(self, key: CRKey) -> None:
        self._memo.pop(key, None)
        for k in [k for k in self._failing_since if k[0] == key]:
            del self._failing_since[k]

    def _breaker_open(self, cluster: str) -> str | None:
        b = self._breakers.get(cluster)
        if b is not None and time.monotonic() < b.until:
            return f"unreachable ({b.error}); retrying"
        return None

    def _trip(self, cluster: str, exc: ClusterError) -> None:
        b = self._breakers.get(cluster) or _Breaker(0.0, 0, "")
        if time.monotonic() < b.until:
            return  # already open: this failure is the breaker's own verdict, or a concurrent one
        b.failures += 1
        b.until = time.monotonic() + min(30.0, 0.5 * 2 ** (b.failures - 1))
        b.error = exc.reason
        self._breakers[cluster] = b


_REASON = {"deleted": "Removed", "released": "Released"}


def _rv(obj: dict[str, Any]) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def _why(exc: MulticlusterError) -> str:
    """An error's text without the `cluster X:` prefix (the caller says which cluster)."""
    if isinstance(exc, ClusterError):
        return exc.reason
    if isinstance(exc, KubeAPIError):
        return str(exc.body.get("message") or exc.message)
    return exc.message


def _unique(targets: list[Target]) -> list[Target]:
    """One entry per object (status entries know the kind, index entries do not; the first one wins)."""
    out: dict[str, Target] = {}
    for t in targets:
        out.setdefault(t.path(), t)
    return list(out.values())


def _desc(t: Target) -> str:
    return t.describe() if t.kind else f"{t.resource} {t.namespace + '/' if t.namespace else ''}{t.name}"
