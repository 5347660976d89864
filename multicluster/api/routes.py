"""Route handlers: the list routes of the Go original, our paginated /v1/resources, clusters and health.

Objects leave the store as JSON bytes and are spliced into response bodies without being parsed again, so a
page costs one store query and one join of byte strings. A page is bounded in bytes as well as rows
(server.maxPageBytes): the store stops reading at the cap and the continue token resumes after the last row
sent. Large lists on those routes (`limit=0`) are streamed: the handler walks the store page by page and writes
each page to a chunked response, so memory stays at one page whatever the result size. The first page is fetched before
the response starts, so a store outage still gets a proper 503 JSON error instead of a truncated body.
"""

from __future__ import annotations

import inspect
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import orjson
import yaml
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from multicluster.api import sse
from multicluster.api.auth.access import CLUSTERS_RESOURCE, Check
from multicluster.api.auth.chain import require, scope_of
from multicluster.api.auth.identity import IDENTITY
from multicluster.api.backend import ApiBackend, ClusterView, freshness, gvr_json
from multicluster.api.kube.paths import GROUP
from multicluster.api.middleware import AUTHORIZED, BACKEND, STREAMING, error_response, json_response
from multicluster.api.params import (
    bool_param,
    check_terms,
    decode_continue,
    encode_continue,
    int_param,
    multi_param,
    order_param,
    required,
    str_param,
)
from multicluster.api.server import LIMITS, Limits
from multicluster.errors import AccessDenied, QueryError
from multicluster.gvr import APIResource
from multicluster.metrics import REGISTRY
from multicluster.selectors import (
    parse_field_selector,
    parse_label_selector,
    term_count,
    validate_label_key,
    validate_label_value,
)
from multicluster.store.base import Query, Requirement, StoredObject
from multicluster.types import ClusterInfo, Freshness, ResourceSyncState

API_VERSION = "multicluster/v1"
STREAM_PAGE = 500  # rows per store query when streaming
SEED_DEFAULT_LIMIT = 10  # the Go original's default; kept so its API users see the same first page
DEFAULT_LIMIT = 500
MAX_LIMIT = 5000
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")
ENVELOPE_RESERVE = 4096  # bytes of a /v1/resources page besides its items and head: continue token, counts
_DEFAULT_LIMITS = Limits()

_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml when present


def limits(request: web.Request) -> Limits:
    return request.app.get(LIMITS, _DEFAULT_LIMITS)


async def resolve(backend: ApiBackend, spelling: str) -> APIResource:
    res = backend.resolve(spelling)
    if inspect.isawaitable(res):
        res = await res
    return res


def _header_value(names: list[str]) -> str:
    # Cluster names come from the query string: percent-encode anything that is not a plain token character,
    # or a name holding CR/LF would be a header injection (aiohttp refuses it and drops the connection).
    return ",".join(quote(n, safe="") for n in names)


def _freshness_headers(block: Freshness) -> dict[str, str]:
    headers = {}
    if block["stale"]:
        headers["X-Multicluster-Stale"] = _header_value([s["name"] for s in block["stale"]])
    if block["missing"]:
        headers["X-Multicluster-Missing"] = _header_value(block["missing"])
    return headers


# ---------------------------------------------------------------------------------------- the Go original's routes


async def seed_list(request: web.Request) -> web.StreamResponse:
    """GET /v1/list: a JSON array of raw objects, newest first (as the Go original answers).

    Note: `limit` defaults to 10, like the Go original; pass limit=0 for everything (streamed).
    """
    return await _seed(request, wrap=False)


async def seed_list_with_cluster(request: web.Request) -> web.StreamResponse:
    """GET /v1/list_with_cluster: `[{"Object": {...}, "clusterName": "..."}]`, newest first (as the Go original
    answers).

    Note: `limit` defaults to 10, like the Go original; pass limit=0 for everything (streamed).
    """
    return await _seed(request, wrap=True)


def seed_labels(q: Any) -> tuple[Requirement, ...]:
    """The Go original's `labels[key]=value` parameters (gin QueryMap), which it parses and then ignores: honoured here
    as equality terms, validated like a label selector."""
    out: list[Requirement] = []
    for key, value in q.items():
        if key.startswith("labels[") and key.endswith("]"):
            label = key[len("labels[") : -1]
            validate_label_key(label, key)
            validate_label_value(value, key)
            out.append(Requirement(label, "=", (value,)))
    return tuple(out)


