"""The Go original's routes: /v1/list and /v1/list_with_cluster, every spelling, its shapes and limit default."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from multicluster.api import build_app
from multicluster.errors import StoreError
from multicluster.store import Page, Query, Store
from tests.api.dataset import CMS, DEPLOYS, MCR, PODS, Dataset, expected
from tests.api.helpers import Backend, clone, fresh_views, get_json


def _newest_first(dataset: Dataset, gvr: Any) -> list[tuple[str, str, str]]:
    rows = [(o["metadata"]["creationTimestamp"], c, o["metadata"].get("namespace", ""), o["metadata"]["name"])
            for c, o in dataset.items(gvr)]
    return [r[1:] for r in sorted(rows, reverse=True)]


def _key(o: dict[str, Any], cluster: str) -> tuple[str, str, str]:
    return cluster, o["metadata"].get("namespace", ""), o["metadata"]["name"]


async def test_list_returns_raw_objects_newest_first_limit_10(client: TestClient, dataset: Dataset) -> None:
    r = await client.get("/v1/list", params={"gvr": "v1/pods"})
    assert r.status == 200 and r.content_type == "application/json"
    body = orjson.loads(await r.read())
    assert isinstance(body, list)
    assert len(body) == 10  # the seed's default limit
    assert all(o["kind"] == "Pod" for o in body)
    # /v1/list has no cluster in the items; the order still must be the full newest-first order.
    ref = _newest_first(dataset, PODS)[:10]
    assert [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in body] == [r[1:] for r in ref]


async def test_list_with_cluster_shape(client: TestClient, dataset: Dataset) -> None:
    body = await get_json(client, "/v1/list_with_cluster", {"gvr": "core/v1/pods", "limit": "0"})
    assert len(body) == 15
    for item in body:
        assert set(item) == {"Object", "clusterName"}  # capital O, as the Go original marshals it
        assert item["Object"]["kind"] == "Pod"
    assert [_key(i["Object"], i["clusterName"]) for i in body] == _newest_first(dataset, PODS)


@pytest.mark.parametrize(("gvr", "spellings"), [
    (PODS, ["v1/pods", "core/v1/pods", "pods", "po", "pod", "Pod", "v1.pods", "core.v1.pods", "pods.v1"]),
    (DEPLOYS, ["apps/v1/deployments", "apps.v1.deployments", "v1.apps.deployments", "deployments",
               "deploy", "deployments.apps", "deployments.v1.apps"]),
    (CMS, ["v1/configmaps", "core/v1/configmaps", "v1.configmaps", "core.v1.configmaps", "configmaps", "cm"]),
    (MCR, ["mulitcluster.practice.com/v1alpha1/multiclusterresources", "rr", "multiclusterresource"]),
])
async def test_every_spelling(client: TestClient, dataset: Dataset, gvr: Any, spellings: list[str]) -> None:
    want = _newest_first(dataset, gvr)
    for spelling in spellings:
        for route in ("/v1/list_with_cluster", "/v1/list"):
            body = await get_json(client, route, {"gvr": spelling, "limit": "0"})
            if route == "/v1/list":
                assert [(o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in body] == \
                    [w[1:] for w in want], spelling
            else:
                assert [_key(i["Object"], i["clusterName"]) for i in body] == want, spelling


async def test_seed_filters(client: TestClient, dataset: Dataset) -> None:
    a, b = dataset.namespaces
    cases: list[tuple[dict[str, str], dict[str, Any]]] = [
        ({"cluster": "cluster2"}, {"clusters": ["cluster2"]}),
        ({"namespace": b}, {"namespaces": [b]}),
        ({"name": "web-0"}, {"name": "web-0"}),
        ({"cluster": "cluster3", "namespace": a, "name": "web-1"},
         {"clusters": ["cluster3"], "namespaces": [a], "name": "web-1"}),
        ({"cluster": "", "namespace": "", "name": ""}, {}),  # empty = no filter, like the seed
        ({"cluster": "cluster9"}, {"clusters": ["cluster9"]}),
    ]
    for params, ref in cases:
        body = await get_json(client, "/v1/list_with_cluster", {"gvr": "pods", "limit": "0", **params})
        got = [_key(i["Object"], i["clusterName"]) for i in body]
        assert set(got) == expected(dataset, PODS, **ref) and len(got) == len(set(got)), params


async def test_seed_limit(client: TestClient) -> None:
    for limit, n in (("3", 3), ("0", 15), ("15", 15), ("100", 15), ("1", 1)):
        body = await get_json(client, "/v1/list", {"gvr": "pods", "limit": limit})
        assert len(body) == n
    body = await get_json(client, "/v1/list", {"gvr": "pods", "limit": "abc"}, status=400)
    assert body["error"] == 'parameter limit: "abc" is not an integer'
    body = await get_json(client, "/v1/list", {"gvr": "pods", "limit": "-1"}, status=400)
    assert "parameter limit" in body["error"]


async def test_seed_errors_are_json(client: TestClient) -> None:
    body = await get_json(client, "/v1/list", {}, status=400)
    assert body["error"] == "parameter gvr is required" and body["hint"]
    body = await get_json(client, "/v1/list_with_cluster", {"gvr": "v1"}, status=400)
    assert "error" in body
    body = await get_json(client, "/v1/list", {"gvr": "a/b/c/d"}, status=400)
    assert "not a resource type" in body["error"]
    body = await get_json(client, "/v1/list", {"gvr": "apps/v1/deploymentz"}, status=400)
    assert "deployments" in body["matches"]
    assert await get_json(client, "/v1/list", {"gvr": "pods", "name": "does-not-exist"}) == []
    assert await get_json(client, "/v1/list_with_cluster", {"gvr": "pods", "name": "does-not-exist"}) == []


async def test_limit_zero_streams_large_results(own_store: Store, dataset: Dataset) -> None:
    template = dataset.objects[("cluster2", CMS)][0]
    rows = [clone(template, f"cluster{1 + i % 3}", CMS, "stream", f"big-{i:05d}", 20_000 + i,
                  created=f"2026-01-{1 + i % 28:02d}T00:00:{i % 60:02d}Z") for i in range(2345)]
    for i in range(0, len(rows), 500):
        await own_store.apply(rows[i : i + 500])
    backend = Backend(own_store, dataset.resources, fresh_views(dataset))
    async with TestClient(TestServer(build_app(backend))) as client:
        r = await client.get("/v1/list_with_cluster", params={"gvr": "cm", "namespace": "stream", "limit": "0"})
        assert r.status == 200
        assert r.headers.get("Transfer-Encoding") == "chunked"
        chunks = []
        async for chunk in r.content.iter_any():
            chunks.append(chunk)
        body = orjson.loads(b"".join(chunks))
        assert len(body) == 2345
        got = [(i["Object"]["metadata"]["creationTimestamp"], i["clusterName"], i["Object"]["metadata"]["name"])
               for i in body]
        assert got == sorted(got, reverse=True)
        assert len({g[2] for g in got}) == 2345
        # A limit above one store page spans pages and stops exactly.
        body = await get_json(client, "/v1/list", {"gvr": "cm", "namespace": "stream", "limit": "777"})
        assert len(body) == 777


class FailingAfterFirstPage:
    """Fault injection only: a real store whose second query fails, which no real store does on demand."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def query(self, q: Query) -> Page:
        self.calls += 1
        if self.calls > 1:
            raise StoreError("connection lost")
        return await self._store.query(q)


