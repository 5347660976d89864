"""Which clusters: master-only default, CRs outside the master ignored, unreachable clusters bounded."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from multicluster.delivery import install_crds
from multicluster.testing.harness import Harness
from tests.delivery.helpers import MCR, MakeEnv, dead_kubeconfig, eventually

pytestmark = pytest.mark.integration

ALL = ["cluster1", "cluster2", "cluster3"]


def cm(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}}


async def test_empty_placement_means_master_only(make_env: MakeEnv) -> None:
    env = await make_env()
    await env.apply_cr(env.cr("mo", cm("mo-cm")))  # no placement at all
    st = await env.wait_applied("mo", "1/1")
    assert st["targetClusters"] == "cluster1"
    assert [c for c in ALL if await env.get(c, env.cm_path("mo-cm"))] == ["cluster1"]
    cr = env.cr("mo2", cm("mo2-cm"))
    cr["spec"]["placement"] = {"clusters": []}
    await env.apply_cr(cr)
    st = await env.wait_applied("mo2", "1/1")
    assert st["targetClusters"] == "cluster1"


async def test_crs_outside_the_master_are_ignored(make_env: MakeEnv) -> None:
    env = await make_env()
    c2 = env.client("cluster2")
    await install_crds(c2)  # cluster2 can hold the CR; the controller must still leave it alone
    foreign = env.cr("elsewhere", cm("elsewhere-cm"), clusters=ALL)
    await c2.request("POST", f"{MCR}/namespaces/{env.ns}/multiclusterresources", body=foreign)
    await env.apply_cr(env.cr("control", cm("control-cm"), clusters=ALL))
    await env.wait_applied("control", "3/3")
    await asyncio.sleep(1.5)
    obj = await c2.get(f"{MCR}/namespaces/{env.ns}/multiclusterresources/elsewhere")
    assert "status" not in obj and not obj["metadata"].get("finalizers")
    assert [c for c in ALL if await env.get(c, env.cm_path("elsewhere-cm"))] == []


async def test_unreachable_cluster_is_reported_and_does_not_block_deletion(
        make_env: MakeEnv, harness: Harness, unique: str) -> None:
    ghost = dead_kubeconfig(harness.workdir, f"ghost-{unique}")
    env = await make_env(extra={"ghost": ghost}, cleanup_timeout=3.0)
    await env.apply_cr(env.cr("ur", cm("ur-cm"), clusters=["cluster1", "ghost"]))
    st = await env.wait_applied("ur", "1/2")

    async def unreachable() -> dict[str, Any] | None:
        e = await env.entry("ur", "ghost")
        return e if e.get("phase") == "Unreachable" else None
    e = await eventually(unreachable, what="ghost reported unreachable")
    assert "cannot connect" in e["message"] or "unreachable" in e["message"]
    assert st["clusters"][0]["name"] == "cluster1" and st["clusters"][0]["applied"]

    t0 = time.monotonic()
    await env.delete_cr("ur")

    async def gone() -> bool:
        return await env.get_cr("ur") is None
    await eventually(gone, timeout=30, what="CR deleted despite the unreachable cluster")
    took = time.monotonic() - t0
    assert 2.5 <= took < 20, took
    assert await env.get("cluster1", env.cm_path("ur-cm")) is None
    skipped = await env.event("CleanupSkipped", "cluster ghost")
    assert skipped["type"] == "Warning" and "giving up" in skipped["message"]


async def test_clusters_joining_and_leaving_are_seen(make_env: MakeEnv, harness: Harness) -> None:
    """The controller uses the daemon's live client mapping; clusters_changed() re-evaluates every CR."""
    from multicluster.config import ClusterConfig
    from multicluster.kube import ClusterClient

    env = await make_env(names={"cluster1": "cluster1", "cluster2": "cluster2"})
    await env.apply_cr(env.cr("jn", cm("jn-cm"), clusters=["cluster1", "cluster3"]))
    st = await env.wait_applied("jn", "1/2")
    assert [e["phase"] for e in st["clusters"]] == ["Applied", "UnknownCluster"]

    joined = ClusterClient(ClusterConfig("cluster3", harness.servers["cluster3"].kubeconfig))
    env.clients["cluster3"] = joined  # what the daemon does on join / reload
    await env.controller.clusters_changed()
    await env.wait_applied("jn", "2/2")
    assert await env.get("cluster3", env.cm_path("jn-cm")) is not None

    del env.clients["cluster3"]  # unjoin
    await env.controller.clusters_changed()
    st = await env.wait_applied("jn", "1/2")
    assert st["clusters"][1]["phase"] == "UnknownCluster"
    assert not any(name.startswith(f"{env.controller.opts.task_prefix}/watch/cluster3/")
                   for name in env.controller.supervisor.names())
    await joined.close()
