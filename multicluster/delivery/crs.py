"""The MultiClusterResources as the master holds them: their type, the newest object per key, and our writes.

Informer events and the responses to our own finalizer/status patches race; `remember` keeps whichever is newer
(by resourceVersion, or a new uid after delete and re-create), so a reconcile never works from an older object
than one it has already seen, and the echo of our own patch is recognised (not newer) and not requeued.
Only the master is read or written here: CRs in other clusters are never looked at.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from multicluster import crds
from multicluster.errors import ClusterError, KubeAPIError, NotFound
from multicluster.gvr import APIResource
from multicluster.kube import MERGE_PATCH, ClusterClient
from multicluster.logsetup import cluster_logger
from multicluster.retry import RetryPolicy

from .model import CRKey
from .types import MCR, MCRStatus

log = logging.getLogger(__name__)


class MasterCRs:
    def __init__(self, master: ClusterClient, master_name: str, retry: RetryPolicy) -> None:
        self.retry = retry  # the config's retry.masterTypes, while the type is not served
        self.master = master
        self.master_name = master_name
        self.resource: APIResource | None = None  # set by discover(); writes need it
        self._crs: dict[CRKey, MCR] = {}

    async def discover(self) -> APIResource:
        """Wait until the master serves the MultiClusterResource type (its CRD may be installed just now)."""
        crd = crds.multiclusterresource()
        attempt = 0
        while True:
            try:
                for r in await self.master.discover(refresh=True):
                    if r.gvr.group == crds.GROUP and r.gvr.version == crds.VERSION and r.gvr.resource == crd.plural:
                        self.resource = r
                        return r
                problem = "not served yet"
            except (ClusterError, KubeAPIError) as exc:
                problem = str(exc)
            if attempt % 10 == 0:
                cluster_logger(log, self.master_name).warning("master cluster: %s %s; waiting", crd.name, problem)
            await asyncio.sleep(self.retry.delay(attempt))
            attempt += 1

    # ------------------------------------------------------------------------------------------ cache

    def get(self, key: CRKey) -> MCR | None:
        return self._crs.get(key)

    def snapshot(self) -> list[CRKey]:
        """The keys held now (safe to iterate while the cache changes)."""
        return list(self._crs)

    def drop(self, key: CRKey) -> None:
        self._crs.pop(key, None)

    def remember(self, raw: dict[str, Any]) -> tuple[CRKey, bool]:
        """Keep the newest version of a CR. Returns the key and whether `raw` is newer than what we held."""
        obj = cast(MCR, raw)  # the master's schema for the type; readers still check each field's type
        md = obj.get("metadata") or {}
        key = (str(md.get("namespace") or ""), str(md.get("name") or ""))
        old = self._crs.get(key)
        newer = old is None or _rv(old) < _rv(obj) or (old.get("metadata") or {}).get("uid") != md.get("uid")
        if newer:
            self._crs[key] = obj
        return key, newer

    # ------------------------------------------------------------------------------------------ writes

    def _path(self, cr: MCR) -> str:
        assert self.resource is not None
        md = cr.get("metadata") or {}
        return self.resource.gvr.path(str(md.get("namespace") or ""), str(md.get("name") or ""))

    async def set_finalizers(self, cr: MCR, finalizers: list[str]) -> MCR | None:
        """The CR as updated, or None when it is gone."""
        # resourceVersion makes this an optimistic-concurrency write: a stale cache fails with 409 and retries.
        rv = (cr.get("metadata") or {}).get("resourceVersion")
        body = {"metadata": {"finalizers": finalizers, "resourceVersion": rv}}
        try:
            updated = await self.master.request("PATCH", self._path(cr), body=body, content_type=MERGE_PATCH)
        except NotFound:
            return None
        self.remember(updated)
        return cast(MCR, updated)

    async def write_status(self, cr: MCR, status: MCRStatus) -> None:
        try:
            updated = await self.master.request("PATCH", self._path(cr) + "/status", body={"status": status},
                                                content_type=MERGE_PATCH)
        except NotFound:
            return
        self.remember(updated)


def _rv(obj: MCR) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0