async def test_store_failure_mid_stream_truncates_instead_of_lying(own_store: Store, dataset: Dataset) -> None:
    template = dataset.objects[("cluster1", CMS)][0]
    rows = [clone(template, "cluster1", CMS, "trunc", f"t-{i:04d}", 30_000 + i) for i in range(1200)]
    await own_store.apply(rows[:600])
    await own_store.apply(rows[600:])
    failing = FailingAfterFirstPage(own_store)
    backend = Backend(failing, dataset.resources, fresh_views(dataset))  # type: ignore[arg-type]
    async with TestClient(TestServer(build_app(backend))) as client:
        r = await client.get("/v1/list", params={"gvr": "cm", "namespace": "trunc", "limit": "0"})
        assert r.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await r.read()
        # Failing before the first byte: a clean 503 JSON error.
        r = await client.get("/v1/list", params={"gvr": "cm", "limit": "0"})
        assert r.status == 503
        body = await r.json()
        assert body["error"] == "the store is unavailable: connection lost"
        assert r.headers["Retry-After"] == "5"


async def test_seed_labels_map_is_honoured(client: TestClient, dataset: Dataset) -> None:
    """The Go original parsed labels[k]=v and ignored it (FIXME in its code); here it filters."""
    body = await get_json(client, "/v1/list_with_cluster", {"gvr": "pods", "limit": "0", "labels[app]": "web",
                                                            "labels[tier]": "frontend"})
    got = {_key(i["Object"], i["clusterName"]) for i in body}
    assert got == expected(dataset, PODS, labels=[("app", "=", ("web",)), ("tier", "=", ("frontend",))])
    body = await get_json(client, "/v1/list", {"gvr": "pods", "limit": "0", "labels[app]": "web",
                                               "labelSelector": "!canary"})
    assert len(body) == len(expected(dataset, PODS, labels=[("app", "=", ("web",)), ("canary", "!", ())]))
    body = await get_json(client, "/v1/list", {"gvr": "pods", "labels[-bad]": "x"}, status=400)
    assert body["error"].startswith('labels[-bad]: label key "-bad"')
