"""The OpenAPI 3.1 description served at /openapi.json.

Written by hand next to the routes (a test fails when a registered route is missing here), because the
interesting parts — the Go original's limit=10 default, the continue-token rules, the freshness block — are prose a
generator could not infer from handler signatures.
"""

from __future__ import annotations

from typing import Any

from multicluster import __version__

_OBJ = {"type": "object", "additionalProperties": True, "description": "A Kubernetes object exactly as stored"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _q(name: str, description: str, schema: dict[str, Any] | None = None, *, required: bool = False,
       explode: bool | None = None) -> dict[str, Any]:
    p: dict[str, Any] = {"name": name, "in": "query", "required": required, "description": description,
                         "schema": schema or {"type": "string", "maxLength": 4096}}
    if explode is not None:
        p["style"], p["explode"] = "form", explode
    return p


def _path(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": {"type": "string"}}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "400": {"description": "Invalid parameter: unknown gvr (with close matches), bad selector, bad limit, bad or "
                           "foreign continue token, oversized parameter, more selector terms (or `in` values, "
                           "clusters, namespaces) than server.maxSelectorTerms (default 100). A request line "
                           "over 64 KiB is refused by the HTTP parser itself, before any route runs, with a "
                           "text/plain 400",
            "content": {"application/json": {"schema": _ref("Error")}, "text/plain": {"schema": {"type": "string"}}}},
    "401": _json(_ref("Error"), "Missing or wrong bearer token (only when the daemon has a token)"),
    "403": _json(_ref("Error"), "Refused before any route runs: an `Origin` header not in server.allowedOrigins "
                                "(browsers), or a `Host` this daemon does not answer to (DNS rebinding; see "
                                "server.allowedHosts); on join/unjoin also the read token where the admin token "
                                "is required"),
    "408": _json(_ref("Error"), "The request body did not arrive within server.bodyTimeoutSeconds (default 30 s); "
                                "the connection is closed. A request head that takes longer than "
                                "server.headerTimeoutSeconds (default 10 s) gets no answer: the connection is "
                                "closed, as is one idle for server.keepaliveSeconds (default 75 s)"),
    "414": _json(_ref("Error"), "URL too long"),
    "500": _json(_ref("Error"), "Internal error; the hint carries a request id to find in the daemon log"),
    "503": _json(_ref("Error"), "The store is unavailable; retry"),
}

_GVR_HELP = ("Resource type in any spelling: pods, po, v1.pods, core.v1.pods, v1/pods, core/v1/pods, "
             "apps.v1.deployments, v1.apps.deployments, apps/v1/deployments, deployments.apps, deploy")

_SEED_LIMIT = ("Maximum number of objects. **Defaults to 10, like the Go original** — a client that omits it gets "
               "only the 10 newest objects. Pass limit=0 for all matching objects (streamed page by page).")

_SEED_PARAMS = [
    _q("gvr", _GVR_HELP + ". The Go original's slash forms (v1/pods, core/v1/pods, apps/v1/deployments) work "
       "unchanged.",
       required=True),
    _q("cluster", "Exact cluster name; empty = every cluster"),
    _q("namespace", "Exact namespace; empty = every namespace"),
    _q("name", "Exact object name"),
    _q("limit", _SEED_LIMIT, {"type": "integer", "minimum": 0, "default": 10}),
    {"name": "labels", "in": "query", "style": "deepObject", "explode": True, "required": False,
     "description": "labels[KEY]=VALUE equality filters (the Go original accepted and ignored them)",
     "schema": {"type": "object", "additionalProperties": {"type": "string"}}},
    _q("labelSelector", "Kubernetes label selector (an addition; combines with labels[...] as AND)"),
]

_FRESH_HEADERS = {
    "X-Multicluster-Stale": {"description": "Comma-separated clusters answered from stale data",
                             "schema": {"type": "string"}},
    "X-Multicluster-Missing": {"description": "Comma-separated clusters that could not contribute",
                               "schema": {"type": "string"}},
}


