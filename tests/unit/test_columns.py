"""multicluster.columns and multicluster.jsonpath, the printer-column code the daemon's Kubernetes tables and the
plugin share: apimachinery's HumanDuration, the JSONPath subset CRDs use, a CRD's columns of one version, and
one column's typed cell (what a Table carries) and its text (what the plugin prints)."""

from __future__ import annotations

from typing import Any

import pytest

from multicluster import jsonpath
from multicluster.columns import human_duration, parse_time, printer_cell, printer_columns, priority, since, text


@pytest.mark.parametrize(("seconds", "want"), [
    (-5, "<invalid>"), (-1, "0s"), (-0.5, "0s"), (0, "0s"), (5, "5s"), (119, "119s"), (120, "2m"), (125, "2m5s"),
    (200, "3m20s"), (599, "9m59s"), (600, "10m"), (179 * 60, "179m"), (3 * 3600, "3h"), (3 * 3600 + 60, "3h1m"),
    (5 * 3600 + 30 * 60, "5h30m"), (8 * 3600, "8h"), (8 * 3600 + 60, "8h"), (47 * 3600, "47h"), (48 * 3600, "2d"),
    (49 * 3600, "2d1h"), (3 * 86400 + 4 * 3600, "3d4h"), (3 * 86400, "3d"), (8 * 86400, "8d"), (10 * 86400, "10d"),
    (300 * 86400, "300d"), (729 * 86400, "729d"), (2 * 365 * 86400, "2y"), (800 * 86400, "2y70d"),
    (2 * 365 * 86400 + 100 * 86400, "2y100d"), (3 * 365 * 86400, "3y"), (3000 * 86400, "8y"),
    (9 * 365 * 86400, "9y"),
])
def test_human_duration_matches_apimachinery(seconds: float, want: str) -> None:
    assert human_duration(seconds) == want


def test_timestamps() -> None:
    assert parse_time("2020-09-13T12:26:40Z") == 1_600_000_000.0
    assert parse_time("2020-09-13T12:26:40.5Z") == 1_600_000_000.5
    assert parse_time("2020-09-13T14:26:40+02:00") == 1_600_000_000.0
    assert parse_time("yesterday") is None
    assert parse_time(None) is None
    assert parse_time(5) is None
    assert since("2020-09-13T12:16:40Z", 1_600_000_000.0) == "10m"
    assert since("", 1_600_000_000.0) == "<unknown>"


READY = '.status.conditions[?(@.type=="Ready")].status'
OBJ: dict[str, Any] = {
    "metadata": {"name": "orders", "namespace": "shop", "creationTimestamp": "2020-01-01T00:00:00Z",
                 "labels": {"app.kubernetes.io/name": "orders"}},
    "spec": {"engine": "postgres", "size": "10Gi", "replicas": 3, "ports": [5432, 9187], "tls": False},
    "status": {"conditions": [{"type": "Synced", "status": "True", "observed": 2},
                              {"type": "Ready", "status": "False", "reason": "Scaling", "observed": 5}]},
}


@pytest.mark.parametrize(("expr", "want"), [
    (".spec.engine", "postgres"),
    ("{.spec.engine}", "postgres"),
    ("$.spec.engine", "postgres"),
    ("{$.spec.size}", "10Gi"),
    (".spec.replicas", 3),
    (".spec.tls", False),
    (".spec.ports[0]", 5432),
    (".spec.ports[-1]", 9187),
    (".spec.ports[2]", None),
    (".status.conditions[1].type", "Ready"),
    (READY, "False"),
    (".status.conditions[?(@.type=='Synced')].status", "True"),
    ('.status.conditions[?(@.type != "Synced")].reason', "Scaling"),
    (".status.conditions[?(@.observed > 3)].type", "Ready"),
    (".status.conditions[?(@.observed<=2)].type", "Synced"),
    (".status.conditions[?(@.reason)].type", "Ready"),
    ('.status.conditions[?(@.type=="Missing")].status', None),
    (".metadata.labels['app.kubernetes.io/name']", "orders"),
    ('.metadata.labels["app.kubernetes.io/name"]', "orders"),
    (".spec.ports[*]", 5432),
    (".status.conditions[*].type", "Synced"),
    (".spec.missing", None),
    (".spec.engine.deeper", None),
    (".spec.ports.x", None),
    # Outside the subset: nothing, never an exception.
    (".spec..engine", None),
    ("spec.engine", None),
    (".spec.ports[0:1]", None),
    (".spec.ports[0,1]", None),
    (".spec.ports.length()", None),
    (".status.conditions[?(@.type==Ready)].status", None),
    (".status.conditions[?(@.type==\"Ready\"", None),
    ("", None),
    ("{}", None),
])
def test_jsonpath_first(expr: str, want: Any) -> None:
    assert jsonpath.first(OBJ, expr) == want


