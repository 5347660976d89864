"""spec.overrideRules on the real harness: one template, a different image tag and label in each member; a rule
that does not fit the template stops delivery with a reason naming it (issue #16, overriders)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.delivery.helpers import MakeEnv

pytestmark = pytest.mark.integration

MEMBERS = ["cluster2", "cluster3"]


def deployment(name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"tier": "web"}},
            "spec": {"replicas": 0, "selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9", "args": ["-v"]}]}}}}


async def test_each_member_gets_its_own_image_tag_and_label(make_env: MakeEnv) -> None:
    env = await make_env()
    cr = env.cr("ov", deployment("ov-web"), clusters=MEMBERS)
    cr["spec"]["overrideRules"] = [
        {"overriders": {"imageOverrider": [{"component": "Registry", "operator": "replace",
                                            "value": "mirror.example.com"}]}},
        {"targetCluster": {"clusterNames": ["cluster2"]},
         "overriders": {"imageOverrider": [{"component": "Tag", "operator": "replace", "value": "3.8"}],
                        "labelsOverrider": [{"operator": "add", "value": {"region": "eu"}}],
                        "argsOverrider": [{"containerName": "c", "operator": "add", "value": ["--x"]}]}},
        {"targetCluster": {"clusterNames": ["cluster3"]},
         "overriders": {"labelsOverrider": [{"operator": "replace", "value": {"tier": "backend"}}],
                        "plaintext": [{"path": "/spec/template/metadata/annotations", "operator": "add",
                                       "value": {"note": "three"}}]}},
    ]
    # The seed's patches still run, after the rules: the last word on cluster3's tag is theirs.
    cr["spec"]["customize"] = {"clusters": [{"name": "cluster3", "action": [
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": ["pause:3.7"]}]}]}
    await env.apply_cr(cr)
    await env.wait_applied("ov", "2/2")
    path = f"/apis/apps/v1/namespaces/{env.ns}/deployments/ov-web"
    two, three = await env.get("cluster2", path), await env.get("cluster3", path)
    assert two is not None and three is not None
    c2, c3 = two["spec"]["template"]["spec"]["containers"][0], three["spec"]["template"]["spec"]["containers"][0]
    assert c2["image"] == "mirror.example.com/pause:3.8" and c2["args"] == ["-v", "--x"]
    assert two["metadata"]["labels"]["region"] == "eu" and two["metadata"]["labels"]["tier"] == "web"
    assert c3["image"] == "pause:3.7" and c3["args"] == ["-v"]
    assert three["metadata"]["labels"]["tier"] == "backend" and "region" not in three["metadata"]["labels"]
    assert three["spec"]["template"]["metadata"]["annotations"] == {"note": "three"}

    # Changing a rule changes only the copies it targets.
    cr["spec"]["overrideRules"][1]["overriders"]["imageOverrider"][0]["value"] = "3.6"
    await env.apply_cr(cr)
    await env.wait_applied("ov", "2/2")
    two = await env.get("cluster2", path)
    assert two is not None
    assert two["spec"]["template"]["spec"]["containers"][0]["image"] == "mirror.example.com/pause:3.6"


async def test_a_rule_that_does_not_fit_writes_nothing_and_names_the_rule(make_env: MakeEnv) -> None:
    env = await make_env()
    cr = env.cr("bad", deployment("bad-web"), clusters=MEMBERS)
    cr["spec"]["overrideRules"] = [
        {"targetCluster": {"clusterNames": ["cluster3"]},
         "overriders": {"commandOverrider": [{"containerName": "nope", "operator": "add", "value": ["x"]}]}}]
    await env.apply_cr(cr)
    st = await env.wait_applied("bad", "1/2")
    entry = await env.entry("bad", "cluster3")
    assert entry["phase"] == "InvalidOverride"
    assert "spec.overrideRules[0].overriders.commandOverrider[0].containerName: no container named 'nope'" in \
        entry["message"]
    applied = next(c for c in st["conditions"] if c["type"] == "Applied")
    assert applied["status"] == "False" and applied["reason"] == "InvalidOverride"
    invalid = next(c for c in st["conditions"] if c["type"] == "Invalid")
    assert invalid["status"] == "True" and invalid["reason"] == "InvalidOverride"
    assert invalid["message"].startswith("cluster3: spec.overrideRules[0]")
    await env.event("InvalidOverride", "cluster cluster3: spec.overrideRules[0]")
    assert await env.get("cluster3", f"/apis/apps/v1/namespaces/{env.ns}/deployments/bad-web") is None
    assert await env.get("cluster2", f"/apis/apps/v1/namespaces/{env.ns}/deployments/bad-web") is not None