def _seed_op(summary: str, item: dict[str, Any]) -> dict[str, Any]:
    return {
        "summary": summary,
        "description": "Seed-compatible. Objects are ordered newest first (creationTimestamp descending). "
                       + _SEED_LIMIT,
        "parameters": _SEED_PARAMS,
        "responses": {
            "200": {"description": "JSON array", "headers": _FRESH_HEADERS,
                    "content": {"application/json": {"schema": {"type": "array", "items": item}}}},
            **_ERRORS,
        },
    }


_RESOURCES_PARAMS = [
    _q("gvr", _GVR_HELP, required=True),
    _q("cluster", "Cluster name; repeatable or comma-separated; empty = every cluster",
       {"type": "array", "items": {"type": "string"}}, explode=True),
    _q("namespace", "Namespace; repeatable or comma-separated; empty = every namespace",
       {"type": "array", "items": {"type": "string"}}, explode=True),
    _q("name", "Exact object name"),
    _q("namePrefix", "Object names starting with this text (matched literally; % and _ are not wildcards)"),
    _q("nameContains", "Object names containing this text (matched literally)"),
    _q("labelSelector", "Kubernetes label selector: a=b, a==b, a!=b, a in (x,y), a notin (x), a, !a; comma = AND. "
                        "At most server.maxSelectorTerms (default 100) terms, each value of an in/notin set "
                        "counting as one; the same limit applies to fieldSelector, cluster and namespace"),
    _q("fieldSelector", "Field selector with =, == or != on metadata.name, metadata.namespace, status.phase, "
                        "spec.nodeName; comma = AND"),
    _q("order", "Sort order (every order is total, so pages never overlap)",
       {"type": "string", "enum": ["cluster", "namespace", "name", "created", "-created"], "default": "cluster"}),
    _q("limit", "Page size in objects. A page also ends early when its body would pass server.maxPageBytes "
                "(default 16 MiB; a single larger object still gets a page of its own): `continue` then brings "
                "the rest, so a client pages until `continue` is null, never until it has `limit` items",
       {"type": "integer", "minimum": 1, "maximum": 5000, "default": 500}),
    _q("continue", "The `continue` value of the previous page. It is bound to the filters and order it was "
                   "issued for: reusing it with different ones is a 400. limit may change between pages."),
    _q("count", "Also count the objects after this page (`remaining`), up to server.maxCount (default 100,000): "
                "past it `remaining` is that cap and `remainingCapped` is true",
       {"type": "boolean", "default": False}),
    _q("watch", "Server-Sent Events instead of a page (text/event-stream): the current state as ADDED events, a "
                "SYNCED event, then each change as `id: <position>`, `event: ADDED|MODIFIED|DELETED`, `data: <item>`. "
                "Resume with the Last-Event-ID header (or resourceVersion / since); a position older than the "
                "change log keeps is an `error` event with code 410",
       {"type": "boolean", "default": False}),
    _q("resourceVersion", "With watch=true: resume after this event id (the Last-Event-ID header does the same)"),
    _q("since", "With watch=true: the same as resourceVersion"),
]


