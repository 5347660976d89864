"""`GET /v1/resources?watch=true`: the list's objects, then their changes, as Server-Sent Events.

Parameters and filters are the list's (gvr, cluster, namespace, name, namePrefix, nameContains, labelSelector,
fieldSelector), parsed by the same code, so a bad one is a JSON `{error, hint}` 400 before the stream starts.
Each change is one event:

    id: <resourceVersion after this event: opaque, a change log position per cluster>
    event: ADDED | MODIFIED | DELETED
    data: {"cluster": "...", "object": {...}}          (an item exactly as the list returns it)

- Without a position: ADDED for every object the list would return (read from the store page by page; these
  carry no `id:`, since resuming from the middle of them would skip the rest), then one `event: SYNCED` whose id
  is the position the live events start from and whose data holds that resourceVersion and the clusters'
  freshness block, then the live events. An object that changes while the initial events are read may come
  once more as MODIFIED with the state already sent; nothing is missed.
- With a position (the `Last-Event-ID` header that EventSource sends when it reconnects, or the
  `resourceVersion` / `since` parameter for curl): every change after it, then live ones, with no gap and no
  repeat. A position older than the log keeps (store.changeRetention) gets `event: error` with a 410-like body
  (`{"error", "hint", "code": 410, "reason": "Expired"}`) and the stream ends: start again without a position.
- A comment (`: ping`) every heartbeat seconds without events keeps proxies from closing an idle stream.
- Each watcher has a bounded queue (the hub's); a watcher that does not read fast enough is sent
  `event: error` with reason "TooSlow" (if its connection takes it within ERROR_WRITE_SECONDS) and closed. It
  reconnects from its last id.
- The stream ends with `event: error` reason "Closed" when the daemon shuts down or this replica's view of a
  cluster had a gap; reconnecting with the last id resumes from the durable log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace

import orjson
from aiohttp import web

from multicluster.api.backend import freshness
from multicluster.api.middleware import BACKEND, STREAMING
from multicluster.errors import QueryError
from multicluster.feed import positions
from multicluster.feed.follow import Expired, Follower
from multicluster.feed.hub import Closed, Event
from multicluster.feed.match import Filter
from multicluster.store.base import Change, Query

CONTENT_TYPE = "text/event-stream"
ERROR_WRITE_SECONDS = 2.0  # how long a closed watcher's final error event may take to leave


@dataclass(frozen=True, slots=True)
class WatchSettings:
    heartbeat_seconds: float = 15.0
    queue: int | None = None  # events a watcher may have waiting; None = the hub's default
    error_write_seconds: float = ERROR_WRITE_SECONDS


WATCH: web.AppKey[WatchSettings] = web.AppKey("watch", WatchSettings)


def _also(query: Query) -> Callable[[Change], bool] | None:
    """What the hub's filter does not say about a change's identity: several namespaces, names, and the clusters
    and namespaces the user may read."""
    namespaces = frozenset(query.namespaces) if len(query.namespaces) > 1 else None
    name, prefix, contains = query.name, query.name_prefix, query.name_contains
    # What the request's user may read (api.auth), decided when the watch starts, as kube-apiserver decides it.
    allowed = None if query.allowed is None else \
        {c: None if ns is None else frozenset(ns) for c, ns in query.allowed}
    if namespaces is None and allowed is None and not (name or prefix or contains):
        return None

    def test(c: Change) -> bool:
        if allowed is not None:
            if c.cluster not in allowed:
                return False
            scope = allowed[c.cluster]
            if scope is not None and c.namespace not in scope:
                return False
        return ((namespaces is None or c.namespace in namespaces) and (name is None or c.name == name)
                and (not prefix or c.name.startswith(prefix)) and (not contains or contains in c.name))
    return test


def _data(payload: bytes) -> bytes:
    # A data field ends at a line break: a payload holding one (stored JSON is compact, but nothing promises it)
    # goes out as several data lines, which the client joins back with "\n".
    if b"\n" in payload or b"\r" in payload:
        lines = payload.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        return b"".join(b"data: " + line + b"\n" for line in lines)
    return b"data: " + payload + b"\n"


def item(cluster: str, obj: bytes) -> bytes:
    return b'{"cluster":' + orjson.dumps(cluster) + b',"object":' + obj + b"}"


def event(kind: str, payload: bytes, ident: str | None = None) -> bytes:
    head = b"id: " + ident.encode("ascii") + b"\n" if ident is not None else b""
    return head + b"event: " + kind.encode("ascii") + b"\n" + _data(payload) + b"\n"


def _shared_event(ev: Event, ident: bytes) -> bytes:
    """`ev` with its id: the rest is the same for every watcher, so the first to send it encodes it for all."""
    key = ("sse", ev.kind)
    body = ev.shared.get(key)
    if body is None:
        body = ev.shared[key] = (event(ev.kind, item(ev.change.cluster, ev.change.object)),)
    return b"id: " + ident + b"\n" + body[0]


def error_event(reason: str, code: int, error: str, hint: str) -> bytes:
    return event("error", orjson.dumps({"error": error, "hint": hint, "code": code, "reason": reason}))


def start_position(request: web.Request) -> str | None:
    """Where the client resumes: Last-Event-ID, else resourceVersion or since; None = from the current state."""
    for source, raw in (("header Last-Event-ID", request.headers.get("Last-Event-ID")),
                        ("parameter resourceVersion", request.query.get("resourceVersion")),
                        ("parameter since", request.query.get("since"))):
        raw = (raw or "").strip()
        if raw in ("", "0"):
            continue
        try:
            positions.decode(raw)
        except positions.BadPosition:
            raise QueryError(f'{source}: "{raw[:80]}" is not a position this API issued',
                             hint="pass the id of the last event received, unchanged, or leave it out to start from "
                             "the current state") from None
        return raw
    return None


async def watch(request: web.Request, query: Query) -> web.StreamResponse:
    """The stream for a validated list query (routes.list_resources hands over when watch=true)."""
    backend = request.app[BACKEND]
    settings = request.app.get(WATCH, WatchSettings())
    if request.query.get("continue"):
        raise QueryError("parameter continue cannot be combined with watch=true",
                         hint="a watch starts from the current state or from a position (Last-Event-ID); drop continue")
    since = start_position(request)
    ns = query.namespaces[0] if len(query.namespaces) == 1 else ""
    flt = Filter(query.gvr, frozenset(query.clusters), ns, query.labels, query.fields)
    follower = Follower(backend.store, backend.hub, flt, limit=settings.queue, also=_also(query))
    task = asyncio.current_task()

    def ended(reason: str) -> None:
        # The handler may be blocked writing to a client that does not read: wake it.
        if reason == "too slow" and task is not None and not task.done():
            task.cancel("too slow")

    follower.sub.on_end = ended
    try:
        if since is not None:
            follower.since(since)
        else:
            await follower.now()
        resp = web.StreamResponse(headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        resp.content_type = CONTENT_TYPE
        await resp.prepare(request)
        request[STREAMING] = True
        try:
            await _stream(request, resp, follower, query, since is None, settings)
        except asyncio.CancelledError:
            if follower.sub.closed != "too slow" or task is None:
                raise
            task.uncancel()
            await _too_slow(request, resp, settings.error_write_seconds)
        except ConnectionResetError:
            pass  # the client went away: an ordinary end of a watch, nobody left to tell
        return resp
    finally:
        follower.close()


async def _too_slow(request: web.Request, resp: web.StreamResponse, seconds: float) -> None:
    await _last_words(request, resp, seconds, error_event(
        "TooSlow", 429, "this watch was closed: it did not read its events fast enough",
        "reconnect with the id of the last event received (EventSource does it by itself)"))


async def _last_words(request: web.Request, resp: web.StreamResponse, seconds: float, body: bytes) -> None:
    try:
        await asyncio.wait_for(resp.write(body), seconds)
        await asyncio.wait_for(resp.write_eof(), seconds)
    except (TimeoutError, ConnectionError):
        if request.transport is not None:
            request.transport.abort()


async def _stream(request: web.Request, resp: web.StreamResponse, follower: Follower, query: Query,
                  initial: bool, settings: WatchSettings) -> None:
    store = request.app[BACKEND].store
    if initial:
        page_query = replace(query, limit=500, after=None, count_remaining=False)
        while True:
            page = await store.query(page_query)
            await resp.write(b"".join(event("ADDED", item(o.cluster, o.object)) for o in page.items))
            if page.next_after is None:
                break
            page_query = replace(page_query, after=page.next_after)
    try:
        buf: list[bytes] = []
        async for ev in follower.catch_up():
            buf.append(_shared_event(ev, follower.sent(ev)))
            if len(buf) >= 100:
                await resp.write(b"".join(buf))
                buf.clear()
        if buf:
            await resp.write(b"".join(buf))
    except Expired as exc:
        await _last_words(request, resp, settings.error_write_seconds, error_event(
            "Expired", 410, str(exc), "start again without Last-Event-ID (or resourceVersion): the current state "
            "comes first, then the changes"))
        return
    if initial:
        block = freshness(request.app[BACKEND].clusters(), query.gvr, query.clusters)
        token = follower.token()
        await resp.write(event("SYNCED", orjson.dumps({"resourceVersion": token, "clusters": block}), token))
    while True:
        try:
            events = await follower.live(settings.heartbeat_seconds)
        except Closed as exc:
            if exc.reason == "too slow":
                await _too_slow(request, resp, settings.error_write_seconds)
                return
            await _last_words(request, resp, settings.error_write_seconds, error_event(
                "Closed", 503, f"this watch was closed ({exc.reason})",
                "reconnect with the id of the last event received: it resumes from there"))
            return
        if not events:
            await resp.write(b": ping\n\n")
            continue
        await resp.write(follower.encode(events, "sse", _shared_event))
