"""Conflict and lifecycle on the real harness (issue #16): conflictResolution Abort vs Overwrite, suspend,
deletionPolicy Orphan, and retain with a member-side `kubectl scale` that is not reverted."""

from __future__ import annotations

from typing import Any

import pytest

from multicluster.delivery import MANAGED_BY_LABEL, OWNER_ANNOTATION
from tests.delivery.helpers import Env, MakeEnv, eventually
from tests.delivery.test_authorization import cm, condition, deployment
from tests.kube.conftest import run_kubectl

pytestmark = pytest.mark.integration

MEMBERS = ["cluster2", "cluster3"]


def marks(obj: dict[str, Any]) -> list[str]:
    md = obj["metadata"]
    return [k for k in [*(md.get("labels") or {}), *(md.get("annotations") or {})]
            if k.startswith("multicluster.practice.com/")]


async def test_abort_leaves_a_foreign_object_and_overwrite_takes_it_where_allowed(make_env: MakeEnv) -> None:
    env = await make_env()
    c2 = env.client("cluster2")
    await c2.request("POST", f"/api/v1/namespaces/{env.ns}/configmaps", body=cm("theirs", namespace=env.ns,
                                                                                   k="before"))
    await env.apply_cr(env.cr("ab", cm("theirs", k="ours"), clusters=MEMBERS))  # Abort is the default
    conflict = await condition(env, "ab", "Conflict", "True")
    assert conflict["reason"] == "NotOwned"
    assert f"cluster2: ConfigMap {env.ns}/theirs exists and is not managed by multicluster" in conflict["message"]
    assert "cluster3" not in conflict["message"]
    assert (await env.entry("ab", "cluster2"))["phase"] == "NotOwned"
    assert (await env.entry("ab", "cluster3"))["phase"] == "Applied"
    live = await env.get("cluster2", env.cm_path("theirs"))
    assert live and live["data"] == {"k": "before"} and not marks(live)

    # Overwrite without the operator's allowAdopt: refused like the adopt annotation, nothing taken.
    overwrite = env.cr("ab", cm("theirs", k="ours"), clusters=MEMBERS)
    overwrite["spec"]["conflictResolution"] = "Overwrite"
    await env.apply_cr(overwrite)
    denied = await condition(env, "ab", "Denied", "True")
    assert denied["reason"] == "AdoptNotAllowed" and "conflictResolution: Overwrite" in denied["message"]
    live = await env.get("cluster2", env.cm_path("theirs"))
    assert live and live["data"] == {"k": "before"}
    await env.stop()

    # Allowed: taken over, the Conflict condition turns False, and deletion releases it (it existed before).
    env = await make_env(delivery={"allowAdopt": True})
    await env.wait_applied("ab", "2/2")
    assert (await condition(env, "ab", "Conflict", "False"))["reason"] == "NoConflict"
    live = await env.get("cluster2", env.cm_path("theirs"))
    assert live and live["data"] == {"k": "ours"}
    assert live["metadata"]["annotations"]["multicluster.practice.com/adopted"] == "true"
    await env.delete_cr("ab")

    async def released() -> dict[str, Any] | None:
        if await env.get_cr("ab") is not None or await env.get("cluster3", env.cm_path("theirs")) is not None:
            return None
        return await env.get("cluster2", env.cm_path("theirs"))
    kept = await eventually(released, what="CR gone, created copy deleted")
    assert kept["data"] == {"k": "ours"} and not marks(kept)


async def test_suspend_stops_changes_and_resuming_delivers_the_current_template(make_env: MakeEnv) -> None:
    env = await make_env()
    await env.apply_cr(env.cr("sp", cm("sp-cm", v="1"), clusters=MEMBERS))
    await env.wait_applied("sp", "2/2")
    suspended = env.cr("sp", cm("sp-cm", v="2"), clusters=["cluster2"])  # new data, cluster3 left the placement
    suspended["spec"]["suspend"] = True
    await env.apply_cr(suspended)
    cond = await condition(env, "sp", "Suspended", "True")
    assert "not changed" in cond["message"]
    # A hand edit is not corrected either while suspended.
    await env.client("cluster2").request("PATCH", env.cm_path("sp-cm"), body={"data": {"v": "hand"}},
                                         content_type="application/merge-patch+json")
    await env.controller.clusters_changed()  # every CR reconciled again: still nothing changes
    await condition(env, "sp", "Suspended", "True")
    two, three = await env.get("cluster2", env.cm_path("sp-cm")), await env.get("cluster3", env.cm_path("sp-cm"))
    assert two and two["data"] == {"v": "hand"}
    assert three and three["data"] == {"v": "1"}  # not removed although no longer placed
    assert (await env.status("sp"))["applied"] == "2/2"  # the last delivery's entries are kept

    suspended["spec"]["suspend"] = False
    await env.apply_cr(suspended)
    await env.wait_applied("sp", "1/1")
    assert (await condition(env, "sp", "Suspended", "False"))["reason"] == "Delivering"
    two = await env.get("cluster2", env.cm_path("sp-cm"))
    assert two and two["data"] == {"v": "2"}

    async def removed() -> bool:
        return await env.get("cluster3", env.cm_path("sp-cm")) is None
    await eventually(removed, what="cluster3's copy removed once resumed")


