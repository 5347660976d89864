"""Pure parts of delivery/lifecycle.py: reading the switches, keeping member-owned fields, the conditions."""

from __future__ import annotations

from typing import Any

import pytest

from multicluster.delivery.lifecycle import Lifecycle, add_conditions, keep_member_fields, parse, suspended_status
from multicluster.delivery.model import ClusterResult, Phase
from multicluster.delivery.types import MCRStatus


def test_defaults_and_valid_values() -> None:
    assert parse({}) == (Lifecycle(), [])
    life, problems = parse({"suspend": True, "conflictResolution": "Overwrite", "deletionPolicy": "Orphan",
                            "retain": ["/spec/replicas"], "propagateDependencies": True})
    assert not problems
    assert life.suspend and life.overwrite and life.orphan and life.propagate_dependencies
    assert life.retain == ("/spec/replicas",)


@pytest.mark.parametrize(("spec", "text"), [
    ({"suspend": "yes"}, "spec.suspend: expected true or false"),
    ({"conflictResolution": "Force"}, "spec.conflictResolution: 'Force' is not one of Abort, Overwrite"),
    ({"deletionPolicy": "Keep"}, "spec.deletionPolicy: 'Keep' is not one of Delete, Orphan"),
    ({"retain": "/spec/replicas"}, "spec.retain: expected a list"),
    ({"retain": ["spec/replicas"]}, "spec.retain[0]: 'spec/replicas' must be a JSON pointer"),
    ({"retain": ["/metadata/labels"]}, "spec.retain[0]: '/metadata/labels' must be a JSON pointer"),
    ({"propagateDependencies": 1}, "spec.propagateDependencies: expected true or false"),
])
def test_malformed_values_name_the_field(spec: dict[str, Any], text: str) -> None:
    _, problems = parse(spec)
    assert any(text in p for p in problems), problems


def test_keep_member_fields_sends_the_members_values_back() -> None:
    desired = {"spec": {"replicas": 2, "template": {"x": 1}, "paused": False}}
    live = {"spec": {"replicas": 7, "template": {"x": 9}, "strategy": {"type": "Recreate"}}}
    out = keep_member_fields(desired, live, ["/spec/replicas", "/spec/paused", "/spec/strategy/type", "/nope/x"])
    assert out == {"spec": {"replicas": 7, "template": {"x": 1}, "strategy": {"type": "Recreate"}}}
    assert desired["spec"]["replicas"] == 2  # not changed in place


def test_keep_member_fields_follows_list_indexes_and_escapes() -> None:
    desired = {"spec": {"containers": [{"name": "a", "resources": {"cpu": "1"}}]},
               "metadata": {"annotations": {"a/b": "ours"}}}
    live = {"spec": {"containers": [{"name": "a", "resources": {"cpu": "3"}}]},
            "metadata": {"annotations": {"a/b": "theirs"}}}
    out = keep_member_fields(desired, live, ["/spec/containers/0/resources", "/metadata/annotations/a~1b"])
    assert out["spec"]["containers"][0]["resources"] == {"cpu": "3"}
    assert out["metadata"]["annotations"]["a/b"] == "theirs"


def conds(status: MCRStatus) -> dict[str, dict[str, Any]]:
    return {str(c.get("type")): dict(c) for c in status.get("conditions") or []}


def test_conflict_and_invalid_conditions_appear_with_a_problem_and_then_stay_false() -> None:
    bad = [ClusterResult("c2", Phase.NOT_OWNED, "ConfigMap ns/x exists and is not managed by multicluster"),
           ClusterResult("c3", Phase.INVALID_OVERRIDE, "spec.overrideRules[0]: nope"),
           ClusterResult("c4", Phase.APPLIED)]
    first = add_conditions({"conditions": []}, {}, 1, bad, Lifecycle(), [])
    c = conds(first)
    assert c["Conflict"]["status"] == "True" and c["Conflict"]["reason"] == "NotOwned"
    assert c["Conflict"]["message"].startswith("c2: ConfigMap ns/x")
    assert c["Invalid"]["reason"] == "InvalidOverride" and "c3: spec.overrideRules[0]" in c["Invalid"]["message"]
    assert "Suspended" not in c and "Dependencies" not in c

    fine = add_conditions({"conditions": []}, first, 2, [ClusterResult("c2", Phase.APPLIED)], Lifecycle(), [])
    c = conds(fine)
    assert c["Conflict"]["status"] == "False" and c["Conflict"]["reason"] == "NoConflict"
    assert "Invalid" not in c  # status.py owns the Invalid condition once nothing is invalid here


def test_suspended_keeps_the_last_entries_and_resuming_turns_it_false() -> None:
    previous: MCRStatus = {"observedGeneration": 1, "applied": "2/2", "clusters": [{"name": "c2", "phase": "Applied"}],
                           "conditions": [{"type": "Applied", "status": "True"}]}
    st = suspended_status(previous, 2)
    assert st["observedGeneration"] == 2 and st["clusters"] == previous["clusters"] and st["applied"] == "2/2"
    assert conds(st)["Suspended"]["status"] == "True" and conds(st)["Applied"]["status"] == "True"
    resumed = add_conditions({"conditions": []}, st, 3, [ClusterResult("c2", Phase.APPLIED)], Lifecycle(), [])
    assert conds(resumed)["Suspended"]["status"] == "False"


def test_dependencies_condition_only_when_propagating() -> None:
    r = ClusterResult("c2", Phase.APPLIED, dependency_problems=[("DependencyMissing", "c2: ConfigMap x missing")])
    on = add_conditions({"conditions": []}, {}, 1, [r], Lifecycle(propagate_dependencies=True), [])
    assert conds(on)["Dependencies"]["status"] == "False"
    assert conds(on)["Dependencies"]["reason"] == "DependencyMissing"
    off = add_conditions({"conditions": []}, on, 2, [ClusterResult("c2", Phase.APPLIED)], Lifecycle(), [])
    assert conds(off)["Dependencies"]["reason"] == "NotPropagated"
    never = add_conditions({"conditions": []}, {}, 1, [ClusterResult("c2", Phase.APPLIED)], Lifecycle(), [])
    assert "Dependencies" not in conds(never)
