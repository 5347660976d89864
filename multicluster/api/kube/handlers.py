"""The entry point of every request under the Kubernetes-compatible prefix: scope, path, then discovery,
version, list or get (see the package docstring)."""

from __future__ import annotations

from aiohttp import web

from multicluster.api.auth.chain import scope_of
from multicluster.api.backend import ClusterView
from multicluster.api.kube import discovery, lists, watch
from multicluster.api.kube.paths import ALL_CLUSTERS, PREFIX, PathError, Target, parse, scope_prefix
from multicluster.api.kube.status import status_response
from multicluster.api.middleware import BACKEND, json_response
from multicluster.api.params import bool_param
from multicluster.gvr import GVR

# The scope itself (kubectl asks for nothing there, but a browser might) and everything under it.
SCOPE_ROUTE = PREFIX + "/{cluster}"
ROUTE = PREFIX + "/{cluster}/{rest:.*}"



def _not_found(what: str) -> web.Response:
    return status_response(404, f"the server could not find the requested resource ({what})", {})


def _json(data: object, content_type: str = "application/json") -> web.Response:
    resp = json_response(data)
    resp.headers["Content-Type"] = content_type
    return resp


async def serve(request: web.Request) -> web.StreamResponse:
    """Every request under PREFIX."""
    backend = request.app[BACKEND]
    cluster = request.match_info["cluster"]
    views = backend.clusters()
    scope: list[ClusterView]
    if cluster == ALL_CLUSTERS:
        scope = views
    else:
        scope = [v for v in views if v.name == cluster]
        if not scope:
            known = ", ".join(v.name for v in views) or "none"
            return status_response(404, f'cluster "{cluster}" is not a member of this multicluster (members: {known};'
                                   f" all of them at once: {scope_prefix(ALL_CLUSTERS)})",
                                   {"name": cluster, "kind": "clusters"})
    clusters = () if cluster == ALL_CLUSTERS else (cluster,)
    try:
        target = parse(request.match_info.get("rest", ""))
    except PathError:
        return _not_found(request.path[:300])
    if target.kind == "version":
        return json_response(discovery.version_doc(scope))
    if target.kind == "root":
        return json_response({"paths": ["/api", "/api/v1", "/apis", "/version"]})
    if target.kind in ("list", "get"):
        return await _objects(request, target, scope, clusters)
    resources = await discovery.served(backend, scope)
    if target.kind in ("api", "apis"):
        aggregated = discovery.wants_aggregated(request.headers.get("Accept", ""))
        if aggregated is not None:
            api_version = aggregated.split(";v=")[1].split(";")[0]
            doc = discovery.aggregated(resources, target.kind == "api", f"apidiscovery.k8s.io/{api_version}")
            return _json(doc, aggregated)
        return json_response(discovery.api_versions(resources) if target.kind == "api"
                             else discovery.api_groups(resources))
    if target.kind == "group":
        group = discovery.api_group(resources, target.group)
        return json_response(group) if group is not None else _not_found(f"group {target.group}")
    rl = discovery.resource_list(resources, target.group, target.version)  # target.kind == "resources"
    return json_response(rl) if rl is not None else _not_found(f"{target.group}/{target.version}".lstrip("/"))


async def _objects(request: web.Request, target: Target, scope: list[ClusterView],
                   clusters: tuple[str, ...]) -> web.StreamResponse:
    gvr = GVR(target.group, target.version, target.resource)
    res = await discovery.find(request.app[BACKEND], scope, gvr)
    if res is None:
        return _not_found(f"{gvr} is not synced by any cluster in this scope")
    if target.namespace and not res.res.namespaced:
        return _not_found(f"{res.res.kind} is cluster-scoped: drop the namespace")
    if target.subresource:
        return _not_found(f"subresource {target.subresource}: only stored objects are served")
    backend = request.app[BACKEND]
    # A Kubernetes user (front proxy, TokenReview) reads only what the master's RBAC lets them: see api.auth.
    watching = bool_param(request.query, "watch") or target.watch
    verb = "watch" if watching else "get" if target.kind == "get" else "list"
    grant = await scope_of(request, backend.store, verb, res.gvr, namespaced=res.res.namespaced,
                           namespace=target.namespace, clusters=[v.name for v in scope])
    if watching:
        return await watch.watch_objects(request, backend, res, target, clusters, grant)
    if target.kind == "get":
        return await lists.get_object(request, backend, res, target, clusters, grant)
    return await lists.list_objects(request, backend, res, target, clusters, grant)
