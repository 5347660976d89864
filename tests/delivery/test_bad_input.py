"""Bad input never stops the rest: the affected cluster's status and an Event say exactly why."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from multicluster.kube import ClusterClient
from tests.delivery.helpers import Env, MakeEnv, eventually

pytestmark = pytest.mark.integration

ALL = ["cluster1", "cluster2", "cluster3"]


def cm(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}}


def phases(st: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["phase"] for e in st.get("clusters") or []}


async def wait_phases(env: Env, name: str, expect: dict[str, str], timeout: float = 20.0) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        st = await env.status(name)
        return st if phases(st) == expect else None
    return await eventually(check, timeout=timeout, what=f"{name} phases {expect}")


async def test_bad_patches_and_unknown_cluster_affect_only_their_cluster(make_env: MakeEnv) -> None:
    env = await make_env()
    customize = [
        {"name": "cluster2", "action": [{"op": "replace", "path": "/data/k/deeper/still", "value": ["x"]}]},
        {"name": "cluster3", "action": [{"op": "frobnicate", "path": "/data/k", "value": ["x"]}]},
        {"name": "elsewhere", "action": [{"op": "remove", "path": "/nothing/here"}]},  # not placed: ignored
    ]
    await env.apply_cr(env.cr("bad", cm("bad-cm"), clusters=[*ALL, "nope"], customize=customize))
    st = await wait_phases(env, "bad", {"cluster1": "Applied", "cluster2": "InvalidPatch",
                                        "cluster3": "InvalidPatch", "nope": "UnknownCluster"})
    msgs = {e["name"]: e["message"] for e in st["clusters"]}
    assert msgs["cluster2"].startswith("spec.customize.clusters[0].action[0] (replace /data/k/deeper/still):")
    assert "frobnicate" in msgs["cluster3"] and "spec.customize.clusters[1].action[0]" in msgs["cluster3"]
    assert "not configured" in msgs["nope"] and "cluster1, cluster2, cluster3" in msgs["nope"]
    assert st["applied"] == "1/4"
    applied = next(c for c in st["conditions"] if c["type"] == "Applied")
    assert applied["status"] == "False" and "cluster2: InvalidPatch" in applied["message"]
    assert await env.get("cluster1", env.cm_path("bad-cm")) is not None
    assert await env.get("cluster2", env.cm_path("bad-cm")) is None
    await env.event("InvalidPatch", "cluster cluster2: spec.customize")
    await env.event("UnknownCluster", "cluster nope: ")

    # Fixing the spec is all it takes.
    fixed = [{"name": "cluster2", "action": [{"op": "add", "path": "/data/extra", "value": "plain RFC 6902"}]}]
    await env.apply_cr(env.cr("bad", cm("bad-cm"), clusters=ALL, customize=fixed))
    await env.wait_applied("bad", "3/3")
    obj = await env.get("cluster2", env.cm_path("bad-cm"))
    assert obj and obj["data"]["extra"] == "plain RFC 6902"

    # An unknown cluster never blocks deletion.
    await env.apply_cr(env.cr("bad", cm("bad-cm"), clusters=["cluster1", "nope"]))
    await env.delete_cr("bad")

    async def gone() -> bool:
        return await env.get_cr("bad") is None
    await eventually(gone, timeout=10, what="CR with an unknown cluster deleted")


async def test_unknown_kind_and_invalid_template(make_env: MakeEnv) -> None:
    env = await make_env()
    weird = {"apiVersion": "example.com/v1", "kind": "Frobnicator", "metadata": {"name": "f"}}
    await env.apply_cr(env.cr("uk", weird, clusters=ALL))
    await env.apply_cr(env.cr("nameless", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}},
                              clusters=ALL))
    await env.apply_cr(env.cr("good", cm("good-cm"), clusters=ALL))
    st = await wait_phases(env, "uk", dict.fromkeys(ALL, "UnknownKind"))
    assert "no API group there serves kind Frobnicator" in st["clusters"][0]["message"]
    wrong_version = {"apiVersion": "apps/v1beta1", "kind": "Deployment", "metadata": {"name": "d"}}
    await env.apply_cr(env.cr("uk", wrong_version, clusters=["cluster1"]))
    st = await wait_phases(env, "uk", {"cluster1": "UnknownKind"})
    assert "Deployment is served there as apps/v1" in st["clusters"][0]["message"]
    st = await wait_phases(env, "nameless", dict.fromkeys(ALL, "InvalidTemplate"))
    assert st["clusters"][0]["message"] == "spec.template.metadata.name is missing"
    await env.wait_applied("good", "3/3")  # the controller kept going
    await env.event("UnknownKind", "Frobnicator")
    await env.event("InvalidTemplate", "metadata.name is missing")


async def test_member_validation_and_missing_namespace(make_env: MakeEnv, unique: str) -> None:
    # Another namespace than the CR's own needs an operator rule (the default policy refuses it).
    env = await make_env(delivery={"policy": [{"toNamespaces": ["*"]}]})
    missing = f"missing-{unique}"
    customize = [
        {"name": "cluster2", "action": [{"op": "replace", "path": "/metadata/namespace", "value": [missing]}]},
        {"name": "cluster3", "action": [{"op": "add", "path": "/data/bad key!", "value": "x"}]},
    ]
    await env.apply_cr(env.cr("val", cm("val-cm"), clusters=ALL, customize=customize))
    st = await wait_phases(env, "val", {"cluster1": "Applied", "cluster2": "NamespaceMissing",
                                        "cluster3": "Invalid"})
    msgs = {e["name"]: e["message"] for e in st["clusters"]}
    assert f"namespace {missing} does not exist there" in msgs["cluster2"]
    assert msgs["cluster3"].startswith(f"rejected ConfigMap {env.ns}/val-cm: ")
    assert "bad key!" in msgs["cluster3"]  # the member's own validation message
    await env.event("Invalid", "cluster cluster3: rejected")
    await env.event("NamespaceMissing", f"cluster cluster2: namespace {missing}")

    # Retries back off instead of spinning (0.5 s, 1 s, 2 s, ... with jitter).
    key = (env.ns, "val")
    await asyncio.sleep(4)
    failures = env.controller.queue.failures(key)
    assert 1 <= failures <= 6, failures

    # Once the namespace exists, the retry delivers there without any change to the CR.
    c2: ClusterClient = env.client("cluster2")
    await c2.request("POST", "/api/v1/namespaces", body={"metadata": {"name": missing}})
    await wait_phases(env, "val", {"cluster1": "Applied", "cluster2": "Applied", "cluster3": "Invalid"}, timeout=30)
    assert await env.get("cluster2", env.cm_path("val-cm", ns=missing)) is not None


async def test_invalid_placement_entry_is_reported(make_env: MakeEnv) -> None:
    env = await make_env()
    cr = env.cr("ip", cm("ip-cm"))
    cr["spec"]["placement"] = {"clusters": [{"name": "cluster2"}, {"nome": "typo"}]}
    await env.apply_cr(cr)

    async def check() -> dict[str, Any] | None:
        st = await env.status("ip")
        return st if st.get("applied") == "1/1" else None
    st = await eventually(check, what="valid entries delivered")
    applied = next(c for c in st["conditions"] if c["type"] == "Applied")
    assert applied["status"] == "False" and applied["reason"] == "InvalidSpec"
    assert "spec.placement.clusters[1] has no name" in applied["message"]
    await env.event("InvalidSpec", "has no name")
