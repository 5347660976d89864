"""The HTTP query API (aiohttp): build_app(backend) → an Application the daemon serves on port 31888.

Routes (details and schemas at GET /openapi.json):
  GET /v1/list, /v1/list_with_cluster          the Go original's routes (limit defaults to 10, as there)
  GET /v1/resources                            paginated query with selectors and per-cluster freshness
  GET /v1/resources/{cluster}/{gvr}/{namespace}/{name}   one object, JSON or YAML
  GET /v1/clusters, /healthz, /readyz, /metrics, /openapi.json
  GET /apis/clusters.multicluster.practice.com/v1alpha1/clusters/{cluster|_all}/...   the Kubernetes API itself
                                               (read-only; see multicluster.api.kube and docs/kubernetes-api.md)

The daemon implements ApiBackend (store, token, resolve, clusters, ready) and gives ClusterView snapshots; the
API never builds SQL (the store binds every value from the Query it is given). Access says who may call it
(read/admin tokens, allowed browser origins and Host names); see middleware.py for the checks.
"""

from __future__ import annotations

from aiohttp import web

from multicluster.api import join, routes
from multicluster.api.backend import ApiBackend, ClusterView, freshness
from multicluster.api.kube import group
from multicluster.api.kube import handlers as kube
from multicluster.api.middleware import ACCESS, BACKEND, Access, api_middleware, json_response
from multicluster.api.openapi import document

__all__ = ["ACCESS", "BACKEND", "Access", "ApiBackend", "ClusterView", "build_app", "freshness"]

# aiohttp refuses request lines over 8190 bytes with a bare text/plain 400; allow more so the middleware can
# answer oversized URLs with a JSON 414 that says what happened.
_MAX_LINE = 65536


def build_app(backend: ApiBackend, access: Access | None = None) -> web.Application:
    """The API over `backend`; `access` defaults to the backend's read token and loopback-only Host names."""
    app = web.Application(middlewares=[api_middleware], handler_args={"max_line_size": _MAX_LINE})
    app[BACKEND] = backend
    app[ACCESS] = access if access is not None else Access(token=backend.token)
    spec = document()

    async def openapi(request: web.Request) -> web.StreamResponse:
        """GET /openapi.json."""
        return json_response(spec)

    r = app.router
    r.add_get("/v1/list", routes.seed_list, allow_head=False)
    r.add_get("/v1/list_with_cluster", routes.seed_list_with_cluster, allow_head=False)
    r.add_get("/v1/resources", routes.list_resources, allow_head=False)
    # {gvr:.+} lets the slash spelling (apps/v1/deployments) sit in the path; the last two segments are fixed.
    r.add_get("/v1/resources/{cluster}/{gvr:.+}/{namespace}/{name}", routes.get_resource, allow_head=False)
    r.add_get("/v1/clusters", routes.list_clusters, allow_head=False)
    r.add_get("/healthz", routes.healthz, allow_head=False)
    r.add_get("/readyz", routes.readyz, allow_head=False)
    r.add_get("/metrics", routes.metrics_route, allow_head=False)
    r.add_get("/openapi.json", openapi, allow_head=False)
    r.add_post("/v1/join", join.join)
    r.add_delete("/v1/unjoin", join.unjoin)
    r.add_get(group.GROUP_ROUTE, group.api_group, allow_head=False)
    r.add_get(group.VERSION_ROUTE, group.resource_list, allow_head=False)
    r.add_get(group.CLUSTERS_ROUTE, group.list_clusters, allow_head=False)
    r.add_get(kube.SCOPE_ROUTE, kube.serve, allow_head=False)
    r.add_get(kube.ROUTE, kube.serve, allow_head=False)
    return app
