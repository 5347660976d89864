"""Our own API group as an API server sees it: clusters.multicluster.practice.com/v1alpha1 and its one
resource, `clusters` (the member clusters, read-only).

The master's API server asks for `/apis/clusters.multicluster.practice.com/v1alpha1` to decide whether the
APIService is available (any answer outside 2xx marks it unavailable), and lists the group in its own discovery
from it. `GET .../clusters` lists the members (what `multicluster kubeconfig --via-master` makes contexts for).
Everything below a member's name is the
Kubernetes-compatible API of that scope (handlers.py).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from multicluster.api.auth.access import CLUSTERS_RESOURCE
from multicluster.api.kube.paths import GROUP, PREFIX, VERSION
from multicluster.api.middleware import BACKEND, json_response

GROUP_ROUTE = f"/apis/{GROUP}"
VERSION_ROUTE = f"/apis/{GROUP}/{VERSION}"
CLUSTERS_ROUTE = PREFIX
GROUP_VERSION = f"{GROUP}/{VERSION}"


def _group_doc() -> dict[str, Any]:
    gv = {"groupVersion": GROUP_VERSION, "version": VERSION}
    return {"kind": "APIGroup", "apiVersion": "v1", "name": GROUP, "versions": [gv], "preferredVersion": gv}


async def api_group(request: web.Request) -> web.StreamResponse:
    return json_response(_group_doc())


async def resource_list(request: web.Request) -> web.StreamResponse:
    return json_response({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION,
                          "resources": [{"name": CLUSTERS_RESOURCE, "singularName": "cluster", "namespaced": False,
                                         "kind": "Cluster", "verbs": ["get", "list"]}]})


async def list_clusters(request: web.Request) -> web.StreamResponse:
    """The member clusters as a ClusterList (name, master or not, reachable, ready). Through the master, `list`
    on `clusters` (the master's own check of this path) is what lets a user see the members' names; what they
    may read in each is decided per read (api.auth.access), and a Role may grant a member in one namespace only,
    so the names are not filtered here."""
    items = [{"apiVersion": GROUP_VERSION, "kind": "Cluster", "metadata": {"name": v.name},
              "status": {"master": v.is_master, "reachable": v.reachable, "ready": v.ready,
                         "version": v.version}} for v in request.app[BACKEND].clusters()]
    return json_response({"apiVersion": GROUP_VERSION, "kind": "ClusterList", "metadata": {"resourceVersion": ""},
                          "items": items})
