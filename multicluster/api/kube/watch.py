"""`watch` on every list path of the Kubernetes-compatible API: a stream of watch events, one JSON object a line.

Where events come from (multicluster/feed): live ones from the hub, which the store feeds after each commit;
a watch that resumes from a resourceVersion first reads the durable change log from there. The subscription is
taken before the log is read, and every event carries its cluster's log position, so the switch from log to hub
has neither gap nor repeat: the hub's events at or before the positions already sent are dropped.

resourceVersion (see feed/positions.py) is opaque: a change log position per cluster. Each event's object
carries the position just after it in `metadata.resourceVersion`, which is what clients resume from.

- omitted or "0": ADDED for every object the store holds (read page by page), then every change after the log
  positions read before the first page. The initial events are not one snapshot: an object that changes while
  they are read can be sent once more (as MODIFIED) with the state already sent, never missed.
- a position: every change after it; one older than the log keeps (store.changeRetention) is answered with an
  ERROR event carrying a 410 Expired Status, as kube-apiserver's watch cache answers, and clients list again.
- sendInitialEvents=true (needs resourceVersionMatch=NotOlderThan and allowWatchBookmarks=true): the initial
  ADDED events, then a BOOKMARK annotated `k8s.io/initial-events-end: "true"`, then changes.
- allowWatchBookmarks=true: a BOOKMARK with the current positions every BOOKMARK_SECONDS without events.
- timeoutSeconds ends the stream (default: kube-apiserver's, 30 to 60 minutes).
- A watcher that does not read fast enough is dropped when its queue in the hub (feed.hub.QUEUE_LIMIT events)
  is full: the stream ends, as kube-apiserver ends an unresponsive watcher, and the client watches again from
  its last resourceVersion.

Membership: an unjoined cluster's objects arrive as DELETED (the store logs every row it removes); a joined
cluster's as ADDED. A cluster whose data is stale or missing when the watch starts is named in a Warning
header, as on lists.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import orjson
from aiohttp import web

from multicluster.api.auth.access import Grant
from multicluster.api.backend import ApiBackend
from multicluster.api.kube.discovery import KubeResource
from multicluster.api.kube.lists import Renderer, build_query, warnings
from multicluster.api.kube.paths import Target
from multicluster.api.kube.status import status_body
from multicluster.api.kube.tables import column_definitions
from multicluster.api.middleware import STREAMING
from multicluster.api.params import bool_param, int_param
from multicluster.api.routes import STREAM_PAGE
from multicluster.errors import QueryError
from multicluster.feed import positions
from multicluster.feed.hub import Closed, Subscription
from multicluster.feed.match import Filter
from multicluster.store.base import Change, Query, Requirement, Store, StoredObject

BOOKMARK_SECONDS = 60.0
LOG_PAGE = 500
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


class Expired(Exception):
    """The position asked for is older than the log keeps (or was not issued by this store)."""


def _options(request: web.Request) -> tuple[str, bool | None, bool, float]:
    """resourceVersion, sendInitialEvents, allowWatchBookmarks, timeout; Kubernetes' checks of their mix."""
    q = request.query
    rv = q.get("resourceVersion") or ""
    send: bool | None = None if "sendInitialEvents" not in q else bool_param(q, "sendInitialEvents")
    bookmarks = bool_param(q, "allowWatchBookmarks")
    match = q.get("resourceVersionMatch") or ""
    if send is not None:
        if match != "NotOlderThan":
            raise QueryError("sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                             hint="add resourceVersionMatch=NotOlderThan")
        if send and not bookmarks:
            raise QueryError("sendInitialEvents requires setting allowWatchBookmarks to true",
                             hint="add allowWatchBookmarks=true")
    elif match:
        raise QueryError("resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                         hint="drop resourceVersionMatch, or add sendInitialEvents")
    seconds = int_param(q, "timeoutSeconds", 0, minimum=0)
    # Without timeoutSeconds kube-apiserver ends a watch after a random 30 to 60 minutes, so that many clients
    # do not come back at the same moment.
    timeout = float(seconds) if seconds else 1800.0 * (1 + random.random())
    return rv, send, bookmarks, timeout


class _Stream:
    """One watch: its positions, its subscription, and the response it writes events to."""

    def __init__(self, query: Query, store: Store, res: KubeResource, render: Renderer,
                 resp: web.StreamResponse, sub: Subscription, scope: tuple[str, ...]) -> None:
        self.query = query
        self.store = store
        self.res = res
        self.render = render
        self.resp = resp
        self.sub = sub
        self.scope = scope  # () = every cluster
        self.pos: dict[str, int] = {}
        self.columns_sent = False

    def token(self) -> str:
        return positions.encode(self.pos)

    def _table(self, rows: list[Any], rv: str) -> dict[str, Any]:
        table: dict[str, Any] = {"kind": "Table", "apiVersion": self.render.table, "metadata": {"resourceVersion": rv},
                                 "columnDefinitions": column_definitions(self.res), "rows": rows}
        return table

    def _object(self, stored: StoredObject, rv: str) -> Mapping[str, Any]:
        obj = self.render.obj(stored)
        md = obj.get("metadata")
        if isinstance(md, dict):
            md["resourceVersion"] = rv
        if not self.render.table:
            return obj
        # Ages count from now, not from when the watch started.
        return self._table([self.render.table_row(stored.cluster, obj, time.time())], rv)

    async def send(self, kind: str, obj: Mapping[str, Any]) -> None:
        await self.resp.write(orjson.dumps({"type": kind, "object": obj}) + b"\n")

    async def change(self, kind: str, c: Change) -> None:
        stored = StoredObject(cluster=c.cluster, gvr=c.gvr, namespace=c.namespace, name=c.name, uid="", kind="",
                              resource_version=c.resource_version, object=c.object, created_at="", updated_at="")
        self.pos[c.cluster] = c.seq
        await self.send(kind, self._object(stored, self.token()))

    async def bookmark(self, initial_end: bool = False) -> None:
        rv = self.token()
        md: dict[str, Any] = {"resourceVersion": rv}
        if initial_end:
            md["annotations"] = {INITIAL_EVENTS_END: "true"}
        if self.render.table:
            obj = self._table([], rv)
            obj["metadata"] = md
        else:
            obj = {"kind": self.res.res.kind, "apiVersion": self.res.gvr.api_version, "metadata": md}
        await self.send("BOOKMARK", obj)

    async def initial(self) -> None:
        """ADDED for every stored object in scope, page by page, at the positions read before the first page."""
        query = replace(self.query, limit=STREAM_PAGE, after=None)
        rv = self.token()
        while True:
            page = await self.store.query(query)
            for item in page.items:
                await self.send("ADDED", self._object(item, rv))
            if page.next_after is None:
                return
            query = replace(query, after=page.next_after)

    async def catch_up(self, start: Mapping[str, int], check: bool) -> None:
        """Every change after `start` from the log; afterwards self.pos holds, for every cluster in scope, a
        position up to which everything has been considered. `check`: a position older than the log is Expired."""
        logged = await self.store.log_positions()
        clusters = set(self.scope) if self.scope else set(logged) | set(start)
        for cluster in sorted(clusters):
            at = start.get(cluster, 0)
            p = logged.get(cluster)
            last = p.last if p is not None else 0
            floor = p.floor if p is not None else 0
            if check and at < floor:
                # kube-apiserver's words, so clients that look for them recognise the case.
                raise Expired(f"too old resource version: {at} ({floor + 1}) in cluster {cluster}")
            if check and at > last:
                raise Expired(f"resource version {at} of cluster {cluster} is newer than its change log ({last}): "
                              "the store was replaced; list again")
            self.pos[cluster] = at
            while True:
                page = await self.store.changes_after(cluster, self.pos[cluster], self.res.gvr, LOG_PAGE)
                for c in page:
                    kind = self.sub.filter.event(c) if self.sub.filter.routes(c) else None
                    if kind is None:
                        self.pos[cluster] = c.seq
                    else:
                        await self.change(kind, c)
                if len(page) < LOG_PAGE:
                    break
            # Everything of this cluster up to `last` was committed before the log was read: considered.
            self.pos[cluster] = max(self.pos[cluster], last)

    async def live(self, deadline: float, bookmarks: bool) -> None:
        """Hub events until the deadline; the ones the log already gave are dropped by position."""
        quiet_since = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= deadline:
                return
            wait = deadline - now
            if bookmarks:
                wait = min(wait, max(0.0, quiet_since + BOOKMARK_SECONDS - now))
            try:
                events = await self.sub.next(timeout=wait)
            except Closed:
                return
            sent = False
            for kind, c in events:
                if c.seq <= self.pos.get(c.cluster, 0):
                    continue
                await self.change(kind, c)
                sent = True
            if sent:
                quiet_since = time.monotonic()
            elif bookmarks and time.monotonic() - quiet_since >= BOOKMARK_SECONDS:
                await self.bookmark()
                quiet_since = time.monotonic()


async def watch_objects(request: web.Request, backend: ApiBackend, res: KubeResource, target: Target,
                        clusters: tuple[str, ...], grant: Grant | None = None) -> web.StreamResponse:
    """`grant`: where an authenticated Kubernetes user may watch (the clusters and namespaces the master's RBAC
    allows when the watch starts); None = no limit."""
    rv, send_initial, bookmarks, timeout = _options(request)
    # Selectors parsed as lists parse them; the initial events are a list limited the same way.
    query = build_query(request, res, clusters, target.namespace, grant)
    if grant is not None:
        clusters = grant.cluster_names()
    if target.name:  # a watch of one object: its list's watch, narrowed to the name
        query = replace(query, name=target.name,
                        fields=(*query.fields, Requirement("metadata.name", "=", (target.name,))))
    render = Renderer(request, res)
    start: dict[str, int] | None = None
    expired = ""
    if rv not in ("", "0") and send_initial is not True:
        try:
            start = positions.decode(rv)
        except positions.BadPosition:
            expired = f"resource version {rv[:80]} was not issued by this API: list again to get one"
    deadline = time.monotonic() + timeout
    flt = Filter(res.gvr, frozenset(clusters), target.namespace, query.labels, query.fields, query.allowed)
    sub = backend.hub.subscribe(flt)
    transport = request.transport
    if transport is not None:
        sub.on_end = lambda reason: transport.close() if reason == "too slow" else None
    try:
        headers = warnings(backend, res, clusters)
        headers["Content-Type"] = render.content_type
        resp = web.StreamResponse(headers=headers)
        await resp.prepare(request)
        request[STREAMING] = True
        stream = _Stream(query, backend.store, res, render, resp, sub, clusters)
        try:
            if expired:
                raise Expired(expired)
            if start is None:
                # From the current state: positions first, then the objects, then what changed meanwhile.
                logged = await backend.store.log_positions()
                start = {c: p.last for c, p in logged.items() if not clusters or c in clusters}
                stream.pos = dict(start)
                if send_initial is not False:
                    await stream.initial()
                await stream.catch_up(start, check=False)
                if send_initial:
                    await stream.bookmark(initial_end=True)
            else:
                await stream.catch_up(start, check=True)
            await stream.live(deadline, bookmarks)
        except Expired as exc:
            await stream.send("ERROR", status_body(410, str(exc)))
        except ConnectionResetError:
            return resp  # the client went away (or was dropped as too slow): the watch is over
        await resp.write_eof()
        return resp
    finally:
        sub.close()