async def _seed(request: web.Request, *, wrap: bool) -> web.StreamResponse:
    backend = request.app[BACKEND]
    q = request.query
    res = await resolve(backend, required(q, "gvr", "apps/v1/deployments"))
    limit = int_param(q, "limit", SEED_DEFAULT_LIMIT, minimum=0)
    cluster, namespace, name = str_param(q, "cluster"), str_param(q, "namespace"), str_param(q, "name")
    lim = limits(request)
    extra = seed_labels(q)
    labels = extra + parse_label_selector(q.get("labelSelector"))
    check_terms("labels[...] and labelSelector" if extra else "labelSelector", term_count(labels),
                lim.max_selector_terms)
    base = Query(
        gvr=res.gvr,
        clusters=(cluster,) if cluster else (),
        namespaces=(namespace,) if namespace else (),
        name=name,
        labels=labels,
        order="-created",
        limit=min(limit, STREAM_PAGE) if limit else STREAM_PAGE,
        max_bytes=lim.max_page_bytes,
    )
    base = await limit_to_user(request, base, res.namespaced)
    store = backend.store
    page = await store.query(base)
    block = freshness(backend.clusters(), res.gvr, base.clusters)
    resp = web.StreamResponse(headers=_freshness_headers(block))
    resp.content_type = "application/json"
    await resp.prepare(request)
    request[STREAMING] = True
    sent = 0
    buf: list[bytes] = [b"["]
    while True:
        for item in page.items:
            if limit and sent >= limit:
                break
            if sent:
                buf.append(b",")
            if wrap:
                buf += (b'{"Object":', item.object, b',"clusterName":', orjson.dumps(item.cluster), b"}")
            else:
                buf.append(item.object)
            sent += 1
        if page.next_after is None or (limit and sent >= limit):
            break
        await resp.write(b"".join(buf))
        buf.clear()
        page = await store.query(
            replace(base, after=page.next_after, limit=min(limit - sent, STREAM_PAGE) if limit else STREAM_PAGE)
        )
    buf.append(b"]")
    await resp.write(b"".join(buf))
    await resp.write_eof()
    return resp


# --------------------------------------------------------------------------------------------------- /v1/resources


def build_query(q: Any, res: APIResource, lim: Limits = _DEFAULT_LIMITS) -> tuple[Query, bool]:
    """Everything /v1/resources accepts, validated into a store Query (+ whether to count the remainder)."""
    query = Query(
        gvr=res.gvr,
        clusters=multi_param(q, "cluster"),
        namespaces=multi_param(q, "namespace"),
        name=str_param(q, "name"),
        name_prefix=str_param(q, "namePrefix"),
        name_contains=str_param(q, "nameContains"),
        labels=parse_label_selector(q.get("labelSelector")),
        fields=parse_field_selector(q.get("fieldSelector")),
        order=order_param(q),
        limit=int_param(q, "limit", DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT),
        count_remaining=bool_param(q, "count"),
        count_limit=lim.max_count,
        max_bytes=lim.max_page_bytes,
    )
    for name, n in (("labelSelector", term_count(query.labels)), ("fieldSelector", term_count(query.fields)),
                    ("cluster", len(query.clusters)), ("namespace", len(query.namespaces))):
        check_terms(name, n, lim.max_selector_terms)
    token = q.get("continue")
    if token:
        query = replace(query, after=decode_continue(token, query))
    return query, query.count_remaining


async def list_resources(request: web.Request) -> web.StreamResponse:
    """GET /v1/resources: one page of objects with a continue token and per-cluster freshness; with watch=true,
    the objects and then their changes as Server-Sent Events (api/sse.py)."""
    backend = request.app[BACKEND]
    q = request.query
    res = await resolve(backend, required(q, "gvr", "pods"))
    lim = limits(request)
    query, _ = build_query(q, res, lim)
    if bool_param(q, "watch"):
        # A watch is authorised as Kubernetes authorises one: with the verb watch.
        return await sse.watch(request, await limit_to_user(request, query, res.namespaced, "watch"))
    query = await limit_to_user(request, query, res.namespaced)
    block = freshness(backend.clusters(), res.gvr, query.clusters)
    head = b'{"apiVersion":"' + API_VERSION.encode() + b'","resource":' + orjson.dumps(gvr_json(res)) + \
        b',"items":['
    clusters = orjson.dumps(block)
    # The page's items get what the cap leaves after the rest of the body.
    query = replace(query, max_bytes=max(1, lim.max_page_bytes - len(head) - len(clusters) - ENVELOPE_RESERVE))
    page = await backend.store.query(query)
    token = encode_continue(query, page.next_after) if page.next_after is not None else None
    parts = [head]
    for i, item in enumerate(page.items):
        parts += (b',{"cluster":' if i else b'{"cluster":', orjson.dumps(item.cluster), b',"object":', item.object,
                  b"}")
    parts += (b'],"continue":', orjson.dumps(token),
              b',"remaining":', orjson.dumps(page.remaining if query.count_remaining else None),
              b',"remainingCapped":', orjson.dumps(page.remaining_capped),
              b',"clusters":', clusters, b"}")
    return web.Response(body=b"".join(parts), content_type="application/json", headers=_freshness_headers(block))


