"""The wire decoder must store exactly what a full parse would: same JSON (minus managedFields, plus the type a
list item lacks) and the same indexed values, whether it took the fast path or fell back."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from multicluster.gvr import GVR
from multicluster.sync import to_row
from multicluster.wire import WireObject, decode_list

PODS = GVR("", "v1", "pods")
MANAGED = [{"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:metadata": {"f:labels": {".": {}}}}}]


def pod(**meta: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "p1", "namespace": "ns", "uid": "u1", "resourceVersion": "42",
                     "creationTimestamp": "2026-11-26T00:00:00Z", "labels": {"app": "web", "tier": "db"}, **meta},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "nginx"}]},
        "status": {"phase": "Running", "podIP": "10.0.0.1"},
    }


def expected(obj: dict[str, Any]) -> dict[str, Any]:
    """What the store must hold: the object with apiVersion/kind filled in and no managedFields."""
    out: dict[str, Any] = json.loads(json.dumps(obj))
    out.setdefault("apiVersion", "v1")
    out.setdefault("kind", "Pod")
    out.get("metadata", {}).pop("managedFields", None)
    return out


CASES = {
    "managedFields last": pod(managedFields=MANAGED),
    "managedFields first": {"metadata": {"managedFields": MANAGED, "name": "p1", "namespace": "ns",
                                         "resourceVersion": "7"}, "data": {"k": "v"}},
    "managedFields only key": {"metadata": {"managedFields": MANAGED}},
    "no managedFields": pod(),
    "typed already": {"apiVersion": "v1", "kind": "Pod", **pod(managedFields=MANAGED)},
    "owner": pod(ownerReferences=[{"uid": "owner-1", "kind": "ReplicaSet", "name": "rs"}]),
    "status not an object": {**pod(), "status": "weird"},
    "label value not a string": pod(labels={"n": 5, "ok": "yes"}),
    "phase not a string": {**pod(), "status": {"phase": 3}},
    "null kind": {**pod(), "kind": None},
    "empty metadata": {"metadata": {}},
    "no metadata": {"data": {"x": "y"}},
    "unicode": pod(annotations={"note": "caf\u00e9 \u2603", "q": 'a "quoted" \\managedFields\\":[]'}),
    "managedFields text in a string": pod(annotations={"x": '"managedFields":[{"manager":"kubectl"}]'},
                                          managedFields=MANAGED),
}


@pytest.mark.parametrize("name", list(CASES))
def test_fast_and_slow_paths_store_the_same(name: str) -> None:
    obj = CASES[name]
    fast = WireObject(orjson.dumps(obj))
    fast.set_type("v1", "Pod")
    slow = WireObject.from_dict(json.loads(json.dumps(obj)))
    slow.set_type("v1", "Pod")
    row_fast = to_row("c1", PODS, fast, 42)
    row_slow = to_row("c1", PODS, slow, 42)
    assert orjson.loads(row_fast.object) == expected(obj)
    assert orjson.loads(row_slow.object) == expected(obj)
    for attr in ("namespace", "name", "uid", "kind", "labels", "fields", "owner", "created_at"):
        assert getattr(row_fast, attr) == getattr(row_slow, attr), attr


def test_an_ordinary_object_is_never_built() -> None:
    w = WireObject(orjson.dumps(pod(managedFields=MANAGED)))
    w.set_type("v1", "Pod")
    row = to_row("c1", PODS, w, 42)
    assert not w.built
    assert row.labels == {"app": "web", "tier": "db"}
    assert row.fields == {"status.phase": "Running", "spec.nodeName": "node-1"}
    assert b"managedFields" not in row.object
    assert row.object.startswith(b'{"apiVersion":"v1","kind":"Pod",')


def test_pretty_printed_objects_fall_back_and_still_drop_managed_fields() -> None:
    raw = json.dumps(pod(managedFields=MANAGED), indent=2).encode()
    w = WireObject(raw)
    w.set_type("v1", "Pod")
    assert orjson.loads(to_row("c1", PODS, w, 1).object) == expected(pod())


def test_keeping_managed_fields_keeps_the_bytes() -> None:
    obj = {"apiVersion": "v1", "kind": "Pod", **pod(managedFields=MANAGED)}
    raw = orjson.dumps(obj)
    assert to_row("c1", PODS, WireObject(raw), 1, drop_managed_fields=False).object == raw


def test_secret_values_never_reach_the_row_on_the_fast_path() -> None:
    secret = {"metadata": {"name": "s", "namespace": "ns", "annotations": {
        "kubectl.kubernetes.io/last-applied-configuration": '{"data":{"password":"aHVudGVy"}}'}},
        "data": {"password": "aHVudGVy"}, "stringData": {"token": "plain"}}
    w = WireObject(orjson.dumps(secret))
    w.set_type("v1", "Secret")
    stored = orjson.loads(to_row("c1", GVR("", "v1", "secrets"), w, 1).object)
    assert stored["data"] == {"password": ""}
    assert "stringData" not in stored
    assert "annotations" not in stored["metadata"]


def test_list_pages_split_into_items() -> None:
    items = [pod(name=f"p{i}") for i in range(3)]
    raw = orjson.dumps({"kind": "PodList", "metadata": {"resourceVersion": "99", "continue": "tok"},
                        "items": items})
    page = decode_list(raw)
    assert (page.resource_version, page.cont) == ("99", "tok")
    assert [orjson.loads(i) for i in page.items] == items
    last = decode_list(b'{"metadata":{"resourceVersion":"5"},"items":[]}')
    assert (last.items, last.resource_version, last.cont) == ([], "5", "")


def test_odd_list_shapes() -> None:
    # `items: null` (an empty list from some servers) and a missing metadata are fine.
    assert decode_list(b'{"items":null}').items == []
    with pytest.raises(ValueError):
        decode_list(b"[1, 2]")
    with pytest.raises(ValueError):
        decode_list(b"not json")
    with pytest.raises(ValueError):
        WireObject(b"[]")
