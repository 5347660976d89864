"""Discovery and /version through the real kubectl: api-resources, short names, categories, aggregated and
per-group documents, and scopes (one cluster, all clusters, an unknown cluster)."""

from __future__ import annotations

import pytest

from multicluster.api.kube.paths import scope_prefix
from tests.kube.conftest import CRD_GROUP, Env, table

pytestmark = pytest.mark.integration


async def test_api_resources_lists_what_is_synced(env: Env) -> None:
    _, out, _ = await env.kubectl("api-resources", "--no-headers=false")
    rows = {r[0]: r for r in table(out)[1:]}
    # NAME SHORTNAMES APIVERSION NAMESPACED KIND, from the clusters' own discovery.
    assert rows["pods"] == ["pods", "po", "v1", "true", "Pod"]
    assert rows["deployments"] == ["deployments", "deploy", "apps/v1", "true", "Deployment"]
    assert rows["namespaces"] == ["namespaces", "ns", "v1", "false", "Namespace"]
    assert rows["gadgets"] == ["gadgets", "gd", f"{CRD_GROUP}/v1", "true", "Gadget"]
    # Only synced types: secrets exist in every cluster but are not in the daemon's include list.
    assert "secrets" not in rows and "endpoints" not in rows
    _, wide, _ = await env.kubectl("api-resources", "-o", "wide", "--api-group=apps")
    assert all(r[-2:] == ["get,list,watch", ""] or "get,list,watch" in r for r in table(wide)[1:])


async def test_short_names_and_categories(env: Env) -> None:
    _, out, _ = await env.kubectl("get", "po", "-n", env.namespace, "-o", "name")
    assert "pod/web-1" in out.split()
    _, out, _ = await env.kubectl("api-resources", "--categories=all", "-o", "name")
    assert set(out.split()) == {"pods", "services", "deployments.apps", "replicasets.apps", "jobs.batch",
                                "cronjobs.batch", "statefulsets.apps", "daemonsets.apps"}


async def test_version_and_aggregated_discovery(env: Env) -> None:
    _, out, _ = await env.kubectl("version", "-o", "json")
    assert '"gitVersion": "v1.37.' in out
    base = env.url + scope_prefix("cluster2")
    async with env.http() as http:
        accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
        async with http.get(base + "/apis", headers={"Accept": accept}) as r:
            assert r.status == 200
            assert r.headers["Content-Type"] == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
            doc = await r.json(content_type=None)
        groups = {i["metadata"]["name"]: i for i in doc["items"]}
        apps = groups["apps"]["versions"][0]
        deploy = next(x for x in apps["resources"] if x["resource"] == "deployments")
        assert deploy["responseKind"] == {"group": "apps", "version": "v1", "kind": "Deployment"}
        assert deploy["scope"] == "Namespaced" and deploy["categories"] == ["all"]
        async with http.get(base + "/api/v1") as r:
            legacy = await r.json()
        assert legacy["kind"] == "APIResourceList"
        assert {x["name"] for x in legacy["resources"]} >= {"pods", "services", "configmaps", "namespaces"}
        async with http.get(env.url + scope_prefix("nope") + "/api/v1/pods") as r:
            assert r.status == 404
            status = await r.json()
        assert status["kind"] == "Status" and status["reason"] == "NotFound" and "cluster2" in status["message"]
