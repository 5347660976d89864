"""Which objects a workload depends on, and how a master object becomes a member's dependency copy (pure parts of
delivery/dependencies.py)."""

from __future__ import annotations

from typing import Any

from multicluster.delivery.dependencies import (
    SOURCE_ANNOTATION,
    Ref,
    from_status,
    is_dependency,
    references,
    render,
    to_status,
    user_label,
    users,
)
from multicluster.delivery.model import CLUSTER_ANNOTATION, MANAGED_BY_LABEL


def pod_spec() -> dict[str, Any]:
    return {
        "serviceAccountName": "runner",
        "imagePullSecrets": [{"name": "pull"}],
        "volumes": [
            {"name": "a", "configMap": {"name": "cm-vol"}},
            {"name": "b", "secret": {"secretName": "sec-vol", "optional": True}},
            {"name": "c", "persistentVolumeClaim": {"claimName": "data"}},
            {"name": "d", "projected": {"sources": [{"configMap": {"name": "cm-proj"}},
                                                   {"secret": {"name": "sec-proj"}},
                                                   {"serviceAccountToken": {"path": "t"}}]}},
            {"name": "e", "emptyDir": {}},
        ],
        "initContainers": [{"name": "i", "image": "x", "envFrom": [{"configMapRef": {"name": "cm-envfrom"}}]}],
        "containers": [{"name": "c", "image": "x",
                        "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "sec-env", "key": "k"}}},
                                {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "cm-vol", "key": "k",
                                                                                 "optional": True}}},
                                {"name": "C", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                                {"name": "D", "value": "plain"}],
                        "envFrom": [{"secretRef": {"name": "sec-envfrom", "optional": True}}]}],
    }


def test_every_kind_of_reference_in_a_deployment() -> None:
    dep = {"kind": "Deployment", "spec": {"template": {"spec": pod_spec()}}}
    refs = references(dep)
    assert [(r.kind, r.name) for r in refs] == [
        ("ConfigMap", "cm-envfrom"), ("ConfigMap", "cm-proj"), ("ConfigMap", "cm-vol"),
        ("PersistentVolumeClaim", "data"),
        ("Secret", "pull"), ("Secret", "sec-env"), ("Secret", "sec-envfrom"), ("Secret", "sec-proj"),
        ("Secret", "sec-vol"),
        ("ServiceAccount", "runner")]
    optional = {r.name for r in refs if r.optional}
    # cm-vol is required by the volume even though one env reference to it is optional
    assert optional == {"sec-envfrom", "sec-vol"}


def test_pod_spec_locations_of_each_workload_kind() -> None:
    spec = {"serviceAccountName": "sa", "containers": [{"name": "c", "image": "x"}]}
    for obj in ({"kind": "Pod", "spec": spec},
                {"kind": "StatefulSet", "spec": {"template": {"spec": spec}}},
                {"kind": "DaemonSet", "spec": {"template": {"spec": spec}}},
                {"kind": "Job", "spec": {"template": {"spec": spec}}},
                {"kind": "ReplicaSet", "spec": {"template": {"spec": spec}}},
                {"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": spec}}}}}):
        assert references(obj) == [Ref("ServiceAccount", "sa")], obj["kind"]


def test_no_references_for_other_kinds_the_default_account_or_malformed_specs() -> None:
    assert references({"kind": "ConfigMap", "data": {}}) == []
    assert references({"kind": "Pod", "spec": {"serviceAccountName": "default"}}) == []
    assert references({"kind": "Pod", "spec": {"volumes": "nope", "containers": [None, {"env": [1]}]}}) == []
    assert references({"kind": "Deployment", "spec": {"template": None}}) == []


def test_render_copies_content_and_marks_it_as_a_shared_dependency() -> None:
    src = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "data": {"password": "c2VjcmV0"},
           "metadata": {"name": "db", "namespace": "team-a", "uid": "u", "resourceVersion": "9",
                        "labels": {"app": "db", "multicluster.practice.com/managed-by": "someone"},
                        "annotations": {"note": "n", "kubectl.kubernetes.io/last-applied-configuration": "{}"},
                        "managedFields": [{}], "creationTimestamp": "t"}}
    out = render(src, "team-a", "team-a", "uid-1", "cluster2")
    assert out["data"] == {"password": "c2VjcmV0"} and out["type"] == "Opaque"
    md = out["metadata"]
    assert set(md) == {"name", "namespace", "labels", "annotations"}
    assert md["labels"] == {"app": "db", MANAGED_BY_LABEL: "multicluster", user_label("uid-1"): "true"}
    assert md["annotations"] == {"note": "n", SOURCE_ANNOTATION: "team-a/db", CLUSTER_ANNOTATION: "cluster2"}
    assert is_dependency(out) and users(out) == {"uid-1"}


def test_render_pvc_keeps_the_claim_not_the_binding() -> None:
    src = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                    "volumeName": "pv-on-the-master", "storageClassName": "fast"},
           "status": {"phase": "Bound"}}
    out = render(src, "ns", "ns", "u", "c")
    assert out["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                           "storageClassName": "fast"}
    assert "status" not in out


def test_status_form_round_trips_and_ignores_junk() -> None:
    refs = [(Ref("Secret", "b"), "ns"), (Ref("ConfigMap", "a"), "ns")]
    assert from_status(to_status(refs)) == sorted(refs)
    assert from_status([{"kind": "Pod", "name": "x", "namespace": "n"}, {"kind": "Secret"}, "x", None]) == []
    assert from_status("nope") == []