def test_jsonpath_find_all_and_compile_errors() -> None:
    assert jsonpath.find(OBJ, ".status.conditions[*].type") == ["Synced", "Ready"]
    assert jsonpath.find(OBJ, ".spec.*")[:2] == ["postgres", "10Gi"]
    assert jsonpath.find(OBJ, ".spec..engine") == []
    with pytest.raises(jsonpath.Unsupported, match="recursive descent"):
        jsonpath.compile(".a..b")
    with pytest.raises(jsonpath.Unsupported):
        jsonpath.compile(".a[1:2]")
    assert jsonpath.compile(READY) == (
        jsonpath.Field("status"), jsonpath.Field("conditions"),
        jsonpath.Filter((jsonpath.Field("type"),), "==", "Ready"), jsonpath.Field("status"))


def test_printer_columns_of_the_served_version() -> None:
    crd = {"spec": {"versions": [
        {"name": "v1alpha1", "additionalPrinterColumns": [{"name": "Old", "jsonPath": ".spec.old"}]},
        {"name": "v1", "additionalPrinterColumns": [{"name": "New", "jsonPath": ".spec.new"}, "junk"]},
    ]}}
    assert printer_columns(crd, "v1") == ({"name": "New", "jsonPath": ".spec.new"},)
    assert printer_columns(crd, "v1alpha1")[0]["name"] == "Old"
    legacy = {"spec": {"version": "v1beta1", "additionalPrinterColumns": [{"name": "L", "jsonPath": ".l"}]}}
    assert printer_columns(legacy, "v1beta1")[0]["name"] == "L"
    assert printer_columns({}, "v1") == ()
    nameless = {"spec": {"versions": [{"name": "v1", "additionalPrinterColumns": [
        {"jsonPath": ".a"}, {"name": "B"}, {"name": "C", "jsonPath": ".c"}]}]}}
    assert printer_columns(nameless, "v1") == ({"name": "C", "jsonPath": ".c"},)


# --------------------------------------------------------------------------------------------------- cells


def test_printer_cell_is_typed_by_the_column_and_text_is_what_a_table_prints() -> None:
    obj = {"spec": {"n": 4.0, "f": 2.5, "on": True, "raw": {"k": [1]}, "s": "x", "i": 7},
           "status": {"seen": "2020-09-13T12:26:30Z", "bad": "soon"}}
    now = 1_600_000_000.0

    def cell(kind: str, path: str) -> Any:
        return printer_cell({"name": "C", "type": kind, "jsonPath": path}, obj, now)

    assert cell("integer", ".spec.n") == 4 and isinstance(cell("integer", ".spec.n"), int)
    assert cell("number", ".spec.f") == 2.5
    assert cell("boolean", ".spec.on") is True
    assert cell("date", ".status.seen") == "10s"
    assert cell("date", ".status.bad") == "<unknown>"
    assert cell("string", ".spec.raw") == '{"k":[1]}'
    assert cell("string", ".spec.on") == "true"
    assert cell("string", ".spec.i") == "7"
    assert cell("string", ".spec.s") == "x"
    assert cell("string", ".spec.missing") is None
    assert cell("string", ".spec..x") is None  # outside the subset: an empty cell, never an error
    assert [text(v) for v in (None, True, False, 3, 2.5, "a", [1], {"a": 1})] == [
        "", "true", "false", "3", "2.5", "a", "[1]", '{"a":1}']


def test_priority_of_a_malformed_column_is_zero() -> None:
    assert [priority(c) for c in ({}, {"priority": 1}, {"priority": "2"}, {"priority": "x"}, {"priority": None})] == [
        0, 1, 2, 0, 0]
