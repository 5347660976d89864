"""List and get under the Kubernetes-compatible paths: `<Kind>List`, a single object, or a meta.k8s.io Table.

Rows come from the store exactly as /v1/resources reads them: the same Query, the same keyset order (cluster,
namespace, name: within one cluster that is a kube-apiserver's own order), the same byte cap per page and the
same opaque continue tokens (multicluster.api.params), so `limit`/`continue` paging is exact under concurrent
writes: a page resumes after the last key it sent, never at an offset, and a token replayed with other filters is
refused. Without `limit` the answer is streamed page by page, so the daemon holds one page whatever its size.

Each item carries its cluster in the `multicluster.practice.com/cluster` annotation, which survives every output
kubectl has (`-o json|yaml|jsonpath|custom-columns`); a Table's first column is the cluster, and its rows carry
object metadata (or the object, or nothing: `includeObject`) so kubectl can add NAMESPACE, `--show-labels`, `-L`.

A cluster whose data for the type is stale or missing is named in a `Warning` header, which kubectl prints on
stderr (`Warning: cluster c2 is stale ...`): a dead cluster is reported, never silently dropped.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, cast

import orjson
from aiohttp import web
from multidict import CIMultiDict

from multicluster.api.auth.access import Grant
from multicluster.api.backend import ApiBackend, freshness
from multicluster.api.kube.discovery import KubeResource
from multicluster.api.kube.paths import CLUSTER_ANNOTATION, Target
from multicluster.api.kube.status import status_response
from multicluster.api.kube.tables import cells, column_definitions
from multicluster.api.middleware import STREAMING
from multicluster.api.params import (
    check_terms,
    continue_resource_version,
    decode_continue,
    encode_continue,
    int_param,
)
from multicluster.api.routes import MAX_LIMIT, STREAM_PAGE, limits
from multicluster.errors import QueryError
from multicluster.feed import positions
from multicluster.selectors import FIELD_KEYS, parse_field_selector, parse_label_selector, term_count
from multicluster.store.base import Query, StoredObject
from multicluster.types import KubeObject, ListMeta, StatusDetails, TableRow

_INCLUDE = ("None", "Metadata", "Object")
_RV_MATCH = ("", "NotOlderThan", "Exact")


def table_version(accept: str) -> str | None:
    """meta.k8s.io/v1 or v1beta1 when the client asks for a Table (kubectl's human-readable output does)."""
    for part in accept.split(","):
        params = {p.strip().replace(" ", "") for p in part.split(";")}
        if "as=Table" in params and "g=meta.k8s.io" in params:
            if "v=v1" in params:
                return "meta.k8s.io/v1"
            if "v=v1beta1" in params:
                return "meta.k8s.io/v1beta1"
    return None


def _field_selector(text: str | None) -> Any:
    """Parse a field selector; a field the store does not index is refused in Kubernetes' words."""
    if text:
        for part in text.split(","):
            key = re.split(r"!=|==|=", part, maxsplit=1)[0].strip()
            if key and key not in FIELD_KEYS:
                raise QueryError(f"field label not supported: {key}",
                                 hint="the fields this API can select on are " + ", ".join(FIELD_KEYS))
    return parse_field_selector(text)


def build_query(request: web.Request, res: KubeResource, clusters: tuple[str, ...], namespace: str,
                grant: Grant | None = None) -> Query:
    """The store query of a list: the request's selectors and paging, limited to what `grant` allows (the
    clusters and namespaces an authenticated user may read; None = no limit)."""
    q = request.query
    lim = limits(request)
    label_text = q.get("labelSelector") or ""
    labels = parse_label_selector(label_text)
    fields = _field_selector(q.get("fieldSelector"))
    for name, n in (("labelSelector", term_count(labels)), ("fieldSelector", term_count(fields))):
        check_terms(name, n, lim.max_selector_terms)
    match = q.get("resourceVersionMatch") or ""
    if match not in _RV_MATCH:
        raise QueryError(f'resourceVersionMatch: Unsupported value: "{match[:64]}": supported values: '
                         '"Exact", "NotOlderThan"', hint="omit resourceVersionMatch, or use NotOlderThan")
    limit = int_param(q, "limit", 0, minimum=0)
    query = Query(gvr=res.gvr, clusters=clusters, namespaces=(namespace,) if namespace else (), labels=labels,
                  fields=fields, order="cluster", limit=min(limit, MAX_LIMIT) if limit else 0,
                  max_bytes=lim.max_page_bytes, allowed=grant.clusters if grant is not None else None)
    token = q.get("continue")
    if token:
        query = replace(query, after=decode_continue(token, query))
    return query


def warnings(backend: ApiBackend, res: KubeResource, clusters: Sequence[str]) -> CIMultiDict[str]:
    """One `Warning: 299` header per cluster whose data for this type is stale or missing."""
    block = freshness(backend.clusters(), res.gvr, clusters)
    out: CIMultiDict[str] = CIMultiDict()
    for s in block["stale"]:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(s["lastSync"])) if s["lastSync"] else "never"
        out.add("Warning", _warning(f"cluster {s['name']} is stale (last sync {when}: {s['error']}); its "
                                    f"{res.gvr.resource} may have changed since"))
    for name in block["missing"]:
        out.add("Warning", _warning(f"cluster {name} has no synced {res.gvr.resource}: its objects are missing "
                                    "from this answer"))
    return out


