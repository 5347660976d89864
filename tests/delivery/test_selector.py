"""selector.py: LabelSelector parsing (errors name the field), matching, and the placement it resolves to."""

from __future__ import annotations

from typing import Any

import pytest

from multicluster.delivery.selector import SelectorError, parse, resolve, uses_labels
from multicluster.delivery.types import MCRSpec

LABELS = {"cluster1": {"env": "prod", "region": "eu"}, "cluster2": {"env": "dev", "region": "us"},
          "cluster3": {"env": "prod"}, "stale": {"env": "prod"}}
KNOWN = ["cluster1", "cluster2", "cluster3"]


@pytest.mark.parametrize(("sel", "chosen"), [
    ({}, ["cluster1", "cluster2", "cluster3"]),  # Kubernetes: an empty selector matches everything
    ({"matchLabels": {"env": "prod"}}, ["cluster1", "cluster3"]),
    ({"matchLabels": {"env": "prod", "region": "eu"}}, ["cluster1"]),
    ({"matchExpressions": [{"key": "region", "operator": "In", "values": ["us", "ap"]}]}, ["cluster2"]),
    ({"matchExpressions": [{"key": "region", "operator": "NotIn", "values": ["us"]}]}, ["cluster1", "cluster3"]),
    ({"matchExpressions": [{"key": "region", "operator": "Exists"}]}, ["cluster1", "cluster2"]),
    ({"matchExpressions": [{"key": "region", "operator": "DoesNotExist"}]}, ["cluster3"]),
    ({"matchLabels": {"env": "prod"}, "matchExpressions": [{"key": "region", "operator": "Exists"}]}, ["cluster1"]),
    ({"matchLabels": {"env": "staging"}}, []),
])
def test_selector_matches_like_kubernetes(sel: dict[str, Any], chosen: list[str]) -> None:
    spec: MCRSpec = {"placement": {"clusterSelector": sel}}
    r = resolve(spec, "cluster1", LABELS, KNOWN)
    assert (r.clusters, r.problems, r.selector_invalid) == (chosen, [], False)


def test_names_and_selector_are_a_union_names_first() -> None:
    spec: MCRSpec = {"placement": {"clusters": [{"name": "cluster3"}, {"name": "ghost"}],
                                   "clusterSelector": {"matchLabels": {"env": "prod"}}}}
    assert resolve(spec, "cluster1", LABELS, KNOWN).clusters == ["cluster3", "ghost", "cluster1"]
    # Without a selector: the seed's placement (master when empty); with one that matches nothing: nowhere.
    assert resolve({}, "cluster1", LABELS, KNOWN).clusters == ["cluster1"]
    nothing: MCRSpec = {"placement": {"clusterSelector": {"matchLabels": {"env": "none"}}}}
    assert resolve(nothing, "cluster1", LABELS, KNOWN).clusters == []
    # Only clusters this daemon delivers to are selected (a MultiCluster object of another one names nothing).
    assert "stale" not in resolve({"placement": {"clusterSelector": {}}}, "cluster1", LABELS, KNOWN).clusters


@pytest.mark.parametrize(("sel", "message"), [
    ("env=prod", "spec.placement.clusterSelector: expected a label selector"),
    ({"matchLabel": {"a": "b"}}, "spec.placement.clusterSelector: unknown field 'matchLabel'"),
    ({"matchLabels": ["env=prod"]}, "spec.placement.clusterSelector.matchLabels: expected a map"),
    ({"matchLabels": {"bad key": "x"}}, "spec.placement.clusterSelector.matchLabels: 'bad key': the name part"),
    ({"matchLabels": {"Example.com/x": "y"}}, "spec.placement.clusterSelector.matchLabels: 'Example.com/x': the "
                                              "prefix"),
    ({"matchLabels": {"env": "not ok"}}, "spec.placement.clusterSelector.matchLabels: 'not ok': a label value"),
    ({"matchLabels": {"env": 3}}, "spec.placement.clusterSelector.matchLabels: 3 is not a string"),
    ({"matchExpressions": {"key": "a"}}, "spec.placement.clusterSelector.matchExpressions: expected a list"),
    ({"matchExpressions": [{"key": "env", "operator": "Gt", "values": ["1"]}]},
     "spec.placement.clusterSelector.matchExpressions[0].operator: 'Gt' is not one of In, NotIn, Exists, "
     "DoesNotExist"),
    ({"matchExpressions": [{"key": "env", "operator": "In"}]},
     "spec.placement.clusterSelector.matchExpressions[0].values: In needs at least one value"),
    ({"matchExpressions": [{"key": "env", "operator": "Exists"}, {"key": "env", "operator": "Exists",
                                                                   "values": ["x"]}]},
     "spec.placement.clusterSelector.matchExpressions[1].values: Exists takes no values"),
    ({"matchExpressions": [{"operator": "Exists"}]},
     "spec.placement.clusterSelector.matchExpressions[0].key: a label key must be a non-empty string"),
])
def test_bad_selectors_name_the_field(sel: Any, message: str) -> None:
    with pytest.raises(SelectorError) as err:
        parse(sel)
    assert err.value.message.startswith(message), err.value.message
    r = resolve({"placement": {"clusters": [{"name": "cluster2"}], "clusterSelector": sel}}, "cluster1", LABELS,
                KNOWN)
    assert r.selector_invalid and r.clusters == ["cluster2"] and r.problems[0].startswith(message)


def test_uses_labels() -> None:
    assert not uses_labels({"placement": {"clusters": [{"name": "a"}]}})
    assert uses_labels({"placement": {"clusterSelector": {}}})
    assert uses_labels({"overrideRules": [{"overriders": {}}]})
