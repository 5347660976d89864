"""`kubectl explain` (the real binary) describes the MultiClusterResource fields of issue #16 from the installed CRD."""

from __future__ import annotations

import pytest

from tests.delivery.helpers import MakeEnv, eventually
from tests.kube.conftest import run_kubectl

pytestmark = pytest.mark.integration


FIELDS = [
    ("spec.overrideRules.overriders.imageOverrider.component", "Registry (the host part"),
    ("spec.overrideRules.targetCluster", "Which placed clusters the rule changes"),
    ("spec.conflictResolution", "Abort (the default) leaves it alone"),
    ("spec.suspend", "stops every change in the member clusters"),
    ("spec.deletionPolicy", "Orphan leaves every copy in place"),
    ("spec.retain", "JSON pointers of fields the member clusters own"),
    ("spec.propagateDependencies", "ConfigMaps, Secrets, ServiceAccounts"),
]


async def test_kubectl_explain_describes_the_new_fields(make_env: MakeEnv) -> None:
    env = await make_env()  # its controller installs (or upgrades) the CRD on the master
    kubeconfig = env.harness.servers[env.names["cluster1"]].kubeconfig
    for field, expect in FIELDS:
        async def explained(field: str = field, expect: str = expect) -> str | None:
            code, out, _ = await run_kubectl(["--kubeconfig", str(kubeconfig), "explain",
                                              f"multiclusterresources.{field}"],
                                             env.harness.workdir / "kubectl-cache", ok=False)
            text = " ".join(out.split())  # kubectl wraps long descriptions
            return text if code == 0 and expect in text else None
        await eventually(explained, timeout=60, what=f"kubectl explain {field}")
