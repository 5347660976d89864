"""Where the Kubernetes-compatible API lives, and what a path under it asks for.

Every scope is a prefix of our own API group and version followed by the ordinary Kubernetes paths:

    /apis/clusters.multicluster.practice.com/v1alpha1/clusters/{cluster}/api/v1/namespaces/{ns}/pods
    /apis/clusters.multicluster.practice.com/v1alpha1/clusters/_all/apis/apps/v1/deployments

`_all` (ALL_CLUSTERS) is every member at once; it cannot collide with a cluster name (those are DNS labels, which
have no `_`). A kubeconfig whose `server:` is the prefix of one scope makes kubectl, client-go or any other client
talk to that scope: they append `/api`, `/apis/...` and `/version` to it. The same paths work when the master's
API server proxies an APIService of this group to the daemon.

Parsing is pure: a path becomes a Target naming what to answer (discovery, version, a list or one object) or a
PathError that the handler turns into a NotFound Status.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

GROUP = "clusters.multicluster.practice.com"
VERSION = "v1alpha1"
PREFIX = f"/apis/{GROUP}/{VERSION}/clusters"
ALL_CLUSTERS = "_all"
# Every item and Table row carries the cluster it came from in this annotation.
CLUSTER_ANNOTATION = "multicluster.practice.com/cluster"

TargetKind = Literal["root", "version", "api", "apis", "group", "resources", "list", "get"]


class PathError(LookupError):
    """The path names nothing this API serves."""


@dataclass(frozen=True, slots=True)
class Target:
    kind: TargetKind
    group: str = ""  # "" = the legacy core group (/api/v1)
    version: str = ""
    resource: str = ""  # plural
    namespace: str = ""  # "" = all namespaces (or a cluster-scoped resource)
    name: str = ""
    subresource: str = ""
    watch: bool = False  # the deprecated /watch/ path prefix (…/v1/watch/namespaces/ns/pods)


def scope_prefix(cluster: str) -> str:
    """The `server:` URL path of a scope: one cluster, or ALL_CLUSTERS."""
    return f"{PREFIX}/{cluster}"


def parse(rest: str) -> Target:
    """What the path after `.../clusters/{cluster}/` asks for."""
    parts = [p for p in rest.split("/") if p]
    if not parts:
        return Target("root")
    head, tail = parts[0], parts[1:]
    if head == "version" and not tail:
        return Target("version")
    if head == "api":
        if not tail:
            return Target("api")
        return _resource_path("", tail[0], tail[1:])
    if head == "apis":
        if not tail:
            return Target("apis")
        if len(tail) == 1:
            return Target("group", group=tail[0])
        return _resource_path(tail[0], tail[1], tail[2:])
    raise PathError(rest)


def _resource_path(group: str, version: str, parts: list[str]) -> Target:
    if not parts:
        return Target("resources", group=group, version=version)
    if parts[0] == "watch" and len(parts) > 1:
        return replace(_resource_path(group, version, parts[1:]), watch=True)
    namespace = ""
    # /namespaces/{ns}/{resource}[/...] is a namespaced path; /namespaces and /namespaces/{name} (and its
    # subresources like /namespaces/{name}/status) are the Namespace resource itself.
    if parts[0] == "namespaces" and len(parts) >= 3 and not (group == "" and parts[2] in ("status", "finalize")):
        namespace, parts = parts[1], parts[2:]
    resource, rest = parts[0], parts[1:]
    if len(rest) > 2:
        raise PathError("/".join(parts))
    name = rest[0] if rest else ""
    sub = rest[1] if len(rest) > 1 else ""
    return Target("get" if name else "list", group=group, version=version, resource=resource,
                  namespace=namespace, name=name, subresource=sub)