def _warning(text: str) -> str:
    clean = "".join(c if " " <= c < "\x7f" else "?" for c in text[:1000]).replace("\\", "\\\\").replace('"', '\\"')
    return f'299 - "{clean}"'


def _item(stored: StoredObject, res: KubeResource) -> KubeObject:
    parsed = orjson.loads(stored.object)
    obj = cast(KubeObject, parsed if isinstance(parsed, dict) else {})
    obj.setdefault("apiVersion", res.gvr.api_version)
    obj.setdefault("kind", res.res.kind)
    md = obj.setdefault("metadata", {})
    if isinstance(md, dict):
        annotations = md.get("annotations")
        if not isinstance(annotations, dict):
            annotations = md["annotations"] = {}
        annotations[CLUSTER_ANNOTATION] = stored.cluster
    return obj


class Renderer:
    """Turns stored rows into the pieces of one answer: a `<Kind>List` or a Table."""

    def __init__(self, request: web.Request, res: KubeResource) -> None:
        self.res = res
        self.table = table_version(request.headers.get("Accept", ""))
        include = request.query.get("includeObject") or "Metadata"
        if include not in _INCLUDE:
            raise QueryError(f'includeObject: Unsupported value: "{include[:64]}": supported values: '
                             '"None", "Metadata", "Object"', hint="omit includeObject (Metadata is the default)")
        self.include = include
        self.now = time.time()

    @property
    def content_type(self) -> str:
        if self.table:
            return f"application/json;as=Table;v={self.table.rpartition('/')[2]};g=meta.k8s.io"
        return "application/json"

    def head(self, meta: ListMeta) -> bytes:
        if self.table:
            return (b'{"kind":"Table","apiVersion":"' + self.table.encode() + b'","metadata":' + orjson.dumps(meta)
                    + b',"columnDefinitions":' + orjson.dumps(column_definitions(self.res)) + b',"rows":[')
        return (b'{"kind":"' + f"{self.res.res.kind}List".encode() + b'","apiVersion":"'
                + self.res.gvr.api_version.encode() + b'","metadata":' + orjson.dumps(meta) + b',"items":[')

    def obj(self, stored: StoredObject) -> KubeObject:
        """The object as this API serves it: apiVersion and kind filled in, the cluster annotation added."""
        return _item(stored, self.res)

    def table_row(self, cluster: str, obj: KubeObject, now: float | None = None) -> TableRow:
        row: TableRow = {"cells": cells(self.res, cluster, obj, self.now if now is None else now)}
        if self.include == "Object":
            row["object"] = obj
        elif self.include == "Metadata":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": obj.get("metadata", {})}
        return row

    def item(self, stored: StoredObject) -> bytes:
        obj = _item(stored, self.res)
        if not self.table:
            return orjson.dumps(obj)
        return orjson.dumps(self.table_row(stored.cluster, obj))

    def single(self, stored: StoredObject) -> bytes:
        return orjson.dumps(_item(stored, self.res))