async def test_orphan_leaves_the_copies_without_our_marks(make_env: MakeEnv) -> None:
    env = await make_env()
    cr = env.cr("or", cm("or-cm", v="1"), clusters=MEMBERS)
    cr["spec"]["deletionPolicy"] = "Orphan"
    await env.apply_cr(cr)
    await env.wait_applied("or", "2/2")
    await env.delete_cr("or")

    async def gone() -> bool:
        return await env.get_cr("or") is None
    await eventually(gone, what="CR deleted")
    for c in MEMBERS:
        left = await env.get(c, env.cm_path("or-cm"))
        assert left is not None and left["data"] == {"v": "1"}, c
        assert not marks(left), c
        assert all((m["manager"], m["operation"]) != ("multicluster", "Apply")
                   for m in left["metadata"].get("managedFields") or []), c
    await env.event("Released", "cluster2: ConfigMap")


async def scale(env: Env, cluster: str, name: str, replicas: int) -> None:
    """The real kubectl, straight against the member (the scale subresource, as an HPA or an operator would)."""
    kubeconfig = env.harness.servers[env.names[cluster]].kubeconfig
    await run_kubectl(["--kubeconfig", str(kubeconfig), "-n", env.ns, "scale", f"deployment/{name}",
                       f"--replicas={replicas}"], env.harness.workdir / "kubectl-cache")


async def test_retained_replicas_survive_resyncs_while_other_hand_edits_are_reverted(make_env: MakeEnv) -> None:
    env = await make_env()
    kept, plain = deployment("rt-kept"), deployment("rt-plain")
    for d in (kept, plain):
        d["spec"]["replicas"] = 2
    cr = env.cr("rt", kept, clusters=["cluster2"])
    cr["spec"]["retain"] = ["/spec/replicas"]
    await env.apply_cr(cr)
    await env.apply_cr(env.cr("pl", plain, clusters=["cluster2"]))  # the control: no retain
    await env.wait_applied("rt", "1/1")
    await env.wait_applied("pl", "1/1")
    path = f"/apis/apps/v1/namespaces/{env.ns}/deployments"
    got = await env.get("cluster2", f"{path}/rt-kept")
    assert got and got["spec"]["replicas"] == 2  # created with the template's value

    await scale(env, "cluster2", "rt-kept", 4)
    await scale(env, "cluster2", "rt-plain", 4)

    async def plain_reverted() -> bool:
        obj = await env.get("cluster2", f"{path}/rt-plain") or {}
        return obj.get("spec", {}).get("replicas") == 2
    await eventually(plain_reverted, what="the unretained scale reverted")

    # A template change and a full resync reconcile the retained copy again: replicas stay the member's.
    kept["metadata"]["labels"] = {"rev": "2"}
    cr["spec"]["template"] = kept
    await env.apply_cr(cr)
    await env.wait_applied("rt", "1/1")
    await env.controller.clusters_changed()

    async def labelled() -> dict[str, Any] | None:
        obj = await env.get("cluster2", f"{path}/rt-kept") or {}
        return obj if (obj.get("metadata", {}).get("labels") or {}).get("rev") == "2" else None
    obj = await eventually(labelled, what="template change delivered")
    assert obj["spec"]["replicas"] == 4

    # A hand edit of a field that is not retained is still reverted; replicas still not.
    await env.client("cluster2").request("PATCH", f"{path}/rt-kept", body={"metadata": {"labels": {"rev": "x"}}},
                                         content_type="application/merge-patch+json")
    obj = await eventually(labelled, what="hand edit reverted")
    assert obj["spec"]["replicas"] == 4
    assert OWNER_ANNOTATION in obj["metadata"]["annotations"] and obj["metadata"]["labels"][MANAGED_BY_LABEL]
    st = await env.status("rt")
    assert [e["phase"] for e in st["clusters"]] == ["Applied"]
