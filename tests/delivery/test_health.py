"""health.summarize: the verdict and summary of a delivered copy, per kind, from the status its cluster reports.

The objects here are shaped like what the kube-apiserver and the controller-manager write (the harness tests in
test_status.py see the real ones); these cover the states the harness cannot reach (no scheduler, no kubelet,
no cloud provider, no volume provisioner).
"""

from __future__ import annotations

from typing import Any

import pytest

from multicluster.delivery.health import MAX_CONDITIONS, CopySummary, health, summarize


def dep(replicas: int = 2, status: dict[str, Any] | None = None, kind: str = "Deployment") -> dict[str, Any]:
    obj: dict[str, Any] = {"kind": kind, "metadata": {"generation": 2}, "spec": {"replicas": replicas}}
    if status is not None:
        obj["status"] = status
    return obj


def test_deployment() -> None:
    assert health(dep()) == ("Progressing", "waiting for the first status report")
    assert health(dep(status={"observedGeneration": 1, "replicas": 2})) == (
        "Progressing", "generation 2 not yet observed by its controller")
    assert health(dep(status={"observedGeneration": 2, "replicas": 2})) == ("Progressing", "0/2 replicas available")
    ok = {"observedGeneration": 2, "replicas": 2, "readyReplicas": 2, "availableReplicas": 2, "updatedReplicas": 2}
    assert health(dep(status=ok)) == ("Healthy", "2/2 replicas available")
    # Available but not all updated yet: a rollout in progress.
    rolling = {**ok, "updatedReplicas": 1, "replicas": 3}
    assert health(dep(status=rolling)) == ("Progressing", "2/2 replicas available")
    stalled = {"observedGeneration": 2, "conditions": [{"type": "Progressing", "status": "False",
                                                        "reason": "ProgressDeadlineExceeded",
                                                        "message": 'ReplicaSet "x" has timed out progressing.'}]}
    assert health(dep(status=stalled)) == ("Unhealthy", '0/2 replicas available; ReplicaSet "x" has timed out '
                                                        "progressing.")
    quota = {"observedGeneration": 2, "conditions": [{"type": "ReplicaFailure", "status": "True",
                                                      "reason": "FailedCreate", "message": "exceeded quota"}]}
    assert health(dep(status=quota)) == ("Unhealthy", "0/2 replicas available; exceeded quota")
    # Scaled to zero: nothing to roll out.
    assert health(dep(0, {"observedGeneration": 2})) == ("Healthy", "0/0 replicas available")


def test_deployment_summary() -> None:
    status = {"observedGeneration": 2, "replicas": 3, "readyReplicas": 2, "availableReplicas": 1,
              "updatedReplicas": 3,
              "conditions": [{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
                              "message": "long text", "lastTransitionTime": "2024-01-01T00:00:00Z"},
                             {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}]}
    s = summarize(dep(3, status))
    assert s == CopySummary("Progressing", "1/3 replicas available", 2, 2, 3, 2, 1, 3,
                            (("Available", "False", "MinimumReplicasUnavailable"),
                             ("Progressing", "True", "ReplicaSetUpdated")))
    assert s.to_status() == {
        "health": "Progressing", "healthMessage": "1/3 replicas available", "generation": 2, "observedGeneration": 2,
        "replicas": 3, "readyReplicas": 2, "availableReplicas": 1, "updatedReplicas": 3,
        "conditions": [{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"},
                       {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}]}


def test_statefulset_counts_ready_replicas() -> None:
    st = {"observedGeneration": 2, "replicas": 2, "readyReplicas": 1, "availableReplicas": 2, "updatedReplicas": 2}
    assert health(dep(2, st, "StatefulSet")) == ("Progressing", "1/2 replicas ready")
    assert health(dep(2, {**st, "readyReplicas": 2}, "StatefulSet")) == ("Healthy", "2/2 replicas ready")


def test_daemonset() -> None:
    ds = {"kind": "DaemonSet", "metadata": {"generation": 1},
          "status": {"observedGeneration": 1, "desiredNumberScheduled": 3, "numberReady": 3, "numberAvailable": 2,
                     "updatedNumberScheduled": 3}}
    s = summarize(ds)
    assert (s.health, s.message) == ("Progressing", "2/3 pods available")
    assert (s.replicas, s.ready_replicas, s.available_replicas, s.updated_replicas) == (3, 3, 2, 3)
    ds["status"]["numberAvailable"] = 3
    assert health(ds) == ("Healthy", "3/3 pods available")
    ds["status"]["updatedNumberScheduled"] = 1  # old pods still running after a template change
    assert health(ds)[0] == "Progressing"


def test_job() -> None:
    job: dict[str, Any] = {"kind": "Job", "metadata": {"generation": 1}}
    assert health(job) == ("Progressing", "waiting for the first status report")
    assert health({**job, "status": {"active": 1}}) == ("Progressing", "running: 1 active, 0 succeeded")
    done = {"succeeded": 1, "conditions": [{"type": "SuccessCriteriaMet", "status": "True"},
                                           {"type": "Complete", "status": "True"}]}
    assert health({**job, "status": done}) == ("Healthy", "Complete")
    failed = {"failed": 7, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                           "message": "Job has reached the specified backoff limit"}]}
    assert health({**job, "status": failed}) == ("Unhealthy", "Failed: Job has reached the specified backoff limit")
    assert summarize({**job, "status": failed}).replicas is None  # a Job has no replica counts


