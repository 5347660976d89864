"""Deletion of a MultiClusterResource: remove (or release, when adopted or with `spec.deletionPolicy: Orphan`)
every copy, then drop our finalizer.

The finalizer is one name (`multicluster.practice.com/cleanup`), not the seed's list of clusters. What to remove
comes from three places: the status (what was delivered), the watch index (strays left by a crash between apply
and status write) and, for placed clusters, the template rendered again (a copy nobody recorded). An unknown or
unreachable cluster delays deletion by at most `cleanup_timeout`; then a Warning Event says what was left behind.
How long each (CR, cluster) has been failing is this module's state alone.
"""

from __future__ import annotations

import asyncio
import logging
import time

from multicluster.errors import ClusterError, Forbidden, KubeAPIError, MulticlusterError

from . import apply, dependencies, lifecycle, policy
from .context import Context
from .events import NORMAL, WARNING
from .model import DONE, FINALIZER, CRKey, Outcome, Target
from .patches import placement
from .removal import REASON, describe, unique, why
from .render import cr_owner, policy_request, remover
from .selector import cluster_selector
from .status import previous_entry, recorded_targets
from .types import MCR, MCRSpec
from .watches import DeliveredIndex

log = logging.getLogger(__name__)


class Finalizer:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._failing_since: dict[tuple[CRKey, str], float] = {}

    def forget(self, key: CRKey) -> None:
        for k in [k for k in self._failing_since if k[0] == key]:
            del self._failing_since[k]

    async def finalize(self, key: CRKey, cr: MCR, index: DeliveredIndex) -> Outcome:
        """DONE once our finalizer is gone from the CR (the caller then forgets the CR)."""
        md = cr.get("metadata") or {}
        finalizers = list(md.get("finalizers") or [])
        if FINALIZER not in finalizers:
            return DONE
        spec_now = cr.get("spec")
        spec: MCRSpec = spec_now if isinstance(spec_now, dict) else {}
        owner = cr_owner(key, cr, self.ctx.opts.field_manager)
        victims: dict[str, list[Target]] = {}
        for cluster, t in recorded_targets(cr.get("status")).items():
            victims.setdefault(cluster, []).append(t)
        for c, g, ns, name in index.owned_by(key):
            victims.setdefault(c, []).append(Target(g.api_version, "", g.resource, ns, name))
        # Clusters a clusterSelector chose are in the status and the index; the master is no default then.
        placed, _ = placement(spec, self.ctx.crs.master_name, default_master=cluster_selector(spec) is None)
        # A placed cluster we cannot reach may hold a copy nobody recorded (crash before the status write):
        # it counts as failing, so deletion waits for it up to cleanup_timeout instead of forgetting it.
        blocked: dict[str, str] = {}
        guesses: dict[str, set[str]] = {}
        for cluster in placed:
            victims.setdefault(cluster, [])
            client = self.ctx.clients.get(cluster)
            if client is None:
                continue
            if (down := self.ctx.breakers.open(cluster)) is not None:
                blocked[cluster] = down
                continue
            try:
                _, target, resource = await self.ctx.renderer.render(client, spec, owner, cluster)
                if policy.check(self.ctx.policy.current, policy_request(owner, resource, target)) is None:
                    if all(t.path() != target.path() for t in victims[cluster]):
                        guesses.setdefault(cluster, set()).add(target.path())
                    victims[cluster].append(target)
            except ClusterError as exc:
                self.ctx.breakers.trip(cluster, exc)
                blocked[cluster] = exc.reason
            except MulticlusterError:
                continue  # the template cannot be rendered there, so it was never delivered as such
        outcomes = await asyncio.gather(*(self._cleanup_cluster(cr, key, c, ts, blocked.get(c), guesses.get(c, set()))
                                          for c, ts in victims.items()))
        waiting = [(c, left, reason) for c, left, reason in outcomes if left is not None]
        if waiting:
            # No countdown in the text: an unchanged message means no status write and no self-triggered requeue.
            msg = "deleting: waiting for " + "; ".join(f"{c} ({reason})" for c, _, reason in waiting) + \
                f"; a cluster is skipped after {self.ctx.opts.cleanup_timeout:.0f}s of failures"

            if (cr.get("status") or {}).get("message") != msg:
                await self.ctx.crs.write_status(cr, {"message": msg[:1024]})
            return min(left for _, left, _ in waiting)
        await self.ctx.crs.set_finalizers(cr, [f for f in finalizers if f != FINALIZER])
        log.info("MultiClusterResource %s/%s: copies removed, finalizer released", *key)
        return DONE

    async def _cleanup_cluster(self, cr: MCR, key: CRKey, cluster: str, targets: list[Target],
                               blocked: str | None, guesses: set[str]) -> tuple[str, float | None, str]:
        """Remove every copy in one cluster. Returns (cluster, seconds left before giving up or None, why).
        `guesses`: paths known only from rendering the template (no record of a delivery): a service account that
        may not even read them there cannot have delivered them, so Forbidden is not a failure for those."""
        targets = unique(targets)
        client = self.ctx.clients.get(cluster)
        if client is None:
            if targets:
                self.ctx.events.record(cr, WARNING, "CleanupSkipped",
                                       f"cluster {cluster} is not configured; left in place: "
                                       + ", ".join(describe(t) for t in targets))
            return cluster, None, ""
        try:
            down = blocked or self.ctx.breakers.open(cluster)
            if down is not None:
                raise ClusterError(cluster, down)
            member = remover(client, cr)
            spec = cr.get("spec")
            orphan = lifecycle.parse(spec if isinstance(spec, dict) else {})[0].orphan
            uid = str((cr.get("metadata") or {}).get("uid") or "")
            for ref, ns in dependencies.from_status(previous_entry(cr.get("status"), cluster).get("dependencies")):
                what = await self.ctx.deps.release(member, key, uid, ref, ns, orphan=orphan)
                if what in ("deleted", "released"):
                    self.ctx.events.record(cr, NORMAL, "DependencyRemoved",
                                           f"cluster {cluster}: {ref.describe()} in {ns} {what}")
            for t in targets:
                try:
                    what = await apply.remove(member, key, t, timeout=self.ctx.opts.request_timeout,
                                              field_manager=self.ctx.opts.field_manager, release=orphan)
                except Forbidden:
                    if t.path() in guesses:
                        continue
                    raise
                if what in ("deleted", "released"):
                    self.ctx.events.record(cr, NORMAL, REASON[what], f"cluster {cluster}: {describe(t)} {what}")
        except (ClusterError, KubeAPIError) as exc:
            if isinstance(exc, ClusterError):
                self.ctx.breakers.trip(cluster, exc)
            now = time.monotonic()
            since = self._failing_since.setdefault((key, cluster), now)
            waited = now - since
            if waited < self.ctx.opts.cleanup_timeout:
                return cluster, self.ctx.opts.cleanup_timeout - waited, why(exc)
            self._failing_since.pop((key, cluster), None)
            left = ", ".join(describe(t) for t in targets) or "whatever was delivered there"
            self.ctx.events.record(cr, WARNING, "CleanupSkipped",
                                   f"cluster {cluster}: copies could not be removed for {waited:.0f}s ({why(exc)}); "
                                   f"giving up, left in place: {left}")
            return cluster, None, ""
        self._failing_since.pop((key, cluster), None)
        return cluster, None, ""
