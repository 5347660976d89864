"""The seed's own examples, applied verbatim, land in every placed cluster with their per-cluster changes.

The config names the harness clusters like the seed's (tencent1 = master, tencent2, tencent4), so the manifests
keep their placement and customize names; only `namespace: default` becomes the test's fresh namespace.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from multicluster.delivery import MANAGED_BY_LABEL, OWNER_ANNOTATION
from multicluster.testing.harness import ADMIN_TOKEN, Harness
from tests.delivery.helpers import Env, MakeEnv, eventually

pytestmark = pytest.mark.integration

SEED = Path(__file__).with_name("seed")
TENCENT = {"tencent1": "cluster1", "tencent2": "cluster2", "tencent4": "cluster3"}


def server_table(harness: Harness, cluster: str, path: str) -> dict[str, dict[str, Any]]:
    """What `kubectl get` prints: the API server's own Table rendering of the CRD printer columns, by name."""
    s = harness.servers[cluster]
    ctx = ssl.create_default_context(cafile=str(harness.pki / "ca.crt"))
    req = urllib.request.Request(s.url + path)
    req.add_header("Authorization", f"Bearer {ADMIN_TOKEN}")
    req.add_header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
    with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
        table = json.loads(r.read())
    names = [c["name"] for c in table["columnDefinitions"]]
    return {row["cells"][0]: dict(zip(names, row["cells"], strict=True)) for row in table["rows"]}


async def columns(env: Env, name: str) -> dict[str, Any]:
    rows = await asyncio.to_thread(server_table, env.harness, "cluster1", env.cr_path())
    return rows[name]


def pod_path(env: Env) -> str:
    return f"/api/v1/namespaces/{env.ns}/pods/multicluster-pod"


async def test_readme_pod_example(make_env: MakeEnv) -> None:
    env = await make_env(names=TENCENT)
    cr = env.load_cr((SEED / "readme_pod.yaml").read_text())
    await env.apply_cr(cr)
    st = await env.wait_applied("mypod.pod", "3/3")

    p1 = await env.get("tencent1", pod_path(env))
    p2 = await env.get("tencent2", pod_path(env))
    p4 = await env.get("tencent4", pod_path(env))
    assert p1 and p2 and p4
    assert p1["spec"]["containers"][0]["image"] == "nginx:1.19.0-alpine"
    assert p2["spec"]["containers"][0]["image"] == "busybox"
    assert p4["spec"]["containers"][0]["image"] == "busybox"
    # `add /metadata/annotations/example` on a template without annotations (the seed failed here).
    assert p2["metadata"]["annotations"]["example"] == "example"
    assert "example" not in p1["metadata"]["annotations"]
    for p in (p1, p2, p4):
        assert p["metadata"]["labels"][MANAGED_BY_LABEL] == "multicluster"
        assert p["metadata"]["annotations"][OWNER_ANNOTATION] == f"{env.ns}/mypod.pod"

    assert st["targetClusters"] == "tencent1,tencent2,tencent4"
    assert st["ready"] == "0/3"  # no nodes in the harness: Pods stay Pending, and status says so
    for e in st["clusters"]:
        assert e["applied"] is True and e["phase"] == "Applied"
        assert e["health"] == "Progressing" and e["healthMessage"].startswith("Pending")
        assert e["target"]["kind"] == "Pod" and e["target"]["resource"] == "pods"
        assert e["lastAppliedTime"]
    cond = {c["type"]: c for c in st["conditions"]}
    assert cond["Applied"]["status"] == "True" and cond["Ready"]["status"] == "False"

    row = await columns(env, "mypod.pod")
    assert (row["Kind"], row["Clusters"], row["Applied"], row["Ready"]) == ("Pod", "tencent1,tencent2,tencent4",
                                                                            "3/3", "0/3")


