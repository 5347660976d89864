"""Karmada-style overriders (delivery/overriders.py, pure): every overrider, the order, targeting and the errors."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from multicluster.delivery.overriders import Image, OverrideError, apply, override_image, parse, selector_matches


def deployment() -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "ns", "labels": {"app": "web"}},
            "spec": {"replicas": 1, "template": {"spec": {
                "initContainers": [{"name": "init", "image": "busybox:1.36"}],
                "containers": [{"name": "web", "image": "registry.k8s.io/nginx:1.25", "command": ["nginx"],
                                "args": ["-g", "daemon off;"]},
                               {"name": "side", "image": "localhost:5000/team/side@sha256:abc"}]}}}}


def rules(*overriders: dict[str, Any], target: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"overrideRules": [{"overriders": o} | ({"targetCluster": target} if target else {})
                              for o in overriders]}


def run(spec: dict[str, Any], obj: dict[str, Any] | None = None, cluster: str = "c1",
        labels: dict[str, str] | None = None) -> dict[str, Any]:
    return apply(obj or deployment(), parse(spec), cluster, labels or {})


def images(obj: dict[str, Any]) -> list[str]:
    spec = obj["spec"]["template"]["spec"]
    return [c["image"] for c in spec["initContainers"] + spec["containers"]]


@pytest.mark.parametrize(("ref", "parts"), [
    ("nginx", ("", "nginx", "", "")),
    ("nginx:1.25", ("", "nginx", ":", "1.25")),
    ("library/nginx:1.25", ("", "library/nginx", ":", "1.25")),
    ("registry.k8s.io/pause:3.9", ("registry.k8s.io", "pause", ":", "3.9")),
    ("localhost:5000/a/b", ("localhost:5000", "a/b", "", "")),
    ("localhost/b@sha256:ff", ("localhost", "b", "@", "sha256:ff")),
    ("my.reg:443/x/y:v1", ("my.reg:443", "x/y", ":", "v1")),
])
def test_image_references_split_and_join_unchanged(ref: str, parts: tuple[str, str, str, str]) -> None:
    img = Image.parse(ref)
    assert (img.registry, img.repository, img.delimiter, img.tag) == parts
    assert str(img) == ref


@pytest.mark.parametrize(("component", "operator", "value", "want"), [
    ("Registry", "replace", "mirror.example.com", "mirror.example.com/nginx:1.25"),
    ("Registry", "add", "-eu", "registry.k8s.io-eu/nginx:1.25"),
    ("Registry", "remove", "", "nginx:1.25"),
    ("Repository", "replace", "team/nginx", "registry.k8s.io/team/nginx:1.25"),
    ("Repository", "add", "-debug", "registry.k8s.io/nginx-debug:1.25"),
    ("Tag", "replace", "1.27", "registry.k8s.io/nginx:1.27"),
    ("Tag", "add", "1.27", "registry.k8s.io/nginx:1.27"),
    ("Tag", "remove", "", "registry.k8s.io/nginx"),
    ("Tag", "replace", "sha256:0123", "registry.k8s.io/nginx@sha256:0123"),
])
def test_image_components(component: str, operator: str, value: str, want: str) -> None:
    assert override_image("registry.k8s.io/nginx:1.25", component, operator, value) == want


def test_image_overrider_without_predicate_changes_every_container_and_init_container() -> None:
    out = run(rules({"imageOverrider": [{"component": "Registry", "operator": "replace", "value": "mirror.io"}]}))
    assert images(out) == ["mirror.io/busybox:1.36", "mirror.io/nginx:1.25", "mirror.io/team/side@sha256:abc"]


def test_image_overrider_with_predicate_changes_that_image_only() -> None:
    out = run(rules({"imageOverrider": [{"component": "Tag", "operator": "replace", "value": "1.27",
                                         "predicate": {"path": "/spec/template/spec/containers/0/image"}}]}))
    assert images(out) == ["busybox:1.36", "registry.k8s.io/nginx:1.27", "localhost:5000/team/side@sha256:abc"]


def test_image_overrider_knows_where_each_workload_keeps_its_pod_spec() -> None:
    cron = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"}, "spec": {"jobTemplate": {
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}}}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    spec = rules({"imageOverrider": [{"component": "Tag", "operator": "add", "value": "1.36"}]})
    assert run(spec, cron)["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "busybox:1.36"
    assert run(spec, pod)["spec"]["containers"][0]["image"] == "busybox:1.36"


def test_command_and_args_append_and_remove_for_the_named_container() -> None:
    out = run(rules({"commandOverrider": [{"containerName": "web", "operator": "add", "value": ["-c", "x.conf"]}],
                     "argsOverrider": [{"containerName": "web", "operator": "remove", "value": ["daemon off;"]},
                                       {"containerName": "side", "operator": "add", "value": ["--v=2"]}]}))
    web, side = out["spec"]["template"]["spec"]["containers"]
    assert web["command"] == ["nginx", "-c", "x.conf"]
    assert web["args"] == ["-g"]
    assert side["args"] == ["--v=2"]


def test_labels_and_annotations_add_replace_remove() -> None:
    obj = deployment()
    obj["metadata"]["annotations"] = {"keep": "1", "drop": "2"}
    out = run(rules({"labelsOverrider": [{"operator": "add", "value": {"tier": "front"}},
                                         {"operator": "replace", "value": {"app": "web2"}},
                                         {"operator": "remove", "value": {"nothing-here": ""}}],
                     "annotationsOverrider": [{"operator": "remove", "value": {"drop": ""}},
                                              {"operator": "add", "value": {"new": "yes"}}]}), obj)
    assert out["metadata"]["labels"] == {"app": "web2", "tier": "front"}
    assert out["metadata"]["annotations"] == {"keep": "1", "new": "yes"}


def test_plaintext_is_rfc6902_with_values_as_is() -> None:
    out = run(rules({"plaintext": [{"path": "/spec/replicas", "operator": "replace", "value": 3},
                                   {"path": "/spec/template/spec/nodeSelector", "operator": "add",
                                    "value": {"zone": "a"}},
                                   {"path": "/metadata/labels/list", "operator": "add", "value": ["a", "b"]},
                                   {"path": "/metadata/labels/list", "operator": "remove"}]}))
    assert out["spec"]["replicas"] == 3
    assert out["spec"]["template"]["spec"]["nodeSelector"] == {"zone": "a"}
    assert "list" not in out["metadata"]["labels"]


def test_order_inside_a_rule_is_image_command_args_labels_annotations_plaintext() -> None:
    # The plaintext overrider sees what the image overrider did, whatever order the keys are written in.
    spec = rules({"plaintext": [{"path": "/metadata/annotations/img", "operator": "add", "value": "x"},
                                {"path": "/spec/template/spec/containers/0/image", "operator": "replace",
                                 "value": "final:1"}],
                  "labelsOverrider": [{"operator": "add", "value": {"l": "1"}}],
                  "imageOverrider": [{"component": "Tag", "operator": "replace", "value": "9"}]})
    out = run(spec)
    assert out["spec"]["template"]["spec"]["containers"][0]["image"] == "final:1"
    assert out["spec"]["template"]["spec"]["containers"][1]["image"] == "localhost:5000/team/side:9"


def test_rules_apply_in_list_order_and_later_rules_win() -> None:
    spec = rules({"labelsOverrider": [{"operator": "add", "value": {"env": "a"}}]},
                 {"labelsOverrider": [{"operator": "add", "value": {"env": "b"}}]})
    assert run(spec)["metadata"]["labels"]["env"] == "b"


def test_target_cluster_names_exclude_and_label_selector() -> None:
    add = {"labelsOverrider": [{"operator": "add", "value": {"hit": "yes"}}]}
    names = rules(add, target={"clusterNames": ["c1", "c2"], "exclude": ["c2"]})
    assert run(names, cluster="c1")["metadata"]["labels"].get("hit") == "yes"
    assert "hit" not in run(names, cluster="c2")["metadata"]["labels"]
    assert "hit" not in run(names, cluster="c3")["metadata"]["labels"]
    by_label = rules(add, target={"labelSelector": {"matchLabels": {"region": "eu"},
                                                    "matchExpressions": [{"key": "tier", "operator": "NotIn",
                                                                          "values": ["dev"]}]}})
    assert run(by_label, labels={"region": "eu"})["metadata"]["labels"].get("hit") == "yes"
    assert "hit" not in run(by_label, labels={"region": "eu", "tier": "dev"})["metadata"]["labels"]
    assert "hit" not in run(by_label, labels={})["metadata"]["labels"]


def test_selector_operators() -> None:
    def sel(op: str, *values: str) -> dict[str, Any]:
        return {"matchExpressions": [{"key": "k", "operator": op, "values": list(values)}]}
    assert selector_matches(sel("In", "a", "b"), {"k": "b"}) and not selector_matches(sel("In", "a"), {})
    assert selector_matches(sel("NotIn", "a"), {}) and not selector_matches(sel("NotIn", "a"), {"k": "a"})
    assert selector_matches(sel("Exists"), {"k": ""}) and not selector_matches(sel("Exists"), {})
    assert selector_matches(sel("DoesNotExist"), {}) and not selector_matches(sel("DoesNotExist"), {"k": "x"})
    assert selector_matches({}, {"any": "thing"})


def test_the_input_object_is_not_changed() -> None:
    obj = deployment()
    before = copy.deepcopy(obj)
    run(rules({"imageOverrider": [{"component": "Tag", "operator": "replace", "value": "9"}],
               "labelsOverrider": [{"operator": "add", "value": {"x": "y"}}]}), obj)
    assert obj == before


@pytest.mark.parametrize(("spec", "where"), [
    ({"overrideRules": {"a": 1}}, "spec.overrideRules: expected a list"),
    ({"overrideRules": [{}]}, "spec.overrideRules[0].overriders: is required"),
    (rules({"fieldOverrider": []}), "spec.overrideRules[0].overriders: unknown overrider 'fieldOverrider'"),
    (rules({"imageOverrider": [{"component": "Host", "operator": "add", "value": "x"}]}),
     "spec.overrideRules[0].overriders.imageOverrider[0].component: 'Host' is not one of Registry"),
    (rules({"imageOverrider": [{"component": "Tag", "operator": "update", "value": "x"}]}),
     "imageOverrider[0].operator: 'update' is not one of add, remove, replace"),
    (rules({"imageOverrider": [{"component": "Tag", "operator": "replace"}]}),
     "imageOverrider[0].value: replace needs a non-empty string"),
    (rules({"imageOverrider": [{"component": "Repository", "operator": "remove"}]}),
     "imageOverrider[0].operator: the repository cannot be removed"),
    (rules({"imageOverrider": [{"component": "Tag", "operator": "add", "value": "1", "predicate": {"path": "x"}}]}),
     "imageOverrider[0].predicate.path: must be a JSON pointer"),
    (rules({"commandOverrider": [{"operator": "add", "value": ["x"]}]}),
     "commandOverrider[0].containerName: is required"),
    (rules({"argsOverrider": [{"containerName": "web", "operator": "replace", "value": ["x"]}]}),
     "argsOverrider[0].operator: 'replace' is not one of add, remove"),
    (rules({"argsOverrider": [{"containerName": "web", "operator": "add", "value": "x"}]}),
     "argsOverrider[0].value: expected a list of strings"),
    (rules({"labelsOverrider": [{"operator": "add", "value": {"a": 1}}]}),
     "labelsOverrider[0].value: add needs string values"),
    (rules({"plaintext": [{"path": "", "operator": "add", "value": 1}]}),
     "plaintext[0].path: must be a JSON pointer"),
    (rules({"plaintext": [{"path": "/a", "operator": "add"}]}), "plaintext[0].value: add needs a value"),
    ({"overrideRules": [{"targetCluster": {"labelSelector": {"matchExpressions": [{"key": "k", "operator": "In"}]}},
                         "overriders": {}}]},
     "spec.overrideRules[0].targetCluster.labelSelector.matchExpressions[0].values: In needs at least one value"),
    ({"overrideRules": [{"targetCluster": {"clusterNames": "c1"}, "overriders": {}}]},
     "spec.overrideRules[0].targetCluster.clusterNames: expected a list of strings"),
])
def test_malformed_rules_name_the_rule_and_field(spec: dict[str, Any], where: str) -> None:
    with pytest.raises(OverrideError) as err:
        parse(spec)
    assert where in err.value.message
    assert err.value.reason == "InvalidOverride"


@pytest.mark.parametrize(("overriders", "where"), [
    ({"commandOverrider": [{"containerName": "nope", "operator": "add", "value": ["x"]}]},
     "commandOverrider[0].containerName: no container named 'nope' in the template (containers: init, web, side)"),
    ({"imageOverrider": [{"component": "Tag", "operator": "add", "value": "1",
                          "predicate": {"path": "/spec/template/spec/containers/5/image"}}]},
     "imageOverrider[0].predicate.path: /spec/template/spec/containers/5/image is not an image"),
    ({"labelsOverrider": [{"operator": "replace", "value": {"missing": "x"}}]},
     "labelsOverrider[0].value: replace: label 'missing' is not set on the template (use add)"),
    ({"plaintext": [{"path": "/spec/nothing/deeper", "operator": "remove"}]},
     "spec.overrideRules[1].overriders.plaintext[0]"),
])
def test_rules_that_do_not_fit_the_template_name_the_rule(overriders: dict[str, Any], where: str) -> None:
    spec = rules({"labelsOverrider": [{"operator": "add", "value": {"first": "ok"}}]}, overriders)
    with pytest.raises(OverrideError) as err:
        run(spec)
    assert where in err.value.message


def test_image_overrider_without_predicate_on_a_kind_without_pods_is_an_error() -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
    with pytest.raises(OverrideError) as err:
        run(rules({"imageOverrider": [{"component": "Tag", "operator": "add", "value": "1"}]}), cm)
    assert "kind ConfigMap has no Pod template" in err.value.message and "predicate.path" in err.value.message


def test_rules_for_other_clusters_are_still_checked() -> None:
    # A malformed rule is a spec error wherever it points: no cluster gets a half-overridden copy.
    spec = rules({"imageOverrider": [{"component": "Tag", "operator": "nope", "value": "1"}]},
                 target={"clusterNames": ["elsewhere"]})
    with pytest.raises(OverrideError):
        run(spec, cluster="c1")