async def list_objects(request: web.Request, backend: ApiBackend, res: KubeResource, target: Target,
                       clusters: tuple[str, ...], grant: Grant | None = None) -> web.StreamResponse:
    query = build_query(request, res, clusters, target.namespace, grant)
    render = Renderer(request, res)
    headers = warnings(backend, res, grant.cluster_names() if grant is not None else clusters)
    store = backend.store
    # The list's resourceVersion: the change log positions read before its first page, so a watch from it
    # misses nothing that changed while the list was read (it may repeat a change the list already shows).
    # Every page of a paged list carries its first page's (in the continue token), as one list.
    token = request.query.get("continue")
    rv = continue_resource_version(token) if token else ""
    if not rv:
        rv = positions.encode({c: p.last for c, p in (await store.log_positions()).items()
                               if not clusters or c in clusters})
    if query.limit:
        # One page, as asked: the continue token resumes after its last row.
        page = await store.query(query)
        meta: ListMeta = {"resourceVersion": rv}
        if page.next_after is not None:
            meta["continue"] = encode_continue(query, page.next_after, rv)
        parts = [render.head(meta)]
        for i, item in enumerate(page.items):
            parts += (b"," if i else b"", render.item(item))
        parts.append(b"]}")
        headers["Content-Type"] = render.content_type
        return web.Response(body=b"".join(parts), headers=headers)
    # Everything: streamed one store page at a time. The first page is read before the answer starts, so a
    # store outage is still a proper Status.
    query = replace(query, limit=STREAM_PAGE)
    page = await store.query(query)
    headers["Content-Type"] = render.content_type
    resp = web.StreamResponse(headers=headers)
    await resp.prepare(request)
    request[STREAMING] = True
    buf = [render.head({"resourceVersion": rv})]
    first = True
    while True:
        for item in page.items:
            buf += (b"" if first else b",", render.item(item))
            first = False
        if page.next_after is None:
            break
        await resp.write(b"".join(buf))
        buf.clear()
        page = await store.query(replace(query, after=page.next_after))
    buf.append(b"]}")
    await resp.write(b"".join(buf))
    await resp.write_eof()
    return resp


async def get_object(request: web.Request, backend: ApiBackend, res: KubeResource, target: Target,
                     clusters: tuple[str, ...], grant: Grant | None = None) -> web.StreamResponse:
    """One object by name. Across all clusters the same name may exist in several: a Table lists each of them,
    and a JSON answer is the first cluster's object with a warning naming the others. With a `grant`, only the
    clusters it allows are looked in."""
    render = Renderer(request, res)
    if grant is not None:
        clusters = grant.cluster_names()
    headers = warnings(backend, res, clusters)
    if len(clusters) == 1:
        one = await backend.store.get(clusters[0], res.gvr, target.namespace, target.name)
        found = [one] if one is not None else []
    else:
        page = await backend.store.query(Query(gvr=res.gvr, namespaces=(target.namespace,) if target.namespace
                                               else (), name=target.name, order="cluster", limit=0,
                                               allowed=grant.clusters if grant is not None else None))
        found = [o for o in page.items if o.namespace == target.namespace]
    if not found:
        where = f"in cluster {clusters[0]}" if len(clusters) == 1 else "in any cluster"
        plural = res.gvr.resource if not res.gvr.group else f"{res.gvr.resource}.{res.gvr.group}"
        message = f'{plural} "{target.name}" not found {where}'
        if headers:
            message += " (some clusters' data is stale or missing: see the warnings)"
        details: StatusDetails = {"name": target.name, "group": res.gvr.group, "kind": res.gvr.resource}
        return status_response(404, message, details, headers=headers)
    if render.table:
        body = render.head({"resourceVersion": ""}) + b",".join(render.item(o) for o in found) + b"]}"
        headers["Content-Type"] = render.content_type
        return web.Response(body=body, headers=headers)
    if len(found) > 1:
        others = ", ".join(o.cluster for o in found[1:])
        headers.add("Warning", _warning(f"{res.gvr.resource} {target.name} also exists in cluster(s) {others}; "
                                        f"this is the one in cluster {found[0].cluster} (use the context "
                                        "multicluster-<cluster> to read another)"))
    headers["Content-Type"] = "application/json"
    return web.Response(body=render.single(found[0]), headers=headers)