async def test_pod_example(make_env: MakeEnv) -> None:
    env = await make_env(names=TENCENT)
    await env.apply_cr(env.load_cr((SEED / "pod.yaml").read_text()))
    await env.wait_applied("mypod.pod", "3/3")
    images = {c: (await env.get(c, pod_path(env)) or {})["spec"]["containers"][0]["image"] for c in TENCENT}
    assert images == {"tencent1": "nginx:1.19.0-alpine", "tencent2": "nginx:1.19.0-alpine",
                      "tencent4": "nginx:1.17.0-alpine"}
    p2 = await env.get("tencent2", pod_path(env))
    assert p2 and p2["metadata"]["annotations"]["example"] == "example"


async def test_deployment_example(make_env: MakeEnv) -> None:
    env = await make_env(names=TENCENT)
    await env.apply_cr(env.load_cr((SEED / "deployment.yaml").read_text()))
    await env.wait_applied("mydeployment.deployment", "3/3")
    path = f"/apis/apps/v1/namespaces/{env.ns}/deployments/multiclusterresource-deployment"
    d1, d2, d4 = [await env.get(c, path) for c in TENCENT]
    assert d1 and d2 and d4
    assert (d1["spec"]["replicas"], d2["spec"]["replicas"], d4["spec"]["replicas"]) == (2, 1, 3)
    image = lambda d: d["spec"]["template"]["spec"]["containers"][0]["image"]  # noqa: E731
    assert (image(d1), image(d2), image(d4)) == ("nginx:1.19.0-alpine", "nginx:latest", "nginx:1.19.0-alpine")
    # remove /metadata/labels/app (value ignored) on tencent1 only
    assert "app" not in d1["metadata"]["labels"] and d2["metadata"]["labels"]["app"] == "example"
    # add /metadata/annotations ["foo=bar"] → the map {"foo": "bar"}; our ownership annotations added after
    assert d2["metadata"]["annotations"]["foo"] == "bar"
    assert d4["metadata"]["annotations"]["app"] == "bar"
    assert d2["metadata"]["annotations"][OWNER_ANNOTATION] == f"{env.ns}/mydeployment.deployment"

    # Health follows the copy's own status, refreshed by watching it: the harness has no nodes, so the
    # controller-manager's ReplicaSets never make Pods available.
    async def health() -> dict[str, Any] | None:
        e = await env.entry("mydeployment.deployment", "tencent1")
        return e if e.get("healthMessage") == "0/2 replicas available" else None

    e1 = await eventually(health, what="tencent1 health from the deployment controller's status")
    assert e1["health"] == "Progressing" and e1["ready"] is False
    st = await env.status("mydeployment.deployment")
    assert st["ready"] == "0/3"
    assert {c["type"]: c["reason"] for c in st["conditions"]} == {"Applied": "Applied", "Ready": "NotReady"}
    row = await columns(env, "mydeployment.deployment")
    assert (row["Kind"], row["Applied"], row["Ready"]) == ("Deployment", "3/3", "0/3")


async def test_configmap_example(make_env: MakeEnv) -> None:
    env = await make_env(names=TENCENT)
    await env.apply_cr(env.load_cr((SEED / "configmap.yaml").read_text()))
    st = await env.wait_applied("mydeployment.configmap", "3/3")
    for c in TENCENT:
        cm = await env.get(c, env.cm_path("multiclusterresource-configmap"))
        assert cm and cm["data"]["example.property.1"] == "hello"
        assert cm["data"]["example.property.file"].startswith("property.1=value-1")
    assert st["ready"] == "3/3"
    assert all(c["status"] == "True" for c in st["conditions"])
    for c in TENCENT:
        await env.event("Delivered", f"cluster {c}: ConfigMap {env.ns}/multiclusterresource-configmap created")
    row = await columns(env, "mydeployment.configmap")
    assert (row["Kind"], row["Clusters"], row["Applied"], row["Ready"]) == (
        "ConfigMap", "tencent1,tencent2,tencent4", "3/3", "3/3")
