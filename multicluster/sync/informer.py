"""List → watch → resync for one (cluster, resource type), without caching objects.

The only per-object state is `index`: (namespace, name) → integer resourceVersion. It lets a relist hand on only
objects whose RV changed (so a restart rewrites nothing), and lets a relist find objects that vanished while we
were not watching (mark and sweep: in the index, not in the list → deleted).

Kubernetes semantics handled here:
- pages: `limit` + `continue`; all pages of one list are one snapshot; an expired continue token (410) restarts it;
- the watch starts at the list's resourceVersion with `allowWatchBookmarks=true`, so quiet resources still move
  their RV forward and a reconnect does not fall behind the compaction window;
- `410 Gone` (HTTP status or an ERROR event with code 410, "too old resource version") means our RV was
  compacted away: relist;
- the server ends every watch after `timeoutSeconds`; we resume from the last RV seen (bookmark or event);
- connection errors, 5xx and 429 back off exponentially with jitter, honouring Retry-After;
- a periodic relist (resync) is the safety net against anything missed.

Objects over `max_object_bytes` are skipped (a stored older version is deleted, so queries never serve it as
current), counted, and reported to the sink with the reason; a list page over the client's byte limit is asked
again in smaller pages (a page size is only a hint to the server, and the continue token stays valid).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from multicluster import metrics, wire
from multicluster.config import RetryConfig, SyncConfig
from multicluster.errors import ClusterError, Forbidden, Gone, KubeAPIError, NotFound, kube_error
from multicluster.gvr import APIResource
from multicluster.kube import ClusterClient, TooLarge
from multicluster.logsetup import cluster_logger
from multicluster.retry import RetryPolicy

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)


class Sink(Protocol):
    """Where an informer hands changes. Every method may block (backpressure)."""

    async def upsert(self, obj: wire.WireObject, rv: int) -> None: ...

    async def delete(self, namespace: str, name: str, rv: int) -> None: ...

    async def listed(self, rv: int, count: int, seconds: float, reason: str) -> None:
        """A full list finished (initial, after 410, or resync)."""

    async def failed(self, error: str, *, cluster_fault: bool = True) -> None:
        """The informer cannot make progress right now: the cluster is down (`cluster_fault`), or only this type
        fails (forbidden by RBAC, gone, an aggregated API answering 5xx)."""

    # Optional: `skipped(count, reason)` — how many objects of the type are skipped right now, and why the
    # latest one was (too large, resourceVersion or name no store can hold). Called when the count changes.


MAX_RV = 2**63 - 1  # the stores keep resourceVersions in a signed 64-bit column; etcd revisions fit


def rv_int(rv: Any) -> int:
    try:
        return int(rv)
    except (TypeError, ValueError):
        return 0


def parse_rv(rv: str) -> int | None:
    """The integer a store keeps for a resourceVersion string; None when no store column can hold it. Empty is 0:
    some aggregated API servers serve objects without one."""
    if not rv:
        return 0
    if not rv.isdigit() or len(rv) > 19:
        return None
    n = int(rv)
    return n if n <= MAX_RV else None


_DEFAULTS = SyncConfig()
_RETRY = RetryConfig()


@dataclass
class InformerOptions:
    page_size: int = 500
    watch_timeout: int = 300
    resync_seconds: float = 600.0
    backoff: RetryPolicy = _RETRY.watch
    namespace: str | None = None
    label_selector: str | None = None
    # Hand every listed object to the sink on a relist, even unchanged ones (controllers want periodic resync).
    emit_unchanged: bool = False
    max_object_bytes: int = _DEFAULTS.max_object_bytes
    list_timeout: float = _DEFAULTS.list_timeout_seconds


class Informer:
    def __init__(
        self,
        client: ClusterClient,
        resource: APIResource,
        sink: Sink,
        *,
        index: dict[Key, int] | None = None,
        options: InformerOptions | None = None,
    ) -> None:
        self.client = client
        self.resource = resource
        self.sink = sink
        self.index: dict[Key, int] = index if index is not None else {}
        self.opts = options or InformerOptions()
        self.rv = ""
        self.synced = asyncio.Event()
        self.last_list = 0.0
        self.log = cluster_logger(log, client.name, resource.gvr)
        self.rejected = 0  # objects skipped because no store could hold them (see _reject)
        self.skipped: dict[Key, str] = {}  # objects skipped right now, with the reason
        self._reported = 0  # len(skipped) the sink last heard of
        self._page_size = self.opts.page_size
        self.denied = False  # the last list was refused with 403/404: settled, as far as readiness goes
        self._gvr = str(resource.gvr)

    # ------------------------------------------------------------------ loop

    async def run(self) -> None:
        attempt = 0
        need_list, reason = True, "initial"
        while True:
            try:
                if need_list:
                    await self._list(reason)
                    need_list = False
                await self._watch()
                attempt = 0
                if self.opts.resync_seconds and time.monotonic() - self.last_list >= self.opts.resync_seconds:
                    need_list, reason = True, "resync"
            except Gone:
                self.log.info("resourceVersion %s is too old (410 Gone); relisting", self.rv)
                metrics.WATCH_RESTARTS.labels(self.client.name, self._gvr, "gone").inc()
                need_list, reason = True, "gone"
            except (NotFound, Forbidden) as exc:
                # The type vanished (CRD deleted) or RBAC does not grant it: nothing to do until rediscovery or an
                # RBAC fix. The rest of the cluster is fine, and this type no longer holds readiness back.
                self.denied = True
                await self.sink.failed(str(exc), cluster_fault=False)
                delay = self.opts.backoff.delay(attempt + 3)
                attempt += 1
                self.log.warning("%s; retrying in %.0fs", exc, delay)
                need_list, reason = True, "error"
                await asyncio.sleep(delay)
            except (ClusterError, KubeAPIError) as exc:
                retry_after = exc.retry_after if isinstance(exc, KubeAPIError) else None
                delay = self.opts.backoff.delay(attempt, retry_after)
                attempt += 1
                metrics.WATCH_RESTARTS.labels(self.client.name, self._gvr, "error").inc()
                if attempt <= 1:
                    self.log.warning("%s; retrying in %.1fs", exc, delay)
                else:
                    self.log.debug("%s; retrying in %.1fs", exc, delay)
                # A response over a byte limit is this type's fault; the cluster answers the rest.
                await self.sink.failed(str(exc), cluster_fault=isinstance(exc, ClusterError)
                                       and not isinstance(exc, TooLarge))
                await asyncio.sleep(delay)
                # Without an RV we never listed successfully; with one, resume the watch from it.
                if not self.rv:
                    need_list = True

    # ------------------------------------------------------------------ list

    async def _list(self, reason: str) -> None:
        t0 = time.monotonic()
        gvr = self.resource.gvr
        path = gvr.path(self.opts.namespace)
        seen: set[Key] = set()
        cont: str | None = None
        list_rv = ""
        count = 0
        changed = 0
        last_progress = t0
        metrics.RELISTS.labels(self.client.name, self._gvr, reason).inc()
        self._page_size = self.opts.page_size
        skipped: dict[Key, str] = {}
        # The next page is requested as soon as this one's continue token is known, so the API server produces
        # it while this one is being stored (one page ahead, so memory stays at two pages per list).
        ahead: asyncio.Task[bytes] | None = None
        try:
            while True:
                try:
                    raw = await (ahead or self._page(path, cont))
                except Gone:
                    # The continue token expired mid-list: start over with a fresh snapshot.
                    self.log.info("list continue token expired; restarting the list")
                    ahead = None
                    seen.clear()
                    skipped.clear()
                    cont, count = None, 0
                    continue
                ahead = None
                try:
                    page = wire.decode_list(raw)
                except ValueError as exc:  # orjson's errors are ValueErrors too
                    raise ClusterError(self.client.name, f"unreadable list of {gvr}: {exc}") from exc
                list_rv = page.resource_version or list_rv
                cont = page.cont or None
                if cont:
                    ahead = asyncio.ensure_future(self._page(path, cont))
                n = await self._hand_on(page.items, seen, skipped)
                count += len(page.items)
                changed += n
                if time.monotonic() - last_progress > 5:
                    self.log.info("listing... %s objects so far", f"{count:,}")
                    last_progress = time.monotonic()
                if not cont:
                    break
        finally:
            if ahead is not None:
                ahead.cancel()
                ahead.add_done_callback(lambda t: t.cancelled() or t.exception())
        self.skipped = skipped
        await self._report_skipped()
        gone = [k for k in self.index if k not in seen]
        list_rv_int = rv_int(list_rv)
        for ns, name in gone:
            del self.index[(ns, name)]
            await self.sink.delete(ns, name, list_rv_int)
        self.rv = list_rv
        self.denied = False
        self.last_list = time.monotonic()
        secs = self.last_list - t0
        await self.sink.listed(list_rv_int, count, secs, reason)
        self.synced.set()
        # Routine small lists are debug noise; big, slow or recovery lists are what a person wants to see.
        level = logging.INFO if (count >= 1000 or secs > 2 or reason != "initial") else logging.DEBUG
        self.log.log(
            level,
            "listed %s in %.1f s (%s changed, %s deleted), watching from RV %s",
            f"{count:,}",
            secs,
            f"{changed:,}",
            f"{len(gone):,}",
            list_rv,
        )

    async def _page(self, path: str, cont: str | None) -> bytes:
        while True:
            params: dict[str, Any] = {"limit": self._page_size}
            if cont:
                params["continue"] = cont
            if self.opts.label_selector:
                params["labelSelector"] = self.opts.label_selector
            try:
                return await self.client.request_bytes("GET", path, params=params, timeout=self.opts.list_timeout)
            except TooLarge as exc:
                if self._page_size <= 1:
                    raise
                # Big objects: ask for the rest of this list in pages a tenth the size, down to one object.
                self._page_size = max(1, self._page_size // 10)
                self.log.warning("%s; listing in pages of %d", exc.message, self._page_size)

    async def _hand_on(self, items: list[bytes], seen: set[Key], skipped: dict[Key, str]) -> int:
        """Record every listed object in the index and hand the new or changed ones to the sink."""
        gvr, kind = self.resource.gvr, self.resource.kind
        # Optional: the whole page's changes in one call, each with whether the index had never seen it.
        many = getattr(self.sink, "upsert_many", None)
        out: list[tuple[wire.WireObject, int, bool]] = []
        changed = 0
        max_bytes = self.opts.max_object_bytes
        for i, item in enumerate(items):
            if i % 100 == 99:
                await asyncio.sleep(0)  # let the writer's completions in between long pages
            try:
                obj = wire.WireObject(item)
            except ValueError as exc:
                raise ClusterError(self.client.name, f"unreadable object in the list of {gvr}: {exc}") from exc
            key = (obj.namespace, obj.name)
            if len(item) > max_bytes:
                # Not in `seen`: a stored older version is deleted with the list's vanished objects.
                skipped[key] = self._too_large(obj.namespace, obj.name, len(item))
                continue
            parsed = parse_rv(obj.resource_version)
            if parsed is None or not obj.name:
                skipped[key] = self._reject(
                    obj.namespace, obj.name, f"resourceVersion {obj.resource_version[:40]!r} or name invalid")
                continue
            rv = parsed
            seen.add(key)
            known = self.index.get(key)
            if self.opts.emit_unchanged or known != rv:
                obj.set_type(gvr.api_version, kind)
                changed += 1
                if many is not None:
                    out.append((obj, rv, known is None))
                    continue  # indexed once handed on, below: the index must never run ahead of the store
                await self.sink.upsert(obj, rv)
            self.index[key] = rv
        if out and many is not None:
            await many(out)
            for obj, rv, _ in out:
                self.index[(obj.namespace, obj.name)] = rv
        return changed

    # ------------------------------------------------------------------ watch

    async def _watch(self) -> None:
        timeout = self.opts.watch_timeout
        if self.opts.resync_seconds:
            until_resync = self.opts.resync_seconds - (time.monotonic() - self.last_list)
            timeout = int(max(1, min(timeout, until_resync)))
        # Spread reconnects of many informers over time.
        timeout = max(1, int(timeout * random.uniform(0.9, 1.0)))
        params: dict[str, Any] = {
            "resourceVersion": self.rv,
            "allowWatchBookmarks": True,
            "timeoutSeconds": timeout,
        }
        if self.opts.label_selector:
            params["labelSelector"] = self.opts.label_selector
        path = self.resource.gvr.path(self.opts.namespace)
        lines = self.client.watch_lines(path, params, timeout=timeout + 10)
        try:
            max_bytes = self.opts.max_object_bytes
            async for line in lines:
                try:
                    # An event too large to store is skipped: only its name and type are decoded, never its body.
                    event = orjson.loads(line) if len(line) <= max_bytes else wire.event_head(line)
                except ValueError as exc:  # a line that is not JSON (orjson's errors are ValueErrors)
                    raise ClusterError(self.client.name, f"unreadable watch event of {self._gvr}: {exc}") from exc
                await self._event(event, len(line))
        finally:
            if isinstance(lines, AsyncGenerator):
                await lines.aclose()  # closes the HTTP response now, not when the generator is collected

    async def _event(self, event: Any, size: int = 0) -> None:
        """Apply one watch event; a member that sends something that is not a watch event is a cluster fault
        (relist with backoff, reported), never an exception out of the informer."""
        if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
            raise ClusterError(self.client.name, f"malformed watch event of {self._gvr}: not an object with an object")
        etype = event.get("type")
        obj = event["object"]
        md = obj.get("metadata") or {}
        if not isinstance(md, dict):
            raise ClusterError(self.client.name, f"malformed watch event of {self._gvr}: metadata is not an object")
        if etype == "ERROR":
            try:
                code = int(obj.get("code") or 500)
            except (TypeError, ValueError):
                code = 500
            raise kube_error(
                code,
                str(obj.get("message") or "watch error")[:500],
                reason=str(obj.get("reason") or "")[:100],
                cluster=self.client.name,
                body=obj,
            )
        if etype not in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"):
            raise ClusterError(self.client.name, f"malformed watch event of {self._gvr}: type {str(etype)[:40]!r}")
        rv_s = str(md.get("resourceVersion") or "")
        parsed = parse_rv(rv_s)
        if parsed is None:
            raise ClusterError(
                self.client.name, f"malformed watch event of {self._gvr}: resourceVersion {rv_s[:40]!r}"
            )
        if etype == "BOOKMARK":
            if rv_s:
                self.rv = rv_s
            return
        ns, name = md.get("namespace") or "", md.get("name") or ""
        if not isinstance(ns, str) or not isinstance(name, str) or not name:
            self._reject(str(ns)[:63], str(name)[:253], "namespace or name missing or not a string")
            return
        key, rv = (ns, name), parsed
        if etype != "DELETED" and size > self.opts.max_object_bytes:
            self.skipped[key] = self._too_large(ns, name, size)
            await self._report_skipped()
            if self.index.pop(key, None) is not None:
                await self.sink.delete(ns, name, rv)  # the stored version is not the object any more
        elif etype in ("ADDED", "MODIFIED"):
            if self.skipped.pop(key, None) is not None:
                await self._report_skipped()
            if self.index.get(key, -1) < rv:
                self.index[key] = rv
                await self.sink.upsert(wire.WireObject.from_dict(obj), rv)
        else:
            self.index.pop(key, None)
            if self.skipped.pop(key, None) is not None:
                await self._report_skipped()
            await self.sink.delete(key[0], key[1], rv)
        if rv_s:
            self.rv = rv_s

    def _reject(self, namespace: str, name: str, reason: str) -> str:
        """An object this informer cannot store: skipped, counted, logged (once per informer at warning level).
        Returns the reason, for `skipped`."""
        self.rejected += 1
        metrics.OBJECTS_REJECTED.labels(self.client.name, self._gvr).inc()
        level = logging.WARNING if self.rejected == 1 else logging.DEBUG
        self.log.log(level, "skipping %s/%s: %s", namespace[:63], name[:253], reason)
        return reason

    def _too_large(self, namespace: str, name: str, size: int) -> str:
        metrics.MEMBER_LIMITS.labels(self.client.name, "maxObjectBytes").inc()
        limit = self.opts.max_object_bytes
        return self._reject(namespace, name, f"{size:,} bytes, over sync.maxObjectBytes ({limit:,}): not stored")

    async def _report_skipped(self) -> None:
        if len(self.skipped) == self._reported:
            return
        self._reported = len(self.skipped)
        report = getattr(self.sink, "skipped", None)
        if report is not None:
            reason = next(reversed(self.skipped.values()), "")
            await report(self._reported, reason)


SinkFactory = Callable[[APIResource], Awaitable[Sink]]
