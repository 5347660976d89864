"""Table cells for states the harness cannot produce (it has no kubelet): running, crash-looping, completed,
initializing and terminating pods, finished jobs, load balancers, nodes."""

from __future__ import annotations

import time
from typing import Any

import pytest

from multicluster.api.kube.discovery import KubeResource
from multicluster.api.kube.tables import cells, column_definitions
from multicluster.gvr import GVR, APIResource

NOW = 1_800_000_000.0


def ts(ago: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW - ago))


def kr(group: str, resource: str, kind: str, cols: tuple[dict[str, Any], ...] = ()) -> KubeResource:
    return KubeResource(APIResource(GVR(group, "v1", resource), kind, True), printer_columns=cols)


def pod(status: dict[str, Any], spec: dict[str, Any] | None = None, **md: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "creationTimestamp": ts(300), **md},
            "spec": spec or {"containers": [{"name": "a"}]}, "status": status}


@pytest.mark.parametrize(("obj", "want"), [
    (pod({"phase": "Running", "podIPs": [{"ip": "10.1.2.3"}], "containerStatuses": [
        {"ready": True, "restartCount": 0, "state": {"running": {}}}]}, {"containers": [{}], "nodeName": "n1"}),
     ["1/1", "Running", "0", "5m", "10.1.2.3", "n1", "<none>", "<none>"]),
    (pod({"phase": "Running", "containerStatuses": [
        {"ready": False, "restartCount": 5, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
         "lastState": {"terminated": {"finishedAt": ts(120)}}}]}),
     ["0/1", "CrashLoopBackOff", "5 (2m ago)", "5m", "<none>", "<none>", "<none>", "<none>"]),
    (pod({"phase": "Succeeded", "containerStatuses": [
        {"ready": False, "restartCount": 0, "state": {"terminated": {"reason": "Completed", "exitCode": 0}}}]}),
     ["0/1", "Completed", "0", "5m", "<none>", "<none>", "<none>", "<none>"]),
    (pod({"phase": "Pending", "initContainerStatuses": [{"state": {"waiting": {"reason": "PodInitializing"}}}]},
         {"initContainers": [{"name": "i"}], "containers": [{"name": "a"}]}),
     ["0/1", "Init:0/1", "0", "5m", "<none>", "<none>", "<none>", "<none>"]),
    (pod({"phase": "Running", "containerStatuses": [{"ready": True, "state": {"running": {}}}]},
         deletionTimestamp=ts(1)),
     ["1/1", "Terminating", "0", "5m", "<none>", "<none>", "<none>", "<none>"]),
    (pod({"phase": "Running", "conditions": [{"type": "G", "status": "True"}]},
         {"containers": [{}, {}], "readinessGates": [{"conditionType": "G"}, {"conditionType": "H"}]}),
     ["0/2", "Running", "0", "5m", "<none>", "<none>", "<none>", "1/2"]),
])
def test_pod_cells(obj: dict[str, Any], want: list[Any]) -> None:
    res = kr("", "pods", "Pod")
    assert [c["name"] for c in column_definitions(res)] == [
        "Cluster", "Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node", "Readiness Gates"]
    assert cells(res, "c1", obj, NOW) == ["c1", "p", *want]


def test_job_service_node_cells() -> None:
    job = {"metadata": {"name": "j", "creationTimestamp": ts(600)},
           "spec": {"completions": 3, "parallelism": 2, "selector": {"matchLabels": {"b": "2", "a": "1"}},
                    "template": {"spec": {"containers": [{"name": "x", "image": "i:1"}, {"name": "y", "image": "j"}]}}},
           "status": {"succeeded": 3, "startTime": ts(600), "completionTime": ts(500),
                      "conditions": [{"type": "Complete", "status": "True"}]}}
    assert cells(kr("batch", "jobs", "Job"), "c", job, NOW) == [
        "c", "j", "Complete", "3/3", "100s", "10m", "x,y", "i:1,j", "a=1,b=2"]
    svc = {"metadata": {"name": "s", "creationTimestamp": ts(60)},
           "spec": {"type": "LoadBalancer", "clusterIP": "10.0.0.5",
                    "ports": [{"port": 443, "nodePort": 30443, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]},
           "status": {"loadBalancer": {}}}
    assert cells(kr("", "services", "Service"), "c", svc, NOW) == [
        "c", "s", "LoadBalancer", "10.0.0.5", "<pending>", "443:30443/TCP,53/UDP", "60s", "<none>"]
    node = {"metadata": {"name": "n", "creationTimestamp": ts(86400 * 3),
                         "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/": "x",
                                    "kubernetes.io/role": "edge"}},
            "spec": {"unschedulable": True},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": "192.168.1.2"}],
                       "nodeInfo": {"kubeletVersion": "v1.37.2", "osImage": "Debian", "kernelVersion": "6.1",
                                    "containerRuntimeVersion": "containerd://2.0"}}}
    assert cells(kr("", "nodes", "Node"), "c", node, NOW) == [
        "c", "n", "Ready,SchedulingDisabled", "control-plane,edge", "3d", "v1.37.2", "192.168.1.2", "<none>", "Debian",
        "6.1", "containerd://2.0"]


def test_crd_printer_columns() -> None:
    cols = ({"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas", "priority": 1},
            {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
            {"name": "Host", "type": "string", "jsonPath": ".metadata.labels['kubernetes.io/hostname']"},
            {"name": "Since", "type": "date", "jsonPath": ".status.since"})
    res = kr("x.io", "things", "Thing", cols)
    defs = column_definitions(res)
    assert [(c["name"], c["priority"]) for c in defs] == [
        ("Cluster", 0), ("Name", 0), ("Phase", 0), ("Replicas", 1), ("Ready", 0), ("Host", 0), ("Since", 0)]
    obj = {"metadata": {"name": "t", "labels": {"kubernetes.io/hostname": "h1"}}, "spec": {"replicas": 3},
           "status": {"phase": "Up", "since": ts(7200), "conditions": [{"type": "Other", "status": "False"},
                                                                       {"type": "Ready", "status": "True"}]}}
    assert cells(res, "c", obj, NOW) == ["c", "t", "Up", 3, "True", "h1", "120m"]
    assert cells(res, "c", {"metadata": {"name": "e"}}, NOW) == ["c", "e", None, None, None, None, None]
