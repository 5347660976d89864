"""Authorization with the master's RBAC: which clusters and namespaces of one type a user may read.

A read of type G/R (verb get, list or watch) in namespace N of member cluster X is allowed when the master's
RBAC allows both of these SubjectAccessReviews (docs/security.md, "Kubernetes identities"):

1. the type:    verb on group G, resource R, namespace N  (cluster-scoped types and `-A`: no namespace)
2. the cluster: `get` on group clusters.multicluster.practice.com, resource `clusters`, name X, namespace N

The first is the review the user's own API server would make, so the Roles people already have (view, a
RoleBinding in team-a, ...) keep their meaning; the second names the member cluster, so a Role can also limit
which clusters those rights reach (resourceNames), per namespace (a RoleBinding) or everywhere (a
ClusterRoleBinding). The cluster review is always `get` (may the user look into member X at all): `list` on
`clusters` has no name to match resourceNames against, and is what listing the members needs.

Answers are filtered, not just allowed or denied: `read_scope` asks the cluster-wide questions first, and for a
list across namespaces that is not allowed cluster-wide it asks per namespace, for the namespaces the store holds
rows of that type in. Every answer is cached (bounded, expiring), and concurrent identical reviews share one.
Lists, gets and watches all take their filter from `read_scope`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from multicluster.api.auth.cache import ExpiringCache
from multicluster.api.auth.identity import Reviews, User
from multicluster.api.kube.paths import GROUP
from multicluster.errors import AccessDenied
from multicluster.gvr import GVR

log = logging.getLogger(__name__)

CLUSTERS_RESOURCE = "clusters"  # the virtual resource a cluster grant names (resourceNames = member clusters)
CLUSTER_VERB = "get"  # the verb of every cluster review, whatever the read's own verb
MAX_NAMESPACE_CHECKS = 2000  # namespaces looked at for one answer; the rest are left out (and logged)
_CONCURRENT_REVIEWS = 16


@dataclass(frozen=True, slots=True)
class Check:
    """The resource attributes of one SubjectAccessReview."""

    verb: str
    group: str
    resource: str
    namespace: str = ""
    name: str = ""


@dataclass(frozen=True, slots=True)
class Grant:
    """Where a user may read one type: per cluster, every namespace (None) or only the listed ones."""

    clusters: tuple[tuple[str, tuple[str, ...] | None], ...]

    def cluster_names(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.clusters)

    def allows(self, cluster: str, namespace: str) -> bool:
        for c, namespaces in self.clusters:
            if c == cluster:
                return namespaces is None or namespace in namespaces
        return False

    def whole(self) -> bool:
        """True when no cluster is limited to some namespaces."""
        return all(namespaces is None for _, namespaces in self.clusters)


class Authorizer:
    """SubjectAccessReviews against the master, cached per (user, check)."""

    def __init__(self, reviews: Reviews, *, ttl: float = 10.0, max_entries: int = 20_000) -> None:
        self._reviews = reviews
        self.ttl = ttl
        self.cache: ExpiringCache[tuple[User, Check], bool] = ExpiringCache(max_entries)
        self._slots = asyncio.Semaphore(_CONCURRENT_REVIEWS)

    async def allowed(self, user: User, check: Check) -> bool:
        return await self.cache.get_or_load((user, check), lambda: self._review(user, check), lambda _a: self.ttl)

    async def _review(self, user: User, check: Check) -> bool:
        attributes: dict[str, str] = {"verb": check.verb, "group": check.group, "resource": check.resource}
        if check.namespace:
            attributes["namespace"] = check.namespace
        if check.name:
            attributes["name"] = check.name
        spec: dict[str, Any] = {"user": user.name, "groups": list(user.groups), "resourceAttributes": attributes}
        if user.extra:
            spec["extra"] = {k: list(v) for k, v in user.extra}
        if user.uid:
            spec["uid"] = user.uid
        async with self._slots:
            answer = await self._reviews.review("subjectaccessreviews", {
                "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec})
        status = answer.get("status")
        allowed = isinstance(status, dict) and status.get("allowed") is True and not status.get("denied")
        log.debug("access review: %s %s -> %s", user.name[:100], attributes, allowed)
        return allowed

    async def all_allowed(self, user: User, checks: Iterable[Check]) -> dict[Check, bool]:
        unique = list(dict.fromkeys(checks))
        answers = await asyncio.gather(*(self.allowed(user, c) for c in unique))
        return dict(zip(unique, answers, strict=True))


NamespacesOf = Callable[[Sequence[str]], Awaitable[Sequence[tuple[str, str]]]]


async def read_scope(authz: Authorizer, user: User, verb: str, gvr: GVR, *, namespaced: bool, namespace: str,
                     clusters: Sequence[str], namespaces_of: NamespacesOf) -> Grant:
    """The clusters (and, for a list across namespaces, the namespaces per cluster) of `clusters` where `user`
    may `verb` the type `gvr`; AccessDenied when that is nothing. `namespace` is the request's namespace ("" for
    all namespaces or a cluster-scoped type); `namespaces_of(clusters)` lists the (cluster, namespace) pairs the
    store holds rows of this type in."""
    ns = namespace if namespaced else ""
    type_check = Check(verb, gvr.group, gvr.resource, ns)
    gates = {c: Check(CLUSTER_VERB, GROUP, CLUSTERS_RESOURCE, ns, c) for c in clusters}
    answers = await authz.all_allowed(user, [type_check, *gates.values()])
    whole = [c for c in clusters if answers[type_check] and answers[gates[c]]]
    granted: list[tuple[str, tuple[str, ...] | None]] = [(c, None) for c in whole]
    rest = [c for c in clusters if c not in whole]
    if rest and namespaced and not namespace:
        pairs = await namespaces_of(rest)
        granted += await _by_namespace(authz, user, verb, gvr, rest, answers[type_check],
                                       {c: answers[gates[c]] for c in rest}, pairs)
        log.debug("%s may %s %s in %s (of %d namespaces)", user.name[:100], verb, gvr, granted, len(pairs))
    if not granted:
        raise AccessDenied(_denied_message(user, verb, gvr, ns, clusters),
                           hint="ask for a Role (or ClusterRole) on the type and on the member cluster: see "
                           "docs/security.md, Kubernetes identities")
    order = {c: i for i, c in enumerate(clusters)}
    return Grant(tuple(sorted(granted, key=lambda g: order[g[0]])))


async def _by_namespace(authz: Authorizer, user: User, verb: str, gvr: GVR, clusters: Sequence[str],
                        type_everywhere: bool, gate_everywhere: dict[str, bool],
                        pairs: Sequence[tuple[str, str]]) -> list[tuple[str, tuple[str, ...] | None]]:
    namespaces = sorted({n for c, n in pairs if c in gate_everywhere and n})
    if len(namespaces) > MAX_NAMESPACE_CHECKS:
        log.warning("%s: %d namespaces hold %s; only the first %d are checked for %s", user.name[:100],
                    len(namespaces), gvr, MAX_NAMESPACE_CHECKS, verb)
        namespaces = namespaces[:MAX_NAMESPACE_CHECKS]
    kept = set(namespaces)
    types = {n: Check(verb, gvr.group, gvr.resource, n) for n in namespaces}
    type_answers = {} if type_everywhere else await authz.all_allowed(user, types.values())
    type_ok = {n: type_everywhere or type_answers[types[n]] for n in namespaces}
    candidates = [(c, n) for c, n in pairs if c in gate_everywhere and n in kept and type_ok[n]]
    gates = {(c, n): Check(CLUSTER_VERB, GROUP, CLUSTERS_RESOURCE, n, c) for c, n in candidates
             if not gate_everywhere[c]}
    gate_ok = await authz.all_allowed(user, gates.values())
    out: dict[str, list[str]] = {}
    for c, n in candidates:
        if gate_everywhere[c] or gate_ok[gates[(c, n)]]:
            out.setdefault(c, []).append(n)
    return [(c, tuple(sorted(set(ns)))) for c, ns in out.items()]


def _denied_message(user: User, verb: str, gvr: GVR, namespace: str, clusters: Sequence[str]) -> str:
    where = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    which = clusters[0] if len(clusters) == 1 else "any of the member clusters"
    return (f'{gvr.resource} is forbidden: User "{user.name[:200]}" cannot {verb} resource "{gvr.resource}" in API '
            f'group "{gvr.group}" {where} of member cluster {which}')
