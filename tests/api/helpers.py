"""Small helpers shared by the API tests."""

from __future__ import annotations

import copy
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp.test_utils import TestClient

from multicluster.api import ClusterView
from multicluster.feed.hub import Hub
from multicluster.gvr import GVR, APIResource, resolve
from multicluster.store import Row, Store
from multicluster.sync import to_row
from tests.api.dataset import Dataset


@dataclass
class Backend:
    """The test ApiBackend: what the daemon provides, minus the daemon."""

    store: Store
    resources: list[APIResource]
    views: list[ClusterView] = field(default_factory=list)
    token: str | None = None
    is_ready: bool = True
    hub: Hub = field(default_factory=Hub)

    def resolve(self, spelling: str) -> APIResource:
        return resolve(spelling, self.resources)

    def clusters(self) -> list[ClusterView]:
        return list(self.views)

    def ready(self) -> bool:
        return self.is_ready


def fresh_views(ds: Dataset, now: float | None = None) -> list[ClusterView]:
    now = time.time() if now is None else now
    return [
        ClusterView(name=c, is_master=c == "cluster1", host=f"https://127.0.0.1:{6440 + i}", reachable=True,
                    ready=True, last_sync=now, syncs=ds.sync_states(c, now), version="v1.37.2",
                    platform="linux/amd64")
        for i, c in enumerate(ds.clusters)
    ]


Params = list[tuple[str, str]] | dict[str, str]


async def get_json(client: TestClient, path: str, params: Params | None = None,  # type: ignore[type-arg]
                   status: int = 200, **kw: Any) -> Any:
    r = await client.get(path, params=params, **kw)
    body = await r.read()
    assert r.status == status, (r.status, body[:500])
    assert r.content_type == "application/json", r.content_type
    return orjson.loads(body)


def keys(items: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(i["cluster"], i["object"]["metadata"].get("namespace", ""), i["object"]["metadata"]["name"])
            for i in items]


async def walk(client: TestClient, params: list[tuple[str, str]], limit: int) -> tuple[list[dict[str, Any]], int]:  # type: ignore[type-arg]
    """Every item of a /v1/resources walk and the number of pages."""
    items: list[dict[str, Any]] = []
    token: str | None = None
    pages = 0
    while True:
        p = [*params, ("limit", str(limit))] + ([("continue", token)] if token else [])
        body = await get_json(client, "/v1/resources", p)
        pages += 1
        assert len(body["items"]) <= limit
        items += body["items"]
        token = body["continue"]
        if token is None:
            return items, pages
        assert pages < 10_000


def clone(obj: dict[str, Any], cluster: str, gvr: GVR, namespace: str, name: str, rv: int,
          created: str | None = None) -> Row:
    """A new row derived from a real object: same shape, new identity."""
    o = copy.deepcopy(obj)
    md = o["metadata"]
    md.update(name=name, namespace=namespace, uid=str(uuid.uuid4()), resourceVersion=str(rv))
    if created:
        md["creationTimestamp"] = created
    return to_row(cluster, gvr, o, rv)
