"""Printers without a server: table layout, per-kind cells, list documents."""

from __future__ import annotations

import io
import json

import pytest
import yaml

from plugin import printers
from plugin.printers import ResourceInfo

POD = ResourceInfo("", "v1", "pods", "Pod")


def test_table_layout_plain() -> None:
    out = io.StringIO()
    t = printers.TablePrinter(["A", "LONG HEADER", "C"], out)
    t.rows([["x", "1", ""], ["yyyy", "22", "z"]])
    assert out.getvalue() == "A      LONG HEADER   C\nx      1\nyyyy   22            z\n"
    t.rows([["q", "3", "c"]])  # a later page: no second header
    assert out.getvalue().count("LONG HEADER") == 1
    out = io.StringIO()
    t = printers.TablePrinter(["A"], out, no_headers=True)
    t.rows([["v"]])
    assert out.getvalue() == "v\n"


def test_table_colour_only_when_asked() -> None:
    out = io.StringIO()
    printers.TablePrinter(["CLUSTER", "STATUS"], out, color=True).rows([["c1", "Running"]])
    assert "\x1b[" in out.getvalue()
    plain = out.getvalue()
    for code in ("\x1b[1m", "\x1b[36m", "\x1b[32m", "\x1b[0m"):
        plain = plain.replace(code, "")
    assert plain.splitlines()[1].startswith("c1        Running")


def _pod(**status: object) -> dict[str, object]:
    return {"metadata": {"name": "p", "namespace": "n", "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"nodeName": "n1", "containers": [{"name": "a", "image": "i1"}, {"name": "b", "image": "i2"}]},
            "status": status}


def _cells(res: ResourceInfo, obj: dict[str, object], wide: bool = False) -> dict[str, str]:
    return {h: fn("c1", obj, 1_700_000_000.0) for h, fn in printers.columns_for(res, wide)}


def test_pod_cells() -> None:
    cells = _cells(POD, _pod(phase="Running", podIP="10.0.0.1",
                             containerStatuses=[{"ready": True, "restartCount": 2}, {"ready": False, "restartCount": 1,
                                                "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]), wide=True)
    assert cells == {"CLUSTER": "c1", "NAME": "p", "NAMESPACE": "n", "NODE": "n1", "POD IP": "10.0.0.1",
                     "STATUS": "CrashLoopBackOff", "CONTAINER": "a,b", "IMAGE": "i1,i2", "READY": "1/2",
                     "RESTARTS": "3", "AGE": "3y318d"}
    terminating = _pod(phase="Running")
    terminating["metadata"]["deletionTimestamp"] = "2020-01-02T00:00:00Z"  # type: ignore[index]
    assert _cells(POD, terminating)["STATUS"] == "Terminating"
    assert _cells(POD, {"metadata": {"name": "bare"}})["STATUS"] == ""


def test_mcr_cells() -> None:
    res = ResourceInfo("mulitcluster.practice.com", "v1alpha1", "multiclusterresources", "MultiClusterResource")
    obj = {"metadata": {"name": "m", "namespace": "d"},
           "spec": {"template": {"kind": "Deployment"}, "placement": {"clusters": [{"name": "a"}, {"name": "b"}]}},
           "status": {"clusters": [{"name": "a", "applied": True, "ready": True}, {"name": "b", "phase": "Applied"}]}}
    cells = _cells(res, obj)
    assert (cells["KIND"], cells["CLUSTERS"], cells["APPLIED"], cells["READY"]) == ("Deployment", "a,b", "2/2", "1/2")
    assert _cells(res, {"metadata": {"name": "m"}, "spec": {}})["CLUSTERS"] == "<master>"
    # The delivery controller's status (multicluster/delivery/status.py): summary strings win.
    obj["status"] = {"targetClusters": "a,b,c", "applied": "2/3", "ready": "1/3", "clusters": []}
    cells = _cells(res, obj)
    assert (cells["CLUSTERS"], cells["APPLIED"], cells["READY"]) == ("a,b,c", "2/3", "1/3")


def test_generic_uses_crd_printer_columns() -> None:
    res = ResourceInfo("x.io", "v1", "things", "Thing", printer_columns=(
        {"name": "Version", "type": "string", "jsonPath": ".spec.version"},
        {"name": "First", "type": "string", "jsonPath": ".status.conditions[0].type", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}))
    obj = {"metadata": {"name": "t", "namespace": "n"}, "spec": {"version": "1.2"},
           "status": {"conditions": [{"type": "Ready"}]}}
    # Like kubectl: priority 0 columns always, the others with -o wide; the CRD's Age is our AGE.
    assert list(_cells(res, obj)) == ["CLUSTER", "NAME", "NAMESPACE", "VERSION", "AGE"]
    cells = _cells(res, obj, wide=True)
    assert (cells["VERSION"], cells["FIRST"], cells["AGE"]) == ("1.2", "Ready", "<unknown>")


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_list_documents(fmt: str) -> None:
    load = json.loads if fmt == "json" else yaml.safe_load
    out = io.StringIO()
    p = printers.make_printer(fmt, POD, out)
    p.page([("c1", {"metadata": {"name": "a"}, "kind": "Pod", "apiVersion": "v1"})])
    p.page([])
    p.page([("c2", {"metadata": {"name": "b", "annotations": {"x": "y"}}})])
    p.close()
    doc = load(out.getvalue())
    assert doc["kind"] == "List" and doc["apiVersion"] == "v1" and doc["metadata"] == {"resourceVersion": ""}
    assert [i["metadata"]["annotations"] for i in doc["items"]] == [
        {"multicluster.io/cluster": "c1"}, {"x": "y", "multicluster.io/cluster": "c2"}]
    if fmt == "json":
        assert list(doc["items"][0]) == ["apiVersion", "kind", "metadata"]
    out = io.StringIO()
    p = printers.make_printer(fmt, POD, out)
    p.close()
    assert load(out.getvalue())["items"] == []


def test_cluster_rows() -> None:
    rows = printers.cluster_rows([
        {"name": "a", "isMaster": True, "reachable": True, "ready": True, "objects": 7, "lastSync": 995.0},
        {"name": "b", "reachable": False, "lastSync": None},
        {"name": "c", "reachable": True, "ready": False},
        {"name": "d", "reachable": True, "ready": True, "resources": [{"status": "error"}]},
    ], now=1000.0)
    assert rows[0] == ["a", "", "", "", "true", "Ready", "7", "5s ago"]
    assert [r[5] for r in rows] == ["Ready", "Unreachable", "Syncing", "Error"]
    assert rows[1][7] == "never"
