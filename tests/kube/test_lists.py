"""List and get through the real kubectl, compared with what each harness cluster holds: -A, -n, by name, -l,
--field-selector, --chunk-size paging (exact under concurrent writes), -o json|yaml|name|jsonpath|custom-columns,
`get all`, and a client library we did not write (kubernetes_asyncio) through the generated context."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
import yaml

from multicluster.api.kube.paths import CLUSTER_ANNOTATION, scope_prefix
from tests.kube.conftest import PODS, Env, _pod

pytestmark = pytest.mark.integration


async def until_equal(get: Callable[[], Awaitable[Any]], want: Callable[[], Awaitable[Any]],
                      timeout: float = 30) -> Any:
    """Compare until both sides agree (the store follows the clusters' watches), then return the value."""
    deadline = time.monotonic() + timeout
    while True:
        have, expected = await get(), await want()
        if have == expected or time.monotonic() > deadline:
            assert have == expected
            return have
        await asyncio.sleep(0.3)


def keyed(items: list[dict[str, Any]], cluster: str | None = None) -> set[tuple[str, str, str, str, str]]:
    out = set()
    for o in items:
        md = o["metadata"]
        c = cluster or md["annotations"][CLUSTER_ANNOTATION]
        out.add((c, md.get("namespace", ""), md["name"], md["uid"], md["resourceVersion"]))
    return out


async def direct_items(env: Env, *args: str) -> set[tuple[str, str, str, str, str]]:
    out: set[tuple[str, str, str, str, str]] = set()
    for cluster in env.harness.servers:
        out |= keyed(orjson.loads(await env.direct(cluster, "get", *args, "-o", "json"))["items"], cluster)
    return out


async def ours(env: Env, *args: str, context: str = "multicluster") -> set[tuple[str, str, str, str, str]]:
    _, out, _ = await env.kubectl("get", *args, "-o", "json", context=context)
    doc = orjson.loads(out)
    assert doc["kind"] == "List" or doc["kind"].endswith("List")
    return keyed(doc["items"])


async def test_pods_all_namespaces_namespace_and_one_cluster(env: Env) -> None:
    ns = env.namespace
    sel = f"metadata.namespace={ns}"
    got = await until_equal(lambda: ours(env, "pods", "-A", "--field-selector", sel),
                            lambda: direct_items(env, "pods", "-A", "--field-selector", sel))
    assert {(c, n) for c, _, n, _, _ in got} >= {(c, n) for c, pods in PODS.items() for n, _ in pods}
    await until_equal(lambda: ours(env, "pods", "-n", ns), lambda: direct_items(env, "pods", "-n", ns))
    # Unfiltered -A: every cluster's kube-system/default objects are there too (namespaces: cluster-scoped).
    await until_equal(lambda: ours(env, "namespaces"), lambda: direct_items(env, "namespaces"))
    # One cluster's context sees that cluster only.
    want2 = {k for k in await direct_items(env, "pods", "-n", ns) if k[0] == "cluster2"}
    assert await ours(env, "pods", "-n", ns, context="multicluster-cluster2") == want2


async def test_one_name_in_several_clusters(env: Env) -> None:
    _, out, _ = await env.kubectl("get", "namespace", env.namespace)
    assert [r.split()[:3] for r in out.strip().splitlines()] == [
        ["CLUSTER", "NAME", "STATUS"], ["cluster1", env.namespace, "Active"], ["cluster2", env.namespace, "Active"],
        ["cluster3", env.namespace, "Active"]]
    _, out, err = await env.kubectl("get", "namespace", env.namespace, "-o", "json")
    assert orjson.loads(out)["metadata"]["annotations"][CLUSTER_ANNOTATION] == "cluster1"
    assert "also exists in cluster(s) cluster2, cluster3" in err
    _, out, err = await env.kubectl("get", "namespace", env.namespace, "-o", "json", context="multicluster-cluster3")
    assert orjson.loads(out)["metadata"]["annotations"][CLUSTER_ANNOTATION] == "cluster3" and not err


async def test_label_and_field_selectors(env: Env) -> None:
    ns = env.namespace
    for sel in ("app=web", "app in (db,cache)", "tier!=front,app", "!tier"):
        await until_equal(lambda s=sel: ours(env, "pods", "-n", ns, "-l", s),  # type: ignore[misc]
                          lambda s=sel: direct_items(env, "pods", "-n", ns, "-l", s))  # type: ignore[misc]
    for sel in ("metadata.name=db-1", "metadata.name!=db-1", "status.phase=Pending"):
        await until_equal(lambda s=sel: ours(env, "pods", "-n", ns, "--field-selector", s),  # type: ignore[misc]
                          lambda s=sel: direct_items(env, "pods", "-n", ns, "--field-selector", s))  # type: ignore[misc]


async def test_get_by_name_and_outputs(env: Env) -> None:
    ns = env.namespace
    _, out, _ = await env.kubectl("get", "pod", "web-1", "-n", ns, "-o", "json", context="multicluster-cluster2")
    obj = orjson.loads(out)
    direct = orjson.loads(await env.direct("cluster2", "get", "pod", "web-1", "-n", ns, "-o", "json"))
    assert obj["metadata"]["uid"] == direct["metadata"]["uid"]
    assert obj["metadata"]["annotations"][CLUSTER_ANNOTATION] == "cluster2"
    assert obj["kind"] == "Pod" and obj["apiVersion"] == "v1"
    _, out, _ = await env.kubectl("get", "pods", "-n", ns, "-l", "app=db", "-o", "yaml")
    doc = yaml.safe_load(out)
    assert sorted((i["metadata"]["annotations"][CLUSTER_ANNOTATION], i["metadata"]["name"]) for i in doc["items"]) \
        == [("cluster1", "db-1"), ("cluster2", "db-1"), ("cluster2", "db-2")]
    _, out, _ = await env.kubectl("get", "pods", "-n", ns, "-l", "app=db", "-o", "name")
    assert out.split() == ["pod/db-1", "pod/db-1", "pod/db-2"]
    _, out, _ = await env.kubectl("get", "pods", "-n", ns, "-l", "app=db", "-o",
                                  "jsonpath={range .items[*]}{.metadata.name}@{.metadata.annotations."
                                  "multicluster\\.practice\\.com/cluster}{'\\n'}{end}")
    assert out.split() == ["db-1@cluster1", "db-1@cluster2", "db-2@cluster2"]
    _, out, _ = await env.kubectl("get", "pods", "-n", ns, "-l", "app=db", "-o",
                                  "custom-columns=CLUSTER:.metadata.annotations.multicluster\\.practice\\.com/"
                                  "cluster,NAME:.metadata.name,IMAGE:.spec.containers[0].image")
    assert [line.split() for line in out.strip().splitlines()] == [
        ["CLUSTER", "NAME", "IMAGE"], ["cluster1", "db-1", "registry.example/db:1"],
        ["cluster2", "db-1", "registry.example/db:1"], ["cluster2", "db-2", "registry.example/db:1"]]


async def test_chunked_paging_matches_the_unpaged_answer(env: Env) -> None:
    ns = env.namespace
    _, whole, _ = await env.kubectl("get", "pods", "-n", ns, "-o", "name", "--chunk-size=0")
    _, paged, err = await env.kubectl("get", "pods", "-n", ns, "-o", "name", "--chunk-size=2", "-v=6")
    assert paged == whole and len(whole.split()) >= 8
    assert err.count("limit=2") >= 4  # kubectl really asked page by page
    _, paged_table, _ = await env.kubectl("get", "pods", "-A", "--chunk-size=2", "--field-selector",
                                          f"metadata.namespace={ns}")
    assert len(paged_table.strip().splitlines()) == len(whole.split()) + 1


async def test_paging_is_exact_under_concurrent_writes(env: Env) -> None:
    """Objects present for the whole walk appear exactly once; objects created or deleted meanwhile at most once."""
    ns = env.namespace
    h = env.harness
    for i in range(6):
        await asyncio.to_thread(h.request, "cluster3", "POST", f"/api/v1/namespaces/{ns}/pods",
                                _pod(f"churn-{i}", {"app": "churn"}))
    url = env.url + scope_prefix("_all") + f"/api/v1/namespaces/{ns}/pods"
    async with env.http() as http:
        async def names() -> list[tuple[str, str]]:
            async with http.get(url) as r:
                return [(i["metadata"]["annotations"][CLUSTER_ANNOTATION], i["metadata"]["name"])
                        for i in (await r.json())["items"]]

        stable = await until_equal(names, names)
        seen: list[tuple[str, str]] = []
        params: dict[str, str] = {"limit": "2"}
        created = 0
        while True:
            async with http.get(url, params=params) as r:
                assert r.status == 200, await r.text()
                page = await r.json()
            seen += [(i["metadata"]["annotations"][CLUSTER_ANNOTATION], i["metadata"]["name"]) for i in page["items"]]
            # Write between pages: a new pod in front of and behind the cursor, and delete a churn pod.
            for name in (f"aaa-{created}", f"zzz-{created}"):
                await asyncio.to_thread(h.request, "cluster1", "POST", f"/api/v1/namespaces/{ns}/pods",
                                        _pod(name, {"app": "churn"}))
            if created < 6:
                await asyncio.to_thread(h.request, "cluster3", "DELETE",
                                        f"/api/v1/namespaces/{ns}/pods/churn-{created}")
            created += 1
            token = page["metadata"].get("continue")
            if not token:
                break
            params = {"limit": "2", "continue": token}
    assert len(seen) == len(set(seen)), "a row was sent twice"
    survivors = {k for k in stable if not k[1].startswith("churn-")}
    assert survivors <= set(seen), f"rows present throughout were skipped: {survivors - set(seen)}"


async def test_get_all_and_kubernetes_asyncio(env: Env) -> None:
    ns = env.namespace
    _, out, _ = await env.kubectl("get", "all", "-n", ns, "-o", "name")
    kinds = {line.split("/")[0] for line in out.split()}
    assert {"pod", "service", "deployment.apps", "replicaset.apps", "job.batch"} <= kinds
    direct: set[str] = set()
    for cluster in env.harness.servers:
        direct |= set((await env.direct(cluster, "get", "all", "-n", ns, "-o", "name")).split())
    assert set(out.split()) == direct

    from kubernetes_asyncio import client, config

    api_client = await config.new_client_from_config(config_file=str(env.kubeconfig), context="multicluster")
    async with api_client:
        core = client.CoreV1Api(api_client)
        pods = await core.list_namespaced_pod(ns, label_selector="app=web")
        got = sorted((p.metadata.annotations[CLUSTER_ANNOTATION], p.metadata.name) for p in pods.items)
        assert got == [("cluster1", "web-1"), ("cluster1", "web-2"), ("cluster2", "web-1")]
        first = await core.list_pod_for_all_namespaces(limit=1, field_selector=f"metadata.namespace={ns}")
        assert len(first.items) == 1 and first.metadata._continue
        rest = await core.list_pod_for_all_namespaces(field_selector=f"metadata.namespace={ns}",
                                                      _continue=first.metadata._continue)
        pod = await core.read_namespaced_pod("cache-1", ns)
        assert pod.metadata.annotations[CLUSTER_ANNOTATION] == "cluster3"
        deployments = await client.AppsV1Api(api_client).list_namespaced_deployment(ns)
        assert sorted(d.metadata.annotations[CLUSTER_ANNOTATION] for d in deployments.items) == \
            sorted(env.harness.servers)
    assert len(first.items) + len(rest.items) == len(await ours(env, "pods", "-n", ns))
