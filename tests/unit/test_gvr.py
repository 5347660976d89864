"""GVR spellings → readings, and resolution against a discovery list."""

from __future__ import annotations

import pytest

from multicluster.errors import GVRError
from multicluster.gvr import GVR, APIResource, invalid_group_version, parse, parse_discovery, resolve, selected

LW = frozenset({"list", "watch", "get"})
RES = [
    APIResource(GVR("", "v1", "pods"), "Pod", True, LW, ("po",), "pod"),
    APIResource(GVR("", "v1", "configmaps"), "ConfigMap", True, LW, ("cm",), "configmap"),
    APIResource(GVR("", "v1", "events"), "Event", True, LW, ("ev",), "event"),
    APIResource(GVR("events.k8s.io", "v1", "events"), "Event", True, LW, ("ev",), "event"),
    APIResource(GVR("", "v1", "bindings"), "Binding", True, frozenset({"create"}), (), "binding"),
    APIResource(GVR("apps", "v1", "deployments"), "Deployment", True, LW, ("deploy",), "deployment"),
    APIResource(GVR("batch", "v1", "jobs"), "Job", True, LW, (), "job"),
    APIResource(
        GVR("authorization.k8s.io", "v1", "subjectaccessreviews"),
        "SubjectAccessReview",
        False,
        frozenset({"create"}),
        (),
        "",
    ),
    APIResource(
        GVR("mulitcluster.practice.com", "v1alpha1", "multiclusterresources"),
        "MultiClusterResource",
        True,
        LW,
        ("rr", "mcr"),
        "multiclusterresource",
    ),
    APIResource(GVR("example.com", "v1", "widgets"), "Widget", True, LW, (), "widget", preferred=False),
    APIResource(GVR("example.com", "v2", "widgets"), "Widget", True, LW, (), "widget", preferred=True),
]


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("pods", "v1/pods"),
        ("v1.pods", "v1/pods"),
        ("core.v1.pods", "v1/pods"),
        ("v1/pods", "v1/pods"),
        ("core/v1/pods", "v1/pods"),
        ("po", "v1/pods"),
        ("Pod", "v1/pods"),
        ("POD", "v1/pods"),
        ("apps.v1.deployments", "apps/v1/deployments"),
        ("v1.apps.deployments", "apps/v1/deployments"),
        ("apps/v1/deployments", "apps/v1/deployments"),
        ("deployments.apps", "apps/v1/deployments"),
        ("deployments.v1.apps", "apps/v1/deployments"),
        ("deploy", "apps/v1/deployments"),
        ("Deployment", "apps/v1/deployments"),
        ("batch.v1.jobs", "batch/v1/jobs"),
        ("cm", "v1/configmaps"),
        ("v1.configmaps", "v1/configmaps"),
        ("events", "v1/events"),
        ("events.events.k8s.io", "events.k8s.io/v1/events"),
        ("rr", "mulitcluster.practice.com/v1alpha1/multiclusterresources"),
        (
            "mulitcluster.practice.com/v1alpha1/multiclusterresources",
            "mulitcluster.practice.com/v1alpha1/multiclusterresources",
        ),
        ("multiclusterresources.mulitcluster.practice.com", "mulitcluster.practice.com/v1alpha1/multiclusterresources"),
        ("widgets", "example.com/v2/widgets"),
        ("example.com/v1/widgets", "example.com/v1/widgets"),
    ],
)
def test_resolve_spellings(spelling: str, expected: str) -> None:
    assert str(resolve(spelling, RES).gvr) == expected


@pytest.mark.parametrize("bad", ["", "a//b", "a/b/c/d", "apps/vx/deployments", "pods!", "v1."])
def test_parse_rejects_garbage(bad: str) -> None:
    with pytest.raises(GVRError):
        parse(bad)


def test_unknown_lists_close_matches() -> None:
    with pytest.raises(GVRError) as err:
        resolve("deploymnets", RES)
    assert "deployments" in (err.value.hint or "")
    assert err.value.matches


def test_wrong_group_says_so() -> None:
    with pytest.raises(GVRError) as err:
        resolve("batch.v1.deployments", RES)
    assert "not in that group" in (err.value.hint or "")


def test_unsupported_group_and_verbs_explained() -> None:
    with pytest.raises(GVRError, match="virtual"):
        resolve("subjectaccessreviews", RES)
    with pytest.raises(GVRError, match="does not support list and watch"):
        resolve("bindings", RES)


def test_selected_defaults_and_filters() -> None:
    names = {str(r.gvr) for r in selected(RES, [], ["bindings"])}
    assert "v1/pods" in names and "example.com/v2/widgets" in names
    assert "example.com/v1/widgets" not in names  # only preferred versions by default
    assert not any("authorization" in n or "bindings" in n for n in names)
    only = {str(r.gvr) for r in selected(RES, ["pods", "apps"], [])}
    assert only == {"v1/pods", "apps/v1/deployments"}
    no_events = {str(r.gvr) for r in selected(RES, [], ["events", "events.k8s.io"])}
    assert not any("events" in n for n in no_events)
    with pytest.raises(GVRError):
        selected(RES, ["nosuchthing"], [])


def test_paths() -> None:
    assert GVR("", "v1", "pods").path("ns", "p") == "/api/v1/namespaces/ns/pods/p"
    assert GVR("apps", "v1", "deployments").path() == "/apis/apps/v1/deployments"
    assert GVR("apps", "v1", "deployments").dotted == "deployments.v1.apps"


def _resource(name: str) -> dict[str, object]:
    return {"name": name, "kind": "Thing", "namespaced": True, "verbs": ["list", "watch"]}


def test_discovery_keeps_at_most_limit_resources_in_order() -> None:
    body: dict[str, object] = {"resources": [_resource(f"things{i}") for i in range(10)]}
    assert [r.gvr.resource for r in parse_discovery("g.example.com/v1", body, limit=3)] == [
        "things0", "things1", "things2"]


def test_discovery_skips_resource_names_kubernetes_does_not_allow() -> None:
    """A member's discovery names what becomes a request path, a stored GVR and a metric label: a 1 MB name, or
    one no Kubernetes API server accepts, is skipped and reported (shortened) instead."""
    body: dict[str, object] = {"resources": [
        _resource("x" * 1_000_000), _resource("Things"), _resource("a b"), _resource("-x"), _resource("x" * 64),
        _resource("things"), _resource("things/status"), _resource("a" * 63)]}
    invalid: list[str] = []
    got = parse_discovery("g.example.com/v1", body, invalid=invalid)
    assert [r.gvr.resource for r in got] == ["things", "a" * 63]
    assert len(invalid) == 5 and all(len(n) <= 100 for n in invalid), invalid


@pytest.mark.parametrize(("group_version", "ok"), [
    ("v1", True), ("apps/v1", True), ("g.example.com/v1beta1", True), ("a" * 253 + "/v1", True),
    ("a" * 254 + "/v1", False), ("G.example.com/v1", False), ("g.example.com/" + "v" * 64, False),
    ("g/v1/x", False), ("/v1", False), ("g/", False), ("", False), ("a..b/v1", False),
])
def test_group_versions_from_discovery_are_checked(group_version: str, ok: bool) -> None:
    assert (invalid_group_version(group_version) is None) is ok
