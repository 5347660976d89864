"""GET /v1/resources/{cluster}/{gvr}/{namespace}/{name}: one object as JSON or YAML, and useful 404s."""

from __future__ import annotations

import time

import orjson
import yaml
from aiohttp.test_utils import TestClient, TestServer

from multicluster.api import ClusterView, build_app
from multicluster.sync import to_row
from tests.api.dataset import DEPLOYS, MCR, NAMESPACES, PODS, Dataset
from tests.api.helpers import Backend, fresh_views, get_json


def _stored(dataset: Dataset, cluster: str, gvr: object, name: str) -> dict[str, object]:
    obj = next(o for o in dataset.objects[(cluster, gvr)] if o["metadata"]["name"] == name)  # type: ignore[index]
    return orjson.loads(to_row(cluster, gvr, obj, 1).object)  # type: ignore[arg-type,no-any-return]


async def test_json_by_every_gvr_spelling(client: TestClient, dataset: Dataset) -> None:
    a = dataset.namespaces[0]
    want = _stored(dataset, "cluster2", PODS, "web-0")
    for spelling in ("pods", "po", "v1.pods", "core.v1.pods", "v1/pods", "core/v1/pods"):
        r = await client.get(f"/v1/resources/cluster2/{spelling}/{a}/web-0")
        assert r.status == 200, (spelling, await r.text())
        assert r.content_type == "application/json"
        assert r.headers["X-Multicluster-Cluster"] == "cluster2"
        assert r.headers["X-Multicluster-Freshness"] == "fresh"
        assert orjson.loads(await r.read()) == want
    want = _stored(dataset, "cluster3", DEPLOYS, "web")
    for spelling in ("apps/v1/deployments", "apps.v1.deployments", "v1.apps.deployments", "deploy"):
        assert await get_json(client, f"/v1/resources/cluster3/{spelling}/{a}/web") == want


async def test_yaml_by_accept_header_or_output_param(client: TestClient, dataset: Dataset) -> None:
    a = dataset.namespaces[0]
    want = _stored(dataset, "cluster1", MCR, "mypod.pod")
    for kw in ({"headers": {"Accept": "application/yaml"}}, {"params": {"output": "yaml"}},
               {"headers": {"Accept": "text/yaml, */*"}}):
        r = await client.get(f"/v1/resources/cluster1/rr/{a}/mypod.pod", **kw)  # type: ignore[arg-type]
        assert r.status == 200
        assert r.content_type == "application/yaml"
        text = await r.text()
        assert text.startswith("apiVersion: mulitcluster.practice.com/v1alpha1\n")
        assert yaml.safe_load(text) == want
    r = await client.get(f"/v1/resources/cluster1/rr/{a}/mypod.pod", params={"output": "json"},
                         headers={"Accept": "application/yaml"})
    assert r.content_type == "application/json"
    body = await get_json(client, f"/v1/resources/cluster1/rr/{a}/mypod.pod", {"output": "xml"}, status=400)
    assert "parameter output" in body["error"]


async def test_cluster_scoped_uses_underscore(client: TestClient, dataset: Dataset) -> None:
    a = dataset.namespaces[0]
    body = await get_json(client, f"/v1/resources/cluster1/namespaces/_/{a}")
    assert body == _stored(dataset, "cluster1", NAMESPACES, a)
    body = await get_json(client, f"/v1/resources/cluster1/namespaces/{a}/{a}", status=400)
    assert "cluster-scoped" in body["error"] and "/_/" in body["hint"]
    body = await get_json(client, "/v1/resources/cluster1/pods/_/web-0", status=400)
    assert "namespaced" in body["error"]


async def test_not_found_hints(backend: Backend, dataset: Dataset) -> None:
    a = dataset.namespaces[0]
    now = time.time()
    views = fresh_views(dataset, now)
    c2 = views[1]
    views[1] = ClusterView(name="cluster2", is_master=False, host=c2.host, reachable=False, ready=True,
                           last_sync=now - 300, error="dial tcp: connection refused", syncs=c2.syncs)
    backend.views = views
    async with TestClient(TestServer(build_app(backend))) as client:
        body = await get_json(client, f"/v1/resources/cluster1/pods/{a}/nope", status=404)
        assert body["error"] == f"Pod {a}/nope not found in cluster cluster1"
        assert "GET /v1/resources?gvr=v1/pods&cluster=cluster1" in body["hint"]
        assert body["freshness"] == "fresh"
        body = await get_json(client, f"/v1/resources/cluster2/pods/{a}/nope", status=404)
        assert "stale" in body["hint"] and "connection refused" in body["hint"]
        body = await get_json(client, f"/v1/resources/ghost/pods/{a}/web-0", status=404)
        assert "known clusters: cluster1, cluster2, cluster3" in body["hint"]
        body = await get_json(client, f"/v1/resources/cluster1/podz/{a}/web-0", status=400)
        assert "pods" in body["matches"]
        # Stale data is still served, and says so.
        r = await client.get(f"/v1/resources/cluster2/pods/{a}/web-0")
        assert r.status == 200 and r.headers["X-Multicluster-Freshness"] == "stale"
