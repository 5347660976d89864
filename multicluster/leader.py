"""Leader election and informer sharding across replicas, on coordination.k8s.io/v1 Leases.

Leader: one Lease (`--lease-name` in `--lease-namespace`, on the master cluster). Like client-go's leaderelection,
expiry is judged by when *we* last saw the record change, not by the timestamps in it, so clock skew between
replicas does not matter; updates carry the resourceVersion, so two candidates cannot both win a race. The leader
runs the delivery controller and publishes MultiCluster objects; losing the lease (renewal failing for
`renew_deadline`) stops them at once. Every replica serves the API regardless.

Shards: every replica also holds a member Lease `<lease-name>-member-<identity>` labelled with the group and
annotated with the clusters it syncs (config file plus its own joins: a join reaches only the replica that
answered it). For each cluster, the live members (leases renewed recently) holding it split its resource types
by rendezvous hashing, so a member joining or leaving moves only its share. A dead replica's share is picked up
within about one lease duration; the store's resourceVersion guard makes the brief overlap harmless. A lease
without the annotation (an older replica) counts as holding every cluster.

The same annotation decides purges in the shared store: a replica that stops syncing a cluster (unjoin, reload)
deletes the cluster's rows only when no other live member holds it; otherwise the rows stay with the replicas
that still keep them current.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from multicluster import metrics
from multicluster.errors import ClusterError, Conflict, KubeAPIError, NotFound
from multicluster.kube import ClusterClient
from multicluster.logsetup import cluster_logger
from multicluster.types import LeaseSpec

log = logging.getLogger(__name__)

LEASES = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"
GROUP_LABEL = "multicluster.practice.com/shard-group"
CLUSTERS_ANNOTATION = "multicluster.practice.com/clusters"  # comma-separated clusters the member syncs


def default_identity() -> str:
    """A replica's name when lease.identity (POD_NAME) is not set."""
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"


def _now_micro() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(s: str | None) -> float:
    if not s:
        return 0.0
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def owner(key: str, members: list[str]) -> str:
    """Rendezvous (highest random weight) hashing: stable, and only a leaving member's keys move."""
    return max(members, key=lambda m: hashlib.blake2b(f"{m}\x00{key}".encode(), digest_size=8).digest())


@dataclass
class LeaseTiming:
    duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


