"""Placement changes, renames, kind changes, deletion, drift correction, ownership and conflicts."""

from __future__ import annotations

import time
from typing import Any

import pytest

from multicluster.delivery import ADOPT_ANNOTATION, FINALIZER, MANAGED_BY_LABEL
from multicluster.kube import APPLY_PATCH, MERGE_PATCH
from tests.delivery.helpers import Env, MakeEnv, eventually

pytestmark = pytest.mark.integration

ALL = ["cluster1", "cluster2", "cluster3"]


def cm(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data or {"k": "v"}}


async def present(env: Env, path: str) -> set[str]:
    return {c for c in ALL if await env.get(c, path) is not None}


async def wait_present(env: Env, path: str, expect: set[str], timeout: float = 20.0) -> None:
    async def check() -> bool:
        return await present(env, path) == expect
    await eventually(check, timeout=timeout, what=f"{path} present exactly in {sorted(expect)}")


async def test_placement_shrink_grow_and_restart(make_env: MakeEnv) -> None:
    env = await make_env()
    await env.apply_cr(env.cr("pl", cm("pl-cm"), clusters=ALL))
    await env.wait_applied("pl", "3/3")
    cr = await env.get_cr("pl")
    assert cr and FINALIZER in cr["metadata"]["finalizers"]

    await env.apply_cr(env.cr("pl", cm("pl-cm"), clusters=["cluster1"]))
    await wait_present(env, env.cm_path("pl-cm"), {"cluster1"})
    st = await env.wait_applied("pl", "1/1")
    assert [e["name"] for e in st["clusters"]] == ["cluster1"]
    await env.event("Removed", f"cluster cluster2 left the placement: ConfigMap {env.ns}/pl-cm deleted")
    await env.event("Removed", f"cluster cluster3 left the placement: ConfigMap {env.ns}/pl-cm deleted")

    await env.apply_cr(env.cr("pl", cm("pl-cm"), clusters=["cluster1", "cluster3"]))
    await wait_present(env, env.cm_path("pl-cm"), {"cluster1", "cluster3"})
    await env.wait_applied("pl", "2/2")

    # What was delivered is remembered in the cluster (status), not in the process: a new controller that
    # finds the placement changed while it was down still removes the old copy.
    await env.stop()
    await env.apply_cr(env.cr("pl", cm("pl-cm"), clusters=["cluster2"]))
    await env.restart()
    await wait_present(env, env.cm_path("pl-cm"), {"cluster2"})
    await env.wait_applied("pl", "1/1")


async def test_rename_and_kind_change(make_env: MakeEnv) -> None:
    env = await make_env()
    await env.apply_cr(env.cr("rn", cm("old-name"), clusters=ALL))
    await env.wait_applied("rn", "3/3")
    await env.apply_cr(env.cr("rn", cm("new-name"), clusters=ALL))
    await wait_present(env, env.cm_path("old-name"), set())
    await wait_present(env, env.cm_path("new-name"), set(ALL))
    st = await env.wait_applied("rn", "3/3")
    assert {e["target"]["name"] for e in st["clusters"]} == {"new-name"}

    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "new-name"}, "stringData": {"a": "b"}}
    await env.apply_cr(env.cr("rn", secret, clusters=ALL))
    await wait_present(env, f"/api/v1/namespaces/{env.ns}/secrets/new-name", set(ALL))
    await wait_present(env, env.cm_path("new-name"), set())
    st = await env.wait_applied("rn", "3/3")
    assert {(e["target"]["kind"], e["target"]["resource"]) for e in st["clusters"]} == {("Secret", "secrets")}


async def test_delete_removes_copies_then_cr(make_env: MakeEnv) -> None:
    env = await make_env()
    await env.apply_cr(env.cr("del", cm("del-cm"), clusters=ALL))
    await env.wait_applied("del", "3/3")
    await env.delete_cr("del")

    async def gone() -> bool:
        return await env.get_cr("del") is None
    await eventually(gone, what="CR deleted after its copies")
    assert await present(env, env.cm_path("del-cm")) == set()