def test_pod() -> None:
    assert health({"kind": "Pod", "status": {"phase": "Pending"}}) == ("Progressing", "Pending (not scheduled yet)")
    unschedulable = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                                                         "reason": "Unschedulable", "message": "0/3 nodes"}]}
    assert health({"kind": "Pod", "status": unschedulable}) == ("Progressing", "Pending (Unschedulable: 0/3 nodes)")
    ready = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    assert health({"kind": "Pod", "status": ready}) == ("Healthy", "Running and ready")
    assert health({"kind": "Pod", "status": {"phase": "Running"}}) == ("Progressing", "Running, not ready")
    assert health({"kind": "Pod", "status": {"phase": "Succeeded"}}) == ("Healthy", "Succeeded")
    assert health({"kind": "Pod", "status": {"phase": "Failed", "reason": "Evicted"}}) == ("Unhealthy",
                                                                                            "Failed: Evicted")
    assert health({"kind": "Pod", "status": {"phase": "Unknown"}}) == ("Unknown", "phase Unknown")


def test_service() -> None:
    assert health({"kind": "Service", "spec": {"type": "ClusterIP"}, "status": {"loadBalancer": {}}}) == (
        "Healthy", "exists")
    lb: dict[str, Any] = {"kind": "Service", "spec": {"type": "LoadBalancer"}, "status": {"loadBalancer": {}}}
    assert health(lb) == ("Progressing", "waiting for a load balancer address")
    lb["status"]["loadBalancer"]["ingress"] = [{"ip": "203.0.113.7"}, {"hostname": "lb.example.com"}]
    assert health(lb) == ("Healthy", "load balancer: 203.0.113.7, lb.example.com")


def test_pvc() -> None:
    pvc: dict[str, Any] = {"kind": "PersistentVolumeClaim", "spec": {}, "status": {"phase": "Pending"}}
    assert health(pvc) == ("Progressing", "Pending: no volume bound yet")
    assert health({**pvc, "status": {"phase": "Bound"}}) == ("Healthy", "Bound")
    assert health({**pvc, "status": {"phase": "Lost"}}) == ("Unhealthy", "Lost: its volume is gone")
    assert health({**pvc, "status": {}}) == ("Progressing", "Pending: no volume bound yet")


@pytest.mark.parametrize("obj", [
    {"kind": "ConfigMap", "data": {}},
    {"kind": "Secret"},
    # Another kind's conditions do not decide: it exists, so it is Healthy.
    {"kind": "Widget", "status": {"conditions": [{"type": "Ready", "status": "False"}]}},
])
def test_other_kinds_are_healthy_once_they_exist(obj: dict[str, Any]) -> None:
    assert health(obj) == ("Healthy", "exists")


def test_hostile_status_is_bounded_and_never_raises() -> None:
    many = [{"type": f"T{i}" + "x" * 500, "status": "True", "reason": "r" * 500} for i in range(100)]
    s = summarize({"kind": "Deployment", "metadata": {"generation": "2"}, "spec": {"replicas": "many"},
                   "status": {"replicas": True, "availableReplicas": "3", "conditions": [*many, "junk", None]}})
    assert len(s.conditions) == MAX_CONDITIONS
    assert all(len(part) <= 64 for c in s.conditions for part in c)
    assert (s.generation, s.replicas, s.available_replicas) == (None, 0, 0)
    assert s.health == "Progressing"
    huge = "m" * 10_000
    failed = {"conditions": [{"type": "Failed", "status": "True", "message": huge}]}
    assert len(summarize({"kind": "Job", "status": failed}).message) <= 256
    for junk in ({"kind": "Pod", "status": "x"}, {"kind": "Service", "spec": "x", "status": {"loadBalancer": 3}},
                 {"metadata": None, "status": {"conditions": "x"}}, {}):
        assert summarize(junk).health in ("Healthy", "Progressing", "Unknown")