async def limit_to_user(request: web.Request, query: Query, namespaced: bool, verb: str = "list") -> Query:
    """`query` limited to the clusters and namespaces the request's Kubernetes user may `verb` (api.auth); as it
    is for a request authenticated by a static token. AccessDenied when the user may read none of it."""
    namespace = query.namespaces[0] if len(query.namespaces) == 1 else ""
    clusters = query.clusters or tuple(v.name for v in request.app[BACKEND].clusters())
    grant = await scope_of(request, request.app[BACKEND].store, verb, query.gvr, namespaced=namespaced,
                           namespace=namespace, clusters=clusters)
    return query if grant is None else replace(query, allowed=grant.clusters)


def _wants_yaml(request: web.Request) -> bool:
    output = (request.query.get("output") or "").strip().lower()
    if output:
        if output not in ("json", "yaml"):
            raise QueryError(f'parameter output: "{output[:64]}" is not supported',
                             hint="use output=json or output=yaml")
        return output == "yaml"
    accept = request.headers.get("Accept", "")
    return any(t in accept for t in YAML_TYPES) and "application/json" not in accept


async def get_resource(request: web.Request) -> web.StreamResponse:
    """GET /v1/resources/{cluster}/{gvr}/{namespace}/{name}: one object (`_` = no namespace)."""
    backend = request.app[BACKEND]
    m = request.match_info
    cluster, namespace, name = m["cluster"], m["namespace"], m["name"]
    res = await resolve(backend, m["gvr"])
    as_yaml = _wants_yaml(request)
    ns = "" if namespace == "_" else namespace
    if ns and not res.namespaced:
        raise QueryError(f"{res.kind} ({res.gvr}) is cluster-scoped: use _ as the namespace",
                         hint=f"GET /v1/resources/{cluster}/{m['gvr']}/_/{name}")
    if res.namespaced and not ns:
        raise QueryError(f"{res.kind} ({res.gvr}) is namespaced: put its namespace in the path instead of _",
                         hint=f"GET /v1/resources/{cluster}/{m['gvr']}/NAMESPACE/{name}")
    await scope_of(request, backend.store, "get", res.gvr, namespaced=res.namespaced, namespace=ns, clusters=[cluster])
    obj: StoredObject | None = await backend.store.get(cluster, res.gvr, ns, name)
    block = freshness(backend.clusters(), res.gvr, (cluster,))
    state = "fresh" if block["fresh"] else "stale" if block["stale"] else "missing"
    if obj is None:
        where = f"{ns}/{name}" if ns else name
        if state == "missing":
            known = ", ".join(v.name for v in backend.clusters()) or "none"
            hint = f"cluster {cluster} has no synced data for {res.gvr} (known clusters: {known})"
        elif state == "stale":
            hint = f"cluster {cluster} is stale ({block['stale'][0]['error']}); the object may exist there now"
        else:
            hint = f"list what exists with GET /v1/resources?gvr={res.gvr}&cluster={cluster}"
        return error_response(404, f"{res.kind} {where} not found in cluster {cluster}", hint,
                              cluster=cluster, freshness=state)
    headers = {"X-Multicluster-Cluster": _header_value([obj.cluster]), "X-Multicluster-Freshness": state}
    if as_yaml:
        # Sorted keys, like kubectl -o yaml and the Go original's JSONToYAML.
        text = yaml.dump(orjson.loads(obj.object), Dumper=_Dumper, sort_keys=True, default_flow_style=False,
                         allow_unicode=True)
        return web.Response(text=text, content_type="application/yaml", headers=headers)
    return web.Response(body=obj.object, content_type="application/json", headers=headers)


