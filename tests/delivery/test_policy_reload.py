"""SIGHUP applies a changed delivery policy: the daemon passes `delivery:` to the running controller, which
checks every MultiClusterResource against it again (issue #16, policy reload)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from multicluster.config import DeliveryConfig, load_config, parse_config
from multicluster.daemon import Daemon
from multicluster.testing.harness import Harness
from tests.delivery.helpers import MakeEnv, eventually
from tests.delivery.test_authorization import condition
from tests.sync.helpers import daemon_config, sqlite_store

pytestmark = pytest.mark.integration


def delivery(harness: Harness, section: dict[str, Any]) -> DeliveryConfig:
    """A `delivery:` section parsed exactly as config.yaml's is."""
    clusters = [{"metadata": {"clusterName": "cluster1", "configPath": str(harness.servers["cluster1"].kubeconfig),
                              "isMaster": True}}]
    return parse_config({"clusters": clusters, "delivery": section}, harness.workdir).delivery


async def test_a_new_policy_is_applied_to_every_cr_at_once(make_env: MakeEnv, harness: Harness) -> None:
    env = await make_env()
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"rl-{env.ns}", "namespace": "kube-system"},
          "data": {"k": "v"}}
    path = f"/api/v1/namespaces/kube-system/configmaps/rl-{env.ns}"
    await env.apply_cr(env.cr("rl", cm, clusters=["cluster2"]))
    assert (await condition(env, "rl", "Denied", "True"))["reason"] == "NamespaceNotAllowed"
    assert await env.get("cluster2", path) is None

    env.controller.set_policy(delivery(harness, {"policy": [{}, {"kinds": ["ConfigMap"],
                                                                 "toNamespaces": ["kube-system"]}]}))
    await env.wait_applied("rl", "1/1")
    assert await env.get("cluster2", path) is not None

    # Taking the rule away again refuses further changes; the copy stays (a policy change never deletes).
    env.controller.set_policy(delivery(harness, {}))
    assert (await condition(env, "rl", "Denied", "True"))["reason"] == "NamespaceNotAllowed"
    assert await env.get("cluster2", path) is not None
    await env.delete_cr("rl")  # cleanup still removes what was delivered

    async def gone() -> bool:
        return await env.get("cluster2", path) is None
    await eventually(gone, what="copy removed")


async def test_sighup_reload_passes_the_delivery_section_to_the_controller(harness: Harness, tmp_path: Path) -> None:
    base = daemon_config(harness, sqlite_store(tmp_path), ("configmaps",))
    doc: dict[str, Any] = {
        "clusters": [{"metadata": {"clusterName": c.name, "configPath": str(c.config_path),
                                   "isMaster": c.is_master}} for c in base.clusters],
        "resources": {"include": ["configmaps"]},
        "store": {"type": "sqlite", "path": str(tmp_path / "store.db")},
    }
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text(yaml.safe_dump(doc))
    d = Daemon(replace(load_config(cfg_file), sync=base.sync))
    await d.start(api=False, controller=True)
    try:
        assert d.controller is not None
        assert d.controller.policy.current == DeliveryConfig()
        # One policy and one Dependencies for reconcile and finalize alike.
        assert d.controller.reconciler.ctx is d.controller.finalizer.ctx
        assert d.controller.reconciler.ctx.policy is d.controller.policy
        section = {"allowAdopt": True, "policy": [{"kinds": ["ConfigMap"], "toNamespaces": ["<same>", "shared"]}]}
        cfg_file.write_text(yaml.safe_dump({**doc, "delivery": section}))
        await d.reload()
        want = delivery(harness, section)
        assert want.allow_adopt and len(want.policy) == 1
        assert d.config.delivery == want
        assert d.controller.policy.current == want

        cfg_file.write_text(yaml.safe_dump({**doc, "delivery": {"allowAdopt": "sometimes"}}))
        await d.reload()  # an invalid delivery section keeps the running policy
        assert d.controller.policy.current == want
    finally:
        await d.shutdown()
