"""One MultiClusterResource that is not being deleted → one copy per placed cluster → status.

Level-triggered and idempotent: from the CR as it is now (and what its status says was delivered before) it
computes, for every placed cluster, the one object that should exist there; applies it; removes copies that
should no longer exist (renames, kind changes and placement changes remove the old copies: only ours, NotFound is
success, foreign objects are never deleted); writes status only when it changed. Each cluster is handled on its
own, so bad input or a dead cluster only shows up in that cluster's status entry.

Behaviour the seed had and we keep: empty placement = master only; group spelling `mulitcluster`; seed patch
values. Customize entries of clusters that are not placed are ignored (a seed bug not repeated).

Authorization (policy.py): every per-cluster object is checked against the delivery policy after rendering and
before any write; a refusal is phase Denied, the `Denied` condition and a Warning Event naming the rule. `adopt`
needs `delivery.allowAdopt`. `spec.serviceAccountName` makes every read and write of copies impersonate
`system:serviceaccount:<cr-namespace>:<name>` in the member, whose RBAC then decides (apply.Member).

What keeps it cheap: a memo per (CR, cluster) of the last apply lets a reconcile skip members whose copy is
unchanged since (the watch index says so), so a steady state costs no requests; `requeue_delay` recognises the
watch event of our own apply so it does not requeue the CR, and delays a CR whose copies only report status
progress until `status_interval` after its last status write (the work queue coalesces the events meanwhile).
The memo and the status write times are this module's state alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from multicluster.errors import ClusterError, KubeAPIError, ReconcileError
from multicluster.gvr import GVR

from . import apply, dependencies, lifecycle, policy
from .clusterlabels import ClusterLabels
from .context import Context
from .events import NORMAL, WARNING
from .health import CopySummary
from .model import DONE, FINALIZER, PERMANENT, RETRY, ClusterResult, CRKey, Outcome, Phase, Target
from .overriders import OverrideError
from .patches import PatchError, TemplateError, check_template, digest
from .removal import REASON, describe, indexed_targets, unique, why
from .render import cr_owner, member, policy_request, remover
from .selector import cluster_selector, resolve
from .status import build_status, now_rfc3339, previous_entry, recorded_targets, same_status
from .types import MCR, MCRSpec, MCRStatus
from .watches import Copy, CopyKey, DriftWatches, content_digest

log = logging.getLogger(__name__)

_LABELS_PENDING: Outcome = 0.5  # seconds: a CR that places by label waits this long for the first list of labels


@dataclass(slots=True)
class _Memo:
    """What the last successful apply of a CR to one cluster sent and got back."""

    desired: str
    target: Target
    content: str
    uid: str
    at: float
    last_applied: str
    summary: CopySummary | None  # what the status says now; a watch event with the same content and summary is an echo


class Reconciler:
    def __init__(self, ctx: Context, watches: DriftWatches, *, labels: ClusterLabels) -> None:
        self.ctx = ctx
        self.watches = watches
        self.labels = labels
        self._memo: dict[CRKey, dict[str, _Memo]] = {}
        self._status_written: dict[CRKey, float] = {}  # monotonic time of each CR's last status write

    def requeue_delay(self, owner: CRKey, key: CopyKey, copy: Copy | None) -> float | None:
        """When a watched copy's change needs its CR reconciled: None for never (the echo of our own last apply),
        0 for now (an edit, a delete), later for a change of the copy's own status alone, so a CR's status is
        written at most once per `status_interval` however fast its copies report progress."""
        memo = self._memo.get(owner, {}).get(key[0])
        if copy is None or memo is None or copy.owner != owner or memo.content != copy.content or \
                (memo.target.resource, memo.target.namespace, memo.target.name, memo.uid) != \
                (key[1].resource, key[2], key[3], copy.uid):
            return 0.0
        if memo.summary == copy.status:
            return None
        written = self._status_written.get(owner)
        return 0.0 if written is None else max(0.0, written + self.ctx.opts.status_interval - time.monotonic())

    def forget(self, key: CRKey) -> None:
        self._memo.pop(key, None)
        self.ctx.deps.forget(key)
        self._status_written.pop(key, None)

    async def reconcile(self, key: CRKey, cr: MCR) -> Outcome:
        md = cr.get("metadata") or {}
        finalizers = list(md.get("finalizers") or [])
        spec_now = cr.get("spec")
        spec: MCRSpec = spec_now if isinstance(spec_now, dict) else {}
        status_now = cr.get("status")
        previous: MCRStatus = status_now if isinstance(status_now, dict) else {}
        recorded = recorded_targets(previous)
        where = self._placement(spec, recorded)
        if where is None:
            return _LABELS_PENDING
        placed, problems = where
        owner = cr_owner(key, cr, self.ctx.opts.field_manager)
        life, life_problems = lifecycle.parse(spec)
        generation = int(md.get("generation") or 0)
        if life.suspend and not life_problems:
            status = lifecycle.suspended_status(previous, generation)
            if not same_status(status, previous):
                await self.ctx.crs.write_status(cr, status)
            return DONE
        try:
            check_template(spec.get("template"))
            template_error: TemplateError | None = None
        except TemplateError as exc:
            template_error = exc
        await self._watch_recorded(recorded)

        # The finalizer patch runs alongside the first deliveries' reads; every write to a member waits for it
        # (apply.deliver's gate), so no copy can exist without a guaranteed cleanup.
        gate: asyncio.Task[MCR | None] | None = None
        sources: dependencies.Sources = {}  # master objects dependencies are copied from, read once per reconcile
        if FINALIZER not in finalizers:
            gate = asyncio.create_task(self.ctx.crs.set_finalizers(cr, [*finalizers, FINALIZER]))
        try:
            results = list(await asyncio.gather(
                *(self._deliver(cr, spec, owner, c, template_error, recorded.get(c), previous, gate, life,
                                life_problems, sources) for c in placed)))
        finally:
            if gate is not None:
                await asyncio.wait([gate])
        if gate is not None:
            updated = gate.result()  # a failed finalizer patch fails the reconcile (retried with backoff)
            if updated is None:
                return DONE  # the CR is gone
            cr = updated
        index = self.watches.index
        leaving = sorted((set(recorded) | {ck[0] for ck in index.owned_by(key)}) - set(placed))
        for r in await asyncio.gather(*(self._remove_unplaced(cr, owner, c, recorded.get(c)) for c in leaving)):
            if r is not None:
                results.append(r)

        status = build_status(generation=generation, placed=placed, results=results,
                              problems=problems, previous=previous)
        status = lifecycle.add_conditions(status, previous, generation, results, life, problems)
        if not same_status(status, previous):
            self._status_written[key] = time.monotonic()
            await self.ctx.crs.write_status(cr, status)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("reconciled %s/%s gen %s: %s", *key, md.get("generation"),
                      ", ".join(f"{r.cluster}={r.phase}{'*' if r.changed else ''}" for r in results))
        for problem in problems:
            self.ctx.events.record(cr, WARNING, "InvalidSpec", problem)
        for r in results:
            for etype, reason, message in r.events:
                self.ctx.events.record(cr, etype, reason, message)
        return RETRY if any(r.retry for r in results) else DONE

    def _placement(self, spec: MCRSpec, recorded: Mapping[str, Target]) -> tuple[list[str], list[str]] | None:
        """(placed clusters, spec problems); None while a clusterSelector waits for the clusters' labels."""
        if cluster_selector(spec) is not None and not self.labels.synced.is_set():
            return None
        where = resolve(spec, self.ctx.crs.master_name, self.labels.snapshot(), self.ctx.clients)
        placed = list(where.clusters)
        if where.selector_invalid:  # keep every copy where it is until the selector is fixed
            placed += [c for c in recorded if c not in placed]
        return placed, where.problems

    async def _deliver(self, cr: MCR, spec: MCRSpec, owner: apply.Owner, cluster: str,
                       template_error: TemplateError | None, recorded: Target | None,
                       previous: MCRStatus, gate: asyncio.Future[Any] | None, life: lifecycle.Lifecycle,
                       life_problems: list[str], sources: dependencies.Sources) -> ClusterResult:
        """Make the one copy for `cluster` right; on failure keep reporting the copy that is there."""
        prev = previous_entry(previous, cluster)
        prev_deps = dependencies.from_status(prev.get("dependencies"))

        def fail(phase: Phase, message: str) -> ClusterResult:
            r = ClusterResult(cluster, phase, message, target=recorded,
                              uid=str((prev.get("target") or {}).get("uid") or ""),
                              retry=phase not in PERMANENT, dependencies=dependencies.to_status(prev_deps))
            r.events.append((WARNING, str(phase), f"cluster {cluster}: {message}"))
            return r

        def deny(d: policy.Denial) -> ClusterResult:
            r = fail(Phase.DENIED, f"{d.reason}: {d.message}")
            r.denied_by = d.reason
            return r

        client = self.ctx.clients.get(cluster)
        if client is None:
            return fail(Phase.UNKNOWN_CLUSTER, "not configured in this daemon "
                                               f"(known clusters: {', '.join(sorted(self.ctx.clients))})")
        if template_error is not None:
            return fail(Phase.INVALID_TEMPLATE, template_error.message)
        if life_problems:
            return fail(Phase.INVALID_SPEC, "; ".join(life_problems))
        if owner.adopt and not self.ctx.policy.current.allow_adopt:
            return deny(policy.adopt_denial())
        writer = member(client, cr)
        if writer is None:
            return fail(Phase.INVALID_TEMPLATE, f"spec.serviceAccountName {spec.get('serviceAccountName')!r} is not "
                                                "a service account name")
        down = self.ctx.breakers.open(cluster)
        if down is not None:
            return fail(Phase.UNREACHABLE, down)
        try:
            desired, target, resource = await self.ctx.renderer.render(client, spec, owner, cluster,
                                                                       self.labels.get(cluster))
        except PatchError as exc:
            return fail(Phase.INVALID_PATCH, exc.message)
        except OverrideError as exc:
            return fail(Phase.INVALID_OVERRIDE, exc.message)
        except TemplateError as exc:
            return fail(Phase.INVALID_TEMPLATE, exc.message)
        except ReconcileError as exc:
            return fail(Phase.UNKNOWN_KIND, exc.message)
        except ClusterError as exc:
            self.ctx.breakers.trip(cluster, exc)
            return fail(Phase.UNREACHABLE, exc.reason)
        except KubeAPIError as exc:
            return fail(Phase.FAILED, f"discovery failed: {exc.body.get('message') or exc.message}")
        denial = policy.check(self.ctx.policy.current, policy_request(owner, resource, target))
        if denial is not None:
            return deny(denial)
        self.watches.ensure(cluster, resource)

        want = digest(desired)
        memo = self._memo.get(owner.key, {}).get(cluster)
        copy = self.watches.index.get((cluster, resource.gvr, target.namespace, target.name))
        if (memo is not None and memo.desired == want and memo.target == target and copy is not None
                and copy.owner == owner.key and copy.content == memo.content
                and time.monotonic() - memo.at < self.ctx.opts.resync_seconds * 0.9):
            # Nothing but status changed since our own apply: no request needed.
            result = ClusterResult(cluster, Phase.APPLIED, target=target, uid=memo.uid,
                                   last_applied=memo.last_applied, summary=copy.status)
            memo.summary = copy.status
        else:
            # Our copy, as the watch last saw it: skip the read, pin its uid (see apply.deliver).
            known = (copy.uid, copy.rv) if copy is not None and copy.owner == owner.key and copy.uid \
                and self.watches.watching(cluster, resource.gvr) else None
            try:
                result, stored = await apply.deliver(writer, owner, desired, target, known=known, gate=gate,
                                                     adopted=copy is not None and copy.adopted,
                                                     timeout=self.ctx.opts.request_timeout, retain=life.retain)
            except ClusterError as exc:
                self.ctx.breakers.trip(cluster, exc)
                return fail(Phase.UNREACHABLE, exc.reason)
            self.ctx.breakers.close(cluster)
            if not result.applied or stored is None:
                result.target, result.uid = recorded, str((prev.get("target") or {}).get("uid") or "")
                result.dependencies = dependencies.to_status(prev_deps)
                return result
            result.last_applied = result.last_applied or str(prev.get("lastAppliedTime") or "") or now_rfc3339()
            self._memo.setdefault(owner.key, {})[cluster] = _Memo(
                want, target, content_digest(stored), result.uid, time.monotonic(), result.last_applied,
                result.summary)
        await self._remove_stale(writer, owner, cluster, resource.gvr, target, recorded, result)
        if spec.get("propagateDependencies") is True or prev_deps:
            # Off (or switched off): nothing is wanted, so what was delivered before is released.
            workload = desired if spec.get("propagateDependencies") is True else {}
            try:
                dep = await self.ctx.deps.deliver(writer, owner.key, owner.uid, cluster, workload, target.namespace,
                                                  self.ctx.policy.current, prev_deps, sources)
            except ClusterError as exc:
                self.ctx.breakers.trip(cluster, exc)
                result.dependencies = dependencies.to_status(prev_deps)
                result.dependency_problems = [(dependencies.FAILED, f"{cluster}: {exc.reason}")]
                result.retry = True
                return result
            result.dependencies = dependencies.to_status(dep.delivered)
            result.dependency_problems = dep.problems
            result.events += dep.events + [(WARNING, reason, message) for reason, message in dep.problems]
            result.retry = result.retry or dep.retry
        return result

    async def _remove_stale(self, client: apply.Member, owner: apply.Owner, cluster: str, gvr: GVR,
                            target: Target, recorded: Target | None, result: ClusterResult) -> None:
        """After a rename or kind change: remove the copies of this CR in `cluster` other than `target`."""
        index = self.watches.index
        victims: list[Target] = []
        if recorded is not None and (recorded.group_version[0], recorded.resource, recorded.namespace,
                                     recorded.name) != (gvr.group, gvr.resource, target.namespace, target.name):
            victims.append(recorded)
        current = (gvr.group, gvr.resource, target.namespace, target.name)
        for c, g, ns, name in index.owned_by(owner.key):
            if c != cluster or (g.group, g.resource, ns, name) == current:
                continue
            copy = index.get((c, g, ns, name))
            if copy is not None and copy.uid == result.uid:
                continue  # the same object seen through another version or group of its type
            victims.append(Target(g.api_version, "", g.resource, ns, name))
        for v in unique(victims):
            try:
                what = await apply.remove(client, owner.key, v, timeout=self.ctx.opts.request_timeout,
                                          field_manager=self.ctx.opts.field_manager)
            except (ClusterError, KubeAPIError) as exc:
                result.retry = True
                result.events.append((WARNING, "RemoveFailed", f"cluster {cluster}: removing the old copy "
                                                               f"{describe(v)} failed: {why(exc)}"))
                continue
            if what in ("deleted", "released"):
                result.events.append((NORMAL, REASON[what], f"cluster {cluster}: old copy {describe(v)} {what}"))

    async def _remove_unplaced(self, cr: MCR, owner: apply.Owner, cluster: str,
                               recorded: Target | None) -> ClusterResult | None:
        """A cluster left the placement: delete our copies (and release our dependencies) there. None when nothing
        is left to track."""
        victims = ([recorded] if recorded else []) + indexed_targets(self.watches.index, owner.key, cluster)
        deps = dependencies.from_status(previous_entry(cr.get("status"), cluster).get("dependencies"))
        client = self.ctx.clients.get(cluster)
        if client is None:
            for v in victims:
                self.ctx.events.record(cr, WARNING, "CleanupSkipped",
                                       f"cluster {cluster} is not configured any more; {describe(v)} was left there")
            return None
        down = self.ctx.breakers.open(cluster)
        try:
            if down is not None:
                raise ClusterError(cluster, down)
            for v in unique(victims):
                what = await apply.remove(remover(client, cr), owner.key, v, timeout=self.ctx.opts.request_timeout,
                                          field_manager=self.ctx.opts.field_manager)
                if what in ("deleted", "released"):
                    self.ctx.events.record(cr, NORMAL, REASON[what],
                                           f"cluster {cluster} left the placement: {describe(v)} {what}")
            while deps:
                ref, ns = deps[0]
                what = await self.ctx.deps.release(remover(client, cr), owner.key, owner.uid, ref, ns, orphan=False)
                deps.pop(0)
                if what in ("deleted", "released"):
                    self.ctx.events.record(cr, NORMAL, "DependencyRemoved",
                                           f"cluster {cluster} left the placement: {ref.describe()} in {ns} {what}")
        except (ClusterError, KubeAPIError) as exc:
            if isinstance(exc, ClusterError):
                self.ctx.breakers.trip(cluster, exc)
            phase = Phase.UNREACHABLE if isinstance(exc, ClusterError) else Phase.REMOVING
            what = f"removing {describe(victims[0])} failed: {why(exc)}" if victims else why(exc)
            return ClusterResult(cluster, phase, what, target=recorded, retry=True,
                                 events=[(WARNING, "RemoveFailed", f"cluster {cluster}: {what}")],
                                 dependencies=dependencies.to_status(deps))
        return None

    async def _watch_recorded(self, recorded: Mapping[str, Target]) -> None:
        """After a restart, watch the types a CR's status says were delivered, so strays are found again."""
        for cluster, t in recorded.items():
            client = self.ctx.clients.get(cluster)
            if client is None or self.ctx.breakers.open(cluster) is not None:
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
