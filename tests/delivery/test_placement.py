"""Placement by label: spec.placement.clusterSelector over the labels of the MultiCluster objects on the master.

The labels are set the way a user sets them, with the real kubectl against the master
(`kubectl label multicluster cluster2 KEY=on`); each test uses a label key of its own, so tests that share the
MultiCluster objects in `default` never see each other's labels.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from multicluster.config import ClusterConfig, RetryConfig
from multicluster.delivery import install_crds
from multicluster.kube import APPLY_PATCH, ClusterClient
from multicluster.testing.harness import Harness
from tests.delivery.helpers import Env, MakeEnv, eventually, kubectl

pytestmark = pytest.mark.integration

ALL = ["cluster1", "cluster2", "cluster3"]
MC = "/apis/mulitcluster.practice.com/v1alpha1/namespaces/default/multiclusters"


def cm(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}}


async def publish(master: ClusterClient, name: str) -> None:
    """Write a MultiCluster object the way membership.py does (server-side apply, its field manager, force)."""
    body = {"apiVersion": "mulitcluster.practice.com/v1alpha1", "kind": "MultiCluster",
            "metadata": {"name": name, "namespace": "default",
                         "labels": {"multicluster.practice.com/managed-by": "multicluster"}},
            "spec": {"name": name, "isMaster": "true" if name == "cluster1" else "false"}}
    await master.request("PATCH", f"{MC}/{name}", params={"fieldManager": "multicluster-membership", "force": "true"},
                         body=body, content_type=APPLY_PATCH)


@pytest.fixture
async def key(harness: Harness, unique: str) -> AsyncIterator[str]:
    """A label key of this test's own; the MultiCluster objects exist (as membership.py publishes them) and lose
    this key at the end."""
    master = ClusterClient(ClusterConfig("cluster1", harness.servers["cluster1"].kubeconfig))
    try:
        await install_crds(master)  # as the controller does at start
        for name in ALL:
            await publish(master, name)
    finally:
        await master.close()
    k = f"placement.example.com/t-{unique}"
    yield k
    for name in ALL:
        await kubectl(harness, "cluster1", "label", "multicluster", name, "-n", "default", f"{k}-")


async def label(env: Env, cluster: str, key: str, value: str | None) -> None:
    arg = f"{key}-" if value is None else f"{key}={value}"
    await kubectl(env.harness, "cluster1", "label", "multicluster", cluster, "-n", "default", arg, "--overwrite")


async def placed(env: Env, name: str, expect: str, timeout: float = 30.0) -> dict[str, Any]:
    """Until status.targetClusters == expect and every placed copy is applied."""
    async def check() -> dict[str, Any] | None:
        st = await env.status(name)
        n = len([c for c in expect.split(",") if c])
        ok = st.get("targetClusters") == expect and st.get("applied") == f"{n}/{n}"
        return st if ok and len(st.get("clusters") or []) == n else None
    return await eventually(check, timeout=timeout, what=f"{name} placed on {expect!r}")


async def holders(env: Env, cm_name: str) -> list[str]:
    return [c for c in env.clients if await env.get(c, env.cm_path(cm_name)) is not None]


async def test_relabelling_adds_and_removes_copies(make_env: MakeEnv, key: str) -> None:
    env = await make_env()
    sel = {"matchLabels": {key: "on"}}
    cr = env.cr("bylabel", cm("bylabel-cm"))
    cr["spec"]["placement"] = {"clusterSelector": sel}
    await env.apply_cr(cr)
    st = await placed(env, "bylabel", "")  # nothing carries the label: placed nowhere (not on the master)
    assert (st["placedClusters"], st["applied"], st["ready"]) == (0, "0/0", "0/0")
    assert await holders(env, "bylabel-cm") == []

    await label(env, "cluster2", key, "on")
    await placed(env, "bylabel", "cluster2")
    assert await holders(env, "bylabel-cm") == ["cluster2"]
    # The daemon publishing the object again (as it does on every health change) keeps the user's label.
    await publish(env.master, "cluster2")
    obj = await env.master.get(f"{MC}/cluster2")
    assert obj["metadata"]["labels"][key] == "on"
    await label(env, "cluster3", key, "on")
    await placed(env, "bylabel", "cluster2,cluster3")
    assert await holders(env, "bylabel-cm") == ["cluster2", "cluster3"]

    # Relabelled out of the selector: that copy is removed, the other stays.
    await label(env, "cluster2", key, "off")
    await placed(env, "bylabel", "cluster3")
    assert await holders(env, "bylabel-cm") == ["cluster3"]
    await env.event("Removed", "cluster cluster2 left the placement")

    # Names and selector together: the union, named clusters first.
    both = env.cr("both", cm("both-cm"), clusters=["cluster1"])
    both["spec"]["placement"]["clusterSelector"] = {
        "matchExpressions": [{"key": key, "operator": "In", "values": ["on", "maybe"]}]}
    await env.apply_cr(both)
    await placed(env, "both", "cluster1,cluster3")
    assert await holders(env, "both-cm") == ["cluster1", "cluster3"]
    # An expression selector follows relabelling too (NotIn/Exists are covered by the unit tests).
    await label(env, "cluster2", key, "maybe")
    await placed(env, "both", "cluster1,cluster2,cluster3")
    await placed(env, "bylabel", "cluster3")


async def test_join_and_unjoin_with_a_selector(make_env: MakeEnv, harness: Harness, key: str) -> None:
    env = await make_env(names={"cluster1": "cluster1", "cluster2": "cluster2"})
    await label(env, "cluster2", key, "on")
    await label(env, "cluster3", key, "on")  # labelled, but not a cluster of this daemon yet
    cr = env.cr("joins", cm("joins-cm"))
    cr["spec"]["placement"] = {"clusterSelector": {"matchLabels": {key: "on"}}}
    await env.apply_cr(cr)
    await placed(env, "joins", "cluster2")

    joined = ClusterClient(ClusterConfig("cluster3", harness.servers["cluster3"].kubeconfig))
    try:
        env.clients["cluster3"] = joined  # what the daemon does on join
        await env.controller.clusters_changed()
        await placed(env, "joins", "cluster2,cluster3")
        assert await env.get("cluster3", env.cm_path("joins-cm")) is not None

        del env.clients["cluster3"]  # unjoin
        await env.controller.clusters_changed()
        st = await placed(env, "joins", "cluster2")
        assert [e["name"] for e in st["clusters"]] == ["cluster2"]  # no longer reported
        # As for any unjoined cluster: the daemon cannot reach it any more, so its copy is left and said so.
        await env.event("CleanupSkipped", "cluster cluster3 is not configured any more")
    finally:
        await joined.close()


async def test_bad_selector_is_invalid_and_keeps_the_copies(make_env: MakeEnv, key: str) -> None:
    env = await make_env()
    await label(env, "cluster3", key, "on")
    cr = env.cr("badsel", cm("badsel-cm"))
    cr["spec"]["placement"] = {"clusterSelector": {"matchLabels": {key: "on"}}}
    await env.apply_cr(cr)
    await placed(env, "badsel", "cluster3")

    await env.patch_cr("badsel", {"spec": {"placement": {"clusterSelector": {
        "matchLabels": None, "matchExpressions": [{"key": key, "operator": "In", "values": []}]}}}})
    field = "spec.placement.clusterSelector.matchExpressions[0].values"

    async def invalid() -> dict[str, Any] | None:
        conds = {c["type"]: c for c in (await env.status("badsel")).get("conditions") or []}
        c = conds.get("Invalid")
        return c if c and c["status"] == "True" else None
    cond = await eventually(invalid, what="Invalid condition")
    assert cond["message"].startswith(f"{field}: In needs at least one value")
    await env.event("InvalidSpec", field)
    # Nothing was removed: the copy stays where the last valid selector put it.
    st = await env.status("badsel")
    assert st["targetClusters"] == "cluster3" and await holders(env, "badsel-cm") == ["cluster3"]

    await env.patch_cr("badsel", {"spec": {"placement": {"clusterSelector": {
        "matchExpressions": [{"key": key, "operator": "Exists"}]}}}})

    async def valid() -> dict[str, Any] | None:
        conds = {c["type"]: c for c in (await env.status("badsel")).get("conditions") or []}
        return conds if conds.get("Invalid", {}).get("status") == "False" else None
    await eventually(valid, what="Invalid condition False again")
    await placed(env, "badsel", "cluster3")


async def test_kubectl_explain_describes_placement_and_status(make_env: MakeEnv, harness: Harness) -> None:
    await make_env()  # installs the CRD on the master

    async def explain(path: str, *words: str) -> str | None:
        out = await kubectl(harness, "cluster1", "explain", f"multiclusterresources.{path}")
        return out if all(w in out for w in words) else None
    out = await eventually(lambda: explain("spec.placement", "clusterSelector", "union"), timeout=60,
                           what="kubectl explain spec.placement from the published schema")
    assert "MultiCluster object" in out
    await eventually(lambda: explain("spec.placement.clusterSelector.matchExpressions.operator", "DoesNotExist"),
                     timeout=30, what="explain the selector's operator")
    out = await eventually(lambda: explain("status.clusters", "health", "readyReplicas", "observedGeneration"),
                           timeout=30, what="kubectl explain status.clusters")
    assert "Unhealthy" in out


async def test_override_rules_select_clusters_by_the_same_labels(make_env: MakeEnv, key: str) -> None:
    """targetCluster.labelSelector of an override rule reads the MultiCluster labels too, and a relabel re-renders."""
    env = await make_env()
    await label(env, "cluster3", key, "on")
    cr = env.cr("ovl", cm("ovl-cm"), clusters=["cluster2", "cluster3"])
    cr["spec"]["overrideRules"] = [{"targetCluster": {"labelSelector": {"matchLabels": {key: "on"}}},
                                    "overriders": {"labelsOverrider": [{"operator": "add",
                                                                        "value": {"picked": "yes"}}]}}]
    await env.apply_cr(cr)
    await placed(env, "ovl", "cluster2,cluster3")

    async def picked() -> list[str]:
        return [c for c in ("cluster2", "cluster3")
                if ((await env.get(c, env.cm_path("ovl-cm")) or {}).get("metadata", {}).get("labels") or {})
                .get("picked") == "yes"]
    await eventually(lambda: _equals(picked, ["cluster3"]), what="only the labelled cluster's copy overridden")
    await label(env, "cluster2", key, "on")
    await eventually(lambda: _equals(picked, ["cluster2", "cluster3"]), what="the relabelled cluster's copy too")


async def _equals(fn: Any, want: list[str]) -> bool:
    return bool(await fn() == want)


async def test_cluster_labels_forget_what_went_away_while_stopped(harness: Harness, unique: str, key: str) -> None:
    """ClusterLabels run again (a new leader term) starts from what the master holds now."""
    from multicluster.delivery.clusterlabels import ClusterLabels

    name = f"gone-{unique}"
    master = ClusterClient(ClusterConfig("cluster1", harness.servers["cluster1"].kubeconfig))
    changes: list[int] = []
    labels = ClusterLabels(master, lambda: changes.append(1), retry=RetryConfig().master_types)
    try:
        await publish(master, name)
        task = asyncio.create_task(labels.run())
        await asyncio.wait_for(labels.synced.wait(), 30)
        assert labels.get(name) == {"multicluster.practice.com/managed-by": "multicluster"}
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert not labels.synced.is_set()
        await master.request("DELETE", f"{MC}/{name}")
        task = asyncio.create_task(labels.run())
        await asyncio.wait_for(labels.synced.wait(), 30)
        assert name not in labels.snapshot() and labels.get("cluster1")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        with contextlib.suppress(Exception):
            await master.request("DELETE", f"{MC}/{name}")
        await master.close()