# --------------------------------------------------------------------------------------------------- clusters, health


def _cluster_json(view: ClusterView, counts: dict[str, int]) -> ClusterInfo:
    resources: list[ResourceSyncState] = []
    for s in sorted(view.syncs, key=lambda s: s.gvr):
        resources.append({
            "gvr": str(s.gvr),
            "status": s.status,
            "resourceVersion": s.resource_version,
            "syncedAt": s.synced_at or None,
            "error": s.error,
            "objects": counts.get(str(s.gvr), s.objects),
            # Objects the cluster serves that are not stored (over sync.maxObjectBytes, unstorable), and why.
            "skipped": view.skipped.get(s.gvr, (0, ""))[0],
            "skippedReason": view.skipped.get(s.gvr, (0, ""))[1],
        })
    return {
        "name": view.name,
        "isMaster": view.is_master,
        "host": view.host,
        "version": view.version,
        "platform": view.platform,
        "reachable": view.reachable,
        "ready": view.ready,
        "lastSync": view.last_sync,
        "error": view.error,
        "staleReason": view.stale_reason,
        "typesLeftOut": {"count": len(view.left_out), "gvrs": sorted(str(g) for g in view.left_out)[:50]},
        "objects": sum(counts.values()),
        "resources": resources,
    }


async def list_clusters(request: web.Request) -> web.StreamResponse:
    """GET /v1/clusters: every cluster's health, per-GVR sync state and object counts. A Kubernetes user needs
    `list` on clusters.clusters.multicluster.practice.com (it names every member and its address)."""
    await require(request, Check("list", GROUP, CLUSTERS_RESOURCE), "the member clusters (GET /v1/clusters)")
    backend = request.app[BACKEND]
    counts = await backend.store.counts()
    per: dict[str, dict[str, int]] = {}
    for (cluster, gvr), n in counts.items():
        per.setdefault(cluster, {})[str(gvr)] = n
    views = backend.clusters()
    return json_response({
        "apiVersion": API_VERSION,
        "clusters": [_cluster_json(v, per.get(v.name, {})) for v in views],
        # The database node in use when the store is a cluster of them (MySQL store; null otherwise).
        "store": {"endpoint": getattr(backend.store, "endpoint", None)},
    })


async def healthz(request: web.Request) -> web.StreamResponse:
    """GET /healthz: the event loop answers (liveness)."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.StreamResponse:
    """GET /readyz: 200 once every initial sync is done, else 503 listing what is pending.

    Probes carry no token, so without one the answer is counts only: cluster names, API server addresses and
    error text (RBAC messages, dial errors) are for callers that may read /v1/clusters anyway."""
    backend = request.app[BACKEND]
    ready = backend.ready()
    if not request.get(AUTHORIZED, False):
        views = backend.clusters()
        waiting = sum(1 for v in views if not v.ready)
        if ready:
            return json_response({"status": "ready", "ready": True, "pending": 0, "clusters": len(views)})
        return error_response(503, f"not ready: {waiting} of {len(views)} clusters still in their initial sync",
                              "send the API token to see which syncs are pending, or GET /v1/clusters",
                              ready=False, pending=waiting, clusters=len(views))
    if ready:
        return json_response({"status": "ready", "ready": True})
    pending: list[dict[str, Any]] = []
    for v in backend.clusters():
        syncs = [s for s in v.syncs if s.status != "synced" or not s.synced_at]
        for s in syncs:
            pending.append({"cluster": v.name, "gvr": str(s.gvr), "status": s.status, "error": s.error})
        if not v.ready and not syncs:
            pending.append({"cluster": v.name, "gvr": None, "status": "unreachable" if not v.reachable else
                            "discovering", "error": v.error})
    return error_response(503, f"not ready: {len(pending)} initial sync(s) pending",
                          "wait for the initial lists to finish; GET /v1/clusters shows progress",
                          ready=False, pending=pending)


async def metrics_route(request: web.Request) -> web.StreamResponse:
    """GET /metrics: Prometheus text format. Only for the static tokens: the master's RBAC has nothing that names
    the daemon's metrics, so no Kubernetes user reads them."""
    if request.get(IDENTITY) is not None:
        raise AccessDenied("the daemon's metrics need its token (server.token)",
                           hint="scrape /metrics with the daemon's read token")
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

