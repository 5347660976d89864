"""Clusters, health, readiness, metrics, OpenAPI, auth, and every error path of the middleware."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from multicluster.api import ClusterView, build_app
from multicluster.gvr import APIResource
from multicluster.store import Store, SyncState
from tests.api.dataset import CMS, PODS, Dataset
from tests.api.helpers import Backend, fresh_views, get_json


async def test_clusters_view_with_counts(client: TestClient, dataset: Dataset) -> None:
    body = await get_json(client, "/v1/clusters")
    assert body["apiVersion"] == "multicluster/v1"
    assert [c["name"] for c in body["clusters"]] == ["cluster1", "cluster2", "cluster3"]
    for c in body["clusters"]:
        assert set(c) == {"name", "isMaster", "host", "version", "platform", "reachable", "ready", "lastSync",
                          "error", "staleReason", "typesLeftOut", "objects", "resources"}
        assert c["staleReason"] == "" and c["typesLeftOut"] == {"count": 0, "gvrs": []}
        assert c["isMaster"] == (c["name"] == "cluster1")
        assert c["version"] == "v1.37.2" and c["reachable"] and c["ready"]
        total = sum(len(objs) for (cl, _), objs in dataset.objects.items() if cl == c["name"])
        assert c["objects"] == total
        per = {r["gvr"]: r for r in c["resources"]}
        assert per["v1/pods"]["objects"] == 5
        assert per["v1/pods"]["status"] == "synced"
        assert per["mulitcluster.practice.com/v1alpha1/multiclusterresources"]["objects"] == 1


async def test_healthz_and_readyz(backend: Backend, dataset: Dataset) -> None:
    backend.token = "s3cret"  # neither probe needs it
    async with TestClient(TestServer(build_app(backend))) as client:
        assert await get_json(client, "/healthz") == {"status": "ok"}
        assert await get_json(client, "/readyz") == {"status": "ready", "ready": True, "pending": 0, "clusters": 3}
        backend.is_ready = False
        views = fresh_views(dataset)
        v = views[2]
        views[2] = ClusterView(name=v.name, is_master=False, host=v.host, reachable=True, ready=False,
                               last_sync=None, syncs=[SyncState(v.name, PODS, "syncing"),
                                                      SyncState(v.name, CMS, "synced", synced_at=time.time())])
        views.append(ClusterView(name="down", is_master=False, host="https://10.0.0.1", reachable=False,
                                 ready=False, last_sync=None, error="no route to host"))
        backend.views = views
        # Without the token: counts only (names, addresses and errors are for callers with the token).
        body = await get_json(client, "/readyz", status=503)
        assert (body["ready"], body["pending"], body["clusters"]) == (False, 2, 4)
        assert "down" not in str(body) and "10.0.0.1" not in str(body) and "no route" not in str(body)
        body = await get_json(client, "/readyz", status=503, headers={"Authorization": "Bearer s3cret"})
        assert body["ready"] is False
        assert body["error"] == "not ready: 2 initial sync(s) pending"
        assert {"cluster": "cluster3", "gvr": "v1/pods", "status": "syncing", "error": ""} in body["pending"]
        assert {"cluster": "down", "gvr": None, "status": "unreachable", "error": "no route to host"} in body["pending"]
        assert await get_json(client, "/healthz") == {"status": "ok"}


async def test_metrics_record_query_latency_per_route(client: TestClient) -> None:
    await get_json(client, "/v1/resources", {"gvr": "pods"})
    await get_json(client, "/v1/list", {"gvr": "pods"})
    r = await client.get("/metrics")
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    text = await r.text()
    assert 'multicluster_query_seconds_count{route="/v1/resources"}' in text
    assert 'multicluster_query_seconds_count{route="/v1/list"}' in text


async def test_openapi_describes_every_route(client: TestClient, backend: Backend) -> None:
    doc = await get_json(client, "/openapi.json")
    assert doc["openapi"].startswith("3.1")
    app = build_app(backend)
    routes = [(r.method.lower(), r.resource.canonical) for r in app.router.routes() if r.resource is not None]
    assert len(routes) >= 9
    for method, path in routes:
        assert path in doc["paths"], path
        op = doc["paths"][path][method]
        assert op["summary"] and "200" in op["responses"]
        names = {p["name"] for p in op.get("parameters", [])}
        for segment in path.split("/"):
            if segment.startswith("{"):
                assert segment.strip("{}") in names, (path, segment)
    params = {p["name"]: p for p in doc["paths"]["/v1/resources"]["get"]["parameters"]}
    assert set(params) == {"gvr", "cluster", "namespace", "name", "namePrefix", "nameContains", "labelSelector",
                           "fieldSelector", "order", "limit", "continue", "count", "watch", "resourceVersion", "since"}
    seed = {p["name"]: p for p in doc["paths"]["/v1/list"]["get"]["parameters"]}
    assert seed["limit"]["schema"]["default"] == 10 and "10" in seed["limit"]["description"]
    # Every $ref resolves.
    text = orjson.dumps(doc).decode()
    for name in {part.split('"')[0] for part in text.split("#/components/schemas/")[1:]}:
        assert name in doc["components"]["schemas"], name


async def test_bearer_token(backend: Backend) -> None:
    backend.token = "tok-123"
    async with TestClient(TestServer(build_app(backend))) as client:
        for path in ("/v1/resources?gvr=pods", "/v1/list?gvr=pods", "/v1/clusters", "/metrics", "/openapi.json",
                     "/v1/resources/cluster1/pods/x/y", "/no/such/route"):
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "tok-123"},
                            {"Authorization": "Basic dG9rLTEyMw=="}, {"Authorization": "Bearer "}):
                r = await client.get(path, headers=headers)
                assert r.status == 401, (path, headers)
                assert r.headers["WWW-Authenticate"].startswith("Bearer")
                body = await r.json()
                assert body["error"] == "missing or wrong bearer token" and "Authorization" in body["hint"]
        ok = {"Authorization": "Bearer tok-123"}
        assert (await client.get("/v1/resources?gvr=pods", headers=ok)).status == 200
        assert (await client.get("/metrics", headers=ok)).status == 200
        assert (await client.get("/v1/resources?gvr=pods", headers={"Authorization": "bearer tok-123"})).status == 200
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/readyz")).status == 200
    backend.token = None
    async with TestClient(TestServer(build_app(backend))) as client:
        assert (await client.get("/v1/resources?gvr=pods")).status == 200


async def test_unknown_route_and_method_are_json(client: TestClient) -> None:
    body = await get_json(client, "/v2/nothing", status=404)
    assert body["error"] == "no route GET /v2/nothing" and "openapi" in body["hint"]
    r = await client.post("/v1/resources", data=b"{}")
    assert r.status == 405
    body = await r.json()
    assert body["error"] == "method POST is not allowed on /v1/resources"
    # A backend without membership (this test backend) answers the seed's join route with a JSON 501.
    r = await client.post("/v1/join?cluster=x", data=b"kubeconfig")
    assert r.status == 501
    assert "membership" in (await r.json())["error"]


async def test_oversized_parameters(client: TestClient) -> None:
    body = await get_json(client, "/v1/resources", {"gvr": "pods", "labelSelector": "a=" + "b" * 5000}, status=400)
    assert body["error"].startswith("parameter labelSelector: value is too long")
    body = await get_json(client, "/v1/list", {"gvr": "pods", "name": "n" * 4097}, status=400)
    assert "parameter name" in body["error"]
    r = await client.get("/v1/resources", params=[("gvr", "pods")] + [("cluster", "c" * 1000)] * 20)
    assert r.status == 414
    assert (await r.json())["error"].startswith("the URL is too long")


INJECTIONS = [
    "' OR '1'='1",
    "x'; DROP TABLE resources; --",
    '" OR ""="',
    "1) OR (1=1",
    "%",
    "_",
    "%%",
    "\\",
    "web-0' --",
    "' UNION SELECT object FROM resources --",
    "\x00",
    "é∂ƒ",
    "cluster1' /*",
    "*/ OR 1=1",
]


async def _count_rows(store: Store) -> int:
    return sum((await store.counts()).values())


async def test_sql_injection_in_every_parameter(client: TestClient, filled_store: Store) -> None:
    before = await _count_rows(filled_store)
    filters = ["cluster", "namespace", "name", "namePrefix", "nameContains"]
    for payload in INJECTIONS:
        for param in filters:
            r = await client.get("/v1/resources", params={"gvr": "pods", param: payload})
            assert r.status in (200, 400), (param, payload, r.status)
            if r.status == 200:
                assert (await r.json())["items"] == [], (param, payload)
        for param in ("labelSelector", "fieldSelector", "order", "limit", "continue", "count", "gvr", "output"):
            r = await client.get("/v1/resources", params={"gvr": "pods", param: payload})
            assert r.status < 500, (param, payload, r.status)
            if r.status == 200:
                assert param == "output" or (await r.json())["items"] == [] or param == "gvr"
        for value in (f"app={payload}", f"{payload}=x", f"app in ({payload})", f"status.phase={payload}"):
            for param in ("labelSelector", "fieldSelector"):
                r = await client.get("/v1/resources", params={"gvr": "pods", param: value})
                assert r.status in (200, 400), (param, value, r.status)
                if r.status == 200:
                    assert (await r.json())["items"] == [], (param, value)
        for route in ("/v1/list", "/v1/list_with_cluster"):
            for param in ("cluster", "namespace", "name", "limit", "gvr"):
                r = await client.get(route, params={"gvr": "pods", "limit": "0", param: payload})
                assert r.status in (200, 400), (route, param, payload, r.status)
                if r.status == 200:
                    assert await r.json() == [], (route, param, payload)
        r = await client.get(f"/v1/resources/{payload}/pods/{payload}/{payload}".replace("\x00", "%00"))
        assert r.status in (400, 404), (payload, r.status)
    assert await _count_rows(filled_store) == before
    # A name containing LIKE wildcards matches literally: "%" selects nothing although every name matches %.
    body = await get_json(client, "/v1/resources", {"gvr": "pods", "nameContains": "%"})
    assert body["items"] == []
    body = await get_json(client, "/v1/resources", {"gvr": "pods", "namePrefix": "web_"})
    assert body["items"] == []


async def test_store_outage_is_503(own_store: Store, dataset: Dataset) -> None:
    backend = Backend(own_store, dataset.resources, fresh_views(dataset))
    async with TestClient(TestServer(build_app(backend))) as client:
        assert (await client.get("/v1/resources?gvr=pods")).status == 200
        await own_store.close()
        for path in ("/v1/resources?gvr=pods", "/v1/list?gvr=pods", "/v1/list_with_cluster?gvr=pods&limit=0",
                     "/v1/clusters", "/v1/resources/cluster1/pods/x/y"):
            body = await get_json(client, path, status=503)
            assert body["error"].startswith("the store is unavailable"), path
            assert body["hint"]


class ExplodingBackend(Backend):
    """Fault injection: a bug in a backend must become a generic 500, never a traceback on the wire."""

    def resolve(self, spelling: str) -> APIResource:
        raise RuntimeError("secret internal detail /etc/passwd")


async def test_unexpected_errors_are_generic_500(filled_store: Store, dataset: Dataset,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    backend = ExplodingBackend(filled_store, dataset.resources, fresh_views(dataset))
    async with TestClient(TestServer(build_app(backend))) as client:
        r = await client.get("/v1/resources?gvr=pods")
        assert r.status == 500
        text = await r.text()
        assert "secret" not in text and "Traceback" not in text and "passwd" not in text
        body: dict[str, Any] = orjson.loads(text)
        assert body["error"] == "internal server error"
        assert body["requestId"] in body["hint"]
    assert any("secret internal detail" in (rec.exc_text or "") or rec.exc_info for rec in caplog.records)


async def test_async_resolve_is_supported(filled_store: Store, dataset: Dataset) -> None:
    class AsyncBackend(Backend):
        async def resolve(self, spelling: str) -> APIResource:  # type: ignore[override]
            return super().resolve(spelling)

    backend = AsyncBackend(filled_store, dataset.resources, fresh_views(dataset))
    async with TestClient(TestServer(build_app(backend))) as client:
        body = await get_json(client, "/v1/resources", {"gvr": "deploy"})
        assert body["resource"]["kind"] == "Deployment"
