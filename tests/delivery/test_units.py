"""Pure parts of delivery: seed patch conversion, actions, rendering, placement, health, status, CRD text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from multicluster import crds
from multicluster.delivery.apply import conflict_managers
from multicluster.delivery.health import CopySummary
from multicluster.delivery.model import ClusterResult, Phase, Target
from multicluster.delivery.patches import (
    Action,
    PatchError,
    TemplateError,
    apply_actions,
    check_template,
    customize_for,
    placement,
    render,
    seed_value,
    stamp,
    to_operation,
)
from multicluster.delivery.status import build_status, recorded_targets, same_status
from multicluster.errors import Conflict
from plugin.manifest_cmds import render_table
from plugin.manifests import ManifestError, read_docs

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------ seed values


@pytest.mark.parametrize(("raw", "expected"), [
    (["nginx:1.19.0-alpine"], (True, "nginx:1.19.0-alpine")),
    ([2], (True, 2)),
    (["foo=bar"], (True, {"foo": "bar"})),
    (["foo=bar", "app=x"], (True, {"foo": "bar", "app": "x"})),
    (["a=b=c"], (True, {"a": "b=c"})),          # split at the first "="
    (["x", "y"], (True, "y")),                   # the last element wins
    (["x", "a=b"], (True, {"a": "b"})),          # ...also when it is a k=v
    (["a=b", "x"], (True, "x")),
    ([], (False, None)),                         # no value (remove)
    ([[1, 2]], (True, [1, 2])),                  # how to send a real list
    ("plain", (True, "plain")),                  # RFC 6902 values are used as is
    (3, (True, 3)),
    ({"k": "v"}, (True, {"k": "v"})),
    (None, (True, None)),
])
def test_seed_value(raw: Any, expected: tuple[bool, Any]) -> None:
    assert seed_value(raw) == expected


def test_to_operation_converts_and_validates() -> None:
    a = to_operation({"path": "/spec/replicas", "op": "replace", "value": [2], "type": "ignored"}, "w")
    assert a.op == {"op": "replace", "path": "/spec/replicas", "value": 2}
    r = to_operation({"path": "/metadata/labels/app", "op": "remove", "value": ["example"]}, "w")
    assert r.op == {"op": "remove", "path": "/metadata/labels/app"}
    move = {"op": "move", "from": "/a", "path": "/b"}
    assert to_operation(move, "w").op == move
    bad = [
        ({"op": "frobnicate", "path": "/a", "value": 1}, "op 'frobnicate' is not one of"),
        ({"op": "add", "value": 1}, "path None must be a JSON pointer"),
        ({"op": "add", "path": "a", "value": 1}, "path 'a' must be a JSON pointer"),
        ({"op": "replace", "path": "", "value": {}}, "replacing the whole object is not allowed"),
        ({"op": "add", "path": "/a"}, "add /a needs a value"),
        ({"op": "add", "path": "/a", "value": []}, "add /a needs a value"),
        ({"op": "copy", "path": "/a"}, "copy needs `from`"),
        ("add /a", "expected a mapping"),
    ]
    for action, message in bad:
        with pytest.raises(PatchError) as err:
            to_operation(action, "spec.customize.clusters[0].action[3]")
        assert err.value.message.startswith("spec.customize.clusters[0].action[3]: ")
        assert message in err.value.message


def _actions(*ops: dict[str, Any]) -> list[Action]:
    return [to_operation(op, f"a[{i}]") for i, op in enumerate(ops)]


def test_apply_actions_creates_missing_parents_and_reports_failures() -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    out = apply_actions(pod, _actions(
        {"path": "/metadata/annotations/example", "op": "add", "value": ["example"]},
        {"path": "/metadata/labels/a~1b", "op": "add", "value": "x"},
        {"path": "/spec/containers/0/image", "op": "replace", "value": ["nginx:1.19.0-alpine"]},
        {"path": "/spec/replicas", "op": "replace", "value": [2]},  # replace of an unset field = add (seed)
    ))
    assert out["metadata"]["annotations"] == {"example": "example"}
    assert out["metadata"]["labels"] == {"a/b": "x"}
    assert out["spec"]["containers"][0]["image"] == "nginx:1.19.0-alpine" and out["spec"]["replicas"] == 2
    assert "annotations" not in pod["metadata"]  # the input is not modified

    for op, message in [
        ({"path": "/spec/containers/5/image", "op": "replace", "value": "x"},
         "a[0] (replace /spec/containers/5/image)"),
        ({"path": "/metadata/nothing", "op": "remove"}, "a[0] (remove /metadata/nothing): can't remove"),
        ({"path": "/spec/containers/0/image", "op": "test", "value": "other"}, "a[0] (test /spec/containers/0/image)"),
        ({"path": "/spec/containers/x/image", "op": "add", "value": "x"}, "a[0] (add /spec/containers/x/image)"),
    ]:
        with pytest.raises(PatchError) as err:
            apply_actions(pod, _actions(op))
        assert err.value.message.startswith(message), err.value.message


def test_customize_for_only_named_cluster_in_order() -> None:
    spec = {"customize": {"clusters": [
        {"name": "c1", "action": [{"op": "add", "path": "/a", "value": 1}]},
        {"name": "c2", "action": [{"op": "frobnicate", "path": "/x"}]},  # never looked at for c1
        {"name": "c1", "action": [{"op": "add", "path": "/b", "value": 2}]},
    ]}}
    assert [a.op["path"] for a in customize_for(spec, "c1")] == ["/a", "/b"]
    assert [a.where for a in customize_for(spec, "c1")] == ["spec.customize.clusters[0].action[0]",
                                                            "spec.customize.clusters[2].action[0]"]
    assert customize_for(spec, "c3") == []
    assert customize_for({}, "c1") == []
    with pytest.raises(PatchError):
        customize_for(spec, "c2")


def test_placement() -> None:
    assert placement({}, "m") == (["m"], [])
    assert placement({"placement": {}}, "m") == (["m"], [])
    assert placement({"placement": {"clusters": []}}, "m") == (["m"], [])
    dup = {"placement": {"clusters": [{"name": "a"}, {"name": "b"}, {"name": "a"}]}}
    assert placement(dup, "m") == (["a", "b"], [])
    names, problems = placement({"placement": {"clusters": [{"name": "a"}, {"nme": "b"}]}}, "m")
    assert names == ["a"] and problems == ["spec.placement.clusters[1] has no name"]
    assert placement({"placement": {"clusters": "a"}}, "m")[1] == [
        "spec.placement.clusters must be a list of {name: CLUSTER}"]


def test_render_and_stamp() -> None:
    tpl = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "resourceVersion": "5", "uid": "u"},
           "data": {"k": "v"}, "status": {"junk": 1}}
    out = render(tpl, "ns1", namespaced=True)
    assert out["metadata"] == {"name": "x", "namespace": "ns1"} and "status" not in out
    assert render({**tpl, "metadata": {"name": "x", "namespace": "other"}}, "ns1", namespaced=True)["metadata"][
        "namespace"] == "other"
    assert "namespace" not in render({**tpl, "metadata": {"name": "x", "namespace": "n"}}, "ns1",
                                     namespaced=False)["metadata"]
    # The seed's `add /metadata/annotations ["foo=bar"]` replaces the whole map; the ownership marks come after.
    patched = apply_actions(out, _actions({"path": "/metadata/annotations", "op": "add", "value": ["foo=bar"]}))
    stamped = stamp(patched, cr_namespace="ns1", cr_name="cr", cr_uid="uid-1", cluster="c2")
    assert stamped["metadata"]["annotations"] == {
        "foo": "bar", "multicluster.practice.com/owner": "ns1/cr", "multicluster.practice.com/owner-uid": "uid-1",
        "multicluster.practice.com/cluster": "c2"}
    assert stamped["metadata"]["labels"] == {"multicluster.practice.com/managed-by": "multicluster"}
    with pytest.raises(PatchError):
        stamp({"metadata": {"labels": "oops"}}, cr_namespace="n", cr_name="c", cr_uid="u", cluster="c")


def test_check_template() -> None:
    assert check_template({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}) == ("v1", "Pod", "p")
    for tpl, message in [(None, "spec.template is missing"), ({"kind": "Pod"}, "apiVersion is missing"),
                         ({"apiVersion": "v1"}, "kind is missing"),
                         ({"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "p-"}},
                          "generateName is not supported")]:
        with pytest.raises(TemplateError) as err:
            check_template(tpl)
        assert message in err.value.message


# ------------------------------------------------------------------------------------------ health, status


def _result(cluster: str, phase: Phase, health_: str = "Healthy") -> ClusterResult:
    t = Target("v1", "ConfigMap", "configmaps", "ns", "x")
    return ClusterResult(cluster, phase, "" if phase == Phase.APPLIED else "why", target=t,
                         last_applied="2024-01-01T00:00:00Z", summary=CopySummary(health_, "m"))


def test_build_status_is_stable_and_counts() -> None:
    results = [_result("a", Phase.APPLIED), _result("b", Phase.APPLIED, "Progressing"),
               _result("c", Phase.CONFLICT)]
    st = build_status(generation=3, placed=["a", "b", "c"], results=results, problems=[], previous=None)
    assert (st["applied"], st["ready"], st["targetClusters"]) == ("2/3", "1/3", "a,b,c")
    cond = {c["type"]: c for c in st["conditions"]}
    assert cond["Applied"]["status"] == "False" and cond["Applied"]["reason"] == "Conflict"
    assert cond["Ready"]["reason"] == "NotApplied"
    assert [e["name"] for e in st["clusters"]] == ["a", "b", "c"]
    assert recorded_targets(st)["a"] == Target("v1", "ConfigMap", "configmaps", "ns", "x")
    # Building again from the written status gives the same status: no write, no self-triggered reconcile.
    again = build_status(generation=3, placed=["a", "b", "c"], results=results, problems=[], previous=st)
    assert same_status(again, st)
    ok = build_status(generation=4, placed=["a"], results=[_result("a", Phase.APPLIED)], problems=[], previous=st)
    assert {c["type"]: c["status"] for c in ok["conditions"]} == {"Applied": "True", "Ready": "True"}


def test_conflict_classification() -> None:
    def conflict(*messages: str) -> Conflict:
        causes = [{"reason": "FieldManagerConflict", "message": m, "field": ".data.a"} for m in messages]
        return Conflict(409, "Apply failed", body={"details": {"causes": causes}})
    assert conflict_managers(conflict('conflict with "kubectl-edit" using v1')) == ({"kubectl-edit": [".data.a"]}, True)
    assert conflict_managers(conflict('conflict with "other"'))[1] is False
    assert conflict_managers(conflict('conflict with "x" using v1', 'conflict with "y"'))[1] is False


# ------------------------------------------------------------------------------------------ CRDs, CLI input


def test_manifests_crds_yaml_is_the_packaged_text() -> None:
    assert (ROOT / "manifests" / "crds.yaml").read_text() == crds.bundle_text()
    docs = list(yaml.safe_load_all(crds.bundle_text()))
    assert [d["metadata"]["name"] for d in docs] == [c.name for c in crds.load()]
    mcr = crds.multiclusterresource()
    assert mcr.body["spec"]["group"] == "mulitcluster.practice.com"
    assert mcr.body["spec"]["names"]["shortNames"] == ["rr", "mcr"]
    cl = next(c for c in crds.load() if c.kind == "MultiCluster")
    assert cl.body["spec"]["names"]["shortNames"] == ["cl"]
    assert [c["name"] for c in cl.body["spec"]["versions"][0]["additionalPrinterColumns"]] == [
        "Version", "Host", "Platform", "IsMaster", "Status", "Age"]


def test_read_docs(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("---\na: 1\nkind: X\n---\n\n---\nkind: ConfigMapList\nitems: [{b: 2}, {c: 3}]\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.json").write_text('{"d": 4}')
    (tmp_path / "readme.txt").write_text("x")
    assert [d.obj for d in read_docs([str(tmp_path)])] == [{"a": 1, "kind": "X"}, {"b": 2}, {"c": 3}]
    assert len(read_docs([str(tmp_path)], recursive=True)) == 4
    with pytest.raises(ManifestError, match="no such file"):
        read_docs([str(tmp_path / "nope.yaml")])
    (tmp_path / "bad.yaml").write_text("- just\n- a list\n")
    with pytest.raises(ManifestError, match="expected an object"):
        read_docs([str(tmp_path / "bad.yaml")])


def test_render_table_uses_crd_printer_columns() -> None:
    obj = {"metadata": {"name": "mypod.pod", "namespace": "default", "creationTimestamp": "2024-01-01T00:00:00Z"},
           "spec": {"template": {"kind": "Pod"}},
           "status": {"targetClusters": "a,b", "applied": "2/2", "ready": "0/2", "message": "a: Progressing"}}
    now = 1704067200.0 + 3600
    assert render_table([obj], "MultiClusterResource", now=now).splitlines() == [
        "NAME        KIND   CLUSTERS   APPLIED   READY   AGE",
        "mypod.pod   Pod    a,b        2/2       0/2     60m"]
    wide = render_table([obj], "MultiClusterResource", wide=True, all_namespaces=True, now=now).splitlines()
    assert wide[0].split() == ["NAMESPACE", "NAME", "KIND", "CLUSTERS", "APPLIED", "READY", "AGE", "MESSAGE"]