async def test_drift_hand_edit_and_delete_corrected(make_env: MakeEnv) -> None:
    env = await make_env()
    await env.apply_cr(env.cr("dr", cm("dr-cm", k="v"), clusters=ALL))
    await env.wait_applied("dr", "3/3")
    c2 = env.client("cluster2")
    path = env.cm_path("dr-cm")

    # kubectl edit / patch: an Update by another manager takes ownership of the field; we take it back.
    t0 = time.monotonic()
    await c2.request("PATCH", path, body={"data": {"k": "hand-edited"}}, content_type=MERGE_PATCH)

    async def reverted() -> bool:
        obj = await env.get("cluster2", path)
        return bool(obj and obj["data"]["k"] == "v")
    await eventually(reverted, timeout=5, interval=0.05, what="hand edit reverted")
    assert time.monotonic() - t0 < 3
    drift = await env.event("DriftCorrected", "cluster cluster2")
    assert ".data.k" in drift["message"]

    # Removing our label takes the copy out of the watch's selector: it is noticed and restored too.
    await c2.request("PATCH", path, body={"metadata": {"labels": {MANAGED_BY_LABEL: None}}},
                     content_type=MERGE_PATCH)

    async def relabelled() -> bool:
        obj = await env.get("cluster2", path)
        return bool(obj and obj["metadata"].get("labels", {}).get(MANAGED_BY_LABEL) == "multicluster")
    await eventually(relabelled, timeout=5, interval=0.05, what="managed-by label restored")

    t0 = time.monotonic()
    await c2.request("DELETE", path)

    async def recreated() -> bool:
        obj = await env.get("cluster2", path)
        return bool(obj and obj["data"]["k"] == "v")
    await eventually(recreated, timeout=5, interval=0.05, what="hand delete recreated")
    assert time.monotonic() - t0 < 3


async def test_foreign_object_not_overwritten_unless_adopted(make_env: MakeEnv) -> None:
    env = await make_env(delivery={"allowAdopt": True})
    c2 = env.client("cluster2")
    foreign = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "taken", "namespace": env.ns},
               "data": {"k": "theirs"}}
    await c2.request("POST", f"/api/v1/namespaces/{env.ns}/configmaps", body=foreign)

    await env.apply_cr(env.cr("fo", cm("taken", k="ours"), clusters=ALL))
    st = await env.wait_applied("fo", "2/3")
    e2 = next(e for e in st["clusters"] if e["name"] == "cluster2")
    assert e2["phase"] == "NotOwned" and e2["applied"] is False
    assert "not managed by multicluster" in e2["message"] and ADOPT_ANNOTATION in e2["message"]
    assert "target" not in e2
    obj = await env.get("cluster2", env.cm_path("taken"))
    assert obj and obj["data"]["k"] == "theirs" and MANAGED_BY_LABEL not in (obj["metadata"].get("labels") or {})
    await env.event("NotOwned", "cluster cluster2")

    # Deleting the CR never deletes what is not ours.
    await env.delete_cr("fo")

    async def gone() -> bool:
        return await env.get_cr("fo") is None
    await eventually(gone, what="CR deleted")
    assert await present(env, env.cm_path("taken")) == {"cluster2"}

    # Opt-in adoption takes it over.
    await env.apply_cr(env.cr("fo2", cm("taken", k="ours"), clusters=["cluster2"],
                              annotations={ADOPT_ANNOTATION: "true"}))
    await env.wait_applied("fo2", "1/1")
    obj = await env.get("cluster2", env.cm_path("taken"))
    assert obj and obj["data"]["k"] == "ours" and obj["metadata"]["labels"][MANAGED_BY_LABEL] == "multicluster"

    # An object delivered by another MultiClusterResource is never taken, even with adopt.
    await env.apply_cr(env.cr("fo3", cm("taken", k="mine"), clusters=["cluster2"],
                              annotations={ADOPT_ANNOTATION: "true"}))
    st3 = await env.wait_applied("fo3", "0/1")
    assert st3["clusters"][0]["phase"] == "NotOwned" and f"{env.ns}/fo2" in st3["clusters"][0]["message"]


async def test_conflict_with_another_applier_is_reported_not_forced(make_env: MakeEnv) -> None:
    env = await make_env()
    await env.apply_cr(env.cr("cf", cm("cf-cm", k="ours"), clusters=["cluster1", "cluster3"]))
    await env.wait_applied("cf", "2/2")
    # Another declarative owner (server-side apply, forced) takes the field.
    c3 = env.client("cluster3")
    other = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cf-cm", "namespace": env.ns},
             "data": {"k": "theirs"}}
    await c3.request("PATCH", env.cm_path("cf-cm"), params={"fieldManager": "other-tool", "force": True},
                     body=other, content_type=APPLY_PATCH)

    async def conflict() -> dict[str, Any] | None:
        e = await env.entry("cf", "cluster3")
        return e if e.get("phase") == "Conflict" else None
    e3 = await eventually(conflict, what="cluster3 reports the conflict")
    assert "other-tool" in e3["message"] and ".data.k" in e3["message"] and "not forced" in e3["message"]
    obj = await env.get("cluster3", env.cm_path("cf-cm"))
    assert obj and obj["data"]["k"] == "theirs"
    assert (await env.status("cf"))["applied"] == "1/2"
