"""Kubernetes Events (core/v1) on MultiClusterResources, so `kubectl describe rr X` shows why delivery failed.

A failing CR is retried with backoff and would otherwise post the same Warning on every attempt. Like client-go's
event correlator, an identical event (same object, type, reason, message) within `window` seconds bumps the count
of the existing Event instead of creating a new one, and at most once per `min_interval` seconds. Recording is
best effort and off the reconcile path: `record()` only queues (bounded; overflow is dropped and logged), and
`run()` — a supervised task — posts. A failure to post is logged and never fails a reconcile.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from multicluster.errors import ClusterError, KubeAPIError, NotFound
from multicluster.kube import MERGE_PATCH, ClusterClient

from .status import now_rfc3339

log = logging.getLogger(__name__)

NORMAL, WARNING = "Normal", "Warning"


@dataclass(slots=True)
class _Seen:
    name: str
    namespace: str
    count: int
    first: float
    last_sent: float


class EventRecorder:
    def __init__(self, client: ClusterClient, *, component: str = "multicluster", window: float = 600.0,
                 min_interval: float = 30.0, maxsize: int = 2000) -> None:
        self.client = client
        self.component = component
        self.window = window
        self.min_interval = min_interval
        self.instance = f"{socket.gethostname()}-{os.getpid()}"
        self._seen: dict[tuple[str, str, str, str], _Seen] = {}
        self._queue: asyncio.Queue[tuple[dict[str, Any], str, str, str]] = asyncio.Queue(maxsize)
        self.dropped = 0

    def record(self, obj: Mapping[str, Any], etype: str, reason: str, message: str) -> None:
        """Queue an Event for `run()` to post; never blocks."""
        md = obj.get("metadata") or {}
        ref = {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
               "metadata": {k: md.get(k) for k in ("name", "namespace", "uid", "resourceVersion")}}
        try:
            self._queue.put_nowait((ref, etype, reason, message))
        except asyncio.QueueFull:
            self.dropped += 1
            log.debug("event queue full; dropped %s %s: %s", etype, reason, message)

    async def run(self) -> None:
        while True:
            obj, etype, reason, message = await self._queue.get()
            await self.emit(obj, etype, reason, message)

    async def emit(self, obj: dict[str, Any], etype: str, reason: str, message: str) -> None:
        md = obj.get("metadata") or {}
        ns, name, uid = str(md.get("namespace") or "default"), str(md.get("name") or ""), str(md.get("uid") or "")
        message = message[:1024]
        key = (uid, etype, reason, message)
        now = time.monotonic()
        self._prune(now)
        seen = self._seen.get(key)
        try:
            if seen is not None and now - seen.first < self.window:
                seen.count += 1
                if now - seen.last_sent < self.min_interval:
                    return
                try:
                    await self.client.request(
                        "PATCH", f"/api/v1/namespaces/{seen.namespace}/events/{seen.name}",
                        body={"count": seen.count, "lastTimestamp": now_rfc3339()}, content_type=MERGE_PATCH)
                    seen.last_sent = now
                    return
                except NotFound:
                    pass  # expired (events have a TTL): post a new one
            ts = now_rfc3339()
            ev_name = f"{name[:230]}.{secrets.token_hex(8)}"
            body = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": ev_name, "namespace": ns},
                "involvedObject": {
                    "apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "name": name, "namespace": ns,
                    "uid": uid, "resourceVersion": md.get("resourceVersion"),
                },
                "reason": reason,
                "message": message,
                "type": etype,
                "source": {"component": self.component},
                "reportingComponent": self.component,
                "reportingInstance": self.instance[:128],
                "firstTimestamp": ts,
                "lastTimestamp": ts,
                "count": 1,
            }
            await self.client.request("POST", f"/api/v1/namespaces/{ns}/events", body=body)
            self._seen[key] = _Seen(ev_name, ns, 1, now, now)
        except (KubeAPIError, ClusterError) as exc:
            log.warning("could not record event %s/%s %s %s: %s", ns, name, etype, reason, exc)

    def _prune(self, now: float) -> None:
        if len(self._seen) < 2048:
            return
        for k in [k for k, v in self._seen.items() if now - v.first >= self.window]:
            del self._seen[k]