class LeaseLock:
    """One Lease object, acquired/renewed with optimistic concurrency."""

    def __init__(
        self,
        client: ClusterClient,
        namespace: str,
        name: str,
        identity: str,
        timing: LeaseTiming,
        labels: dict[str, str] | None = None,
    ) -> None:
        self.client = client
        self.path = LEASES.format(ns=namespace) + f"/{name}"
        self.collection = LEASES.format(ns=namespace)
        self.name = name
        self.identity = identity
        self.timing = timing
        self.labels = labels or {}
        self.annotations: dict[str, str] = {}  # written with every renewal
        self._observed: tuple[str, str] | None = None  # (holder, renewTime) last seen
        self._observed_at = 0.0

    def _spec(self, transitions: int, acquire: str | None = None) -> LeaseSpec:
        now = _now_micro()
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.timing.duration),
            "acquireTime": acquire or now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    async def try_acquire(self) -> bool:
        """Acquire or renew; False when someone else holds a live lease (or we lost a race)."""
        try:
            lease = await self.client.get(self.path)
        except NotFound:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "labels": self.labels, "annotations": self.annotations},
                "spec": self._spec(0),
            }
            try:
                await self.client.request("POST", self.collection, body=body)
                return True
            except Conflict:
                return False
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, str(spec.get("renewTime") or ""))
        now = time.monotonic()
        if record != self._observed:
            self._observed, self._observed_at = record, now
        if holder and holder != self.identity and now - self._observed_at < self.timing.duration:
            return False
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder != self.identity:
            transitions += 1
            acquire = None
        else:
            acquire = spec.get("acquireTime")
        lease["spec"] = self._spec(transitions, acquire)
        lease.setdefault("metadata", {}).setdefault("labels", {}).update(self.labels)
        if self.annotations:
            lease["metadata"].setdefault("annotations", {}).update(self.annotations)
        try:
            await self.client.request("PUT", self.path, body=lease)
        except Conflict:
            return False
        self._observed, self._observed_at = (self.identity, lease["spec"]["renewTime"]), now
        return True

    async def release(self) -> None:
        try:
            lease = await self.client.get(self.path)
            if (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"]["holderIdentity"] = ""
            lease["spec"]["leaseDurationSeconds"] = 1
            await self.client.request("PUT", self.path, body=lease)
        except (KubeAPIError, ClusterError) as exc:
            log.debug("releasing lease %s failed: %s", self.name, exc)


class LeaderElector:
    """Run `on_start` while we hold the lease; cancel it the moment renewal fails for renew_deadline."""

    def __init__(
        self, lock: LeaseLock, on_start: Callable[[], Awaitable[None]], on_stop: Callable[[], Awaitable[None]]
    ) -> None:
        self.lock = lock
        self.on_start = on_start
        self.on_stop = on_stop
        self.leader = False
        self.transitions = 0

    async def run(self) -> None:
        t = self.lock.timing
        last_renew = 0.0
        try:
            while True:
                try:
                    ok = await asyncio.wait_for(self.lock.try_acquire(), t.renew_deadline)
                except (KubeAPIError, ClusterError, TimeoutError) as exc:
                    log.debug("lease %s: %s", self.lock.name, exc)
                    ok = False
                now = time.monotonic()
                if ok:
                    last_renew = now
                    if not self.leader:
                        self.leader = True
                        self.transitions += 1
                        metrics.LEADER.set(1)
                        log.info("became leader (lease %s, identity %s)", self.lock.name, self.lock.identity)
                        await self.on_start()
                elif self.leader and now - last_renew >= t.renew_deadline:
                    self.leader = False
                    metrics.LEADER.set(0)
                    log.warning("lost leadership (lease %s not renewed for %.0fs)", self.lock.name, t.renew_deadline)
                    await self.on_stop()
                await asyncio.sleep(t.retry_period)
        finally:
            if self.leader:
                self.leader = False
                metrics.LEADER.set(0)
                await self.on_stop()
                await self.lock.release()


class ShardMembership:
    """Hold our member lease and track the live members of the shard group."""

    def __init__(
        self,
        client: ClusterClient,
        namespace: str,
        group: str,
        identity: str,
        timing: LeaseTiming,
        on_change: Callable[[list[str]], Awaitable[None]],
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.group = group
        self.identity = identity
        self.timing = timing
        self.on_change = on_change
        safe = "".join(ch if ch.isalnum() or ch == "-" else "-" for ch in identity.lower())[:40].strip("-")
        self.lock = LeaseLock(client, namespace, f"{group}-member-{safe}", identity, timing, {GROUP_LABEL: group})
        self.members: list[str] = [identity]
        # Clusters each live member syncs, from its lease (None: an older replica; assume every cluster).
        self.holdings: dict[str, frozenset[str] | None] = {}
        self.held: frozenset[str] = frozenset()
        self._seen: dict[str, tuple[str, float]] = {}
        self._changed = asyncio.Event()
        self.lock.annotations[CLUSTERS_ANNOTATION] = ""  # holds nothing until set_clusters; never "unknown"

    def set_clusters(self, names: Iterable[str]) -> None:
        """The clusters this replica syncs; run() publishes a change at once, so another replica deciding whether
        to purge a cluster sees a join here within moments rather than a renewal period later."""
        held = frozenset(names)
        if held != self.held:
            self.held = held
            self.lock.annotations[CLUSTERS_ANNOTATION] = ",".join(sorted(held))
            self._changed.set()

    def _holds(self, member: str, cluster: str) -> bool:
        if member == self.identity:
            return cluster in self.held
        held = self.holdings.get(member)
        return held is None or cluster in held

    def owns(self, key: str, cluster: str | None = None) -> bool:
        """Whether this replica runs the informer `key`; with `cluster`, only members holding it share the key."""
        candidates = [m for m in self.members if cluster is None or self._holds(m, cluster)]
        return owner(key, candidates or self.members) == self.identity

    async def others_holding(self, cluster: str) -> list[str]:
        """Publish our current clusters now, then read which other live members still sync `cluster`.

        Publishing first makes two replicas that drop the same cluster at once agree: the later reader sees the
        earlier one's lease without it, so at least one of them purges. Unreadable leases count as holding it
        (keeping rows is recoverable, purging rows another replica keeps is not)."""
        try:
            await self.lock.try_acquire()
            self.members = sorted({*await self._live(), self.identity})
        except (KubeAPIError, ClusterError) as exc:
            cluster_logger(log, cluster).warning("shard membership unreadable (%s); keeping the cluster's rows", exc)
            return [m for m in self.members if m != self.identity] or ["(unknown: leases unreadable)"]
        return [m for m in self.members if m != self.identity and self._holds(m, cluster)]

    async def run(self) -> None:
        try:
            while True:
                before = dict(self.holdings)
                try:
                    await self.lock.try_acquire()
                    live = await self._live()
                except (KubeAPIError, ClusterError) as exc:
                    log.debug("shard membership: %s", exc)
                    live = self.members  # keep the last view rather than grabbing everything
                if self.identity not in live:
                    live = sorted({*live, self.identity})
                if live != self.members or self.holdings != before:
                    if live != self.members:
                        log.info("shard members: %s", ", ".join(live))
                    self.members = live
                    await self.on_change(live)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), self.timing.retry_period)
                self._changed.clear()
        finally:
            await self.lock.release()

    async def _live(self) -> list[str]:
        selector = f"{GROUP_LABEL}={self.group}"
        body = await self.client.get(LEASES.format(ns=self.namespace), params={"labelSelector": selector})
        now = time.monotonic()
        live = []
        holdings: dict[str, frozenset[str] | None] = {}
        for lease in body.get("items") or []:
            spec = lease.get("spec") or {}
            holder = spec.get("holderIdentity") or ""
            if not holder:
                continue
            renew = str(spec.get("renewTime") or "")
            prev = self._seen.get(holder)
            if prev is None or prev[0] != renew:
                self._seen[holder] = (renew, now)
            duration = float(spec.get("leaseDurationSeconds") or self.timing.duration)
            # A lease left behind by a replica that died long ago is dead on sight (generous skew allowance);
            # otherwise expiry is judged by when we saw its renewTime change, like the leader lock.
            long_dead = time.time() - _parse_time(renew) > 3 * duration + 30
            if holder == self.identity or (not long_dead and now - self._seen[holder][1] < duration):
                live.append(holder)
                annotations = (lease.get("metadata") or {}).get("annotations") or {}
                raw = annotations.get(CLUSTERS_ANNOTATION)
                holdings[holder] = None if raw is None else frozenset(c for c in str(raw).split(",") if c)
        self.holdings = holdings
        return sorted(set(live))
