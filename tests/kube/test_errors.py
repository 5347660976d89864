"""Errors as Kubernetes Status objects, printed cleanly by the real kubectl: NotFound naming the object and the
cluster, write verbs refused as read-only (405), selectors and tokens refused like a kube-apiserver refuses them,
and a dead cluster reported in a Warning header, its last-known rows still served."""

from __future__ import annotations

import asyncio
import time

import pytest

from multicluster.api.kube.paths import scope_prefix
from tests.kube.conftest import Env, run_kubectl

pytestmark = pytest.mark.integration


async def test_not_found_names_object_and_cluster(env: Env) -> None:
    ns = env.namespace
    code, _, err = await env.kubectl("get", "pod", "nope", "-n", ns, ok=False)
    assert code == 1 and err.strip() == 'Error from server (NotFound): pods "nope" not found in any cluster'
    code, _, err = await env.kubectl("get", "pod", "cache-1", "-n", ns, context="multicluster-cluster1", ok=False)
    assert code == 1 and err.strip() == 'Error from server (NotFound): pods "cache-1" not found in cluster cluster1'
    code, _, err = await env.kubectl("get", "deployment", "nope", "-n", ns, ok=False)
    assert 'deployments.apps "nope" not found in any cluster' in err
    async with env.http() as http, http.get(env.url + scope_prefix("_all") + f"/api/v1/namespaces/{ns}/pods/nope") as r:
        body = await r.json()
    assert r.status == 404 and body["kind"] == "Status" and body["code"] == 404
    assert body["details"] == {"name": "nope", "group": "", "kind": "pods"}


async def test_write_verbs_are_refused_as_read_only(env: Env) -> None:
    ns = env.namespace
    code, _, err = await env.kubectl("delete", "pod", "web-1", "-n", ns, ok=False)
    assert code == 1 and "Error from server (MethodNotAllowed): the multicluster Kubernetes API is read-only" in err
    code, _, err = await env.kubectl("label", "pod", "web-1", "-n", ns, "x=y", context="multicluster-cluster1",
                                     ok=False)
    assert code == 1 and "(MethodNotAllowed)" in err and "read-only" in err
    # Nothing changed in the cluster.
    assert "x=y" not in await env.direct("cluster1", "get", "pod", "web-1", "-n", ns, "--show-labels")
    async with env.http() as http:
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            async with http.request(method, env.url + scope_prefix("_all") + f"/api/v1/namespaces/{ns}/pods",
                                    json={}) as r:
                body = await r.json()
            assert r.status == 405 and body["reason"] == "MethodNotAllowed" and r.headers["Allow"] == "GET"


async def test_bad_requests_read_like_a_kube_apiserver(env: Env) -> None:
    ns = env.namespace
    code, _, ours = await env.kubectl("get", "pods", "-n", ns, "--field-selector", "spec.foo=x", ok=False)
    _, _, direct = await run_kubectl(["--kubeconfig", str(env.harness.servers["cluster1"].kubeconfig), "get", "pods",
                                      "-n", ns, "--field-selector", "spec.foo=x"], env.cache, ok=False)
    # The same sentence as the real server's, followed by which fields we can select on.
    assert direct.strip().endswith("field label not supported: spec.foo")
    assert code == 1 and ours.strip().startswith(direct.strip() + " (hint: the fields this API can select on are")
    code, _, err = await env.kubectl("get", "pods", "-n", ns, "-l", "app in (", ok=False)
    assert code == 1 and ("Error from server (BadRequest)" in err or "unable to parse" in err)
    async with env.http() as http:
        url = env.url + scope_prefix("_all") + f"/api/v1/namespaces/{ns}/pods"
        async with http.get(url, params={"limit": "1", "continue": "bm90LWEtdG9rZW4"}) as r:
            body = await r.json()
        assert r.status == 400 and body["reason"] == "BadRequest" and "continue" in body["message"]
        for params in ({"resourceVersion": "0"}, {"resourceVersion": "123", "resourceVersionMatch": "NotOlderThan"},
                       {"resourceVersion": "123", "resourceVersionMatch": "Exact", "limit": "2"}):
            async with http.get(url, params=params) as r:
                assert r.status == 200 and (await r.json())["kind"] == "PodList"
        async with http.get(url, params={"resourceVersionMatch": "Newest"}) as r:
            body = await r.json()
        assert r.status == 400 and body["message"].startswith('resourceVersionMatch: Unsupported value: "Newest"')
        async with http.get(url, params={"watch": "true", "resourceVersionMatch": "NotOlderThan"}) as r:
            body = await r.json()
        assert r.status == 400 and body["kind"] == "Status" and "resourceVersionMatch is forbidden" in body["message"]
        async with http.get(env.url + scope_prefix("_all") + "/api/v1/secrets") as r:
            body = await r.json()
        assert r.status == 404 and body["reason"] == "NotFound" and "not synced" in body["message"]
    bad = env.kubeconfig.read_text().replace("kube-api-test-token", "wrong-token")
    wrong = env.kubeconfig.with_name("wrong.kubeconfig")
    wrong.write_text(bad)
    code, _, err = await run_kubectl(["--kubeconfig", str(wrong), "--context", "multicluster", "get", "pods"],
                                     env.cache, ok=False)
    assert code == 1 and "You must be logged in to the server" in err


async def test_a_dead_cluster_is_a_warning_not_a_silent_gap(env: Env) -> None:
    ns = env.namespace
    h = env.harness
    _, before, _ = await env.kubectl("get", "pods", "-n", ns, "-o", "name", context="multicluster-cluster3")
    await asyncio.to_thread(h.kill_server, "cluster3")
    try:
        deadline = time.monotonic() + 60
        while True:
            _, out, err = await env.kubectl("get", "pods", "-n", ns)
            if "Warning: cluster cluster3 is stale" in err or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert "Warning: cluster cluster3 is stale" in err, err
        assert "cluster1" not in err and "cluster2" not in err
        assert {line.split()[0] for line in out.strip().splitlines()[1:]} == {"cluster1", "cluster2", "cluster3"}
        # Its last-known rows are still served, marked by the warning.
        _, rows, err3 = await env.kubectl("get", "pods", "-n", ns, "-o", "name", context="multicluster-cluster3")
        assert rows == before and "Warning: cluster cluster3 is stale" in err3
        # A watch that starts now says so the same way (kubectl get -w prints it too).
        async with env.http() as http, http.get(env.url + scope_prefix("_all") + f"/api/v1/namespaces/{ns}/pods",
                                                params={"watch": "true", "timeoutSeconds": "1"}) as r:
            assert r.status == 200
            assert any("cluster cluster3 is stale" in w for w in r.headers.getall("Warning", [])), r.headers
            await r.read()
    finally:
        await asyncio.to_thread(h.start_server, "cluster3")
        await asyncio.to_thread(h.wait_ready, "cluster3")
