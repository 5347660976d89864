"""`watch` on every list path of the Kubernetes-compatible API: a stream of watch events, one JSON object a line.

Which events a watcher sees, and in what order, is feed.follow.Follower's business (the durable change log from
a resourceVersion, then the hub's live events, without gap or repeat); this module writes them as Kubernetes
watch lines. A live change is encoded once for all the watchers that share its format (feed.hub.Event.shared):
the line is kept in pieces around the place the resourceVersion goes, and each watcher joins them with its own.

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
import secrets
import time
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
from multicluster.feed.follow import Expired, Follower
from multicluster.feed.hub import Closed, Event
from multicluster.feed.match import Filter
from multicluster.store.base import Query, Requirement, StoredObject

BOOKMARK_SECONDS = 60.0
INITIAL_EVENTS_END = "k8s.io/initial-events-end"
# Where the resourceVersion goes in a shared encoding: random per process, so no stored object can hold it.
_RV_MARK = f"mc-rv-{secrets.token_hex(16)}"


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
    """One watch: its follower and the response it writes events to."""

    def __init__(self, query: Query, backend: ApiBackend, res: KubeResource, render: Renderer,
                 resp: web.StreamResponse, follower: Follower) -> None:
        self.query = query
        self.store = backend.store
        self.res = res
        self.render = render
        self.resp = resp
        self.follower = follower

    def _table(self, rows: list[Any], rv: str) -> dict[str, Any]:
        table: dict[str, Any] = {"kind": "Table", "apiVersion": self.render.table, "metadata": {"resourceVersion": rv},
                                 "columnDefinitions": column_definitions(self.res), "rows": rows}
        return table

    def _object(self, stored: StoredObject, rv: str, now: float) -> dict[str, Any]:
        obj = self.render.obj(stored)
        md = obj.get("metadata")
        if isinstance(md, dict):
            md["resourceVersion"] = rv
        if not self.render.table:
            return dict(obj)
        return self._table([self.render.table_row(stored.cluster, obj, now)], rv)

    async def send(self, kind: str, obj: Any) -> None:
        await self.resp.write(orjson.dumps({"type": kind, "object": obj}) + b"\n")

    def _pieces(self, ev: Event) -> tuple[bytes, ...]:
        """The event's line, split where the resourceVersion goes; made once per format and shared."""
        now = time.time()
        # A table row's ages count from now, to the second.
        key = ("kube", self.render.table, self.render.include, ev.kind, int(now) if self.render.table else 0)
        pieces = ev.shared.get(key)
        if pieces is None:
            c = ev.change
            stored = StoredObject(cluster=c.cluster, gvr=c.gvr, namespace=c.namespace, name=c.name, uid="", kind="",
                                  resource_version=c.resource_version, object=c.object, created_at="",
                                  updated_at="")
            line = orjson.dumps({"type": ev.kind, "object": self._object(stored, _RV_MARK, now)}) + b"\n"
            pieces = tuple(line.split(_RV_MARK.encode()))
            ev.shared[key] = pieces
        return pieces

    def line(self, ev: Event) -> bytes:
        """`ev` as this watcher sends it, with the resourceVersion just after it."""
        return self._line(ev, self.follower.sent(ev))

    def _line(self, ev: Event, token: bytes) -> bytes:
        return token.join(self._pieces(ev))

    async def bookmark(self, initial_end: bool = False) -> None:
        rv = self.follower.token()
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
        rv = self.follower.token()
        while True:
            page = await self.store.query(query)
            now = time.time()
            await self.resp.write(b"".join(orjson.dumps({"type": "ADDED", "object": self._object(item, rv, now)})
                                           + b"\n" for item in page.items))
            if page.next_after is None:
                return
            query = replace(query, after=page.next_after)

    async def catch_up(self) -> None:
        """Every change after the start positions, from the log (Expired when they are older than it keeps)."""
        buf: list[bytes] = []
        async for ev in self.follower.catch_up():
            buf.append(self.line(ev))
            if len(buf) >= 100:
                await self.resp.write(b"".join(buf))
                buf.clear()
        if buf:
            await self.resp.write(b"".join(buf))

    async def live(self, deadline: float, bookmarks: bool) -> None:
        """The hub's events until the deadline, with a BOOKMARK after BOOKMARK_SECONDS of quiet when asked."""
        quiet_since = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= deadline:
                return
            wait = deadline - now
            if bookmarks:
                wait = min(wait, max(0.0, quiet_since + BOOKMARK_SECONDS - now))
            try:
                events = await self.follower.live(wait)
            except Closed:
                return
            if events:
                # A table's ages count to the second: its batches are shared within one.
                fmt = ("kube", self.render.table, self.render.include, int(time.time()) if self.render.table else 0)
                await self.resp.write(self.follower.encode(events, fmt, self._line))
                quiet_since = time.monotonic()
            elif bookmarks and time.monotonic() - quiet_since >= BOOKMARK_SECONDS:
                await self.bookmark()
                quiet_since = time.monotonic()


async def _events(stream: _Stream, follower: Follower, rv: str, send_initial: bool | None, deadline: float,
                  bookmarks: bool) -> None:
    if rv in ("", "0") or send_initial is True:
        # From the current state: positions first, then the objects, then what changed meanwhile.
        await follower.now()
        if send_initial is not False:
            await stream.initial()
        await stream.catch_up()
        if send_initial:
            await stream.bookmark(initial_end=True)
    else:
        try:
            follower.since(rv)
        except positions.BadPosition:
            raise Expired(f"resource version {rv[:80]} was not issued by this API: list again to get one") from None
        await stream.catch_up()
    await stream.live(deadline, bookmarks)


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
    deadline = time.monotonic() + timeout
    flt = Filter(res.gvr, frozenset(clusters), target.namespace, query.labels, query.fields, query.allowed)
    follower = Follower(backend.store, backend.hub, flt)
    transport = request.transport
    if transport is not None:
        follower.sub.on_end = lambda reason: transport.close() if reason == "too slow" else None
    try:
        headers = warnings(backend, res, clusters)
        headers["Content-Type"] = render.content_type
        resp = web.StreamResponse(headers=headers)
        await resp.prepare(request)
        request[STREAMING] = True
        stream = _Stream(query, backend, res, render, resp, follower)
        try:
            try:
                await _events(stream, follower, rv, send_initial, deadline, bookmarks)
            except Expired as exc:
                await stream.send("ERROR", status_body(410, str(exc)))
            await resp.write_eof()
        except ConnectionResetError:
            pass  # the client went away (or was dropped as too slow): the watch is over
        return resp
    finally:
        follower.close()
