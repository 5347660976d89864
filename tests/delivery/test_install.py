"""CRD installation: clear errors when RBAC forbids it, install when missing, upgrade when older, else leave.

Runs against cluster3, where no other test installs the CRDs. The restricted identity is a real ServiceAccount
token (TokenRequest API), so the Forbidden answers come from the API server's RBAC authorizer.
"""

from __future__ import annotations

import base64
import contextlib
from pathlib import Path

import pytest
import yaml

from multicluster import crds
from multicluster.config import ClusterConfig
from multicluster.delivery import install_crds
from multicluster.errors import NotFound, ReconcileError
from multicluster.kube import MERGE_PATCH, ClusterClient
from multicluster.testing.harness import Harness
from tests.delivery.helpers import eventually

pytestmark = pytest.mark.integration

CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def token_kubeconfig(harness: Harness, cluster: str, token: str, path: Path) -> Path:
    ca = base64.b64encode((harness.pki / "ca.crt").read_bytes()).decode()
    doc = {"apiVersion": "v1", "kind": "Config",
           "clusters": [{"name": "c", "cluster": {"server": harness.servers[cluster].url,
                                                  "certificate-authority-data": ca}}],
           "users": [{"name": "u", "user": {"token": token}}],
           "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}], "current-context": "c"}
    path.write_text(yaml.safe_dump(doc))
    return path


async def test_install_forbidden_then_install_current_upgrade(harness: Harness, unique: str) -> None:
    admin = ClusterClient(ClusterConfig("cluster3", harness.servers["cluster3"].kubeconfig))
    ns, sa = f"crd-{unique}", "limited"
    await admin.request("POST", "/api/v1/namespaces", body={"metadata": {"name": ns}})
    await admin.request("POST", f"/api/v1/namespaces/{ns}/serviceaccounts", body={"metadata": {"name": sa}})
    tr = await admin.request("POST", f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token",
                             body={"spec": {"expirationSeconds": 3600}})
    kc = token_kubeconfig(harness, "cluster3", tr["status"]["token"], harness.workdir / f"limited-{unique}.kubeconfig")
    limited = ClusterClient(ClusterConfig("cluster3", kc))
    try:
        for crd in crds.load():  # start from a cluster without our CRDs
            with contextlib.suppress(NotFound):
                await admin.request("DELETE", f"{CRD_PATH}/{crd.name}")

        async def removed() -> bool:
            names = {i["metadata"]["name"] for i in (await admin.get(CRD_PATH))["items"]}
            return not names & {c.name for c in crds.load()}
        await eventually(removed, what="CRDs removed from cluster3")

        with pytest.raises(ReconcileError) as err:
            await install_crds(limited)
        assert err.value.reason == "CRDInstallForbidden"
        assert err.value.message.startswith("cluster cluster3: not allowed to read CustomResourceDefinition "
                                            "multiclusterresources.mulitcluster.practice.com")
        assert err.value.hint and "manifests/crds.yaml" in err.value.hint

        # Allowed to read but not to write: the error names the missing verb.
        role = f"crd-read-{unique}"
        await admin.request("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", body={
            "metadata": {"name": role},
            "rules": [{"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
                       "verbs": ["get", "list"]}]})
        await admin.request("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", body={
            "metadata": {"name": role},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}]})

        async def write_forbidden() -> str | None:
            try:
                await install_crds(limited)
            except ReconcileError as exc:
                return exc.message if "create or patch" in exc.message else None
            return None
        await eventually(write_forbidden, what="forbidden to create")

        assert await install_crds(admin) == [f"{c.name}: installed" for c in crds.load()]
        assert await install_crds(admin) == [f"{c.name}: current" for c in crds.load()]
        mcr = crds.multiclusterresource()
        await admin.request("PATCH", f"{CRD_PATH}/{mcr.name}", body={
            "metadata": {"labels": {crds.REVISION_LABEL: "1"}}}, content_type=MERGE_PATCH)
        done = await install_crds(admin)
        assert done[0] == f"{mcr.name}: upgraded from revision 1"
        live = await admin.get(f"{CRD_PATH}/{mcr.name}")
        assert crds.revision_of(live) == mcr.revision
        assert live["spec"]["names"]["shortNames"] == ["rr", "mcr"]
        cols = [c["name"] for c in live["spec"]["versions"][0]["additionalPrinterColumns"]]
        assert cols == ["Kind", "Clusters", "Applied", "Ready", "Age", "Message"]
        # With the CRDs installed, an identity that can read them is told nothing is missing.
        assert await install_crds(limited) == [f"{c.name}: current" for c in crds.load()]
    finally:
        await limited.close()
        await admin.close()