def _kube_paths() -> dict[str, Any]:
    """The Kubernetes-compatible API (docs/kubernetes-api.md): Kubernetes' own paths under a scope prefix."""
    prefix = "/apis/clusters.multicluster.practice.com/v1alpha1/clusters/{cluster}"
    cluster = _path("cluster", "A member cluster's name, or `_all` for every cluster at once")
    answers = {"200": {"description": "What a kube-apiserver answers on the same path: discovery documents "
                                      "(aggregated with `Accept: ...;as=APIGroupDiscoveryList`), /version, a "
                                      "<Kind>List, one object, or a meta.k8s.io Table (`Accept: ...;as=Table`) "
                                      "with CLUSTER as the first column; every item carries its cluster in the "
                                      "annotation multicluster.practice.com/cluster",
                       "content": {"application/json": {"schema": _OBJ}}},
               "4XX": {"description": "A Kubernetes Status object (kind: Status) with the code and reason; write "
                                      "methods are 405 MethodNotAllowed: the API is read-only",
                       "content": {"application/json": {"schema": _OBJ}}}}
    group = "/apis/clusters.multicluster.practice.com"
    ok = {"200": {"description": "A Kubernetes discovery document or list", "content": {"application/json": {
        "schema": _OBJ}}}}
    return {
        group: {"get": {"summary": "The APIGroup of clusters.multicluster.practice.com", "responses": ok}},
        group + "/v1alpha1": {"get": {"summary": "Its APIResourceList (the master's API server checks the "
                                                 "APIService's availability here)", "responses": ok}},
        group + "/v1alpha1/clusters": {"get": {"summary": "The member clusters as a ClusterList (what `multicluster "
                                                          "kubeconfig --via-master` makes contexts for)",
                                               "responses": ok}},
        prefix: {"get": {"summary": "A scope of the read-only Kubernetes API (the `server:` of a kubeconfig)",
                         "parameters": [cluster], "responses": answers}},
        prefix + "/{rest}": {"get": {
            "summary": "Kubernetes paths (/api, /apis, /version, /api/v1/namespaces/NS/pods, ...) over the store",
            "description": "Stale or missing clusters are named in `Warning: 299` headers (kubectl prints them). "
                           "Accepts labelSelector, fieldSelector (the store's indexed fields), limit and continue "
                           "(exact keyset paging), includeObject, resourceVersion and resourceVersionMatch.",
            "parameters": [cluster, _path("rest", "An ordinary Kubernetes API path"),
                           _q("labelSelector", "Kubernetes label selector"),
                           _q("fieldSelector", "metadata.name, metadata.namespace, status.phase, spec.nodeName"),
                           _q("limit", "Page size (0 or absent: everything, streamed)",
                              {"type": "integer", "minimum": 0}),
                           _q("continue", "The continue token of the previous page")],
            "responses": answers}},
    }


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document for every route build_app registers."""
    bearer: list[dict[str, list[str]]] = [{"bearer": []}]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "multicluster query API",
            "version": __version__,
            "description": "Kubernetes objects of many clusters, mirrored into SQL. Every list response reports "
                           "which clusters answered from fresh data and which were stale or missing.\n\n"
                           "Security: with a read token (server.token) every route except /healthz and /readyz "
                           "needs `Authorization: Bearer <token>`. With an admin token (server.adminToken), "
                           "POST /v1/join and DELETE /v1/unjoin need exactly that token (the read token gets "
                           "403); the admin token also opens every read route. Requests carrying an `Origin` "
                           "header not listed in server.allowedOrigins, and requests whose `Host` is not "
                           "localhost, a loopback IP, the bound address (any IP literal when bound to a wildcard "
                           "address) or a name in server.allowedHosts are refused with 403. Without a valid "
                           "token /readyz answers only counts. Off loopback the daemon does not start without "
                           "a read token unless --insecure-allow-unauthenticated is given.",
        },
        "security": bearer,
        "paths": {
            "/v1/list": {"get": _seed_op("List raw objects (compatible with the Go original)", _OBJ)},
            "/v1/list_with_cluster": {"get": _seed_op(
                "List objects with their cluster (compatible with the Go original)", _ref("SeedItem"))},
            "/v1/resources": {"get": {
                "summary": "List objects, paginated, with per-cluster freshness",
                "parameters": _RESOURCES_PARAMS,
                "responses": {"200": {"description": "One page; with watch=true, a stream of Server-Sent Events",
                                      "content": {"application/json": {"schema": _ref("ResourceList")},
                                                  "text/event-stream": {"schema": {"type": "string"}}}},
                              **_ERRORS},
            }},
            "/v1/resources/{cluster}/{gvr}/{namespace}/{name}": {"get": {
                "summary": "Get one object as JSON or YAML",
                "description": "Use `_` as the namespace of a cluster-scoped object. The gvr segment may be any "
                               "spelling, including the slash form (`/v1/resources/c1/apps/v1/deployments/ns/x`). "
                               "YAML is returned for `?output=yaml` or `Accept: application/yaml`.",
                "parameters": [
                    _path("cluster", "Cluster name"),
                    _path("gvr", _GVR_HELP),
                    _path("namespace", "Namespace, or _ for cluster-scoped objects"),
                    _path("name", "Object name"),
                    _q("output", "Response format", {"type": "string", "enum": ["json", "yaml"]}),
                ],
                "responses": {
                    "200": {"description": "The object",
                            "headers": {"X-Multicluster-Freshness": {"schema": {
                                "type": "string", "enum": ["fresh", "stale", "missing"]}}},
                            "content": {"application/json": {"schema": _OBJ},
                                        "application/yaml": {"schema": {"type": "string"}}}},
                    "404": _json(_ref("Error"), "No such object (the hint says whether the cluster is stale)"),
                    **_ERRORS,
                },
            }},
            **_kube_paths(),
            "/v1/clusters": {"get": {
                "summary": "Clusters with health, per-type sync state and object counts",
                "responses": {"200": _json(_ref("ClusterList"), "Every configured cluster"), **_ERRORS},
            }},
            "/v1/join": {"post": {
                "summary": "Join a cluster at runtime (compatible with the Go original); persisted across restarts",
                "description": "Body: multipart/form-data with the kubeconfig file in field `kubeconfig` (as for the "
                               "Go original), or "
                               "JSON {cluster, kubeconfig, insecure}, or the kubeconfig YAML as the raw body. "
                               "`insecure` defaults to false (the Go original defaulted to true).",
                "parameters": [
                    _q("cluster", "Name of the new cluster (DNS label)"),
                    _q("insecure", "Skip TLS verification", {"type": "boolean", "default": False}),
                    _q("wait", "Check the cluster answers before joining", {"type": "boolean", "default": True}),
                ],
                "requestBody": {"required": True, "content": {
                    "multipart/form-data": {"schema": {"type": "object", "properties": {
                        "kubeconfig": {"type": "string", "format": "binary"}}}},
                    "application/json": {"schema": {"type": "object", "properties": {
                        "cluster": {"type": "string"}, "kubeconfig": {"type": "string"},
                        "insecure": {"type": "boolean"}}}},
                }},
                "responses": {"200": _json(_ref("JoinResult"), "Joined"),
                              "409": _json(_ref("Error"), "A cluster with that name is already a member"),
                              **_ERRORS},
            }},
            "/v1/unjoin": {"delete": {
                "summary": "Remove a joined cluster: stops its informers, then purges its rows",
                "parameters": [_q("cluster", "Cluster name", required=True)],
                "description": "Only clusters added with POST /v1/join: a cluster listed in config.yaml answers "
                               "409 (remove it there and restart), the master 400. In lease mode the rows stay "
                               "in the shared store while other replicas still sync the cluster (`keptFor` names "
                               "them); the last replica to unjoin it purges them.",
                "responses": {"200": _json(_ref("JoinResult"), "Removed"),
                              "404": _json(_ref("Error"), "No such member"),
                              "409": _json(_ref("Error"), "The cluster is listed in config.yaml"), **_ERRORS},
            }},
            "/healthz": {"get": {"summary": "Liveness: 200 while the event loop runs", "security": [],
                                 "responses": {"200": _json({"type": "object"}, "Alive")}}},
            "/readyz": {"get": {"summary": "Readiness: 200 once every initial sync is done", "security": [],
                                "description": "No token needed. Without a valid token the answer holds counts "
                                               "only (`ready`, `pending` clusters, `clusters`); with one, the "
                                               "pending syncs with their cluster, type and error.",
                                "responses": {"200": _json({"type": "object"}, "Ready"),
                                              "503": _json(_ref("NotReady"), "Syncs pending")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
                "200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {
                    "type": "string"}}}}, "401": _ERRORS["401"]}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {
                "200": _json({"type": "object"}, "OpenAPI 3.1"), "401": _ERRORS["401"]}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": _SCHEMAS,
        },
    }


_SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error", "hint"], "properties": {
        "error": {"type": "string", "description": "What went wrong"},
        "hint": {"type": ["string", "null"], "description": "How to fix it"},
        "matches": {"type": "array", "items": {"type": "string"}, "description": "Close resource names (gvr errors)"},
    }},
    "SeedItem": {"type": "object", "properties": {"Object": _OBJ, "clusterName": {"type": "string"}}},
    "Resource": {"type": "object", "properties": {
        "gvr": {"type": "string", "examples": ["apps/v1/deployments"]}, "group": {"type": "string"},
        "version": {"type": "string"}, "resource": {"type": "string"}, "kind": {"type": "string"},
        "namespaced": {"type": "boolean"},
        "printerColumns": {"type": "array", "items": {"type": "object"}},
    }},
    "Freshness": {"type": "object", "properties": {
        "fresh": {"type": "array", "items": {"type": "string"}},
        "stale": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "lastSync": {"type": ["number", "null"]}, "error": {"type": "string"}}}},
        "missing": {"type": "array", "items": {"type": "string"}},
    }},
    "ResourceList": {"type": "object", "properties": {
        "apiVersion": {"const": "multicluster/v1"},
        "resource": {"$ref": "#/components/schemas/Resource"},
        "items": {"type": "array", "items": {"type": "object", "properties": {
            "cluster": {"type": "string"}, "object": _OBJ}}},
        "continue": {"type": ["string", "null"], "description": "Pass as ?continue= for the next page; null = last"},
        "remaining": {"type": ["integer", "null"], "description": "Objects after this page (with count=true)"},
        "remainingCapped": {"type": "boolean", "description": "There are more than `remaining` objects after this "
                            "page: counting stopped at server.maxCount"},
        "clusters": {"$ref": "#/components/schemas/Freshness"},
    }},
    "ClusterList": {"type": "object", "properties": {
        "apiVersion": {"const": "multicluster/v1"},
        "clusters": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "isMaster": {"type": "boolean"}, "host": {"type": "string"},
            "version": {"type": "string"}, "platform": {"type": "string"}, "reachable": {"type": "boolean"},
            "ready": {"type": "boolean"}, "lastSync": {"type": ["number", "null"]}, "error": {"type": "string"},
            "staleReason": {"type": "string", "description": "why none of its data may be current (store refusing "
                            "writes, tasks crashing); queries report it stale"},
            "typesLeftOut": {"type": "object", "description": "served types not synced (sync.maxTypesPerCluster)",
                             "properties": {"count": {"type": "integer"},
                                            "gvrs": {"type": "array", "items": {"type": "string"}}}},
            "objects": {"type": "integer"},
            "resources": {"type": "array", "items": {"type": "object", "properties": {
                "gvr": {"type": "string"}, "status": {"type": "string"},
                "resourceVersion": {"type": "integer"}, "syncedAt": {"type": ["number", "null"]},
                "error": {"type": "string"}, "objects": {"type": "integer"},
                "skipped": {"type": "integer", "description": "objects not stored (over sync.maxObjectBytes, or "
                            "no store can hold them)"},
                "skippedReason": {"type": "string"}}}},
        }}},
        "store": {"type": "object", "properties": {"endpoint": {
            "type": ["string", "null"], "description": "HOST:PORT of the database node the MySQL store writes "
                                                       "through (store.endpoints); null for SQLite"}}},
    }},
    "NotReady": {"allOf": [{"$ref": "#/components/schemas/Error"}, {"type": "object", "properties": {
        "ready": {"type": "boolean"}, "clusters": {"type": "integer"},
        "pending": {"oneOf": [{"type": "array", "items": {"type": "object"}},
                              {"type": "integer", "description": "without a valid token: clusters not ready"}]}}}]},
    "JoinResult": {"type": "object", "required": ["res", "cluster"], "properties": {
        "res": {"type": "string"}, "cluster": {"type": "string"}, "version": {"type": "string"},
        "persisted": {"type": "boolean"}, "rowsDeleted": {"type": "integer"}, "note": {"type": "string"},
        "keptFor": {"type": "array", "items": {"type": "string"}}}},
}
