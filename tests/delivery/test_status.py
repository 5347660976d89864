"""Status from the members: each copy's own status, summarised per cluster, health verdicts, Ready, the columns.

The harness runs kube-controller-manager but no scheduler, kubelet, cloud provider or volume provisioner, so
Deployments get ReplicaSets and Pods that stay Pending, Jobs stay running, PVCs stay Pending and no load balancer
is ever assigned: the verdicts below are what those real objects report. The one status the test writes itself
is a LoadBalancer Service's ingress, the part a cloud provider's controller would write.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from multicluster.delivery import apply
from multicluster.testing.harness import Harness
from tests.delivery.helpers import KUBECTL, MakeEnv, eventually, kubectl_table

pytestmark = pytest.mark.integration

ALL = ["cluster1", "cluster2", "cluster3"]


def deployment(name: str, replicas: int, **spec: Any) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, **spec,
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "main", "image": "registry.example/web:1"}]}}}}


async def entries_where(env: Any, name: str, pred: Any, what: str, timeout: float = 60.0) -> dict[str, Any]:
    """Until every placed cluster's entry satisfies pred; returns the status."""
    seen: list[dict[str, Any]] = [{}]

    async def check() -> dict[str, Any] | None:
        st = seen[0] = await env.status(name)
        es = st.get("clusters") or []
        return st if es and len(es) == st.get("placedClusters") and all(pred(e) for e in es) else None
    try:
        return await eventually(check, timeout=timeout, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last status: {seen[0]!r}") from None


async def test_deployment_status_follows_the_members(make_env: MakeEnv) -> None:
    env = await make_env()
    await env.apply_cr(env.cr("web", deployment("web", 2), clusters=ALL))
    st = await entries_where(env, "web", lambda e: e.get("healthMessage") == "0/2 replicas available"
                             and e.get("replicas") == 2, "the deployment controller's status in every cluster")
    assert (st["placedClusters"], st["appliedClusters"], st["readyClusters"]) == (3, 3, 0)
    assert (st["applied"], st["ready"]) == ("3/3", "0/3")
    for e in st["clusters"]:
        # kube-controller-manager made a ReplicaSet and 2 Pods; no kubelet runs them, so none is available.
        assert e["health"] == "Progressing" and e["ready"] is False and e["applied"] is True
        assert (e["readyReplicas"], e["availableReplicas"], e["updatedReplicas"]) == (0, 0, 2)
        assert e["generation"] == e["observedGeneration"] == 1
        assert {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"} in e["conditions"]
        assert all(set(c) <= {"type", "status", "reason"} for c in e["conditions"])
    ready = {c["type"]: c for c in st["conditions"]}["Ready"]
    assert ready["status"] == "False" and ready["reason"] == "NotReady"
    assert ready["message"].startswith("cluster1: Progressing: 0/2 replicas available; cluster2: ")

    # The spec of the member's copy changes (a new generation); the controller-manager observes it and the
    # summary follows without any apply from us (the copy is ours and unchanged in what we set).
    await env.patch_cr("web", {"spec": {"template": {"spec": {"replicas": 3}}}})
    await entries_where(env, "web", lambda e: e.get("healthMessage") == "0/3 replicas available"
                        and e.get("generation") == 2 and e.get("observedGeneration") == 2, "generation 2 observed")


async def test_verdicts_of_real_objects(make_env: MakeEnv) -> None:
    env = await make_env()
    two = ["cluster2", "cluster3"]
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once"},
           "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [
               {"name": "main", "image": "registry.example/job:1"}]}}}}
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc"},
           "spec": {"ports": [{"port": 80}], "selector": {"app": "x"}}}
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "conf"}, "data": {"k": "v"}}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "solo"},
           "spec": {"containers": [{"name": "main", "image": "registry.example/solo:1"}]}}
    crs = {"job": job, "svc": svc, "pvc": pvc, "cm": cm, "pod": pod,
           "zero": deployment("zero", 0), "stuck": deployment("stuck", 1, progressDeadlineSeconds=1)}
    for name, tpl in crs.items():
        await env.apply_cr(env.cr(name, tpl, clusters=two))

    expect = {
        "job": ("Progressing", "running: 1 active, 0 succeeded"),  # its Pod is Pending forever
        "svc": ("Healthy", "exists"),  # ClusterIP
        "pvc": ("Progressing", "Pending: no volume bound yet"),  # no provisioner, no volumes
        "cm": ("Healthy", "exists"),
        "pod": ("Progressing", "Pending (not scheduled yet)"),  # no scheduler
        "zero": ("Healthy", "0/0 replicas available"),  # scaled to zero: nothing to roll out
    }
    for name, (verdict, message) in expect.items():
        st = await entries_where(env, name, lambda e, v=verdict, m=message: (e.get("health"), e.get("healthMessage"))
                                 == (v, m), f"{name}: {verdict} {message}")
        ready = {c["type"]: c for c in st["conditions"]}["Ready"]
        assert (ready["status"] == "True") == (verdict == "Healthy"), (name, ready)
        assert st["ready"] == ("2/2" if verdict == "Healthy" else "0/2")
    # The deployment controller gives up after progressDeadlineSeconds: Unhealthy, with its reason.
    st = await entries_where(env, "stuck", lambda e: e.get("health") == "Unhealthy", "stuck: Unhealthy")
    e = st["clusters"][0]
    assert e["healthMessage"].startswith("0/1 replicas available; ") and "progress" in e["healthMessage"]
    assert {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"} in e["conditions"]
    ready = {c["type"]: c for c in st["conditions"]}["Ready"]
    assert ready["message"].startswith("cluster2: Unhealthy: 0/1 replicas available; ")

    # `kubectl get mcr` (the real binary against the master) shows the counts in the CRD's printer columns.
    rows = await kubectl_table(env.harness, "cluster1", "get", "mcr", "-n", env.ns)
    assert rows["cm"]["APPLIED"] == "2/2" and rows["cm"]["READY"] == "2/2"
    assert rows["pvc"]["APPLIED"] == "2/2" and rows["pvc"]["READY"] == "0/2"
    assert rows["stuck"]["KIND"] == "Deployment" and rows["stuck"]["CLUSTERS"] == "cluster2,cluster3"
    assert KUBECTL


async def test_copy_status_updates_are_coalesced(make_env: MakeEnv, harness: Harness,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy whose status changes fast (here: the load balancer address a cloud provider would write, 40 times)
    requeues its CR at most once per status_interval, the last value wins, and nothing is re-applied.

    The controller runs in this process, so its reconciles, status writes and applies of this CR are counted
    where they happen, each with the monotonic time it started; the bound is taken over the same window as the
    count, so a slow machine widens both and cannot fail the test."""
    interval = 1.0
    env = await make_env(status_interval=interval)
    key = (env.ns, "lb")
    reconciles: list[float] = []
    writes: list[float] = []
    applies: list[float] = []

    reconcile = env.controller.reconciler.reconcile

    async def counted_reconcile(k: tuple[str, str], cr: Any) -> Any:
        if k == key:
            reconciles.append(time.monotonic())
        return await reconcile(k, cr)

    write_status = env.controller.crs.write_status

    async def counted_write(cr: Any, status: Any) -> None:
        if (cr["metadata"]["namespace"], cr["metadata"]["name"]) == key:
            writes.append(time.monotonic())
        await write_status(cr, status)

    deliver = apply.deliver

    async def counted_deliver(client: Any, owner: Any, *args: Any, **kwargs: Any) -> Any:
        if owner.key == key:
            applies.append(time.monotonic())
        return await deliver(client, owner, *args, **kwargs)

    monkeypatch.setattr(env.controller.reconciler, "reconcile", counted_reconcile)
    monkeypatch.setattr(env.controller.crs, "write_status", counted_write)
    monkeypatch.setattr(apply, "deliver", counted_deliver)

    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb"},
           "spec": {"type": "LoadBalancer", "ports": [{"port": 80}], "selector": {"app": "x"}}}
    await env.apply_cr(env.cr("lb", svc, clusters=["cluster2"]))
    await entries_where(env, "lb", lambda e: e.get("healthMessage") == "waiting for a load balancer address",
                        "LoadBalancer without an address: Progressing")
    assert applies, "the copy was applied once"
    path = f"/api/v1/namespaces/{env.ns}/services/lb"
    copy_before = await env.get("cluster2", path)
    assert copy_before is not None

    start = time.monotonic()
    for i in range(40):
        body = {"status": {"loadBalancer": {"ingress": [{"ip": f"203.0.113.{i + 1}"}]}}}
        await env.client("cluster2").request("PATCH", path + "/status", body=body,
                                             content_type="application/merge-patch+json")
        await asyncio.sleep(0.025)
    st = await entries_where(env, "lb", lambda e: e.get("healthMessage") == "load balancer: 203.0.113.40",
                             "the last address")
    await asyncio.sleep(3 * interval)  # a pending, coalesced reconcile lands in the window counted below
    end = time.monotonic()
    assert st["clusters"][0]["health"] == "Healthy" and st["ready"] == "1/1"

    # Never re-applied: status-only changes of the copy cost no request to the member.
    assert [t for t in applies if t >= start] == []
    copy_after = await env.get("cluster2", path)
    assert copy_after is not None

    def applied(obj: dict[str, Any]) -> list[dict[str, Any]]:
        return [m for m in obj["metadata"]["managedFields"] if m["operation"] == "Apply"]

    assert applied(copy_after) == applied(copy_before) and len(applied(copy_after)) == 1

    # At most once per interval: a copy's status change waits until status_interval after the CR's last status
    # write. A change that arrives while a reconcile is under way (before it records its write) may requeue the CR
    # once more at once, so the bound allows two per interval of the window, plus one; unchecked, each of the 40
    # changes would be a reconcile and a status write.
    bound = 2 * (int((end - start) / interval) + 1)
    requeued = [t for t in reconciles if t >= start]
    written = [t for t in writes if t >= start]
    assert 1 <= len(requeued) <= bound, (len(requeued), bound, end - start)
    assert 1 <= len(written) <= bound, (len(written), bound, end - start)
